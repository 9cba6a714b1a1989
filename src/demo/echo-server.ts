/**
 * The built-in demo upstream (like traefik/whoami): answers every request with what it received —
 * method, target, HTTP version, headers and body size — as JSON, or as a page for browsers, and
 * echoes WebSocket messages. `npm start` puts it behind the gateway so a newcomer can see exactly
 * what an upstream gets.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { escapeHtml, renderPage } from '../web/error-response.js';

/** What the echo server reports about a request. */
export interface EchoReport {
  readonly method: string;
  readonly url: string;
  readonly http_version: string;
  /** `Name: value` lines, in the order and case received. */
  readonly headers: readonly string[];
  readonly body: { readonly bytes: number; readonly sha256: string };
  readonly remote: string;
}

/** Creates (but does not start) the echo server. */
export function createEchoServer(): http.Server {
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => {
      const headers: string[] = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.push(`${req.rawHeaders[i] ?? ''}: ${req.rawHeaders[i + 1] ?? ''}`);
      const report: EchoReport = {
        method: req.method ?? '',
        url: req.url ?? '',
        http_version: req.httpVersion,
        headers,
        body: { bytes, sha256: hash.digest('hex') },
        remote: req.socket.remoteAddress ?? '',
      };
      if ((req.headers.accept ?? '').includes('text/html')) {
        const rows = headers.map((h) => `<tr><td><code>${escapeHtml(h)}</code></td></tr>`).join('');
        const body = `<h1>Echo</h1><p>This is the demo upstream. It received:</p><p><code>${escapeHtml(report.method)} ${escapeHtml(report.url)} HTTP/${escapeHtml(report.http_version)}</code></p><table>${rows}</table><p class="muted">Body: ${bytes} bytes</p>`;
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(renderPage('Echo', body));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(report, null, 2)}\n`);
    });
  });
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => {
        ws.send(data, { binary: isBinary });
      });
    });
  });
  server.on('close', () => {
    wss.close();
  });
  return server;
}
