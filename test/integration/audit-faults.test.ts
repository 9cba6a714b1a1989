/**
 * The audit log under faults, over real sockets: a Redis sink that crashes under load (spool mode
 * keeps serving and replays in order; reject mode answers 503 and forwards nothing), a gateway
 * process SIGKILLed mid-load (every request an upstream saw has exactly one record afterwards), and
 * strict routes, which wait for the local spool, not for the sink.
 *
 * Redis here is always a private redis-server on a free port with an fsynced append-only file
 * (test/support/redis-server.ts with durable: true), so what it acknowledged before a crash is still there after it;
 * the shared Redis on 6379 is never touched. The CLI test runs dist/ (`npm run build` first).
 */
import { randomBytes } from 'node:crypto';
import { cpSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openAuditLog } from '../../src/audit/audit-log.js';
import { createFileSink } from '../../src/audit/file-sink.js';
import type { AuditRecord, RecordBody } from '../../src/audit/record.js';
import { chainProblems, readFileSinkRecords } from '../support/audit-records.js';
import { startRedisServer, type TestRedisServer } from '../support/redis-server.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send, type ClientResponse } from '../support/http-client.js';
import { eventually, freePorts, killAllCli, startCli, type CliProcess } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  await killAllCli();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** A promise with its resolve function outside. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function durableRedis(): Promise<TestRedisServer> {
  const redis = await startRedisServer({ durable: true });
  cleanups.push(() => redis.stop());
  return redis;
}

async function recordingUpstream(): Promise<RecordingUpstream> {
  const up = await startRecordingUpstream();
  cleanups.push(() => up.close());
  return up;
}

/** A gateway whose audit log goes to a Redis stream of its own. */
async function redisGateway(opts: { instance: string; redis: TestRedisServer; onFailure: 'spool' | 'reject'; routes: Record<string, unknown>[] }): Promise<{ gw: TestGateway; stream: string }> {
  const stream = `pc-test:${randomBytes(6).toString('hex')}`;
  const gw = await startGateway({
    server: { instance_id: opts.instance, public_url: 'http://localhost' },
    audit: { sink: { type: 'redis', url: opts.redis.url, stream }, on_failure: opts.onFailure },
    routes: opts.routes,
  });
  cleanups.push(async () => {
    await gw.stop(200);
    await rm(gw.dir, { recursive: true, force: true });
  });
  return { gw, stream };
}

/** Every record of a log in the Redis sink, as the stored lines (field `r`), in stream order. */
async function readStream(url: string, stream: string, instance: string): Promise<string[]> {
  const client = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const entries = await client.xrangeBuffer(`${stream}:{${instance}}:records`, '-', '+');
    return entries.map(([, fields]) => {
      const at = fields.findIndex((f, i) => i % 2 === 0 && f.toString('latin1') === 'r');
      const value = fields[at + 1];
      if (at === -1 || value === undefined) throw new Error('stream entry without field r');
      return value.toString('utf8');
    });
  } finally {
    client.disconnect();
  }
}

const parse = (line: string): AuditRecord => JSON.parse(line) as AuditRecord;

/** How often each value occurs. */
function counts(values: Iterable<string>): Map<string, number> {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}

/** The value of one exactly-labelled sample, 0 when the series does not exist yet. */
function sample(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return 0;
}

async function metricsText(adminUrl: string): Promise<string> {
  const res = await fetch(`${adminUrl}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

const REDIS_FAILURES = 'portcullis_audit_records_total{sink="redis",result="failure"}';
const SPOOLED = 'portcullis_audit_spooled_records';

/** Runs `total` requests, `concurrency` at a time; `run(i)` sends request i. */
async function load(total: number, concurrency: number, run: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < total; i = next++) await run(i);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

function requestId(res: ClientResponse): string {
  const id = res.headers['x-portcullis-request-id'];
  if (typeof id !== 'string' || id === '') throw new Error(`response ${res.status} without X-Portcullis-Request-Id`);
  return id;
}

/** An upstream (in this process) whose handler runs `onRequest` and answers 200. */
async function handlerUpstream(onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<string> {
  const server = http.createServer(onRequest);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

// ---------------------------------------------------------------------------------------------

describe('the audit log under faults', () => {
  it('keeps serving while Redis is down in spool mode and replays every record in order once it is back', { timeout: 40_000 }, async () => {
    const instance = 'gw-spool';
    const redis = await durableRedis();
    const upstream = await recordingUpstream();
    const { gw, stream } = await redisGateway({
      instance,
      redis,
      onFailure: 'spool',
      routes: [{ id: 'app', host: 'localhost', path: '/', upstream: upstream.url, public: true }],
    });

    const total = 2000;
    const killAt = Math.floor(total / 3);
    const restartAt = Math.floor((2 * total) / 3);
    const answered = new Map<string, number>(); // request id → status the client got
    const wrong: string[] = [];
    const reachedKill = deferred();
    const restarted = deferred();
    let doneBeforeRestart = 0;
    const allBeforeRestartDone = deferred();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 30 });
    cleanups.push(() => {
      agent.destroy();
      return Promise.resolve();
    });
    const failuresBefore = sample(await metricsText(gw.adminUrl), REDIS_FAILURES);
    const during = { spooled: 0, failures: 0 };

    const driving = load(total, 30, async (i) => {
      if (i === killAt) reachedKill.resolve();
      if (i >= restartAt) await restarted.promise;
      const notFound = i % 3 === 2;
      const res = await send(gw.port, { path: `/item/${i}`, headers: ['Host', notFound ? 'nowhere.localhost' : 'localhost', 'Accept', 'application/json'], agent });
      answered.set(requestId(res), res.status);
      if (res.status !== (notFound ? 404 : 200)) wrong.push(`request ${i}: ${res.status} ${res.text()}`);
      if (i < restartAt && ++doneBeforeRestart === restartAt) allBeforeRestartDone.resolve();
    });

    const outage = (async () => {
      await reachedKill.promise;
      await redis.crash();
      // While Redis is down (and the load goes on), the admin listener shows the spool filling up.
      await eventually(async () => {
        const text = await metricsText(gw.adminUrl);
        during.spooled = sample(text, SPOOLED);
        during.failures = sample(text, REDIS_FAILURES);
        return during.spooled > 0 && during.failures > failuresBefore;
      }, 10_000, 20);
      await allBeforeRestartDone.promise;
      await redis.restart();
      restarted.resolve();
    })();

    await Promise.all([driving, outage]);
    expect(wrong).toEqual([]);
    expect(answered.size).toBe(total);
    expect(during.spooled).toBeGreaterThan(0);
    expect(during.failures).toBeGreaterThan(failuresBefore);

    expect(await gw.app.audit.flush(15_000)).toBe(true);
    const lines = await readStream(redis.url, stream, instance);
    expect(lines.length).toBe(total);
    const records = lines.map(parse);
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(chainProblems(lines)).toEqual([]);
    const perId = counts(records.map((r) => r.id));
    const byId = new Map(records.map((r) => [r.id, r]));
    for (const [id, status] of answered) {
      expect(perId.get(id), id).toBe(1);
      expect(byId.get(id)?.response?.status, id).toBe(status);
    }
    const after = await metricsText(gw.adminUrl);
    expect(sample(after, SPOOLED)).toBe(0);
    expect(sample(after, 'portcullis_audit_queue_depth')).toBe(0);
    // Each record is counted once: stored once, and failed at most once however often it was retried.
    expect(sample(after, 'portcullis_audit_records_total{sink="redis",result="success"}')).toBe(total);
    expect(sample(after, REDIS_FAILURES)).toBeLessThanOrEqual(total);
  });

  it('answers 503 and forwards nothing while Redis is down in reject mode, and records the refusals too', { timeout: 30_000 }, async () => {
    const instance = 'gw-reject';
    const redis = await durableRedis();
    const upstream = await recordingUpstream();
    const { gw, stream } = await redisGateway({
      instance,
      redis,
      onFailure: 'reject',
      routes: [{ id: 'app', host: 'localhost', path: '/', upstream: upstream.url, public: true }],
    });
    const answered = new Map<string, number>();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 30 });
    cleanups.push(() => {
      agent.destroy();
      return Promise.resolve();
    });
    const get = async (path: string, host = 'localhost'): Promise<ClientResponse> => {
      const res = await send(gw.port, { path, headers: ['Host', host, 'Accept', 'application/json'], agent });
      answered.set(requestId(res), res.status);
      return res;
    };

    // Before: everything is forwarded.
    const before: number[] = [];
    await load(300, 30, async (i) => {
      before.push((await get(`/before/${i}`, i % 3 === 2 ? 'nowhere.localhost' : 'localhost')).status);
    });
    expect(before.filter((s) => s !== 200 && s !== 404)).toEqual([]);
    expect((await fetch(`${gw.adminUrl}/readyz`)).status).toBe(200);

    await redis.crash();
    // The writer notices at its first failed append (the records of these probes); from then on it refuses.
    await eventually(async () => (await get('/probe')).status === 503, 10_000, 20);
    expect((await fetch(`${gw.adminUrl}/readyz`)).status).toBe(503);
    const forwarded = upstream.requests.length;
    const refusedIds: string[] = [];
    const during: string[] = [];
    await load(300, 30, async (i) => {
      const notFound = i % 3 === 2;
      const res = await get(`/during/${i}`, notFound ? 'nowhere.localhost' : 'localhost');
      if (notFound) {
        if (res.status !== 404) during.push(`request ${i}: ${res.status}`);
        return;
      }
      const body = res.json() as { error?: string };
      if (res.status !== 503 || body.error !== 'GW_ERR_AUDIT_UNAVAILABLE') during.push(`request ${i}: ${res.status} ${res.text()}`);
      else refusedIds.push(requestId(res));
    });
    expect(during).toEqual([]);
    expect(upstream.requests.length).toBe(forwarded);
    expect((await fetch(`${gw.adminUrl}/readyz`)).status).toBe(503);

    await redis.restart();
    await eventually(async () => (await get('/after')).status === 200, 10_000, 50);
    await eventually(async () => (await fetch(`${gw.adminUrl}/readyz`)).status === 200, 5_000, 50);
    for (let i = 0; i < 20; i++) expect((await get(`/after/${i}`)).status).toBe(200);
    expect(upstream.requests.length).toBeGreaterThan(forwarded);

    expect(await gw.app.audit.flush(15_000)).toBe(true);
    const lines = await readStream(redis.url, stream, instance);
    const records = lines.map(parse);
    expect(records.length).toBe(answered.size);
    expect(chainProblems(lines)).toEqual([]);
    const byId = new Map(records.map((r) => [r.id, r]));
    expect(counts(records.map((r) => r.id)).size).toBe(records.length);
    for (const [id, status] of answered) expect(byId.get(id)?.response?.status, id).toBe(status);
    for (const id of refusedIds) expect(byId.get(id)).toMatchObject({ decision: 'error', reason: 'audit-unavailable', response: { status: 503 } });
    // Every request the upstream got has its record.
    for (const r of upstream.requests) expect(byId.has(String(r.headers['x-portcullis-request-id']))).toBe(true);
  });

  it('writes exactly one record for every request an upstream received when the gateway process is SIGKILLed mid-load', { timeout: 40_000 }, async () => {
    const instance = 'gw-crash';
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-faults-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));

    // The upstream runs here: it records the request id of everything it receives, answers /slow
    // after 300 ms, and SIGKILLs the gateway while several slow requests are in flight.
    const received: string[] = [];
    const slowPending = new Set<string>();
    let inFlightAtKill: string[] = [];
    let gateway: CliProcess | undefined;
    let killed = false;
    const upstreamUrl = await handlerUpstream((req, res) => {
      req.resume();
      res.on('error', () => undefined);
      const id = String(req.headers['x-portcullis-request-id']);
      received.push(id);
      if (!(req.url ?? '').startsWith('/slow')) {
        res.end('fast\n');
        return;
      }
      slowPending.add(id);
      if (!killed && received.length >= 300 && slowPending.size >= 5 && gateway !== undefined) {
        killed = true;
        inFlightAtKill = [...slowPending];
        gateway.signal('SIGKILL');
      }
      setTimeout(() => {
        slowPending.delete(id);
        res.end('slow\n');
      }, 300);
    });

    const [port = 0, adminPort = 0] = await freePorts(2);
    const configFile = join(dir, 'portcullis.yaml');
    await writeFile(
      configFile,
      [
        'server:',
        `  listen: 127.0.0.1:${port}`,
        `  public_url: http://localhost:${port}`,
        `  admin_listen: 127.0.0.1:${adminPort}`,
        `  instance_id: ${instance}`,
        'identity:',
        `  providers: [{id: local, type: local, users_file: "${join(dir, 'users.yaml')}"}]`,
        `  assertion: {key_file: "${join(dir, 'assertion-keys.json')}"}`,
        'audit:',
        `  sink: {type: file, dir: "${join(dir, 'audit')}"}`,
        '  on_failure: spool',
        `  spool_dir: "${join(dir, 'spool')}"`,
        `  seal: {origin: test.example/audit, key_file: "${join(dir, 'seal.key')}", witness_dir: "${join(dir, 'checkpoints')}"}`,
        `mfa: {credentials_file: "${join(dir, 'mfa', 'credentials.json')}", secret_key_file: "${join(dir, 'mfa', 'secret.key')}"}`,
        'routes:',
        `  - {id: app, host: localhost, path: /, upstream: "${upstreamUrl}", public: true}`,
        '',
      ].join('\n'),
    );
    const serve = async (): Promise<CliProcess> => {
      const p = startCli(['serve', '--config', configFile, '--log-level', 'warn']);
      await p.waitFor(/^portcullis listening on /m, 15_000);
      return p;
    };

    gateway = await serve();
    const first = gateway;
    const answered = new Map<string, number>();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 30 });
    cleanups.push(() => {
      agent.destroy();
      return Promise.resolve();
    });
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (!killed && sent < 20_000) {
        const i = sent++;
        const notFound = i % 7 === 3;
        const path = i % 5 === 0 ? `/slow/${i}` : `/fast/${i}`;
        try {
          const res = await send(port, { path, headers: ['Host', notFound ? 'nowhere.localhost' : 'localhost', 'Accept', 'application/json'], agent });
          answered.set(requestId(res), res.status);
        } catch {
          // the gateway died under this request
        }
      }
    };
    await Promise.all(Array.from({ length: 30 }, worker));
    const wasKilledMidLoad = killed;
    first.signal('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    expect(wasKilledMidLoad).toBe(true);
    expect(inFlightAtKill.length).toBeGreaterThanOrEqual(5);

    // Restarted with the same config: it recovers the spool, then serves again.
    gateway = await serve();
    const second = gateway;
    for (let i = 0; i < 20; i++) {
      const res = await send(port, { path: `/after/${i}`, headers: ['Host', 'localhost', 'Accept', 'application/json'] });
      expect(res.status).toBe(200);
      answered.set(requestId(res), res.status);
    }
    await eventually(async () => {
      const text = (await send(adminPort, { path: '/metrics', headers: ['Host', '127.0.0.1'] })).text();
      return sample(text, 'portcullis_audit_queue_depth') === 0 && sample(text, 'portcullis_audit_tree_size') > 0;
    }, 10_000, 50);
    second.signal('SIGTERM');
    expect((await second.exited).code).toBe(0);

    // The file sink survived the kill: every segment ends with a whole line.
    const logDir = join(dir, 'audit', instance);
    for (const f of (await readdir(logDir)).filter((n) => n.startsWith('records-'))) {
      const text = await readFile(join(logDir, f), 'utf8');
      expect(text === '' || text.endsWith('\n'), f).toBe(true);
    }
    const all = readFileSinkRecords(join(dir, 'audit'), instance);
    expect(chainProblems(all.map((r) => r.line))).toEqual([]);
    const records = all.map((r) => r.record);
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i));
    const perId = counts(records.map((r) => r.id));
    expect(perId.size).toBe(records.length); // no request recorded twice
    for (const id of received) expect(perId.get(id), id).toBe(1);
    const byId = new Map(records.map((r) => [r.id, r]));
    for (const id of inFlightAtKill) expect(byId.get(id), id).toMatchObject({ decision: 'error', reason: 'crash-recovered', route: 'app' });
    // Everything the clients saw proxied has its record; what was recovered is marked so.
    for (const [id, status] of answered) {
      if (status === 404) continue; // answered without forwarding: its record may die with the process
      expect(perId.get(id), id).toBe(1);
    }
  });

  it('forwards a strict route while Redis is down once the intent is in the spool, without waiting for the sink', { timeout: 30_000 }, async () => {
    const instance = 'gw-strict';
    const redis = await durableRedis();
    const spool = { wal: '' }; // the gateway's wal.log, once it runs
    const seen: { id: string; intentInSpool: boolean }[] = [];
    const strictUrl = await handlerUpstream((req, res) => {
      req.resume();
      const id = String(req.headers['x-portcullis-request-id']);
      const wal = spool.wal === '' ? '' : readFileSyncSafe(spool.wal);
      const intentInSpool = wal.split('\n').some((line) => line.startsWith('I\t') && (JSON.parse(line.slice(2)) as { id: string }).id === id);
      seen.push({ id, intentInSpool });
      res.end('strict ok\n');
    });
    const started = await redisGateway({
      instance,
      redis,
      onFailure: 'spool',
      routes: [{ id: 'strict', host: 'localhost', path: '/', upstream: strictUrl, public: true, audit: { strict: true } }],
    });
    const { gw, stream } = started;
    spool.wal = join(gw.dir, 'spool', instance, 'wal.log');
    const port = gw.port;
    const get = (path: string) => send(port, { path, headers: ['Host', 'localhost', 'Accept', 'application/json'] });

    expect((await get('/up')).status).toBe(200);
    expect(await gw.app.audit.flush(5_000)).toBe(true);
    await redis.crash();

    const ids: string[] = [];
    await load(60, 10, async (i) => {
      const res = await get(`/down/${i}`);
      expect(res.status).toBe(200);
      ids.push(requestId(res));
    });
    // Nothing could reach the sink meanwhile: all of them wait in the spool.
    const stats = gw.app.audit.stats();
    expect(stats.sinkHealthy).toBe(false);
    expect(stats.spooled).toBeGreaterThanOrEqual(60);
    expect(sample(await metricsText(gw.adminUrl), SPOOLED)).toBeGreaterThanOrEqual(60);
    expect(seen.length).toBe(61);
    expect(seen.filter((s) => !s.intentInSpool)).toEqual([]);

    await redis.restart();
    expect(await gw.app.audit.flush(15_000)).toBe(true);
    const lines = await readStream(redis.url, stream, instance);
    expect(chainProblems(lines)).toEqual([]);
    const perId = counts(lines.map((l) => parse(l).id));
    for (const id of ids) expect(perId.get(id), id).toBe(1);
    expect(lines.length).toBe(61);
  });

  it('writes the crash-recovered record of an interrupted request even when the sink is down at restart', { timeout: 30_000 }, async () => {
    const instance = 'gw-orphan';
    const redis = await durableRedis();
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-faults-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const crashSpool = join(dir, 'crash-image');
    // The gateway's first request is held by the upstream; the spool as it is then (the intent, no
    // record yet) is exactly what a crash at that moment leaves on disk.
    let release = (): void => undefined;
    const arrived = deferred();
    const spool = { dir: '' }; // the gateway's spool directory, once it runs
    const upstreamUrl = await handlerUpstream((req, res) => {
      req.resume();
      if (spool.dir !== '') cpSync(spool.dir, join(crashSpool, instance), { recursive: true });
      release = () => res.end('held\n');
      arrived.resolve();
    });
    const routes = [{ id: 'app', host: 'localhost', path: '/', upstream: upstreamUrl, public: true }];
    const { gw } = await redisGateway({ instance, redis, onFailure: 'spool', routes });
    spool.dir = join(gw.dir, 'spool', instance);
    const held = send(gw.port, { path: '/held', headers: ['Host', 'localhost'] });
    await arrived.promise;
    release();
    const id = requestId(await held);
    expect(readFileSync(join(crashSpool, instance, 'wal.log'), 'utf8')).toContain(`"id":"${id}"`);
    await gw.stop(200);

    // The crashed gateway comes back on that spool while its sink (a log of its own here) is down.
    await redis.crash();
    const stream = `pc-test:${randomBytes(6).toString('hex')}`;
    const back = await startGateway({
      server: { instance_id: instance, public_url: 'http://localhost' },
      audit: { sink: { type: 'redis', url: redis.url, stream }, on_failure: 'spool', spool_dir: crashSpool },
      routes,
    });
    cleanups.push(async () => {
      await back.stop(200);
      await rm(back.dir, { recursive: true, force: true });
    });
    expect(back.app.audit.stats().anchored).toBe(false);
    await redis.restart();
    await eventually(async () => back.app.audit.stats().anchored && (await back.app.audit.flush(1_000)) && back.app.audit.stats().size > 0, 10_000, 100);
    const lines = await readStream(redis.url, stream, instance);
    expect(chainProblems(lines)).toEqual([]);
    expect(lines.map(parse)).toMatchObject([{ id, decision: 'error', reason: 'crash-recovered', route: 'app', seq: 0 }]);
  });

  it('finds every in-flight request after a crash although the spool was compacted many times meanwhile', { timeout: 30_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-faults-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const logger = pino({ level: 'silent' });
    const sink = createFileSink({ dir: join(dir, 'audit') });
    cleanups.push(() => sink.close());
    const open = () => openAuditLog({ sink, instance: 'gw-compact', origin: 'test.example/audit/gw-compact', spoolDir: join(dir, 'spool'), onFailure: 'spool', logger, compactBytes: 4096 });
    const log = await open();
    cleanups.push(() => log.close());
    const body = (id: string): RecordBody => ({ v: 1, id, ts: new Date().toISOString(), kind: 'http', route: 'app', decision: 'allow', request: { method: 'GET', host: 'localhost', path: `/${id}` }, response: { status: 200 } });
    // Requests as the pipeline makes them: an intent, then (for most) the record; every third one
    // is still in flight when the process "dies" below.
    const inFlight: string[] = [];
    await load(3000, 50, async (i) => {
      const id = `req-${i}`;
      await log.intent({ id, body: body(id) }, false);
      await new Promise((r) => setImmediate(r));
      if (i % 3 === 0) inFlight.push(id);
      else await log.append(body(id), false);
    });
    expect(await log.flush(10_000)).toBe(true);
    expect(log.admission()).toBeUndefined();
    // A crash now: the next process opens the same spool and must find every in-flight request.
    const next = await open();
    cleanups.push(() => next.close());
    expect(await next.flush(10_000)).toBe(true);
    const all = readFileSinkRecords(join(dir, 'audit'), 'gw-compact');
    expect(chainProblems(all.map((r) => r.line))).toEqual([]);
    const recovered = all.filter((r) => r.record.reason === 'crash-recovered').map((r) => r.record.id);
    expect(recovered.sort()).toEqual([...inFlight].sort());
    expect(all.length).toBe(3000);
  });
});

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
