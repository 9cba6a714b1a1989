/**
 * The Redis store adapter: several gateway processes share sessions, single-use values and rate-limit
 * counters through one Redis (≥ 6.2 for GETDEL; 7 is what we run): one node, a Sentinel group or a
 * Cluster (redis-connection.ts). Every operation, the two Lua scripts included, touches exactly one key,
 * so under Cluster any key may live in any slot; key names are the same in all three modes.
 *
 * Failure mode — fail closed and fast. A request must never hang on a Redis that is down or stuck:
 *
 * - Every command is bounded by `commandTimeoutMs` (default 1 s), also while queued, so a Redis that
 *   accepts the connection but stops answering (paused, swapping, partitioned) costs at most that long.
 * - Before the first connection is ready, commands wait in ioredis's offline queue (bounded by the same
 *   timeout), so the calls a process makes right after start do not fail for no reason. Once connected,
 *   the offline queue is switched off: while Redis is away, commands reject at once instead of piling up,
 *   and none of them runs later, after its caller was already told it failed.
 * - Commands in flight when the connection drops are rejected, never replayed on reconnect
 *   (`autoResendUnfulfilledCommands: false`): INCR and GETDEL are not idempotent.
 * - Reconnects go on forever with a short capped backoff (100 ms doubling to 1 s, plus jitter), so the
 *   same store object works again as soon as Redis returns; nobody has to recreate it.
 * - `ping()` never throws: false while disconnected or when PING fails or times out.
 *
 * Every other method rejects while Redis is unavailable; callers treat that as "deny / 503", never as
 * "absent".
 */
import type { Logger } from 'pino';
import { createRedisConnection, quitOrDisconnect, type RedisConnectionConfig } from './redis-connection.js';
import type { Store } from './store.js';
import { toTtlMs } from './ttl-ms.js';

/** Options for {@link createRedisStore}. */
export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port/db` or `rediss://…` for TLS (one node). Ignored when `connection` is given. */
  readonly url?: string;
  /** One node, Sentinel or Cluster, as configured in `store.redis` (see redis-connection.ts). */
  readonly connection?: RedisConnectionConfig;
  /** Put in front of every key, e.g. `portcullis:`; stores with the same prefix share their data. */
  readonly keyPrefix: string;
  /** How long one connection attempt may take, in ms. Default 2000. */
  readonly connectTimeoutMs?: number;
  /** How long one command may take, including time spent queued before the first connect. Default 1000. */
  readonly commandTimeoutMs?: number;
  /** Connection state changes are logged on a `{component: 'store'}` child. */
  readonly logger?: Logger;
}

/**
 * INCR, and start the window when the counter has none yet. Starting it whenever PTTL is -1 (rather
 * than only when INCR returned 1) also repairs a counter that somehow lost its expiry.
 */
const INCREMENT_LUA = `
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

/** SADD and (re)set the set's time to live, atomically. */
const ADD_TO_SET_LUA = `
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/** The commands `defineCommand` adds (EVALSHA, falling back to EVAL once per connection). */
interface StoreScripts {
  portcullisIncrement(key: string, windowMs: number): Promise<number>;
  portcullisAddToSet(key: string, member: string, ttlMs: number): Promise<number>;
}


/**
 * Creates a Redis-backed {@link Store}. It starts connecting at once; see the module comment for how
 * it behaves while Redis is unavailable. `close()` sends QUIT (or drops the connection when Redis is
 * away); afterwards every method except `ping` (false) and `close` rejects.
 */
export function createRedisStore(opts: RedisStoreOptions): Store {
  const log = opts.logger?.child({ component: 'store' });
  let closing: Promise<void> | undefined;
  const redis = createRedisConnection({
    connection: opts.connection ?? { url: opts.url },
    connectionName: 'portcullis-store',
    what: 'redis store',
    logger: log,
    connectTimeoutMs: opts.connectTimeoutMs,
    commandTimeoutMs: opts.commandTimeoutMs,
    isClosing: () => closing !== undefined,
  });
  redis.defineCommand('portcullisIncrement', { numberOfKeys: 1, lua: INCREMENT_LUA });
  redis.defineCommand('portcullisAddToSet', { numberOfKeys: 1, lua: ADD_TO_SET_LUA });
  const scripts = redis as unknown as StoreScripts;

  const k = (key: string): string => opts.keyPrefix + key;

  return {
    kind: 'redis',

    async get(key) {
      return (await redis.get(k(key))) ?? undefined;
    },

    async set(key, value, ttlMs) {
      await redis.set(k(key), value, 'PX', toTtlMs(ttlMs));
    },

    async setIfAbsent(key, value, ttlMs) {
      return (await redis.set(k(key), value, 'PX', toTtlMs(ttlMs), 'NX')) === 'OK';
    },

    async delete(key) {
      return (await redis.del(k(key))) > 0;
    },

    async take(key) {
      return (await redis.getdel(k(key))) ?? undefined;
    },

    async expire(key, ttlMs) {
      return (await redis.pexpire(k(key), toTtlMs(ttlMs))) === 1;
    },

    async increment(key, windowMs) {
      return scripts.portcullisIncrement(k(key), toTtlMs(windowMs, 'windowMs'));
    },

    async addToSet(key, member, ttlMs) {
      await scripts.portcullisAddToSet(k(key), member, toTtlMs(ttlMs));
    },

    async removeFromSet(key, member) {
      await redis.srem(k(key), member);
    },

    async members(key) {
      return redis.smembers(k(key));
    },

    async ping() {
      // Not short-circuited on `status`: before the first connect PING waits in the offline queue
      // (bounded by the command timeout), so a store that is still connecting is not reported down.
      try {
        await redis.ping();
        return true;
      } catch {
        return false;
      }
    },

    close() {
      closing ??= (async () => {
        await quitOrDisconnect(redis);
      })();
      return closing;
    },
  };
}
