import { describe, expect, it } from 'vitest';
import { safeReturnPath } from '../../../src/web/return-path.js';

describe('safeReturnPath', () => {
  it.each([
    ['/', '/'],
    ['/app', '/app'],
    ['/app/x?y=1&z=%2F', '/app/x?y=1&z=%2F'],
    ['/a#frag', '/a#frag'],
    ['/caf\u00e9?q=\u00fc', '/caf%C3%A9?q=%C3%BC'],
    ['/\u3000/evil.example', '/%E3%80%80/evil.example'],
  ])('keeps the same-origin path %j', (rd, expected) => {
    expect(safeReturnPath(rd)).toBe(expected);
  });

  it.each([
    [undefined],
    [null],
    [''],
    ['//evil.example'],
    ['///evil.example'],
    ['/\\evil.example'],
    ['\\/evil.example'],
    ['/a\\b'],
    ['https://evil.example'],
    ['http:evil.example'],
    ['javascript:alert(1)'],
    ['data:text/html,x'],
    ['evil.example'],
    ['/%2F%2Fevil.example'],
    ['/%2f%2fevil.example'],
    ['/%252F%252Fevil.example'],
    ['/%5Cevil.example'],
    ['/%5cevil.example'],
    ['/\t/evil.example'],
    ['/\n/evil.example'],
    ['/%09/evil.example'],
    ['/ /evil.example'],
    ['/%E0%A4%A'],
    ['/.portcullis/login?rd=/x'],
    ['/.portcullis/callback?code=x'],
    ['/.portcullis/logout'],
    [`/${'a'.repeat(3000)}`],
  ])('refuses %j and falls back to /', (rd) => {
    expect(safeReturnPath(rd)).toBe('/');
  });
});
