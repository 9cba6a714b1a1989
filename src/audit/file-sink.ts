/**
 * The file audit sink, the embedded default: every log is a directory of append-only files.
 *
 * ```
 * <dir>/                                   0700
 *   <log>/                                 0700, one per instance id
 *     records-000000000000.jsonl           0600, records 0… one per line: canonical bytes + "\n"
 *     records-000000041234.jsonl           the next segment, named after its first seq
 *     checkpoints.txt                      0600, see below
 * ```
 *
 * A new segment starts with the first record after the current one reached `segmentBytes`, so a
 * segment holds at most `segmentBytes - 1` bytes plus one record. Files are only ever appended to;
 * the one exception is cutting a torn last line off at open (below).
 *
 * `checkpoints.txt` is a series of entries `checkpoint <N>\n<text>\n`, where N is the UTF-8 byte length
 * of the text (decimal, no leading zeros) and the final `\n` closes the entry. Signed notes contain a
 * blank line and end with `\n` themselves, so no separator line could be unambiguous; a length prefix
 * is, whatever the text holds, and the closing `\n` tells a complete entry from a torn one. Because a
 * signed note ends with a newline, entries read naturally: each is followed by a blank line.
 *
 * Durability — group commit. `append()` calls for a log queue up; one writer per log takes what is
 * queued (whole calls, up to about 10,000 records), checks each call against the head in call order,
 * writes the new records with one `write` and one `fdatasync`, and then resolves each call (a new
 * segment also fsyncs the directory, so its name survives a crash). While that write is in flight the
 * next calls queue again, so under load one fsync covers many calls, and no call resolves before the
 * fsync that covers its records.
 *
 * Recovery. A crash can leave a torn last line (written, not fsynced, never acknowledged). The first
 * `append()` for a log in this process scans the last segment, counts its lines (= the head) and cuts
 * a trailing partial line off, logging a warning; a torn checkpoint entry is cut off the same way
 * before the first `appendCheckpoint()`. Readers (`head`, `read`, `readCheckpoints`) of a log this
 * process does not write never modify files: they ignore a partial last line, which may be a write in
 * progress in the process that owns the log. If a write or fsync fails, the log's writer is dropped:
 * every call waiting on it rejects and the next `append()` runs recovery again.
 *
 * Reads find the segment holding `fromSeq` from the segment names (first seqs) and scan lines from
 * there in 64 KiB chunks; a few remembered (seq, byte offset) positions per segment let sequential
 * readers (the verifier, the viewer paging on) resume where the last read stopped instead of
 * rescanning the segment from its start.
 *
 * Preconditions: one writing process per log (the instance id is unique, SPEC §5); log names are
 * instance ids (letters, digits, `.`, `-`, `_`, starting with a letter or digit); record bytes are
 * canonical JSON, so never empty and never containing a raw line feed.
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, open, readdir, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AuditSinkConflictError, AuditSinkGapError, type AuditSink, type LogHead, type StoredRecord } from './sink.js';
import { checkLog, checkRange, checkRecords, isLogName, takeRound, type PendingAppend } from './sink-input.js';
import type { PackedReader, PackedRecords } from './verify-digest.js';

/** Options for {@link createFileSink}. */
export interface FileSinkOptions {
  /** The directory holding one subdirectory per log; created (0700) when missing. */
  readonly dir: string;
  /** A segment is closed once it reaches this many bytes. Default 64 MiB. */
  readonly segmentBytes?: number;
  /** Recovery (torn lines cut off) and write failures are logged on a `{component: 'audit-sink'}` child. */
  readonly logger?: Logger;
}

const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;
/** The first packed page's buffer (later ones are sized after the page before). */
const PACKED_FIRST_BYTES = 1024 * 1024;
/** The largest packed page (its offsets are 32-bit). */
const MAX_PACKED_BYTES = 0xffffffff;
const LF = 0x0a;
/** One group commit takes calls until it holds about this many records (a larger single call goes alone). */
const MAX_ROUND_RECORDS = 10_000;
const LF_BUFFER = Buffer.from('\n');
const SEGMENT_NAME = /^records-(\d{12,})\.jsonl$/;
const CHECKPOINTS_FILE = 'checkpoints.txt';
const CHECKPOINT_HEADER = /^checkpoint (0|[1-9][0-9]{0,9})$/;
/** Remembered read positions per segment, and segments with positions. */
const HINTS_PER_SEGMENT = 64;
const HINTED_SEGMENTS = 256;

const segmentName = (firstSeq: number): string => `records-${String(firstSeq).padStart(12, '0')}.jsonl`;

function isErrnoException(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}




/** @throws TypeError when the text is not well-formed (a lone surrogate would not survive UTF-8). */
function encodeCheckpoint(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.toString('utf8') !== text) throw new TypeError('checkpoint text is not well-formed Unicode');
  return bytes;
}

async function writeAll(fh: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await fh.write(data, offset, data.length - offset, null);
    offset += bytesWritten;
  }
}

async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Creates a directory (0700); true when it did not exist. Makes a new directory's name durable. */
async function makeDir(path: string, parent: string): Promise<boolean> {
  try {
    await mkdir(path, { mode: 0o700 });
  } catch (err) {
    if (isErrnoException(err, 'EEXIST')) return false;
    throw err;
  }
  await syncDir(parent);
  return true;
}

/** First seqs of a log's segments, ascending; empty when the log does not exist. */
async function listSegments(logDir: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(logDir);
  } catch (err) {
    if (isErrnoException(err, 'ENOENT')) return [];
    throw err;
  }
  const firsts: number[] = [];
  for (const name of names) {
    const match = SEGMENT_NAME.exec(name);
    if (match?.[1] !== undefined) firsts.push(Number(match[1]));
  }
  return firsts.sort((a, b) => a - b);
}

/** Index of the segment that holds `seq` (the last one starting at or before it), or 0. */
function segmentIndexFor(segments: readonly number[], seq: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  let found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((segments[mid] ?? 0) <= seq) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/** A line's start: record `seq` begins at byte `offset` of a segment. */
interface Position {
  readonly seq: number;
  readonly offset: number;
}

/** What a scan of a segment's complete lines found. */
interface LineCount {
  /** Complete lines from the start position on. */
  readonly count: number;
  /** Byte range of the last complete line (without its `\n`), when there is one. */
  readonly last: { readonly start: number; readonly end: number } | undefined;
  /** Offset just past the last `\n` (the start position when none). */
  readonly completeEnd: number;
  readonly fileSize: number;
}

/** Counts the complete lines of a file from `offset` on, in chunks. */
async function countLines(fh: FileHandle, offset: number): Promise<LineCount> {
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let pos = offset;
  let count = 0;
  let lineStart = offset;
  let last: LineCount['last'];
  for (;;) {
    const { bytesRead } = await fh.read(chunk, 0, CHUNK_BYTES, pos);
    if (bytesRead === 0) break;
    const view = chunk.subarray(0, bytesRead);
    for (let i = view.indexOf(LF); i !== -1; i = view.indexOf(LF, i + 1)) {
      count++;
      last = { start: lineStart, end: pos + i };
      lineStart = pos + i + 1;
    }
    pos += bytesRead;
  }
  return { count, last, completeEnd: lineStart, fileSize: pos };
}

async function readBytes(fh: FileHandle, start: number, end: number): Promise<Buffer> {
  const out = Buffer.alloc(end - start);
  let done = 0;
  while (done < out.length) {
    const { bytesRead } = await fh.read(out, done, out.length - done, start + done);
    if (bytesRead === 0) throw new Error('file shrank while it was read');
    done += bytesRead;
  }
  return out;
}

/**
 * Appends to `out` the complete lines of a segment from `start` on whose seq is in [fromSeq, endSeq),
 * until `out` holds `limit` records. Returns where it stopped (the next unread line).
 */
async function readLines(
  fh: FileHandle,
  start: Position,
  fromSeq: number,
  endSeq: number,
  limit: number,
  out: StoredRecord[],
): Promise<Position> {
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let pos = start.offset;
  let seq = start.seq;
  let lineStart = start.offset;
  let partial: Buffer[] = [];
  while (seq < endSeq && out.length < limit) {
    const { bytesRead } = await fh.read(chunk, 0, CHUNK_BYTES, pos);
    if (bytesRead === 0) break;
    const view = chunk.subarray(0, bytesRead);
    let from = 0;
    let i = view.indexOf(LF);
    while (i !== -1 && seq < endSeq && out.length < limit) {
      if (seq >= fromSeq) {
        const tail = view.subarray(from, i);
        const bytes = partial.length === 0 ? Buffer.from(tail) : Buffer.concat([...partial, tail]);
        out.push({ seq, bytes });
      }
      partial = [];
      seq++;
      lineStart = pos + i + 1;
      from = i + 1;
      i = view.indexOf(LF, from);
    }
    if (seq >= endSeq || out.length >= limit) break;
    // Keep the unfinished line only when it will be returned; skipped lines need no bytes.
    if (seq >= fromSeq && from < bytesRead) partial.push(Buffer.from(view.subarray(from)));
    pos += bytesRead;
  }
  return { seq, offset: lineStart };
}

/** A packed page being filled (see verify-digest.ts): each record preceded by one 0x00 byte. */
interface PackBuilder {
  buf: Buffer;
  /** Bytes in use: up to and including the 0x00 after the last record. */
  end: number;
  /** Where each record's 0x00 byte is, then the one after the last record. */
  readonly offsets: number[];
  readonly positions: number[];
}

/** Makes room for `bytes` bytes in the page, keeping its first `used` bytes. */
function reserve(page: PackBuilder, used: number, bytes: number): void {
  if (bytes <= page.buf.length) return;
  if (bytes > MAX_PACKED_BYTES) throw new RangeError('a packed page cannot exceed 4 GiB');
  const grown = Buffer.allocUnsafeSlow(Math.min(MAX_PACKED_BYTES, Math.max(bytes, 2 * page.buf.length)));
  page.buf.copy(grown, 0, 0, used);
  page.buf = grown;
}

/** Skips the complete lines of a segment from `start` up to line min(fromSeq, endSeq); returns where that line starts (or where the complete lines end). */
async function skipLines(fh: FileHandle, start: Position, fromSeq: number, endSeq: number): Promise<Position> {
  const stop = Math.min(fromSeq, endSeq);
  if (start.seq >= stop) return start;
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let pos = start.offset;
  let seq = start.seq;
  let lineStart = start.offset;
  for (;;) {
    const { bytesRead } = await fh.read(chunk, 0, CHUNK_BYTES, pos);
    if (bytesRead === 0) return { seq, offset: lineStart };
    const view = chunk.subarray(0, bytesRead);
    for (let i = view.indexOf(LF); i !== -1; i = view.indexOf(LF, i + 1)) {
      seq++;
      lineStart = pos + i + 1;
      if (seq >= stop) return { seq, offset: lineStart };
    }
    pos += bytesRead;
  }
}

/**
 * Appends the complete lines of a segment from `start` on, while their seq is below `endSeq` and the
 * page holds fewer than `limit` records, to a packed page: read straight into it (as much as its
 * buffer holds per read), each line's `\n` becoming the 0x00 before the next record. Returns where
 * it stopped (the next unread line).
 */
async function readPackedLines(fh: FileHandle, start: Position, endSeq: number, limit: number, page: PackBuilder): Promise<Position> {
  let seq = start.seq;
  const base = page.end; // this segment's bytes go here on
  let end = base;
  let lineStart = base;
  while (seq < endSeq && page.positions.length < limit) {
    reserve(page, end, end + CHUNK_BYTES);
    const { bytesRead } = await fh.read(page.buf, end, page.buf.length - end, start.offset + (end - base));
    if (bytesRead === 0) break;
    const scan = end;
    end += bytesRead;
    const view = page.buf.subarray(0, end);
    for (let i = view.indexOf(LF, scan); i !== -1 && seq < endSeq && page.positions.length < limit; i = view.indexOf(LF, lineStart)) {
      page.buf[i] = 0;
      page.offsets.push(i);
      page.positions.push(seq);
      seq++;
      lineStart = i + 1;
    }
  }
  // A partial last line, and whatever was read past where the page stopped, is left out.
  page.end = lineStart;
  return { seq, offset: start.offset + (lineStart - base) };
}

/** One parsed checkpoints file: the complete entries and where they end. */
interface CheckpointEntries {
  readonly texts: string[];
  readonly completeEnd: number;
}

/**
 * Parses `checkpoint <N>\n<text>\n` entries. A truncated last entry (a torn write) is left out.
 * @throws Error on a malformed entry that is not at the end (the file was damaged).
 */
function parseCheckpoints(data: Buffer, path: string): CheckpointEntries {
  const texts: string[] = [];
  let pos = 0;
  while (pos < data.length) {
    const headerEnd = data.indexOf(LF, pos);
    if (headerEnd === -1) break; // torn header
    const match = CHECKPOINT_HEADER.exec(data.toString('latin1', pos, headerEnd));
    if (match?.[1] === undefined) throw new Error(`${path}: malformed checkpoint entry at byte ${pos}`);
    const start = headerEnd + 1;
    const end = start + Number(match[1]);
    if (end >= data.length) break; // torn text or missing terminator
    if (data[end] !== LF) throw new Error(`${path}: checkpoint entry at byte ${pos} is not terminated`);
    texts.push(data.toString('utf8', start, end));
    pos = end + 1;
  }
  return { texts, completeEnd: pos };
}



/** The state of a log this process writes. */
interface LogWriter {
  readonly log: string;
  readonly logDir: string;
  /** First seqs of the segments, ascending. */
  segments: number[];
  /** The last segment, open for appending; undefined while the log has no segment. */
  fh: FileHandle | undefined;
  /** Bytes in the last segment. */
  segmentSize: number;
  /** Durable records (the head). */
  size: number;
  last: Buffer | undefined;
  queue: PendingAppend[];
  flushing: Promise<void> | undefined;
  /** Set after a failed write: the writer takes no more calls and is replaced on the next append. */
  broken: Error | undefined;
}

/**
 * Creates a file-backed {@link AuditSink}; see the module comment for the layout, the checkpoint file
 * format and the durability design. Nothing is touched until the first call. After `close()` every
 * method except `ping` (false) and `close` rejects. `readPacked` reads what `read` does as one
 * buffer (for `audit verify`).
 */
export function createFileSink(opts: FileSinkOptions): AuditSink & PackedReader {
  const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes < 1) throw new TypeError(`invalid segmentBytes ${String(segmentBytes)}`);
  const dir = opts.dir;
  const log = opts.logger?.child({ component: 'audit-sink', sink: 'file' });
  const writers = new Map<string, Promise<LogWriter>>();
  const checkpointChains = new Map<string, Promise<void>>();
  const checkpointsRecovered = new Set<string>();
  /** segment path → (seq → byte offset of that record's line). */
  const hints = new Map<string, Map<number, number>>();
  let closed = false;

  const logDirOf = (name: string): string => join(dir, name);
  const segmentPath = (logDir: string, first: number): string => join(logDir, segmentName(first));

  const assertOpen = (): void => {
    if (closed) throw new Error('the audit sink is closed');
  };

  const remember = (path: string, at: Position): void => {
    let positions = hints.get(path);
    if (positions === undefined) {
      if (hints.size >= HINTED_SEGMENTS) {
        const oldest = hints.keys().next().value;
        if (oldest !== undefined) hints.delete(oldest);
      }
      positions = new Map();
      hints.set(path, positions);
    }
    if (at.offset === 0 || positions.has(at.seq)) return;
    if (positions.size >= HINTS_PER_SEGMENT) {
      const oldest = positions.keys().next().value;
      if (oldest !== undefined) positions.delete(oldest);
    }
    positions.set(at.seq, at.offset);
  };

  /** The remembered line start closest to `seq` from below (at worst the segment's start). */
  const nearest = (path: string, first: number, seq: number): Position => {
    let best: Position = { seq: first, offset: 0 };
    for (const [s, offset] of hints.get(path) ?? []) {
      if (s <= seq && s > best.seq) best = { seq: s, offset };
    }
    return best;
  };

  /** Where a segment's complete lines end: its record count, last line and complete length. */
  const segmentTail = async (fh: FileHandle, path: string, first: number): Promise<LineCount & { size: number }> => {
    const from = nearest(path, first, Number.MAX_SAFE_INTEGER);
    let scan = await countLines(fh, from.offset);
    let base = from.seq;
    if (scan.count === 0 && from.offset > 0) {
      // The last line starts before the remembered position (or the file is not what we remember).
      scan = await countLines(fh, 0);
      base = first;
    }
    const size = base + scan.count;
    remember(path, { seq: size, offset: scan.completeEnd });
    return { ...scan, size };
  };

  /** The head as the files show it, ignoring a partial last line; never modifies anything. */
  const headFromFiles = async (name: string): Promise<LogHead> => {
    const logDir = logDirOf(name);
    const segments = await listSegments(logDir);
    let size: number | undefined;
    for (let i = segments.length - 1; i >= 0; i--) {
      const first = segments[i] ?? 0;
      const path = segmentPath(logDir, first);
      const fh = await open(path, 'r');
      try {
        const tail = await segmentTail(fh, path, first);
        size ??= tail.size;
        if (tail.last !== undefined) return { size, last: await readBytes(fh, tail.last.start, tail.last.end) };
      } finally {
        await fh.close();
      }
    }
    return { size: size ?? 0, last: undefined };
  };

  /**
   * Opens, in order, each segment that may hold seqs from `fromSeq` on, while `more()` says so, and
   * hands it to `visit` (closing it afterwards); a segment that vanished meanwhile is skipped.
   */
  const eachSegment = async (
    logDir: string,
    segments: readonly number[],
    fromSeq: number,
    more: () => boolean,
    visit: (fh: FileHandle, path: string, first: number, next: number) => Promise<void>,
  ): Promise<void> => {
    for (let i = segmentIndexFor(segments, fromSeq); i < segments.length && more(); i++) {
      const first = segments[i] ?? 0;
      const next = segments[i + 1] ?? Number.MAX_SAFE_INTEGER;
      if (next <= fromSeq) continue;
      const path = segmentPath(logDir, first);
      let fh: FileHandle;
      try {
        fh = await open(path, 'r');
      } catch (err) {
        if (isErrnoException(err, 'ENOENT')) continue;
        throw err;
      }
      try {
        await visit(fh, path, first, next);
      } finally {
        await fh.close();
      }
    }
  };

  /** Records [fromSeq, min(endSeq, fromSeq + limit)) from the given segments. */
  const readFromFiles = async (
    logDir: string,
    segments: readonly number[],
    fromSeq: number,
    limit: number,
    endSeq: number,
  ): Promise<StoredRecord[]> => {
    const out: StoredRecord[] = [];
    await eachSegment(
      logDir,
      segments,
      fromSeq,
      () => out.length < limit,
      async (fh, path, first, next) => {
        const start = nearest(path, first, Math.max(fromSeq, first));
        remember(path, await readLines(fh, start, fromSeq, Math.min(endSeq, next), limit, out));
      },
    );
    return out;
  };

  /** The size of the last packed page: the next one likely fits in as much (one read, no regrowth). */
  let packedBytes = PACKED_FIRST_BYTES;

  /** {@link readFromFiles}, packed: the same records, positions and read hints, in one buffer. */
  const readPackedFromFiles = async (
    logDir: string,
    segments: readonly number[],
    fromSeq: number,
    limit: number,
    endSeq: number,
  ): Promise<PackedRecords> => {
    const page: PackBuilder = { buf: Buffer.allocUnsafeSlow(Math.min(MAX_PACKED_BYTES, packedBytes + CHUNK_BYTES)), end: 1, offsets: [0], positions: [] };
    page.buf[0] = 0;
    await eachSegment(
      logDir,
      segments,
      fromSeq,
      () => page.positions.length < limit,
      async (fh, path, first, next) => {
        const stop = Math.min(endSeq, next);
        const start = await skipLines(fh, nearest(path, first, Math.max(fromSeq, first)), fromSeq, stop);
        remember(path, await readPackedLines(fh, start, stop, limit, page));
      },
    );
    if (page.positions.length > 0) packedBytes = page.end;
    return { bytes: page.buf, offsets: Uint32Array.from(page.offsets), positions: Float64Array.from(page.positions) };
  };

  /** Opens a log for writing: creates its directory, or recovers its head and cuts a torn last line off. */
  const openWriter = async (name: string): Promise<LogWriter> => {
    const logDir = logDirOf(name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await makeDir(logDir, dir);
    const segments = await listSegments(logDir);
    const writer: LogWriter = {
      log: name,
      logDir,
      segments,
      fh: undefined,
      segmentSize: 0,
      size: 0,
      last: undefined,
      queue: [],
      flushing: undefined,
      broken: undefined,
    };
    const lastFirst = segments.at(-1);
    if (lastFirst === undefined) return writer;
    const path = segmentPath(logDir, lastFirst);
    const fh = await open(path, 'r+');
    try {
      const tail = await segmentTail(fh, path, lastFirst);
      if (tail.completeEnd < tail.fileSize) {
        await fh.truncate(tail.completeEnd);
        await fh.datasync();
        log?.warn(
          { log: name, segment: path, droppedBytes: tail.fileSize - tail.completeEnd, size: tail.size },
          'audit log ended in a torn record (a write the crash interrupted, never acknowledged); cut it off',
        );
      }
      writer.size = tail.size;
      writer.segmentSize = tail.completeEnd;
      if (tail.last !== undefined) writer.last = await readBytes(fh, tail.last.start, tail.last.end);
    } finally {
      await fh.close();
    }
    if (writer.last === undefined && segments.length > 1) {
      // An empty last segment (a crash right after it was created): the last record is in the one before.
      writer.last = (await headFromFiles(name)).last;
    }
    writer.fh = await open(path, 'a', 0o600);
    return writer;
  };

  const dropWriter = (writer: LogWriter, err: Error): void => {
    writer.broken = err;
    const current = writer.fh;
    writer.fh = undefined;
    void current?.close().catch(() => undefined);
    void writers.get(writer.log)?.then((w) => {
      if (w === writer) writers.delete(writer.log);
    });
    log?.error({ err, log: writer.log }, 'audit log write failed; the log is reopened (and recovered) on the next append');
  };

  /** Writes `batch` (records writer.size… in order) durably, starting segments as they fill up. */
  const writeBatch = async (writer: LogWriter, batch: readonly StoredRecord[]): Promise<void> => {
    if (writer.fh === undefined && writer.segments.length > 0) throw new Error(`audit log ${writer.log}: the writer is closed`);
    let fh = writer.fh;
    let segmentSize = writer.segmentSize;
    const segments = [...writer.segments];
    let created = false;
    try {
      let i = 0;
      while (i < batch.length) {
        if (fh === undefined || segmentSize >= segmentBytes) {
          const first = batch[i]?.seq ?? 0;
          if (fh !== undefined) {
            await fh.datasync();
            await fh.close();
            fh = undefined;
          }
          fh = await open(segmentPath(writer.logDir, first), 'a', 0o600);
          segments.push(first);
          segmentSize = 0;
          created = true;
        }
        const parts: Buffer[] = [];
        let bytes = 0;
        while (i < batch.length && segmentSize + bytes < segmentBytes) {
          const record = batch[i] as StoredRecord;
          parts.push(record.bytes, LF_BUFFER);
          bytes += record.bytes.length + 1;
          i++;
        }
        await writeAll(fh, Buffer.concat(parts, bytes));
        segmentSize += bytes;
      }
      await fh?.datasync();
      if (created) await syncDir(writer.logDir);
    } catch (err) {
      if (fh !== writer.fh) await fh?.close().catch(() => undefined);
      throw err;
    }
    const lastRecord = batch.at(-1);
    writer.fh = fh;
    writer.segmentSize = segmentSize;
    writer.segments = segments;
    writer.size += batch.length;
    if (lastRecord !== undefined) writer.last = Buffer.from(lastRecord.bytes);
    const lastFirst = segments.at(-1);
    if (lastFirst !== undefined) remember(segmentPath(writer.logDir, lastFirst), { seq: writer.size, offset: segmentSize });
  };

  /** Takes every queued call, checks each against the head, writes the new records with one fsync. */
  const commitRound = async (writer: LogWriter, round: readonly PendingAppend[]): Promise<void> => {
    const batch: StoredRecord[] = [];
    const accepted: PendingAppend[] = [];
    for (const call of round) {
      const first = call.records[0]?.seq ?? 0;
      const expected = writer.size + batch.length;
      if (first > expected) {
        call.reject(new AuditSinkGapError(writer.log, expected, first));
        continue;
      }
      const overlapEnd = Math.min(expected, first + call.records.length);
      try {
        let conflict: number | undefined;
        // Records queued earlier in this round: compare with their bytes in memory.
        for (let seq = Math.max(first, writer.size); seq < overlapEnd && conflict === undefined; seq++) {
          if (!call.records[seq - first]?.bytes.equals(batch[seq - writer.size]?.bytes ?? Buffer.alloc(0))) conflict = seq;
        }
        // Records already durable: read them back.
        const storedEnd = Math.min(writer.size, overlapEnd);
        if (conflict === undefined && first < storedEnd) {
          const stored = await readFromFiles(writer.logDir, writer.segments, first, storedEnd - first, writer.size);
          for (let seq = first; seq < storedEnd && conflict === undefined; seq++) {
            const bytes = stored[seq - first]?.bytes;
            if (bytes === undefined || !bytes.equals(call.records[seq - first]?.bytes ?? Buffer.alloc(0))) conflict = seq;
          }
        }
        if (conflict !== undefined) {
          call.reject(new AuditSinkConflictError(writer.log, conflict));
          continue;
        }
      } catch (err) {
        call.reject(err);
        continue;
      }
      for (const record of call.records.slice(overlapEnd - first)) batch.push(record);
      accepted.push(call);
    }
    if (batch.length > 0) {
      try {
        await writeBatch(writer, batch);
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        dropWriter(writer, error);
        for (const call of accepted) call.reject(error);
        return;
      }
    }
    for (const call of accepted) call.resolve();
  };

  const flush = async (writer: LogWriter): Promise<void> => {
    while (writer.queue.length > 0) {
      if (writer.broken !== undefined) {
        for (const call of writer.queue.splice(0)) call.reject(writer.broken);
        break;
      }
      await commitRound(writer, takeRound(writer.queue, MAX_ROUND_RECORDS));
    }
    writer.flushing = undefined;
  };

  const writerFor = (name: string): Promise<LogWriter> => {
    let writer = writers.get(name);
    if (writer === undefined) {
      writer = openWriter(name);
      writers.set(name, writer);
      writer.catch(() => {
        // A failed open is not cached: the next call tries again.
        if (writers.get(name) === writer) writers.delete(name);
      });
    }
    return writer;
  };

  /** The writer of a log, if this process writes it (or is opening it for writing). */
  const existingWriter = async (name: string): Promise<LogWriter | undefined> => {
    const pending = writers.get(name);
    if (pending === undefined) return undefined;
    try {
      const writer = await pending;
      return writer.broken === undefined ? writer : undefined;
    } catch {
      return undefined;
    }
  };

  const recoverCheckpoints = async (name: string, path: string): Promise<void> => {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r+');
    } catch (err) {
      if (isErrnoException(err, 'ENOENT')) return;
      throw err;
    }
    try {
      const data = await fh.readFile();
      const { completeEnd } = parseCheckpoints(data, path);
      if (completeEnd < data.length) {
        await fh.truncate(completeEnd);
        await fh.datasync();
        log?.warn({ log: name, file: path, droppedBytes: data.length - completeEnd }, 'checkpoint file ended in a torn entry; cut it off');
      }
    } finally {
      await fh.close();
    }
  };

  const writeCheckpoint = async (name: string, text: Buffer): Promise<void> => {
    const logDir = logDirOf(name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await makeDir(logDir, dir);
    const path = join(logDir, CHECKPOINTS_FILE);
    if (!checkpointsRecovered.has(name)) {
      await recoverCheckpoints(name, path);
      checkpointsRecovered.add(name);
    }
    let created = true;
    let fh: FileHandle;
    try {
      fh = await open(path, 'ax', 0o600);
    } catch (err) {
      if (!isErrnoException(err, 'EEXIST')) throw err;
      created = false;
      fh = await open(path, 'a', 0o600);
    }
    try {
      const header = Buffer.from(`checkpoint ${text.length}\n`, 'latin1');
      await writeAll(fh, Buffer.concat([header, text, LF_BUFFER]));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    if (created) await syncDir(logDir);
  };

  return {
    kind: 'file',

    async append(name, records) {
      assertOpen();
      checkLog(name);
      checkRecords(records);
      if (records.length === 0) return;
      for (;;) {
        const pending = writerFor(name);
        const writer = await pending;
        if (writer.broken !== undefined) {
          if (writers.get(name) === pending) writers.delete(name);
          assertOpen();
          continue;
        }
        const done = new Promise<void>((resolve, reject) => {
          writer.queue.push({ records, resolve, reject });
        });
        writer.flushing ??= flush(writer);
        return done;
      }
    },

    async head(name) {
      assertOpen();
      checkLog(name);
      const writer = await existingWriter(name);
      if (writer !== undefined) return { size: writer.size, last: writer.last };
      return headFromFiles(name);
    },

    async read(name, fromSeq, limit) {
      assertOpen();
      checkLog(name);
      checkRange(fromSeq, limit);
      if (limit === 0) return [];
      const writer = await existingWriter(name);
      if (writer !== undefined) return readFromFiles(writer.logDir, writer.segments, fromSeq, limit, writer.size);
      const logDir = logDirOf(name);
      return readFromFiles(logDir, await listSegments(logDir), fromSeq, limit, Number.MAX_SAFE_INTEGER);
    },

    async readPacked(name, fromSeq, limit) {
      assertOpen();
      checkLog(name);
      checkRange(fromSeq, limit);
      const writer = await existingWriter(name);
      if (writer !== undefined) return readPackedFromFiles(writer.logDir, writer.segments, fromSeq, limit, writer.size);
      const logDir = logDirOf(name);
      return readPackedFromFiles(logDir, await listSegments(logDir), fromSeq, limit, Number.MAX_SAFE_INTEGER);
    },

    async logs() {
      assertOpen();
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isErrnoException(err, 'ENOENT')) return [];
        throw err;
      }
      return entries
        .filter((e) => e.isDirectory() && isLogName(e.name))
        .map((e) => e.name)
        .sort();
    },

    async appendCheckpoint(name, text) {
      assertOpen();
      checkLog(name);
      const bytes = encodeCheckpoint(text);
      const previous = checkpointChains.get(name) ?? Promise.resolve();
      const next = previous.catch(() => undefined).then(() => writeCheckpoint(name, bytes));
      checkpointChains.set(name, next);
      try {
        await next;
      } finally {
        if (checkpointChains.get(name) === next) checkpointChains.delete(name);
      }
    },

    async readCheckpoints(name) {
      assertOpen();
      checkLog(name);
      const path = join(logDirOf(name), CHECKPOINTS_FILE);
      let data: Buffer;
      try {
        data = await readFile(path);
      } catch (err) {
        if (isErrnoException(err, 'ENOENT')) return [];
        throw err;
      }
      return parseCheckpoints(data, path).texts;
    },

    async ping() {
      if (closed) return false;
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await access(dir, fsConstants.W_OK | fsConstants.X_OK);
        return true;
      } catch {
        return false;
      }
    },

    async close() {
      if (closed) return;
      closed = true;
      const opened = await Promise.allSettled([...writers.values()]);
      for (const result of opened) {
        if (result.status !== 'fulfilled') continue;
        const writer = result.value;
        await writer.flushing;
        await writer.fh?.close().catch(() => undefined);
        writer.fh = undefined;
      }
      writers.clear();
      await Promise.allSettled([...checkpointChains.values()]);
    },
  };
}
