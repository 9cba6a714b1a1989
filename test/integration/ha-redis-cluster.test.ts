/**
 * The gateway on a real Redis Cluster (three masters, three replicas; test/support/redis-cluster.ts)
 * for its store, MFA credentials and audit sink:
 *
 * - the store contract passes on the cluster (every store operation is single-key, any slot);
 * - a session, a login rate-limit counter and the audit log survive a planned failover of every
 *   master (`CLUSTER FAILOVER` on each replica: coordinated, nothing acknowledged is lost), with
 *   every request answered 200;
 * - when the master holding the audit log's streams is killed (SIGKILL), the gateway keeps serving,
 *   spools the records it cannot write, and ships them to the promoted replica; no request reaches
 *   the upstream without its record, and `portcullis audit verify` (the real CLI, through the
 *   cluster) finds the log intact;
 * - giving two of url / sentinel / cluster is a config error with file:line:col.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/index.js';
import { createRedisStore } from '../../src/store/index.js';
import { storeContract } from '../contract/store.contract.js';
import { Browser } from '../support/cookie-jar.js';
import { HA_HOST, HA_PASSWORDS, HA_SESSION, startHaGateway, type HaGateway } from '../support/ha-gateway.js';
import { eventually, runCli } from '../support/process.js';
import { startRedisCluster, type TestRedisCluster } from '../support/redis-cluster.js';

const INSTANCE = 'ha-cluster-gw';

let cluster: TestRedisCluster;
let ha: HaGateway;

beforeAll(async () => {
  cluster = await startRedisCluster();
  ha = await startHaGateway('ha-cluster', INSTANCE, { cluster: { nodes: cluster.seeds, tls: false } });
}, 90_000);

afterAll(async () => {
  await ha.close();
  await cluster.stop();
});

storeContract('redis cluster', () => {
  const store = createRedisStore({ connection: { cluster: { nodes: cluster.seeds, tls: false } }, keyPrefix: `pc-ha-contract:${randomBytes(4).toString('hex')}:` });
  return Promise.resolve({ store, cleanup: () => store.close() });
});

/** Waits until the replica on `port` has applied everything its master has. */
async function replicated(master: number, replica: number): Promise<void> {
  await eventually(async () => {
    const offset = (info: string, field: string) => Number(new RegExp(`${field}:(\\d+)`).exec(info)?.[1] ?? -1);
    const m = offset(await cluster.cli(master, 'INFO', 'replication'), 'master_repl_offset');
    const r = offset(await cluster.cli(replica, 'INFO', 'replication'), 'slave_repl_offset');
    return m > 0 && m === r;
  }, 10_000);
}

describe('the gateway on a Redis Cluster', () => {
  let session = '';
  const answered = new Map<string, number>();

  it('signs in and counts failed sign-ins in the cluster', async () => {
    const b = new Browser();
    expect((await ha.signIn(b, 'alice', HA_PASSWORDS.alice)).status).toBe(303);
    session = b.jar.get(HA_HOST, HA_SESSION) ?? '';
    expect(session).not.toBe('');
    for (let i = 0; i < 3; i++) expect((await ha.signIn(new Browser(), 'carol', 'wrong password')).status).toBe(401);
    for (let i = 0; i < 5; i++) {
      const res = await ha.request(session, `/before/${i}`);
      expect(res.status).toBe(200);
      answered.set(`/before/${i}`, 200);
    }
  });

  it('keeps the session, the rate-limit count and the audit log through a planned failover of every master', async () => {
    const before = await cluster.masters();
    let stop = false;
    const running = ha.load(session, 'planned', () => stop);
    for (const master of before) {
      const [replica] = await cluster.replicasOf(master);
      expect(replica).toBeDefined();
      await replicated(master, replica ?? 0);
      expect(await cluster.cli(replica ?? 0, 'CLUSTER', 'FAILOVER')).toBe('OK');
      await eventually(async () => (await cluster.masters()).includes(replica ?? 0), 30_000, 100);
    }
    await cluster.waitHealthy();
    stop = true;
    const statuses = await running;
    for (const [path, status] of statuses) answered.set(path, status);
    expect(new Set(await cluster.masters())).not.toEqual(new Set(before));
    expect(statuses.size).toBeGreaterThan(5);
    expect([...new Set(statuses.values())]).toEqual([200]);

    // The session is still valid, and the three failures before are still counted: two more lock carol out.
    expect((await ha.request(session, '/after-planned')).status).toBe(200);
    answered.set('/after-planned', 200);
    for (let i = 0; i < 2; i++) expect((await ha.signIn(new Browser(), 'carol', 'wrong password')).status).toBe(401);
    expect((await ha.signIn(new Browser(), 'carol', HA_PASSWORDS.carol)).status).toBe(429);
  }, 90_000);

  it('spools while the audit master is killed, ships to the promoted replica, and verifies intact', async () => {
    expect(await ha.gw.app.audit.flush(10_000)).toBe(true);
    const victim = await cluster.masterOf(`${ha.stream}:{${INSTANCE}}:records`);
    const [replica] = await cluster.replicasOf(victim);
    // Async replication: only what reached the replica survives a crash. Wait for it, so the test
    // checks the gateway, not Redis's replication window (README: "What a failover can lose").
    await replicated(victim, replica ?? 0);

    let stop = false;
    const running = ha.load(session, 'crash', () => stop);
    await new Promise((r) => setTimeout(r, 200));
    await cluster.kill(victim);
    await eventually(async () => (await cluster.masters()).includes(replica ?? 0), 30_000, 100);
    await cluster.waitHealthy();
    // Requests go on after the promotion, and the spool drains to the new master.
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    const statuses = await running;
    for (const [path, status] of statuses) answered.set(path, status);
    // Fail closed or served, never anything else; most are served (the store's slots may be elsewhere).
    expect([...statuses].filter(([, s]) => s !== 200 && s !== 503)).toEqual([]);
    expect([...statuses.values()].filter((s) => s === 200).length).toBeGreaterThan(5);
    expect((await ha.request(session, '/after-crash')).status).toBe(200);
    answered.set('/after-crash', 200);
    await eventually(async () => ha.gw.app.audit.flush(2_000), 20_000, 200);

    // Stop: the final checkpoint goes to the promoted master.
    await ha.stop(5_000);
    await ha.expectWholeLog(answered);
  }, 90_000);

  it('refuses a redis block that names two of url, sentinel and cluster, at file:line:col', async () => {
    const file = join(ha.dir, 'two.yaml');
    await writeFile(file, `store:\n  type: redis\n  redis:\n    url: redis://127.0.0.1:6379/0\n    cluster:\n      nodes: ["127.0.0.1:7000"]\n`);
    const res = await runCli(['config', 'check', file]);
    expect(res.code).toBe(1);
    expect(res.stdout + res.stderr).toMatch(/two\.yaml:\d+:\d+: store\.redis\.cluster: give only one of url, sentinel and cluster/);

    // The same block, shared by a redis audit sink; defaults and node syntax.
    const sink = configSchema.safeParse({ audit: { sink: { type: 'redis', sentinel: { name: 'm', nodes: ['s:26379'] }, cluster: { nodes: ['r:6379'] } } } });
    expect(sink.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual(['audit.sink.cluster: give only one of url, sentinel and cluster (sentinel is already given)']);
    const ok = configSchema.parse({ store: { type: 'redis', redis: { sentinel: { name: 'm', nodes: ['10.0.0.1:26379', '[::1]:26380'] } } } });
    expect(ok.store.redis).toEqual({ key_prefix: 'portcullis:', sentinel: { name: 'm', nodes: ['10.0.0.1:26379', '[::1]:26380'], db: 0, tls: false } });
    const bad = configSchema.safeParse({ store: { type: 'redis', redis: { cluster: { nodes: ['redis-0', 'redis-1:70000'] } } } });
    expect(bad.error?.issues.map((i) => i.path.join('.'))).toEqual(['store.redis.cluster.nodes.0', 'store.redis.cluster.nodes.1']);
  });
});
