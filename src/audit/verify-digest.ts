/**
 * The per-record work of audit verification that needs no state from the records before it (pure):
 * the RFC 9162 leaf hash of the stored bytes and the record's `seq` and `prev`. The verifier packs a
 * page of records into one buffer ({@link packPage}), digests it ({@link digestPage}) on a worker thread
 * (verify-worker.ts) or in-thread, and checks the chain and builds the tree from the digest, in order.
 *
 * A packed page is transferable: `bytes` holds each record's stored bytes preceded by one 0x00 byte
 * (the leaf hash prefix, so the hash input is a plain slice); `offsets[i]` is where record i's 0x00
 * byte is and `offsets[n]` the end. A digest is one ArrayBuffer (see {@link digestView}), 73 bytes per
 * record.
 */
import { hash } from 'node:crypto';
import type { StoredRecord } from './sink.js';

/** Records packed for digesting. */
export interface PackedPage {
  readonly bytes: Uint8Array;
  /** n + 1 offsets into `bytes`: record i is the 0x00 byte at offsets[i], then its bytes up to offsets[i + 1]. */
  readonly offsets: Uint32Array;
}

/** A page of stored records as one buffer ({@link PackedPage}) with each record's position (its `seq` in the sink). */
export interface PackedRecords extends PackedPage {
  readonly positions: Float64Array;
}

/**
 * A sink that can read a page of records packed (the file sink: its lines are the records, so a page
 * is read straight into one buffer, no object or copy per record). Same records, in the same order,
 * with the same positions, as `AuditSink.read(log, fromSeq, limit)` returns.
 */
export interface PackedReader {
  readPacked(log: string, fromSeq: number, limit: number): Promise<PackedRecords>;
}

/** Whether `sink` can read packed pages. */
export function isPackedReader(sink: object): sink is PackedReader {
  return typeof (sink as Partial<PackedReader>).readPacked === 'function';
}

/** The bytes of record i of a packed page (a view, no copy). */
export function recordBytes(page: PackedPage, i: number): Buffer {
  const start = (page.offsets[i] ?? 0) + 1;
  const end = page.offsets[i + 1] ?? start;
  return Buffer.from(page.bytes.buffer, page.bytes.byteOffset + start, Math.max(0, end - start));
}

/** A digest, as views into its buffer. */
export interface DigestView {
  readonly count: number;
  /** Record i's `seq`, when kinds[i] is {@link FAST}. */
  readonly seqs: Float64Array;
  /** Record i's leaf hash at 32·i. */
  readonly hashes: Uint8Array;
  /** Record i's `prev` (the hex decoded) at 32·i, when kinds[i] is {@link FAST}. */
  readonly prevs: Uint8Array;
  readonly kinds: Uint8Array;
}

/** kinds[i]: seq and prev were read from the canonical record (see {@link chainFields}). */
export const FAST = 1;
/** kinds[i]: the record needs a full parse (malformed, or unusual: see {@link chainFields}). */
export const PARSE = 0;

/** Bytes of a digest of `count` records. */
export function digestBytes(count: number): number {
  return 73 * count;
}

/** The views of a digest of `count` records. @throws RangeError when the buffer has another size. */
export function digestView(buffer: ArrayBuffer, count: number): DigestView {
  if (buffer.byteLength !== digestBytes(count)) throw new RangeError(`a digest of ${count} records is ${digestBytes(count)} bytes, got ${buffer.byteLength}`);
  return {
    count,
    seqs: new Float64Array(buffer, 0, count),
    hashes: new Uint8Array(buffer, 8 * count, 32 * count),
    prevs: new Uint8Array(buffer, 40 * count, 32 * count),
    kinds: new Uint8Array(buffer, 72 * count, count),
  };
}

/** Packs records (in order) into one fresh, transferable buffer. */
export function packPage(records: readonly StoredRecord[]): PackedRecords {
  let total = records.length;
  for (const r of records) total += r.bytes.length;
  const bytes = Buffer.allocUnsafeSlow(total); // its own ArrayBuffer: transferable
  const offsets = new Uint32Array(records.length + 1);
  const positions = new Float64Array(records.length);
  let pos = 0;
  for (let i = 0; i < records.length; i++) {
    const rec = records[i] as StoredRecord;
    offsets[i] = pos;
    positions[i] = rec.seq;
    bytes[pos] = 0;
    rec.bytes.copy(bytes, pos + 1);
    pos += 1 + rec.bytes.length;
  }
  offsets[records.length] = pos;
  return { bytes, offsets, positions };
}

/**
 * Leaf hashes, and `seq`/`prev` where {@link chainFields} reads them, of a packed page. Pure; any
 * record bytes are fine (what cannot be read fast is marked {@link PARSE}).
 * @throws RangeError when the page is not packed as described (a record not behind a 0x00 byte).
 */
export function digestPage(page: PackedPage): ArrayBuffer {
  const count = page.offsets.length - 1;
  const out = new ArrayBuffer(digestBytes(count));
  const view = digestView(out, count);
  const bytes = Buffer.from(page.bytes.buffer, page.bytes.byteOffset, page.bytes.byteLength);
  const hashes = Buffer.from(out, 8 * count, 32 * count);
  for (let i = 0; i < count; i++) {
    const start = page.offsets[i] ?? 0;
    const end = page.offsets[i + 1] ?? start;
    if (end <= start || end > bytes.length || bytes[start] !== 0) throw new RangeError(`packed page: record ${i} is not behind a 0x00 byte`);
    // RFC 9162 leaf hash SHA-256(0x00 ‖ bytes): the 0x00 is the byte before the record. (A latin1
    // string result is much cheaper than a Buffer; it is the 32 bytes, one character each.)
    hashes.write(hash('sha256', bytes.subarray(start, end), 'binary'), 32 * i, 32, 'latin1');
    const seq = chainFieldsAt(bytes, start + 1, end, view.prevs, 32 * i);
    if (seq >= 0) {
      view.kinds[i] = FAST;
      view.seqs[i] = seq;
    }
  }
  return out;
}

const HEX64 = /^[0-9a-f]{64}$/;
const SEQ_PREFIX = /^(0|[1-9][0-9]{0,15})[,}]/;
const PLAIN_ID = /^[^"\\]*$/;

const QUOTE = 0x22;
const COLON = 0x3a;
const HEX_VALUE = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX_VALUE[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX_VALUE[0x61 + c] = 10 + c;

/**
 * Horspool shifts for the keys `"prev":"`, `"seq":` and `"id":"` over a 6-byte window: by the
 * window's last byte, how far the window may move without passing a key start (6 for a byte in no
 * key's first 5 bytes; else 5 minus its last index there, over all three keys).
 */
const KEY_SHIFT = (() => {
  const shift = new Uint8Array(256).fill(6);
  for (const key of ['"prev"', '"seq":', '"id":"']) {
    for (let j = 0; j < 5; j++) {
      const c = key.charCodeAt(j);
      shift[c] = Math.min(shift[c] ?? 6, 5 - j);
    }
  }
  return shift;
})();

const isDigit = (c: number | undefined): boolean => c !== undefined && c >= 0x30 && c <= 0x39;

/**
 * {@link chainFields} on the record's UTF-8 bytes `b[start, end)` without decoding them: the same
 * answer (the keys and values it looks at are ASCII, and UTF-8 — even invalid UTF-8 decoded with
 * replacement characters — maps ASCII characters one to one onto ASCII bytes), but only `seq` and
 * `prev`. Returns the `seq`, with `prev` decoded into `prevOut` at `prevAt`, or -1 where
 * chainFields returns undefined.
 */
export function chainFieldsAt(b: Uint8Array, start: number, end: number, prevOut: Uint8Array, prevAt: number): number {
  if (end <= start || b[start] !== 0x7b || b[end - 1] !== 0x7d) return -1;
  // First occurrence of each key, and whether another one starts past its end (uniqueKey). A
  // Horspool search for the three keys at once: the window is 6 bytes (the shortest key); its last
  // byte says how far the next possible key start is.
  let p = -1;
  let q = -1;
  let i = -1;
  let pAgain = false;
  let qAgain = false;
  let iAgain = false;
  for (let k = start; k + 6 <= end; k += KEY_SHIFT[b[k + 5] ?? 0] ?? 6) {
    if (b[k] !== QUOTE) continue;
    const c = b[k + 1];
    if (c === 0x70) {
      // "prev":"
      if (k + 8 <= end && b[k + 2] === 0x72 && b[k + 3] === 0x65 && b[k + 4] === 0x76 && b[k + 5] === QUOTE && b[k + 6] === COLON && b[k + 7] === QUOTE) {
        if (p === -1) p = k;
        else if (k >= p + 8) pAgain = true;
      }
    } else if (c === 0x73) {
      // "seq":
      if (b[k + 2] === 0x65 && b[k + 3] === 0x71 && b[k + 4] === QUOTE && b[k + 5] === COLON) {
        if (q === -1) q = k;
        else if (k >= q + 6) qAgain = true;
      }
    } else if (c === 0x69) {
      // "id":"
      if (b[k + 2] === 0x64 && b[k + 3] === QUOTE && b[k + 4] === COLON && b[k + 5] === QUOTE) {
        if (i === -1) i = k;
        else if (k >= i + 6) iAgain = true;
      }
    }
  }
  if (p === -1 || pAgain || q === -1 || qAgain) return -1;
  // prev: 64 lower-case hex digits, then a quote.
  if (p + 72 >= end || b[p + 72] !== QUOTE) return -1;
  for (let j = 0; j < 32; j++) {
    const hi = HEX_VALUE[b[p + 8 + 2 * j] ?? 0] ?? -1;
    const lo = HEX_VALUE[b[p + 9 + 2 * j] ?? 0] ?? -1;
    if (hi < 0 || lo < 0) return -1;
    prevOut[prevAt + j] = (hi << 4) | lo;
  }
  // seq: 0, or 1–16 digits without a leading zero, then `,` or `}`.
  const from = q + 6;
  let to = from;
  if (b[from] === 0x30) to = from + 1;
  else if (isDigit(b[from])) while (to < end && to - from < 16 && isDigit(b[to])) to++;
  if (to === from || to >= end || (b[to] !== 0x2c && b[to] !== 0x7d)) return -1;
  // id: when it is there (once), up to the next quote without a backslash.
  if (i !== -1 && !iAgain) {
    let k = i + 6;
    while (k < end && b[k] !== QUOTE && b[k] !== 0x5c) k++;
    if (k >= end || b[k] !== QUOTE) return -1;
  }
  if (to - from <= 15) {
    let seq = 0;
    for (let k = from; k < to; k++) seq = seq * 10 + ((b[k] ?? 0) - 0x30);
    return seq;
  }
  return Number(Buffer.from(b.buffer, b.byteOffset + from, to - from).toString('latin1'));
}

/** The only occurrence of `key` in `text`, or -1 when absent or repeated. */
function uniqueKey(text: string, key: string): number {
  const at = text.indexOf(key);
  return at === -1 || text.indexOf(key, at + key.length) !== -1 ? -1 : at;
}

/**
 * `seq`, `prev` and `id` of a canonical record without parsing all of it (most of verification's
 * time would otherwise go into JSON.parse). An unescaped `"key":` can only be a key in JSON, so a
 * single occurrence is unambiguous for records the gateway writes; anything unusual returns
 * undefined and the caller parses the record fully. Integrity never rests on this: every record's
 * bytes are hashed into the tree that signed checkpoints pin. `prev`, when returned, is 64 lowercase
 * hex digits.
 */
export function chainFields(text: string): { seq: number; prev: string; id: string | undefined } | undefined {
  if (!text.startsWith('{') || !text.endsWith('}')) return undefined;
  const p = uniqueKey(text, '"prev":"');
  const q = uniqueKey(text, '"seq":');
  if (p === -1 || q === -1) return undefined;
  const prev = text.slice(p + 8, p + 72);
  if (text[p + 72] !== '"' || !HEX64.test(prev)) return undefined;
  const m = SEQ_PREFIX.exec(text.slice(q + 6, q + 24));
  if (m?.[1] === undefined) return undefined;
  const i = uniqueKey(text, '"id":"');
  let id: string | undefined;
  if (i !== -1) {
    const end = text.indexOf('"', i + 6);
    const raw = text.slice(i + 6, end);
    if (end === -1 || !PLAIN_ID.test(raw)) return undefined;
    id = raw;
  }
  return { seq: Number(m[1]), prev, id };
}
