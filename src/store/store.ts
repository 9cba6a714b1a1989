/**
 * The store port: where the gateway keeps shared, expiring state — sessions, single-use values (OIDC
 * state, hand-off codes), rate-limit counters and per-user indexes. Adapters: `memory` (one process,
 * the embedded default) and `redis` (several gateway processes share it). Every adapter passes the
 * contract suite in test/contract/store.contract.ts.
 *
 * Keys are plain strings chosen by the caller (e.g. `session:<id>`); the Redis adapter prefixes them
 * with the configured `key_prefix`. Values are strings (callers store JSON). TTLs are milliseconds
 * and always required: nothing the gateway stores lives forever (a TTL that is not a finite number
 * above 0 rejects with RangeError; fractions round up).
 *
 * Failure: every method except `ping` and `close` rejects when the backing service is unavailable or
 * too slow (Redis: within the command timeout, 1 s by default) — callers fail closed and never read a
 * rejection as "absent". A string operation on a set key (or the reverse) rejects too. After `close()`
 * every method except `ping` (false) and `close` rejects.
 */
export interface Store {
  /** The adapter's name, for logs and metrics: `memory` or `redis`. */
  readonly kind: 'memory' | 'redis';
  /** The value, or undefined when absent or expired. */
  get(key: string): Promise<string | undefined>;
  /** Sets (or replaces) a value with a time to live. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Sets a value only when the key is absent; true when it was set. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  /** Deletes a key; true when it existed. */
  delete(key: string): Promise<boolean>;
  /** Atomically reads and deletes a value (single-use values); undefined when absent. */
  take(key: string): Promise<string | undefined>;
  /** Changes a key's time to live; false when the key is absent. */
  expire(key: string, ttlMs: number): Promise<boolean>;
  /**
   * Adds 1 to a fixed-window counter and returns the new count. The window starts with the first
   * increment and lasts `windowMs`; later increments do not extend it.
   */
  increment(key: string, windowMs: number): Promise<number>;
  /** Adds a member to a set, (re)setting the set's time to live. */
  addToSet(key: string, member: string, ttlMs: number): Promise<void>;
  /** Removes a member from a set. */
  removeFromSet(key: string, member: string): Promise<void>;
  /** The members of a set (empty when absent). */
  members(key: string): Promise<string[]>;
  /** True when the backing service answers. */
  ping(): Promise<boolean>;
  /** Releases connections and timers. */
  close(): Promise<void>;
}
