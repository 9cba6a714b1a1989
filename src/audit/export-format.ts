/**
 * File formats of the offline audit tools.
 *
 * **Audit export** (`portcullis audit export`, read by `audit verify --from-export`): JSON lines,
 * one object per line, in this order:
 *
 * ```
 * {"type":"portcullis-audit-export","v":1,"created":"<RFC 3339>"}
 * {"type":"log","instance":"gw-0","origin":"<seal.origin>/gw-0"}           per log, then its lines:
 * {"type":"witness","instance":"gw-0","note":"<signed checkpoint note>"}   witness_dir copies, oldest first
 * {"type":"checkpoint","instance":"gw-0","note":"<signed checkpoint note>"} the sink's, oldest first
 * {"type":"start","instance":"gw-0","seq":S,"range":{"size":S,"hashes":[…]},"prev":"<hex>"}   partial exports only
 * {"type":"record","instance":"gw-0","r":"<stored canonical record, verbatim>"}   from seq S (0 without start)
 * ```
 *
 * `start` (written by `--since`) carries the RFC 9162 compact range over records 0…S-1 and the leaf
 * hash of record S-1, so the verifier can resume the tree and the `prev` chain at S; the checkpoints
 * sealing S or more records still check every root. Checkpoints are written before the records
 * because they are read first (a checkpoint taken after the records could seal records not exported).
 * Readers accept the lines of different logs in any order, as long as a log's `log` line comes
 * before its other lines and its `start` line before its records.
 *
 * **Inclusion proof** (`portcullis audit prove`): C2SP tlog-proof (https://c2sp.org/tlog-proof):
 *
 * ```
 * c2sp.org/tlog-proof@v1
 * [extra <base64>]       optional, unauthenticated; never written by Portcullis, ignored when read
 * index <N>
 * <base64 hash>          the RFC 9162 inclusion path, leaf side first, one per line
 *
 * <the signed checkpoint note, verbatim>
 * ```
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { CompactRangeJSON } from './merkle.js';
import { decodeBase64Strict } from './signed-note.js';
import type { StoredRecord } from './sink.js';

/** The `type` of an export's first line. */
export const EXPORT_HEADER_TYPE = 'portcullis-audit-export';
/** The export format version written and read. */
export const EXPORT_VERSION = 1;

/** One line of an audit export. */
export type ExportLine =
  | { readonly type: typeof EXPORT_HEADER_TYPE; readonly v: typeof EXPORT_VERSION; readonly created: string }
  | { readonly type: 'log'; readonly instance: string; readonly origin: string }
  | { readonly type: 'start'; readonly instance: string; readonly seq: number; readonly range: CompactRangeJSON; readonly prev: string }
  | { readonly type: 'record'; readonly instance: string; readonly r: string }
  | { readonly type: 'checkpoint'; readonly instance: string; readonly note: string }
  | { readonly type: 'witness'; readonly instance: string; readonly note: string };

/** The text of one export line, newline included. */
export function formatExportLine(line: ExportLine): string {
  return `${JSON.stringify(line)}\n`;
}

/** An export file that is not one (or is damaged beyond reading). */
export class ExportFormatError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
    this.name = 'ExportFormatError';
  }
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parses one line; a string says why it is not an export line. */
export function parseExportLine(text: string): ExportLine | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const o = v as Record<string, unknown>;
  switch (o.type) {
    case EXPORT_HEADER_TYPE:
      if (o.v !== EXPORT_VERSION) return `unsupported export version ${JSON.stringify(o.v)} (this version reads ${EXPORT_VERSION})`;
      return isString(o.created) ? { type: EXPORT_HEADER_TYPE, v: EXPORT_VERSION, created: o.created } : 'header without "created"';
    case 'log':
      return isString(o.instance) && isString(o.origin) ? { type: 'log', instance: o.instance, origin: o.origin } : 'log line needs "instance" and "origin"';
    case 'start': {
      const range = o.range as { size?: unknown; hashes?: unknown } | null | undefined;
      if (!isString(o.instance) || !isCount(o.seq) || !isString(o.prev) || typeof range !== 'object' || range === null) return 'start line needs "instance", "seq", "range" and "prev"';
      if (!isCount(range.size) || !Array.isArray(range.hashes) || !range.hashes.every(isString)) return 'start line: "range" needs "size" and "hashes"';
      return { type: 'start', instance: o.instance, seq: o.seq, range: { size: range.size, hashes: range.hashes }, prev: o.prev };
    }
    case 'record':
      return isString(o.instance) && isString(o.r) ? { type: 'record', instance: o.instance, r: o.r } : 'record line needs "instance" and "r"';
    case 'checkpoint':
    case 'witness':
      return isString(o.instance) && isString(o.note) ? { type: o.type, instance: o.instance, note: o.note } : `${o.type} line needs "instance" and "note"`;
    default:
      return `unknown line type ${JSON.stringify(o.type)}`;
  }
}

/** What an export holds for one log, records aside. */
export interface ExportedLog {
  readonly instance: string;
  readonly origin: string;
  readonly start?: { readonly seq: number; readonly range: CompactRangeJSON; readonly prev: string };
  readonly checkpoints: string[];
  readonly witness: string[];
  /** Number of record lines. */
  readonly records: number;
}

/** An export's header and logs (records are read separately, see {@link exportRecords}). */
export interface ExportSummary {
  readonly created: string;
  readonly logs: ExportedLog[];
}

async function* lines(file: string): AsyncGenerator<{ text: string; n: number }> {
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  try {
    for await (const text of rl) {
      n += 1;
      if (text.trim() !== '') yield { text, n };
    }
  } finally {
    rl.close();
  }
}

/**
 * Reads an export's structure in one streaming pass: header, logs, checkpoints, witness notes, start
 * states and record counts (not the records).
 * @throws ExportFormatError when it is not a valid export; file system errors as is.
 */
export async function scanExport(file: string): Promise<ExportSummary> {
  let created: string | undefined;
  const logs = new Map<string, { instance: string; origin: string; start?: NonNullable<ExportedLog['start']>; checkpoints: string[]; witness: string[]; records: number }>();
  for await (const { text, n } of lines(file)) {
    const line = parseExportLine(text);
    if (typeof line === 'string') throw new ExportFormatError(file, n, line);
    if (created === undefined) {
      if (line.type !== EXPORT_HEADER_TYPE) throw new ExportFormatError(file, n, `not a Portcullis audit export (the first line must be {"type":"${EXPORT_HEADER_TYPE}",…})`);
      created = line.created;
      continue;
    }
    if (line.type === EXPORT_HEADER_TYPE) throw new ExportFormatError(file, n, 'a second export header');
    if (line.type === 'log') {
      if (logs.has(line.instance)) throw new ExportFormatError(file, n, `log ${line.instance} appears twice`);
      logs.set(line.instance, { instance: line.instance, origin: line.origin, checkpoints: [], witness: [], records: 0 });
      continue;
    }
    const log = logs.get(line.instance);
    if (log === undefined) throw new ExportFormatError(file, n, `${line.type} line for log ${line.instance} before its "log" line`);
    switch (line.type) {
      case 'start':
        if (log.start !== undefined || log.records > 0) throw new ExportFormatError(file, n, `log ${line.instance}: the start line must come once, before its records`);
        log.start = { seq: line.seq, range: line.range, prev: line.prev };
        break;
      case 'record':
        log.records += 1;
        break;
      case 'checkpoint':
        log.checkpoints.push(line.note);
        break;
      case 'witness':
        log.witness.push(line.note);
        break;
    }
  }
  if (created === undefined) throw new ExportFormatError(file, 1, 'empty file: not a Portcullis audit export');
  return { created, logs: [...logs.values()] };
}

/**
 * Streams one log's records from an export, numbered from `firstSeq` in file order (the stored
 * position; the verifier reads each record's own `seq`).
 * @throws ExportFormatError for a malformed line; file system errors as is.
 */
export async function* exportRecords(file: string, instance: string, firstSeq: number): AsyncGenerator<StoredRecord> {
  let seq = firstSeq;
  for await (const { text, n } of lines(file)) {
    // Cheap pre-filter: only record lines are parsed.
    if (!text.includes('"record"')) continue;
    const line = parseExportLine(text);
    if (typeof line === 'string') throw new ExportFormatError(file, n, line);
    if (line.type !== 'record' || line.instance !== instance) continue;
    yield { seq: seq++, bytes: Buffer.from(line.r, 'utf8') };
  }
}

/** The first line of a C2SP tlog-proof. */
export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

/** A parsed C2SP tlog-proof. */
export interface TlogProof {
  readonly index: number;
  /** The inclusion path, leaf side first (32-byte hashes). */
  readonly hashes: Buffer[];
  /** The signed checkpoint note, verbatim. */
  readonly checkpoint: string;
  /** Opaque, unauthenticated extra data, when present. */
  readonly extra?: Buffer;
}

/** The proof text. */
export function formatTlogProof(proof: TlogProof): string {
  const head = [TLOG_PROOF_HEADER, ...(proof.extra === undefined ? [] : [`extra ${proof.extra.toString('base64')}`]), `index ${proof.index}`];
  return `${[...head, ...proof.hashes.map((h) => h.toString('base64'))].join('\n')}\n\n${proof.checkpoint}`;
}

/** Parses a C2SP tlog-proof strictly; `{ error }` says what is wrong. The checkpoint is not checked here. */
export function parseTlogProof(text: string): TlogProof | { error: string } {
  const split = text.indexOf('\n\n');
  if (split < 0) return { error: 'no blank line between the proof and the checkpoint' };
  const head = text.slice(0, split).split('\n');
  const checkpoint = text.slice(split + 2);
  if (checkpoint === '') return { error: 'no checkpoint after the blank line' };
  let i = 0;
  if (head[i] !== TLOG_PROOF_HEADER) return { error: `the first line must be ${TLOG_PROOF_HEADER}` };
  i += 1;
  let extra: Buffer | undefined;
  const extraLine = head[i];
  if (extraLine?.startsWith('extra ') === true) {
    extra = decodeBase64Strict(extraLine.slice('extra '.length));
    if (extra === undefined) return { error: 'the extra line is not valid base64' };
    i += 1;
  }
  const indexLine = head[i];
  const m = indexLine === undefined ? null : /^index (0|[1-9][0-9]*)$/.exec(indexLine);
  const index = m?.[1] === undefined ? Number.NaN : Number(m[1]);
  if (!Number.isSafeInteger(index)) return { error: 'missing or invalid "index N" line' };
  const hashes: Buffer[] = [];
  for (const [k, line] of head.slice(i + 1).entries()) {
    const h = decodeBase64Strict(line);
    if (h?.length !== 32) return { error: `proof line ${k + 1} is not a base64 SHA-256 hash` };
    hashes.push(h);
  }
  return { index, hashes, checkpoint, ...(extra === undefined ? {} : { extra }) };
}
