/**
 * The MFA credential store: the {@link CredentialStore} port (factors.ts) and its three adapters.
 *
 * Semantics every adapter keeps (the contract suite test/contract/credential-store.contract.ts runs
 * against each):
 *
 * - `get(user)` resolves to the user's factors, or a value deep-equal to NO_FACTORS when there are none.
 * - `update(user, change)` is an atomic read-modify-write of one user: `change` gets the current value
 *   and returns the new one; concurrent updates — through one store object, several objects, or
 *   several processes on the same file / Redis — never lose one another. Memory and file run `change`
 *   exactly once (memory: read, change and write happen without an await in between, so nothing can
 *   interleave on JavaScript's one thread; file: updates are queued in-process and each holds the
 *   file's lock file across processes); Redis retries on conflict, so `change` may run again and must
 *   be pure (see credential-store-redis.ts for why a compare-and-set script rather than WATCH/EXEC).
 * - When `change` throws, nothing is written and `update` rejects with that very error. When it
 *   returns something storage must not hold (see credential-store-codec.ts), nothing is written and
 *   `update` rejects with a CredentialStoreError `invalid`. A result deep-equal to NO_FACTORS removes
 *   the user. `update` resolves to what was stored.
 * - Every value handed out (by `get`, by `update`, and to `change`) is a deep-frozen copy: mutating it
 *   throws, and no caller can change the stored state except through `update`.
 * - Stored data that is not the stored form rejects with a CredentialStoreError `malformed` naming the
 *   user and the field, never as "no factors" (callers fail closed); an update does not overwrite it.
 * - User names are opaque: any non-empty, well-formed Unicode string (e-mail addresses, `a:b`,
 *   `__proto__`, `*`) names its own entry; an empty or ill-formed name rejects with TypeError.
 * - When the backing service is unavailable, `get` and `update` reject (Redis: within about the
 *   command timeout, 1 s by default). After `close()` they reject with CredentialStoreError `closed`.
 */
export {
  CredentialStoreError,
  EMPTY_FACTORS,
  parseUserFactors,
  type CredentialStoreFailure,
} from './credential-store-codec.js';
export { createFileCredentialStore } from './credential-store-file.js';
export { createMemoryCredentialStore } from './credential-store-memory.js';
export { createRedisCredentialStore, type RedisCredentialStoreOptions } from './credential-store-redis.js';
