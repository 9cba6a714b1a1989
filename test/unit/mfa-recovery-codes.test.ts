import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { RecoveryCode } from '../../src/mfa/factors.js';
import { hashRecoveryCode, newRecoveryCodes, normalizeRecoveryCode, RECOVERY_CODE_LENGTH, useRecoveryCode } from '../../src/mfa/recovery-codes.js';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const CODE_RE = /^[0-9a-hjkmnp-tv-z]{5}(?:-[0-9a-hjkmnp-tv-z]{5}){3}$/;
const NOW = Date.parse('2026-11-26T10:00:00Z');
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

describe('newRecoveryCodes', () => {
  it('makes 10 grouped lower-case codes, stored only as hashes of the normalized form', () => {
    const { codes, stored } = newRecoveryCodes();
    expect(codes).toHaveLength(10);
    expect(stored).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    codes.forEach((code, i) => {
      expect(code).toMatch(CODE_RE);
      expect(stored[i]).toEqual({ hash: sha256(code.replaceAll('-', '')), usedAt: undefined });
      expect(JSON.stringify(stored)).not.toContain(code.replaceAll('-', '').slice(0, 10));
    });
  });

  it('makes as many as asked, within 1 to 100', () => {
    expect(newRecoveryCodes(1).codes).toHaveLength(1);
    expect(newRecoveryCodes(100).stored).toHaveLength(100);
    for (const n of [0, -1, 101, 2.5, Number.NaN]) expect(() => newRecoveryCodes(n)).toThrow(TypeError);
  });

  it('carries at least 80 bits: 20 characters drawn from all 32 symbols', () => {
    expect(RECOVERY_CODE_LENGTH * Math.log2(ALPHABET.length)).toBeGreaterThanOrEqual(80);
    const counts = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      for (const code of newRecoveryCodes(100).codes) {
        for (const c of code.replaceAll('-', '')) counts.set(c, (counts.get(c) ?? 0) + 1);
      }
    }
    // 40,000 characters: each of the 32 symbols about 1,250 times; no symbol outside the alphabet.
    expect([...counts.keys()].sort().join('')).toBe(ALPHABET);
    for (const n of counts.values()) expect(n).toBeGreaterThan(1000);
  });
});

describe('normalizeRecoveryCode', () => {
  const code = 'abcde-fghjk-mnpqr-stvwx';
  const normalized = 'abcdefghjkmnpqrstvwx';

  it('ignores case, spaces and dashes', () => {
    for (const typed of [code, code.toUpperCase(), normalized, ` ${code} `, 'ABCDE FGHJK MNPQR STVWX', 'abcde--fghjk - mnpqr\tstvwx\n', 'a-b-c-d-e-f-g-h-j-k-m-n-p-q-r-s-t-v-w-x']) {
      expect(normalizeRecoveryCode(typed), typed).toBe(normalized);
    }
  });

  it('reads the letters left out of the alphabet as the digits they resemble', () => {
    expect(normalizeRecoveryCode('o0o0o-i1i1i-l1L1I-OOOOO')).toBe('00000111111111100000');
  });

  it('refuses anything else', () => {
    for (const typed of ['', code.slice(0, -1), `${code}y`, 'abcde-fghjk-mnpqr-stvwu', 'abcde-fghjk-mnpqr-stvw!', 'abcde_fghjk_mnpqr_stvwx', 'ａbcde-fghjk-mnpqr-stvwx', 'x'.repeat(1000)]) {
      expect(normalizeRecoveryCode(typed), typed.slice(0, 30)).toBeUndefined();
    }
  });

  it('hashes the normalized form', () => {
    expect(hashRecoveryCode(code.toUpperCase())).toBe(sha256(normalized));
    expect(hashRecoveryCode('nope')).toBeUndefined();
  });
});

describe('useRecoveryCode', () => {
  it('accepts an unused code once and marks it used', () => {
    const { codes, stored } = newRecoveryCodes();
    const code = codes[3] ?? '';
    const result = useRecoveryCode(stored, code, NOW);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.unused).toBe(9);
    expect(result.remaining).toHaveLength(10);
    result.remaining.forEach((c, i) => expect(c).toEqual(i === 3 ? { hash: stored[3]?.hash, usedAt: NOW } : stored[i]));
    // The input list is not modified.
    expect(stored[3]?.usedAt).toBeUndefined();

    expect(useRecoveryCode(result.remaining, code, NOW + 1000)).toEqual({ ok: false, reason: 'already-used' });
    // The other codes still work.
    const next = useRecoveryCode(result.remaining, codes[0] ?? '', NOW + 2000);
    expect(next.ok && next.unused).toBe(8);
  });

  it('accepts the code however it is typed', () => {
    const { codes, stored } = newRecoveryCodes(3);
    const code = codes[1] ?? '';
    for (const typed of [code.toUpperCase(), code.replaceAll('-', ''), code.replaceAll('-', ' '), ` ${code.replaceAll('0', 'O').replaceAll('1', 'l')} `]) {
      const result = useRecoveryCode(stored, typed, NOW);
      expect(result.ok, typed).toBe(true);
      if (result.ok) expect(result.remaining[1]?.usedAt).toBe(NOW);
    }
  });

  it('refuses a wrong or malformed code', () => {
    const { stored } = newRecoveryCodes();
    const other = newRecoveryCodes(1).codes[0] ?? '';
    expect(useRecoveryCode(stored, other, NOW)).toEqual({ ok: false, reason: 'wrong-code' });
    expect(useRecoveryCode([], other, NOW)).toEqual({ ok: false, reason: 'wrong-code' });
    for (const typed of ['', '123456', 'not-a-recovery-code', `${other}-x`]) {
      expect(useRecoveryCode(stored, typed, NOW), typed).toEqual({ ok: false, reason: 'malformed' });
    }
  });

  it('tolerates corrupt stored hashes', () => {
    const { codes, stored } = newRecoveryCodes(2);
    const corrupt: RecoveryCode[] = [{ hash: 'zz', usedAt: undefined }, { hash: '', usedAt: undefined }, ...stored];
    expect(useRecoveryCode(corrupt, codes[1] ?? '', NOW)).toMatchObject({ ok: true, unused: 3 });
    expect(useRecoveryCode(corrupt, newRecoveryCodes(1).codes[0] ?? '', NOW)).toEqual({ ok: false, reason: 'wrong-code' });
  });

  it('prefers an unused entry when the same hash is stored twice', () => {
    const { codes, stored } = newRecoveryCodes(1);
    const hash = stored[0]?.hash ?? '';
    const list: RecoveryCode[] = [{ hash, usedAt: NOW - 1000 }, { hash, usedAt: undefined }];
    const result = useRecoveryCode(list, codes[0] ?? '', NOW);
    expect(result).toEqual({ ok: true, remaining: [{ hash, usedAt: NOW - 1000 }, { hash, usedAt: NOW }], unused: 0 });
  });

  it('works on a frozen list', () => {
    const { codes, stored } = newRecoveryCodes(2);
    const frozen = Object.freeze(stored.map((c) => Object.freeze({ ...c })));
    expect(useRecoveryCode(frozen, codes[0] ?? '', NOW).ok).toBe(true);
  });
});
