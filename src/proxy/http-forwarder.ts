/**
 * Forwards one HTTP request to an upstream over a keep-alive undici Pool, streaming both bodies with
 * back-pressure (nothing large is buffered). See docs/adr/0001-proxy-engine.md for why undici.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { buildClientResponseHeaders } from './headers.js';

/** How an upstream failed, for metrics and the 502/504 choice. */
export type UpstreamFailureKind = 'connect' | 'timeout' | 'reset' | 'protocol' | 'body-too-large' | 'client-aborted';

/** The outcome of one forwarded request. */
export type ForwardResult =
  | { readonly ok: true; readonly status: number; readonly bytesOut: number; readonly ttfbNs: bigint }
  | {
      readonly ok: false;
      readonly kind: UpstreamFailureKind;
      /** Whether response headers had already been sent to the client (then the socket was reset). */
      readonly responseStarted: boolean;
      readonly error: Error;
      readonly status: number;
      readonly bytesOut: number;
      readonly ttfbNs: bigint | undefined;
    };

/** What to send upstream. */
export interface ForwardSpec {
  readonly pool: Dispatcher;
  /** Canonical path plus `?query`, exactly as judged by policy. */
  readonly path: string;
  readonly method: string;
  /** Flat `[name, value, …]` list from buildUpstreamHeaders. */
  readonly headers: string[];
  readonly requestId: string;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  /** Refuse request bodies above this many bytes (checked while streaming when there is no Content-Length). */
  readonly maxBodyBytes: number;
  /** Whether the request carries a body (Content-Length > 0 or Transfer-Encoding). */
  readonly hasBody: boolean;
  /** Whether the request has a Content-Length (then its size was checked before forwarding). */
  readonly hasContentLength: boolean;
}

class BodyTooLargeError extends Error {
  constructor() {
    super('request body exceeds the configured limit');
    this.name = 'BodyTooLargeError';
  }
}

/** Counts bytes through a chunked request body and fails once it passes the limit. */
function limitBody(source: Readable, max: number): Readable {
  let seen = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      seen += chunk.length;
      if (seen > max) cb(new BodyTooLargeError());
      else cb(null, chunk);
    },
  });
  source.on('error', (err) => limiter.destroy(err));
  return source.pipe(limiter);
}

function classify(err: Error): UpstreamFailureKind {
  if (err instanceof BodyTooLargeError) return 'body-too-large';
  const code = (err as { code?: unknown }).code;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'timeout';
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
      return 'connect';
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CLOSED':
      return 'reset';
    case 'UND_ERR_ABORTED':
      return 'client-aborted';
    default:
      return 'protocol';
  }
}

/**
 * Streams `req` to the upstream and the upstream's answer to `res`. Resolves once the response has
 * ended or failed; never rejects. On failure before the response started, nothing has been written
 * to `res` (the caller answers 502/504/413); after that, `res` has been destroyed.
 */
export function forwardHttp(req: IncomingMessage, res: ServerResponse, spec: ForwardSpec): Promise<ForwardResult> {
  return new Promise<ForwardResult>((resolve) => {
    const started = process.hrtime.bigint();
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let bytesOut = 0;
    let ttfbNs: bigint | undefined;
    let responseStarted = false;
    let settled = false;

    const settle = (result: ForwardResult) => {
      if (settled) return;
      settled = true;
      res.off('close', onClientClose);
      resolve(result);
    };
    const fail = (err: Error) => {
      const kind = classify(err);
      if (responseStarted) res.destroy(err);
      settle({ ok: false, kind, responseStarted, error: err, status, bytesOut, ttfbNs });
    };
    const gone = () => Object.assign(new Error('client closed the connection'), { code: 'UND_ERR_ABORTED' });
    let clientGone = false;
    const onClientClose = () => {
      if (res.writableFinished) return;
      clientGone = true;
      controller?.abort(gone());
    };
    // The client may be gone before the request is even dispatched (its connection was cut while the
    // request waited to be admitted): nothing is sent upstream then.
    if (res.destroyed || req.destroyed) {
      settle({ ok: false, kind: 'client-aborted', responseStarted: false, error: gone(), status: 0, bytesOut: 0, ttfbNs: undefined });
      return;
    }
    res.on('close', onClientClose);

    let body: Readable | null = null;
    if (spec.hasBody) body = spec.hasContentLength ? req : limitBody(req, spec.maxBodyBytes);

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        // …or between the dispatch and now.
        if (clientGone) c.abort(gone());
      },
      onResponseStart(c, statusCode, headers, statusMessage) {
        status = statusCode;
        ttfbNs = process.hrtime.bigint() - started;
        responseStarted = true;
        const out = buildClientResponseHeaders(headers, spec.requestId);
        try {
          if (statusMessage !== undefined && statusMessage !== '') res.writeHead(statusCode, statusMessage, out);
          else res.writeHead(statusCode, out);
        } catch (err) {
          c.abort(err instanceof Error ? err : new Error(String(err)));
        }
      },
      onResponseData(c, chunk) {
        bytesOut += chunk.length;
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => {
            c.resume();
          });
        }
      },
      onResponseEnd() {
        res.end();
        settle({ ok: true, status, bytesOut, ttfbNs: ttfbNs ?? 0n });
      },
      onResponseError(_c, err) {
        fail(err);
      },
    };

    try {
      spec.pool.dispatch(
        {
          path: spec.path,
          method: spec.method,
          headers: spec.headers,
          body,
          headersTimeout: spec.headersTimeoutMs,
          bodyTimeout: spec.bodyTimeoutMs,
        },
        handler,
      );
    } catch (err) {
      fail(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** Options for an upstream connection pool. */
export interface UpstreamPoolOptions {
  readonly connectTimeoutMs: number;
  readonly keepAliveTimeoutMs?: number;
  readonly connections?: number;
}

/** Creates the keep-alive pool for one upstream origin. */
export function createUpstreamPool(origin: string, opts: UpstreamPoolOptions): Pool {
  return new Pool(origin, {
    connections: opts.connections ?? 64, // 8–64 did best on loopback (docs/adr/0001)
    pipelining: 1,
    connectTimeout: opts.connectTimeoutMs,
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? 4_000,
    keepAliveMaxTimeout: 600_000,
    strictContentLength: true,
  });
}
