import { describe, expect, it } from 'vitest';
import { normalizePathSegment, normalizeTarget, type TargetRejectReason } from '../../../src/routing/index.js';

const HOST = 'app.example.com';

interface Accepted {
  target: string;
  path: string;
  segments: readonly string[];
  query?: string;
  host?: string;
  scheme?: 'http' | 'https';
}

const accepted: readonly Accepted[] = [
  // Plain origin-form.
  { target: '/', path: '/', segments: [] },
  { target: '/a', path: '/a', segments: ['a'] },
  { target: '/a/', path: '/a/', segments: ['a'] },
  { target: '/a/b/c', path: '/a/b/c', segments: ['a', 'b', 'c'] },
  { target: '/a/b/c/', path: '/a/b/c/', segments: ['a', 'b', 'c'] },
  { target: '/API/Admin', path: '/API/Admin', segments: ['API', 'Admin'] },
  // Query strings pass through unchanged.
  { target: '/a?x=1', path: '/a', segments: ['a'], query: 'x=1' },
  { target: '/?', path: '/', segments: [], query: '' },
  { target: '/a?b=c&d=%2F', path: '/a', segments: ['a'], query: 'b=c&d=%2F' },
  { target: '/a?x=/../y', path: '/a', segments: ['a'], query: 'x=/../y' },
  { target: '/a?%zz%2e', path: '/a', segments: ['a'], query: '%zz%2e' },
  { target: '/a?b?c', path: '/a', segments: ['a'], query: 'b?c' },
  { target: '/a?x=a;b\\c', path: '/a', segments: ['a'], query: 'x=a;b\\c' },
  { target: '/a/?q', path: '/a/', segments: ['a'], query: 'q' },
  // Unreserved escapes are decoded.
  { target: '/%61', path: '/a', segments: ['a'] },
  { target: '/%41%5A%30%39', path: '/AZ09', segments: ['AZ09'] },
  { target: '/%7E%2D%2E%5F', path: '/~-._', segments: ['~-._'] },
  { target: '/%7e', path: '/~', segments: ['~'] },
  { target: '/a%2eb', path: '/a.b', segments: ['a.b'] },
  { target: '/%2e%2e%2e', path: '/...', segments: ['...'] },
  { target: '/%2Ewell-known/x', path: '/.well-known/x', segments: ['.well-known', 'x'] },
  // Other escapes keep their encoding with upper-case hex.
  { target: '/%c3%a9', path: '/%C3%A9', segments: ['é'] },
  { target: '/%C3%A9', path: '/%C3%A9', segments: ['é'] },
  { target: '/caf%c3%a9/men%C3%BC', path: '/caf%C3%A9/men%C3%BC', segments: ['café', 'menü'] },
  { target: '/%F0%9F%98%80', path: '/%F0%9F%98%80', segments: ['😀'] },
  { target: '/a%20b', path: '/a%20b', segments: ['a b'] },
  { target: '/a%3fb', path: '/a%3Fb', segments: ['a?b'] },
  { target: '/a%23b', path: '/a%23b', segments: ['a#b'] },
  { target: '/100%25', path: '/100%25', segments: ['100%'] },
  { target: '/%25ab', path: '/%25ab', segments: ['%ab'] },
  { target: '/%2541', path: '/%2541', segments: ['%41'] },
  { target: '/ab%252', path: '/ab%252', segments: ['ab%2'] },
  { target: '/%7b%7D', path: '/%7B%7D', segments: ['{}'] },
  { target: '/a%2Bb', path: '/a%2Bb', segments: ['a+b'] },
  { target: '/a%40b', path: '/a%40b', segments: ['a@b'] },
  // Dots that are not dot segments.
  { target: '/...', path: '/...', segments: ['...'] },
  { target: '/.well-known/openid-configuration', path: '/.well-known/openid-configuration', segments: ['.well-known', 'openid-configuration'] },
  { target: '/a./.b/a..b', path: '/a./.b/a..b', segments: ['a.', '.b', 'a..b'] },
  // Raw characters are kept as they are.
  { target: '/a:b@c', path: '/a:b@c', segments: ['a:b@c'] },
  { target: "/a!$&'()*+,=", path: "/a!$&'()*+,=", segments: ["a!$&'()*+,="] },
  { target: '/a"b{}|^`<>[]', path: '/a"b{}|^`<>[]', segments: ['a"b{}|^`<>[]'] },
  // Look-alikes are matched literally, not folded and not rejected.
  { target: '/%EF%BC%8F', path: '/%EF%BC%8F', segments: ['／'] },
  { target: '/%EF%BC%8E%EF%BC%8E', path: '/%EF%BC%8E%EF%BC%8E', segments: ['．．'] },
  { target: '/admin%E2%80%8B', path: '/admin%E2%80%8B', segments: ['admin\u200b'] },
  { target: '/%EF%BD%81dmin', path: '/%EF%BD%81dmin', segments: ['ａdmin'] },
  { target: '/%EF%BB%BFa', path: '/%EF%BB%BFa', segments: ['\ufeffa'] },
  // Absolute-form whose authority equals the Host header.
  { target: 'http://app.example.com/a', path: '/a', segments: ['a'] },
  { target: 'HTTP://APP.example.com:80/a?x', path: '/a', segments: ['a'], query: 'x' },
  { target: 'http://app.example.com', path: '/', segments: [] },
  { target: 'http://app.example.com?x=1', path: '/', segments: [], query: 'x=1' },
  { target: 'http://app.example.com./%61', path: '/a', segments: ['a'] },
  { target: 'https://app.example.com/a', path: '/a', segments: ['a'], scheme: 'https', host: 'app.example.com:443' },
  { target: 'http://app.example.com:8080/a', path: '/a', segments: ['a'], host: 'APP.example.com:8080' },
  { target: 'http://[::1]:8080/x', path: '/x', segments: ['x'], host: '[0:0::1]:8080' },
];

const rejected: readonly (readonly [string, TargetRejectReason])[] = [
  ['', 'empty-target'],
  ['*', 'asterisk-form'],
  ['app.example.com:443', 'authority-form'],
  ['[::1]:443', 'authority-form'],
  ['a/b', 'not-origin-form'],
  ['?x', 'not-origin-form'],
  ['http:/a', 'not-origin-form'],
  ['ftp://app.example.com/a', 'absolute-form-scheme'],
  ['https://app.example.com/a', 'absolute-form-scheme'],
  ['http://other.example.com/a', 'absolute-form-authority-mismatch'],
  ['http://app.example.com:8080/a', 'absolute-form-authority-mismatch'],
  ['http://app.example.com.evil.com/a', 'absolute-form-authority-mismatch'],
  ['http://user@app.example.com/a', 'absolute-form-authority-invalid'],
  ['http://app.example.com@evil.com/a', 'absolute-form-authority-invalid'],
  ['http:///a', 'absolute-form-authority-invalid'],
  ['http://app.example.com:/a', 'absolute-form-authority-invalid'],
  ['http://app.example.com/a/../b', 'dot-segment'],
  ['/a#b', 'fragment'],
  ['/a?b#c', 'fragment'],
  ['/#', 'fragment'],
  ['/a\u0000', 'control-character'],
  ['/a\tb', 'control-character'],
  ['/a\r\nb', 'control-character'],
  ['/a\u007f', 'control-character'],
  ['/a?x=\u0001', 'control-character'],
  ['/a b', 'space'],
  ['/a?b c', 'space'],
  ['/caf\u00e9', 'non-ascii'],
  ['/\u00c3\u00a9', 'non-ascii'],
  ['/\u00ff', 'non-ascii'],
  ['/a?\u0080', 'non-ascii'],
  ['/a\\b', 'backslash'],
  ['/\\', 'backslash'],
  ['/a\\..\\b', 'backslash'],
  ['/a;b', 'path-parameter'],
  ['/admin;/x', 'path-parameter'],
  ['/a;jsessionid=1', 'path-parameter'],
  ['/..;/admin', 'path-parameter'],
  ['/a//b', 'empty-segment'],
  ['//a', 'empty-segment'],
  ['//', 'empty-segment'],
  ['/a//', 'empty-segment'],
  ['//evil.com/x', 'empty-segment'],
  ['/%', 'malformed-percent-encoding'],
  ['/%2', 'malformed-percent-encoding'],
  ['/a%2', 'malformed-percent-encoding'],
  ['/%zz', 'malformed-percent-encoding'],
  ['/%g0', 'malformed-percent-encoding'],
  ['/%%32%65', 'malformed-percent-encoding'],
  ['/%u002e', 'malformed-percent-encoding'],
  ['/a%2Fb', 'encoded-slash'],
  ['/a%2fb', 'encoded-slash'],
  ['/%2F', 'encoded-slash'],
  ['/a%5Cb', 'encoded-backslash'],
  ['/a%5cb', 'encoded-backslash'],
  ['/a%3Bb', 'encoded-semicolon'],
  ['/a%00', 'encoded-nul'],
  ['/a%00.html', 'encoded-nul'],
  ['/a%0A', 'encoded-control-character'],
  ['/a%0d%0aSet-Cookie:x', 'encoded-control-character'],
  ['/a%7F', 'encoded-control-character'],
  ['/%09', 'encoded-control-character'],
  ['/%C0%AE', 'invalid-utf8'],
  ['/%C0%AF', 'invalid-utf8'],
  ['/%E0%80%AE', 'invalid-utf8'],
  ['/%F0%80%80%AF', 'invalid-utf8'],
  ['/%FF', 'invalid-utf8'],
  ['/%C3', 'invalid-utf8'],
  ['/%C3x', 'invalid-utf8'],
  ['/%ED%A0%80', 'invalid-utf8'],
  ['/%F4%90%80%80', 'invalid-utf8'],
  ['/%80', 'invalid-utf8'],
  ['/.', 'dot-segment'],
  ['/..', 'dot-segment'],
  ['/./', 'dot-segment'],
  ['/../', 'dot-segment'],
  ['/a/./b', 'dot-segment'],
  ['/a/../b', 'dot-segment'],
  ['/a/..', 'dot-segment'],
  ['/%2e', 'dot-segment'],
  ['/%2E%2E', 'dot-segment'],
  ['/.%2E', 'dot-segment'],
  ['/%2e.', 'dot-segment'],
  ['/a/.%2e/b', 'dot-segment'],
  ['/public/%2e%2e/admin', 'dot-segment'],
  ['/%252e', 'double-encoding'],
  ['/%252E%252E', 'double-encoding'],
  ['/%252e%252e/admin', 'double-encoding'],
  ['/%252f', 'double-encoding'],
  ['/a%252Fb', 'double-encoding'],
  ['/%255c', 'double-encoding'],
  ['/%2500', 'double-encoding'],
  ['/a%25%32%65', 'double-encoding'],
  ['/%25252e%25252e/admin', 'double-encoding'],
  ['/%2525252F', 'double-encoding'],
  ['/admin%253bjsessionid=1', 'double-encoding'],
  ['/a%250ab', 'double-encoding'],
  ['/a%257f', 'double-encoding'],
];

describe('normalizeTarget', () => {
  it.each(accepted)('accepts $target as $path', ({ target, path, segments, query, host, scheme }) => {
    expect(normalizeTarget(target, host ?? HOST, scheme ?? 'http')).toEqual({
      ok: true,
      host: expect.any(Object) as unknown,
      path,
      segments,
      query,
    });
  });

  it.each(rejected)('rejects %j with %s', (target, reason) => {
    expect(normalizeTarget(target, HOST, 'http')).toEqual({ ok: false, code: 'GW_ERR_REQUEST_TARGET', reason });
  });

  it('maps its canonical path onto itself (idempotent)', () => {
    for (const { target, host, scheme } of accepted) {
      const first = normalizeTarget(target, host ?? HOST, scheme ?? 'http');
      if (!first.ok) throw new Error(`expected ${target} to be accepted`);
      const second = normalizeTarget(first.path, host ?? HOST, scheme ?? 'http');
      expect(second).toMatchObject({ ok: true, path: first.path, segments: first.segments });
    }
  });

  it('gives the same output for the same input', () => {
    for (const { target } of accepted) {
      expect(normalizeTarget(target, HOST, 'http')).toEqual(normalizeTarget(target, HOST, 'http'));
    }
  });

  it('returns the canonical Host', () => {
    expect(normalizeTarget('/', 'App.Example.COM.:80', 'http')).toMatchObject({
      ok: true,
      host: { hostname: 'app.example.com', port: undefined },
    });
    expect(normalizeTarget('/', 'app.example.com:8443', 'https')).toMatchObject({
      ok: true,
      host: { hostname: 'app.example.com', port: 8443 },
    });
  });

  it.each([
    ['/a', undefined, 'missing-host'],
    ['http://app.example.com/a', undefined, 'missing-host'],
    ['/a', '', 'invalid-host'],
    ['/a', 'a b', 'invalid-host'],
    ['/a', 'user@app.example.com', 'invalid-host'],
    ['/a', 'app.example.com, app.example.com', 'invalid-host'],
    ['/a', 'app.example.com:99999', 'invalid-host'],
    ['http://app.example.com/a', 'app.example.com:', 'invalid-host'],
  ] as const)('rejects %j with Host %j as %s', (target, host, reason) => {
    expect(normalizeTarget(target, host, 'http')).toEqual({ ok: false, code: 'GW_ERR_REQUEST_HOST', reason });
  });

  it('reports a malformed target before a bad Host', () => {
    expect(normalizeTarget('/a#b', undefined, 'http')).toMatchObject({ code: 'GW_ERR_REQUEST_TARGET', reason: 'fragment' });
  });
});

describe('normalizePathSegment', () => {
  it('decodes and canonicalizes one segment', () => {
    expect(normalizePathSegment('%61%c3%a9')).toEqual({ ok: true, canonical: 'a%C3%A9', decoded: 'aé' });
  });

  it('rejects an empty segment', () => {
    expect(normalizePathSegment('')).toEqual({ ok: false, reason: 'empty-segment' });
  });
});
