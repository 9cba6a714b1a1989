/**
 * A snapshot is everything a request needs that comes from configuration, compiled once per config
 * load. The app swaps snapshots atomically on reload; a request keeps the one it started with.
 */
import type { Config, RouteConfig } from '../config/index.js';
import { compileRoutes, type RouteTable } from '../routing/index.js';
import { createClientAddressResolver, createTrustedProxyCheck, type ClientAddressResolver } from './trusted-proxies.js';
import { createUpstreamPool } from './http-forwarder.js';
import type { Pool } from 'undici';

/** One route's upstream: its origin and pool, shared across snapshots while the origin and timeouts match. */
export interface Upstream {
  readonly url: URL;
  /**
   * The pool to dispatch on. Looked up at use: a request that started on an older snapshot whose
   * pool was retired by a reload gets a live pool for the same origin instead of a closed one.
   */
  readonly pool: Pool;
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
}

/** The compiled configuration. */
export interface Snapshot {
  readonly version: number;
  readonly config: Readonly<Config>;
  readonly routes: RouteTable;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly clientAddress: ClientAddressResolver;
  readonly isTrustedPeer: (remoteAddress: string) => boolean;
  readonly scheme: 'http' | 'https';
}

/** Pools keyed by origin and connect timeout, reused across reloads so keep-alive survives them. */
export interface PoolRegistry {
  acquire(origin: string, connectTimeoutMs: number, keepAliveTimeoutMs: number): Pool;
  /** Closes (gracefully: in-flight requests finish) every pool not used by `live`. */
  retainOnly(live: readonly Snapshot[]): Promise<void>;
  closeAll(): Promise<void>;
}

/** Creates an empty pool registry. */
export function createPoolRegistry(): PoolRegistry {
  const pools = new Map<string, Pool>();
  return {
    acquire(origin, connectTimeoutMs, keepAliveTimeoutMs) {
      const key = `${origin}|${connectTimeoutMs}|${keepAliveTimeoutMs}`;
      let pool = pools.get(key);
      if (pool === undefined) {
        pool = createUpstreamPool(origin, { connectTimeoutMs, keepAliveTimeoutMs });
        pools.set(key, pool);
      }
      return pool;
    },
    async retainOnly(live) {
      const used = new Set<Pool>();
      for (const s of live) for (const u of s.upstreams.values()) used.add(u.pool);
      // (reading u.pool acquires: every pool a live snapshot needs exists and is kept)
      const closing: Promise<void>[] = [];
      for (const [key, pool] of pools) {
        if (!used.has(pool)) {
          pools.delete(key);
          closing.push(pool.close());
        }
      }
      await Promise.all(closing);
    },
    async closeAll() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.destroy()));
    },
  };
}

function upstreamFor(route: RouteConfig, config: Readonly<Config>, pools: PoolRegistry): Upstream {
  const url = new URL(route.upstream);
  const connectTimeoutMs = route.timeouts?.connect ?? config.server.timeouts.upstream_connect;
  const responseTimeoutMs = route.timeouts?.response ?? config.server.timeouts.upstream_response;
  // Keep pooled connections a little shorter-lived than a typical upstream keep-alive (5 s in Node).
  const keepAliveMs = 4_000;
  pools.acquire(url.origin, connectTimeoutMs, keepAliveMs);
  return {
    url,
    get pool() {
      return pools.acquire(url.origin, connectTimeoutMs, keepAliveMs);
    },
    connectTimeoutMs,
    responseTimeoutMs,
  };
}

/** Compiles a validated config into a snapshot. Pure apart from acquiring pools from the registry. */
export function createSnapshot(config: Readonly<Config>, version: number, pools: PoolRegistry): Snapshot {
  const upstreams = new Map<string, Upstream>();
  for (const r of config.routes) upstreams.set(r.id, upstreamFor(r, config, pools));
  return {
    version,
    config,
    routes: compileRoutes(config.routes),
    upstreams,
    clientAddress: createClientAddressResolver(config.server.trusted_proxies),
    isTrustedPeer: createTrustedProxyCheck(config.server.trusted_proxies),
    scheme: config.server.tls === undefined ? 'http' : 'https',
  };
}
