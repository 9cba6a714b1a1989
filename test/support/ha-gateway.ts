/**
 * A gateway whose store, MFA credentials and audit sink all live on one Redis deployment (a
 * Sentinel group or a Cluster, test/support/redis-sentinel.ts / redis-cluster.ts), with two local
 * users and one route that needs group `eng`; and the clients the failover tests drive it with.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { stringify } from 'yaml';
import { createRedisSink } from '../../src/audit/redis-sink.js';
import type { AuditRecord } from '../../src/audit/record.js';
import type { RedisConnectionConfig } from '../../src/store/redis-connection.js';
import { addUser } from '../../src/identity/local-users.js';
import { hiddenField, type Browser } from './cookie-jar.js';
import { startGateway, type TestGateway } from './gateway.js';
import { send, type ClientResponse } from './http-client.js';
import { eventually, runCli } from './process.js';
import { startRecordingUpstream, type RecordingUpstream } from './recording-upstream.js';

export const HA_HOST = 'app.localhost';
export const HA_SESSION = 'portcullis_session';
export const HA_PASSWORDS = { alice: 'alice password 1', carol: 'carol password 1' } as const;

/** The gateway under test and what the tests read back. */
export interface HaGateway {
  readonly gw: TestGateway;
  readonly upstream: RecordingUpstream;
  readonly configFile: string;
  /** A temp dir of the test's own (removed by close). */
  readonly dir: string;
  /** The audit sink's stream prefix (unique per run). */
  readonly stream: string;
  /** Signs `user` in through the login form with `password` (the 303, 401 or 429 answer). */
  signIn(b: Browser, user: keyof typeof HA_PASSWORDS, password: string): Promise<ClientResponse>;
  /** A GET with the session cookie. */
  request(session: string, path: string): Promise<ClientResponse>;
  /** Sequential requests with the session until `stop()` (or {@link HaGateway.halt}); statuses by path (0: transport error). */
  load(session: string, tag: string, stop: () => boolean): Promise<Map<string, number>>;
  /**
   * After a failover: requests (`/<tag>/<n>`, each a request of its own with a record of its own,
   * noted in `answered`) until one is served, for up to 30 s; the error names the last answer.
   */
  probeUntilServed(session: string, tag: string, answered: Map<string, number>): Promise<void>;
  /** Every record of the gateway's log, read straight from the sink. */
  readRecords(): Promise<AuditRecord[]>;
  /**
   * After {@link HaGateway.stop}: the log has no gap, exactly one record for every request the
   * upstream received and for every answered path in `answered`, and `audit verify` passes.
   */
  expectWholeLog(answered: ReadonlyMap<string, number>): Promise<void>;
  /** Stops the gateway (once). */
  stop(graceMs?: number): Promise<void>;
  /** Ends any load loop a failed test left running, stops the gateway, removes the temp dirs. */
  close(): Promise<void>;
}

/** Starts the gateway with `connection` for its store and audit sink. */
export async function startHaGateway(name: string, instance: string, connection: RedisConnectionConfig): Promise<HaGateway> {
  const dir = await mkdtemp(join(tmpdir(), `portcullis-${name}-`));
  const upstream = await startRecordingUpstream();
  const usersFile = join(dir, 'users.yaml');
  await addUser(usersFile, { name: 'alice', email: 'alice@example.com', groups: ['eng'], password: HA_PASSWORDS.alice });
  await addUser(usersFile, { name: 'carol', email: 'carol@example.com', groups: ['eng'], password: HA_PASSWORDS.carol });
  const prefix = `pc-ha:${randomBytes(4).toString('hex')}:`;
  const stream = `${prefix}audit`;
  const config = {
    server: { instance_id: instance },
    store: { type: 'redis', redis: { ...connection, key_prefix: `${prefix}store:` } },
    identity: { providers: [{ id: 'local', type: 'local', users_file: usersFile }] },
    audit: {
      sink: { type: 'redis', ...connection, stream },
      on_failure: 'spool',
      spool_dir: join(dir, 'spool'),
      seal: { every: '1h', key_file: join(dir, 'seal.key'), witness_dir: join(dir, 'checkpoints') },
    },
    routes: [{ id: 'app', host: HA_HOST, path: '/', upstream: upstream.url, allow: { groups: ['eng'] } }],
  };
  const configFile = join(dir, 'portcullis.yaml');
  await writeFile(configFile, stringify(config));
  const gw = await startGateway(config);
  let halted = false;
  let stopped: Promise<void> | undefined;

  const request = (session: string, path: string): Promise<ClientResponse> =>
    send(gw.port, { path, headers: ['Host', HA_HOST, 'Accept', 'application/json', 'Cookie', `${HA_SESSION}=${session}`] });

  async function readRecords(): Promise<AuditRecord[]> {
    const sink = createRedisSink({ connection, stream });
    try {
      expect(await sink.logs()).toEqual([instance]);
      const out: AuditRecord[] = [];
      for (;;) {
        const page = await sink.read(instance, out.length, 1000);
        out.push(...page.map((r) => JSON.parse(r.bytes.toString('utf8')) as AuditRecord));
        if (page.length < 1000) return out;
      }
    } finally {
      await sink.close();
    }
  }

  return {
    gw,
    upstream,
    configFile,
    dir,
    stream,
    async signIn(b, user, password) {
      const base = `http://${HA_HOST}:${gw.port}`;
      const page = await b.get(`${base}/.portcullis/login?rd=%2Fhome`);
      expect(page.status).toBe(200);
      return b.post(`${base}/.portcullis/login`, { csrf: hiddenField(page, 'csrf'), rd: hiddenField(page, 'rd'), username: user, password });
    },
    request,
    async load(session, tag, stop) {
      const statuses = new Map<string, number>();
      for (let n = 0; !stop() && !halted; n++) {
        const path = `/${tag}/${n}`;
        // A transport error is recorded as 0 (and fails the status checks), never left unhandled.
        statuses.set(path, await request(session, path).then((r) => r.status, () => 0));
        await new Promise((r) => setTimeout(r, 5));
      }
      return statuses;
    },
    async probeUntilServed(session, tag, answered) {
      await eventually(async () => {
        const path = `/${tag}/${answered.size}`;
        const res = await request(session, path);
        answered.set(path, res.status);
        if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${res.text().slice(0, 300)}`);
        return true;
      }, 30_000, 100);
    },
    readRecords,
    async expectWholeLog(answered) {
      const records = await readRecords();
      records.forEach((r, i) => expect(r.seq).toBe(i));
      const byPath = new Map<string, number>();
      for (const r of records) if (r.kind === 'http' && r.request !== undefined) byPath.set(r.request.path, (byPath.get(r.request.path) ?? 0) + 1);
      for (const u of upstream.requests) expect(byPath.get(u.url.split('?')[0] ?? ''), u.url).toBe(1);
      for (const [path] of answered) expect(byPath.get(path), path).toBe(1);
      const verify = await runCli(['audit', 'verify', '--config', configFile], 60_000);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
      expect(verify.stdout).toContain(`verified 1 log: ${records.length}/${records.length} records`);
    },
    stop(graceMs) {
      stopped ??= gw.stop(graceMs);
      return stopped;
    },
    async close() {
      halted = true;
      await (stopped ?? gw.stop()).catch(() => undefined);
      await upstream.close();
      await Promise.all([dir, gw.dir].map((d) => rm(d, { recursive: true, force: true })));
    },
  };
}
