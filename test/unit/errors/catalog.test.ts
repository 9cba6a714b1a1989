import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../../src/errors/index.js';

describe('ERRORS', () => {
  const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  const documented = [...doc.matchAll(/^\| `(GW_ERR_[A-Z_]+)` \| (\d{3}|—) \|/gm)].map((m) => [m[1], m[2]] as const);

  it('documents every code in docs/errors.md with its status, and nothing else', () => {
    expect(new Map(documented).size).toBe(documented.length);
    const docCodes = documented.map(([c]) => c).sort();
    expect(docCodes).toEqual(Object.keys(ERRORS).sort());
    for (const [code, status] of documented) {
      const entry = ERRORS[code as keyof typeof ERRORS];
      if (status !== '—') expect(String(entry.status), code).toBe(status);
    }
  });

  it('names every code GW_ERR_<AREA>_<WHAT>', () => {
    for (const code of Object.keys(ERRORS)) expect(code).toMatch(/^GW_ERR_[A-Z]+_[A-Z_]+$/);
  });
});
