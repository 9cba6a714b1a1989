/**
 * `audit query` and `audit tail`, run in-process against real sinks: a file sink in a temp dir and
 * the shared Redis (PORTCULLIS_TEST_REDIS_URL, default redis://127.0.0.1:6379) under a random stream
 * prefix whose keys are deleted afterwards (SCAN MATCH on the prefix only, never FLUSHDB). Records
 * are chained exactly as the writer chains them (canonical bytes, `prev` = leaf hash of the one before).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { canonicalBytes, GENESIS_PREV, leafHash } from '../../../src/audit/canonical.js';
import { createAuditSink } from '../../../src/audit/create-sink.js';
import type { RecordBody } from '../../../src/audit/record.js';
import type { AuditSink, StoredRecord } from '../../../src/audit/sink.js';
import { runAuditQuery } from '../../../src/cli/audit-query.js';
import { runAuditTail } from '../../../src/cli/audit-tail.js';
import { captureIo } from '../../support/capture-io.js';
import { eventually, freePorts } from '../../support/process.js';

const SHARED_REDIS_URL = process.env.PORTCULLIS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ORIGIN = 'test.portcullis/audit';
const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const NOW = T0 + 10_000;
const now = () => NOW;

/** Chains records for one log as the writer does. */
function chain(log: string) {
  let prev = GENESIS_PREV;
  let seq = 0;
  return (body: Partial<RecordBody> & { at: number }): StoredRecord => {
    const { at, ...rest } = body;
    const bytes = canonicalBytes({ v: 1, id: `${log}-${seq}`, kind: 'http', ...rest, ts: new Date(T0 + at).toISOString(), log: `${ORIGIN}/${log}`, seq, prev });
    prev = leafHash(bytes).toString('hex');
    return { seq: seq++, bytes };
  };
}

const alice = { user: 'alice', email: 'Alice@Example.com', groups: ['eng'], provider: 'corp', auth: 'cookie' };
const bob = { user: 'bob', groups: ['ops'], provider: 'local', auth: 'cookie' };
const carol = { user: 'carol', email: 'carol@example.com', groups: [], provider: 'corp', auth: 'bearer' };

/** Two logs, interleaved in time: gw-a at even seconds, gw-b at odd ones. */
function fixture() {
  const a = chain('gw-a');
  const b = chain('gw-b');
  const logA = [
    a({ at: 0, route: 'grafana', decision: 'allow', identity: alice }),
    a({ at: 2000, route: 'grafana', decision: 'deny', identity: bob }),
    a({ at: 4000, kind: 'auth', event: { action: 'login', result: 'success' }, identity: alice }),
    a({ at: 6000, route: 'status', decision: 'allow' }),
    a({ at: 8000, route: 'grafana', decision: 'step_up', identity: alice }),
  ];
  const logB = [
    b({ at: 1000, route: 'grafana', decision: 'allow', identity: carol }),
    b({ at: 3000, route: 'status', decision: 'not_found' }),
    b({ at: 5000, route: 'grafana', decision: 'allow', identity: { ...alice, email: 'alice@example.com' } }),
  ];
  return { a, b, logA, logB };
}

const lines = (records: readonly (StoredRecord | undefined)[]): string =>
  records
    .filter((r) => r !== undefined)
    .map((r) => `${r.bytes.toString('utf8')}\n`)
    .join('');

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function writeConfig(sinkYaml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-query-'));
  tempDirs.push(dir);
  const file = join(dir, 'portcullis.yaml');
  await writeFile(
    file,
    [
      'server: {instance_id: reader}',
      'audit:',
      `  sink: ${sinkYaml}`,
      'routes:',
      '  - {id: app, host: app.localhost, upstream: "http://127.0.0.1:3000", public: true}',
      '',
    ].join('\n'),
  );
  return file;
}

interface Backend {
  /** A config file whose sink is fresh and empty. */
  config(): Promise<{ file: string; writer: AuditSink }>;
}

const admin = new Redis(SHARED_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
const streams: string[] = [];
const writers: AuditSink[] = [];

beforeAll(async () => {
  await admin.connect();
});
afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.close()));
  for (const stream of streams.splice(0)) {
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${stream}:*`, 'COUNT', 500);
      if (keys.length > 0) await admin.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  }
});
afterAll(async () => {
  await admin.quit();
});

const backends: Record<'file' | 'redis', Backend> = {
  file: {
    async config() {
      const dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-sink-'));
      tempDirs.push(dir);
      const file = await writeConfig(`{type: file, dir: "${join(dir, 'audit')}"}`);
      const writer = createAuditSink({ type: 'file', dir: join(dir, 'audit') });
      writers.push(writer);
      return { file, writer };
    },
  },
  redis: {
    async config() {
      const stream = `pc-test-auditq-${randomUUID()}`;
      streams.push(stream);
      const file = await writeConfig(`{type: redis, url: "${SHARED_REDIS_URL}", stream: "${stream}"}`);
      const writer = createAuditSink({ type: 'redis', url: SHARED_REDIS_URL, stream });
      writers.push(writer);
      return { file, writer };
    },
  },
};

describe.each(['file', 'redis'] as const)('%s sink', (kind) => {
  const backend = backends[kind];

  async function filled() {
    const { file, writer } = await backend.config();
    const f = fixture();
    await writer.append('gw-b', f.logB);
    await writer.append('gw-a', f.logA);
    return { file, writer, ...f };
  }

  describe('audit query', () => {
    async function query(args: string[], pageSize?: number) {
      const { io, out } = captureIo();
      const code = await runAuditQuery(args, io, { now, ...(pageSize === undefined ? {} : { pageSize }) });
      return { code, ...out };
    }

    it('prints every record verbatim, logs in sorted order, each oldest first', async () => {
      const { file, logA, logB } = await filled();
      expect(await query(['--config', file])).toEqual({ code: 0, stdout: lines([...logA, ...logB]), stderr: '' });
    });

    it('gives the same answer when it reads in small pages', async () => {
      const { file, logA, logB } = await filled();
      for (const pageSize of [1, 2, 3, 5]) {
        expect((await query(['--config', file], pageSize)).stdout).toBe(lines([...logA, ...logB]));
        expect((await query(['--config', file, '--route', 'grafana', '-n', '3'], pageSize)).stdout).toBe(lines([logA[0], logA[1], logA[4]]));
      }
    });

    it.each<[string, string[], (f: ReturnType<typeof fixture>) => (StoredRecord | undefined)[]]>([
      ['--route', ['--route', 'status'], (f) => [f.logA[3], f.logB[1]]],
      ['--user by name', ['--user', 'bob'], (f) => [f.logA[1]]],
      ['--user by email, any case', ['--user', 'ALICE@example.com'], (f) => [f.logA[0], f.logA[2], f.logA[4], f.logB[2]]],
      ['--decision', ['--decision', 'allow'], (f) => [f.logA[0], f.logA[3], f.logB[0], f.logB[2]]],
      ['--kind', ['--kind', 'auth'], (f) => [f.logA[2]]],
      ['--since relative', ['--since', '5s'], (f) => [f.logA[3], f.logA[4], f.logB[2]]],
      ['--since/--until absolute', ['--since', '2026-11-26T10:00:01Z', '--until', '2026-11-26T10:00:03Z'], (f) => [f.logA[1], f.logB[0]]],
      ['--instance', ['--instance', 'gw-b'], (f) => f.logB],
      ['--instance that does not exist', ['--instance', 'gw-z'], () => []],
      ['--limit', ['--limit', '2'], (f) => [f.logA[0], f.logA[1]]],
      ['--limit across logs', ['--decision', 'allow', '--limit', '3'], (f) => [f.logA[0], f.logA[3], f.logB[0]]],
      ['--limit 0 (no limit)', ['--limit', '0'], (f) => [...f.logA, ...f.logB]],
      ['filters combined', ['--user', 'alice', '--route', 'grafana', '--decision', 'allow'], (f) => [f.logA[0], f.logB[2]]],
      ['nothing matches', ['--route', 'nope'], () => []],
    ])('%s', async (_name, args, expected) => {
      const f = await filled();
      expect(await query(['--config', f.file, ...args])).toEqual({ code: 0, stdout: lines(expected(f)), stderr: '' });
    });

    it('stops at 100 records by default', async () => {
      const { file, writer } = await backend.config();
      const c = chain('gw-0');
      await writer.append('gw-0', Array.from({ length: 150 }, (_, i) => c({ at: i, route: 'r' })));
      const { code, stdout } = await query(['--config', file], 40);
      expect(code).toBe(0);
      const got = stdout.trimEnd().split('\n');
      expect(got).toHaveLength(100);
      expect((JSON.parse(got.at(-1) ?? '{}') as { seq: number }).seq).toBe(99);
    });

    it('finds its config in $PORTCULLIS_CONFIG', async () => {
      const { file, logA, logB } = await filled();
      const { io, out } = captureIo({ PORTCULLIS_CONFIG: file });
      expect(await runAuditQuery(['--route', 'grafana'], io, { now })).toBe(0);
      expect(out.stdout).toBe(lines([logA[0], logA[1], logA[4], logB[0], logB[2]]));
    });

    it('prints nothing for an empty sink', async () => {
      const { file } = await backend.config();
      expect(await query(['--config', file])).toEqual({ code: 0, stdout: '', stderr: '' });
    });
  });

  describe('audit tail', () => {
    function startTail(file: string, args: string[] = []) {
      const { io, out } = captureIo();
      const controller = new AbortController();
      let polls = 0;
      const done = runAuditTail(['--config', file, ...args], io, {
        now,
        pollMs: 20,
        pageSize: 2,
        signal: controller.signal,
        onPoll: () => {
          polls++;
        },
      });
      const settle = async () => {
        const at = polls;
        await eventually(() => Promise.resolve(polls >= at + 2), 5000, 5);
      };
      return { out, done, settle, stop: () => controller.abort() };
    }

    it('prints the last 10 matches merged by time, then follows new records and new logs until stopped', async () => {
      const { file, writer, a, logA, logB } = await filled();
      const more = [a({ at: 9000, route: 'grafana', decision: 'allow' }), a({ at: 9500, route: 'status', decision: 'allow' })];
      const tail = startTail(file, ['--route', 'grafana']);
      await tail.settle();
      const backlog = [logA[0], logB[0], logA[1], logB[2], logA[4]];
      expect(tail.out.stdout).toBe(lines(backlog));

      await writer.append('gw-a', more);
      const c = chain('gw-c');
      const fresh = [c({ at: 9700, route: 'grafana', decision: 'deny' }), c({ at: 9800, route: 'other' }), c({ at: 9900, route: 'grafana' })];
      await writer.append('gw-c', fresh);
      await tail.settle();
      tail.stop();
      expect(await tail.done).toBe(0);
      expect(tail.out.stdout).toBe(lines([...backlog, more[0], fresh[0], fresh[2]]));
      expect(tail.out.stderr).toBe('');
    });

    it('--limit N prints the last N matches first; --limit 0 only new ones', async () => {
      const { file, writer, b, logA } = await filled();
      const two = startTail(file, ['--limit', '2']);
      const none = startTail(file, ['--limit', '0', '--instance', 'gw-b']);
      await Promise.all([two.settle(), none.settle()]);
      expect(two.out.stdout).toBe(lines([logA[3], logA[4]]));
      expect(none.out.stdout).toBe('');
      const next = b({ at: 9000, route: 'x' });
      await writer.append('gw-b', [next]);
      await Promise.all([two.settle(), none.settle()]);
      two.stop();
      none.stop();
      expect(await two.done).toBe(0);
      expect(await none.done).toBe(0);
      expect(none.out.stdout).toBe(lines([next]));
      expect(two.out.stdout.endsWith(lines([next]))).toBe(true);
    });

    it('scans far back for rare matches (windows larger than a page)', async () => {
      const { file, writer } = await backend.config();
      const c = chain('gw-0');
      const all = Array.from({ length: 60 }, (_, i) => c({ at: i, route: i === 3 || i === 7 ? 'rare' : 'common' }));
      await writer.append('gw-0', all);
      const tail = startTail(file, ['--route', 'rare', '-n', '5']);
      await tail.settle();
      tail.stop();
      expect(await tail.done).toBe(0);
      expect(tail.out.stdout).toBe(lines([all[3], all[7]]));
    });
  });
});

describe('command line and failures', () => {
  it.each([['audit query', runAuditQuery], ['audit tail', runAuditTail]] as const)('%s --help prints usage and returns 0', async (name, run) => {
    const { io, out } = captureIo();
    expect(await run(['--help'], io)).toBe(0);
    expect(out.stdout).toMatch(new RegExp(`^Usage: portcullis ${name} `));
    expect(out.stdout).toContain('--since T');
  });

  it.each([
    [['--decision', 'maybe'], /audit query: --decision must be one of/],
    [['--since', 'yesterday'], /audit query: --since expects an RFC 3339 time/],
    [['--limit=-3'], /audit query: --limit expects a whole number/],
    [['--limit', 'ten'], /audit query: --limit expects a whole number/],
    [['--colour'], /Unknown option '--colour'/],
  ])('refuses %j with exit 2', async (args, message) => {
    const { io, out } = captureIo();
    expect(await runAuditQuery(args, io)).toBe(2);
    expect(out.stdout).toBe('');
    expect(out.stderr).toMatch(message);
    expect(out.stderr).toContain('Usage: portcullis audit query');
  });

  it('prints config errors as FILE:LINE:COL and returns 1', async () => {
    const file = await writeConfig('{type: tape}');
    for (const run of [runAuditQuery, runAuditTail]) {
      const { io, out } = captureIo();
      expect(await run(['--config', file], io)).toBe(1);
      expect(out.stderr).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:\\d+: audit\\.sink`));
    }
    const { io, out } = captureIo();
    expect(await runAuditQuery(['--config', '/nonexistent/portcullis.yaml'], io)).toBe(1);
    expect(out.stderr).toBe('/nonexistent/portcullis.yaml:1:1: cannot read the configuration file: it does not exist\n');
  });

  it('says clearly when Redis cannot be reached and returns 1', async () => {
    const [port] = await freePorts(1);
    const file = await writeConfig(`{type: redis, url: "redis://:s3cret@127.0.0.1:${port ?? 1}/0", stream: "pc-test-none"}`);
    for (const [name, run] of [['query', runAuditQuery], ['tail', runAuditTail]] as const) {
      const { io, out } = captureIo();
      const started = performance.now();
      expect(await run(['--config', file], io, { signal: AbortSignal.abort() })).toBe(1);
      expect(performance.now() - started).toBeLessThan(5000);
      expect(out.stdout).toBe('');
      expect(out.stderr).toMatch(new RegExp(`^audit ${name}: cannot read the redis sink at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}/0 \\(stream pc-test-none\\): .+\\n$`));
      expect(out.stderr).not.toContain('s3cret');
    }
  });

  it('skips a stored record that is not JSON, saying so', async () => {
    const { io, out } = captureIo();
    const good = chain('gw-0')({ at: 0, route: 'r' });
    const sink: AuditSink = {
      kind: 'file',
      append: () => Promise.resolve(),
      head: () => Promise.resolve({ size: 2, last: good.bytes }),
      read: (_log, from) => Promise.resolve([{ seq: 0, bytes: Buffer.from('{broken') }, good].slice(from)),
      logs: () => Promise.resolve(['gw-0']),
      appendCheckpoint: () => Promise.resolve(),
      readCheckpoints: () => Promise.resolve([]),
      ping: () => Promise.resolve(true),
      close: () => Promise.resolve(),
    };
    const file = await writeConfig('{type: file, dir: /nonexistent}');
    expect(await runAuditQuery(['--config', file], io, { createSink: () => sink })).toBe(0);
    expect(out.stdout).toBe(lines([good]));
    expect(out.stderr).toBe('audit query: log gw-0 record 0 is not JSON; skipped (run portcullis audit verify)\n');
  });
});
