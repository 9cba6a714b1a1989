/**
 * The database gateway: one PostgreSQL listener per configured database, the cancel keys they
 * share, and the set of live connections (closed with a FATAL error on shutdown). Listen addresses
 * and TLS files are read at start; everything else (upstream, allow, token rules, audit caps) is
 * read from the current configuration for each new connection, and re-checks of open connections
 * judge them against it too.
 */
import { readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import tls, { type SecureContext } from 'node:tls';
import type { DatabaseConfig } from '../config/index.js';
import { createCancelKeys } from './cancel-keys.js';
import { serveClient, type ConnectionDeps, type LiveConnection } from './client-connection.js';
import { errorResponse } from './protocol.js';
import { createSaltedPasswordCache } from './upstream-auth.js';

/** What the gateway needs. */
export interface DatabaseGatewayDeps extends Omit<ConnectionDeps, 'cancelKeys' | 'saltCache'> {
  /** The databases of the current configuration. */
  readonly databases: () => readonly DatabaseConfig[];
}

function splitListen(listen: string): { host: string | undefined; port: number } {
  const idx = listen.lastIndexOf(':');
  let host = listen.slice(0, idx);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host: host === '' ? undefined : host, port: Number(listen.slice(idx + 1)) };
}

/** Creates the gateway; nothing listens until `start`. */
export function createDatabaseGateway(deps: DatabaseGatewayDeps) {
  const connectionDeps: ConnectionDeps = { ...deps, cancelKeys: createCancelKeys(), saltCache: createSaltedPasswordCache() };
  const servers = new Map<string, net.Server>();
  const addresses = new Map<string, AddressInfo>();
  const live = new Set<LiveConnection>();
  /** Every accepted socket, authenticated or not (shutdown destroys what is left after the grace). */
  const sockets = new Set<net.Socket>();
  let draining = false;

  function current(id: string): DatabaseConfig | undefined {
    return deps.databases().find((d) => d.id === id);
  }

  function listen(db: DatabaseConfig): Promise<void> {
    let context: SecureContext | undefined;
    if (db.tls !== undefined) context = tls.createSecureContext({ cert: readFileSync(db.tls.cert), key: readFileSync(db.tls.key) });
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      const cfg = current(db.id);
      if (cfg === undefined || draining) {
        socket.on('error', () => socket.destroy());
        // Before any startup packet: a bare ErrorResponse is what PostgreSQL sends when it cannot serve.
        socket.end(errorResponse({ severity: 'FATAL', code: draining ? '57P03' : '3D000', message: draining ? 'the gateway is shutting down' : `the database "${db.id}" is no longer served here` }));
        return;
      }
      serveClient(
        socket,
        {
          database: cfg,
          current: () => current(db.id),
          tls: context,
          register: (c) => {
            live.add(c);
            return () => live.delete(c);
          },
          draining: () => draining,
        },
        connectionDeps,
      );
    });
    servers.set(db.id, server);
    const { host, port } = splitListen(db.listen);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        server.on('error', (err) => deps.logger.error({ err, database: db.id }, 'database listener error'));
        addresses.set(db.id, server.address() as AddressInfo);
        resolve();
      });
    });
  }

  async function closeServers(): Promise<void> {
    await Promise.all([...servers.values()].map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
    servers.clear();
  }

  return {
    /** Starts a listener per database; on any failure closes those opened and rejects naming the address. */
    async start(databases: readonly DatabaseConfig[]): Promise<ReadonlyMap<string, AddressInfo>> {
      for (const db of databases) {
        try {
          await listen(db);
        } catch (err) {
          await closeServers();
          const detail = err instanceof Error ? err.message : String(err);
          throw new Error(`cannot listen on ${db.listen} (databases.${db.id}.listen): ${detail}`, { cause: err });
        }
      }
      return addresses;
    },
    /** Where each database listens (after `start`). */
    addresses: (): ReadonlyMap<string, AddressInfo> => addresses,
    /** Open client connections. */
    connections: () => live.size,
    /** Stops listening and ends every connection with FATAL 57P01 (the upstream rolls back open transactions). */
    async stop(graceMs = 2000): Promise<void> {
      draining = true;
      const closing = closeServers();
      const ends = [...live].map((c) => c.terminate('gateway-shutdown', { severity: 'FATAL', code: '57P01', message: 'terminating connection due to gateway shutdown' }));
      await Promise.race([Promise.all(ends), new Promise((r) => setTimeout(r, graceMs).unref())]);
      for (const s of sockets) s.destroy();
      await closing;
    },
  };
}

/** The database gateway. */
export type DatabaseGateway = ReturnType<typeof createDatabaseGateway>;
