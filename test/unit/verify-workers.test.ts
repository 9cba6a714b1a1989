/**
 * verifyLog with its pages digested on worker threads gives exactly the report of the in-thread path
 * (same findings, in the same order, with the same fields), for intact and tampered logs, whatever
 * form the records come in (one by one, in pages, packed pages) and wherever the switch to the
 * workers happens. The workers run for real: under vitest the `.ts` worker entry is loaded through
 * tsx (src/audit/verify-pool.ts).
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalBytes, GENESIS_PREV, leafHash } from '../../src/audit/canonical.js';
import { checkpointHash, formatCheckpoint } from '../../src/audit/checkpoint.js';
import { CompactRange, rootOf } from '../../src/audit/merkle.js';
import { signerFromPrivateKey, signNote, verifierFromPublicKey } from '../../src/audit/signed-note.js';
import type { StoredRecord } from '../../src/audit/sink.js';
import { FINDING_CODES, verifyLog, type FindingCode, type LogMaterial, type LogReport, type RecordPage, type VerifyOptions } from '../../src/audit/verify.js';
import { packPage } from '../../src/audit/verify-digest.js';
import { startDigestPool, type PageDigester } from '../../src/audit/verify-pool.js';

const NAME = 'test.portcullis/audit';
const INSTANCE = 'gw-0';
const ORIGIN = `${NAME}/${INSTANCE}`;
const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const key = generateKeyPairSync('ed25519').privateKey;
const trusted = [verifierFromPublicKey(NAME, key)];

interface Body {
  id: string;
  route: string;
  ts: string;
}

function body(seq: number): Body {
  // Record 10's id needs escaping: chainFields gives up on it, so it takes the full-parse path.
  return { id: seq === 10 ? 'req-"10"' : `req-${seq}`, route: seq % 3 === 0 ? 'grafana' : 'app', ts: new Date(T0 + seq * 1000).toISOString() };
}

/** Chains bodies into stored records (seq and prev as the writer sets them). */
function chain(bodies: readonly Body[], from = 0, prevHex = GENESIS_PREV): StoredRecord[] {
  let prev = prevHex;
  return bodies.map((b, i) => {
    const bytes = canonicalBytes({ v: 1, kind: 'http', decision: 'allow', log: ORIGIN, ...b, seq: from + i, prev });
    prev = leafHash(bytes).toString('hex');
    return { seq: from + i, bytes };
  });
}

function seal(records: readonly StoredRecord[], sizes: readonly number[]): string[] {
  const leaves = records.map((r) => leafHash(r.bytes));
  let prevHash = GENESIS_PREV;
  return sizes.map((size, number) => {
    const note = signNote(formatCheckpoint({ origin: ORIGIN, size, root: rootOf(leaves.slice(0, size)), number, prevHash, time: new Date(T0 + number * 60_000).toISOString() }), [signerFromPrivateKey(NAME, key)]);
    prevHash = checkpointHash(note);
    return note;
  });
}

const N = 240;
const RECORDS = chain(Array.from({ length: N }, (_, seq) => body(seq)));
const SIZES = [37, 74, 111, 148, 185, 222, 240];
const NOTES = seal(RECORDS, SIZES);

const at = (seq: number): StoredRecord => RECORDS[seq] as StoredRecord;
/** Record `seq` with its route changed (the bytes are no longer what was sealed). */
function modified(seq: number): StoredRecord {
  const obj = JSON.parse(at(seq).bytes.toString('utf8')) as Record<string, unknown>;
  return { seq, bytes: canonicalBytes({ ...obj, route: 'evil' }) };
}
const without = (list: readonly StoredRecord[], ...seqs: number[]): StoredRecord[] => list.filter((r) => !seqs.includes(r.seq));

interface Case {
  name: string;
  records: StoredRecord[];
  checkpoints?: string[];
  start?: LogMaterial['start'];
  /** A tampered code the report must hold (the cases are not vacuous). */
  expect?: FindingCode;
}

function startAt(s: number): NonNullable<LogMaterial['start']> {
  const range = new CompactRange();
  for (const r of RECORDS.slice(0, s)) range.append(leafHash(r.bytes));
  return { seq: s, range: range.toJSON(), prev: leafHash(at(s - 1).bytes).toString('hex') };
}

const forged = chain([{ id: 'forged', route: 'app', ts: new Date(T0).toISOString() }], 120, leafHash(at(119).bytes).toString('hex'))[0] as StoredRecord;
const reserialized = (seq: number): StoredRecord => ({ seq, bytes: Buffer.from(JSON.stringify(JSON.parse(at(seq).bytes.toString('utf8')), null, 1)) });

const CASES: Case[] = ([
  { name: 'intact' },
  { name: 'a modified record', records: RECORDS.map((r) => (r.seq === 57 ? modified(57) : r)), expect: 'record-modified' },
  { name: 'a modified record taking the full-parse path', records: RECORDS.map((r) => (r.seq === 10 ? modified(10) : r)), expect: 'record-modified' },
  { name: 'a record re-serialized (not canonical, parsed fully)', records: RECORDS.map((r) => (r.seq === 90 ? reserialized(90) : r)), expect: 'record-modified' },
  { name: 'a deleted record', records: without(RECORDS, 80), expect: 'record-missing' },
  { name: 'deleted records at a page boundary', records: without(RECORDS, 34, 35, 36, 37, 38), expect: 'record-missing' },
  {
    name: 'two records swapped',
    records: RECORDS.map((r) => (r.seq === 100 ? at(101) : r.seq === 101 ? at(100) : r)),
    expect: 'record-out-of-order',
  },
  { name: 'a forged record inserted', records: [...RECORDS.slice(0, 120), forged, ...RECORDS.slice(120)], expect: 'record-inserted' },
  { name: 'a record stored twice', records: [...RECORDS.slice(0, 150), at(30), ...RECORDS.slice(150)], expect: 'record-duplicated' },
  { name: 'a record that is not JSON', records: RECORDS.map((r) => (r.seq === 60 ? { seq: 60, bytes: Buffer.from('{"seq":60,') } : r)), expect: 'record-malformed' },
  {
    name: 'a seq beyond the safe integers',
    records: RECORDS.map((r) => (r.seq === 61 ? { seq: 61, bytes: Buffer.from(r.bytes.toString('utf8').replace('"seq":61', '"seq":9999999999999999')) } : r)),
    expect: 'record-malformed',
  },
  { name: 'a truncated tail', records: RECORDS.slice(0, 200), expect: 'log-truncated' },
  { name: 'an unsealed tail', records: chain(Array.from({ length: N + 9 }, (_, seq) => body(seq))) },
  { name: 'the first record naming a predecessor', records: chain(Array.from({ length: 40 }, (_, seq) => body(seq)), 0, 'ab'.repeat(32)), checkpoints: [], expect: 'chain-broken' },
  { name: 'a partial log with a modified record', records: RECORDS.slice(50).map((r) => (r.seq === 70 ? modified(70) : r)), start: startAt(50), expect: 'record-modified' },
  { name: 'a partial log whose start prev is wrong', records: RECORDS.slice(50), start: { ...startAt(50), prev: 'cd'.repeat(32) }, expect: 'chain-broken' },
] satisfies (Omit<Case, 'records'> & { records?: StoredRecord[] })[]).map((c) => ({ records: RECORDS, ...c }));

function material(c: Case, records: LogMaterial['records']): LogMaterial {
  const notes = c.checkpoints ?? NOTES;
  return { instance: INSTANCE, origin: ORIGIN, records, checkpoints: notes, witness: notes, ...(c.start === undefined ? {} : { start: c.start }) };
}

function pagesOf(records: readonly StoredRecord[], size: number): StoredRecord[][] {
  const pages: StoredRecord[][] = [];
  for (let i = 0; i < records.length; i += size) pages.push(records.slice(i, i + size));
  return pages;
}

async function* slowly(records: readonly StoredRecord[]): AsyncGenerator<StoredRecord> {
  for (const r of records) yield await Promise.resolve(r);
}

// Shared pools (starting a worker through tsx takes a while); verifyLog starting its own is tested too.
let one: PageDigester;
let two: PageDigester;
beforeAll(() => {
  one = startDigestPool(1);
  two = startDigestPool(2);
});
afterAll(async () => {
  await one.close();
  await two.close();
});

/** The ways records reach verifyLog, and where they are digested. */
const VARIANTS: { name: string; records: (r: StoredRecord[]) => LogMaterial['records']; options: () => VerifyOptions }[] = [
  { name: 'one worker, records one by one', records: (r) => r, options: () => ({ pool: one, workersFrom: 0 }) },
  { name: 'two workers, pages of 7', records: (r) => ({ pages: pagesOf(r, 7) }), options: () => ({ pool: two, workersFrom: 0 }) },
  { name: 'two workers, packed pages of 5', records: (r) => ({ pages: pagesOf(r, 5).map((p): RecordPage => packPage(p)) }), options: () => ({ pool: two, workersFrom: 0 }) },
  { name: 'in-thread first, then one worker, async pages of 10', records: (r) => ({ pages: slowPages(pagesOf(r, 10)) }), options: () => ({ pool: one, workersFrom: 45 }) },
  { name: 'one worker, an async generator of records', records: (r) => slowly(r), options: () => ({ pool: one, workersFrom: 0 }) },
];

async function* slowPages(pages: readonly RecordPage[]): AsyncGenerator<RecordPage> {
  for (const p of pages) yield await Promise.resolve(p);
}

const tampered = (r: LogReport) => r.findings.filter((f) => FINDING_CODES[f.code] === 'tampered');

describe('verifyLog on worker threads', () => {
  it.each(CASES)('$name: the same report as in-thread', async (c) => {
    const reference = await verifyLog(material(c, c.records), trusted, undefined, { workers: 0 });
    if (c.expect === undefined) expect(tampered(reference)).toEqual([]);
    else expect(tampered(reference).map((f) => f.code)).toContain(c.expect);
    for (const v of VARIANTS) {
      const report = await verifyLog(material(c, v.records(c.records)), trusted, undefined, v.options());
      expect(report, v.name).toEqual(reference);
    }
  });

  it('starts and stops its own workers; names the record with the id that needs the full parse', async () => {
    const c = CASES.find((x) => x.name === 'a modified record taking the full-parse path') as Case;
    const reference = await verifyLog(material(c, c.records), trusted, undefined, { workers: 0 });
    const report = await verifyLog(material(c, { pages: pagesOf(c.records, 4) }), trusted, undefined, { workers: 2, workersFrom: 0 });
    expect(report).toEqual(reference);
    expect(tampered(report)).toContainEqual(expect.objectContaining({ code: 'record-modified', seq: 10, id: 'req-"10"' }));
  });

  it('caps the findings of one code the same way', async () => {
    // 2,600 records of which every other one is not JSON: 1,300 record-malformed findings, 1,000 listed.
    const many = chain(Array.from({ length: 2600 }, (_, seq) => body(seq))).map((r) => (r.seq % 2 === 1 ? { seq: r.seq, bytes: Buffer.from(`not json ${r.seq}`) } : r));
    const c: Case = { name: 'many', records: many, checkpoints: [] };
    const reference = await verifyLog(material(c, many), trusted, undefined, { workers: 0 });
    expect(reference.findings.map((f) => f.message)).toContain('300 more record-malformed findings not listed');
    const report = await verifyLog(material(c, { pages: pagesOf(many, 97) }), trusted, undefined, { pool: two, workersFrom: 0 });
    expect(report).toEqual(reference);
  });

  it('reports progress the same way', async () => {
    // Progress counts records read, whatever they hold.
    const big = Array.from({ length: 100_001 }, (_, seq): StoredRecord => ({ seq, bytes: Buffer.from(`{"seq":${seq}}`) }));
    const seen: number[] = [];
    const report = await verifyLog(material({ name: 'big', records: big, checkpoints: [] }, { pages: pagesOf(big, 4096) }), trusted, (n) => seen.push(n), { pool: one, workersFrom: 0 });
    expect(seen).toEqual([100_000]);
    expect(report.records).toBe(100_001);
  });

  it('refuses invalid options', async () => {
    await expect(verifyLog(material(CASES[0] as Case, RECORDS), trusted, undefined, { workers: -1 })).rejects.toThrow(RangeError);
    await expect(verifyLog(material(CASES[0] as Case, RECORDS), trusted, undefined, { workers: 1, workersFrom: 0.5 })).rejects.toThrow(RangeError);
  });
});
