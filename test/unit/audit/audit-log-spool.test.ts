/**
 * The writer's spool: every line in the order it was made, a record in the file by the time its
 * append resolves, and the records of one loop turn sharing the next write (src/audit/audit-log.ts).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openAuditLog, type AuditLog } from '../../../src/audit/audit-log.js';
import { createFileSink } from '../../../src/audit/file-sink.js';
import type { AuditSink } from '../../../src/audit/sink.js';
import type { RecordBody } from '../../../src/audit/record.js';

const dirs: string[] = [];
const logs: AuditLog[] = [];

afterEach(async () => {
  for (const log of logs.splice(0)) await log.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** The real file sink, with appends that fail while `down` (a sink outage). */
function switchableSink(dir: string): { sink: AuditSink; state: { down: boolean } } {
  const real = createFileSink({ dir });
  const state = { down: false };
  const sink: AuditSink = {
    kind: real.kind,
    append: (log, records) => (state.down ? Promise.reject(new Error('sink down (test)')) : real.append(log, records)),
    head: (log) => real.head(log),
    read: (log, from, limit) => real.read(log, from, limit),
    logs: () => real.logs(),
    appendCheckpoint: (log, text) => real.appendCheckpoint(log, text),
    readCheckpoints: (log) => real.readCheckpoints(log),
    ping: () => real.ping(),
    close: () => real.close(),
  };
  return { sink, state };
}

async function open(opts: { sink?: AuditSink; maxInMemory?: number } = {}): Promise<{ log: AuditLog; wal: () => Promise<string[]>; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-spool-'));
  dirs.push(dir);
  const log = await openAuditLog({
    sink: opts.sink ?? createFileSink({ dir: join(dir, 'sink') }),
    ...(opts.maxInMemory === undefined ? {} : { maxInMemory: opts.maxInMemory }),
    instance: 'gw-0',
    origin: 'test.example/audit/gw-0',
    spoolDir: join(dir, 'spool'),
    onFailure: 'spool',
    logger: pino({ level: 'silent' }),
  });
  logs.push(log);
  // Record and intent lines (not acknowledgements): the tag and the id.
  const wal = async () =>
    (await readFile(join(dir, 'spool', 'gw-0', 'wal.log'), 'utf8'))
      .split('\n')
      .filter((line) => line.startsWith('R\t') || line.startsWith('I\t'))
      .map((line) => {
        const value = JSON.parse(line.slice(2)) as { id: string };
        return `${line[0] ?? ''}:${value.id}`;
      });
  return { log, wal, dir };
}

const body = (id: string): RecordBody => ({ v: 1, id, ts: '2026-11-26T10:00:00.000Z', kind: 'http', decision: 'allow', response: { status: 200 } });

describe('the audit spool', () => {
  it('has a record in the file by the time its append resolves', async () => {
    const { log, wal } = await open();
    const appended = log.append(body('a'), false);
    await appended;
    expect(await wal()).toEqual(['R:a']);
  });

  it('keeps the order of records and intents made in one loop turn; the intent takes the records before it along', async () => {
    const { log, wal } = await open();
    const first = [log.append(body('a'), false), log.append(body('b'), false)];
    await log.intent({ id: 'c', body: body('c') }, false);
    // The intent's write carried both records: they are in the file although the turn has not ended.
    expect(await wal()).toEqual(['R:a', 'R:b', 'I:c']);
    const later = log.append(body('c'), false);
    await Promise.all([...first, later]);
    expect(await wal()).toEqual(['R:a', 'R:b', 'I:c', 'R:c']);
  });

  it('writes the waiting records before a durable one, in one fsynced write', async () => {
    const { log, wal } = await open();
    const lazy = log.append(body('a'), false);
    const durable = await log.append(body('b'), true);
    expect(durable.seq).toBe(1);
    expect(await wal()).toEqual(['R:a', 'R:b']);
    await lazy;
  });

  it('writes the records of one turn with the seq order of their appends', async () => {
    const { log, wal } = await open();
    const ids = Array.from({ length: 50 }, (_, i) => `r${i}`);
    const stored = await Promise.all(ids.map((id) => log.append(body(id), false)));
    expect(stored.map((r) => r.seq)).toEqual(ids.map((_, i) => i));
    expect(await wal()).toEqual(ids.map((id) => `R:${id}`));
    expect(log.stats().size).toBe(50);
  });
});

describe('a backlog larger than memory', () => {
  it('reads the records beyond memory back from the spool, in order and each once, while appends go on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-backlog-'));
    dirs.push(dir);
    const { sink, state } = switchableSink(join(dir, 'sink'));
    state.down = true;
    const { log } = await open({ sink, maxInMemory: 100 });
    const written: Buffer[] = [];
    const appendMany = async (from: number, n: number) => {
      for (let i = from; i < from + n; i += 50) {
        if (i % 200 === 0) await log.intent({ id: `i${i}`, body: body(`i${i}`) }, false);
        const batch = await Promise.all(Array.from({ length: Math.min(50, from + n - i) }, (_, j) => log.append(body(`r${i + j}`), false)));
        for (const r of batch) written[r.seq] = r.bytes;
      }
    };
    await appendMany(0, 1_000); // ten times what memory holds, all while the sink is down
    expect(log.stats()).toMatchObject({ size: 1_000, acked: 0 });
    state.down = false;
    // Appends keep coming while the backlog is read back and shipped.
    await Promise.all([appendMany(1_000, 500), log.flush(20_000)]);
    expect(await log.flush(20_000)).toBe(true);
    const stored = await sink.read('gw-0', 0, 2_000);
    expect(stored.map((r) => r.seq)).toEqual(Array.from({ length: 1_500 }, (_, i) => i));
    for (const r of stored) expect(r.bytes.equals(written[r.seq] ?? Buffer.alloc(0))).toBe(true);
  });
});
