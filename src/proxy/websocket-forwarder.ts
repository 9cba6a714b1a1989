/**
 * Forwards a WebSocket upgrade: performs the handshake with the upstream, relays its answer, then
 * splices the two sockets, counting bytes both ways. Frames pass through untouched (extensions and
 * subprotocols are negotiated end to end).
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { buildClientResponseHeaders } from './headers.js';
import { createFrameCounter } from './websocket-frames.js';

/** The outcome of a WebSocket forward, reported once the connection is over. */
export type WebSocketResult =
  | {
      readonly ok: true;
      readonly bytesIn: number;
      readonly bytesOut: number;
      readonly messagesIn: number;
      readonly messagesOut: number;
      readonly openedAtNs: bigint;
    }
  | { readonly ok: false; readonly kind: 'connect' | 'timeout' | 'rejected'; readonly status: number; readonly error: Error | undefined };

/** What to connect to. */
export interface WebSocketSpec {
  readonly upstream: URL;
  /** Canonical path plus `?query`. */
  readonly path: string;
  /** Flat `[name, value, …]` list from buildUpstreamHeaders (with keepUpgrade). */
  readonly headers: string[];
  readonly connectTimeoutMs: number;
  /** The gateway's request id, sent to the client on the upstream's answer (never the upstream's own). */
  readonly requestId?: string;
  /** Called once the 101 has been relayed and the sockets are spliced. */
  readonly onOpen?: () => void;
  /**
   * Aborting closes an open connection: the client gets a close frame (1008, policy violation) when
   * the relay is between frames, and both sockets are closed.
   */
  readonly signal?: AbortSignal;
}

/** A server close frame: FIN + close opcode, code 1008 (policy violation), no reason text. */
const POLICY_CLOSE_FRAME = Buffer.from([0x88, 0x02, 0x03, 0xf0]);

/** A flat `[name, value, …]` list without the named header. */
function withoutHeader(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if ((raw[i] ?? '').toLowerCase() !== name) out.push(raw[i] ?? '', raw[i + 1] ?? '');
  return out;
}

function headerBlock(statusLine: string, raw: readonly string[]): string {
  let out = `${statusLine}\r\n`;
  for (let i = 0; i + 1 < raw.length; i += 2) out += `${raw[i] ?? ''}: ${raw[i + 1] ?? ''}\r\n`;
  return `${out}\r\n`;
}

/**
 * Relays the upgrade on `client` (the socket Node handed to the 'upgrade' event, with `head` the
 * bytes already read past the handshake). Resolves when both sockets are closed, or when the upstream
 * refused the upgrade (its response has then been relayed and the client socket ended), or failed.
 * On `ok: false` with `kind` connect/timeout, nothing has been written to `client`.
 */
export function forwardWebSocket(client: Duplex, head: Buffer, spec: WebSocketSpec): Promise<WebSocketResult> {
  return new Promise<WebSocketResult>((resolve) => {
    const lib = spec.upstream.protocol === 'https:' ? https : http;
    const headers: [string, string][] = [];
    for (let i = 0; i + 1 < spec.headers.length; i += 2) headers.push([spec.headers[i] ?? '', spec.headers[i + 1] ?? '']);
    const upstreamReq = lib.request({
      host: spec.upstream.hostname,
      port: spec.upstream.port === '' ? undefined : Number(spec.upstream.port),
      method: 'GET',
      path: spec.path,
      headers: headers.flat(),
      agent: false,
      timeout: spec.connectTimeoutMs,
    });
    let done = false;
    const finish = (r: WebSocketResult) => {
      if (!done) {
        done = true;
        resolve(r);
      }
    };

    upstreamReq.on('timeout', () => {
      upstreamReq.destroy(Object.assign(new Error('upstream WebSocket handshake timed out'), { code: 'ETIMEDOUT' }));
    });
    upstreamReq.on('error', (err: Error & { code?: string }) => {
      finish({ ok: false, kind: err.code === 'ETIMEDOUT' ? 'timeout' : 'connect', status: 0, error: err });
    });
    upstreamReq.on('response', (res) => {
      // The upstream answered without upgrading: relay its answer (without its hop-by-hop headers) and close.
      const relayed = spec.requestId === undefined ? withoutHeader(buildClientResponseHeaders(res.headers, ''), 'x-portcullis-request-id') : buildClientResponseHeaders(res.headers, spec.requestId);
      client.write(headerBlock(`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}`, relayed.concat(['connection', 'close'])));
      res.pipe(client);
      res.on('end', () => client.end());
      finish({ ok: false, kind: 'rejected', status: res.statusCode ?? 502, error: undefined });
    });
    upstreamReq.on('upgrade', (res, upstream, upstreamHead) => {
      upstreamReq.setTimeout(0);
      const openedAtNs = process.hrtime.bigint();
      let bytesIn = head.length;
      let bytesOut = upstreamHead.length;
      const framesIn = createFrameCounter();
      const framesOut = createFrameCounter();
      framesIn.push(head);
      framesOut.push(upstreamHead);
      const upgraded = withoutHeader(res.rawHeaders, 'x-portcullis-request-id').concat(spec.requestId === undefined ? [] : ['x-portcullis-request-id', spec.requestId]);
      client.write(headerBlock(`HTTP/1.1 101 ${res.statusMessage ?? 'Switching Protocols'}`, upgraded));
      if (upstreamHead.length > 0) client.write(upstreamHead);
      if (head.length > 0) upstream.write(head);
      client.on('data', (chunk: Buffer) => {
        bytesIn += chunk.length;
        framesIn.push(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        bytesOut += chunk.length;
        framesOut.push(chunk);
      });
      client.pipe(upstream);
      upstream.pipe(client);
      let closed = 0;
      const onClose = () => {
        closed += 1;
        client.destroy();
        upstream.destroy();
        if (closed === 2) finish({ ok: true, bytesIn, bytesOut, messagesIn: framesIn.messages, messagesOut: framesOut.messages, openedAtNs });
      };
      client.once('close', onClose);
      upstream.once('close', onClose);
      const onAbort = () => {
        upstream.unpipe(client);
        const both = () => {
          client.destroy();
          upstream.destroy();
        };
        if (!framesOut.atBoundary() || !client.writable) {
          both();
          return;
        }
        client.end(POLICY_CLOSE_FRAME, both);
        setTimeout(both, 1000).unref(); // a client that does not read gets no longer
      };
      if (spec.signal?.aborted === true) onAbort();
      else spec.signal?.addEventListener('abort', onAbort, { once: true });
      client.once('close', () => spec.signal?.removeEventListener('abort', onAbort));
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      spec.onOpen?.();
    });
    upstreamReq.end();
  });
}
