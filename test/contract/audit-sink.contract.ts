/**
 * The contract every {@link AuditSink} adapter passes: one suite, run against each adapter by
 * test/contract/audit-sink.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditSinkConflictError, AuditSinkGapError, type AuditSink, type StoredRecord } from '../../src/audit/sink.js';

/** One fresh, empty sink for one test. */
export interface AuditSinkHarness {
  readonly sink: AuditSink;
  /** Another sink on the same storage, as after a restart; cleanup closes it. */
  reopen(): Promise<AuditSink>;
  /** Closes every sink of the harness (some may be closed already) and removes what the test stored. */
  cleanup(): Promise<void>;
}

/** A canonical-looking record whose bytes depend on `seq` and `salt`, of varying length. */
export function record(seq: number, salt = ''): StoredRecord {
  const pad = 'x'.repeat((seq * 37) % 300);
  return { seq, bytes: Buffer.from(`{"id":"r${seq}${salt}","pad":"${pad}","seq":${seq},"v":1}`) };
}

/** Records `from` … `from + count - 1`. */
export function records(from: number, count: number, salt = ''): StoredRecord[] {
  return Array.from({ length: count }, (_, i) => record(from + i, salt));
}

/** Appends records 0 … count - 1 in batches of `batch`. */
export async function fill(sink: AuditSink, log: string, count: number, batch = 100): Promise<void> {
  for (let from = 0; from < count; from += batch) await sink.append(log, records(from, Math.min(batch, count - from)));
}

const text = (r: StoredRecord): string => r.bytes.toString('utf8');

/** Defines the contract suite for one adapter; `make` is called before every test. */
export function auditSinkContract(name: string, make: () => Promise<AuditSinkHarness>): void {
  describe(`AuditSink (${name})`, () => {
    let harness: AuditSinkHarness;
    let sink: AuditSink;

    beforeEach(async () => {
      harness = await make();
      sink = harness.sink;
    });
    afterEach(async () => {
      await harness.cleanup();
    });

    it('reports its kind', () => {
      expect(sink.kind).toBe(name);
    });

    it('shows an empty head, no records, no checkpoints and no logs before anything is stored', async () => {
      expect(await sink.head('gw-0')).toEqual({ size: 0, last: undefined });
      expect(await sink.read('gw-0', 0, 100)).toEqual([]);
      expect(await sink.readCheckpoints('gw-0')).toEqual([]);
      expect(await sink.logs()).toEqual([]);
      expect(await sink.ping()).toBe(true);
    });

    describe('append / head / read', () => {
      it('stores many records in order and reads any range back', async () => {
        // Uneven batch sizes, so batches and ranges never line up.
        let next = 0;
        for (const size of [1, 7, 200, 3, 150, 1, 90, 548, 1000, 500]) {
          await sink.append('gw-0', records(next, size));
          next += size;
        }
        expect(next).toBe(2500);
        const head = await sink.head('gw-0');
        expect(head.size).toBe(2500);
        expect(head.last?.equals(record(2499).bytes)).toBe(true);

        const all = await sink.read('gw-0', 0, 10_000);
        expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 2500 }, (_, i) => i));
        expect(all.map(text)).toEqual(records(0, 2500).map(text));

        for (const [from, limit] of [
          [0, 1],
          [1, 10],
          [7, 1],
          [207, 300],
          [1234, 100],
          [2000, 499],
          [2499, 5],
        ] as const) {
          const got = await sink.read('gw-0', from, limit);
          expect(got.map(text)).toEqual(records(from, Math.min(limit, 2500 - from)).map(text));
          expect(got.map((r) => r.seq)).toEqual(Array.from({ length: Math.min(limit, 2500 - from) }, (_, i) => from + i));
        }
      });

      it('reads nothing at or past the head, and nothing for a limit of 0', async () => {
        await sink.append('gw-0', records(0, 5));
        expect(await sink.read('gw-0', 5, 10)).toEqual([]);
        expect(await sink.read('gw-0', 50, 10)).toEqual([]);
        expect(await sink.read('gw-0', 0, 0)).toEqual([]);
      });

      it('shows a new sink on the same storage the same head, records and checkpoints (a restart)', async () => {
        await fill(sink, 'gw-0', 300, 70);
        await sink.appendCheckpoint('gw-0', 'checkpoint one\n\n— sig\n');
        await sink.close(); // one writer per log: the old process is gone
        const again = await harness.reopen();
        const head = await again.head('gw-0');
        expect(head.size).toBe(300);
        expect(head.last?.equals(record(299).bytes)).toBe(true);
        expect((await again.read('gw-0', 250, 100)).map(text)).toEqual(records(250, 50).map(text));
        expect(await again.readCheckpoints('gw-0')).toEqual(['checkpoint one\n\n— sig\n']);
        expect(await again.logs()).toEqual(['gw-0']);
        // The new instance continues the log where it stands.
        await again.append('gw-0', records(300, 5));
        expect((await again.head('gw-0')).size).toBe(305);
        const reader = await harness.reopen();
        expect((await reader.read('gw-0', 298, 10)).map((r) => r.seq)).toEqual([298, 299, 300, 301, 302, 303, 304]);
        await expect(again.append('gw-0', [record(10, 'other')])).rejects.toBeInstanceOf(AuditSinkConflictError);
      });

      it('accepts an empty batch as a no-op', async () => {
        await sink.append('gw-0', []);
        expect((await sink.head('gw-0')).size).toBe(0);
      });
    });

    describe('idempotency and order', () => {
      it('accepts a re-append of stored records with the same bytes without storing them twice', async () => {
        await sink.append('gw-0', records(0, 10));
        await sink.append('gw-0', records(0, 10));
        await sink.append('gw-0', records(3, 2));
        await sink.append('gw-0', [record(9)]);
        expect((await sink.head('gw-0')).size).toBe(10);
        expect((await sink.read('gw-0', 0, 100)).map(text)).toEqual(records(0, 10).map(text));
      });

      it('stores only the new part of a batch that overlaps the head', async () => {
        await sink.append('gw-0', records(0, 10));
        await sink.append('gw-0', records(5, 10));
        const head = await sink.head('gw-0');
        expect(head.size).toBe(15);
        expect(head.last?.equals(record(14).bytes)).toBe(true);
        expect((await sink.read('gw-0', 0, 100)).map(text)).toEqual(records(0, 15).map(text));
      });

      it('refuses other bytes under a stored seq with AuditSinkConflictError and stores nothing of that batch', async () => {
        await sink.append('gw-0', records(0, 5));
        const single = sink.append('gw-0', [record(3, 'tampered')]);
        await expect(single).rejects.toBeInstanceOf(AuditSinkConflictError);
        await expect(single).rejects.toMatchObject({ log: 'gw-0', seq: 3 });
        // Overlapping a stored record with other bytes: the new records (5, 6) are not stored either.
        await expect(sink.append('gw-0', [record(3), record(4, 'tampered'), record(5), record(6)])).rejects.toMatchObject({
          name: 'AuditSinkConflictError',
          seq: 4,
        });
        const head = await sink.head('gw-0');
        expect(head.size).toBe(5);
        expect((await sink.read('gw-0', 0, 100)).map(text)).toEqual(records(0, 5).map(text));
      });

      it('refuses an append past the head with AuditSinkGapError', async () => {
        const empty = sink.append('gw-0', [record(1)]);
        await expect(empty).rejects.toBeInstanceOf(AuditSinkGapError);
        await expect(empty).rejects.toMatchObject({ log: 'gw-0', expected: 0, got: 1 });
        await sink.append('gw-0', records(0, 5));
        await expect(sink.append('gw-0', records(6, 3))).rejects.toMatchObject({ name: 'AuditSinkGapError', expected: 5, got: 6 });
        expect((await sink.head('gw-0')).size).toBe(5);
        expect(await sink.read('gw-0', 5, 10)).toEqual([]);
      });

      it('judges concurrent calls in call order, failing only the bad one', async () => {
        const results = await Promise.allSettled([
          sink.append('gw-0', records(0, 5)),
          sink.append('gw-0', records(7, 2)), // gap: 5 is next
          sink.append('gw-0', records(5, 2)),
          sink.append('gw-0', [record(6, 'other')]), // conflicts with the call before it
          sink.append('gw-0', records(4, 4)), // overlaps stored and queued records, adds 7
        ]);
        expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
        expect(results[1]).toMatchObject({ reason: { name: 'AuditSinkGapError', expected: 5, got: 7 } });
        expect(results[3]).toMatchObject({ reason: { name: 'AuditSinkConflictError', seq: 6 } });
        expect((await sink.read('gw-0', 0, 100)).map(text)).toEqual(records(0, 8).map(text));
      });

      it('resolves 1,000 concurrent single-record appends issued in order and stores them in that order', async () => {
        const pending: Promise<void>[] = [];
        for (let seq = 0; seq < 1000; seq++) pending.push(sink.append('gw-0', [record(seq)]));
        await Promise.all(pending);
        expect((await sink.head('gw-0')).size).toBe(1000);
        const stored = await sink.read('gw-0', 0, 2000);
        expect(stored.map((r) => r.seq)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
        expect(stored.map(text)).toEqual(records(0, 1000).map(text));
      });

      it('refuses malformed calls', async () => {
        const bad: [string, StoredRecord[]][] = [
          ['gw-0', [record(0), record(2)]],
          ['gw-0', [record(1), record(0)]],
          ['gw-0', [{ seq: -1, bytes: Buffer.from('{}') }]],
          ['gw-0', [{ seq: 0.5, bytes: Buffer.from('{}') }]],
          ['gw-0', [{ seq: 0, bytes: Buffer.alloc(0) }]],
          ['gw-0', [{ seq: 0, bytes: Buffer.from('{"a":1}\n{"b":2}') }]],
          ['../escape', [record(0)]],
          ['a/b', [record(0)]],
          ['', [record(0)]],
          ['x}:records', [record(0)]],
        ];
        for (const [log, batch] of bad) await expect(sink.append(log, batch), log).rejects.toBeInstanceOf(TypeError);
        await expect(sink.read('gw-0', -1, 10)).rejects.toBeInstanceOf(TypeError);
        await expect(sink.read('gw-0', 0, -1)).rejects.toBeInstanceOf(TypeError);
        await expect(sink.head('../etc')).rejects.toBeInstanceOf(TypeError);
        expect((await sink.head('gw-0')).size).toBe(0);
        expect(await sink.logs()).toEqual([]);
      });
    });

    describe('bytes', () => {
      it('stores bytes exactly: multibyte UTF-8, escaped control characters, any octet but line feed', async () => {
        const samples = [
          '{"user":"Grüße — 🔐 日本語 é"}', // precomposed and multibyte
          '{"user":"e\u0301"}', // combining accent
          String.raw`{"ctl":"\u0000\u0001\u001f\b\f\n\r\t","q":"\"\\/"}`, // JSON escapes, as text
          '{"emoji":"👩‍👩‍👧‍👦","rtl":"\u202Eabc"}',
          '\r{"cr":"\r"}\r',
        ];
        const batch: StoredRecord[] = samples.map((s, seq) => ({ seq, bytes: Buffer.from(s, 'utf8') }));
        batch.push({ seq: samples.length, bytes: Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x7b, 0x7d, 0xc3]) }); // not UTF-8
        await sink.append('gw-0', batch);
        const stored = await sink.read('gw-0', 0, 100);
        expect(stored.map((r) => r.bytes.toString('hex'))).toEqual(batch.map((r) => r.bytes.toString('hex')));
        const again = await harness.reopen();
        expect((await again.read('gw-0', 0, 100)).map((r) => r.bytes.toString('hex'))).toEqual(batch.map((r) => r.bytes.toString('hex')));
        expect((await again.head('gw-0')).last?.toString('hex')).toBe(batch.at(-1)?.bytes.toString('hex'));
        // The same bytes re-appended are recognised, whatever they hold.
        await again.append('gw-0', batch);
        expect((await again.head('gw-0')).size).toBe(batch.length);
      });
    });

    describe('large records', () => {
      it('stores and reads records far larger than a read buffer, from any starting point', async () => {
        const sizes = [150_000, 10, 70_000, 65_535, 65_536, 1, 200_000];
        const batch: StoredRecord[] = sizes.map((n, seq) => ({ seq, bytes: Buffer.from(`{"p":"${'é'.repeat(Math.ceil(n / 2))}","s":${seq}}`) }));
        await sink.append('gw-0', batch.slice(0, 3));
        await sink.append('gw-0', batch.slice(3));
        for (let from = 0; from < batch.length; from++) {
          const got = await sink.read('gw-0', from, 2);
          expect(got.map((r) => r.seq)).toEqual(batch.slice(from, from + 2).map((r) => r.seq));
          expect(got.every((r, i) => r.bytes.equals(batch[from + i]?.bytes ?? Buffer.alloc(0)))).toBe(true);
        }
        const head = await (await harness.reopen()).head('gw-0');
        expect(head.size).toBe(batch.length);
        expect(head.last?.equals(batch.at(-1)?.bytes ?? Buffer.alloc(0))).toBe(true);
      });
    });

    describe('logs', () => {
      it('keeps logs apart', async () => {
        await sink.append('gw-0', records(0, 20, 'a'));
        await sink.append('gw-1', records(0, 5, 'b'));
        await sink.appendCheckpoint('gw-1', 'only gw-1\n');
        expect((await sink.head('gw-0')).size).toBe(20);
        expect((await sink.head('gw-1')).size).toBe(5);
        expect((await sink.read('gw-1', 0, 100)).map(text)).toEqual(records(0, 5, 'b').map(text));
        expect((await sink.read('gw-0', 0, 100)).map(text)).toEqual(records(0, 20, 'a').map(text));
        expect(await sink.readCheckpoints('gw-0')).toEqual([]);
        expect(await sink.readCheckpoints('gw-1')).toEqual(['only gw-1\n']);
        await expect(sink.append('gw-1', [record(5, 'a'), record(6, 'a')])).resolves.toBeUndefined();
        await expect(sink.append('gw-0', [record(3, 'b')])).rejects.toBeInstanceOf(AuditSinkConflictError);
      });

      it('lists the logs present, sorted, including one that so far has only checkpoints', async () => {
        await sink.append('gw-2', records(0, 1));
        await sink.append('gw-0', records(0, 1));
        await sink.append('GW.10_x-y', records(0, 1));
        await sink.appendCheckpoint('gw-1', 'empty tree\n');
        expect(await sink.logs()).toEqual(['GW.10_x-y', 'gw-0', 'gw-1', 'gw-2']);
      });
    });

    describe('checkpoints', () => {
      it('round-trips checkpoints oldest first, whatever their text holds', async () => {
        const notes = [
          'portcullis.example/audit/gw-0\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— portcullis.example/audit Az3grlgt...\n',
          'portcullis.example/audit/gw-0\n12\nAbc=\ntime 2026-11-26T10:00:00Z\n\n— key1 sig1\n— key2 sig2\n',
          'Grüße 🔐\n\n\n\ntrailing blank lines\n\n',
          'checkpoint 3\nabc\n', // looks like the file sink's own entry header
          'no trailing newline',
          '',
          '\n',
          'x'.repeat(20_000),
        ];
        for (const note of notes) await sink.appendCheckpoint('gw-0', note);
        expect(await sink.readCheckpoints('gw-0')).toEqual(notes);
        expect(await (await harness.reopen()).readCheckpoints('gw-0')).toEqual(notes);
      });

      it('keeps concurrent checkpoint appends whole', async () => {
        const notes = Array.from({ length: 50 }, (_, i) => `note ${i}\n\n— sig ${i}\n`);
        await Promise.all(notes.map((n) => sink.appendCheckpoint('gw-0', n)));
        expect((await sink.readCheckpoints('gw-0')).sort()).toEqual([...notes].sort());
      });

      it('refuses text that UTF-8 cannot carry', async () => {
        await expect(sink.appendCheckpoint('gw-0', 'lone \ud800 surrogate')).rejects.toBeInstanceOf(TypeError);
      });
    });

    describe('close', () => {
      it('finishes appends in flight, then refuses calls and pings false', async () => {
        const inFlight = sink.append('gw-0', records(0, 50));
        await sink.close();
        await inFlight;
        await expect(sink.append('gw-0', records(50, 1))).rejects.toThrow(/closed/);
        await expect(sink.head('gw-0')).rejects.toThrow(/closed/);
        expect(await sink.ping()).toBe(false);
        await sink.close();
        expect((await (await harness.reopen()).head('gw-0')).size).toBe(50);
      });
    });
  });
}
