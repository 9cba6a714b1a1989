/**
 * What every credential-store adapter shares: the stored form of one user's factors (JSON, checked
 * with zod on the way in and on the way out), the error the adapters throw, user-name checks and a
 * per-key serial queue.
 *
 * Stored form of one user: the JSON of {@link UserFactors}, with `undefined` fields left out
 * (`userHandle`, `lastUsedAt`, `usedAt`). Reading is strict: a field of the wrong type, a missing field
 * or an unknown field makes the data malformed (an unknown field is most likely written by a newer
 * version; dropping it on the next write would lose it, so it is refused instead). Writing strips
 * properties the type does not have and refuses values the type allows but storage must not hold
 * (NaN, negative counters, duplicate ids, a recovery hash that is not hex SHA-256).
 */
import { z } from 'zod';
import type { RecoveryCode, TotpCredential, UserFactors, WebAuthnCredential } from './factors.js';

/**
 * Why a credential-store operation failed (besides the backing service being unavailable, which
 * rejects with that service's own error):
 * - `malformed`: the stored data for the user (or the whole file) does not have the stored form;
 * - `invalid`: the value an `update` change returned cannot be stored (nothing was written);
 * - `contention`: an `update` kept losing races with other writers and gave up (nothing was written);
 * - `closed`: the store was closed.
 */
export type CredentialStoreFailure = 'malformed' | 'invalid' | 'contention' | 'closed';

/** A credential-store operation that failed for a {@link CredentialStoreFailure} reason. */
export class CredentialStoreError extends Error {
  readonly reason: CredentialStoreFailure;

  constructor(reason: CredentialStoreFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CredentialStoreError';
    this.reason = reason;
  }
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const HEX_SHA256 = /^[0-9a-f]{64}$/;

const base64url = z.string().regex(BASE64URL, 'expected a non-empty base64url string');
const epochMs = z.number().nonnegative();

type ObjectMode = 'strict' | 'strip';

/** The schema of one user's stored factors; `strict` refuses unknown keys, `strip` drops them. */
function factorsSchema(mode: ObjectMode) {
  const object = <S extends z.ZodRawShape>(shape: S) => (mode === 'strict' ? z.strictObject(shape) : z.object(shape));
  const webauthn = object({
    id: base64url,
    name: z.string(),
    publicKey: base64url,
    counter: z.number().int().nonnegative(),
    transports: z.array(z.string()),
    backedUp: z.boolean(),
    createdAt: epochMs,
    lastUsedAt: epochMs.optional(),
  });
  const totp = object({
    id: base64url,
    name: z.string(),
    secret: z.string().min(1),
    createdAt: epochMs,
    lastStep: z.number().int().min(-1),
    lastUsedAt: epochMs.optional(),
  });
  const recovery = object({
    hash: z.string().regex(HEX_SHA256, 'expected a hex SHA-256 (64 lower-case hex digits)'),
    usedAt: epochMs.optional(),
  });
  return object({
    userHandle: base64url.optional(),
    webauthn: z.array(webauthn).superRefine(unique((c) => c.id, 'passkey id')),
    totp: z.array(totp).superRefine(unique((c) => c.id, 'TOTP authenticator id')),
    recovery: z.array(recovery).superRefine(unique((c) => c.hash, 'recovery code hash')),
  });
}

/** A check that no two array elements share `keyOf(element)`. */
function unique<T>(keyOf: (item: T) => string, what: string) {
  return (items: readonly T[], ctx: z.RefinementCtx): void => {
    const seen = new Set<string>();
    items.forEach((item, index) => {
      const key = keyOf(item);
      if (seen.has(key)) ctx.addIssue({ code: 'custom', message: `duplicate ${what} ${JSON.stringify(key)}`, path: [index] });
      seen.add(key);
    });
  };
}

const STORED = factorsSchema('strict');
const TO_STORE = factorsSchema('strip');
type Parsed = z.output<typeof STORED>;

/** `path: message; …` for an operator. */
function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
      return `${path === '' ? '(top level)' : path.replace(/^\./, '')}: ${issue.message}`;
    })
    .join('; ');
}

/** A deep-frozen {@link UserFactors} with every key present, built from checked data. */
function freeze(v: Parsed): UserFactors {
  const webauthn = v.webauthn.map(
    (c): WebAuthnCredential =>
      Object.freeze({
        id: c.id,
        name: c.name,
        publicKey: c.publicKey,
        counter: c.counter,
        transports: Object.freeze([...c.transports]),
        backedUp: c.backedUp,
        createdAt: c.createdAt,
        lastUsedAt: c.lastUsedAt,
      }),
  );
  const totp = v.totp.map(
    (c): TotpCredential =>
      Object.freeze({ id: c.id, name: c.name, secret: c.secret, createdAt: c.createdAt, lastStep: c.lastStep, lastUsedAt: c.lastUsedAt }),
  );
  const recovery = v.recovery.map((c): RecoveryCode => Object.freeze({ hash: c.hash, usedAt: c.usedAt }));
  return Object.freeze({ userHandle: v.userHandle, webauthn: Object.freeze(webauthn), totp: Object.freeze(totp), recovery: Object.freeze(recovery) });
}

/**
 * Checks already-parsed stored data (e.g. one entry of the credential file) and returns it as a
 * deep-frozen {@link UserFactors}.
 * @param where names the data in the error message, e.g. `the MFA data of user "alice"`.
 * @throws CredentialStoreError `malformed`.
 */
export function checkStoredFactors(value: unknown, where: string): UserFactors {
  const result = STORED.safeParse(value);
  if (!result.success) throw new CredentialStoreError('malformed', `${where} is malformed: ${describeIssues(result.error)}`);
  return freeze(result.data);
}

/**
 * Parses one user's stored factors (the JSON a store holds for the user) and checks them.
 * @throws CredentialStoreError `malformed` when `json` is not JSON or not the stored form; the message
 *   says which field is wrong.
 */
export function parseUserFactors(json: string, where = 'the stored MFA data'): UserFactors {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new CredentialStoreError('malformed', `${where} is malformed: not JSON (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  return checkStoredFactors(value, where);
}

/**
 * Checks a value an `update` change returned and copies it (deep-frozen, unknown properties dropped),
 * so that the caller keeps no handle on what is stored.
 * @throws CredentialStoreError `invalid`.
 */
export function toStorable(value: UserFactors, user: string): UserFactors {
  const result = TO_STORE.safeParse(value);
  if (!result.success) {
    throw new CredentialStoreError('invalid', `refusing to store the MFA data of user ${JSON.stringify(user)}: ${describeIssues(result.error)}`);
  }
  return freeze(result.data);
}

/** The stored JSON of a value returned by {@link toStorable}. */
export function serializeUserFactors(value: UserFactors): string {
  return JSON.stringify(value);
}

/**
 * NO_FACTORS, deep-frozen: what the adapters return for a user without data. (NO_FACTORS itself is
 * frozen only at the top, so its arrays must not be handed out.)
 */
export const EMPTY_FACTORS: UserFactors = Object.freeze({
  userHandle: undefined,
  webauthn: Object.freeze([]),
  totp: Object.freeze([]),
  recovery: Object.freeze([]),
});

/** True when `f` holds nothing at all (deep-equal to NO_FACTORS): such a user is removed. */
export function isEmptyFactors(f: UserFactors): boolean {
  return f.userHandle === undefined && f.webauthn.length === 0 && f.totp.length === 0 && f.recovery.length === 0;
}

/**
 * Refuses user names that cannot be a key: not a string, empty, or not well-formed Unicode (a lone
 * surrogate would be stored as U+FFFD, so two different names could share one entry).
 * @throws TypeError
 */
export function checkUserName(user: string): void {
  if (typeof user !== 'string' || user === '') throw new TypeError('a user name must be a non-empty string');
  if (!user.isWellFormed()) throw new TypeError('a user name must be well-formed Unicode (no lone surrogates)');
}

/** Not closed, or a `closed` rejection. */
export function checkOpen(closed: boolean, kind: string): void {
  if (closed) throw new CredentialStoreError('closed', `the ${kind} credential store is closed`);
}

/** Runs async tasks one after another per key; tasks on different keys run concurrently. */
export interface SerialQueue {
  run<T>(key: string, task: () => Promise<T>): Promise<T>;
  /** Resolves once every task queued so far has settled. */
  idle(): Promise<void>;
}

/** Creates a {@link SerialQueue}. A failing task does not stop the ones queued after it. */
export function createSerialQueue(): SerialQueue {
  const tails = new Map<string, Promise<void>>();
  return {
    run<T>(key: string, task: () => Promise<T>): Promise<T> {
      const result = (tails.get(key) ?? Promise.resolve()).then(task);
      const tail = result.then(
        () => undefined,
        () => undefined,
      );
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return result;
    },
    async idle() {
      await Promise.all([...tails.values()]);
    },
  };
}
