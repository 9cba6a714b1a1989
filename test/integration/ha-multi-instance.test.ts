/**
 * Three real gateway processes (`portcullis serve`) on one private Redis (store and audit sink) behind
 * a TCP round-robin balancer: a session made through one instance is honoured by all; each instance
 * writes and seals its own audit log; a rolling restart (SIGTERM, wait for exit, start again, next
 * one) under continuous keep-alive load answers every request 200 and loses no record; and
 * `portcullis audit verify` finds all three logs intact.
 *
 * The keep-alive race (the server closes an idle connection just as the client sends on it) is
 * handled by the client, as RFC 9110 §9.2.2 allows: a GET that got no byte of response is sent again.
 * The balancer is plain TCP and never re-sends anything.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createRedisSink } from '../../src/audit/redis-sink.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { addUser } from '../../src/identity/local-users.js';
import { Browser, hiddenField } from '../support/cookie-jar.js';
import { eventually, freePorts, killAllCli, runCli, startCli, type CliProcess } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';
import { startRedisServer, type TestRedisServer } from '../support/redis-server.js';
import { startTcpBalancer, type TcpBalancer } from '../support/tcp-balancer.js';

const HOST = 'app.localhost';
const SESSION = 'portcullis_session';
const PASSWORD = 'alice password 1';
const INSTANCES = ['gw-1', 'gw-2', 'gw-3'] as const;

interface Instance {
  readonly id: string;
  readonly port: number;
  readonly adminPort: number;
  readonly config: string;
  proc: CliProcess;
}

let dir: string;
let redis: TestRedisServer;
let upstream: RecordingUpstream;
let balancer: TcpBalancer;
let stream: string;
const instances: Instance[] = [];

async function readyz(adminPort: number): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}

function start(inst: Pick<Instance, 'config'>): CliProcess {
  return startCli(['serve', '--config', inst.config, '--log-level', 'warn']);
}

async function waitServing(inst: Instance): Promise<void> {
  await inst.proc.waitFor(/portcullis listening on/, 30_000);
  await eventually(async () => (await readyz(inst.adminPort)) === 200, 10_000);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-ha-multi-'));
  [redis, upstream] = await Promise.all([startRedisServer(), startRecordingUpstream()]);
  const usersFile = join(dir, 'users.yaml');
  await addUser(usersFile, { name: 'alice', email: 'alice@example.com', groups: ['eng'], password: PASSWORD });
  const keyPrefix = `pc-ha:${randomBytes(4).toString('hex')}:`;
  stream = `${keyPrefix}audit`;
  const ports = await freePorts(INSTANCES.length * 2);
  for (const [i, id] of INSTANCES.entries()) {
    const port = ports[2 * i] ?? 0;
    const adminPort = ports[2 * i + 1] ?? 0;
    const config = join(dir, `${id}.yaml`);
    await writeFile(
      config,
      stringify({
        server: {
          listen: `127.0.0.1:${port}`,
          admin_listen: `127.0.0.1:${adminPort}`,
          instance_id: id,
          // gw-1 keeps accepting 500 ms after SIGTERM (readiness 503, Connection: close); gw-2 and gw-3
          // close their listener at once, which exercises the keep-alive race.
          timeouts: { shutdown_grace: '10s', drain_delay: i === 0 ? '500ms' : '0s', keep_alive: '5s' },
        },
        store: { type: 'redis', redis: { url: redis.url, key_prefix: `${keyPrefix}store:` } },
        identity: { providers: [{ id: 'local', type: 'local', users_file: usersFile }], assertion: { key_file: join(dir, 'assertion-keys.json') } },
        mfa: { credentials_file: join(dir, 'mfa', 'credentials.json'), secret_key_file: join(dir, 'mfa', 'secret.key') },
        audit: {
          sink: { type: 'redis', url: redis.url, stream },
          spool_dir: join(dir, `spool-${id}`),
          seal: { every: '2s', key_file: join(dir, 'seal.key'), witness_dir: join(dir, 'checkpoints') },
        },
        routes: [{ id: 'app', host: HOST, path: '/', upstream: upstream.url, allow: { groups: ['eng'] } }],
      }),
    );
    const inst: Instance = { id, port, adminPort, config, proc: start({ config }) };
    instances.push(inst);
    // The first start creates the shared keys (seal, assertion, MFA secret); the others reuse them.
    await waitServing(inst);
  }
  balancer = await startTcpBalancer(instances.map((i) => i.port));
}, 120_000);

afterAll(async () => {
  await balancer.close();
  await killAllCli();
  await Promise.all([redis.stop(), upstream.close()]);
  await rm(dir, { recursive: true, force: true });
});

/** The load client: keep-alive GETs through the balancer, each re-sent only when it got no byte back. */
interface LoadResult {
  readonly sent: string[];
  readonly statuses: Map<number, number>;
  retries: number;
  readonly failures: string[];
}

function get(agent: http.Agent, path: string, cookie: string): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: balancer.port, path, agent, headers: { Host: `${HOST}:${balancer.port}`, Accept: 'application/json', Cookie: `${SESSION}=${cookie}` } });
    req.on('error', reject);
    req.on('response', (res) => {
      res.resume();
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.end();
  });
}

/** Sends one GET; when it fails without any response (reset, hang-up, refused), sends it again. */
async function getWithRetry(agent: http.Agent, path: string, cookie: string, result: LoadResult): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await get(agent, path, cookie)).status;
    } catch (err) {
      // No response object was ever seen: the request was not answered, and GET may be re-sent.
      if (attempt >= 5) throw err;
      result.retries++;
    }
  }
}

function runLoad(cookie: string, workers: number, stop: () => boolean): { done: Promise<void>; result: LoadResult } {
  const result: LoadResult = { sent: [], statuses: new Map(), retries: 0, failures: [] };
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  const worker = async (w: number): Promise<void> => {
    for (let n = 0; !stop(); n++) {
      const path = `/load/${w}-${n}`;
      result.sent.push(path);
      try {
        const status = await getWithRetry(agent, path, cookie, result);
        result.statuses.set(status, (result.statuses.get(status) ?? 0) + 1);
      } catch (err) {
        result.failures.push(`${path}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  };
  const done = Promise.all(Array.from({ length: workers }, (_, w) => worker(w))).then(() => {
    agent.destroy();
  });
  return { done, result };
}

async function readAllRecords(): Promise<Map<string, AuditRecord[]>> {
  const sink = createRedisSink({ url: redis.url, stream });
  try {
    const out = new Map<string, AuditRecord[]>();
    for (const name of await sink.logs()) {
      const records: AuditRecord[] = [];
      for (let from = 0; ; ) {
        const page = await sink.read(name, from, 1000);
        records.push(...page.map((r) => JSON.parse(r.bytes.toString('utf8')) as AuditRecord));
        if (page.length < 1000) break;
        from += page.length;
      }
      out.set(name, records);
    }
    return out;
  } finally {
    await sink.close();
  }
}

describe('three gateway instances on one Redis behind a TCP balancer', () => {
  let cookie = '';

  it('signs in through one instance; the session is honoured by every instance', async () => {
    const b = new Browser();
    const base = `http://${HOST}:${balancer.port}`;
    const page = await b.get(`${base}/.portcullis/login?rd=%2Fhome`);
    expect(page.status).toBe(200);
    const res = await b.post(`${base}/.portcullis/login`, { csrf: hiddenField(page, 'csrf'), rd: hiddenField(page, 'rd'), username: 'alice', password: PASSWORD });
    expect(res.status).toBe(303);
    cookie = b.jar.get(HOST, SESSION) ?? '';
    expect(cookie).not.toBe('');
    // Straight to each instance, not through the balancer.
    for (const inst of instances) {
      const direct = await new Promise<number>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: inst.port, path: '/direct', agent: false, headers: { Host: HOST, Accept: 'application/json', Cookie: `${SESSION}=${cookie}` } }, (r) => {
            r.resume();
            r.on('end', () => resolve(r.statusCode ?? 0));
          })
          .on('error', reject);
      });
      expect(direct).toBe(200);
    }
  });

  it('drops no request and no record through a rolling restart under load, and every log verifies', async () => {
    let stopping = false;
    const load = runLoad(cookie, 4, () => stopping);
    const sentAt = () => load.result.sent.length;
    await eventually(async () => Promise.resolve(sentAt() > 30), 20_000);

    const drainSeen: boolean[] = [];
    for (const inst of instances) {
      const before = sentAt();
      inst.proc.signal('SIGTERM');
      // Readiness turns 503 at the start of the drain (drain_delay keeps the admin listener answering).
      let saw503 = false;
      const watch = (async () => {
        for (let i = 0; i < 40 && !saw503; i++) {
          const status = await readyz(inst.adminPort);
          if (status === 503) saw503 = true;
          if (status === 0) break;
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const exit = await inst.proc.exited;
      await watch;
      drainSeen.push(saw503);
      expect(exit.code, inst.proc.stderr()).toBe(0);
      // Traffic keeps flowing through the other two while this one is down.
      await eventually(async () => Promise.resolve(sentAt() > before + 20), 20_000);
      inst.proc = start(inst);
      await waitServing(inst);
    }
    await eventually(async () => Promise.resolve(sentAt() > 30), 5_000);
    stopping = true;
    await load.done;

    const { sent, statuses, failures, retries } = load.result;
    expect(failures).toEqual([]);
    expect([...statuses.keys()]).toEqual([200]);
    expect(statuses.get(200)).toBe(sent.length);
    // gw-1 drains with a delay, so its 503 is seen for sure; the others close their listener at once.
    expect(drainSeen[0]).toBe(true);
    // Every backend took part.
    for (const inst of instances) expect(balancer.paired.get(inst.port) ?? 0).toBeGreaterThan(0);

    // Stop all (each writes its final checkpoint), then count records and verify.
    for (const inst of instances) inst.proc.signal('SIGTERM');
    for (const inst of instances) expect((await inst.proc.exited).code).toBe(0);

    const logs = await readAllRecords();
    expect([...logs.keys()]).toEqual([...INSTANCES]);
    const seen = new Map<string, number>();
    for (const [name, records] of logs) {
      expect(records.length).toBeGreaterThan(0);
      records.forEach((r, i) => {
        expect(r.log).toBe(`portcullis.example/audit/${name}`);
        expect(r.seq).toBe(i);
      });
      for (const r of records) {
        const path = r.request?.path ?? '';
        if (path.startsWith('/load/')) seen.set(path, (seen.get(path) ?? 0) + 1);
      }
      // Each instance served part of the load.
      expect(records.some((r) => r.request?.path.startsWith('/load/') === true)).toBe(true);
    }
    // One record per request sent: none lost, none twice (a re-sent GET had not reached a gateway).
    expect(seen.size).toBe(sent.length);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(upstream.requests.filter((r) => r.url.startsWith('/load/')).length).toBe(sent.length);

    const verify = await runCli(['audit', 'verify', '--config', instances[0]?.config ?? ''], 60_000);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const total = [...logs.values()].reduce((n, r) => n + r.length, 0);
    expect(verify.stdout).toContain(`verified 3 logs: ${total}/${total} records`);
    console.log(`ha-multi-instance: ${sent.length} requests, ${retries} re-sent after a keep-alive race, ${total} records`);
  }, 120_000);
});
