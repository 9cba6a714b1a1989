/**
 * Audit evasion: every refused request still yields exactly one record (whatever layer refused it:
 * Node's parser, the pipeline, a gateway endpoint, the WebSocket handshake); header values and form
 * fields with line breaks or control characters cannot forge a record or a log line; oversized values
 * are capped. The harness checks one record per answered request and one line per record after every
 * case; this file names the refusals one by one and looks inside the records.
 */
import net from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANY_LINE_BREAK, HOST, USERS, hidden, mark, rawCase, scenario, setCookieOf, signIn, startSecurityEnv, verifyInvariants, type SecurityEnv } from './harness.js';

let env: SecurityEnv;
const logLines: string[] = [];
let alice = '';

beforeAll(async () => {
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
  env = await startSecurityEnv('audit', {
    logger,
    server: { limits: { max_body: '64KiB', max_header: '12KiB' }, timeouts: { request_headers: '1s', request_body: '1s' } },
    routes: (upstream) => [
      { id: 'down', host: HOST, path: '/public/down', upstream: 'http://127.0.0.1:1', public: true },
      { id: 'tools', host: 'tools.localhost', path: '/', upstream, public: true },
      { id: 'public', host: HOST, path: '/public', upstream, public: true },
      { id: 'admin', host: HOST, path: '/admin', upstream, allow: { groups: ['sre'] } },
      { id: 'app', host: HOST, path: '/', upstream, allow: { groups: ['eng'] } },
    ],
  });
  alice = await signIn(env, 'alice');
});

afterAll(async () => {
  await env.stop();
  // Every log line the gateway wrote is one line, to every reader.
  for (const line of logLines) expect(line.replace(/\n$/, '').split(ANY_LINE_BREAK).length).toBe(1);
});

interface Refusal {
  readonly name: string;
  readonly send: string;
  readonly status: number;
  readonly decision: string;
  readonly reason?: string | RegExp;
  readonly options?: Parameters<typeof rawCase>[1]['options'];
}

const REFUSALS: readonly Refusal[] = [
  { name: 'a bad request target (pipeline)', send: `GET /public/%2e%2e/admin HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, status: 400, decision: 'error' },
  { name: 'a bad Host (pipeline)', send: `GET / HTTP/1.1\r\nHost: a@b\r\n\r\n`, status: 400, decision: 'error' },
  { name: 'a missing Host on HTTP/1.1 (Node would answer a bare 400 itself)', send: `GET / HTTP/1.1\r\nConnection: close\r\n\r\n`, status: 400, decision: 'error' },
  { name: 'a parser error (Node, before any request exists)', send: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX: a\rb\r\n\r\n`, status: 400, decision: 'error', reason: /^unparsable-request:hpe_/ },
  { name: 'a head too large (Node)', send: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX: ${'a'.repeat(13_000)}\r\n\r\n`, status: 431, decision: 'error', reason: 'unparsable-request:hpe_header_overflow' },
  { name: 'a head too slow (Node)', send: `GET / HTTP/1.1\r\nHost: ${HOST}\r\n`, status: 408, decision: 'error', reason: 'request-head-timeout', options: { timeoutMs: 6000 } },
  { name: 'a body too slow', send: `POST /public/x HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 10\r\n\r\nab`, status: 408, decision: 'error', reason: 'request-body-timeout', options: { timeoutMs: 6000 } },
  { name: 'a body too large', send: `POST /public/x HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 99999\r\n\r\n`, status: 413, decision: 'error' },
  { name: 'an unknown expectation (Node would answer a bare 417)', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nExpect: the-unexpected\r\n\r\n`, status: 400, decision: 'error' },
  { name: 'CONNECT (Node hands over a raw socket)', send: `CONNECT ${HOST}:443 HTTP/1.1\r\nHost: ${HOST}:443\r\n\r\n`, status: 400, decision: 'error', reason: 'connect-refused' },
  { name: 'Upgrade: h2c', send: `GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`, status: 400, decision: 'error' },
  { name: 'no identity', send: `GET /app/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, status: 401, decision: 'unauthenticated', reason: 'user-unauthenticated' },
  { name: 'no route', send: `GET /x HTTP/1.1\r\nHost: nowhere.localhost\r\nConnection: close\r\n\r\n`, status: 404, decision: 'not_found' },
  { name: 'an unknown gateway endpoint', send: `GET /.portcullis/nothing HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, status: 404, decision: 'not_found', reason: 'gateway-endpoint' },
  { name: 'a WebSocket upgrade on a route without websocket: true', send: `GET /public/ws HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, status: 403, decision: 'deny' },
  { name: 'an upstream that refuses', send: `GET /public/down HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, status: 502, decision: 'error', reason: 'upstream-connect' },
];

describe('every refusal, whichever layer refused it, is exactly one record', () => {
  for (const r of REFUSALS) {
    it(r.name, async () => {
      await rawCase(env, {
        name: r.name,
        send: r.send,
        expect: r.status,
        ...(r.options === undefined ? {} : { options: r.options }),
        check: (x, seen) => {
          const rec = seen.records[0];
          expect(rec?.id).toBe(x.responses[0]?.id);
          expect(rec?.decision).toBe(r.decision);
          if (typeof r.reason === 'string') expect(rec?.reason).toBe(r.reason);
          else if (r.reason !== undefined) expect(rec?.reason).toMatch(r.reason);
          expect(rec?.client?.ip).toBe('127.0.0.1');
        },
      });
    });
  }

  it('a refusal by the policy as alice names her', async () => {
    await rawCase(env, {
      name: 'deny',
      send: `GET /admin/x HTTP/1.1\r\nHost: ${HOST}\r\nCookie: ${alice}\r\nConnection: close\r\n\r\n`,
      expect: 403,
      check: (_x, seen) => expect(seen.records[0]).toMatchObject({ decision: 'deny', route: 'admin', identity: { user: 'alice', auth: 'cookie' } }),
    });
  });

  it('a client-chosen request id is never the record’s', async () => {
    const forged = '00000000-0000-4000-8000-000000000000';
    await rawCase(env, {
      name: 'forged id',
      send: `GET /public/id HTTP/1.1\r\nHost: ${HOST}\r\nX-Portcullis-Request-Id: ${forged}\r\nConnection: close\r\n\r\n`,
      expect: 200,
      upstream: ['/public/id'],
      check: (x, seen) => {
        expect(x.responses[0]?.id).not.toBe(forged);
        expect(seen.records[0]?.id).not.toBe(forged);
      },
    });
  });

  it('a request pipelined behind a refusal is never recorded (it was never handled)', async () => {
    await rawCase(env, { name: 'pipelined', send: `GET /public/../x HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET /public/never HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, expect: 400 });
  });

  it('a client that hangs up before the answer still leaves exactly one record', async () => {
    const from = await mark(env);
    await new Promise<void>((resolve) => {
      const s = net.connect(env.gw.port, '127.0.0.1', () => s.write(`GET /slow?ms=400 HTTP/1.1\r\nHost: tools.localhost\r\n\r\n`));
      setTimeout(() => s.destroy(), 150);
      s.on('close', () => resolve());
      s.on('error', () => undefined);
    });
    const seen = await verifyInvariants(env, from, { answered: [], upstream: ['/slow?ms=400'], unanswered: 1 });
    expect(seen.records[0]).toMatchObject({ decision: 'error', reason: 'upstream-client-aborted', response: { status: 499 } });
  });
});

describe('control characters and line breaks cannot forge records or log lines', () => {
  // Header values reach Node as latin1: bytes 0x80–0x9F are C1 controls (0x85 is NEL, a line break to
  // Python's splitlines and to many log viewers); E2 80 A8 is U+2028 in UTF-8.
  const VALUES: readonly [string, Buffer][] = [
    ['NEL (0x85)', Buffer.from([0x61, 0x85, 0x7b, 0x22, 0x6b, 0x22, 0x3a, 0x31, 0x7d])],
    ['UTF-8 LINE SEPARATOR bytes', Buffer.concat([Buffer.from('a'), Buffer.from('\u2028', 'utf8'), Buffer.from('{"kind":"auth"}')])],
    ['UTF-8 PARAGRAPH SEPARATOR bytes', Buffer.concat([Buffer.from('a'), Buffer.from('\u2029', 'utf8'), Buffer.from('b')])],
    ['every C1 control', Buffer.from(Array.from({ length: 32 }, (_, i) => 0x80 + i))],
    ['a JSON break-out attempt', Buffer.from('"},"decision":"allow","x":{"a":"')],
    ['a tab', Buffer.from('a\tb')],
  ];
  for (const [name, value] of VALUES) {
    it(`a User-Agent with ${name}`, async () => {
      const send = Buffer.concat([Buffer.from(`GET /public/ua HTTP/1.1\r\nHost: ${HOST}\r\nUser-Agent: `), value, Buffer.from('\r\nConnection: close\r\n\r\n')]);
      await rawCase(env, {
        name,
        send,
        expect: 200,
        upstream: ['/public/ua'],
        check: (_x, seen) => {
          const ua = seen.records[0]?.client?.user_agent ?? '';
          expect(ua).not.toMatch(/[\u0080-\u009f\u2028\u2029]/);
          expect(seen.records[0]?.decision).toBe('allow');
          expect(ua.length).toBeGreaterThan(0);
        },
      });
    });
  }

  const NAMES: readonly [string, string][] = [
    ['a newline and a forged record', 'mallory\n{"v":1,"kind":"auth","decision":"allow"}'],
    ['CR LF', 'mallory\r\nlevel=60'],
    ['U+2028', 'mallory\u2028{"level":60,"msg":"forged"}'],
    ['U+0085', 'mallory\u0085forged'],
    ['a right-to-left override', 'mallory\u202Egnp.exe'],
    ['NUL', 'mallory\u0000root'],
  ];
  for (const [name, username] of NAMES) {
    it(`a sign-in with a user name containing ${name}`, async () => {
      const logsBefore = logLines.length;
      const seen = await scenario(env, async (call) => {
        const page = await call({ path: '/.portcullis/login', headers: ['Accept', 'text/html'] });
        const res = await call({
          method: 'POST',
          path: '/.portcullis/login',
          headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Cookie', setCookieOf(page, 'portcullis_csrf') ?? '', 'Origin', `http://${HOST}`],
          body: new URLSearchParams({ username, password: 'wrong', csrf: hidden(page.text, 'csrf'), rd: '/' }).toString(),
        });
        expect(res.status).toBe(401);
      });
      const auth = env.records.filter((r) => r.kind === 'auth' && r.id === seen.records.at(-1)?.id);
      expect(auth.length).toBe(1);
      expect(auth[0]?.identity?.user).not.toMatch(/[\u0080-\u009f\u2028\u2029\u202a-\u202e]/);
      for (const line of logLines.slice(logsBefore)) expect(line.replace(/\n$/, '').split(ANY_LINE_BREAK).length).toBe(1);
    });
  }
});

describe('oversized values are capped', () => {
  it('a 10 000-character User-Agent is recorded in at most 512 characters', async () => {
    await rawCase(env, {
      name: 'long ua',
      send: `GET /public/long HTTP/1.1\r\nHost: ${HOST}\r\nUser-Agent: ${'u'.repeat(10_000)}\r\nConnection: close\r\n\r\n`,
      expect: 200,
      upstream: ['/public/long'],
      check: (_x, seen) => {
        const ua = seen.records[0]?.client?.user_agent ?? '';
        expect(ua.length).toBe(512);
        expect(ua.endsWith('…')).toBe(true);
      },
    });
  });

  it('a 5 000-character path and query are recorded in at most 2 048 characters each', async () => {
    const path = `/public/${'p'.repeat(5000)}`;
    await rawCase(env, {
      name: 'long path',
      send: `GET ${path}?${'q'.repeat(5000)} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`,
      expect: 200,
      upstream: [`${path}?${'q'.repeat(5000)}`],
      check: (_x, seen) => {
        expect(seen.records[0]?.request?.path.length).toBe(2048);
        expect(seen.records[0]?.request?.query?.length).toBe(2048);
      },
    });
  });

  it('a refused target of 5 000 characters is capped too', async () => {
    await rawCase(env, {
      name: 'long refused path',
      send: `GET /public/${'a'.repeat(5000)}/../x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`,
      expect: 400,
      check: (_x, seen) => expect(seen.records[0]?.request?.path.length).toBeLessThanOrEqual(2048),
    });
  });

  it('a 5 000-character user name in a failed sign-in is recorded in at most 256', async () => {
    const seen = await scenario(env, async (call) => {
      const page = await call({ path: '/.portcullis/login', headers: ['Accept', 'text/html'] });
      await call({
        method: 'POST',
        path: '/.portcullis/login',
        headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Cookie', setCookieOf(page, 'portcullis_csrf') ?? '', 'Origin', `http://${HOST}`],
        body: new URLSearchParams({ username: 'n'.repeat(5000), password: USERS.alice.password, csrf: hidden(page.text, 'csrf'), rd: '/' }).toString(),
      });
    });
    const auth = env.records.find((r) => r.kind === 'auth' && r.id === seen.records.at(-1)?.id);
    expect(auth?.identity?.user.length).toBeLessThanOrEqual(256);
  });
});
