/**
 * Builds the audit sink the configuration asks for (`audit.sink`): `file` (the embedded default) or
 * `redis` (Redis Streams; one node, Sentinel or Cluster).
 */
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import { createFileSink } from './file-sink.js';
import { createRedisSink } from './redis-sink.js';
import type { AuditSink } from './sink.js';

/** Dependencies of {@link createAuditSink}. */
export interface CreateAuditSinkOptions {
  readonly logger?: Logger;
}

/**
 * Creates the configured {@link AuditSink}: `file` writes under `audit.sink.dir`, `redis` connects to
 * `audit.sink.url` and keeps each log under `audit.sink.stream`. Neither touches disk or network
 * before the first call beyond the Redis sink starting to connect.
 */
export function createAuditSink(config: Config['audit']['sink'], opts: CreateAuditSinkOptions = {}): AuditSink {
  const logger = opts.logger === undefined ? {} : { logger: opts.logger };
  switch (config.type) {
    case 'file':
      return createFileSink({ dir: config.dir, ...logger });
    case 'redis':
      return createRedisSink({ connection: config, stream: config.stream, ...logger });
  }
}
