/**
 * The audit verifier (pure apart from reading its inputs): recomputes a log's tree from its records,
 * checks every checkpoint's signature, number, chain and root, the records' `seq`/`prev` chain, and
 * that the sink's newest checkpoint is not behind the witness copy. It runs every check and reports
 * each problem as a finding with a stable code, never stopping at the first.
 *
 * Records are streamed once, in stored order; memory stays bounded (the tree is a compact range, and
 * earlier records are remembered only as 4-byte hash prefixes for the last 2^20 seqs, to tell a
 * duplicate from a different record under the same seq). They come page by page; in a large log each
 * page's leaf hashes and `seq`/`prev` fields are computed on a worker thread (verify-digest.ts,
 * verify-pool.ts) while the next page is read and the one before is checked here, in stored order —
 * so the findings are the same wherever a page was digested.
 *
 * Trust in checkpoints: a checkpoint counts when a trusted key signed it, when a checkpoint signed by
 * a trusted key announced (`key <vkey>`) the key that signed it (a rotation learned forwards), or when
 * a counted checkpoint's `prev` hash chain leads back to it (older checkpoints of a rotated-away key,
 * authenticated by the hash chain a trusted signature covers).
 */
import { availableParallelism } from 'node:os';
import { GENESIS_PREV } from './canonical.js';
import { checkpointHash, parseCheckpoint, type Checkpoint } from './checkpoint.js';
import { CompactRange, type CompactRangeJSON } from './merkle.js';
import { openNote, verifierFromVkey, type NoteVerifier } from './signed-note.js';
import type { StoredRecord } from './sink.js';
import { chainFields, digestView, FAST, packPage, recordBytes, type DigestView, type PackedPage, type PackedRecords } from './verify-digest.js';
import { inThreadDigester, startDigestPool, type Digested, type PageDigester } from './verify-pool.js';
import { LeafTree } from './verify-tree.js';

export type { PageDigester } from './verify-pool.js';

/** Stable finding codes (printed, documented, asserted by tests). */
export const FINDING_CODES = {
  'record-modified': 'tampered',
  'record-missing': 'tampered',
  'record-inserted': 'tampered',
  'record-duplicated': 'tampered',
  'record-out-of-order': 'tampered',
  'record-malformed': 'tampered',
  'chain-broken': 'tampered',
  'root-mismatch': 'tampered',
  'log-truncated': 'tampered',
  'checkpoint-missing': 'tampered',
  'checkpoint-forged': 'tampered',
  'checkpoint-unsigned': 'tampered',
  'checkpoint-unknown-key': 'tampered',
  'checkpoint-rolled-back': 'tampered',
  'checkpoint-malformed': 'tampered',
  'unsealed-tail': 'notice',
} as const;

/** A finding code. */
export type FindingCode = keyof typeof FINDING_CODES;

/** One problem found. */
export interface Finding {
  readonly code: FindingCode;
  readonly severity: 'tampered' | 'notice';
  readonly log: string;
  readonly seq?: number;
  readonly id?: string;
  readonly checkpoint?: number;
  readonly expected?: string;
  readonly actual?: string;
  readonly message: string;
}

/** What one log's verification read and found. */
export interface LogReport {
  readonly log: string;
  /** The seq of the first record expected (0, or the start of a partial export). */
  readonly firstSeq: number;
  /** Records read. */
  readonly records: number;
  /** Records read whose seq is covered by the newest valid checkpoint. */
  readonly sealedRecords: number;
  readonly checkpoints: number;
  readonly validCheckpoints: number;
  readonly findings: Finding[];
}

/**
 * Where a partial log (an export from `--since`) resumes: the tree state over records 0…seq-1 and
 * the leaf hash of record seq-1. Neither is trusted: the roots of the checkpoints sealing later
 * sizes cover them, and a wrong `prev` shows as a broken chain.
 */
export interface StartState {
  /** The seq of the first record present. */
  readonly seq: number;
  /** The compact range of leaves 0…seq-1 (its size must be `seq`). */
  readonly range: CompactRange | CompactRangeJSON;
  /** Hex leaf hash of record seq-1, which record `seq` must name as `prev`. */
  readonly prev: string;
}

/** A page of records: as a sink reads them, or packed (see verify-digest.ts). */
export type RecordPage = readonly StoredRecord[] | PackedRecords;

/** Records page by page, in stored order. Packed pages are consumed: their buffers may move to a worker thread. */
export interface RecordPages {
  readonly pages: AsyncIterable<RecordPage> | Iterable<RecordPage>;
}

/** One log's material. */
export interface LogMaterial {
  readonly instance: string;
  /** The log's origin (`<seal.origin>/<instance>`); taken from its first checkpoint when undefined. */
  readonly origin?: string;
  /** Records in stored order (from `start.seq` when `start` is given), one by one or page by page. */
  readonly records: AsyncIterable<StoredRecord> | Iterable<StoredRecord> | RecordPages;
  /** Signed checkpoint notes from the sink, oldest first. */
  readonly checkpoints: readonly string[];
  /** Signed checkpoint notes from `witness_dir`, oldest first (may be empty). */
  readonly witness: readonly string[];
  /**
   * Resume from this state instead of the empty tree. Checkpoints sealing fewer than `start.seq`
   * records are checked for signature and chain only.
   */
  readonly start?: StartState;
}

/** How {@link verifyLog} spreads its work; the findings never depend on it. */
export interface VerifyOptions {
  /**
   * Worker threads that hash and read the records of a page while this thread checks the chain and
   * builds the tree; 0 = everything in this thread. Default: one fewer than the available cores, at
   * most 4.
   */
  readonly workers?: number;
  /** The workers start once more than this many records were read (small logs stay in-thread). Default 20,000. */
  readonly workersFrom?: number;
  /** Worker threads to use instead of starting `workers` own ones (for several logs in a row); left running. */
  readonly pool?: PageDigester;
}

interface GoodCheckpoint {
  readonly cp: Checkpoint;
  readonly note: string;
}

/** More findings of one code in one log than this are counted, not listed. */
const MAX_FINDINGS_PER_CODE = 1000;
/** How many recent seqs keep a hash prefix (duplicate vs different record under a seq). */
const WINDOW = 1 << 20;
const HEX64 = /^[0-9a-f]{64}$/;
/** Default {@link VerifyOptions.workersFrom}: below this a worker costs more to start than it saves. */
const WORKERS_FROM = 20_000;
/** Records and bytes of one digested page at most (a larger page from the source is split). */
const PAGE_RECORDS = 4096;
const PAGE_BYTES = 16 * 1024 * 1024;

function defaultWorkers(): number {
  return Math.min(4, Math.max(0, availableParallelism() - 1));
}

const ignore = (): void => undefined;

/** Lower-case hex of the 32 bytes at `at`. */
function hexAt(bytes: Uint8Array, at: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + at, 32).toString('hex');
}

function equal32(a: Uint8Array, aAt: number, b: Uint8Array, bAt: number): boolean {
  for (let k = 0; k < 32; k++) if (a[aAt + k] !== b[bAt + k]) return false;
  return true;
}

/** The fields of a record the verifier reads. */
type RecordFields = { seq?: unknown; prev?: unknown; id?: unknown };

/** `seq`, `prev` and `id` of a record: fast for a canonical record, else by JSON.parse; undefined when it is not a JSON object. */
function readFields(bytes: Buffer): RecordFields | undefined {
  const text = bytes.toString('utf8');
  const fast = chainFields(text);
  if (fast !== undefined) return fast;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value;
  } catch {
    // not JSON
  }
  return undefined;
}

/** The record's `id` when it is a string (for findings). */
function recordId(bytes: Buffer): string | undefined {
  const id = readFields(bytes)?.id;
  return typeof id === 'string' ? id : undefined;
}

function isPages(records: LogMaterial['records']): records is RecordPages {
  return 'pages' in records;
}

function isPacked(page: RecordPage): page is PackedRecords {
  return 'positions' in page;
}

/** The records as pages, whatever form they come in. */
async function* pagesOf(records: LogMaterial['records']): AsyncGenerator<RecordPage> {
  if (isPages(records)) {
    yield* records.pages;
    return;
  }
  let page: StoredRecord[] = [];
  if (Symbol.iterator in records) {
    for (const rec of records) {
      page.push(rec);
      if (page.length >= PAGE_RECORDS) {
        yield page;
        page = [];
      }
    }
  } else {
    for await (const rec of records) {
      page.push(rec);
      if (page.length >= PAGE_RECORDS) {
        yield page;
        page = [];
      }
    }
  }
  if (page.length > 0) yield page;
}

/** A page split so that no part exceeds PAGE_RECORDS records or (but for a single record) PAGE_BYTES. */
function chunks(page: readonly StoredRecord[]): (readonly StoredRecord[])[] {
  const out: (readonly StoredRecord[])[] = [];
  let from = 0;
  let bytes = 0;
  for (let i = 0; i < page.length; i++) {
    const size = (page[i]?.bytes.length ?? 0) + 1;
    if (i > from && (i - from >= PAGE_RECORDS || bytes + size > PAGE_BYTES)) {
      out.push(page.slice(from, i));
      from = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (page.length > from) out.push(from === 0 ? page : page.slice(from));
  return out;
}

/** A page read and sent to be digested. */
interface InFlight {
  /** Each record's position (its seq in the sink). */
  readonly positions: Float64Array;
  done: Digested | undefined;
  readonly ready: Promise<Digested>;
}

function finding(log: string, code: FindingCode, message: string, extra: Partial<Finding> = {}): Finding {
  return { code, severity: FINDING_CODES[code], log, message, ...extra };
}

type NoteProblem = { code: FindingCode; message: string; checkpoint?: number };

interface OpenedCheckpoint {
  readonly note: string;
  readonly cp?: Checkpoint;
  problem?: NoteProblem | undefined;
  /** Signed only by unknown keys (a candidate for authentication by the hash chain). */
  unknownKey: boolean;
}

/**
 * Checks a series of checkpoint notes: signatures (learning rotated keys from `key <vkey>` extension
 * lines of checkpoints signed by an already trusted key, and accepting checkpoints of unknown keys
 * that a valid later checkpoint's `prev` chain reaches), numbering, the `prev` chain, origin and
 * non-decreasing sizes. Returns the valid ones in order. `trusted` grows with learned keys.
 */
export function checkCheckpoints(log: string, notes: readonly string[], trusted: NoteVerifier[], origin: string | undefined, findings: Finding[]): GoodCheckpoint[] {
  // 1. Signatures, in order (a rotation is learned forwards).
  const opened: OpenedCheckpoint[] = [];
  for (const note of notes) {
    const o = openNote(note, trusted);
    if ('error' in o) {
      // A checkpoint body whose signature lines were stripped is unsigned, not unreadable.
      const body = parseCheckpoint(note.replace(/\n+$/, '\n'));
      if (!('error' in body)) {
        opened.push({ note, cp: body, problem: { code: 'checkpoint-unsigned', message: `checkpoint ${body.number} has no signature`, checkpoint: body.number }, unknownKey: false });
        continue;
      }
      opened.push({ note, problem: { code: 'checkpoint-malformed', message: `a checkpoint cannot be read: ${o.error}` }, unknownKey: false });
      continue;
    }
    const cp = parseCheckpoint(o.text);
    if ('error' in cp) {
      opened.push({ note, problem: { code: 'checkpoint-malformed', message: `a checkpoint body cannot be read: ${cp.error}` }, unknownKey: false });
      continue;
    }
    const sigs = o.signatures;
    const at = { checkpoint: cp.number };
    if (sigs.length === 0) {
      opened.push({ note, cp, problem: { code: 'checkpoint-unsigned', message: `checkpoint ${cp.number} has no signature`, ...at }, unknownKey: false });
      continue;
    }
    if (!sigs.some((s) => s.known)) {
      const message = `checkpoint ${cp.number} is signed only by unknown keys (${sigs.map((s) => `${s.name}+${s.keyId}`).join(', ')})`;
      opened.push({ note, cp, problem: { code: 'checkpoint-unknown-key', message, ...at }, unknownKey: true });
      continue;
    }
    if (!sigs.some((s) => s.known && s.verified)) {
      const message = `checkpoint ${cp.number}: the signature of a trusted key does not verify (the checkpoint was altered)`;
      opened.push({ note, cp, problem: { code: 'checkpoint-forged', message, ...at }, unknownKey: false });
      continue;
    }
    opened.push({ note, cp, unknownKey: false });
    // A rotation: a checkpoint signed by a trusted key introduces the next key, which must sign it too.
    for (const ext of cp.extensions ?? []) {
      if (!ext.startsWith('key ')) continue;
      try {
        const next = verifierFromVkey(ext.slice(4));
        const again = openNote(note, [next]);
        if ('error' in again || !again.signatures.some((s) => s.known && s.verified)) {
          findings.push(finding(log, 'checkpoint-forged', `checkpoint ${cp.number} introduces a key that did not sign it`, at));
        } else if (!trusted.some((t) => t.name === next.name && t.keyId.equals(next.keyId))) {
          trusted.push(next);
        }
      } catch {
        findings.push(finding(log, 'checkpoint-malformed', `checkpoint ${cp.number} names an unreadable key`, at));
      }
    }
  }

  // 2. Checkpoints of keys not (or no longer) trusted, reached by the prev chain of a valid one.
  if (opened.some((o) => o.unknownKey)) {
    const byHash = new Map<string, number>();
    opened.forEach((o, i) => {
      if (o.cp !== undefined) byHash.set(checkpointHash(o.note), i);
    });
    for (let i = opened.length - 1; i >= 0; i--) {
      const o = opened[i];
      if (o?.cp === undefined || o.problem !== undefined) continue;
      const j = byHash.get(o.cp.prevHash);
      const older = j === undefined ? undefined : opened[j];
      if (j !== undefined && j < i && older?.unknownKey === true && older.cp?.number === o.cp.number - 1) {
        older.problem = undefined;
        older.unknownKey = false;
      }
    }
  }

  // 3. Order, chain and origin of the valid ones.
  const good: GoodCheckpoint[] = [];
  let expectedNumber = 0;
  let prevHash = GENESIS_PREV;
  let lastSize = 0;
  let last: GoodCheckpoint | undefined;
  const reported = new Set<number>();
  for (const { note, cp, problem } of opened) {
    if (problem !== undefined || cp === undefined) {
      if (problem !== undefined) findings.push(finding(log, problem.code, problem.message, problem.checkpoint === undefined ? {} : { checkpoint: problem.checkpoint }));
      if (cp !== undefined) reported.add(cp.number);
      continue;
    }
    if (origin !== undefined && cp.origin !== origin) {
      findings.push(finding(log, 'checkpoint-forged', `checkpoint ${cp.number} is for another log (${cp.origin})`, { checkpoint: cp.number, expected: origin, actual: cp.origin }));
      continue;
    }
    // The same checkpoint issued again (the sealer retries after a lost acknowledgement): same
    // number, predecessor, size and root, newer time. Its successor chains to the reissued copy.
    if (last !== undefined && cp.number === last.cp.number && cp.prevHash === last.cp.prevHash && cp.size === last.cp.size && cp.root.equals(last.cp.root)) {
      prevHash = checkpointHash(note);
      last = { cp, note };
      good.push(last);
      continue;
    }
    if (cp.number < expectedNumber || cp.size < lastSize) {
      findings.push(finding(log, 'checkpoint-rolled-back', `checkpoint ${cp.number} (size ${cp.size}) comes after checkpoint ${expectedNumber - 1} (size ${lastSize})`, { checkpoint: cp.number }));
      continue;
    }
    // A gap made only of checkpoints already reported (forged, unknown key…) is not reported again.
    const gapReported = cp.number - expectedNumber <= reported.size && Array.from({ length: cp.number - expectedNumber }, (_, k) => expectedNumber + k).every((n) => reported.has(n));
    if (cp.number > expectedNumber && !gapReported) {
      const many = cp.number - expectedNumber > 1;
      findings.push(
        finding(log, 'checkpoint-missing', `checkpoint${many ? 's' : ''} ${expectedNumber}${many ? `–${cp.number - 1}` : ''} missing before checkpoint ${cp.number}`, {
          checkpoint: expectedNumber,
        }),
      );
    } else if (cp.number === expectedNumber && cp.prevHash !== prevHash) {
      findings.push(finding(log, 'checkpoint-missing', `checkpoint ${cp.number} does not follow the checkpoint before it (prev hash)`, { checkpoint: cp.number, expected: prevHash, actual: cp.prevHash }));
    }
    expectedNumber = cp.number + 1;
    prevHash = checkpointHash(note);
    lastSize = cp.size;
    last = { cp, note };
    good.push(last);
  }
  return good;
}

function originOf(notes: readonly (string | undefined)[]): string | undefined {
  for (const note of notes) {
    if (note === undefined) continue;
    const opened = openNote(note, []);
    if ('error' in opened) continue;
    const cp = parseCheckpoint(opened.text);
    if (!('error' in cp)) return cp.origin;
  }
  return undefined;
}

/** The resume state of `start`, validated. @throws TypeError / RangeError when it is malformed. */
function startRange(start: StartState): CompactRange {
  const range = start.range instanceof CompactRange ? start.range.clone() : CompactRange.fromJSON(start.range);
  if (!Number.isSafeInteger(start.seq) || start.seq < 0 || range.size !== start.seq) {
    throw new RangeError(`start state: seq ${start.seq} does not match the range size ${range.size}`);
  }
  if (!HEX64.test(start.prev)) throw new TypeError('start state: prev must be 64 lowercase hex digits');
  if (start.seq === 0 && start.prev !== GENESIS_PREV) throw new TypeError('start state: prev of seq 0 must be 64 zeros');
  return range;
}

/**
 * Verifies one log. `trustedKeys` are the verifiers the caller trusts; keys introduced by a correctly
 * signed rotation checkpoint are trusted from then on. `onProgress` is called with the number of
 * records read every 100,000 records.
 * @throws TypeError / RangeError when `material.start` is malformed; whatever reading the records
 *   throws; Error when a worker thread fails.
 */
export async function verifyLog(
  material: LogMaterial,
  trustedKeys: readonly NoteVerifier[],
  onProgress?: (records: number) => void,
  options: VerifyOptions = {},
): Promise<LogReport> {
  const log = material.instance;
  const startSeq = material.start?.seq ?? 0;
  const range = material.start === undefined ? new LeafTree() : LeafTree.from(startRange(material.start));
  const findings: Finding[] = [];
  const perCode = new Map<FindingCode, number>();
  const add = (f: Finding): void => {
    const n = (perCode.get(f.code) ?? 0) + 1;
    perCode.set(f.code, n);
    if (n <= MAX_FINDINGS_PER_CODE) findings.push(f);
  };
  const origin = material.origin ?? originOf([material.checkpoints[0], material.witness[0]]);
  const trusted = [...trustedKeys];
  const checkpointFindings: Finding[] = [];
  const good = checkCheckpoints(log, material.checkpoints, trusted, origin, checkpointFindings);
  checkpointFindings.forEach(add);
  // The witness copies are checked with the keys the sink's checkpoints taught too (older witness
  // files, with the rotation, may have been pruned).
  const witnessFindings: Finding[] = [];
  const witnessGood = checkCheckpoints(log, material.witness, trusted, origin, witnessFindings);
  // Witness numbering may start anywhere (old files pruned): only its signatures matter.
  // A problem the sink's copy of the same checkpoint already showed is not repeated.
  const shown = new Set(checkpointFindings.map((f) => `${f.code} ${f.checkpoint ?? ''}`));
  for (const f of witnessFindings) {
    if (f.code !== 'checkpoint-missing' && !shown.has(`${f.code} ${f.checkpoint ?? ''}`)) add({ ...f, message: `witness: ${f.message}` });
  }

  const newest = good.at(-1);
  const sealed = newest?.cp.size ?? 0;

  // Checkpoints by the tree size they seal, to compare roots as the tree grows.
  const bySize = new Map<number, GoodCheckpoint[]>();
  for (const g of good) bySize.set(g.cp.size, [...(bySize.get(g.cp.size) ?? []), g]);
  let matchedSize = startSeq; // the largest size whose root matched (or the start)
  let firstMismatch: { index: number; later: number; lastNumber: number } | undefined;
  const laterMismatchNotes: (() => void)[] = [];
  const checkRoots = (): void => {
    const list = bySize.get(range.size);
    if (list === undefined) return;
    const root = range.root();
    for (const g of list) {
      if (root.equals(g.cp.root)) {
        matchedSize = range.size;
        firstMismatch = undefined;
        continue;
      }
      if (firstMismatch !== undefined) {
        firstMismatch.later += 1;
        firstMismatch.lastNumber = g.cp.number;
        continue;
      }
      firstMismatch = { index: findings.length, later: 0, lastNumber: g.cp.number };
      add(
        finding(
          log,
          'root-mismatch',
          `checkpoint ${g.cp.number} (size ${g.cp.size}) does not match the stored records: the tree root recomputed from them differs, so a record stored at positions ${matchedSize}–${g.cp.size - 1} was altered, removed, inserted or reordered`,
          { checkpoint: g.cp.number, expected: g.cp.root.toString('hex'), actual: root.toString('hex') },
        ),
      );
      const later = firstMismatch;
      // Every later root covers the same records: counted into this finding, not listed.
      laterMismatchNotes.push(() => {
        const f = findings[later.index];
        if (f !== undefined && later.later > 0) {
          const more = later.later > 1 ? `as do the ${later.later} later checkpoints through ${later.lastNumber}` : `as does the later checkpoint ${later.lastNumber}`;
          findings[later.index] = { ...f, message: `${f.message} (${more}, which cover the same records)` };
        }
      });
    }
  };
  checkRoots();

  let expected = startSeq; // the next seq in order
  // The chain head: the leaf hash of record expected-1, 32 bytes at headAt of headHashes.
  let headHashes: Uint8Array = Buffer.from(material.start?.prev ?? GENESIS_PREV, 'hex');
  let headAt = 0;
  const headHex = (): string => hexAt(headHashes, headAt);
  // The record that set the chain head (none before the first one in order).
  let hasPrevRecord = false;
  let prevSeq = 0;
  let prevPage: PackedPage = packPage([]);
  let prevIndex = 0;
  let prevMalformed = false;
  let read = 0;
  let sealedRead = 0;
  const missing: [number, number][] = []; // seq ranges skipped over, sorted, not yet seen
  const window = new Uint32Array(WINDOW); // seq % WINDOW → first 4 bytes of its leaf hash
  const alternates = new Map<number, string[]>(); // seq → leaf hashes of other records under it
  const withId = (id: string | undefined) => (id === undefined ? {} : { id });
  const idAt = (page: PackedPage, i: number) => withId(recordId(recordBytes(page, i)));

  const takeMissing = (seq: number): boolean => {
    let lo = 0;
    let hi = missing.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = missing[mid];
      if (m === undefined) return false;
      if (seq < m[0]) hi = mid - 1;
      else if (seq > m[1]) lo = mid + 1;
      else {
        const parts: [number, number][] = [];
        if (m[0] < seq) parts.push([m[0], seq - 1]);
        if (seq < m[1]) parts.push([seq + 1, m[1]]);
        missing.splice(mid, 1, ...parts);
        return true;
      }
    }
    return false;
  };

  /** Checks record i of a digested page (stored at `position`), in stored order; `leaves` = d.hashes. */
  const checkRecord = (page: PackedPage, position: number, d: DigestView, leaves: Buffer, i: number): void => {
    read += 1;
    const at = 32 * i;
    const prefix = leaves.readUInt32BE(at);
    // seq and prev as digested (FAST), else from a full parse here; `fields` only for the latter.
    let fields: RecordFields | undefined;
    let malformed: boolean;
    let seq: number;
    if (d.kinds[i] === FAST) {
      const s = d.seqs[i] ?? Number.NaN;
      malformed = !(Number.isSafeInteger(s) && s >= 0);
      seq = malformed ? position : s;
    } else {
      fields = readFields(recordBytes(page, i));
      const s = fields?.seq;
      malformed = !(typeof s === 'number' && Number.isSafeInteger(s) && s >= 0);
      seq = !malformed && typeof s === 'number' ? s : position;
    }
    if (malformed) add(finding(log, 'record-malformed', `the record stored at position ${position} is not a JSON audit record with a seq`, { seq: position, ...idAt(page, i) }));
    if (seq < sealed) sealedRead += 1;

    if (seq >= expected) {
      if (seq > expected) {
        missing.push([expected, seq - 1]);
      } else if (!malformed && !prevMalformed && (fields === undefined ? !equal32(d.prevs, at, headHashes, headAt) : fields.prev !== headHex())) {
        const actual = fields === undefined ? hexAt(d.prevs, at) : String(fields.prev);
        if (!hasPrevRecord) {
          const message =
            seq === 0
              ? `record 0 names a predecessor although it is the first record`
              : `record ${seq} does not name the record before the export's start (seq ${seq - 1}) as its predecessor`;
          add(finding(log, 'chain-broken', message, { seq, ...idAt(page, i), expected: headHex(), actual }));
        } else if (alternates.get(seq - 1)?.includes(actual) === true) {
          // It follows the other record stored under seq-1: reported there already (record-inserted).
        } else if (prevSeq !== seq - 1) {
          add(finding(log, 'chain-broken', `record ${seq} does not name record ${prevSeq} as its predecessor`, { seq, ...idAt(page, i), expected: headHex(), actual }));
        } else {
          add(
            finding(log, 'record-modified', `record ${prevSeq} does not hash to what record ${seq} names as its predecessor: record ${prevSeq} (or the prev of record ${seq}) was altered`, {
              seq: prevSeq,
              ...idAt(prevPage, prevIndex),
              expected: actual,
              actual: headHex(),
            }),
          );
        }
      }
      window[seq % WINDOW] = prefix;
      headHashes = d.hashes;
      headAt = at;
      hasPrevRecord = true;
      prevSeq = seq;
      prevPage = page;
      prevIndex = i;
      prevMalformed = malformed;
      expected = seq + 1;
    } else if (takeMissing(seq)) {
      add(finding(log, 'record-out-of-order', `record ${seq} is stored out of order (after record ${expected - 1})`, { seq, ...idAt(page, i) }));
      window[seq % WINDOW] = prefix;
    } else if (seq >= expected - WINDOW && window[seq % WINDOW] === prefix) {
      add(finding(log, 'record-duplicated', `record ${seq} is stored again at position ${position}`, { seq, ...idAt(page, i) }));
    } else {
      const other = alternates.get(seq) ?? [];
      if (alternates.size < 100_000) alternates.set(seq, [...other, hexAt(d.hashes, at)]);
      add(finding(log, 'record-inserted', `a second, different record ${seq} is stored at position ${position}`, { seq, ...idAt(page, i) }));
    }

    range.append(leaves, at);
    checkRoots();
    if (onProgress !== undefined && read % 100_000 === 0) onProgress(read);
  };

  /** Checks a digested page. */
  const checkPage = (positions: Float64Array, { page, digest }: Digested): void => {
    const d = digestView(digest, positions.length);
    const leaves = Buffer.from(d.hashes.buffer, d.hashes.byteOffset, d.hashes.byteLength);
    for (let i = 0; i < positions.length; i++) checkRecord(page, positions[i] ?? 0, d, leaves, i);
  };

  // Pages are read ahead and digested (leaf hashes, seq, prev) on worker threads once the log has
  // more than `workersFrom` records, in-thread before (and throughout with `workers: 0`); they are
  // checked here strictly in stored order, so the findings do not depend on where they were digested.
  const workers = options.workers ?? defaultWorkers();
  const workersFrom = options.workersFrom ?? WORKERS_FROM;
  if (!Number.isSafeInteger(workers) || workers < 0 || !Number.isSafeInteger(workersFrom) || workersFrom < 0) {
    throw new RangeError(`invalid verify options: workers ${workers}, workersFrom ${workersFrom}`);
  }
  const maxInFlight = 4 * Math.max(1, options.pool?.workers ?? workers);
  let pool: PageDigester | undefined;
  const inFlight: InFlight[] = [];
  const source = pagesOf(material.records)[Symbol.asyncIterator]();
  let sent = 0;
  let finished = false;
  try {
    let next = source.next();
    for (;;) {
      const r = await next;
      if (r.done === true) break;
      // Read the next page while this one is digested and checked.
      next = source.next();
      next.catch(ignore);
      for (const packed of isPacked(r.value) ? [r.value] : chunks(r.value).map(packPage)) {
        const count = packed.positions.length;
        if (count === 0) continue;
        if (pool === undefined && (workers > 0 || options.pool !== undefined) && sent + count > workersFrom) {
          pool = options.pool ?? startDigestPool(workers);
        }
        const page: InFlight = { positions: packed.positions, done: undefined, ready: (pool ?? inThreadDigester).digest(packed) };
        page.ready.then((d) => {
          page.done = d;
        }, ignore);
        inFlight.push(page);
        sent += count;
      }
      for (let head = inFlight[0]; head !== undefined && (head.done !== undefined || inFlight.length > maxInFlight); head = inFlight[0]) {
        inFlight.shift();
        checkPage(head.positions, head.done ?? (await head.ready));
      }
    }
    for (let head = inFlight.shift(); head !== undefined; head = inFlight.shift()) checkPage(head.positions, await head.ready);
    finished = true;
  } finally {
    if (pool !== options.pool) await pool?.close();
    if (!finished) await source.return(undefined).catch(ignore);
  }
  for (const note of laterMismatchNotes) note();

  for (const [from, to] of missing) {
    add(finding(log, 'record-missing', to > from ? `records ${from}–${to} are missing` : `record ${from} is missing`, { seq: from }));
  }
  const end = expected; // one past the highest seq stored
  const ends = end === 0 ? 'the log has no records' : `the log ends at seq ${end - 1}`;
  if (end < sealed) {
    add(finding(log, 'log-truncated', `${ends} but checkpoint ${newest?.cp.number ?? 0} seals ${sealed} records`, { seq: end, expected: String(sealed), actual: String(end) }));
  }
  const witnessNewest = witnessGood.at(-1);
  if (witnessNewest !== undefined) {
    const w = witnessNewest.cp;
    if (newest === undefined || newest.cp.number < w.number || newest.cp.size < w.size) {
      add(
        finding(log, 'checkpoint-rolled-back', `the sink's newest checkpoint (${newest?.cp.number ?? 'none'}, size ${sealed}) is behind the witness copy (${w.number}, size ${w.size})`, {
          checkpoint: w.number,
          expected: String(w.size),
          actual: String(sealed),
        }),
      );
      if (end < w.size && end >= sealed) {
        add(finding(log, 'log-truncated', `${ends} but the witness checkpoint ${w.number} seals ${w.size} records`, { seq: end, expected: String(w.size), actual: String(end) }));
      }
    }
  }
  // A fork: the sink and the witness hold different checkpoints under one number.
  const sinkByNumber = new Map<number, string[]>();
  for (const g of good) sinkByNumber.set(g.cp.number, [...(sinkByNumber.get(g.cp.number) ?? []), g.note]);
  for (const g of witnessGood) {
    const inSink = sinkByNumber.get(g.cp.number);
    if (inSink !== undefined && !inSink.includes(g.note)) {
      add(finding(log, 'checkpoint-forged', `checkpoint ${g.cp.number} in the sink differs from its witness copy`, { checkpoint: g.cp.number }));
    }
  }
  const sealedFrom = Math.max(sealed, startSeq);
  if (end > sealedFrom) {
    add(finding(log, 'unsealed-tail', `${end - sealedFrom} record${end - sealedFrom > 1 ? 's' : ''} after the newest checkpoint ${end - sealedFrom > 1 ? 'are' : 'is'} not sealed yet`, { seq: sealedFrom }));
  }
  for (const [code, n] of perCode) {
    if (n > MAX_FINDINGS_PER_CODE) findings.push(finding(log, code, `${n - MAX_FINDINGS_PER_CODE} more ${code} findings not listed`));
  }
  return {
    log,
    firstSeq: startSeq,
    records: read,
    sealedRecords: sealedRead,
    checkpoints: material.checkpoints.length,
    validCheckpoints: good.length,
    findings,
  };
}
