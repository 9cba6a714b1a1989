/**
 * One factory for every Redis connection the gateway opens (store, MFA credentials, audit sink): one
 * node (`url`), a Sentinel group (`sentinel`) or a Cluster (`cluster`), all with the fail-fast,
 * never-twice semantics of fail-fast-redis.ts:
 *
 * - every command is bounded by the command timeout (default 1 s), including time queued before the
 *   first connect and, in a Cluster, time spent following redirections;
 * - the offline queue holds commands only until the first `ready`; afterwards a command while Redis is
 *   away fails at once instead of piling up. (Cluster: a command for a node that is (re)connecting —
 *   e.g. a replica just promoted — waits for it, up to the command timeout, and is dropped unsent if
 *   it timed out meanwhile);
 * - a command in flight when its connection drops is rejected, never re-sent (INCR, GETDEL, XADD must
 *   not run twice): `autoResendUnfulfilledCommands: false` and, in a Cluster, `retryDelayOnFailover: 0`.
 *   A Cluster still follows MOVED/ASK and retries TRYAGAIN/CLUSTERDOWN: those replies mean the node did
 *   not run the command;
 * - reconnects back off to 1 s and go on for ever; outages are logged once, not per attempt.
 *
 * Sentinel: ioredis asks the sentinels for the current master, subscribes to `+switch-master`
 * (`failoverDetector`) and reconnects to the new master; a demoted master answering READONLY also
 * triggers a reconnect (the command itself is failed, not re-sent).
 *
 * Key layout and slots: every store and MFA operation touches one key, and each audit log's streams
 * share the hash tag `{<instance id>}` (src/audit/redis-sink.ts), so nothing the gateway sends is
 * cross-slot. Key names are the same in all three modes (no migration).
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/index.js';

/** How to reach Redis, as configured (`store.redis` or a redis `audit.sink`). */
export type RedisConnectionConfig = Pick<NonNullable<Config['store']['redis']>, 'url' | 'sentinel' | 'cluster'>;

/** A connection from {@link createRedisConnection}: one node (also via Sentinel) or a Cluster. */
export type RedisClient = Redis | Cluster;

/** The URL used when a connection block names none of url, sentinel, cluster. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379/0';

/** Options for {@link createRedisConnection}. */
export interface RedisConnectionOptions {
  readonly connection: RedisConnectionConfig;
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

/** `host:port` / `[v6]:port` → ioredis's {host, port}. */
export function parseRedisNode(node: string): { host: string; port: number } {
  const at = node.lastIndexOf(':');
  const host = node.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(node.slice(at + 1)) };
}

/**
 * When each Cluster command must have settled: set when it is first issued, kept across MOVED/ASK
 * and pipeline re-sends (ioredis re-sends the same Command object), so redirections never extend it.
 */
const deadlines = new WeakMap<object, number>();

/** True when `command` is past its deadline: it has been (or is being) rejected, and must not be sent. */
function expired(command: object): boolean {
  const deadline = deadlines.get(command);
  return deadline !== undefined && Date.now() >= deadline;
}

/** A Cluster whose every command is bounded by the command timeout from the moment it is issued. */
class BoundedCluster extends Cluster {
  constructor(
    nodes: { host: string; port: number }[],
    options: ClusterOptions,
    private readonly commandTimeoutMs: number,
  ) {
    super(nodes, options);
  }

  override sendCommand(...args: Parameters<Cluster['sendCommand']>): ReturnType<Cluster['sendCommand']> {
    const [command] = args;
    let deadline = deadlines.get(command);
    if (deadline === undefined) {
      deadline = Date.now() + this.commandTimeoutMs;
      deadlines.set(command, deadline);
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      // A re-send (redirection, retry) after the caller's time ran out: fail it, never send it.
      command.reject(new Error(`Command timed out after ${this.commandTimeoutMs}ms`));
      return command.promise;
    }
    // ioredis's own timer (cleared whenever the command settles, so a re-send starts one again).
    command.setTimeout(left);
    return super.sendCommand(...args);
  }
}

/**
 * Makes a cluster node connection skip commands that already timed out: ioredis flushes a node's
 * offline queue (commands that waited while the node connected, e.g. right after a failover made a
 * replica the master) without looking, and such a command must not run after its caller gave up.
 */
function skipTimedOut(node: Redis): void {
  const send = node.sendCommand.bind(node);
  node.sendCommand = (...args: Parameters<Redis['sendCommand']>): ReturnType<Redis['sendCommand']> => {
    const [command] = args;
    return expired(command) ? command.promise : send(...args);
  };
}

/** Creates the connection (it connects in the background). */
export function createRedisConnection(opts: RedisConnectionOptions): RedisClient {
  const log = opts.logger;
  const connectTimeout = opts.connectTimeoutMs ?? 2000;
  const commandTimeout = opts.commandTimeoutMs ?? 1000;
  const common: RedisOptions = {
    connectionName: opts.connectionName,
    connectTimeout,
    commandTimeout,
    maxRetriesPerRequest: 1,
    autoResendUnfulfilledCommands: false,
  };
  const { url, sentinel, cluster } = opts.connection;
  let client: RedisClient;
  if (cluster !== undefined) {
    client = new BoundedCluster(
      cluster.nodes.map(parseRedisNode),
      {
        // Kept on: node connections come and go with the slot map (a promoted replica gets a new
        // one), and a command for a node still connecting waits for it. Every command is bounded by
        // the command timeout from the moment it is issued, and one that timed out is never sent
        // later (BoundedCluster, skipTimedOut), so nothing piles up or runs after its caller gave up.
        enableOfflineQueue: true,
        clusterRetryStrategy: reconnectDelayMs,
        retryDelayOnFailover: 0,
        slotsRefreshTimeout: Math.max(1000, commandTimeout),
        redisOptions: {
          ...common,
          // Node connections come and go with the slot map; the cluster decides about reconnecting.
          ...(cluster.username === undefined ? {} : { username: cluster.username }),
          ...(cluster.password === undefined ? {} : { password: cluster.password }),
          ...(cluster.tls ? { tls: {} } : {}),
        },
      },
      commandTimeout,
    );
  } else if (sentinel !== undefined) {
    client = new Redis({
      ...common,
      enableOfflineQueue: true, // until the first 'ready'
      retryStrategy: reconnectDelayMs,
      sentinelRetryStrategy: reconnectDelayMs,
      sentinels: sentinel.nodes.map(parseRedisNode),
      name: sentinel.name,
      role: 'master',
      db: sentinel.db,
      failoverDetector: true,
      // A demoted master refuses writes: reconnect (to whichever node the sentinels now name), never re-send.
      reconnectOnError: (err) => err.message.startsWith('READONLY'),
      ...(sentinel.username === undefined ? {} : { username: sentinel.username }),
      ...(sentinel.password === undefined ? {} : { password: sentinel.password }),
      ...(sentinel.sentinel_username === undefined ? {} : { sentinelUsername: sentinel.sentinel_username }),
      ...(sentinel.sentinel_password === undefined ? {} : { sentinelPassword: sentinel.sentinel_password }),
      ...(sentinel.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
    });
  } else {
    client = new Redis(url ?? DEFAULT_REDIS_URL, {
      ...common,
      enableOfflineQueue: true, // until the first 'ready'
      retryStrategy: reconnectDelayMs,
    });
  }
  let down = false;
  client.on('ready', () => {
    if (!(client instanceof Cluster)) client.options.enableOfflineQueue = false;
    if (down) log?.info(`${opts.what} reconnected`);
    down = false;
  });
  client.on('error', (err: Error) => {
    if (!down) log?.warn({ err }, `${opts.what} unavailable; operations fail until it returns`);
    else log?.debug({ err }, `${opts.what} still unavailable`);
    down = true;
  });
  client.on('close', () => {
    if (!down && !opts.isClosing()) log?.warn(`${opts.what} connection closed; reconnecting`);
    down = true;
  });
  if (client instanceof Cluster) {
    client.on('+node', skipTimedOut);
    // One node's trouble is not the cluster's: log it (once a minute per node; ioredis retries a dead
    // node many times a second until the slot map drops it), the slot map decides where commands go.
    const lastLogged = new Map<string, number>();
    client.on('node error', (err: Error, node: string) => {
      const now = Date.now();
      if (opts.isClosing() || now - (lastLogged.get(node) ?? 0) < 60_000) return;
      lastLogged.set(node, now);
      log?.warn({ err, node }, `${opts.what}: a cluster node is unavailable`);
    });
  }
  return client;
}

/** Ends a connection politely (QUIT) when it is up, else drops it. Never throws. */
export async function quitOrDisconnect(redis: RedisClient): Promise<void> {
  if (redis.status === 'ready') {
    try {
      await redis.quit();
    } catch {
      // fall through: drop the connection instead
    }
  }
  // Also after QUIT: it ends the data connection, not the Sentinel failover detector's subscriptions.
  redis.disconnect();
}

/**
 * SCAN for `match` over the whole keyspace: one node, or every master of a Cluster (SCAN is per
 * node). Keys come back at most once per node; the caller dedupes across a resharding.
 */
export async function scanKeys(redis: RedisClient, match: string, count: number): Promise<string[]> {
  // A Cluster knows its masters only once it has the slot map; a keyless PING waits for that (in
  // the offline queue before the first connect, bounded by the command timeout) or fails.
  if (redis instanceof Cluster && redis.status !== 'ready') await redis.ping();
  const nodes: Redis[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
  if (nodes.length === 0) throw new Error('the redis cluster has no reachable master');
  const keys: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', match, 'COUNT', count);
      keys.push(...found);
      cursor = next;
    } while (cursor !== '0');
  }
  return keys;
}
