/**
 * Large results stream through the database gateway with flat memory: 100 MB to `psql`, once as a
 * result set and once as COPY TO STDOUT read by a deliberately slow consumer (so the gateway must
 * hold the server back rather than buffer). The gateway runs in this process; its memory is
 * sampled while the bytes flow.
 */
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../../src/identity/local-users.js';
import { readFileSinkRecords } from '../support/audit-records.js';
import { signIn, type GatewayAgent } from '../support/gateway-agent.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { freePorts } from '../support/process.js';
import { LOCAL_PG, startPsql } from '../support/postgres.js';

const INSTANCE = 'gw-database-streaming';
const PASSWORD = 'streaming test password 1';
const ROWS = 100_000;
const ROW = 1000;
const MB = 1024 * 1024;

let gw: TestGateway;
let agent: GatewayAgent;
let uri: string;

beforeAll(async () => {
  const [http = 0, db = 0] = await freePorts(2);
  gw = await startGateway(
    {
      server: { public_url: `http://localhost:${http}`, instance_id: INSTANCE },
      databases: [{ id: 'big', type: 'postgres', listen: `127.0.0.1:${db}`, upstream: { ...LOCAL_PG, password: '' }, allow: { groups: ['eng'] }, recheck_every: '200ms' }],
    },
    { listen: `127.0.0.1:${http}` },
  );
  await addUser(join(gw.dir, 'users.yaml'), { name: 'erin', groups: ['eng'], password: PASSWORD });
  agent = await signIn(http, 'erin', PASSWORD);
  uri = await freshUri();
}, 30_000);

async function freshUri(): Promise<string> {
  const res = await agent.get('/.portcullis/connect/big', 'application/json');
  return /'(postgresql:\/\/[^']+)'/.exec((res.json() as { psql: string }).psql)?.[1] ?? '';
}

afterAll(async () => {
  await gw.stop();
});

/**
 * A full garbage collection, so that samples count what is held, not garbage not yet collected
 * (64 KiB socket chunks pass through by the thousand).
 */
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (options?: { type: 'major' | 'minor' }) => void;

/** Samples this process's live memory every 25 ms while `work` runs; returns the peak growth over the baseline. */
async function peakGrowth(work: () => Promise<void>): Promise<{ rss: number; buffers: number; heap: number }> {
  gc();
  const base = process.memoryUsage();
  const peak = { rss: base.rss, buffers: base.arrayBuffers, heap: base.heapUsed };
  const timer = setInterval(() => {
    // A scavenge is enough while the chunks die young; a full collection every time would cost more
    // than the transfer. When a sample looks high, a full collection decides: on a loaded machine
    // relayed chunks can outlive a scavenge, be promoted, and count as held until one runs.
    gc({ type: 'minor' });
    let m = process.memoryUsage();
    if (m.arrayBuffers - base.arrayBuffers > 8 * MB) {
      gc();
      m = process.memoryUsage();
    }
    peak.rss = Math.max(peak.rss, m.rss);
    peak.buffers = Math.max(peak.buffers, m.arrayBuffers);
    peak.heap = Math.max(peak.heap, m.heapUsed);
  }, 25);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return { rss: peak.rss - base.rss, buffers: peak.buffers - base.arrayBuffers, heap: peak.heap - base.heapUsed };
}

/** Runs psql, reading its output at most `mbPerSecond` (undefined: as fast as it comes); returns the bytes read. */
async function drain(args: readonly string[], mbPerSecond?: number, opts: { uri?: string; onBytes?: (n: number) => void } = {}): Promise<{ bytes: number; code: number | null; stderr: string }> {
  const run = startPsql(opts.uri ?? uri, args, undefined, { stream: true });
  const out = run.child.stdout;
  if (out === null) throw new Error('no stdout');
  let bytes = 0;
  let sinceBreak = 0;
  out.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    sinceBreak += chunk.length;
    opts.onBytes?.(bytes);
    if (mbPerSecond !== undefined && sinceBreak >= MB) {
      sinceBreak = 0;
      out.pause();
      setTimeout(() => out.resume(), 1000 / mbPerSecond);
    }
  });
  const r = await run.done;
  return { bytes, code: r.code, stderr: r.stderr };
}

describe('large results through the gateway', () => {
  it('streams a 100 MB result set to psql without holding it', async () => {
    let result = { bytes: 0, code: null as number | null, stderr: '' };
    const growth = await peakGrowth(async () => {
      result = await drain(['-A', '-t', '-c', `SELECT repeat('x', ${ROW}) FROM generate_series(1, ${ROWS})`]);
    });
    expect(result.stderr).toBe('');
    expect(result.bytes).toBe(ROWS * (ROW + 1));
    // psql reads as fast as it can here; what is live at any moment is a few chunks in flight.
    expect(growth.buffers).toBeLessThan(24 * MB);
    expect(growth.rss).toBeLessThan(48 * MB);
    console.info(`100 MB result set: peak growth rss ${(growth.rss / MB).toFixed(1)} MiB, buffers ${(growth.buffers / MB).toFixed(1)} MiB, heap ${(growth.heap / MB).toFixed(1)} MiB`);
  }, 60_000);

  it('holds the server back for a slow COPY TO STDOUT reader instead of buffering 100 MB', async () => {
    let result = { bytes: 0, code: null as number | null, stderr: '' };
    const started = performance.now();
    const growth = await peakGrowth(async () => {
      result = await drain(['-c', `COPY (SELECT repeat('x', ${ROW}) FROM generate_series(1, ${ROWS})) TO STDOUT`], 60);
    });
    const seconds = (performance.now() - started) / 1000;
    expect(result.stderr).toBe('');
    expect(result.bytes).toBe(ROWS * (ROW + 1));
    // The reader set the pace (≈ 60 MB/s), so the server produced faster than the client consumed.
    expect(seconds).toBeGreaterThan(1.2);
    expect(growth.buffers).toBeLessThan(16 * MB);
    expect(growth.rss).toBeLessThan(48 * MB);
    console.info(`100 MB COPY, slow reader (${seconds.toFixed(1)} s): peak growth rss ${(growth.rss / MB).toFixed(1)} MiB, buffers ${(growth.buffers / MB).toFixed(1)} MiB, heap ${(growth.heap / MB).toFixed(1)} MiB`);
    expect(await gw.app.audit.flush(5000)).toBe(true);
    const copy = readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE)
      .map((r) => r.record)
      .find((r) => r.kind === 'postgres' && r.postgres?.command === 'COPY');
    expect(copy?.postgres).toMatchObject({ command: 'COPY', rows: ROWS });
  }, 60_000);

  it('ends a connection in the middle of a result with a well-formed FATAL when its password is revoked', async () => {
    const own = await freshUri();
    let revoked = false;
    const result = await drain(['-c', `COPY (SELECT repeat('x', ${ROW}) FROM generate_series(1, ${ROWS})) TO STDOUT`], 30, {
      uri: own,
      onBytes: (n) => {
        if (n > 5 * MB && !revoked) {
          revoked = true;
          void agent.form('/.portcullis/connect/big/revoke', { csrf: agent.csrf });
        }
      },
    });
    expect(revoked).toBe(true);
    expect(result.code).not.toBe(0);
    expect(result.bytes).toBeLessThan(ROWS * (ROW + 1));
    // psql read a whole ErrorResponse: the gateway cut at a frame boundary, not inside a CopyData.
    expect(result.stderr).toContain('terminating connection because the database password was revoked');
    expect(result.stderr).not.toMatch(/lost synchronization|invalid message|unexpected message type/);
  }, 60_000);
});
