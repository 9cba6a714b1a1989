import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { addUser } from '../../src/identity/local-users.js';
import { chainProblems, readFileSinkRecords } from '../support/audit-records.js';
import { createBrowserClient } from '../support/browser-client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

const INSTANCE = 'gw-audit';
let upstream: RecordingUpstream;
let strictUpstream: http.Server;
let strictSeenIntent: boolean[] = [];
let gw: TestGateway;

function records() {
  return readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE).map((r) => r.record);
}

async function settle(): Promise<void> {
  expect(await gw.app.audit.flush(5000)).toBe(true);
}

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  // An upstream that checks, the moment a request arrives, that the gateway's spool already holds
  // the request's intent (strict routes: durable before forwarding).
  strictUpstream = http.createServer((req, res) => {
    const id = req.headers['x-portcullis-request-id'];
    const wal = readFileSync(join(gw.dir, 'spool', INSTANCE, 'wal.log'), 'utf8');
    strictSeenIntent.push(typeof id === 'string' && wal.includes(`"id":"${id}"`));
    res.end('strict ok\n');
  });
  await new Promise<void>((r) => strictUpstream.listen(0, '127.0.0.1', r));
  gw = await startGateway({
    server: { instance_id: INSTANCE, public_url: 'http://localhost' },
    audit: { redact: { query_params: ['token'] }, seal: { origin: 'test.example/audit' } },
    routes: [
      { id: 'private', host: 'localhost', path: '/private', upstream: upstream.url, allow: { groups: ['eng'] } },
      { id: 'strict', host: 'localhost', path: '/strict', upstream: `http://127.0.0.1:${(strictUpstream.address() as AddressInfo).port}`, public: true, audit: { strict: true } },
      { id: 'app', host: 'localhost', path: '/', upstream: upstream.url, public: true, websocket: true },
    ],
  });
  await addUser(join(gw.dir, 'users.yaml'), { name: 'alice', email: 'alice@example.com', groups: ['eng'], password: 'correct horse battery' });
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
  await new Promise<void>((r) => strictUpstream.close(() => r()));
});

describe('audit records', () => {
  it('writes exactly one chained record per request under concurrent load, with route, decision and status', async () => {
    const before = records().length;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const kinds = [
      { path: '/ok?token=secret&x=1', host: 'localhost', status: 200, decision: 'allow', route: 'app' },
      { path: '/private/x', host: 'localhost', status: 401, decision: 'unauthenticated', route: 'private' },
      { path: '/x', host: 'nowhere.localhost', status: 404, decision: 'not_found', route: undefined },
    ] as const;
    const n = 1500;
    const ids = new Map<string, (typeof kinds)[number]>();
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const k = kinds[i % kinds.length];
        if (k === undefined) return;
        const res = await send(gw.port, { path: k.path, headers: ['Host', k.host], agent });
        expect(res.status).toBe(k.status);
        ids.set(String(res.headers['x-portcullis-request-id']), k);
      }),
    );
    agent.destroy();
    await settle();
    const all = readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE);
    expect(chainProblems(all.map((r) => r.line))).toEqual([]);
    const fresh = all.slice(before).map((r) => r.record).filter((r) => r.kind === 'http');
    expect(fresh.length).toBe(n);
    for (const r of fresh) {
      const k = ids.get(r.id);
      expect(k, r.id).toBeDefined();
      expect(r.decision).toBe(k?.decision);
      expect(r.response?.status).toBe(k?.status);
      expect(r.route).toBe(k?.route);
      expect(r.log).toBe(`test.example/audit/${INSTANCE}`);
    }
    const ok = fresh.find((r) => r.route === 'app');
    expect(ok?.request?.query).toBe('token=REDACTED&x=1');
    expect(ok?.upstream?.target).toBe(upstream.url);
    expect(typeof ok?.duration_us).toBe('number');
  });

  it('carries the verified identity of a signed-in request', async () => {
    const b = createBrowserClient(gw.port, 'localhost');
    const page = await b.get('/.portcullis/login');
    await b.post('/.portcullis/login', { username: 'alice', password: 'correct horse battery', csrf: b.hidden(page, 'csrf'), rd: '/' });
    const res = await b.get('/private/y');
    expect(res.status).toBe(200);
    await settle();
    const all = records();
    const rec = all.find((r) => r.id === res.headers['x-portcullis-request-id']);
    expect(rec?.identity).toMatchObject({ user: 'alice', email: 'alice@example.com', groups: ['eng'], provider: 'local', auth: 'cookie' });
    expect(rec?.identity?.session).toMatch(/^[0-9a-f]{16}$/);
    expect(rec?.reason).toBe('group-ok');
    const login = all.filter((r) => r.kind === 'auth').at(-1);
    expect(login).toMatchObject({ kind: 'auth', decision: 'allow', event: { action: 'login', provider: 'local' }, identity: { user: 'alice' } });
  });

  it('forwards a strict route only after its intent is in the spool', async () => {
    strictSeenIntent = [];
    for (let i = 0; i < 5; i++) expect((await send(gw.port, { path: '/strict', headers: ['Host', 'localhost'] })).status).toBe(200);
    expect(strictSeenIntent).toEqual([true, true, true, true, true]);
  });

  it('writes one websocket record on close with message and byte counts both ways', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/live`, { headers: { Host: 'localhost' } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    let got = 0;
    const echoed = new Promise<void>((resolve) => {
      ws.on('message', () => {
        got += 1;
        if (got === 3) resolve();
      });
    });
    ws.send('a');
    ws.send('bb');
    ws.send(Buffer.alloc(1000));
    await echoed;
    ws.close();
    await new Promise((r) => setTimeout(r, 200));
    await settle();
    const rec = records().filter((r) => r.kind === 'websocket').at(-1);
    expect(rec?.websocket).toMatchObject({ messages_in: 3, messages_out: 3 });
    expect(rec?.websocket?.bytes_in).toBeGreaterThan(1003);
    expect(rec?.response?.status).toBe(101);
  });

  it('meters appended records and the tree size', async () => {
    const r = await send(gw.port, { path: '/', headers: ['Host', 'localhost'] });
    expect(r.status).toBe(200);
    await settle();
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/portcullis_audit_records_total\{sink="file",result="success"\} [1-9]/);
    expect(metrics).toMatch(/portcullis_audit_tree_size [1-9]/);
  });
});
