import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { rawRequest } from '../support/raw-http.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

let upstream: RecordingUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startGateway({
    routes: [
      { id: 'admin', host: 'app.localhost', path: '/admin', upstream: upstream.url, allow: { groups: ['sre'] } },
      { id: 'app', host: 'app.localhost', path: '/', upstream: upstream.url, public: true },
    ],
  });
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

/** Raw request lines; each must be refused with the status given and never reach the upstream. */
const REJECTED: [string, string, number][] = [
  ['dot-dot segment', 'GET /public/../admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['dot segment', 'GET /./admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['encoded dot-dot', 'GET /public/%2e%2e/admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['mixed-case encoded dot-dot', 'GET /public/.%2E/admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['double-encoded dot-dot', 'GET /public/%252e%252e/admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['encoded slash', 'GET /public%2F..%2Fadmin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['encoded backslash', 'GET /public%5C..%5Cadmin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['raw backslash', 'GET /public\\..\\admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['encoded NUL', 'GET /admin%00.css HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['encoded control byte', 'GET /a%0Db HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['invalid UTF-8', 'GET /a%C0%AE%C0%AE/admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['lone continuation byte', 'GET /a%80 HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['malformed escape', 'GET /a%zz HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['fragment', 'GET /public#/../admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['path parameter', 'GET /admin;jsessionid=1 HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['empty segment', 'GET /public//admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['leading double slash', 'GET //admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['raw non-ASCII byte', Buffer.concat([Buffer.from('GET /caf'), Buffer.from([0xe9]), Buffer.from(' HTTP/1.1\r\nHost: app.localhost\r\n\r\n')]).toString('latin1'), 400],
  ['raw NUL byte', 'GET /a\u0000b HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['tab in target', 'GET /a\tb HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['absolute-form for another host', 'GET http://other.localhost/admin HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['absolute-form with another scheme', 'GET https://app.localhost/x HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['asterisk-form', 'OPTIONS * HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['authority-form', 'CONNECT app.localhost:80 HTTP/1.1\r\nHost: app.localhost\r\n\r\n', 400],
  ['missing Host on HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n', 400],
  ['missing Host on HTTP/1.0', 'GET / HTTP/1.0\r\n\r\n', 400],
  ['duplicate Host', 'GET / HTTP/1.1\r\nHost: app.localhost\r\nHost: evil.localhost\r\n\r\n', 400],
  ['Host with userinfo', 'GET / HTTP/1.1\r\nHost: user@app.localhost\r\n\r\n', 400],
  ['Host with a bad port', 'GET / HTTP/1.1\r\nHost: app.localhost:99999\r\n\r\n', 400],
  ['conflicting Content-Length', 'POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
  ['Content-Length with Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: app.localhost\r\nX-A: 1\r\n  folded\r\n\r\n', 400],
];

describe('request target checks', () => {
  it.each(REJECTED)('refuses %s and forwards nothing', async (_name, payload, status) => {
    const before = upstream.requests.length;
    const res = await rawRequest(gw.port, payload);
    expect(res.status).toBe(status);
    expect(upstream.requests.length).toBe(before);
  });

  it('names the error code in the JSON body', async () => {
    const res = await rawRequest(gw.port, 'GET /a/%2e%2e/admin HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n');
    expect(res.text).toContain('"error":"GW_ERR_REQUEST_TARGET"');
    expect(res.text).toContain('dot-segment');
  });

  it('forwards exactly the canonical path that policy judged', async () => {
    const res = await rawRequest(gw.port, 'GET /%70ublic/%7Ea/%e2%82%ac?q=%2e%2e HTTP/1.1\r\nHost: APP.localhost.\r\nConnection: close\r\n\r\n');
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)?.url).toBe('/public/~a/%E2%82%AC?q=%2e%2e');
  });

  it('judges an encoded prefix by its decoded segments', async () => {
    const before = upstream.requests.length;
    const res = await rawRequest(gw.port, 'GET /%61dmin/users HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n');
    expect(res.status).toBe(401);
    expect(upstream.requests.length).toBe(before);
  });

  it('accepts an absolute-form target for its own host', async () => {
    const res = await rawRequest(gw.port, 'GET http://app.localhost/abs?x=1 HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n');
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)?.url).toBe('/abs?x=1');
  });

  it('answers a pipelined request after a refused one on a fresh connection only', async () => {
    const before = upstream.requests.length;
    const res = await rawRequest(gw.port, 'GET /../x HTTP/1.1\r\nHost: app.localhost\r\n\r\nGET /after HTTP/1.1\r\nHost: app.localhost\r\n\r\n');
    expect(res.status).toBe(400);
    expect(res.text.match(/HTTP\/1\.1 /g)?.length).toBe(1);
    expect(upstream.requests.length).toBe(before);
  });
});
