/**
 * A small TCP round-robin balancer for multi-instance tests (what a cloud L4 balancer or kube-proxy
 * does): each client connection is paired with one backend connection, backends are taken in turn,
 * and a backend that refuses the connection (its listener is closed: stopped or draining) is skipped
 * for the next one. It never parses HTTP, so it never re-sends bytes: once a backend accepted, the
 * pairing is final and a close on either side closes the other.
 */
import net, { type AddressInfo } from 'node:net';

/** A running balancer. */
export interface TcpBalancer {
  readonly port: number;
  /** Client connections paired per backend port, in total. */
  readonly paired: ReadonlyMap<number, number>;
  /** Connections refused by a backend (each retried on the next one). */
  refused(): number;
  close(): Promise<void>;
}

/** Listens on a free loopback port and balances over `backends` (ports on 127.0.0.1). */
export async function startTcpBalancer(backends: readonly number[]): Promise<TcpBalancer> {
  let next = 0;
  let refusedCount = 0;
  const paired = new Map<number, number>();
  const sockets = new Set<net.Socket>();

  /** Connects to the first backend (from the round-robin position) that accepts. */
  const connectBackend = (done: (backend: net.Socket | undefined) => void): void => {
    const start = next;
    next = (next + 1) % backends.length;
    const attempt = (i: number): void => {
      if (i === backends.length) {
        done(undefined);
        return;
      }
      const port = backends[(start + i) % backends.length] ?? 0;
      const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      const onError = (): void => {
        refusedCount++;
        socket.destroy();
        attempt(i + 1);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        paired.set(port, (paired.get(port) ?? 0) + 1);
        done(socket);
      });
    };
    attempt(0);
  };

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.pause();
    client.on('error', () => client.destroy());
    connectBackend((backend) => {
      if (backend === undefined || client.destroyed) {
        backend?.destroy();
        client.destroy();
        return;
      }
      sockets.add(backend);
      backend.once('close', () => sockets.delete(backend));
      backend.on('error', () => backend.destroy());
      // A FIN is passed on as a FIN (pipe ends the other side once written), a reset as a reset.
      client.pipe(backend);
      backend.pipe(client);
      backend.once('close', (hadError) => (hadError ? client.destroy() : client.end()));
      client.once('close', (hadError) => (hadError ? backend.destroy() : backend.end()));
      client.resume();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    paired,
    refused: () => refusedCount,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
