/**
 * The ioredis connection every Redis adapter uses (store, audit sink), configured to fail fast and
 * never act twice: commands time out; the offline queue holds commands only until the first
 * connection (afterwards a command while Redis is down fails at once instead of piling up in
 * memory); in-flight commands are never re-sent after a reconnect (INCR, GETDEL, XADD must not run
 * twice); reconnects back off to 1 s and go on for ever. Outages are logged once, not per attempt.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Options for {@link createFailFastRedis}. */
export interface FailFastRedisOptions {
  readonly url: string;
  /** CLIENT SETNAME, e.g. `portcullis-store`. */
  readonly connectionName: string;
  /** How log lines name this connection, e.g. `redis store`. */
  readonly what: string;
  readonly logger?: Logger | undefined;
  readonly connectTimeoutMs?: number | undefined;
  readonly commandTimeoutMs?: number | undefined;
  /** True once the owner is closing (a closed connection is then not an outage). */
  readonly isClosing: () => boolean;
}

/** Reconnect delay after the `attempt`-th consecutive failure: 100, 200, 400, 800, then 1000 ms, ±jitter. */
export function reconnectDelayMs(attempt: number): number {
  return Math.min(100 * 2 ** Math.min(attempt - 1, 4), 1000) + Math.floor(Math.random() * 100);
}

/** Creates the connection (it connects in the background). */
export function createFailFastRedis(opts: FailFastRedisOptions): Redis {
  const log = opts.logger;
  const redis = new Redis(opts.url, {
    connectionName: opts.connectionName,
    connectTimeout: opts.connectTimeoutMs ?? 2000,
    commandTimeout: opts.commandTimeoutMs ?? 1000,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true, // until the first 'ready'
    autoResendUnfulfilledCommands: false,
    retryStrategy: reconnectDelayMs,
  });
  let down = false;
  redis.on('ready', () => {
    redis.options.enableOfflineQueue = false;
    if (down) log?.info(`${opts.what} reconnected`);
    down = false;
  });
  redis.on('error', (err: Error) => {
    if (!down) log?.warn({ err }, `${opts.what} unavailable; operations fail until it returns`);
    else log?.debug({ err }, `${opts.what} still unavailable`);
    down = true;
  });
  redis.on('close', () => {
    if (!down && !opts.isClosing()) log?.warn(`${opts.what} connection closed; reconnecting`);
    down = true;
  });
  return redis;
}

/** Ends a connection politely (QUIT) when it is up, else drops it. Never throws. */
export async function quitOrDisconnect(redis: Redis): Promise<void> {
  if (redis.status === 'ready') {
    try {
      await redis.quit();
      return;
    } catch {
      // fall through: drop the connection instead
    }
  }
  redis.disconnect();
}
