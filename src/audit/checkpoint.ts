/**
 * Audit checkpoints: C2SP tlog-checkpoint bodies (https://c2sp.org/tlog-checkpoint), signed as
 * C2SP signed-notes (./signed-note.ts).
 *
 * Body, every line ending in "\n":
 *
 *     <origin>
 *     <tree size, decimal>
 *     <root hash, base64 of 32 bytes>
 *     checkpoint <n>          the checkpoint number in this log: 0, 1, 2, …
 *     prev <64 hex>           checkpointHash() of the previous checkpoint's signed note; 64 zeros for n = 0
 *     time <RFC 3339>         when it was sealed
 *     <further extension lines, if any>
 *
 * The `prev` link hashes the previous checkpoint's whole signed note exactly as stored: the UTF-8
 * bytes of body, blank line, every signature line, through the final newline, with no normalisation.
 * So altering, re-signing or dropping any earlier checkpoint (its text or its signatures) breaks the chain.
 */
import { createHash } from 'node:crypto';
import { decodeBase64Strict } from './signed-note.js';

/** A checkpoint: the tree head of one log plus this project's extension lines. */
export interface Checkpoint {
  /** The log's origin (`<audit.seal.origin>/<instance id>`); by convention also the signing key's name. */
  origin: string;
  /** Number of records in the tree. */
  size: number;
  /** RFC 9162 Merkle tree root hash, 32 bytes. */
  root: Buffer;
  /** Checkpoint number within the log, from 0. */
  number: number;
  /** {@link checkpointHash} of the previous checkpoint's note, lowercase hex; {@link GENESIS_PREV} for the first. */
  prevHash: string;
  /** RFC 3339 time, e.g. `2025-01-02T03:04:05.678Z`. */
  time: string;
  /** Further extension lines (non-empty, no control characters), after `time`. */
  extensions?: string[];
}

/** `prev` of the first checkpoint of a log. */
export const GENESIS_PREV = '0'.repeat(64);

const UINT = /^(0|[1-9][0-9]*)$/;
const HEX64 = /^[0-9a-f]{64}$/;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$/;
const RESERVED = /^(checkpoint|prev|time)( |$)/;

/**
 * The checkpoint body (the text that is signed).
 * @throws RangeError when a field is invalid (the same rules {@link parseCheckpoint} enforces).
 */
export function formatCheckpoint(c: Checkpoint): string {
  const problem = checkpointProblem(c);
  if (problem !== undefined) throw new RangeError(`invalid checkpoint: ${problem}`);
  const lines = [
    c.origin,
    String(c.size),
    c.root.toString('base64'),
    `checkpoint ${c.number}`,
    `prev ${c.prevHash}`,
    `time ${c.time}`,
    ...(c.extensions ?? []),
  ];
  return lines.map((l) => `${l}\n`).join('');
}

/**
 * Parses a checkpoint body (the text of an opened note) strictly: every line present and in order,
 * canonical decimals, a 32-byte canonical base64 root, lowercase hex `prev`, an RFC 3339 time, no
 * empty lines. `extensions` is present only when there are further lines.
 */
export function parseCheckpoint(text: string): Checkpoint | { error: string } {
  if (!text.endsWith('\n')) return { error: 'checkpoint does not end with a newline' };
  const lines = text.slice(0, -1).split('\n');
  const [origin, sizeLine, rootLine, numberLine, prevLine, timeLine, ...extensions] = lines;
  if (origin === undefined || sizeLine === undefined || rootLine === undefined) return { error: 'checkpoint needs origin, tree size and root hash lines' };
  if (numberLine === undefined || prevLine === undefined || timeLine === undefined) return { error: 'checkpoint needs "checkpoint", "prev" and "time" lines' };
  if (!numberLine.startsWith('checkpoint ')) return { error: 'line 4 must be "checkpoint <n>"' };
  if (!prevLine.startsWith('prev ')) return { error: 'line 5 must be "prev <hex>"' };
  if (!timeLine.startsWith('time ')) return { error: 'line 6 must be "time <RFC 3339>"' };
  const size = parseUint(sizeLine);
  if (size === undefined) return { error: `invalid tree size ${JSON.stringify(sizeLine)}` };
  const number = parseUint(numberLine.slice('checkpoint '.length));
  if (number === undefined) return { error: `invalid checkpoint number in ${JSON.stringify(numberLine)}` };
  const root = decodeBase64Strict(rootLine);
  if (root?.length !== 32) return { error: 'root hash must be canonical base64 of 32 bytes' };
  const c: Checkpoint = { origin, size, root, number, prevHash: prevLine.slice('prev '.length), time: timeLine.slice('time '.length) };
  if (extensions.length > 0) c.extensions = extensions;
  const problem = checkpointProblem(c);
  return problem === undefined ? c : { error: problem };
}

/**
 * The hash a successor's `prev` line carries: lowercase hex SHA-256 of the UTF-8 bytes of the whole
 * signed note exactly as stored (body, blank line, signature lines, final newline).
 */
export function checkpointHash(note: string): string {
  return createHash('sha256').update(note, 'utf8').digest('hex');
}

function checkpointProblem(c: Checkpoint): string | undefined {
  if (c.origin === '' || hasControlOrNewline(c.origin) || c.origin.trim() !== c.origin) return 'origin must be non-empty, without control characters or surrounding space';
  if (!isUint(c.size)) return 'tree size must be a non-negative safe integer';
  if (c.root.length !== 32) return 'root hash must be 32 bytes';
  if (!isUint(c.number)) return 'checkpoint number must be a non-negative safe integer';
  if (!HEX64.test(c.prevHash)) return 'prev must be 64 lowercase hex digits';
  if (c.number === 0 && c.prevHash !== GENESIS_PREV) return 'checkpoint 0 must have prev of 64 zeros';
  if (!isRfc3339(c.time)) return `time ${JSON.stringify(c.time)} is not an RFC 3339 date-time`;
  for (const e of c.extensions ?? []) {
    if (e === '' || hasControlOrNewline(e)) return 'extension lines must be non-empty, without control characters';
    if (RESERVED.test(e)) return `extension line ${JSON.stringify(e)} repeats a reserved keyword`;
  }
  return undefined;
}

function parseUint(s: string): number | undefined {
  if (!UINT.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}

function isUint(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isRfc3339(s: string): boolean {
  const m = RFC3339.exec(s);
  if (m === null) return false;
  const [, y, mo, d, h, mi, sec, , , oh, om] = m.map((v: string | undefined) => (v === undefined ? undefined : Number(v)));
  if (y === undefined || mo === undefined || d === undefined || h === undefined || mi === undefined || sec === undefined) return false;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  const daysInMonth = mo === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(mo) ? 30 : 31;
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth || h > 23 || mi > 59 || sec > 60) return false;
  return (oh === undefined || oh <= 23) && (om === undefined || om <= 59);
}

function hasControlOrNewline(s: string): boolean {
  // eslint-disable-next-line no-control-regex -- that is the point
  return !s.isWellFormed() || /[\u0000-\u001f\u007f]/.test(s);
}
