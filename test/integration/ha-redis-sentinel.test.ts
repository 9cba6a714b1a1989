/**
 * The gateway on a real Redis Sentinel group (one master, two replicas, three sentinels;
 * test/support/redis-sentinel.ts) for its store, MFA credentials and audit sink:
 *
 * - a planned switchover done the safe way (`CLIENT PAUSE WRITE` on the master, replicas caught up,
 *   then `SENTINEL FAILOVER`) under load: every request is answered 200 or fails closed (503), the
 *   session and the login rate-limit count survive, nothing is proxied without its record;
 * - the new master is killed (SIGKILL) after its replica caught up: the sentinels promote the other
 *   replica, the gateway follows (+switch-master), spools meanwhile and ships afterwards;
 * - `portcullis audit verify` (the real CLI, through the sentinels) finds the log intact.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createRedisSink } from '../../src/audit/redis-sink.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { addUser } from '../../src/identity/local-users.js';
import { Browser, hiddenField } from '../support/cookie-jar.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { eventually, runCli } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';
import { SENTINEL_MASTER_NAME, startSentinelGroup, type TestSentinelGroup } from '../support/redis-sentinel.js';

const HOST = 'app.localhost';
const SESSION = 'portcullis_session';
const INSTANCE = 'ha-sentinel-gw';
const PASSWORDS = { alice: 'alice password 1', carol: 'carol password 1' } as const;

let group: TestSentinelGroup;
let upstream: RecordingUpstream;
let dir: string;
let gw: TestGateway;
let stopped = false;
/** Set in afterAll: a load loop left running by a failed test ends too. */
let halted = false;
let configFile: string;
let stream: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-ha-sentinel-'));
  [group, upstream] = await Promise.all([startSentinelGroup(), startRecordingUpstream()]);
  const usersFile = join(dir, 'users.yaml');
  await addUser(usersFile, { name: 'alice', email: 'alice@example.com', groups: ['eng'], password: PASSWORDS.alice });
  await addUser(usersFile, { name: 'carol', email: 'carol@example.com', groups: ['eng'], password: PASSWORDS.carol });
  const prefix = `pc-ha:${randomBytes(4).toString('hex')}:`;
  stream = `${prefix}audit`;
  const sentinel = { name: SENTINEL_MASTER_NAME, nodes: group.sentinels };
  const config = {
    server: { instance_id: INSTANCE },
    store: { type: 'redis', redis: { sentinel, key_prefix: `${prefix}store:` } },
    identity: { providers: [{ id: 'local', type: 'local', users_file: usersFile }] },
    audit: {
      sink: { type: 'redis', sentinel, stream },
      on_failure: 'spool',
      spool_dir: join(dir, 'spool'),
      seal: { every: '1h', key_file: join(dir, 'seal.key'), witness_dir: join(dir, 'checkpoints') },
    },
    routes: [{ id: 'app', host: HOST, path: '/', upstream: upstream.url, allow: { groups: ['eng'] } }],
  };
  configFile = join(dir, 'portcullis.yaml');
  await writeFile(configFile, stringify(config));
  gw = await startGateway(config);
}, 90_000);

afterAll(async () => {
  halted = true;
  if (!stopped) await gw.stop().catch(() => undefined);
  await Promise.all([group.stop(), upstream.close()]);
  await Promise.all([dir, gw.dir].map((d) => rm(d, { recursive: true, force: true })));
});

async function signIn(b: Browser, user: keyof typeof PASSWORDS, password: string) {
  const base = `http://${HOST}:${gw.port}`;
  const page = await b.get(`${base}/.portcullis/login?rd=%2Fhome`);
  expect(page.status).toBe(200);
  return b.post(`${base}/.portcullis/login`, { csrf: hiddenField(page, 'csrf'), rd: hiddenField(page, 'rd'), username: user, password });
}

function request(session: string, path: string) {
  return send(gw.port, { path, headers: ['Host', HOST, 'Accept', 'application/json', 'Cookie', `${SESSION}=${session}`] });
}

/** Sequential requests with the session until `stop()`; statuses by path. */
async function load(session: string, tag: string, stop: () => boolean): Promise<Map<string, number>> {
  const statuses = new Map<string, number>();
  for (let n = 0; !stop() && !halted; n++) {
    const path = `/${tag}/${n}`;
    // A transport error is recorded as 0 (and fails the status checks), never left unhandled.
    statuses.set(path, await request(session, path).then((r) => r.status, () => 0));
    await new Promise((r) => setTimeout(r, 5));
  }
  return statuses;
}

describe('the gateway on a Redis Sentinel group', () => {
  let session = '';
  const answered = new Map<string, number>();

  it('signs in and counts failed sign-ins through the sentinels', async () => {
    const b = new Browser();
    expect((await signIn(b, 'alice', PASSWORDS.alice)).status).toBe(303);
    session = b.jar.get(HOST, SESSION) ?? '';
    expect(session).not.toBe('');
    for (let i = 0; i < 3; i++) expect((await signIn(new Browser(), 'carol', 'wrong password')).status).toBe(401);
    for (let i = 0; i < 5; i++) {
      expect((await request(session, `/before/${i}`)).status).toBe(200);
      answered.set(`/before/${i}`, 200);
    }
  });

  it('keeps the session and the rate-limit count through a planned switchover under load', async () => {
    const before = await group.master();
    let stop = false;
    const running = load(session, 'planned', () => stop);
    await new Promise((r) => setTimeout(r, 200));
    // The safe switchover: stop writes on the old master, let the replicas catch up, then switch.
    expect(await group.cli(before, 'CLIENT', 'PAUSE', '5000', 'WRITE')).toBe('OK');
    await group.waitReplicated();
    expect(await group.cli(Number(group.sentinels[0]?.split(':')[1]), 'SENTINEL', 'FAILOVER', SENTINEL_MASTER_NAME)).toBe('OK');
    await eventually(async () => (await group.master()) !== before, 30_000, 100);
    // Demote the old master now rather than when the sentinels get to it (seconds later): a client
    // that asked a sentinel not yet told of the switch could otherwise still write to it, and those
    // acknowledged writes would be lost when it resyncs (see README, "What a failover can lose").
    expect(await group.cli(before, 'REPLICAOF', '127.0.0.1', String(await group.master()))).toBe('OK');
    expect(await group.cli(before, 'CLIENT', 'UNPAUSE')).toBe('OK');
    await group.waitHealthy();
    await eventually(async () => {
      // Each attempt is a request of its own, with a record of its own.
      const path = `/probe-planned/${answered.size}`;
      const status = (await request(session, path)).status;
      answered.set(path, status);
      return status === 200;
    }, 30_000, 100);
    stop = true;
    const statuses = await running;
    for (const [path, status] of statuses) answered.set(path, status);
    expect([...statuses].filter(([, s]) => s !== 200 && s !== 503)).toEqual([]);
    expect([...statuses.values()].filter((s) => s === 200).length).toBeGreaterThan(3);

    expect((await request(session, '/after-planned')).status).toBe(200);
    answered.set('/after-planned', 200);
    for (let i = 0; i < 2; i++) expect((await signIn(new Browser(), 'carol', 'wrong password')).status).toBe(401);
    expect((await signIn(new Browser(), 'carol', PASSWORDS.carol)).status).toBe(429);
  }, 90_000);

  it('follows the promotion when the master is killed, loses no record, and verifies intact', async () => {
    await eventually(async () => gw.app.audit.flush(1_000), 30_000, 100);
    const victim = await group.master();
    // Async replication: only what reached a replica survives a crash (README: "What a failover can lose").
    await group.waitReplicated();
    let stop = false;
    const running = load(session, 'crash', () => stop);
    await new Promise((r) => setTimeout(r, 200));
    await group.kill(victim);
    await eventually(async () => (await group.master()) !== victim, 30_000, 100);
    await group.waitHealthy();
    await eventually(async () => {
      // Each attempt is a request of its own, with a record of its own.
      const path = `/probe-crash/${answered.size}`;
      const status = (await request(session, path)).status;
      answered.set(path, status);
      return status === 200;
    }, 30_000, 100);
    stop = true;
    const statuses = await running;
    for (const [path, status] of statuses) answered.set(path, status);
    expect([...statuses].filter(([, s]) => s !== 200 && s !== 503)).toEqual([]);
    await eventually(async () => gw.app.audit.flush(1_000), 30_000, 100);

    await gw.stop(5_000);
    stopped = true;
    const sink = createRedisSink({ connection: { sentinel: { name: SENTINEL_MASTER_NAME, nodes: group.sentinels, db: 0, tls: false } }, stream });
    let records: AuditRecord[];
    try {
      expect(await sink.logs()).toEqual([INSTANCE]);
      records = (await sink.read(INSTANCE, 0, 100_000)).map((r) => JSON.parse(r.bytes.toString('utf8')) as AuditRecord);
    } finally {
      await sink.close();
    }
    records.forEach((r, i) => expect(r.seq).toBe(i));
    const byPath = new Map<string, number>();
    for (const r of records) if (r.kind === 'http' && r.request !== undefined) byPath.set(r.request.path, (byPath.get(r.request.path) ?? 0) + 1);
    for (const u of upstream.requests) expect(byPath.get(u.url.split('?')[0] ?? ''), u.url).toBe(1);
    for (const [path] of answered) expect(byPath.get(path), path).toBe(1);

    const verify = await runCli(['audit', 'verify', '--config', configFile], 60_000);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toContain(`verified 1 log: ${records.length}/${records.length} records`);
  }, 90_000);
});
