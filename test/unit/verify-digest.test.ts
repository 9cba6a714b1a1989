/**
 * The verifier's per-page digest (src/audit/verify-digest.ts), in-thread and on worker threads: leaf
 * hashes equal to `leafHash`, and `chainFieldsAt` (on bytes) giving exactly what `chainFields` (on the
 * decoded text) gives, for canonical records and for records mangled around the keys it looks for
 * (repeated keys, bad hex, long seqs, non-ASCII and invalid UTF-8 bytes, truncation).
 */
import { describe, expect, it } from 'vitest';
import { canonicalBytes, GENESIS_PREV, leafHash } from '../../src/audit/canonical.js';
import type { StoredRecord } from '../../src/audit/sink.js';
import { chainFields, chainFieldsAt, digestPage, digestView, FAST, packPage, PARSE, recordBytes } from '../../src/audit/verify-digest.js';
import { inThreadDigester, startDigestPool } from '../../src/audit/verify-pool.js';

/** A deterministic pseudo-random generator (tests must not depend on the run). */
function prng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s % n;
  };
}

const HEX = '0123456789abcdef';

function canonicalRecord(rnd: (n: number) => number): Buffer {
  const prev = Array.from({ length: 64 }, () => HEX[rnd(16)]).join('');
  const seq = rnd(4) === 0 ? 0 : rnd(1_000_000_000);
  return canonicalBytes({ v: 1, id: `req-${rnd(1000)}`, ts: '2026-11-26T10:00:00.000Z', kind: 'http', route: 'app', identity: { user: 'alice', groups: ['eng'] }, seq, prev });
}

const PIECES = ['"prev":"', '"seq":', '"id":"', '"', '\\', '{', '}', ',', ':', '0', '1', '9', 'a', 'f', 'g', 'A', 'é', '😀', ' ', 'x'];
const RAW = [0x80, 0xc0, 0xe2, 0xf0, 0x9f, 0xbf, 0xff, 0x22, 0x5c, 0x00, 0x0a];

/** `base` with 1–3 edits, mostly next to the keys and the ends. */
function mangle(base: Buffer, rnd: (n: number) => number): Buffer {
  let b = base;
  const edits = 1 + rnd(3);
  for (let e = 0; e < edits; e++) {
    const anchors = [0, b.length, b.indexOf('"prev"'), b.indexOf('"seq"'), b.indexOf('"id"'), b.indexOf('"prev"') + 72, b.indexOf('"seq"') + 6].filter((x) => x >= 0);
    const pos = rnd(3) === 0 ? rnd(b.length + 1) : Math.max(0, Math.min(b.length, (anchors[rnd(anchors.length)] ?? 0) + rnd(21) - 10));
    const kind = rnd(5);
    if (kind === 0) {
      const del = 1 + rnd(8);
      b = Buffer.concat([b.subarray(0, pos), b.subarray(Math.min(b.length, pos + del))]);
      continue;
    }
    let insert: Buffer;
    if (kind === 1) insert = Buffer.from([RAW[rnd(RAW.length)] ?? 0]);
    else if (kind === 2) insert = b.subarray(Math.max(0, pos - 20), Math.max(0, pos - 20) + rnd(40));
    else if (kind === 3) insert = Buffer.from(String(rnd(10)).repeat(1 + rnd(18)));
    else insert = Buffer.from(PIECES[rnd(PIECES.length)] ?? '');
    b = Buffer.concat([b.subarray(0, pos), insert, b.subarray(pos)]);
  }
  return b;
}

/** What chainFieldsAt must answer for `bytes`: chainFields on the decoded text. */
function expected(bytes: Buffer): { seq: number; prev: string } | undefined {
  const f = chainFields(bytes.toString('utf8'));
  return f === undefined ? undefined : { seq: f.seq, prev: f.prev };
}

/** chainFieldsAt on `bytes` placed inside a larger buffer (bytes around it must not count). */
function actual(bytes: Buffer): { seq: number; prev: string } | undefined {
  const around = Buffer.concat([Buffer.from('{"prev":"'), bytes, Buffer.from(`","seq":7,"id":"x","prev":"${GENESIS_PREV}"}`)]);
  const prev = new Uint8Array(40).fill(0xee);
  const seq = chainFieldsAt(around, 9, 9 + bytes.length, prev, 8);
  return seq === -1 ? undefined : { seq, prev: Buffer.from(prev.subarray(8, 40)).toString('hex') };
}

describe('chainFieldsAt', () => {
  it('reads seq and prev of canonical records as chainFields does', () => {
    const rnd = prng(1);
    for (let t = 0; t < 2000; t++) {
      const rec = canonicalRecord(rnd);
      const want = expected(rec);
      expect(want).toBeDefined();
      expect(actual(rec)).toEqual(want);
    }
  });

  it('gives exactly the answer of chainFields on mangled records', () => {
    const rnd = prng(2);
    let fast = 0;
    for (let t = 0; t < 40_000; t++) {
      const rec = mangle(canonicalRecord(rnd), rnd);
      const want = expected(rec);
      if (want !== undefined) fast += 1;
      const got = actual(rec);
      if (got?.seq !== want?.seq || got?.prev !== want?.prev) expect({ record: rec.toString('latin1'), got }).toEqual({ record: rec.toString('latin1'), got: want });
    }
    // Both kinds of answer were exercised.
    expect(fast).toBeGreaterThan(2000);
    expect(fast).toBeLessThan(38_000);
  });

  it('handles the edge cases chainFields defines', () => {
    const p = GENESIS_PREV.replace(/^0/, 'a');
    const cases = [
      `{"prev":"${p}","seq":0}`,
      `{"prev":"${p}","seq":01}`,
      `{"prev":"${p}","seq":1234567890123456}`,
      `{"prev":"${p}","seq":12345678901234567}`,
      `{"prev":"${p}","seq":9999999999999999}`,
      `{"prev":"${p}","seq":9007199254740993}`,
      `{"prev":"${p}","seq":-1}`,
      `{"prev":"${p}","seq":1.5}`,
      `{"prev":"${p.toUpperCase()}","seq":1}`,
      `{"prev":"${p}x","seq":1}`,
      `{"prev":"${p.slice(1)}","seq":1}`,
      `{"prev":"${p}","seq":1,"x":{"seq":2}}`,
      `{"prev":"${p}","seq":1,"x":"\\"seq\\":2"}`,
      `{"prev":"${p}","seq":1,"prev":"${p}"}`,
      `{"prev":"prev":"${p}","seq":1}`,
      `{"id":"a\\"b","prev":"${p}","seq":1}`,
      `{"id":"a\\\\b","prev":"${p}","seq":1}`,
      `{"id":"é😀","prev":"${p}","seq":1}`,
      `{"id":"a","id":"b","prev":"${p}","seq":1}`,
      `{"id":"id":"x","prev":"${p}","seq":1}`,
      `{"id":"unterminated,"prev":"${p}","seq":1}`,
      `{"id":7,"prev":"${p}","seq":1}`,
      `{"prev":"${p}","seq":1,"id":"`,
      `{"prev":"${p}","seq":1`,
      `["prev":"${p}","seq":1}`,
      `{"prev":"${p}","seq":1}\n`,
      '{}',
      '{',
      '}',
      '',
    ];
    for (const text of cases) expect(actual(Buffer.from(text)), text).toEqual(expected(Buffer.from(text)));
    // Invalid UTF-8 next to the keys: ASCII bytes still map one to one.
    const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xe2, 0x82]), Buffer.from(`","prev":"${p}","seq":5,"id":"`), Buffer.from([0xf0, 0x9f]), Buffer.from('x"}')]);
    expect(actual(bad)).toEqual({ seq: 5, prev: p });
    expect(actual(bad)).toEqual(expected(bad));
  });
});

function records(n: number, rnd: (k: number) => number): StoredRecord[] {
  return Array.from({ length: n }, (_, i) => ({ seq: 1000 + i, bytes: i % 7 === 3 ? mangle(canonicalRecord(rnd), rnd) : canonicalRecord(rnd) }));
}

/** The digest of `recs`, checked record by record against leafHash and chainFields. */
function expectDigest(recs: readonly StoredRecord[], digest: ArrayBuffer): void {
  const d = digestView(digest, recs.length);
  recs.forEach((r, i) => {
    expect(Buffer.from(d.hashes.subarray(32 * i, 32 * i + 32)).equals(leafHash(r.bytes))).toBe(true);
    const want = expected(r.bytes);
    expect(d.kinds[i]).toBe(want === undefined ? PARSE : FAST);
    if (want !== undefined) {
      expect(d.seqs[i]).toBe(want.seq);
      expect(Buffer.from(d.prevs.subarray(32 * i, 32 * i + 32)).toString('hex')).toBe(want.prev);
    }
  });
}

describe('packPage / digestPage', () => {
  it('packs records behind 0x00 bytes, with their positions', () => {
    const recs = records(50, prng(3));
    const page = packPage(recs);
    expect(page.bytes.buffer.byteLength).toBe(page.bytes.byteLength);
    expect(Array.from(page.positions)).toEqual(recs.map((r) => r.seq));
    recs.forEach((r, i) => {
      expect(page.bytes[page.offsets[i] ?? -1]).toBe(0);
      expect(recordBytes(page, i).equals(r.bytes)).toBe(true);
    });
    expect(page.offsets.at(-1)).toBe(page.bytes.length);
    expect(packPage([]).positions.length).toBe(0);
  });

  it('digests leaf hashes, seq and prev', () => {
    const recs = records(300, prng(4));
    expectDigest(recs, digestPage(packPage(recs)));
    expect(digestView(digestPage(packPage([])), 0).count).toBe(0);
    expect(() => digestView(new ArrayBuffer(10), 1)).toThrow(RangeError);
    const page = packPage(recs.slice(0, 3));
    page.bytes[page.offsets[1] ?? 0] = 0x0a;
    expect(() => digestPage(page)).toThrow(RangeError);
    expect(() => digestPage({ bytes: new Uint8Array(4), offsets: Uint32Array.of(0, 3, 2) })).toThrow(RangeError);
  });
});

describe('the digest pool (worker threads)', () => {
  it('digests pages exactly as in-thread, in order, and hands the pages back', async () => {
    const pool = startDigestPool(2);
    try {
      const rnd = prng(5);
      const pages = Array.from({ length: 9 }, (_, k) => records(k === 4 ? 0 : 1 + rnd(120), rnd));
      const done = await Promise.all(pages.map((recs) => pool.digest(packPage(recs))));
      done.forEach((result, k) => {
        const recs = pages[k] ?? [];
        expectDigest(recs, result.digest);
        recs.forEach((r, i) => {
          expect(recordBytes(result.page, i).equals(r.bytes)).toBe(true);
        });
      });
      // The same bytes in-thread.
      const inThread = await inThreadDigester.digest(packPage(pages[0] ?? []));
      expect(Buffer.from(inThread.digest).equals(Buffer.from(done[0]?.digest ?? new ArrayBuffer(0)))).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('digests a page whose bytes are a view into a larger buffer (copied, not transferred)', async () => {
    const pool = startDigestPool(1);
    try {
      const recs = records(20, prng(6));
      const page = packPage(recs);
      const larger = Buffer.alloc(page.bytes.length + 16);
      larger.set(page.bytes, 8);
      const view = { bytes: larger.subarray(8, 8 + page.bytes.length), offsets: page.offsets };
      const result = await pool.digest(view);
      expectDigest(recs, result.digest);
      expect(larger.buffer.byteLength).toBeGreaterThan(0); // not detached
    } finally {
      await pool.close();
    }
  });

  it('rejects once its workers are stopped', async () => {
    const pool = startDigestPool(1);
    await pool.close();
    await expect(pool.digest(packPage(records(3, prng(7))))).rejects.toThrow(/verify worker/);
    expect(() => startDigestPool(0)).toThrow(RangeError);
  });
});
