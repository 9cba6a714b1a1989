/**
 * A real upstream for tests that records everything it receives (method, raw target, raw headers,
 * body digest) and can be told to be slow, to answer large bodies, or to echo WebSocket messages.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface RecordedRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
  bodySha256: string;
  /** Trailer fields of a chunked body, as received. */
  rawTrailers: string[];
}

export interface RecordingUpstream {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  connections: number;
  /** Header values (lower-cased name) of the last request, all occurrences. */
  header(name: string): string[];
  close(): Promise<void>;
}

/**
 * Behaviour by path: `/slow?ms=N` waits N ms before answering; `/bytes?n=N` answers N bytes (streamed
 * in 64 KiB chunks); `/status?code=N` answers that status; `/gzip?n=N` answers N bytes gzip-encoded
 * (`Content-Encoding: gzip`); `/stall` answers headers and part of its body, then falls silent;
 * anything else answers a JSON summary.
 */
export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = [];
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    req.on('end', () => {
      const rec: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        headers: req.headers,
        bodyBytes: bytes,
        bodySha256: hash.digest('hex'),
        rawTrailers: req.rawTrailers,
      };
      requests.push(rec);
      const u = new URL(req.url ?? '/', 'http://x');
      if (u.pathname === '/slow') {
        const t = setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('slow ok\n'), Number(u.searchParams.get('ms') ?? '1000'));
        res.on('close', () => clearTimeout(t));
        return;
      }
      if (u.pathname === '/bytes') {
        const n = Number(u.searchParams.get('n') ?? '0');
        const chunk = Buffer.alloc(65536, 0x61);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
        let left = n;
        const pump = () => {
          while (left > 0) {
            const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
            left -= c.length;
            if (!res.write(c)) {
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        pump();
        return;
      }
      if (u.pathname === '/gzip') {
        // A compressed answer: the gateway must pass it through as it is, never inflate it.
        const body = gzipSync(Buffer.from('x'.repeat(Number(u.searchParams.get('n') ?? '1000'))));
        res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'content-length': String(body.length) }).end(body);
        return;
      }
      if (u.pathname === '/stall') {
        // Headers and a first piece of the body, then silence (until the client goes away).
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('partial');
        return;
      }
      if (u.pathname === '/status') {
        res.writeHead(Number(u.searchParams.get('code') ?? '200'), { 'content-type': 'text/plain', connection: 'x-hop', 'x-hop': 'secret', 'keep-alive': 'timeout=5' }).end('status\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'recording' });
      res.end(JSON.stringify({ method: rec.method, url: rec.url, bodyBytes: bytes, bodySha256: rec.bodySha256 }));
    });
  });
  server.on('upgrade', (req, socket, head) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, headers: req.headers, bodyBytes: 0, bodySha256: '', rawTrailers: [] });
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });
  const up: RecordingUpstream = {
    url: '',
    port: 0,
    requests,
    connections: 0,
    header(name) {
      const last = requests.at(-1);
      if (last === undefined) return [];
      const out: string[] = [];
      for (let i = 0; i + 1 < last.rawHeaders.length; i += 2) {
        if ((last.rawHeaders[i] ?? '').toLowerCase() === name.toLowerCase()) out.push(last.rawHeaders[i + 1] ?? '');
      }
      return out;
    },
    async close() {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  server.on('connection', () => {
    up.connections += 1;
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  Object.assign(up, { url: `http://127.0.0.1:${port}`, port });
  return up;
}
