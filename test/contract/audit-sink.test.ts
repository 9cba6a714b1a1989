/**
 * Runs the audit sink contract against both adapters, plus what only one of them has: the file
 * layout, segments and crash recovery; the Redis key layout, re-sends and behaviour while the server
 * is down or stuck.
 *
 * The Redis runs use the shared server (PORTCULLIS_TEST_REDIS_URL, default redis://127.0.0.1:6379)
 * with a random stream prefix per test and delete their own keys with SCAN MATCH — never FLUSHDB. The
 * fault tests start a private redis-server (test/support/redis-server.ts).
 */
import { randomUUID } from 'node:crypto';
import { appendFile, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAuditSink } from '../../src/audit/create-sink.js';
import { createFileSink, type FileSinkOptions } from '../../src/audit/file-sink.js';
import { APPEND_LUA, createRedisSink } from '../../src/audit/redis-sink.js';
import { AuditSinkConflictError, type AuditSink } from '../../src/audit/sink.js';
import { startRedisServer, type TestRedisServer } from '../support/redis-server.js';
import { deleteKeys, timed, untilResolved } from '../support/redis-test-kit.js';
import { auditSinkContract, fill, record, records } from './audit-sink.contract.js';

const SHARED_REDIS_URL = process.env.PORTCULLIS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A stream prefix no other test run uses; no glob characters, so SCAN MATCH `<prefix>*` is exact. */
const uniqueStream = () => `pc-test-audit-${randomUUID()}`;




interface LogLine {
  level: number;
  msg: string;
  component?: string;
  droppedBytes?: number;
}

function capturingLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'portcullis-audit-'));
}

// ---------------------------------------------------------------------------------------------------
// File sink

const fileDirs = new Set<string>();
afterAll(async () => {
  for (const dir of fileDirs) await rm(dir, { recursive: true, force: true });
});

auditSinkContract('file', async () => {
  const dir = await tempDir();
  fileDirs.add(dir);
  // Small segments, so the contract's larger tests cross many segment boundaries.
  const sinks: AuditSink[] = [createFileSink({ dir, segmentBytes: 4096 })];
  return {
    sink: sinks[0] as AuditSink,
    reopen: () => {
      const sink = createFileSink({ dir, segmentBytes: 4096 });
      sinks.push(sink);
      return Promise.resolve(sink);
    },
    cleanup: async () => {
      await Promise.all(sinks.map((s) => s.close()));
      await rm(dir, { recursive: true, force: true });
      fileDirs.delete(dir);
    },
  };
});

describe('createFileSink', () => {
  let dir: string;
  const sinks: AuditSink[] = [];
  const fileSink = (opts: Omit<FileSinkOptions, 'dir'> = {}): AuditSink => {
    const sink = createFileSink({ dir, ...opts });
    sinks.push(sink);
    return sink;
  };
  const segmentsOf = async (log: string) => (await readdir(join(dir, log))).filter((n) => n.startsWith('records-')).sort();

  afterEach(async () => {
    await Promise.all(sinks.splice(0).map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });
  const setup = async () => {
    dir = join(await tempDir(), 'audit'); // does not exist yet: the sink creates it
    fileDirs.add(dir);
  };

  it('writes one canonical record per line into segments named after their first seq, 0600 files in 0700 directories', async () => {
    await setup();
    const sink = fileSink({ segmentBytes: 1000 });
    await fill(sink, 'gw-0', 40, 7);
    await sink.appendCheckpoint('gw-0', 'a\n\nb\n');
    const names = await segmentsOf('gw-0');
    expect(names[0]).toBe('records-000000000000.jsonl');
    expect(names.length).toBeGreaterThan(3);
    let seq = 0;
    for (const name of names) {
      expect(name).toBe(`records-${String(seq).padStart(12, '0')}.jsonl`);
      const content = await readFile(join(dir, 'gw-0', name));
      // A segment is closed at the first record boundary at or after segmentBytes.
      const lines = content.toString('utf8').split('\n');
      expect(lines.pop()).toBe('');
      expect(content.length - (lines.at(-1)?.length ?? 0) - 1).toBeLessThan(1000);
      expect(lines).toEqual(records(seq, lines.length).map((r) => r.bytes.toString('utf8')));
      seq += lines.length;
      expect((await stat(join(dir, 'gw-0', name))).mode & 0o777).toBe(0o600);
    }
    expect(seq).toBe(40);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'gw-0'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'gw-0', 'checkpoints.txt'))).mode & 0o777).toBe(0o600);
  });

  it('reads across segment boundaries from every starting point', async () => {
    await setup();
    const sink = fileSink({ segmentBytes: 600 });
    await fill(sink, 'gw-0', 120, 13);
    expect((await segmentsOf('gw-0')).length).toBeGreaterThan(10);
    const fresh = fileSink({ segmentBytes: 600 }); // a reader that does not write the log
    for (const reader of [sink, fresh]) {
      for (let from = 0; from <= 120; from += 1) {
        const got = await reader.read('gw-0', from, 9);
        expect(got.map((r) => r.seq)).toEqual(Array.from({ length: Math.min(9, 120 - from) }, (_, i) => from + i));
        expect(got.map((r) => r.bytes.toString())).toEqual(records(from, Math.min(9, 120 - from)).map((r) => r.bytes.toString()));
      }
    }
  });

  it('lays out checkpoints.txt as length-prefixed entries', async () => {
    await setup();
    const sink = fileSink();
    await sink.appendCheckpoint('gw-0', 'origin\n1\nAbc=\n\n— k sig\n');
    await sink.appendCheckpoint('gw-0', 'é');
    expect(await readFile(join(dir, 'gw-0', 'checkpoints.txt'), 'utf8')).toBe(
      'checkpoint 25\norigin\n1\nAbc=\n\n— k sig\n\ncheckpoint 2\né\n',
    );
  });

  it('batches concurrent appends into few fsyncs (group commit)', async () => {
    await setup();
    const probe = await open(join(dir, '..', 'probe'), 'w');
    const fileHandlePrototype = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const sink = fileSink();
    await sink.append('gw-0', [record(0)]);
    const datasync = vi.spyOn(fileHandlePrototype, 'datasync');
    try {
      const pending: Promise<void>[] = [];
      for (let seq = 1; seq <= 1000; seq++) pending.push(sink.append('gw-0', [record(seq)]));
      await Promise.all(pending);
      expect(datasync.mock.calls.length).toBeGreaterThan(0);
      expect(datasync.mock.calls.length).toBeLessThan(50);
    } finally {
      datasync.mockRestore();
    }
    expect((await sink.head('gw-0')).size).toBe(1001);
  });

  it('cuts a torn last line off when the log is opened for writing, and logs it', async () => {
    await setup();
    const first = fileSink({ segmentBytes: 1500 });
    await fill(first, 'gw-0', 30, 10);
    await first.close();
    const last = (await segmentsOf('gw-0')).at(-1) ?? '';
    const path = join(dir, 'gw-0', last);
    const before = await readFile(path);
    await appendFile(path, '{"id":"r30","pad":"xx'); // a crash in the middle of a write

    // Readers ignore the partial line and leave the file alone (it may be a write in progress).
    const reader = fileSink({ segmentBytes: 1500 });
    expect((await reader.head('gw-0')).size).toBe(30);
    expect((await reader.read('gw-0', 25, 10)).map((r) => r.seq)).toEqual([25, 26, 27, 28, 29]);
    expect((await readFile(path)).length).toBe(before.length + 21);

    const { logger, lines } = capturingLogger();
    const writer = fileSink({ segmentBytes: 1500, logger });
    await writer.append('gw-0', [record(30)]);
    const warning = lines.find((l) => l.level === 40);
    expect(warning).toMatchObject({ component: 'audit-sink', droppedBytes: 21 });
    expect((await readFile(path)).toString()).toBe(`${before.toString()}${record(30).bytes.toString()}\n`);
    expect((await writer.head('gw-0')).size).toBe(31);
    expect((await fileSink().read('gw-0', 0, 100)).map((r) => r.bytes.toString())).toEqual(records(0, 31).map((r) => r.bytes.toString()));
  });

  it('recovers the head from an empty last segment (a crash right after it was created)', async () => {
    await setup();
    const first = fileSink({ segmentBytes: 500 });
    await fill(first, 'gw-0', 20, 5);
    await first.close();
    const size = 20;
    await writeFile(join(dir, 'gw-0', `records-${String(size).padStart(12, '0')}.jsonl`), '', { mode: 0o600 });
    const reader = fileSink({ segmentBytes: 500 });
    const head = await reader.head('gw-0');
    expect(head.size).toBe(20);
    expect(head.last?.toString()).toBe(record(19).bytes.toString());
    const writer = fileSink({ segmentBytes: 500 });
    await writer.append('gw-0', records(18, 4));
    expect((await writer.head('gw-0')).last?.toString()).toBe(record(21).bytes.toString());
    expect((await fileSink().read('gw-0', 0, 100)).map((r) => r.seq)).toEqual(Array.from({ length: 22 }, (_, i) => i));
  });

  it('recovers a log whose only segment is empty or torn', async () => {
    await setup();
    const sink = fileSink();
    await sink.appendCheckpoint('gw-0', 'x\n'); // creates the directory
    await writeFile(join(dir, 'gw-0', 'records-000000000000.jsonl'), '{"torn', { mode: 0o600 });
    expect(await fileSink().head('gw-0')).toEqual({ size: 0, last: undefined });
    const writer = fileSink();
    await writer.append('gw-0', records(0, 2));
    expect(await readFile(join(dir, 'gw-0', 'records-000000000000.jsonl'), 'utf8')).toBe(
      records(0, 2)
        .map((r) => `${r.bytes.toString()}\n`)
        .join(''),
    );
  });

  it('ignores a torn checkpoint entry when reading and cuts it off before the next append', async () => {
    await setup();
    const sink = fileSink();
    await sink.appendCheckpoint('gw-0', 'one\n\nsig\n');
    await sink.close();
    const path = join(dir, 'gw-0', 'checkpoints.txt');
    const intact = await readFile(path, 'utf8');
    for (const torn of ['checkpoint 9', 'checkpoint 9\ntwo\n', 'checkpoint 9\ntwo\n\nsig\n']) {
      await writeFile(path, intact + torn);
      expect(await fileSink().readCheckpoints('gw-0')).toEqual(['one\n\nsig\n']);
    }
    const writer = fileSink();
    await writer.appendCheckpoint('gw-0', 'two\n');
    expect(await writer.readCheckpoints('gw-0')).toEqual(['one\n\nsig\n', 'two\n']);
    expect(await readFile(path, 'utf8')).toBe(`${intact}checkpoint 4\ntwo\n\n`);
  });

  it('refuses to read a damaged checkpoint file rather than guess', async () => {
    await setup();
    const sink = fileSink();
    await sink.appendCheckpoint('gw-0', 'one\n');
    await appendFile(join(dir, 'gw-0', 'checkpoints.txt'), 'garbage\ncheckpoint 4\ntwo\n\n');
    await expect(sink.readCheckpoints('gw-0')).rejects.toThrow(/malformed checkpoint entry/);
  });

  it('fails the waiting appends when a write fails and recovers on the next append', async () => {
    await setup();
    const sink = fileSink();
    await sink.append('gw-0', records(0, 3));
    const probe = await open(join(dir, '..', 'probe2'), 'w');
    const fileHandlePrototype = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const failing = vi.spyOn(fileHandlePrototype, 'datasync').mockRejectedValueOnce(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
    try {
      await expect(sink.append('gw-0', records(3, 2))).rejects.toThrow(/EIO/);
    } finally {
      failing.mockRestore();
    }
    // The records reached the file but were never acknowledged; appending them again is idempotent.
    await sink.append('gw-0', records(3, 3));
    expect((await sink.read('gw-0', 0, 100)).map((r) => r.seq)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('lists only directories that are log names', async () => {
    await setup();
    const sink = fileSink();
    await sink.append('gw-0', records(0, 1));
    await writeFile(join(dir, 'stray.txt'), 'x');
    expect(await sink.logs()).toEqual(['gw-0']);
  });

  it('pings false when its directory cannot be written', async () => {
    await setup();
    await writeFile(`${dir}-file`, 'not a directory');
    const sink = createFileSink({ dir: join(`${dir}-file`, 'audit') });
    sinks.push(sink);
    expect(await sink.ping()).toBe(false);
    await expect(sink.append('gw-0', records(0, 1))).rejects.toThrow(/ENOTDIR/);
    await rm(`${dir}-file`, { force: true });
  });

  it("bounds a writer's reads by its head, and shows a reader every complete line", async () => {
    await setup();
    const sink = fileSink();
    await sink.append('gw-0', records(0, 3));
    // Bytes the writer did not acknowledge (as if another write were completing): not part of its log yet.
    await appendFile(join(dir, 'gw-0', 'records-000000000000.jsonl'), `${record(3).bytes.toString()}\n`);
    expect((await sink.read('gw-0', 0, 10)).length).toBe(3);
    expect((await fileSink().read('gw-0', 0, 10)).length).toBe(4);
  });
});

// ---------------------------------------------------------------------------------------------------
// Redis sink

describe('Redis audit sink', () => {
  const admin = new Redis(SHARED_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const streams = new Set<string>();
  const sinks = new Set<AuditSink>();

  const sharedSink = (stream: string): AuditSink => {
    streams.add(stream);
    const sink = createRedisSink({ url: SHARED_REDIS_URL, stream });
    sinks.add(sink);
    return sink;
  };

  beforeAll(async () => {
    await admin.connect();
  });
  afterEach(async () => {
    await Promise.all([...sinks].map((s) => s.close()));
    sinks.clear();
    for (const stream of streams) await deleteKeys(admin, stream);
    streams.clear();
  });
  afterAll(async () => {
    await admin.quit();
  });

  auditSinkContract('redis', () => {
    const stream = uniqueStream();
    return Promise.resolve({
      sink: sharedSink(stream),
      reopen: () => Promise.resolve(sharedSink(stream)),
      cleanup: () => Promise.resolve(),
    });
  });

  describe('createRedisSink', () => {
    it('stores record seq as entry 0-<seq+1> with the one field r, and checkpoints with the one field c', async () => {
      const stream = uniqueStream();
      const sink = sharedSink(stream);
      await sink.append('gw-0', records(0, 3));
      await sink.appendCheckpoint('gw-0', 'note\n\nsig\n');
      const entries = await admin.xrangeBuffer(`${stream}:{gw-0}:records`, '-', '+');
      expect(entries.map(([id, fields]) => [id.toString(), fields.map((f) => f.toString())])).toEqual(
        records(0, 3).map((r) => [`0-${r.seq + 1}`, ['r', r.bytes.toString()]]),
      );
      const checkpoints = await admin.xrange(`${stream}:{gw-0}:checkpoints`, '-', '+');
      expect(checkpoints.map(([, fields]) => fields)).toEqual([['c', 'note\n\nsig\n']]);
      const [, keys] = await admin.scan('0', 'MATCH', `${stream}*`, 'COUNT', 100_000);
      expect(keys.sort()).toEqual([`${stream}:{gw-0}:checkpoints`, `${stream}:{gw-0}:records`]);
    });

    it('recognises records another writer stored: the same bytes are accepted, other bytes conflict', async () => {
      const stream = uniqueStream();
      const sink = sharedSink(stream);
      await sink.append('gw-0', records(0, 2)); // the sink now caches the head at 2
      const key = `${stream}:{gw-0}:records`;
      await admin.xadd(key, '0-3', 'r', record(2).bytes);
      await admin.xadd(key, '0-4', 'r', record(3, 'foreign').bytes);
      await sink.append('gw-0', [record(2)]);
      await expect(sink.append('gw-0', [record(3)])).rejects.toBeInstanceOf(AuditSinkConflictError);
      await sink.append('gw-0', [record(4)]);
      expect(await admin.xlen(key)).toBe(5);
    });

    it('sends a batch as one script call that stops at the first refused record, so a batch never leaves a hole', async () => {
      const stream = uniqueStream();
      streams.add(stream);
      const key = `${stream}:{gw-0}:records`;
      const [a, b, c] = [record(0).bytes, record(1).bytes, record(2).bytes];
      // The second ID is not a stream ID: Redis refuses that XADD, and the third is not attempted.
      const replies = await admin.eval(APPEND_LUA, 1, key, '0-1', a, 'not-an-id', b, '0-3', c);
      expect(replies).toEqual([0, expect.stringMatching(/Invalid stream ID/), expect.stringMatching(/^NOTRUN/)]);
      expect(await admin.xlen(key)).toBe(1);
      // A re-send (an ID at or below the top) does not stop it: the records after it are stored.
      expect(await admin.eval(APPEND_LUA, 1, key, '0-1', a, '0-2', b, '0-3', c)).toEqual([expect.stringMatching(/equal or smaller/), 0, 0]);
      expect(await admin.xlen(key)).toBe(3);
      const sink = sharedSink(stream);
      const before = Number(/cmdstat_evalsha:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
      await Promise.all([sink.append('gw-0', records(3, 40)), sink.append('gw-0', records(43, 40))]);
      const after = Number(/cmdstat_evalsha:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
      expect(after - before).toBeGreaterThanOrEqual(1);
      expect(after - before).toBeLessThanOrEqual(2); // one call per round, not one per record
      expect(await admin.xlen(key)).toBe(83);
    });

    it('lists logs of its own stream prefix only, whatever glob characters the prefix holds', async () => {
      const base = uniqueStream();
      const a = sharedSink(`${base}:a*`);
      const b = sharedSink(`${base}:a`);
      streams.add(base);
      await a.append('gw-0', records(0, 1));
      await b.append('gw-1', records(0, 1));
      expect(await a.logs()).toEqual(['gw-0']);
      expect(await b.logs()).toEqual(['gw-1']);
    });
  });

  describe('createAuditSink', () => {
    it('builds the sink the configuration names', async () => {
      const dir = await tempDir();
      fileDirs.add(dir);
      const file = createAuditSink({ type: 'file', dir });
      expect(file.kind).toBe('file');
      await file.append('gw-0', records(0, 1));
      expect(await readdir(join(dir, 'gw-0'))).toEqual(['records-000000000000.jsonl']);
      await file.close();
      const stream = uniqueStream();
      streams.add(stream);
      const redis = createAuditSink({ type: 'redis', url: SHARED_REDIS_URL, stream });
      sinks.add(redis);
      expect(redis.kind).toBe('redis');
      await redis.append('gw-0', records(0, 1));
      expect(await admin.xlen(`${stream}:{gw-0}:records`)).toBe(1);
    });
  });
});

describe('Redis audit sink when Redis fails', () => {
  let server: TestRedisServer;
  let sink: AuditSink | undefined;
  let inspect: Redis;
  const key = 'faults:{gw-0}:records';

  beforeAll(async () => {
    server = await startRedisServer();
    inspect = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    inspect.on('error', () => undefined); // the server is killed on purpose; failures are asserted, not logged
  });
  afterEach(async () => {
    await sink?.close();
    sink = undefined;
    await untilResolved(() => inspect.del(key), 5000);
  });
  afterAll(async () => {
    inspect.disconnect();
    await server.stop();
  });

  it('stores nothing of a batch Redis refuses for lack of memory, and all of it once memory is back', async () => {
    sink = createRedisSink({ url: server.url, stream: 'faults' });
    await sink.append('gw-0', records(0, 5));
    await inspect.config('SET', 'maxmemory', '1');
    try {
      await expect(sink.append('gw-0', records(5, 20))).rejects.toThrow(/OOM/);
      expect(await inspect.xlen(key)).toBe(5);
    } finally {
      await inspect.config('SET', 'maxmemory', '0');
    }
    await sink.append('gw-0', records(5, 20));
    expect((await sink.read('gw-0', 0, 100)).map((r) => r.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i));
  });

  it('fails fast while Redis is down; after a restart the same batch is stored exactly once', async () => {
    const { logger, lines } = capturingLogger();
    sink = createRedisSink({ url: server.url, stream: 'faults', logger });
    expect(await sink.ping()).toBe(true);
    server.kill();
    await new Promise((r) => setTimeout(r, 100));

    const batch = records(0, 100);
    const down = await timed(sink.append('gw-0', batch));
    expect(down.error).toBeInstanceOf(Error);
    expect(down.ms).toBeLessThan(2000);
    const head = await timed(sink.head('gw-0'));
    expect(head.error).toBeInstanceOf(Error);
    expect(head.ms).toBeLessThan(2000);
    expect(await sink.ping()).toBe(false);

    await server.restart(); // empty: the private server keeps nothing
    const live = sink;
    await untilResolved(() => live.append('gw-0', batch), 5000);
    await live.append('gw-0', batch); // the caller's replay after an unclear outcome: harmless
    await live.append('gw-0', records(100, 10));
    await untilResolved(async () => expect(await inspect.xlen(key)).toBe(110), 5000);
    expect((await live.read('gw-0', 0, 1000)).map((r) => r.seq)).toEqual(Array.from({ length: 110 }, (_, i) => i));
    expect(lines.filter((l) => l.level === 40 && l.component === 'audit-sink')).toHaveLength(1);
    expect(lines.filter((l) => l.msg === 'redis audit sink reconnected')).toHaveLength(1);
  });

  it('rejects within the command timeout when Redis stops answering; the batch that did land is not duplicated', async () => {
    sink = createRedisSink({ url: server.url, stream: 'faults', commandTimeoutMs: 300 });
    await sink.append('gw-0', records(0, 10));
    server.freeze();
    let stuck;
    try {
      stuck = await timed(sink.append('gw-0', records(10, 10)));
    } finally {
      server.thaw();
    }
    expect(stuck.error).toBeInstanceOf(Error);
    expect(stuck.ms).toBeLessThan(1000);
    // Redis ran the MULTI it had received once it was thawed: the batch is stored, its reply was lost.
    await untilResolved(async () => expect(await inspect.xlen(key)).toBe(20), 5000);
    const live = sink;
    await untilResolved(() => live.append('gw-0', records(10, 10)), 5000);
    await live.append('gw-0', records(15, 10));
    expect(await inspect.xlen(key)).toBe(25);
    expect((await live.read('gw-0', 0, 100)).map((r) => r.bytes.toString())).toEqual(records(0, 25).map((r) => r.bytes.toString()));
  });

  it('rejects within about the command timeout when Redis was never reachable', async () => {
    const port = server.port;
    await server.stop();
    try {
      sink = createRedisSink({ url: `redis://127.0.0.1:${port}`, stream: 'faults' });
      const append = await timed(sink.append('gw-0', records(0, 1)));
      expect(append.error).toBeInstanceOf(Error);
      expect(append.ms).toBeLessThan(2000);
      expect(await sink.ping()).toBe(false);
    } finally {
      server = await startRedisServer();
      inspect.disconnect();
      inspect = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
      inspect.on('error', () => undefined); // the server is killed on purpose
    inspect.on('error', () => undefined); // the server is killed on purpose; failures are asserted, not logged
    }
  });
});
