/**
 * The store module's public surface: the {@link Store} port, its two adapters and the factory that
 * picks one from the configuration.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import { createMemoryStore } from './memory-store.js';
import { createRedisStore } from './redis-store.js';
import type { Store } from './store.js';

export type { Store } from './store.js';
export { createMemoryStore, type MemoryStore, type MemoryStoreOptions } from './memory-store.js';
export { createRedisStore, type RedisStoreOptions } from './redis-store.js';
export { createRedisConnection, type RedisClient, type RedisConnectionConfig } from './redis-connection.js';

/** Dependencies of {@link createStore}. */
export interface CreateStoreOptions {
  readonly logger?: Logger;
  /** The memory adapter's clock (tests); ignored by Redis, whose clock is the server's. */
  readonly now?: () => number;
}

/**
 * Builds the store the configuration asks for: `memory` (the default) or `redis` with
 * `store.redis` (`url`, `sentinel` or `cluster`) and `store.redis.key_prefix`.
 *
 * Precondition: `config` passed validation, which guarantees a `redis` block when `type` is `redis`.
 * @throws Error when that precondition is broken.
 */
export function createStore(config: Config['store'], opts: CreateStoreOptions = {}): Store {
  switch (config.type) {
    case 'memory':
      return createMemoryStore(opts.now === undefined ? {} : { now: opts.now });
    case 'redis': {
      if (config.redis === undefined) throw new Error('store.type is redis but store.redis is missing');
      return createRedisStore({
        connection: config.redis,
        keyPrefix: config.redis.key_prefix,
        ...(opts.logger === undefined ? {} : { logger: opts.logger }),
      });
    }
  }
}
