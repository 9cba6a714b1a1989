/**
 * WebSockets: cross-site WebSocket hijacking (Origin policy), upgrades on routes without
 * `websocket: true`, malformed upgrades, and frames after the session is revoked or the policy changes.
 *
 * The policy (docs/security.md): an upgrade authenticated by the session cookie must come from the
 * request's own origin or one the route lists in `websocket_origins`; upgrades without Origin (not a
 * browser), with a bearer token (not an ambient credential) or to public routes are not judged by
 * Origin. Open connections re-check their session and the route's policy every
 * `identity.session.recheck_every` and are closed (1008) when either no longer lets them through.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Config } from '../../src/config/index.js';
import { HOST, hidden, rawCase, scenario, signIn, startSecurityEnv, type SecurityEnv } from './harness.js';

let env: SecurityEnv;
let alice = '';

beforeAll(async () => {
  env = await startSecurityEnv('websocket', { identity: { session: { recheck_every: '200ms' } } });
  alice = await signIn(env, 'alice');
});

afterAll(async () => {
  await env.stop();
});

interface Opened {
  readonly status: number;
  readonly id: string;
  readonly ws: WebSocket | undefined;
}

/** Opens a WebSocket through the gateway; resolves with the handshake's status and request id. */
function open(path: string, opts: { cookie?: string; origin?: string; headers?: Record<string, string> } = {}): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${env.gw.port}${path}`, {
      headers: { Host: HOST, ...(opts.cookie === undefined ? {} : { Cookie: opts.cookie }), ...opts.headers },
      ...(opts.origin === undefined ? {} : { origin: opts.origin }),
    });
    ws.once('upgrade', (res) => resolve({ status: 101, id: String(res.headers['x-portcullis-request-id'] ?? ''), ws }));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, id: String(res.headers['x-portcullis-request-id'] ?? ''), ws: undefined });
      ws.terminate();
    });
    ws.once('error', (err) => {
      if (ws.readyState === WebSocket.CONNECTING) reject(err);
    });
  });
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data: Buffer) => resolve(data.toString()));
    ws.once('close', () => reject(new Error('closed before the echo')));
    ws.send(text);
  });
}

function closed(ws: WebSocket, withinMs: number): Promise<{ code: number; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    if (ws.readyState === WebSocket.CLOSED) resolve({ code: 1006, ms: 0 });
    const timer = setTimeout(() => reject(new Error(`still open after ${withinMs} ms`)), withinMs);
    ws.once('close', (code: number) => {
      clearTimeout(timer);
      resolve({ code, ms: Date.now() - t0 });
    });
  });
}

async function shut(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const done = new Promise<void>((r) => ws.once('close', () => r()));
  ws.close();
  await done;
}

/** Runs an upgrade as a case: the invariants wait for its record (written when it closes). */
async function upgradeCase(path: string, opts: Parameters<typeof open>[1], status: number, upstream: readonly string[] = []): Promise<void> {
  await scenario(
    env,
    async (_call, note) => {
      const o = await open(path, opts);
      if (o.ws !== undefined) {
        expect(await echo(o.ws, 'ping')).toBe('ping');
        await shut(o.ws);
      }
      expect(o.status).toBe(status);
      expect(o.id).toMatch(/^[0-9a-f-]{36}$/);
      note(o.id, o.status);
    },
    upstream,
  );
}

describe('cross-site WebSocket hijacking: the Origin of a cookie-authenticated upgrade', () => {
  const cases: readonly [string, string | undefined, number][] = [
    ['the route’s own origin (control)', `http://${HOST}`, 101],
    ['no Origin at all (not a browser)', undefined, 101],
    ['an origin the route lists in websocket_origins', 'https://partner.example', 101],
    ['another site', 'http://evil.example', 403],
    ['Origin: null (sandboxed frame, file:)', 'null', 403],
    ['a sibling subdomain', `http://evil.${HOST}`, 403],
    ['our host as a prefix of theirs', `http://${HOST}.evil.example`, 403],
    ['our host on another port', `http://${HOST}:8443`, 403],
    ['our host with another scheme than the public URL’s', `https://${HOST}`, 403],
    ['a listed origin’s host with another scheme', 'http://partner.example', 403],
    ['userinfo before our host', `http://evil@${HOST}`, 403],
    ['garbage', 'not a url', 403],
  ];
  for (const [name, origin, status] of cases) {
    it(name, async () => {
      await upgradeCase('/ws/echo', { cookie: alice, ...(origin === undefined ? {} : { origin }) }, status, status === 101 ? ['/ws/echo'] : []);
    });
  }

  it('records why a cross-site upgrade was refused', async () => {
    await upgradeCase('/ws/echo', { cookie: alice, origin: 'http://evil.example' }, 403);
    expect(env.records.at(-1)).toMatchObject({ decision: 'deny', reason: 'cross-origin-websocket', route: 'ws', response: { status: 403 } });
  });

  it('a bearer token is not judged by Origin (a foreign page cannot attach one)', async () => {
    const token = await env.issuer.token('portcullis', { sub: 'alice', groups: ['eng'] });
    await upgradeCase('/ws/echo', { origin: 'http://evil.example', headers: { Authorization: `Bearer ${token}` } }, 101, ['/ws/echo']);
  });

  it('a public route is not judged by Origin (no identity to borrow)', async () => {
    await upgradeCase('/public/ws', { origin: 'http://evil.example' }, 101, ['/public/ws']);
  });

  it('an anonymous upgrade to a private route is refused', async () => {
    await upgradeCase('/ws/echo', { origin: `http://${HOST}` }, 401);
  });

  it('identity headers in the handshake are the gateway’s, not the client’s', async () => {
    await upgradeCase('/ws/echo', { cookie: alice, headers: { 'X-Portcullis-User': 'bob', X_Portcullis_Groups: 'sre' } }, 101, ['/ws/echo']);
    expect(env.upstream.header('x-portcullis-user')).toEqual(['alice']);
  });
});

describe('upgrades the gateway refuses', () => {
  const up = (lines: readonly string[], method = 'GET', version = 'HTTP/1.1', path = '/ws/echo') =>
    `${method} ${path} ${version}\r\nHost: ${HOST}\r\nCookie: ${alice}\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;

  it('on a route without websocket: true', async () => {
    await rawCase(env, { name: 'nows', send: up(['Upgrade: websocket'], 'GET', 'HTTP/1.1', '/nows/x'), expect: 403, check: (x) => expect(x.responses[0]?.body.toString()).toContain('GW_ERR_WEBSOCKET_DISABLED') });
  });

  it('on a protected route without websocket: true, anonymously', async () => {
    await rawCase(env, { name: 'admin anonymous', send: `GET /admin/ws HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, expect: 401 });
  });

  it('with a method other than GET (the upstream handshake would be a GET the policy never judged)', async () => {
    await rawCase(env, { name: 'post upgrade', send: up(['Upgrade: websocket'], 'POST'), expect: 400 });
  });

  it('over HTTP/1.0', async () => {
    await rawCase(env, { name: '1.0 upgrade', send: up(['Upgrade: websocket'], 'GET', 'HTTP/1.0'), expect: 400 });
  });

  it('to websocket and h2c at once', async () => {
    await rawCase(env, { name: 'two protocols', send: up(['Upgrade: websocket, h2c']), expect: 400 });
  });

  it('under the gateway’s reserved prefix', async () => {
    await rawCase(env, { name: 'reserved', send: up(['Upgrade: websocket'], 'GET', 'HTTP/1.1', '/.portcullis/nothing'), expect: 404 });
  });

  it('with a dot-dot towards another route', async () => {
    await rawCase(env, { name: 'dot-dot', send: up(['Upgrade: websocket'], 'GET', 'HTTP/1.1', '/public/../ws/echo'), expect: 400 });
  });

  // WebSocket smuggling (0ang3el, 2019): the upstream refuses the upgrade; a proxy that keeps the
  // tunnel open anyway lets the client speak raw HTTP to the upstream.
  it('the upstream refuses the handshake: no tunnel, the bytes behind never reach it', async () => {
    await rawCase(env, {
      name: 'refused handshake',
      send: `GET /ws/echo HTTP/1.1\r\nHost: ${HOST}\r\nCookie: ${alice}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 1337\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
      expect: 400,
      upstream: ['/ws/echo'],
      check: (x) => {
        expect(x.closedByServer).toBe(true);
        expect(x.responses[0]?.header('x-portcullis-request-id')).toBeDefined();
      },
    });
  });
});

describe('frames after the session is revoked or the policy changes', () => {
  it('closes the connection within recheck_every after sign-out, and records why', async () => {
    const cookie = await signIn(env, 'alice');
    const seen = await scenario(
      env,
      async (call, note) => {
        const o = await open('/ws/echo', { cookie, origin: `http://${HOST}` });
        const ws = o.ws;
        if (ws === undefined) throw new Error(`upgrade refused: ${o.status}`);
        note(o.id, 101);
        expect(await echo(ws, 'before')).toBe('before');
        const page = await call({ path: '/.portcullis/logout', headers: ['Accept', 'text/html', 'Cookie', cookie] });
        const out = await call({
          method: 'POST',
          path: '/.portcullis/logout',
          headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Cookie', cookie, 'Origin', `http://${HOST}`],
          body: new URLSearchParams({ csrf: hidden(page.text, 'csrf') }).toString(),
        });
        expect(out.status).toBe(200);
        const { code, ms } = await closed(ws, 3000);
        expect(code).toBe(1008);
        expect(ms).toBeLessThan(3000);
      },
      ['/ws/echo'],
    );
    expect(seen.records.find((r) => r.kind === 'websocket')).toMatchObject({ decision: 'allow', reason: 'session-ended', response: { status: 101 } });
  });

  it('a busy connection (large frames both ways) is closed within the bound too, and what it relayed is intact', async () => {
    const cookie = await signIn(env, 'alice');
    await scenario(
      env,
      async (call, note) => {
        const o = await open('/ws/echo', { cookie });
        const ws = o.ws;
        if (ws === undefined) throw new Error(`upgrade refused: ${o.status}`);
        note(o.id, 101);
        const errors: Error[] = [];
        ws.on('error', (err: Error) => errors.push(err));
        const lengths: number[] = [];
        ws.on('message', (d: Buffer) => lengths.push(d.length));
        // Large frames both ways while the session is revoked.
        const big = 'x'.repeat(200_000);
        const pump = setInterval(() => {
          if (ws.readyState === WebSocket.OPEN) ws.send(big);
        }, 5);
        const page = await call({ path: '/.portcullis/logout', headers: ['Accept', 'text/html', 'Cookie', cookie] });
        await call({
          method: 'POST',
          path: '/.portcullis/logout',
          headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Cookie', cookie, 'Origin', `http://${HOST}`],
          body: new URLSearchParams({ csrf: hidden(page.text, 'csrf') }).toString(),
        });
        const { code } = await closed(ws, 3000);
        clearInterval(pump);
        expect(lengths.length).toBeGreaterThan(0);
        expect(lengths.every((n) => n === big.length)).toBe(true);
        // 1008 when the relay was between frames, a plain close (1006) when it was inside one.
        expect([1006, 1008]).toContain(code);
        expect(errors.map((e) => e.message)).toEqual([]);
      },
      ['/ws/echo'],
    );
  });

  // Pomerium CVE-2021-41230: decisions not re-evaluated after the facts behind them changed.
  it('closes the connection when a reload takes the route away from the user', async () => {
    const original = env.gw.app.snapshot().config;
    const seen = await scenario(
      env,
      async (_call, note) => {
        const o = await open('/ws/echo', { cookie: alice });
        const ws = o.ws;
        if (ws === undefined) throw new Error(`upgrade refused: ${o.status}`);
        note(o.id, 101);
        expect(await echo(ws, 'x')).toBe('x');
        const next = structuredClone(original) as Config;
        const route = next.routes.find((r) => r.id === 'ws');
        if (route === undefined) throw new Error('no ws route');
        (route as { allow: unknown }).allow = { ...route.allow, groups: ['sre'] };
        env.gw.app.applyConfig(next);
        try {
          const { code } = await closed(ws, 3000);
          expect(code).toBe(1008);
        } finally {
          env.gw.app.applyConfig(original);
        }
      },
      ['/ws/echo'],
    );
    expect(seen.records.find((r) => r.kind === 'websocket')?.reason).toBe('access-revoked');
  });

  it('keeps a connection open while its session lives (the re-check is not a timeout)', async () => {
    await scenario(
      env,
      async (_call, note) => {
        const o = await open('/ws/echo', { cookie: alice });
        const ws = o.ws;
        if (ws === undefined) throw new Error(`upgrade refused: ${o.status}`);
        note(o.id, 101);
        await new Promise((r) => setTimeout(r, 700)); // several re-checks
        expect(await echo(ws, 'still here')).toBe('still here');
        await shut(ws);
      },
      ['/ws/echo'],
    );
  });
});
