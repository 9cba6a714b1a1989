import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { rawRequest } from '../support/raw-http.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

let upstream: RecordingUpstream;
let gw: TestGateway;

const H = (...extra: string[]) => ['Host', 'app.localhost', ...extra];

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startGateway({
    server: { limits: { max_body: '64MiB', max_header: '8KiB' }, trusted_proxies: ['10.9.0.0/16'] },
    routes: [
      { id: 'private', host: 'app.localhost', path: '/private', upstream: upstream.url, allow: { groups: ['eng'] } },
      { id: 'ws-off', host: 'app.localhost', path: '/nows', upstream: upstream.url, public: true },
      { id: 'fast-timeout', host: 'app.localhost', path: '/slow', upstream: upstream.url, public: true, timeouts: { response: '300ms' } },
      { id: 'app', host: 'app.localhost', path: '/', upstream: upstream.url, public: true, websocket: true },
      { id: 'down', host: 'down.localhost', path: '/', upstream: 'http://127.0.0.1:1', public: true },
      { id: 'wild', host: '*.wild.localhost', path: '/', upstream: upstream.url, public: true },
    ],
  });
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

describe('the HTTP proxy', () => {
  it('forwards a GET with the canonical path and query and returns the upstream answer', async () => {
    const res = await send(gw.port, { path: '/a/%7euser/b?x=1&y=%2F', headers: H() });
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('recording');
    expect(res.headers['x-portcullis-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const last = upstream.requests.at(-1);
    expect(last?.url).toBe('/a/~user/b?x=1&y=%2F');
    expect(upstream.header('x-portcullis-request-id')).toEqual([res.headers['x-portcullis-request-id']]);
    expect(upstream.header('host')).toEqual([new URL(upstream.url).host]);
  });

  it('streams a large chunked POST body to the upstream intact', async () => {
    const size = 48 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 0x5a);
    const hash = createHash('sha256');
    for (let i = 0; i < size / chunk.length; i++) hash.update(chunk);
    const body = Readable.from((function* () {
      for (let i = 0; i < size / chunk.length; i++) yield chunk;
    })());
    const res = await send(gw.port, { method: 'POST', path: '/upload', headers: H('Transfer-Encoding', 'chunked'), body });
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ bodyBytes: size, bodySha256: hash.digest('hex') });
  });

  it('streams a large response body to the client', async () => {
    const n = 32 * 1024 * 1024 + 17;
    const res = await send(gw.port, { path: `/bytes?n=${n}`, headers: H() });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(n);
    expect(res.headers['content-length']).toBe(String(n));
  });

  it('forwards a POST with Content-Length', async () => {
    const res = await send(gw.port, { method: 'POST', path: '/form', headers: H('Content-Type', 'text/plain', 'Content-Length', '11'), body: 'hello world' });
    expect(res.json()).toMatchObject({ method: 'POST', bodyBytes: 11 });
  });

  it('refuses a body whose Content-Length passes the limit with 413, before reaching the upstream', async () => {
    const before = upstream.requests.length;
    const r = await rawRequest(gw.port, `POST /big HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: ${65 * 1024 * 1024}\r\n\r\nabc`);
    expect(r.status).toBe(413);
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses a chunked body that grows past the limit with 413', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 1);
    const body = Readable.from((function* () {
      for (let i = 0; i < 80; i++) yield chunk;
    })());
    const res = await send(gw.port, { method: 'POST', path: '/huge', headers: H('Transfer-Encoding', 'chunked'), body }).catch((e: unknown) => e);
    if (res instanceof Error) expect((res as Error & { code?: string }).code).toMatch(/EPIPE|ECONNRESET/);
    else expect((res as { status: number }).status).toBe(413);
  });

  it('answers 431 when request headers exceed the limit', async () => {
    const r = await rawRequest(gw.port, `GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`);
    expect(r.status).toBe(431);
  });

  it('answers 404 for an unknown host and never uses a default upstream', async () => {
    const before = upstream.requests.length;
    const res = await send(gw.port, { path: '/', headers: ['Host', 'nope.localhost', 'Accept', 'application/json'] });
    expect(res.status).toBe(404);
    expect(res.json()).toMatchObject({ error: 'GW_ERR_ROUTE_NOT_FOUND' });
    expect(upstream.requests.length).toBe(before);
  });

  it('matches a wildcard host on one label only', async () => {
    expect((await send(gw.port, { headers: ['Host', 'a.wild.localhost'] })).status).toBe(200);
    expect((await send(gw.port, { headers: ['Host', 'a.b.wild.localhost'] })).status).toBe(404);
    expect((await send(gw.port, { headers: ['Host', 'A.WILD.localhost.:80'] })).status).toBe(200);
  });

  it('answers 502 when the upstream refuses the connection, as JSON or as a page', async () => {
    const api = await send(gw.port, { headers: ['Host', 'down.localhost'] });
    expect(api.status).toBe(502);
    expect(api.json()).toMatchObject({ error: 'GW_ERR_UPSTREAM_UNAVAILABLE', request_id: api.headers['x-portcullis-request-id'] });
    const page = await send(gw.port, { headers: ['Host', 'down.localhost', 'Accept', 'text/html'] });
    expect(page.status).toBe(502);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.text()).toContain('Upstream unavailable');
  });

  it('answers 504 when the upstream is slower than the route timeout', async () => {
    const t0 = Date.now();
    const res = await send(gw.port, { path: '/slow?ms=3000', headers: H() });
    expect(res.status).toBe(504);
    expect(res.json()).toMatchObject({ error: 'GW_ERR_UPSTREAM_TIMEOUT' });
    expect(Date.now() - t0).toBeLessThan(2500);
  });

  it('never proxies anything under /.portcullis/', async () => {
    const before = upstream.requests.length;
    for (const path of ['/.portcullis/anything', '/%2Eportcullis/x', '/.portcullis']) {
      const res = await send(gw.port, { path, headers: H() });
      expect(res.status, path).toBe(404);
    }
    expect(upstream.requests.length).toBe(before);
  });
});

describe('header rules', () => {
  it('removes spoofed identity, forwarding, rewrite and hop-by-hop headers and the session cookie', async () => {
    const res = await send(gw.port, {
      path: '/h',
      headers: H(
        'X-Portcullis-User', 'mallory',
        'X_Portcullis_Groups', 'sre',
        'x-portcullis-mfa', 'webauthn;age=1',
        'X-Forwarded-For', '1.2.3.4',
        'X-Forwarded-Host', 'evil.example',
        'X-Forwarded-Proto', 'https',
        'X_Forwarded_For', '5.6.7.8',
        'Forwarded', 'for=1.2.3.4',
        'X-Real-IP', '1.2.3.4',
        'X-Original-URL', '/admin',
        'X-Rewrite-URL', '/admin',
        'X-HTTP-Method-Override', 'DELETE',
        'Connection', 'keep-alive, X-Secret',
        'X-Secret', 'drop-me',
        'Keep-Alive', 'timeout=5',
        'Proxy-Authorization', 'Basic eDp5',
        'TE', 'trailers',
        'Cookie', '__Host-portcullis=sess; theme=dark; portcullis_session=x',
        'X-Keep', 'yes',
      ),
    });
    expect(res.status).toBe(200);
    const names = (upstream.requests.at(-1)?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const banned of ['x-portcullis-user', 'x_portcullis_groups', 'x-portcullis-mfa', 'x_forwarded_for', 'forwarded', 'x-real-ip', 'x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-secret', 'keep-alive', 'proxy-authorization', 'te']) {
      expect(names, banned).not.toContain(banned);
    }
    expect(upstream.header('x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(upstream.header('x-forwarded-host')).toEqual(['app.localhost']);
    expect(upstream.header('x-forwarded-proto')).toEqual(['http']);
    expect(upstream.header('cookie')).toEqual(['theme=dark']);
    expect(upstream.header('x-keep')).toEqual(['yes']);
    expect(upstream.header('x-portcullis-request-id')).toHaveLength(1);
  });

  it('removes hop-by-hop headers from the upstream response', async () => {
    const res = await send(gw.port, { path: '/status?code=201', headers: H() });
    expect(res.status).toBe(201);
    expect(res.headers['x-hop']).toBeUndefined();
    expect(res.headers['x-portcullis-request-id']).toBeDefined();
  });
});

describe('policy (first form)', () => {
  it('redirects a browser without identity to the login page with a same-origin rd', async () => {
    const before = upstream.requests.length;
    const res = await send(gw.port, { path: '/private/x?a=1', headers: H('Accept', 'text/html,application/xhtml+xml') });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/.portcullis/login?rd=%2Fprivate%2Fx%3Fa%3D1');
    expect(upstream.requests.length).toBe(before);
  });

  it('answers an API client without identity with 401 and a Bearer challenge', async () => {
    const res = await send(gw.port, { path: '/private/x', headers: H() });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="portcullis"');
    expect(res.json()).toMatchObject({ error: 'GW_ERR_AUTH_REQUIRED' });
  });
});

describe('WebSocket proxying', () => {
  it('relays an upgrade and echoes messages both ways', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/socket?q=1`, { headers: { Host: 'app.localhost' } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const got: string[] = [];
    const all = new Promise<void>((resolve) => {
      ws.on('message', (m: Buffer) => {
        got.push(m.toString());
        if (got.length === 3) resolve();
      });
    });
    ws.send('one');
    ws.send('two');
    ws.send('x'.repeat(200_000));
    await all;
    expect(got.slice(0, 2)).toEqual(['one', 'two']);
    expect(got[2]?.length).toBe(200_000);
    ws.close();
    const rec = upstream.requests.filter((r) => r.url === '/socket?q=1').at(-1);
    expect(rec?.headers['x-portcullis-request-id']).toBeDefined();
    expect(rec?.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('refuses an upgrade on a route without websocket: true', async () => {
    const r = await rawRequest(gw.port, 'GET /nows HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    expect(r.status).toBe(403);
    expect(r.text).toContain('GW_ERR_WEBSOCKET_DISABLED');
  });

  it('refuses an h2c upgrade', async () => {
    const before = upstream.requests.length;
    const r = await rawRequest(gw.port, 'GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
    expect(r.status).toBe(400);
    expect(upstream.requests.length).toBe(before);
  });
});
