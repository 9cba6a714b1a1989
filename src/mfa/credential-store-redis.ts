/**
 * The Redis credential store, for gateways with several replicas: one key per user,
 * `<keyPrefix>mfa:<user>`, holding that user's factors as JSON (see credential-store-codec.ts). No
 * expiry. Any well-formed user name is its own key (keys are binary-safe and nothing here matches
 * patterns).
 *
 * `update` is an optimistic read-modify-write: GET the key, run `change`, then write with a small Lua
 * script that sets (or deletes) the key only if it still holds exactly what was read — a
 * compare-and-set, atomic on the server. When another writer got there first the update starts over
 * with the new value (up to 8 attempts, with a short growing random pause), then rejects with
 * `contention`, having written nothing. `change` may therefore run more than once. Updates of one user
 * through one store object are queued in-process, so they never race each other; races remain only
 * between processes or store objects.
 *
 * Cluster: the script reads and writes only KEYS[1], so it is slot-safe (ioredis routes it by that
 * key); the key names are the same with one node, Sentinel or Cluster.
 *
 * Why a script and not WATCH/MULTI/EXEC: WATCH belongs to the connection, and one connection carries
 * every concurrent request of a process (and may be shared with other code). The EXEC of one update
 * would clear the WATCH of another update in flight on the same connection, whose EXEC would then
 * succeed unguarded and could overwrite a concurrent change. The compare-and-set has no per-connection
 * state.
 *
 * Failure: fail closed and fast, as the session store — the connection comes from
 * createFailFastRedis (every command bounded by `commandTimeoutMs`, no offline queue once connected,
 * nothing re-sent after a reconnect), so while Redis is down or stuck `get` and `update` reject
 * within about the command timeout. A value that does not parse rejects with `malformed` and is never
 * overwritten by an update; a key of another type rejects with Redis's WRONGTYPE error.
 *
 * Connection: with `url` the store owns its connection and `close()` ends it; with `redis` it uses
 * that connection (e.g. the session store's) and `close()` leaves it open. Either way, after
 * `close()` `get` and `update` reject.
 */
import type { Redis } from 'ioredis';
import { createRedisConnection, type RedisClient, type RedisConnectionConfig } from '../store/redis-connection.js';
import type { Logger } from 'pino';
import { quitOrDisconnect } from '../store/fail-fast-redis.js';
import {
  checkOpen,
  checkUserName,
  createSerialQueue,
  CredentialStoreError,
  EMPTY_FACTORS,
  isEmptyFactors,
  parseUserFactors,
  serializeUserFactors,
  toStorable,
} from './credential-store-codec.js';
import type { CredentialStore, UserFactors } from './factors.js';

/** Options for {@link createRedisCredentialStore}. */
export type RedisCredentialStoreOptions =
  | {
      /** `redis://[user:pass@]host:port/db` or `rediss://…`; the store opens and owns its connection. */
      readonly url?: string;
      /** One node, Sentinel or Cluster (`store.redis`); when given, `url` is ignored. */
      readonly connection?: RedisConnectionConfig;
      /** Put in front of every key (`<keyPrefix>mfa:<user>`), e.g. `portcullis:`. */
      readonly keyPrefix: string;
      /** How long one command may take, including time queued before the first connect. Default 1000. */
      readonly commandTimeoutMs?: number;
      /** How long one connection attempt may take. Default 2000. */
      readonly connectTimeoutMs?: number;
      /** Connection state changes are logged on a `{component: 'mfa-store'}` child. */
      readonly logger?: Logger;
    }
  | {
      /** An existing connection (ideally from createRedisConnection); the store never closes it. */
      readonly redis: Redis | RedisClient;
      readonly keyPrefix: string;
    };

/** Attempts of one update before it rejects with `contention`. */
const MAX_ATTEMPTS = 8;

/**
 * Compare-and-set. KEYS[1]: the user's key. ARGV[1]: '1' when the key was read with value ARGV[2],
 * '0' when it was absent. ARGV[3]: the new value, '' to delete. Returns 1 when written, 0 when the key
 * changed since it was read.
 */
const COMPARE_AND_SET_LUA = `
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[3] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[3]) end
return 1`;

/** The command `defineCommand` adds (EVALSHA, falling back to EVAL once per connection). */
interface CredentialScripts {
  portcullisMfaCompareAndSet(key: string, present: '0' | '1', expected: string, next: string): Promise<number>;
}

/** A random pause before attempt `attempt` (2, 3, …): up to 5, 10, 20, 40, then 80 ms. */
function backoffMs(attempt: number): number {
  return Math.floor(Math.random() * 5 * 2 ** Math.min(attempt - 2, 4)) + 1;
}

/** Creates a Redis-backed {@link CredentialStore}; with `url` it starts connecting at once. */
export function createRedisCredentialStore(opts: RedisCredentialStoreOptions): CredentialStore {
  let closed = false;
  let closing: Promise<void> | undefined;
  const owned = !('redis' in opts);
  const redis: RedisClient =
    !('redis' in opts)
      ? createRedisConnection({
          connection: opts.connection ?? { url: opts.url },
          connectionName: 'portcullis-mfa',
          what: 'redis credential store',
          logger: opts.logger?.child({ component: 'mfa-store' }),
          connectTimeoutMs: opts.connectTimeoutMs,
          commandTimeoutMs: opts.commandTimeoutMs,
          isClosing: () => closing !== undefined,
        })
      : opts.redis;
  redis.defineCommand('portcullisMfaCompareAndSet', { numberOfKeys: 1, lua: COMPARE_AND_SET_LUA });
  const scripts = redis as unknown as CredentialScripts;
  const queue = createSerialQueue();

  const keyOf = (user: string): string => `${opts.keyPrefix}mfa:${user}`;
  const describe = (user: string): string => `the MFA data of user ${JSON.stringify(user)} (Redis key ${JSON.stringify(keyOf(user))})`;
  const read = async (user: string): Promise<{ raw: string | null; factors: UserFactors }> => {
    const raw = await redis.get(keyOf(user));
    return { raw, factors: raw === null ? EMPTY_FACTORS : parseUserFactors(raw, describe(user)) };
  };

  const attemptUpdates = async (user: string, change: (current: UserFactors) => UserFactors): Promise<UserFactors> => {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt)));
      const { raw, factors } = await read(user);
      const next = toStorable(change(factors), user);
      const remove = isEmptyFactors(next);
      if (remove && raw === null) return EMPTY_FACTORS;
      const written = await scripts.portcullisMfaCompareAndSet(keyOf(user), raw === null ? '0' : '1', raw ?? '', remove ? '' : serializeUserFactors(next));
      if (written === 1) return remove ? EMPTY_FACTORS : next;
    }
    throw new CredentialStoreError('contention', `${describe(user)} kept changing during ${MAX_ATTEMPTS} attempts to update it; nothing was written`);
  };

  return {
    kind: 'redis',

    async get(user) {
      checkUserName(user);
      checkOpen(closed, 'redis');
      return (await read(user)).factors;
    },

    async update(user, change) {
      checkUserName(user);
      checkOpen(closed, 'redis');
      return queue.run(user, () => attemptUpdates(user, change));
    },

    close() {
      closed = true;
      closing ??= (async () => {
        await queue.idle();
        if (owned) await quitOrDisconnect(redis);
      })();
      return closing;
    },
  };
}
