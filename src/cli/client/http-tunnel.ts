/**
 * The HTTP side of `portcullis tunnel`: a local HTTP server that forwards every request to one of the
 * gateway's routes with the token attached (a fresh DPoP proof per request when bound), streaming
 * bodies both ways, WebSocket upgrades included — for tools that cannot set headers.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { CliIo } from '../io.js';
import type { Session } from './gateway-client.js';
import { readStepUpChallenge, stepUpUrlForToken } from './step-up.js';
import { listenOn } from './listen.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the credentials the tunnel replaces. */
const DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'authorization', 'dpop', 'host']);

/** The upstream path for a local request path: kept when it is already under the route's prefix, else prefixed. */
export function tunnelTargetPath(prefix: string, localPath: string): string {
  const base = prefix.replace(/\/+$/, '');
  if (base === '') return localPath;
  const pathOnly = localPath.split('?')[0] ?? '';
  if (pathOnly === base || pathOnly.startsWith(`${base}/`)) return localPath;
  return `${base}${localPath.startsWith('/') ? '' : '/'}${localPath}`;
}

function forwardHeaders(headers: IncomingHttpHeaders, keepUpgrade: boolean): OutgoingHttpHeaders {
  const named = new Set(
    (headers.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== '' && !(keepUpgrade && s === 'upgrade')),
  );
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || named.has(k)) continue;
    if (DROP.has(k) && !(keepUpgrade && k === 'upgrade')) continue;
    out[k] = v;
  }
  return out;
}

/** A running HTTP tunnel. */
export interface HttpTunnel {
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the local server on `host:port` forwarding to `routeUrl`. */
export async function startHttpTunnel(session: Session, routeUrl: URL, host: string, port: number, io: CliIo, fresh: () => Promise<void>): Promise<HttpTunnel> {
  const client = routeUrl.protocol === 'https:' ? https : http;
  const agent = new client.Agent({ keepAlive: true });
  const sockets = new Set<Socket | Duplex>();
  let warnedStepUp = false;

  const target = (localUrl: string | undefined): URL => new URL(tunnelTargetPath(routeUrl.pathname, localUrl ?? '/'), routeUrl.origin);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    await fresh();
    const url = target(req.url);
    const method = req.method ?? 'GET';
    const headers = { ...forwardHeaders(req.headers, false), host: url.host, ...(await session.authHeaders(method, url)) };
    const up = client.request(url, { method, headers, agent });
    up.on('response', (upRes) => {
      const out = forwardHeaders(upRes.headers, false);
      const location = upRes.headers.location;
      if (typeof location === 'string' && location.startsWith(routeUrl.origin)) out.location = location.slice(routeUrl.origin.length) || '/';
      const www = upRes.headers['www-authenticate'];
      const challenge = readStepUpChallenge(upRes.statusCode ?? 0, www === undefined ? [] : [www]);
      if (challenge !== undefined && !warnedStepUp) {
        warnedStepUp = true;
        io.stderr(`${method} ${url.pathname} needs a fresh second factor; confirm it in a browser, then retry: ${stepUpUrlForToken(session.origin, session.creds.access_token, challenge)}\n`);
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, out);
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
    });
    up.on('error', (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`portcullis tunnel: cannot reach ${url.origin}: ${err.message}\n`);
      } else res.destroy();
    });
    req.pipe(up);
    req.on('error', () => up.destroy());
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
  }

  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    await fresh();
    const url = target(req.url);
    const headers = { ...forwardHeaders(req.headers, true), host: url.host, connection: 'Upgrade', upgrade: req.headers.upgrade ?? 'websocket', ...(await session.authHeaders('GET', url)) };
    const up = client.request(url, { method: 'GET', headers });
    up.on('upgrade', (upRes, upSocket, upHead) => {
      sockets.add(upSocket);
      upSocket.once('close', () => sockets.delete(upSocket));
      const lines = [`HTTP/1.1 101 ${upRes.statusMessage ?? 'Switching Protocols'}`];
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) lines.push(`${upRes.rawHeaders[i] ?? ''}: ${upRes.rawHeaders[i + 1] ?? ''}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      upSocket.on('error', () => socket.destroy());
      socket.on('error', () => upSocket.destroy());
      upSocket.on('close', () => socket.destroy());
      socket.on('close', () => upSocket.destroy());
    });
    up.on('response', (upRes) => {
      // Refused (401, 403 …): pass the answer on and close.
      const lines = [`HTTP/1.1 ${upRes.statusCode ?? 502} ${upRes.statusMessage ?? ''}`];
      const out = forwardHeaders(upRes.headers, false);
      for (const [k, v] of Object.entries(out)) if (v !== undefined) lines.push(`${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`);
      lines.push('connection: close');
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      upRes.pipe(socket);
    });
    up.on('error', () => socket.destroy());
    up.end();
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`portcullis tunnel: ${err instanceof Error ? err.message : String(err)}\n`);
      } else res.destroy();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    upgrade(req, socket, head).catch(() => socket.destroy());
  });
  const bound = await listenOn(server, port, host);
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      }),
  };
}
