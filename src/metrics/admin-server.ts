/**
 * The admin listener: `/metrics` (Prometheus text format), `/healthz` (the process runs) and
 * `/readyz` (config loaded, dependencies answer). Never served on the public listener.
 */
import http from 'node:http';
import type { Registry } from 'prom-client';

/** A named readiness check; resolves true when the dependency answers. */
export interface ReadinessCheck {
  readonly name: string;
  check(): Promise<boolean> | boolean;
}

/** Creates (but does not start) the admin HTTP server. */
export function createAdminServer(registry: Registry, checks: () => readonly ReadinessCheck[]): http.Server {
  return http.createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
        return;
      }
      if (path === '/metrics') {
        const body = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType }).end(body);
        return;
      }
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      }
      if (path === '/readyz') {
        const results = await Promise.all(
          checks().map(async (c) => {
            try {
              return { name: c.name, ok: await c.check() };
            } catch {
              return { name: c.name, ok: false };
            }
          }),
        );
        const ok = results.every((r) => r.ok);
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(results.map((r) => `${r.name}: ${r.ok ? 'ok' : 'failing'}\n`).join(''));
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
}
