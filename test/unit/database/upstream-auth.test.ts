import { describe, expect, it } from 'vitest';
import { createSaltedPasswordCache, createScramClient, md5Password, ScramError } from '../../../src/database/upstream-auth.js';

describe('md5Password', () => {
  it('answers md5(md5(password + user) + salt) as PostgreSQL expects', () => {
    // Computed independently (Python hashlib) for password "secret", user "app_ro", salt 01 02 03 04.
    expect(md5Password('app_ro', 'secret', Buffer.from([1, 2, 3, 4]))).toBe('md54c20e229e0041e9a431b4fed86cb36bf');
  });
});

describe('createScramClient', () => {
  // RFC 7677 section 3: user "user", password "pencil".
  const nonce = 'rOprNGfwEbeRWgbNEkqO';
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';

  it('reproduces the RFC 7677 exchange', async () => {
    const scram = createScramClient('pencil', nonce, { user: 'user' });
    expect(scram.clientFirst()).toBe('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    expect(await scram.clientFinal(serverFirst)).toBe('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
    expect(() => scram.verifyServerFinal('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')).not.toThrow();
  });

  it('sends an empty user name by default, as libpq does (PostgreSQL uses the startup packet’s)', () => {
    expect(createScramClient('pencil', nonce).clientFirst()).toBe('n,,n=,r=rOprNGfwEbeRWgbNEkqO');
  });

  it.each([
    ['a server nonce that does not extend the client nonce', 'r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'],
    ['a server nonce equal to the client nonce', `r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`],
    ['a missing salt', `r=${nonce}x,i=4096`],
    ['a bad iteration count', `r=${nonce}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`],
  ])('refuses %s', async (_name, message) => {
    await expect(createScramClient('pencil', nonce).clientFinal(message)).rejects.toThrow(ScramError);
  });

  it.each([
    ['a wrong server signature', 'v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='],
    ['a server error', 'e=invalid-proof'],
  ])('refuses %s in the server-final message', async (_name, message) => {
    const scram = createScramClient('pencil', nonce, { user: 'user' });
    await scram.clientFinal(serverFirst);
    expect(() => scram.verifyServerFinal(message)).toThrow(ScramError);
  });

  it('derives the salted password once per salt and iteration count', async () => {
    const inner = createSaltedPasswordCache();
    let derived = 0;
    const cache = {
      get: (k: string) => inner.get(k),
      set: (k: string, v: Buffer) => {
        derived += 1;
        inner.set(k, v);
      },
    };
    const first = await createScramClient('pencil', nonce, { user: 'user', cache }).clientFinal(serverFirst);
    const second = await createScramClient('pencil', nonce, { user: 'user', cache }).clientFinal(serverFirst);
    expect(second).toBe(first);
    expect(derived).toBe(1);
  });
});
