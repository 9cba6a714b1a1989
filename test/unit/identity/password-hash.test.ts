import { describe, expect, it } from 'vitest';
import { DEFAULT_SCRYPT_COST, dummyVerify, generatePassword, hashPassword, isPasswordHash, verifyPassword } from '../../../src/identity/password-hash.js';

const CHEAP = { ln: 10, r: 8, p: 1 } as const;

describe('hashPassword', () => {
  it('writes a PHC-style scrypt string with the default cost', async () => {
    const encoded = await hashPassword('correct horse');
    const { ln, r, p } = DEFAULT_SCRYPT_COST;
    expect(encoded).toMatch(new RegExp(`^\\$scrypt\\$ln=${ln},r=${r},p=${p}\\$[A-Za-z0-9+/]{22}\\$[A-Za-z0-9+/]{43}$`));
  });

  it('salts every hash differently', async () => {
    expect(await hashPassword('same', CHEAP)).not.toBe(await hashPassword('same', CHEAP));
  });

  it('refuses an empty password', async () => {
    await expect(hashPassword('')).rejects.toThrow(RangeError);
  });
});

describe('verifyPassword', () => {
  it('accepts the password a hash was made from', async () => {
    const encoded = await hashPassword('correct horse battery staple');
    expect(await verifyPassword('correct horse battery staple', encoded)).toBe(true);
  });

  it('rejects a wrong password', async () => {
    const encoded = await hashPassword('correct horse', CHEAP);
    expect(await verifyPassword('correct horsE', encoded)).toBe(false);
    expect(await verifyPassword('', encoded)).toBe(false);
  });

  it('treats canonically equivalent Unicode spellings as the same password', async () => {
    const encoded = await hashPassword('caf\u00e9', CHEAP);
    expect(await verifyPassword('cafe\u0301', encoded)).toBe(true);
  });

  const valid = '$scrypt$ln=10,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';
  it.each([
    ['an empty string', ''],
    ['another algorithm', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA'],
    ['a bcrypt hash', '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW'],
    ['missing parameters', '$scrypt$$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g'],
    ['a huge N', valid.replace('ln=10', 'ln=30')],
    ['a tiny N', valid.replace('ln=10', 'ln=1')],
    ['an absurd block size', valid.replace('r=8', 'r=99')],
    ['an absurd parallelism', valid.replace('p=1', 'p=99')],
    ['a zero parameter', valid.replace('p=1', 'p=0')],
    ['a short salt', '$scrypt$ln=10,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g'],
    ['non-canonical base64', valid.replace(/g$/, 'h')],
    ['padding', `${valid}=`],
    ['trailing garbage', `${valid}$x`],
    ['a newline', `${valid}\n`],
    ['plain text', 'hunter2'],
  ])('returns false, without throwing, for %s', async (_what, encoded) => {
    expect(await verifyPassword('hunter2', encoded)).toBe(false);
    expect(isPasswordHash(encoded)).toBe(false);
  });

  it('parses the well-formed hash the malformed cases are made from (and it does not match)', async () => {
    expect(isPasswordHash(valid)).toBe(true);
    expect(await verifyPassword('hunter2', valid)).toBe(false);
  });

  it('returns false for input that is not a string at all', async () => {
    expect(await verifyPassword('x', undefined as unknown as string)).toBe(false);
    expect(await verifyPassword(42 as unknown as string, valid)).toBe(false);
  });
});

describe('isPasswordHash', () => {
  it('recognises what hashPassword writes', async () => {
    expect(isPasswordHash(await hashPassword('x', CHEAP))).toBe(true);
  });
});

describe('dummyVerify', () => {
  it('always resolves false', async () => {
    expect(await dummyVerify('anything')).toBe(false);
  });

  it('takes about as long as verifying a real hash', async () => {
    const encoded = await hashPassword('correct horse');
    const time = async (fn: () => Promise<unknown>) => {
      const start = performance.now();
      for (let i = 0; i < 3; i++) await fn();
      return performance.now() - start;
    };
    await dummyVerify('warm-up');
    const real = await time(() => verifyPassword('wrong', encoded));
    const dummy = await time(() => dummyVerify('wrong'));
    expect(dummy / real).toBeGreaterThan(0.4);
    expect(dummy / real).toBeLessThan(2.5);
  });
});

describe('generatePassword', () => {
  it('makes 24 characters without look-alikes by default', () => {
    const pw = generatePassword();
    expect(pw).toMatch(/^[A-HJ-NP-Za-km-z2-9]{24}$/);
    expect(generatePassword()).not.toBe(pw);
  });
});
