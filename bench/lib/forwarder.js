// One reverse-proxy engine in its own process (so it never shares an event loop with the load
// generator or with the other engines).
//   node bench/lib/forwarder.js ENGINE UPSTREAM_PORT [POOL_CONNECTIONS]
// Prints one line `{"port":N}` on stdout once listening on 127.0.0.1.
//
// Engines:
//   undici-dispatch      undici Pool.dispatch() with a controller handler (undici 7 handler API)
//   undici-dispatch-raw  undici Pool.dispatch() with the legacy raw-headers handler API
//   undici-stream        undici Pool.stream() with the ServerResponse as the Writable
//   http-proxy-agent     http-proxy 1.18 with a keep-alive http.Agent
//   http-proxy           http-proxy 1.18 as shipped (no agent: one upstream connection per request)
//   node-pipe            http.request + pipe both ways with a keep-alive http.Agent
//
// Every engine strips hop-by-hop headers (RFC 9110 §7.6.1: the fixed list plus every header named
// in Connection) in both directions, streams bodies both ways with back-pressure, and aborts the
// upstream request when the client goes away — except the two http-proxy engines, which are run
// exactly as the library does it (that is what the correctness check is for).
import http from 'node:http';
import { Pool } from 'undici';
import httpProxy from 'http-proxy';

const [engine, upstreamPortArg, poolArg] = process.argv.slice(2);
const UPSTREAM_PORT = Number(upstreamPortArg);
const ORIGIN = `http://127.0.0.1:${UPSTREAM_PORT}`;
const POOL_CONNECTIONS = Number(poolArg ?? process.env.BENCH_POOL ?? 64);

// Hop-by-hop headers. `expect` is not hop-by-hop, but undici refuses it (NotSupportedError) and
// node:http has already answered `100-continue` to the client, so it must not be forwarded either.
const HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'expect', 'http2-settings',
]);

/** Connection-nominated header names (lower case), or null when there is no Connection header. */
function connectionTokens(raw) {
  let tokens = null;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    if (k.length === 10 && k.toLowerCase() === 'connection') {
      for (const t of String(raw[i + 1]).split(',')) {
        const n = t.trim().toLowerCase();
        if (n) (tokens ??= new Set()).add(n);
      }
    }
  }
  return tokens;
}

/** req.rawHeaders -> flat [k, v, k, v] without hop-by-hop headers (undici and writeHead take it). */
function forwardRequestHeaders(raw) {
  const tokens = connectionTokens(raw);
  const out = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lk = raw[i].toLowerCase();
    if (HOP.has(lk) || (tokens !== null && tokens.has(lk))) continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** undici's parsed response headers object (lower-case keys) -> same object without hop-by-hop. */
function stripResponseObject(headers) {
  const c = headers.connection;
  if (c !== undefined) {
    for (const t of (Array.isArray(c) ? c.join(',') : c).split(',')) delete headers[t.trim().toLowerCase()];
  }
  for (const k of HOP) if (headers[k] !== undefined) delete headers[k];
  return headers;
}

/** Raw response headers (Buffers or strings, flat) -> flat string array without hop-by-hop. */
function stripResponseRaw(raw) {
  const str = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) str[i] = raw[i].toString('latin1');
  return forwardRequestHeaders(str);
}

function hasBody(req) {
  const cl = req.headers['content-length'];
  if (cl !== undefined) return cl !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

function badGateway(res, err) {
  if (!res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain', 'content-length': 12 });
    res.end('bad gateway\n');
  } else {
    res.destroy(err);
  }
}

function undiciPool() {
  return new Pool(ORIGIN, {
    connections: POOL_CONNECTIONS,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 60_000,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
}

// ---- undici Pool.dispatch(), undici 7 controller handler -------------------------------------
class ForwardHandler {
  constructor(res) {
    this.res = res;
    this.controller = null;
    this.clientGone = false;
    res.on('close', () => {
      if (res.writableFinished) return;
      this.clientGone = true;
      this.controller?.abort(new Error('client went away'));
    });
  }
  onRequestStart(controller) {
    this.controller = controller;
    if (this.clientGone) controller.abort(new Error('client went away'));
  }
  onResponseStart(controller, statusCode, headers, statusMessage) {
    if (statusCode < 200) return; // 1xx: not relayed in this benchmark
    this.res.writeHead(statusCode, statusMessage, stripResponseObject(headers));
  }
  onResponseData(controller, chunk) {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }
  onResponseEnd() {
    this.res.end();
  }
  onResponseError(controller, err) {
    badGateway(this.res, err);
  }
}

// ---- undici Pool.dispatch(), legacy raw handler (onConnect/onHeaders/onData/onComplete) ------
class RawForwardHandler {
  constructor(res) {
    this.res = res;
    this.abort = null;
    this.clientGone = false;
    this.resume = null;
    res.on('close', () => {
      if (res.writableFinished) return;
      this.clientGone = true;
      this.abort?.(new Error('client went away'));
    });
  }
  onConnect(abort) {
    this.abort = abort;
    if (this.clientGone) abort(new Error('client went away'));
  }
  onHeaders(statusCode, rawHeaders, resume, statusMessage) {
    if (statusCode < 200) return true;
    this.res.writeHead(statusCode, statusMessage, stripResponseRaw(rawHeaders));
    this.resume = resume;
    return true;
  }
  onData(chunk) {
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.resume);
    return false;
  }
  onComplete() {
    this.res.end();
  }
  onError(err) {
    badGateway(this.res, err);
  }
}

function makeHandler() {
  switch (engine) {
    case 'undici-dispatch':
    case 'undici-dispatch-raw': {
      const pool = undiciPool();
      const H = engine === 'undici-dispatch' ? ForwardHandler : RawForwardHandler;
      return (req, res) => {
        pool.dispatch(
          { path: req.url, method: req.method, headers: forwardRequestHeaders(req.rawHeaders), body: hasBody(req) ? req : null },
          new H(res),
        );
      };
    }
    case 'undici-stream': {
      const pool = undiciPool();
      const factory = ({ statusCode, headers, opaque }) => {
        opaque.writeHead(statusCode, stripResponseObject(headers));
        return opaque;
      };
      return (req, res) => {
        const ac = new AbortController();
        res.on('close', () => { if (!res.writableFinished) ac.abort(); });
        pool.stream(
          {
            path: req.url, method: req.method, headers: forwardRequestHeaders(req.rawHeaders),
            body: hasBody(req) ? req : null, opaque: res, signal: ac.signal,
          },
          factory,
          (err) => { if (err) badGateway(res, err); },
        );
      };
    }
    case 'http-proxy-agent':
    case 'http-proxy': {
      const agent = engine === 'http-proxy-agent' ? new http.Agent({ keepAlive: true }) : undefined;
      const proxy = httpProxy.createProxyServer({ target: ORIGIN, agent });
      proxy.on('error', (err, req, res) => badGateway(res, err));
      return (req, res) => proxy.web(req, res);
    }
    case 'node-pipe': {
      const agent = new http.Agent({ keepAlive: true });
      return (req, res) => {
        const up = http.request({
          host: '127.0.0.1', port: UPSTREAM_PORT, method: req.method, path: req.url,
          headers: forwardRequestHeaders(req.rawHeaders), agent,
        });
        up.on('response', (ures) => {
          res.writeHead(ures.statusCode, ures.statusMessage, stripResponseRaw(ures.rawHeaders));
          ures.pipe(res);
        });
        up.on('error', (err) => badGateway(res, err));
        res.on('close', () => { if (!res.writableFinished) up.destroy(); });
        if (hasBody(req)) req.pipe(up);
        else up.end();
      };
    }
    default:
      throw new Error(`unknown engine ${engine}`);
  }
}

const server = http.createServer(makeHandler());
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, engine, pool: POOL_CONNECTIONS }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
