/**
 * Cancel keys. Each client gets a BackendKeyData of the gateway's own (random process id and
 * secret); a CancelRequest is forwarded to the upstream backend only when both match a live
 * connection, with that backend's real key. A client can never name another connection's backend,
 * and upstream keys never leave the gateway.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { cancelRequest } from './protocol.js';

/** An upstream backend that may be cancelled. */
export interface CancelTarget {
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly secret: number;
}

/** The key a client got, and how to give it back. */
export interface ClientCancelKey {
  readonly pid: number;
  readonly secret: number;
  release(): void;
}

/** Sends a CancelRequest to an upstream (fire and forget; failures are ignored, as PostgreSQL's own are). */
export function sendCancel(target: CancelTarget, timeoutMs = 5000): void {
  const socket = net.connect({ host: target.host, port: target.port });
  socket.setTimeout(timeoutMs, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('connect', () => socket.end(cancelRequest(target.pid, target.secret)));
}

/** Creates the registry shared by every database listener of a gateway. */
export function createCancelKeys() {
  const live = new Map<string, CancelTarget>();
  const keyOf = (pid: number, secret: number) => `${pid}:${secret}`;
  return {
    /** Hands out a fresh client key for an upstream backend. */
    register(target: CancelTarget): ClientCancelKey {
      for (;;) {
        const bytes = randomBytes(8);
        const pid = (bytes.readUInt32BE(0) & 0x7fffffff) || 1;
        const secret = bytes.readInt32BE(4);
        const k = keyOf(pid, secret);
        if (live.has(k)) continue;
        live.set(k, target);
        return { pid, secret, release: () => live.delete(k) };
      }
    },
    /** Forwards a client's CancelRequest; false when the key names no live connection. */
    cancel(pid: number, secret: number): boolean {
      const target = live.get(keyOf(pid, secret));
      if (target === undefined) return false;
      sendCancel(target);
      return true;
    },
    size: () => live.size,
  };
}

/** The registry. */
export type CancelKeys = ReturnType<typeof createCancelKeys>;
