/**
 * The audit verifier (pure apart from reading its inputs): recomputes a log's tree from its records,
 * checks every checkpoint's signature, number, chain and root, the records' `seq`/`prev` chain, and
 * that the sink's newest checkpoint is not behind the witness copy. It runs every check and reports
 * each problem as a finding with a stable code, never stopping at the first.
 *
 * Records are streamed once, in stored order; memory stays bounded (the tree is a compact range, and
 * earlier records are remembered only as 4-byte hash prefixes for the last 2^20 seqs, to tell a
 * duplicate from a different record under the same seq).
 *
 * Trust in checkpoints: a checkpoint counts when a trusted key signed it, when a checkpoint signed by
 * a trusted key announced (`key <vkey>`) the key that signed it (a rotation learned forwards), or when
 * a counted checkpoint's `prev` hash chain leads back to it (older checkpoints of a rotated-away key,
 * authenticated by the hash chain a trusted signature covers).
 */
import { leafHash, GENESIS_PREV } from './canonical.js';
import { checkpointHash, parseCheckpoint, type Checkpoint } from './checkpoint.js';
import { CompactRange, type CompactRangeJSON } from './merkle.js';
import { openNote, verifierFromVkey, type NoteVerifier } from './signed-note.js';
import type { StoredRecord } from './sink.js';

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

/** One log's material. */
export interface LogMaterial {
  readonly instance: string;
  /** The log's origin (`<seal.origin>/<instance>`); taken from its first checkpoint when undefined. */
  readonly origin?: string;
  /** Records in stored order (from `start.seq` when `start` is given). */
  readonly records: AsyncIterable<StoredRecord> | Iterable<StoredRecord>;
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

interface GoodCheckpoint {
  readonly cp: Checkpoint;
  readonly note: string;
}

/** More findings of one code in one log than this are counted, not listed. */
const MAX_FINDINGS_PER_CODE = 1000;
/** How many recent seqs keep a hash prefix (duplicate vs different record under a seq). */
const WINDOW = 1 << 20;
const HEX64 = /^[0-9a-f]{64}$/;

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

const SEQ_PREFIX = /^(0|[1-9][0-9]{0,15})[,}]/;
const PLAIN_ID = /^[^"\\]*$/;

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
 * bytes are hashed into the tree that signed checkpoints pin.
 */
function chainFields(text: string): { seq: number; prev: string; id: string | undefined } | undefined {
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
 * @throws TypeError / RangeError when `material.start` is malformed; whatever reading the records throws.
 */
export async function verifyLog(material: LogMaterial, trustedKeys: readonly NoteVerifier[], onProgress?: (records: number) => void): Promise<LogReport> {
  const log = material.instance;
  const startSeq = material.start?.seq ?? 0;
  const range = material.start === undefined ? new CompactRange() : startRange(material.start);
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
  let prev = material.start?.prev ?? GENESIS_PREV; // leaf hash of record expected-1
  let prevRecord: { seq: number; id: string | undefined; malformed: boolean } | undefined;
  let read = 0;
  let sealedRead = 0;
  const missing: [number, number][] = []; // seq ranges skipped over, sorted, not yet seen
  const window = new Uint32Array(WINDOW); // seq % WINDOW → first 4 bytes of its leaf hash
  const alternates = new Map<number, string[]>(); // seq → leaf hashes of other records under it
  const withId = (id: string | undefined) => (id === undefined ? {} : { id });

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

  for await (const rec of material.records) {
    read += 1;
    const hashBuf = leafHash(rec.bytes);
    const hash = hashBuf.toString('hex');
    const prefix = hashBuf.readUInt32BE(0);
    let parsed: { seq?: unknown; prev?: unknown; id?: unknown } = {};
    let malformed = false;
    const text = rec.bytes.toString('utf8');
    const fast = chainFields(text);
    if (fast !== undefined) parsed = fast;
    else {
      try {
        const value: unknown = JSON.parse(text);
        if (typeof value === 'object' && value !== null && !Array.isArray(value)) parsed = value;
        else malformed = true;
      } catch {
        malformed = true;
      }
    }
    const id = typeof parsed.id === 'string' ? parsed.id : undefined;
    if (!malformed && !(typeof parsed.seq === 'number' && Number.isSafeInteger(parsed.seq) && parsed.seq >= 0)) malformed = true;
    if (malformed) add(finding(log, 'record-malformed', `the record stored at position ${rec.seq} is not a JSON audit record with a seq`, { seq: rec.seq, ...withId(id) }));
    const seq = !malformed && typeof parsed.seq === 'number' ? parsed.seq : rec.seq;
    if (seq < sealed) sealedRead += 1;

    if (seq >= expected) {
      if (seq > expected) {
        missing.push([expected, seq - 1]);
      } else if (!malformed && parsed.prev !== prev && prevRecord?.malformed !== true) {
        if (prevRecord === undefined) {
          const message =
            seq === 0
              ? `record 0 names a predecessor although it is the first record`
              : `record ${seq} does not name the record before the export's start (seq ${seq - 1}) as its predecessor`;
          add(finding(log, 'chain-broken', message, { seq, ...withId(id), expected: prev, actual: String(parsed.prev) }));
        } else if (alternates.get(seq - 1)?.includes(String(parsed.prev)) === true) {
          // It follows the other record stored under seq-1: reported there already (record-inserted).
        } else if (prevRecord.seq !== seq - 1) {
          add(finding(log, 'chain-broken', `record ${seq} does not name record ${prevRecord.seq} as its predecessor`, { seq, ...withId(id), expected: prev, actual: String(parsed.prev) }));
        } else {
          add(
            finding(log, 'record-modified', `record ${prevRecord.seq} does not hash to what record ${seq} names as its predecessor: record ${prevRecord.seq} (or the prev of record ${seq}) was altered`, {
              seq: prevRecord.seq,
              ...withId(prevRecord.id),
              expected: String(parsed.prev),
              actual: prev,
            }),
          );
        }
      }
      window[seq % WINDOW] = prefix;
      prev = hash;
      prevRecord = { seq, id, malformed };
      expected = seq + 1;
    } else if (takeMissing(seq)) {
      add(finding(log, 'record-out-of-order', `record ${seq} is stored out of order (after record ${expected - 1})`, { seq, ...withId(id) }));
      window[seq % WINDOW] = prefix;
    } else if (seq >= expected - WINDOW && window[seq % WINDOW] === prefix) {
      add(finding(log, 'record-duplicated', `record ${seq} is stored again at position ${rec.seq}`, { seq, ...withId(id) }));
    } else {
      const other = alternates.get(seq) ?? [];
      if (alternates.size < 100_000) alternates.set(seq, [...other, hash]);
      add(finding(log, 'record-inserted', `a second, different record ${seq} is stored at position ${rec.seq}`, { seq, ...withId(id) }));
    }

    range.append(hashBuf);
    checkRoots();
    if (onProgress !== undefined && read % 100_000 === 0) onProgress(read);
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
