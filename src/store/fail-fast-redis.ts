/**
 * The single-node form of the fail-fast connection (kept for callers that have just a URL). The
 * semantics — commands time out; the offline queue holds commands only until the first connection;
 * in-flight commands are never re-sent after a reconnect; reconnects back off to 1 s and go on for
 * ever; outages are logged once — and the Sentinel and Cluster forms live in redis-connection.ts.
 */
import { Cluster, type Redis } from 'ioredis';
import { createRedisConnection, type RedisConnectionOptions } from './redis-connection.js';

export { quitOrDisconnect, reconnectDelayMs } from './redis-connection.js';

/** Options for {@link createFailFastRedis}: those of a connection, with just a URL. */
export interface FailFastRedisOptions extends Omit<RedisConnectionOptions, 'connection'> {
  readonly url: string;
}

/** Creates a single-node connection (it connects in the background). */
export function createFailFastRedis(opts: FailFastRedisOptions): Redis {
  const client = createRedisConnection({ ...opts, connection: { url: opts.url } });
  if (client instanceof Cluster) throw new Error('unreachable: a url connection is never a cluster');
  return client;
}
