/**
 * The contract every {@link CredentialStore} adapter passes: one suite, run against each adapter by
 * test/contract/credential-store.test.ts.
 *
 * Adapters that keep their data somewhere other processes can reach (file, Redis) are run with
 * `{ persistent: true }` and a harness that can open a second store over the same data and read and
 * write the raw stored form; the suite then also covers persistence across instances, concurrent
 * instances and malformed stored data. The memory adapter has none of these, so those tests are not
 * defined for it (they are not skipped: there is nothing to test).
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CredentialStoreError } from '../../src/mfa/credential-store.js';
import {
  NO_FACTORS,
  type CredentialStore,
  type RecoveryCode,
  type TotpCredential,
  type UserFactors,
  type WebAuthnCredential,
} from '../../src/mfa/factors.js';

/** One fresh, empty store for one test. */
export interface CredentialStoreHarness {
  readonly store: CredentialStore;
  /** A further store object over the same data (file: same file; Redis: a new connection). */
  readonly reopen?: () => CredentialStore;
  /** The user's stored entry as a JSON value, or undefined when the user has none. */
  readonly readRaw?: (user: string) => Promise<unknown>;
  /** Stores `value` (any JSON value) as the user's entry, bypassing every check. */
  readonly writeRaw?: (user: string, value: unknown) => Promise<void>;
  /** Closes every store the harness made (some may be closed already) and removes the data. */
  cleanup(): Promise<void>;
}

/** What the suite may assume about an adapter. */
export interface CredentialStoreContractOptions {
  /** The harness has `reopen`, `readRaw` and `writeRaw`. */
  readonly persistent: boolean;
}

// --- fixtures ----------------------------------------------------------------------------------

export function passkey(n: number | string, over: Partial<WebAuthnCredential> = {}): WebAuthnCredential {
  return {
    id: `cred-${n}`,
    name: `Passkey ${n}`,
    publicKey: `pQECAyYgASFYI${n}`,
    counter: 0,
    transports: ['internal', 'hybrid'],
    backedUp: true,
    createdAt: 1_700_000_000_000,
    lastUsedAt: undefined,
    ...over,
  };
}

export function totpAuthenticator(n: number | string, over: Partial<TotpCredential> = {}): TotpCredential {
  return {
    id: `totp-${n}`,
    name: `Phone ${n}`,
    secret: `v1.kid.iv.sealed-${n}`,
    createdAt: 1_700_000_000_000,
    lastStep: 56_666_666,
    lastUsedAt: 1_700_000_001_000,
    ...over,
  };
}

export function recoveryCode(n: number | string, usedAt?: number): RecoveryCode {
  return { hash: createHash('sha256').update(`code-${n}`).digest('hex'), usedAt };
}

/** A user with every kind of factor, optional fields both set and unset. */
export function fullFactors(): UserFactors {
  return {
    userHandle: 'dXNlci1oYW5kbGUtMzItYnl0ZXMtbG9uZy1lbm91Z2g',
    webauthn: [passkey(1, { lastUsedAt: 1_700_000_002_000, counter: 7, name: 'Laptop — Grüße 🔐' }), passkey(2, { transports: [], backedUp: false })],
    totp: [totpAuthenticator(1), totpAuthenticator(2, { lastUsedAt: undefined, lastStep: -1 })],
    recovery: [recoveryCode(1), recoveryCode(2, 1_700_000_003_000), recoveryCode(3)],
  };
}

const withPasskey = (i: number | string) => (f: UserFactors): UserFactors => ({ ...f, webauthn: [...f.webauthn, passkey(i)] });

/** Every object and array reachable from `value` is frozen. */
function deepFrozen(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  return Object.isFrozen(value) && Object.values(value).every(deepFrozen);
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`the harness lacks ${what}`);
  return value;
}

const byNumber = (a: number, b: number) => a - b;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

// --- the suite ---------------------------------------------------------------------------------

/** Defines the contract suite for one adapter; `make` is called before every test. */
export function credentialStoreContract(name: string, make: () => Promise<CredentialStoreHarness>, options: CredentialStoreContractOptions): void {
  describe(`CredentialStore (${name})`, () => {
    let harness: CredentialStoreHarness;
    let store: CredentialStore;

    beforeEach(async () => {
      harness = await make();
      store = harness.store;
    });
    afterEach(async () => {
      await harness.cleanup();
    });

    describe('get / update', () => {
      it('returns NO_FACTORS for a user who never enrolled', async () => {
        expect(await store.get('nobody')).toStrictEqual(NO_FACTORS);
        expect(await store.get('toString')).toStrictEqual(NO_FACTORS); // not a prototype property
      });

      it('stores all three factor kinds and returns exactly what was stored', async () => {
        const full = fullFactors();
        const stored = await store.update('alice', () => full);
        expect(stored).toStrictEqual(full);
        expect(await store.get('alice')).toStrictEqual(full);
      });

      it('gives change NO_FACTORS for a new user and the stored value afterwards', async () => {
        const seen: UserFactors[] = [];
        await store.update('alice', (f) => {
          seen.push(f);
          return { ...f, totp: [totpAuthenticator(1)] };
        });
        await store.update('alice', (f) => {
          seen.push(f);
          return { ...f, recovery: [recoveryCode(1)] };
        });
        expect(seen[0]).toStrictEqual(NO_FACTORS);
        expect(seen[1]).toStrictEqual({ ...NO_FACTORS, totp: [totpAuthenticator(1)] });
        expect(await store.get('alice')).toStrictEqual({ ...NO_FACTORS, totp: [totpAuthenticator(1)], recovery: [recoveryCode(1)] });
      });

      it('keeps users apart, whatever characters their names contain', async () => {
        const users = [
          'alice',
          'Alice',
          'alice@example.com',
          'alice:x',
          'mfa:alice',
          'ünïcødé 名前 🔐',
          'a*b?[c]',
          '__proto__',
          'constructor',
          'hasOwnProperty',
          ' spaced ',
          'line\nbreak\ttab',
          'quote"back\\slash',
        ];
        for (const [i, user] of users.entries()) await store.update(user, withPasskey(i));
        for (const [i, user] of users.entries()) expect(await store.get(user)).toStrictEqual({ ...NO_FACTORS, webauthn: [passkey(i)] });
        expect(await store.get('alic')).toStrictEqual(NO_FACTORS);
        expect(await store.get('a')).toStrictEqual(NO_FACTORS);
      });

      it('rejects an empty user name or one that is not well-formed Unicode', async () => {
        for (const user of ['', 'bad\uD800name', '\uDFFF']) {
          await expect(store.get(user)).rejects.toThrow(TypeError);
          await expect(store.update(user, withPasskey(1))).rejects.toThrow(TypeError);
        }
      });

      it('updates different users concurrently without mixing them up', async () => {
        const users = range(10).map((u) => `user-${u}@example.com`);
        await Promise.all(users.flatMap((user, u) => range(5).map((i) => store.update(user, withPasskey(`${u}-${i}`)))));
        for (const [u, user] of users.entries()) {
          const ids = (await store.get(user)).webauthn.map((c) => c.id).sort();
          expect(ids).toEqual(range(5).map((i) => `cred-${u}-${i}`).sort());
        }
      });
    });

    describe('immutability', () => {
      it('returns deep-frozen values from update and get, and mutating them changes nothing', async () => {
        const stored = await store.update('alice', () => fullFactors());
        const got = await store.get('alice');
        for (const value of [stored, got]) {
          expect(deepFrozen(value)).toBe(true);
          expect(() => (value.webauthn as WebAuthnCredential[]).push(passkey(9))).toThrow(TypeError);
          expect(() => {
            (need(value.webauthn[0], 'a passkey') as { counter: number }).counter = 99;
          }).toThrow(TypeError);
          expect(() => (need(value.webauthn[0], 'a passkey').transports as string[]).push('usb')).toThrow(TypeError);
          expect(() => {
            (value as { userHandle: string | undefined }).userHandle = 'other';
          }).toThrow(TypeError);
        }
        expect(await store.get('alice')).toStrictEqual(fullFactors());
      });

      it('returns a deep-frozen value for a user without factors', async () => {
        const none = await store.get('nobody');
        expect(deepFrozen(none)).toBe(true);
        expect(() => (none.webauthn as WebAuthnCredential[]).push(passkey(1))).toThrow(TypeError);
        expect(await store.get('nobody')).toStrictEqual(NO_FACTORS);
        expect(NO_FACTORS.webauthn).toHaveLength(0);
      });

      it('keeps no reference to the object change returned', async () => {
        const transports = ['usb'];
        const webauthn = [passkey(1, { transports })];
        const mine = { ...NO_FACTORS, webauthn, recovery: [recoveryCode(1)] };
        const stored = await store.update('alice', () => mine);
        webauthn.push(passkey(2));
        transports.push('nfc');
        mine.recovery = [];
        const expected = { ...NO_FACTORS, webauthn: [passkey(1, { transports: ['usb'] })], recovery: [recoveryCode(1)] };
        expect(stored).toStrictEqual(expected);
        expect(await store.get('alice')).toStrictEqual(expected);
      });

      it('hands change a deep-frozen current value', async () => {
        await store.update('alice', () => fullFactors());
        let frozen = false;
        await store.update('alice', (f) => {
          frozen = deepFrozen(f);
          return f;
        });
        expect(frozen).toBe(true);
      });
    });

    describe('failed updates', () => {
      it('writes nothing and rejects with the very error when change throws', async () => {
        await store.update('alice', () => fullFactors());
        const refused = new Error('refused');
        await expect(
          store.update('alice', () => {
            throw refused;
          }),
        ).rejects.toBe(refused);
        await expect(
          store.update('bob', () => {
            throw refused;
          }),
        ).rejects.toBe(refused);
        expect(await store.get('alice')).toStrictEqual(fullFactors());
        expect(await store.get('bob')).toStrictEqual(NO_FACTORS);
        if (options.persistent) expect(await need(harness.readRaw, 'readRaw')('bob')).toBeUndefined();
        // and the store still works
        expect((await store.update('alice', withPasskey(3))).webauthn).toHaveLength(3);
      });

      it('refuses to store values storage must not hold, writing nothing', async () => {
        await store.update('alice', () => fullFactors());
        const bad: ((f: UserFactors) => UserFactors)[] = [
          (f) => ({ ...f, webauthn: [passkey(1, { counter: -1 })] }),
          (f) => ({ ...f, webauthn: [passkey(1, { counter: 1.5 })] }),
          (f) => ({ ...f, webauthn: [passkey(1, { createdAt: Number.NaN })] }),
          (f) => ({ ...f, webauthn: [passkey(1), passkey(1)] }),
          (f) => ({ ...f, webauthn: [passkey(1, { id: '' })] }),
          (f) => ({ ...f, totp: [totpAuthenticator(1, { lastStep: Number.POSITIVE_INFINITY })] }),
          (f) => ({ ...f, totp: [totpAuthenticator(1, { secret: '' })] }),
          (f) => ({ ...f, recovery: [{ hash: 'not-a-hash', usedAt: undefined }] }),
          (f) => ({ ...f, recovery: [recoveryCode(1), recoveryCode(1)] }),
          (f) => ({ ...f, userHandle: 'not base64url!' }),
          (f) => ({ ...f, webauthn: undefined as unknown as WebAuthnCredential[] }),
        ];
        for (const change of bad) {
          const error = await store.update('alice', change).then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(error).toBeInstanceOf(CredentialStoreError);
          expect(error).toMatchObject({ reason: 'invalid' });
        }
        expect(await store.get('alice')).toStrictEqual(fullFactors());
      });

      it('drops properties the type does not have', async () => {
        const extra = { ...NO_FACTORS, totp: [{ ...totpAuthenticator(1), plainSecret: 'JBSWY3DPEHPK3PXP' }], debug: true };
        const stored = await store.update('alice', () => extra);
        expect(stored).toStrictEqual({ ...NO_FACTORS, totp: [totpAuthenticator(1)] });
        expect(await store.get('alice')).toStrictEqual({ ...NO_FACTORS, totp: [totpAuthenticator(1)] });
      });
    });

    describe('concurrency', () => {
      it('keeps every one of 50 concurrent updates of one user', async () => {
        const results = await Promise.all(range(50).map((i) => store.update('alice', withPasskey(i))));
        expect(results.map((r) => r.webauthn.length).sort(byNumber)).toEqual(range(50).map((i) => i + 1));
        const ids = (await store.get('alice')).webauthn.map((c) => c.id).sort();
        expect(ids).toEqual(range(50).map((i) => `cred-${i}`).sort());
      });
    });

    describe('removal', () => {
      it('removes the user when change returns NO_FACTORS', async () => {
        await store.update('alice', () => fullFactors());
        const result = await store.update('alice', () => NO_FACTORS);
        expect(result).toStrictEqual(NO_FACTORS);
        expect(await store.get('alice')).toStrictEqual(NO_FACTORS);
        if (options.persistent) expect(await need(harness.readRaw, 'readRaw')('alice')).toBeUndefined();
      });

      it('removes the user for any value deep-equal to NO_FACTORS, and writes nothing for an absent user', async () => {
        await store.update('alice', withPasskey(1));
        await store.update('alice', (f) => ({ ...f, webauthn: f.webauthn.filter((c) => c.id !== 'cred-1') }));
        expect(await store.get('alice')).toStrictEqual(NO_FACTORS);
        expect(await store.update('bob', () => ({ userHandle: undefined, webauthn: [], totp: [], recovery: [] }))).toStrictEqual(NO_FACTORS);
        if (options.persistent) {
          const readRaw = need(harness.readRaw, 'readRaw');
          expect(await readRaw('alice')).toBeUndefined();
          expect(await readRaw('bob')).toBeUndefined();
        }
      });

      it('keeps a user who has only a user handle left', async () => {
        const handleOnly = { ...NO_FACTORS, userHandle: 'aGFuZGxl' };
        await store.update('alice', () => handleOnly);
        expect(await store.get('alice')).toStrictEqual(handleOnly);
      });
    });

    describe('close', () => {
      it('rejects get and update after close, and close is idempotent', async () => {
        await store.update('alice', withPasskey(1));
        await store.close();
        await store.close();
        await expect(store.get('alice')).rejects.toMatchObject({ reason: 'closed' });
        await expect(store.update('alice', withPasskey(2))).rejects.toMatchObject({ reason: 'closed' });
      });

      it('lets updates already accepted finish', async () => {
        const pending = Promise.all(range(5).map((i) => store.update('alice', withPasskey(i))));
        await store.close();
        expect(await pending).toHaveLength(5);
      });
    });

    if (!options.persistent) return;

    describe('persistence (another store over the same data)', () => {
      it('keeps the data for a new store object after the first one closed', async () => {
        await store.update('alice', () => fullFactors());
        await store.update('bob', withPasskey(1));
        await store.close();
        const again = need(harness.reopen, 'reopen')();
        expect(await again.get('alice')).toStrictEqual(fullFactors());
        expect(await again.get('bob')).toStrictEqual({ ...NO_FACTORS, webauthn: [passkey(1)] });
        expect(await again.get('carol')).toStrictEqual(NO_FACTORS);
      });

      it('sees at once what another store object wrote, after having read before', async () => {
        const other = need(harness.reopen, 'reopen')();
        expect(await other.get('alice')).toStrictEqual(NO_FACTORS);
        await store.update('alice', withPasskey(1));
        expect(await other.get('alice')).toStrictEqual({ ...NO_FACTORS, webauthn: [passkey(1)] });
        await other.update('alice', (f) => ({ ...f, webauthn: f.webauthn.map((c) => ({ ...c, counter: c.counter + 1 })) }));
        expect((await store.get('alice')).webauthn[0]?.counter).toBe(1);
        await other.update('alice', () => NO_FACTORS);
        expect(await store.get('alice')).toStrictEqual(NO_FACTORS);
      });

      it('loses no update when two store objects update one user concurrently', async () => {
        const other = need(harness.reopen, 'reopen')();
        await Promise.all(range(25).flatMap((i) => [store.update('alice', withPasskey(`a${i}`)), other.update('alice', withPasskey(`b${i}`))]));
        const expected = range(25).flatMap((i) => [`cred-a${i}`, `cred-b${i}`]).sort();
        expect((await store.get('alice')).webauthn.map((c) => c.id).sort()).toEqual(expected);
        expect((await other.get('alice')).webauthn.map((c) => c.id).sort()).toEqual(expected);
      });
    });

    describe('malformed stored data', () => {
      const broken: Record<string, (valid: Record<string, unknown>) => unknown> = {
        'a field of the wrong type': (v) => ({ ...v, webauthn: [{ ...passkey(1), counter: '7' }] }),
        'a missing field': (v) => ({ ...v, totp: [{ id: 'totp-1', name: 'x', createdAt: 1, lastStep: 1 }] }),
        'an unknown field': (v) => ({ ...v, passwords: [] }),
        'a recovery hash that is not hex SHA-256': (v) => ({ ...v, recovery: [{ hash: 'abc' }] }),
        'duplicate passkey ids': (v) => ({ ...v, webauthn: [passkey(1), passkey(1)] }),
        null: () => null,
        'an array': () => [],
        'a string': () => 'alice',
      };

      for (const [what, corrupt] of Object.entries(broken)) {
        it(`rejects get and update of the user on ${what}, writes nothing, and leaves other users alone`, async () => {
          const readRaw = need(harness.readRaw, 'readRaw');
          await store.update('alice', () => fullFactors());
          await store.update('bob', withPasskey(1));
          const valid = (await readRaw('alice')) as Record<string, unknown>;
          const bad = JSON.parse(JSON.stringify(corrupt(valid))) as unknown; // as stored: undefined fields left out
          await need(harness.writeRaw, 'writeRaw')('alice', bad);

          const error = await store.get('alice').then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(error).toBeInstanceOf(CredentialStoreError);
          expect(error).toMatchObject({ reason: 'malformed' });
          expect((error as Error).message).toContain('"alice"');

          let called = false;
          await expect(
            store.update('alice', () => {
              called = true;
              return NO_FACTORS;
            }),
          ).rejects.toMatchObject({ reason: 'malformed' });
          expect(called).toBe(false);
          expect(await readRaw('alice')).toStrictEqual(bad);

          expect(await store.get('bob')).toStrictEqual({ ...NO_FACTORS, webauthn: [passkey(1)] });
          await store.update('bob', withPasskey(2));
          expect((await store.get('bob')).webauthn).toHaveLength(2);
          expect(await readRaw('alice')).toStrictEqual(bad);
          await expect(need(harness.reopen, 'reopen')().get('alice')).rejects.toMatchObject({ reason: 'malformed' });
        });
      }

      it('names the offending field', async () => {
        await need(harness.writeRaw, 'writeRaw')('alice', { webauthn: [{ ...passkey(1), counter: '7' }], totp: [], recovery: [] });
        await expect(store.get('alice')).rejects.toThrow(/webauthn\[0\]\.counter/);
      });

      it('reads stored data written without the optional fields', async () => {
        await need(harness.writeRaw, 'writeRaw')('alice', {
          webauthn: [{ id: 'cred-1', name: 'Passkey 1', publicKey: 'pQECAyYgASFYI1', counter: 0, transports: ['internal', 'hybrid'], backedUp: true, createdAt: 1_700_000_000_000 }],
          totp: [],
          recovery: [{ hash: recoveryCode(1).hash }],
        });
        expect(await store.get('alice')).toStrictEqual({ ...NO_FACTORS, webauthn: [passkey(1)], recovery: [recoveryCode(1)] });
      });
    });
  });
}
