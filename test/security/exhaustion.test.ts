/**
 * Resource exhaustion: slowloris heads and bodies, huge heads and bodies, many connections, upstream
 * responses never decompressed by the gateway, and a timeout on every phase (client head, client
 * body, keep-alive idle, upstream connect/answer/body). Timeouts are short here (500 ms) so the suite stays
 * fast; production defaults are in README.md.
 */
import net from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, exchange, mark, parseResponses, rawCase, standardRoutes, startSecurityEnv, verifyInvariants, type SecurityEnv } from './harness.js';

let env: SecurityEnv;
const TOOLS = 'tools.localhost';
/** Accepts connections and never answers. */
let silent: net.Server;
const silentSockets = new Set<net.Socket>();

beforeAll(async () => {
  silent = net.createServer((s) => {
    silentSockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => silentSockets.delete(s));
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const silentUrl = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
  env = await startSecurityEnv('exhaustion', {
    server: {
      limits: { max_header: '8KiB', max_body: '64KiB' },
      timeouts: { request_headers: '500ms', request_body: '500ms', keep_alive: '500ms' },
    },
    routes: (upstream) => [
      // The upstream's own behaviours (/gzip, /slow, /stall) at the root of a host of their own.
      { id: 'tools', host: TOOLS, path: '/', upstream, public: true, timeouts: { response: '500ms' } },
      { id: 'silent', host: HOST, path: '/public/silent', upstream: silentUrl, public: true, timeouts: { response: '500ms' } },
      { id: 'down', host: HOST, path: '/public/down', upstream: 'http://127.0.0.1:1', public: true },
      ...standardRoutes(upstream),
    ],
  });
});

afterAll(async () => {
  await env.stop();
  for (const s of silentSockets) s.destroy();
  await new Promise<void>((r) => silent.close(() => r()));
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('slow clients (slowloris)', () => {
  it('a head trickled one header at a time is cut off at request_headers with 408', async () => {
    const lines = Array.from({ length: 20 }, (_, i) => [150, `X-Slow-${i}: a\r\n`] as const);
    const x = await rawCase(env, { name: 'trickled head', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\n`, expect: 408, options: { then: lines, timeoutMs: 6000 } });
    expect(x.ms).toBeLessThan(2000);
    expect(x.closedByServer).toBe(true);
  });

  it('a head that stops half-way is cut off with 408', async () => {
    const x = await rawCase(env, { name: 'stalled head', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-Half: `, expect: 408, options: { timeoutMs: 6000 } });
    expect(x.ms).toBeLessThan(2000);
  });

  it('a connection that never sends a byte is closed without an answer or a record', async () => {
    const from = await mark(env);
    const x = await exchange(env.gw.port, '', { timeoutMs: 6000, responses: 1 });
    expect(x.closedByServer).toBe(true);
    expect(x.raw.length).toBe(0);
    expect(x.ms).toBeLessThan(2000);
    await verifyInvariants(env, from, { answered: [], upstream: [] });
  });

  it('a body that falls silent is cut off at request_body with 408, and recorded so', async () => {
    const x = await rawCase(env, {
      name: 'stalled body',
      send: `POST /public/body HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 100\r\n\r\nonly ten b`,
      expect: 408,
      options: { timeoutMs: 6000 },
      check: (_x, seen) => expect(seen.records[0]).toMatchObject({ decision: 'error', reason: 'request-body-timeout', response: { status: 408 } }),
    });
    expect(x.ms).toBeLessThan(2000);
    expect(x.closedByServer).toBe(true);
  });

  it('a chunked body that falls silent is cut off with 408', async () => {
    const x = await rawCase(env, { name: 'stalled chunked', send: `POST /public/body HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`, expect: 408, options: { timeoutMs: 6000 } });
    expect(x.ms).toBeLessThan(2000);
  });

  it('a body sent slowly but steadily is not cut off (the limit is on silence, not on the total)', async () => {
    const bytes = Array.from({ length: 6 }, () => [200, 'ab'] as const);
    await rawCase(env, {
      name: 'steady body',
      send: `POST /public/steady HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 12\r\nConnection: close\r\n\r\n`,
      expect: 200,
      upstream: ['/public/steady'],
      options: { then: bytes, timeoutMs: 6000 },
      check: (_x, seen) => expect(seen.upstream[0]?.bodyBytes).toBe(12),
    });
  });

  it('a sign-in form that falls silent is cut off with 408 too', async () => {
    const x = await rawCase(env, {
      name: 'stalled form',
      send: `POST /.portcullis/login HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\nusername=alice&pass`,
      expect: 408,
      options: { timeoutMs: 6000 },
    });
    expect(x.ms).toBeLessThan(2000);
  });

  it('a refused request with a silent body is answered at once, and the connection does not linger', async () => {
    const x = await rawCase(env, { name: 'refused slow body', send: `POST /admin/x HTTP/1.1\r\nHost: ${HOST}\r\nAccept: application/json\r\nContent-Length: 100\r\n\r\nabc`, expect: 401, options: { timeoutMs: 6000, settleMs: 4000 } });
    expect(x.closedByServer).toBe(true);
    expect(x.ms).toBeLessThan(2000);
  });

  it('an idle keep-alive connection is closed after keep_alive', async () => {
    const x = await rawCase(env, { name: 'keep-alive idle', send: `GET /public/ka HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, expect: 200, upstream: ['/public/ka'], options: { timeoutMs: 6000, settleMs: 4000 } });
    expect(x.closedByServer).toBe(true);
    expect(x.ms).toBeLessThan(2000);
  });
});

describe('huge heads and bodies', () => {
  it('one header larger than max_header → 431', async () => {
    await rawCase(env, { name: 'big header', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`, expect: 431 });
  });

  it('many small headers adding up past max_header → 431', async () => {
    const many = Array.from({ length: 1500 }, (_, i) => `X-${i}: v\r\n`).join('');
    await rawCase(env, { name: 'many headers', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\n${many}\r\n`, expect: 431 });
  });

  it('a request line longer than max_header → 431', async () => {
    await rawCase(env, { name: 'long target', send: `GET /public/${'a'.repeat(9000)} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, expect: 431 });
  });

  it('a Content-Length past max_body → 413 before anything is forwarded', async () => {
    await rawCase(env, { name: 'big CL', send: `POST /public/x HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 70000\r\n\r\nabc`, expect: 413 });
  });

  it('a Content-Length past any integer → refused', async () => {
    await rawCase(env, { name: 'absurd CL', send: `POST /public/x HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 99999999999999999999999\r\n\r\nabc`, expect: 400 });
  });

  it('a chunked body growing past max_body → 413 while streaming', async () => {
    const chunk = `4000\r\n${'z'.repeat(0x4000)}\r\n`;
    await rawCase(env, { name: 'big chunked', send: `POST /public/x HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.repeat(6)}0\r\n\r\n`, expect: 413 });
  });

  it('fifty requests pipelined in one write are all answered', async () => {
    const one = (i: number) => `GET /public/p${i} HTTP/1.1\r\nHost: ${HOST}\r\n${i === 49 ? 'Connection: close\r\n' : ''}\r\n`;
    await rawCase(env, { name: 'pipelined 50', send: Array.from({ length: 50 }, (_, i) => one(i)).join(''), expect: Array.from({ length: 50 }, () => 200), upstream: Array.from({ length: 50 }, (_, i) => `/public/p${i}`), options: { timeoutMs: 8000 } });
  });
});

describe('many connections', () => {
  it('300 idle connections: the gateway stays up, serves others, and closes them all', async () => {
    const from = await mark(env);
    const sockets = await Promise.all(
      Array.from({ length: 300 }, () => new Promise<net.Socket>((resolve) => {
        const s = net.connect(env.gw.port, '127.0.0.1', () => resolve(s));
        s.on('error', () => undefined);
      })),
    );
    const closedAll = Promise.all(sockets.map((s) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())))));
    const x = await exchange(env.gw.port, `GET /public/alive HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
    expect(x.responses.map((r) => r.status)).toEqual([200]);
    await Promise.race([closedAll, sleep(5000).then(() => Promise.reject(new Error('idle connections still open')))]);
    await verifyInvariants(env, from, { answered: [{ id: x.responses[0]?.id ?? '', status: 200 }], upstream: ['/public/alive'] });
  });

  it('100 connections each with a stalled head: each gets its 408 and its record', async () => {
    const from = await mark(env);
    const all = await Promise.all(Array.from({ length: 100 }, (_, i) => exchange(env.gw.port, `GET /public/s${i} HTTP/1.1\r\nHost: ${HOST}\r\n`, { timeoutMs: 8000 })));
    expect(all.map((x) => x.responses[0]?.status)).toEqual(all.map(() => 408));
    await verifyInvariants(env, from, { answered: all.map((x) => ({ id: x.responses[0]?.id ?? '', status: 408 })), upstream: [] });
  });
});

describe('upstream responses and timeouts', () => {
  it('a gzip answer is passed through compressed, never inflated by the gateway', async () => {
    await rawCase(env, {
      name: 'gzip passthrough',
      send: `GET /gzip?n=50000 HTTP/1.1\r\nHost: ${TOOLS}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n`,
      expect: 200,
      upstream: ['/gzip?n=50000'],
      check: (x, seen) => {
        const r = x.responses[0];
        expect(r?.header('content-encoding')).toBe('gzip');
        expect(r?.body.subarray(0, 2).toString('hex')).toBe('1f8b');
        expect(Number(r?.header('content-length'))).toBe(r?.body.length);
        expect(gunzipSync(r?.body ?? Buffer.alloc(0)).length).toBe(50_000);
        expect(seen.upstream[0]?.headers['accept-encoding']).toBe('gzip');
      },
    });
  });

  it('a gzip answer to a client that did not ask for gzip is still not inflated (a compression bomb stays small)', async () => {
    await rawCase(env, {
      name: 'gzip no accept',
      send: `GET /gzip?n=2000000 HTTP/1.1\r\nHost: ${TOOLS}\r\nConnection: close\r\n\r\n`,
      expect: 200,
      upstream: ['/gzip?n=2000000'],
      check: (x, seen) => {
        expect(x.responses[0]?.body.length).toBeLessThan(10_000);
        expect(seen.upstream[0]?.headers['accept-encoding']).toBeUndefined();
      },
    });
  });

  it('an upstream slower than the route’s response timeout → 504', async () => {
    await rawCase(env, { name: 'slow upstream', send: `GET /slow?ms=3000 HTTP/1.1\r\nHost: ${TOOLS}\r\nConnection: close\r\n\r\n`, expect: 504, upstream: ['/slow?ms=3000'] });
  });

  it('an upstream that accepts but never answers → 504', async () => {
    const x = await rawCase(env, { name: 'silent upstream', send: `GET /public/silent/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, expect: 504 });
    expect(x.ms).toBeLessThan(2000);
  });

  it('an upstream that refuses the connection → 502', async () => {
    await rawCase(env, { name: 'down upstream', send: `GET /public/down/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, expect: 502 });
  });

  it('an upstream that falls silent inside its body: the client connection is cut, the record says so', async () => {
    const from = await mark(env);
    const x = await exchange(env.gw.port, `GET /stall HTTP/1.1\r\nHost: ${TOOLS}\r\nConnection: close\r\n\r\n`, { timeoutMs: 5000 });
    expect(x.closedByServer).toBe(true);
    expect(x.ms).toBeLessThan(2500);
    const text = x.raw.toString('latin1');
    expect(text.startsWith('HTTP/1.1 200')).toBe(true);
    expect(parseResponses(x.raw, false).final).toEqual([]); // the body never completed
    const id = /x-portcullis-request-id: ([0-9a-f-]{36})/i.exec(text)?.[1] ?? '';
    const seen = await verifyInvariants(env, from, { answered: [{ id, status: 200 }], upstream: ['/stall'] });
    expect(seen.records[0]?.reason).toBe('upstream-timeout');
  });
});
