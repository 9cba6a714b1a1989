/**
 * Forwards a WebSocket upgrade: performs the handshake with the upstream, relays its answer, then
 * splices the two sockets, counting bytes both ways. Frames pass through untouched (extensions and
 * subprotocols are negotiated end to end).
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
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
  /** Called once the 101 has been relayed and the sockets are spliced. */
  readonly onOpen?: () => void;
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
      // The upstream answered without upgrading: relay its answer and close.
      client.write(headerBlock(`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}`, res.rawHeaders.concat(['connection', 'close'])));
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
      client.write(headerBlock(`HTTP/1.1 101 ${res.statusMessage ?? 'Switching Protocols'}`, res.rawHeaders));
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
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      spec.onOpen?.();
    });
    upstreamReq.end();
  });
}
