/**
 * The file sink's packed read (`readPacked`, what `audit verify` reads the file sink with) returns
 * exactly what `read` returns — the same records, bytes and positions — across segments, with read
 * hints, a torn last line, a missing or misnamed segment, records larger than a read chunk, and for a
 * log this process writes.
 */
import { appendFile, mkdtemp, readdir, rename, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../src/audit/canonical.js';
import { createFileSink } from '../../src/audit/file-sink.js';
import type { AuditSink, StoredRecord } from '../../src/audit/sink.js';
import { recordBytes, type PackedRecords, type PackedReader } from '../../src/audit/verify-digest.js';

const LOG = 'gw-0';
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-verify-pages-'));
  dirs.push(dir);
  return dir;
}

function record(seq: number): StoredRecord {
  // Sizes vary from a few bytes to more than a segment (and one larger than a 1 MiB read).
  const pad = seq === 77 ? 'x'.repeat(1_500_000) : 'y'.repeat((seq * 37) % 900);
  return { seq, bytes: canonicalBytes({ v: 1, seq, id: `req-${seq}`, pad, note: seq % 5 === 0 ? 'é😀' : 'plain' }) };
}

/** A log of `n` records written through the sink (small segments), then the sink closed. */
async function writeLog(n: number, segmentBytes = 20_000): Promise<string> {
  const dir = await tempDir();
  const sink = createFileSink({ dir, segmentBytes });
  for (let seq = 0; seq < n; seq += 25) await sink.append(LOG, Array.from({ length: Math.min(25, n - seq) }, (_, i) => record(seq + i)));
  await sink.close();
  return dir;
}

function unpack(page: PackedRecords): { seq: number; bytes: string }[] {
  return Array.from(page.positions, (seq, i) => ({ seq, bytes: recordBytes(page, i).toString('latin1') }));
}

function plain(records: readonly StoredRecord[]): { seq: number; bytes: string }[] {
  return records.map((r) => ({ seq: r.seq, bytes: r.bytes.toString('latin1') }));
}

/** Reads [from, from + limit) both ways, each with its own sink (own read hints). */
async function both(a: AuditSink, b: PackedReader, from: number, limit: number) {
  const packed = await b.readPacked(LOG, from, limit);
  expect(packed.offsets.length).toBe(packed.positions.length + 1);
  for (let i = 0; i < packed.positions.length; i++) expect(packed.bytes[packed.offsets[i] ?? -1]).toBe(0);
  return { read: plain(await a.read(LOG, from, limit)), packed: unpack(packed) };
}

async function expectSame(dir: string): Promise<void> {
  // Random access.
  {
    const a = createFileSink({ dir });
    const b = createFileSink({ dir });
    for (const [from, limit] of [[0, 1], [0, 1000], [5, 3], [76, 3], [150, 60], [299, 10], [300, 5], [10_000, 5], [0, 0], [42, 1]] as const) {
      const r = await both(a, b, from, limit);
      expect(r.packed, `from ${from} limit ${limit}`).toEqual(r.read);
    }
    await a.close();
    await b.close();
  }
  // Sequential pages (the read hints carry each read on where the last one stopped).
  for (const limit of [1, 7, 64, 4096]) {
    const a = createFileSink({ dir });
    const b = createFileSink({ dir });
    let from = 0;
    for (;;) {
      const r = await both(a, b, from, limit);
      expect(r.packed, `page from ${from} limit ${limit}`).toEqual(r.read);
      const last = r.read.at(-1);
      if (r.read.length < limit || last === undefined) break;
      from = last.seq + 1;
    }
    await a.close();
    await b.close();
  }
}

async function segments(dir: string): Promise<string[]> {
  return (await readdir(join(dir, LOG))).filter((n) => n.startsWith('records-')).sort();
}

describe('file sink readPacked', () => {
  it('reads what read reads, across segments and with read hints', async () => {
    const dir = await writeLog(300);
    expect((await segments(dir)).length).toBeGreaterThan(5);
    await expectSame(dir);
  });

  it('leaves a torn last line out, as read does', async () => {
    const dir = await writeLog(120);
    const last = (await segments(dir)).at(-1) ?? '';
    await appendFile(join(dir, LOG, last), '{"seq":120,"torn');
    await expectSame(dir);
  });

  it('follows the segment names when a segment is missing or named after a lower seq', async () => {
    const dir = await writeLog(300);
    const names = await segments(dir);
    await unlink(join(dir, LOG, names[3] ?? ''));
    // The segment after it now claims to start 2 records early: the one before it is cut there.
    const moved = names[6] ?? '';
    const first = Number(/(\d+)/.exec(moved)?.[1]);
    await rename(join(dir, LOG, moved), join(dir, LOG, `records-${String(first - 2).padStart(12, '0')}.jsonl`));
    await expectSame(dir);
  });

  it('reads a log this process writes up to its durable head', async () => {
    const dir = await tempDir();
    const sink = createFileSink({ dir, segmentBytes: 5_000 });
    await sink.append(LOG, Array.from({ length: 40 }, (_, i) => record(i)));
    for (const [from, limit] of [[0, 100], [3, 10], [39, 5], [40, 5]] as const) {
      expect(unpack(await sink.readPacked(LOG, from, limit))).toEqual(plain(await sink.read(LOG, from, limit)));
    }
    await sink.close();
  });

  it('reads nothing from a log that does not exist, and checks its arguments as read does', async () => {
    const dir = await tempDir();
    const sink = createFileSink({ dir });
    expect((await sink.readPacked(LOG, 0, 10)).positions.length).toBe(0);
    await expect(sink.readPacked('../x', 0, 1)).rejects.toThrow();
    await expect(sink.readPacked(LOG, -1, 1)).rejects.toThrow();
    await sink.close();
    await expect(sink.readPacked(LOG, 0, 1)).rejects.toThrow(/closed/);
  });
});
