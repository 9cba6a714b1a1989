/**
 * Framing and smuggling: CL.TE, TE.CL, duplicate Content-Length, obs-fold, bare CR/LF, chunk syntax and
 * extensions, Transfer-Encoding on HTTP/1.0 and with codings, bodies on GET/DELETE/OPTIONS, requests
 * pipelined after an error, Expect, protocol switches. A smuggled request must never reach the
 * upstream, and a refused connection answers once and drops whatever was pipelined behind.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, rawCase, startSecurityEnv, type SecurityEnv } from './harness.js';

let env: SecurityEnv;

beforeAll(async () => {
  env = await startSecurityEnv('framing', { server: { limits: { max_body: '1MiB', max_header: '64KiB' } } });
});

afterAll(async () => {
  await env.stop();
});

const SMUGGLED = `GET /admin/smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;
const head = (lines: readonly string[], method = 'POST', target = '/public/f') => `${method} ${target} HTTP/1.1\r\nHost: ${HOST}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

interface FramingCase {
  readonly name: string;
  readonly send: string;
  readonly expect: number | readonly number[];
  readonly upstream?: readonly string[];
}

/** Ambiguous framing: refused with 400 before anything is forwarded; the smuggled request never arrives. */
const REFUSED: readonly FramingCase[] = [
  // The classic desync pairs (PortSwigger "HTTP Desync Attacks", 2019).
  { name: 'CL.TE: Content-Length then Transfer-Encoding', send: head(['Content-Length: 6', 'Transfer-Encoding: chunked']) + `0\r\n\r\n${SMUGGLED}`, expect: 400 },
  { name: 'TE.CL: Transfer-Encoding then Content-Length', send: head(['Transfer-Encoding: chunked', 'Content-Length: 4']) + `5c\r\n${SMUGGLED}\r\n0\r\n\r\n`, expect: 400 },
  { name: 'duplicate Content-Length, different values', send: head(['Content-Length: 3', 'Content-Length: 40']) + `abc${SMUGGLED}`, expect: 400 },
  { name: 'duplicate Content-Length, same value', send: head(['Content-Length: 3', 'Content-Length: 3']) + 'abc', expect: 400 },
  { name: 'Content-Length as a list', send: head(['Content-Length: 3, 3']) + 'abc', expect: 400 },
  { name: 'Content-Length with a plus sign', send: head(['Content-Length: +3']) + 'abc', expect: 400 },
  { name: 'negative Content-Length', send: head(['Content-Length: -1']) + 'abc', expect: 400 },
  { name: 'hexadecimal Content-Length', send: head(['Content-Length: 0x3']) + 'abc', expect: 400 },
  // Node CVE-2018-7159: spaces inside the number.
  { name: 'Content-Length with a space inside the number', send: head(['Content-Length: 1 2']) + 'abcdefghijkl', expect: 400 },
  { name: 'Transfer-Encoding twice', send: head(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked']) + '0\r\n\r\n', expect: 400 },
  { name: 'Transfer-Encoding: xchunked', send: head(['Transfer-Encoding: xchunked']) + `0\r\n\r\n${SMUGGLED}`, expect: 400 },
  { name: 'Transfer-Encoding: identity', send: head(['Transfer-Encoding: identity']) + 'abc', expect: 400 },
  { name: 'Transfer-Encoding: chunked, identity', send: head(['Transfer-Encoding: chunked, identity']) + '0\r\n\r\n', expect: 400 },
  { name: 'Transfer-Encoding: gzip, chunked (a coding the gateway would not undo)', send: head(['Transfer-Encoding: gzip, chunked']) + '0\r\n\r\n', expect: 400 },
  { name: 'Transfer-Encoding: chunked, chunked', send: head(['Transfer-Encoding: chunked, chunked']) + '0\r\n\r\n', expect: 400 },
  // Node CVE-2021-22959: a space before the colon.
  { name: 'Transfer-Encoding with a space before the colon', send: head(['Transfer-Encoding : chunked', 'Content-Length: 5']) + '0\r\n\r\n', expect: 400 },
  // Node CVE-2022-32215: multi-line Transfer-Encoding.
  { name: 'obs-fold inside Transfer-Encoding', send: head(['Transfer-Encoding: identity', ' chunked']) + '0\r\n\r\n', expect: 400 },
  { name: 'obs-fold on an ordinary header', send: head(['X-A: 1', '\tX-Portcullis-User: admin'], 'GET') , expect: 400 },
  // RFC 9112 §6.1: Transfer-Encoding on HTTP/1.0 is faulty framing.
  { name: 'Transfer-Encoding on HTTP/1.0, with a request pipelined behind', send: `POST /public/f HTTP/1.0\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /public/behind HTTP/1.0\r\nHost: ${HOST}\r\n\r\n`, expect: 400 },
  // Node CVE-2023-30589: a bare CR as a line ending.
  { name: 'bare CR ending a header line', send: `GET /public/f HTTP/1.1\r\nHost: ${HOST}\rX-Portcullis-User: admin\r\n\r\n`, expect: 400 },
  { name: 'bare CR inside a header value', send: `GET /public/f HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\rb\r\n\r\n`, expect: 400 },
  { name: 'bare LF line endings', send: `GET /public/f HTTP/1.1\nHost: ${HOST}\nConnection: close\n\n`, expect: 400 },
  { name: 'bare LF ending one header line', send: `GET /public/f HTTP/1.1\r\nHost: ${HOST}\nX-A: b\r\n\r\n`, expect: 400 },
  { name: 'chunk size with trailing whitespace', send: head(['Transfer-Encoding: chunked']) + '5 \r\nhello\r\n0\r\n\r\n', expect: 400 },
  { name: 'chunk size with a 0x prefix', send: head(['Transfer-Encoding: chunked']) + '0x5\r\nhello\r\n0\r\n\r\n', expect: 400 },
  { name: 'chunk size that overflows 64 bits', send: head(['Transfer-Encoding: chunked']) + 'fffffffffffffffff1\r\nhello\r\n0\r\n\r\n', expect: 400 },
  { name: 'chunk lines ended by a bare LF', send: head(['Transfer-Encoding: chunked']) + '5\nhello\n0\n\n', expect: 400 },
  { name: 'chunk data longer than its size', send: head(['Transfer-Encoding: chunked']) + '3\r\nhello\r\n0\r\n\r\n', expect: 400 },
  { name: 'HTTP/2 prior-knowledge preface', send: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', expect: 400 },
  { name: 'HTTP/1.2', send: `GET /public/f HTTP/1.2\r\nHost: ${HOST}\r\n\r\n`, expect: 400 },
  { name: 'HTTP/2.0 in a request line', send: `GET /public/f HTTP/2.0\r\nHost: ${HOST}\r\n\r\n`, expect: 400 },
  { name: 'lower-case method', send: `get /public/f HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, expect: 400 },
  { name: 'unknown method', send: `BREW /public/f HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, expect: 400 },
  { name: 'garbage instead of a request', send: '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u01fc\u0003\u0003', expect: 400 },
  // nghttp2/h2c smuggling (Bishop Fox h2csmuggler): an upgrade to h2c would tunnel past the parser.
  { name: 'Upgrade: h2c with Connection: Upgrade', send: `GET /public/f HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`, expect: 400 },
  { name: 'Upgrade to an unknown protocol', send: `GET /public/f HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: tls/1.3\r\n\r\n`, expect: 400 },
  { name: 'CONNECT', send: `CONNECT ${HOST}:80 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, expect: 400 },
  { name: 'CONNECT to the upstream address', send: `CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n`, expect: 400 },
  // RFC 9110 §10.1.1: an expectation the gateway cannot meet is refused (and recorded), never ignored.
  { name: 'Expect other than 100-continue', send: `GET /public/f HTTP/1.1\r\nHost: ${HOST}\r\nExpect: 200-ok\r\n\r\n`, expect: 400 },
];

describe('ambiguous framing is refused and nothing is smuggled', () => {
  for (const c of REFUSED) {
    it(c.name, async () => {
      await rawCase(env, { name: c.name, send: Buffer.from(c.send, 'latin1'), expect: c.expect, upstream: c.upstream ?? [] });
    });
  }
});

describe('well-framed bodies are forwarded exactly', () => {
  it('a chunked body with an extension', async () => {
    await rawCase(env, {
      name: 'chunk extension',
      send: head(['Transfer-Encoding: chunked', 'Connection: close']) + '5;name=value\r\nhello\r\n0\r\n\r\n',
      expect: 200,
      upstream: ['/public/f'],
      check: (_x, seen) => expect(seen.upstream[0]?.bodySha256).toBe(sha256('hello')),
    });
  });

  it('Transfer-Encoding in upper case', async () => {
    await rawCase(env, {
      name: 'CHUNKED',
      send: head(['Transfer-Encoding: CHUNKED', 'Connection: close']) + '5\r\nhello\r\n0\r\n\r\n',
      expect: 200,
      upstream: ['/public/f'],
      check: (_x, seen) => expect(seen.upstream[0]?.bodyBytes).toBe(5),
    });
  });

  it('trailers never reach the upstream (an identity header hidden in them included)', async () => {
    await rawCase(env, {
      name: 'trailers',
      send: head(['Transfer-Encoding: chunked', 'Trailer: X-Portcullis-User', 'Connection: close']) + '5\r\nhello\r\n0\r\nX-Portcullis-User: admin\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n',
      expect: 200,
      upstream: ['/public/f'],
      check: (_x, seen) => expect(seen.upstream[0]?.rawTrailers).toEqual([]),
    });
  });

  it('a body hiding a request is forwarded as a body, never as a request', async () => {
    await rawCase(env, {
      name: 'body with a request inside',
      send: head([`Content-Length: ${SMUGGLED.length}`, 'Connection: close'], 'GET') + SMUGGLED,
      expect: 200,
      upstream: ['/public/f'],
      check: (_x, seen) => expect(seen.upstream[0]?.bodySha256).toBe(sha256(SMUGGLED)),
    });
  });

  for (const method of ['GET', 'DELETE', 'OPTIONS']) {
    it(`a ${method} with a Content-Length body, followed by a pipelined request`, async () => {
      await rawCase(env, {
        name: `${method} body`,
        send: head(['Content-Length: 5'], method, '/public/one') + 'hello' + `GET /public/two HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`,
        expect: [200, 200],
        upstream: ['/public/one', '/public/two'],
        check: (_x, seen) => expect(seen.upstream.find((u) => u.url === '/public/one')?.bodyBytes).toBe(5),
      });
    });
  }

  it('two spaces after the method (tolerated by Node; re-framed upstream)', async () => {
    await rawCase(env, { name: 'two spaces', send: `GET  /public/f HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, expect: 200, upstream: ['/public/f'] });
  });

  it('a DELETE with a chunked body', async () => {
    await rawCase(env, { name: 'delete chunked', send: head(['Transfer-Encoding: chunked', 'Connection: close'], 'DELETE') + '3\r\nabc\r\n0\r\n\r\n', expect: 200, upstream: ['/public/f'] });
  });

  it('a Transfer-Encoding hidden after 2000 other headers still frames the body', async () => {
    const many = Array.from({ length: 2001 }, (_, i) => `X-${i}: a`);
    await rawCase(env, {
      name: 'TE after 2000 headers',
      send: head([...many, 'Transfer-Encoding: chunked', 'Connection: close']) + '5\r\nhello\r\n0\r\n\r\n',
      expect: 200,
      upstream: ['/public/f'],
      check: (_x, seen) => expect(seen.upstream[0]?.bodySha256).toBe(sha256('hello')),
    });
  });

  it('three pipelined requests on one connection are answered in order', async () => {
    const one = (p: string, last = false) => `GET ${p} HTTP/1.1\r\nHost: ${HOST}\r\n${last ? 'Connection: close\r\n' : ''}\r\n`;
    await rawCase(env, { name: 'pipelined', send: one('/public/p1') + one('/public/p2') + one('/public/p3', true), expect: [200, 200, 200], upstream: ['/public/p1', '/public/p2', '/public/p3'] });
  });
});

describe('requests pipelined behind a refusal are dropped with the connection', () => {
  const behind = `GET /public/behind HTTP/1.1\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}`;
  const cases: readonly FramingCase[] = [
    { name: 'behind a bad target', send: `GET /public/../admin HTTP/1.1\r\nHost: ${HOST}\r\n\r\n${behind}`, expect: 400 },
    { name: 'behind a bad Host', send: `GET /public/x HTTP/1.1\r\nHost: a@b\r\n\r\n${behind}`, expect: 400 },
    { name: 'behind a body too large', send: head(['Content-Length: 2000000']) + behind, expect: 413 },
    { name: 'behind a parser error', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\rb\r\n\r\n${behind}`, expect: 400 },
    { name: 'behind a refused protocol switch', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n${behind}`, expect: 400 },
    { name: 'behind a double Authorization', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n${behind}`, expect: 400 },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      await rawCase(env, { name: c.name, send: c.send, expect: c.expect });
    });
  }

  it('garbage pipelined behind a complete request: that request is answered and recorded as it was, the garbage dropped', async () => {
    await rawCase(env, {
      name: 'garbage behind a complete request',
      send: head(['Content-Length: 5'], 'POST', '/public/first') + 'hello' + 'llo\r\n0\r\n\r\n' + behind,
      expect: 200,
      upstream: ['/public/first'],
      check: (x, seen) => {
        expect(x.closedByServer).toBe(true);
        expect(seen.records[0]).toMatchObject({ decision: 'allow', response: { status: 200 } });
      },
    });
  });

  for (const [name, first, status, upstream] of [
    ['a refused target', 'GET /public/%2 HTTP/1.1', 400, []],
    ['an anonymous request to a private route', 'GET /app/x HTTP/1.1', 401, []],
    ['a forwarded request', 'GET /public/ok HTTP/1.1', 200, ['/public/ok']],
  ] as const) {
    it(`garbage right behind ${name} (no body): that request is still answered, then the connection closes`, async () => {
      await rawCase(env, {
        name,
        send: `${first}\r\nHost: ${HOST}\r\nAccept: application/json\r\n\r\nhello${SMUGGLED}`,
        expect: status,
        upstream,
        options: { timeoutMs: 2500 },
        check: (x) => expect(x.closedByServer).toBe(true),
      });
    });
  }

  it('behind a chunk extension too large for the parser (Node CVE-2024-22019): one answer, one record', async () => {
    await rawCase(env, {
      name: 'chunk extension overflow',
      send: head(['Transfer-Encoding: chunked']) + `5;${'x'.repeat(20_000)}\r\nhello\r\n0\r\n\r\n${behind}`,
      expect: 413,
      check: (_x, seen) => expect(seen.records[0]?.reason).toBe('unparsable-request:hpe_chunk_extensions_overflow'),
    });
  });
});

describe('Expect: 100-continue', () => {
  it('is not answered with 100 for a request that is refused: the body is never invited', async () => {
    await rawCase(env, {
      name: 'expect on refused',
      send: head(['Expect: 100-continue', 'Content-Length: 5', 'Accept: application/json'], 'POST', '/admin/x'),
      expect: 401,
      check: (x) => expect(x.interim.map((r) => r.status)).toEqual([]),
    });
  });

  it('is answered with 100 for a request that is forwarded, and the body follows', async () => {
    await rawCase(env, {
      name: 'expect on forwarded',
      send: head(['Expect: 100-continue', 'Content-Length: 5', 'Connection: close']),
      expect: 200,
      upstream: ['/public/f'],
      options: { then: [[150, 'hello']] },
      check: (x, seen) => {
        expect(x.interim.map((r) => r.status)).toEqual([100]);
        expect(seen.upstream[0]?.bodyBytes).toBe(5);
        expect(seen.upstream[0]?.headers.expect).toBeUndefined();
      },
    });
  });
});
