/**
 * The audit viewer on the Redis sink (a private `redis-server`): history pages and single records
 * come from Redis Streams through the same sink port as the file sink's, the live feed resumes from
 * Redis what it no longer holds in memory, and "verify now" checks the Redis log.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import { addUser } from '../../src/identity/local-users.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { freePorts } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';
import { startRedisServer, type TestRedisServer } from '../support/redis-server.js';
import { signInViewer, SoftAuthenticator, type ViewerAgent } from '../support/viewer-agent.js';

const INSTANCE = 'gw-redis-viewer';
const PASSWORD = 'viewer redis password 1';

let redis: TestRedisServer;
let gw: TestGateway;
let upstream: RecordingUpstream;
let port: number;
let sre: ViewerAgent;

interface Page {
  log: string;
  size: number;
  next: number | null;
  records: { seq: number; record: AuditRecord }[];
}

beforeAll(async () => {
  redis = await startRedisServer({ durable: true });
  upstream = await startRecordingUpstream();
  [port = 0] = await freePorts(1);
  gw = await startGateway(
    {
      server: { public_url: `http://localhost:${port}`, instance_id: INSTANCE },
      audit: { sink: { type: 'redis', url: redis.url, stream: 'viewer-test:audit' } },
      routes: [{ id: 'pub', host: 'localhost', path: '/pub', upstream: upstream.url, public: true }],
    },
    { listen: `127.0.0.1:${port}` },
  );
  await addUser(join(gw.dir, 'users.yaml'), { name: 'sre', groups: ['sre'], password: PASSWORD });
  sre = await signInViewer(port, 'sre', PASSWORD);
  await sre.enrolPasskey(SoftAuthenticator.create({ origin: `http://localhost:${port}`, algorithm: 'ES256' }));
  for (let i = 0; i < 40; i++) await (await fetch(`http://localhost:${port}/pub/r?i=${i}`)).arrayBuffer();
  expect(await gw.app.audit.flush(5000)).toBe(true);
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
  await redis.stop();
});

describe('the audit viewer on the Redis sink', () => {
  it('pages through history newest first, and shows one record', async () => {
    const first = await sre.json<Page>('/.portcullis/audit/records?route=pub&limit=15');
    expect(first.status).toBe(200);
    expect(first.body.records.map((r) => r.record.request?.query)).toEqual(Array.from({ length: 15 }, (_, i) => `i=${39 - i}`));
    const second = await sre.json<Page>(`/.portcullis/audit/records?route=pub&limit=30&before=${first.body.next ?? 0}`);
    expect(second.body.records.map((r) => r.record.request?.query)).toEqual(Array.from({ length: 25 }, (_, i) => `i=${24 - i}`));
    const [top] = first.body.records;
    const one = await sre.json<Page>(`/.portcullis/audit/records/${top?.seq ?? -1}?instance=${INSTANCE}`);
    expect(one.body.records).toEqual([top]);
  });

  it('resumes the live feed from Redis, and verifies the Redis log', async () => {
    // The feed has run since the first viewer request; records from before it come from Redis.
    const live = sre.live(`route=pub&after=0&log=${INSTANCE}`);
    await live.until(() => live.records().length >= 40, 5000, 'the resumed records');
    expect(live.records().map((r) => (r.record.request as { query?: string } | undefined)?.query)).toEqual(Array.from({ length: 40 }, (_, i) => `i=${i}`));
    await live.close();
    await gw.app.audit.flush(5000);
    await gw.app.sealer.sealNow();
    const run = (await sre.post('/.portcullis/audit/verify', {})).json() as { result: string; summary: string };
    expect(run.result).toBe('intact');
    expect(run.summary).toMatch(/^verified 1 log: \d+\/\d+ records/);
  }, 60_000);
});
