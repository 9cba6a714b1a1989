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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser } from '../support/cookie-jar.js';
import { HA_HOST, HA_PASSWORDS, HA_SESSION, startHaGateway, type HaGateway } from '../support/ha-gateway.js';
import { eventually } from '../support/process.js';
import { SENTINEL_MASTER_NAME, startSentinelGroup, type TestSentinelGroup } from '../support/redis-sentinel.js';

const INSTANCE = 'ha-sentinel-gw';

let group: TestSentinelGroup;
let ha: HaGateway;

beforeAll(async () => {
  group = await startSentinelGroup();
  ha = await startHaGateway('ha-sentinel', INSTANCE, { sentinel: { name: SENTINEL_MASTER_NAME, nodes: group.sentinels, db: 0, tls: false } });
}, 90_000);

afterAll(async () => {
  await ha.close();
  await group.stop();
});

describe('the gateway on a Redis Sentinel group', () => {
  let session = '';
  const answered = new Map<string, number>();

  it('signs in and counts failed sign-ins through the sentinels', async () => {
    const b = new Browser();
    expect((await ha.signIn(b, 'alice', HA_PASSWORDS.alice)).status).toBe(303);
    session = b.jar.get(HA_HOST, HA_SESSION) ?? '';
    expect(session).not.toBe('');
    for (let i = 0; i < 3; i++) expect((await ha.signIn(new Browser(), 'carol', 'wrong password')).status).toBe(401);
    for (let i = 0; i < 5; i++) {
      expect((await ha.request(session, `/before/${i}`)).status).toBe(200);
      answered.set(`/before/${i}`, 200);
    }
  });

  it('keeps the session and the rate-limit count through a planned switchover under load', async () => {
    const before = await group.master();
    let stop = false;
    const running = ha.load(session, 'planned', () => stop);
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
    await ha.probeUntilServed(session, 'probe-planned', answered);
    stop = true;
    const statuses = await running;
    for (const [path, status] of statuses) answered.set(path, status);
    expect([...statuses].filter(([, s]) => s !== 200 && s !== 503)).toEqual([]);
    expect([...statuses.values()].filter((s) => s === 200).length).toBeGreaterThan(3);

    expect((await ha.request(session, '/after-planned')).status).toBe(200);
    answered.set('/after-planned', 200);
    for (let i = 0; i < 2; i++) expect((await ha.signIn(new Browser(), 'carol', 'wrong password')).status).toBe(401);
    expect((await ha.signIn(new Browser(), 'carol', HA_PASSWORDS.carol)).status).toBe(429);
  }, 90_000);

  it('follows the promotion when the master is killed, loses no record, and verifies intact', async () => {
    await eventually(async () => ha.gw.app.audit.flush(1_000), 30_000, 100);
    const victim = await group.master();
    // Async replication: only what reached a replica survives a crash (README: "What a failover can lose").
    await group.waitReplicated();
    let stop = false;
    const running = ha.load(session, 'crash', () => stop);
    await new Promise((r) => setTimeout(r, 200));
    await group.kill(victim);
    await eventually(async () => (await group.master()) !== victim, 30_000, 100);
    await group.waitHealthy();
    await ha.probeUntilServed(session, 'probe-crash', answered);
    stop = true;
    const statuses = await running;
    for (const [path, status] of statuses) answered.set(path, status);
    expect([...statuses].filter(([, s]) => s !== 200 && s !== 503)).toEqual([]);
    await eventually(async () => ha.gw.app.audit.flush(1_000), 30_000, 100);

    await ha.stop(5_000);
    await ha.expectWholeLog(answered);
  }, 90_000);
});
