/**
 * The audit log writer: the single writer of one instance's log. It chains records (`log`, `seq`,
 * `prev`), writes each one to a local write-ahead spool before anything else, ships them to the sink
 * in order, and replays what the sink has not acknowledged — after a sink outage or a crash.
 *
 * The spool (`<spool_dir>/<instance>/wal.log`) holds tab-separated lines:
 *   `R\t<canonical record>`  a chained record (the last one is always kept: it anchors the chain)
 *   `I\t<intent JSON>`       a request about to be forwarded (resolved by the record with its id)
 *   `A\t<seq>`               the sink has acknowledged every record up to seq
 * After a crash, an intent without its record becomes a record marked `crash-recovered`, so every
 * request that may have reached an upstream has one. Such an intent stays in the spool until that
 * record is written (if the chain cannot be anchored at start, as soon as it is).
 * Compaction rewrites the spool into a new file while writes wait; a record line may then appear
 * twice (carried over and written again), and reading keeps the first.
 *
 * Admission (no request is forwarded unlogged): requests are refused while the chain's head is
 * unknown (fresh spool and sink unreachable), while the spool cannot be written, after the sink
 * reported a conflict (another writer on this log), and — with `on_failure: reject` — while the sink
 * is down.
 */
import { writeSync } from 'node:fs';
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { canonicalBytes, GENESIS_PREV, hashedText, leafHash } from './canonical.js';
import { chainedText, joinParts, type AuditRecord, type RecordBody, type RecordParts } from './record.js';
import { AuditSinkConflictError, AuditSinkGapError, type AuditSink, type StoredRecord } from './sink.js';

/** A request that is about to be forwarded (written before forwarding). */
export interface Intent {
  readonly id: string;
  /** The record to write if the gateway dies before the request's own record. */
  readonly body: RecordBody;
}

/** Why requests are refused right now, or undefined when they may pass. */
export type AdmissionRefusal = 'unanchored' | 'spool-failed' | 'sink-conflict' | 'sink-down';

/** Counters for metrics and the viewer. */
export interface AuditLogStats {
  /** Records in the log (the next seq). */
  readonly size: number;
  /** Records the sink has acknowledged. */
  readonly acked: number;
  /** Records waiting for the sink (in the spool). */
  readonly spooled: number;
  readonly sinkHealthy: boolean;
  readonly anchored: boolean;
}

/**
 * Hears each record once it is in the spool, in seq order (the live audit viewer). Called on the
 * writer's path: it must only take note and return (queue the record, schedule its own work).
 */
export type AppendListener = (record: StoredRecord) => void;

/** Options for the writer. */
export interface AuditLogOptions {
  readonly sink: AuditSink;
  /** The instance id (the sink's log name). */
  readonly instance: string;
  /** `<seal.origin>/<instance>`, the record's `log` field. */
  readonly origin: string;
  readonly spoolDir: string;
  readonly onFailure: 'spool' | 'reject';
  readonly logger: Logger;
  /**
   * Metrics: `success` with the records the sink has just stored; `failure` with the records of a
   * failed append that had not failed before (each record counts at most once however often it is
   * retried, so a long outage does not inflate the count).
   */
  readonly onAppend?: (result: 'success' | 'failure', records: number) => void;
  /** Called with each batch the sink has just stored, in seq order (the sealer builds its tree from these). */
  readonly onAcked?: (records: readonly StoredRecord[]) => void;
  readonly batchSize?: number;
  /**
   * How long the sink writer lets records gather before it sends a batch smaller than `batchSize`
   * (default 5 ms). A batch costs about as much as its first record (one MULTI to Redis, one fsync
   * in the file sink, one acknowledgement line, one tree update call): at a few thousand requests a
   * second, sending each record as it came cost ~80 µs of CPU per request more than this. Records
   * are in the spool (and the live feed) before they wait here, so nothing is at risk meanwhile.
   */
  readonly shipDelayMs?: number;
  /** Compact the spool once it passes this size (bytes). */
  readonly compactBytes?: number;
  /**
   * Records waiting for the sink kept in memory (default 50,000); beyond that they are read back
   * from the spool, this many at a time, once the sink has taken the ones in memory.
   */
  readonly maxInMemory?: number;
}


const RECORD_PREFIX = Buffer.from('R\t');
const NEWLINE = Buffer.from('\n');

/**
 * Serializes spool appends, batching everything written in one turn into one write (group commit).
 * `swap` replaces the file (compaction) between two writes: nothing is written while it runs, and
 * every later write goes to the new file, so no line can land in the file being replaced.
 *
 * A write that needs no fsync goes out at once when the writer is idle — one write(2) into the
 * page cache, 3–4 µs here — instead of waiting a loop turn and a thread-pool round trip (~30 µs of
 * CPU, measured); when a group commit or a swap is queued it joins that instead, so lines keep
 * their order. Lines are whole lines either way, and the file is opened for appending. A request's
 * intent, which it waits for before being forwarded, thus costs no added latency (docs/adr/0002).
 *
 * A record that needs no fsync (`lazy`) waits for the end of the loop turn instead: nothing waits for
 * it to be written, so the records of every request that ended in one turn go out in one write(2),
 * or with the next write made before then (which takes them first, keeping the order).
 */
function createSpoolWriter(initial: FileHandle, initialSize: number) {
  let fh = initial;
  let buffered: Buffer[] = [];
  let waiters: { resolve: () => void; reject: (e: unknown) => void; sync: boolean }[] = [];
  let scheduled = false;
  /** Group commits and swaps queued or running: while any is, writes must queue behind them. */
  let busy = 0;
  let chain: Promise<void> = Promise.resolve();
  let size = initialSize;
  /** Lazy records not yet handed to a write, and who waits for them. */
  let lazy: Buffer[] = [];
  let lazyWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  let lazyScheduled = false;

  const flush = async () => {
    scheduled = false;
    const data = buffered.length === 1 ? (buffered[0] as Buffer) : Buffer.concat(buffered);
    const ws = waiters;
    buffered = [];
    waiters = [];
    try {
      await fh.write(data);
      size += data.length;
      if (ws.some((w) => w.sync)) await fh.datasync();
      for (const w of ws) w.resolve();
    } catch (err) {
      for (const w of ws) w.reject(err);
    } finally {
      busy -= 1;
    }
  };

  function queue(chunks: readonly Buffer[], sync: boolean): Promise<void> {
    buffered.push(...chunks);
    const p = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject, sync }));
    if (!scheduled) {
      scheduled = true;
      busy += 1;
      chain = chain.then(() => new Promise<void>((r) => setImmediate(r))).then(flush);
    }
    return p;
  }

  /** Writes now when nothing is queued and no fsync is asked for, else queues (see above). */
  function put(own: Buffer[], sync: boolean): Promise<void> {
    // Lazy records written before this write go first, in the same write.
    const carried = lazyWaiters;
    const chunks = lazy.length === 0 ? own : [...lazy, ...own];
    if (lazy.length > 0) {
      lazy = [];
      lazyWaiters = [];
    }
    let done: Promise<void>;
    if (sync || busy > 0 || scheduled) done = queue(chunks, sync);
    else {
      try {
        const data = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
        for (let off = 0; off < data.length; ) off += writeSync(fh.fd, data, off);
        size += data.length;
        done = Promise.resolve();
      } catch (err) {
        done = Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    for (const w of carried) done.then(w.resolve, w.reject);
    return done;
  }

  /** Hands the lazy records to a write (at the end of the loop turn, or before a swap or a drain). */
  function flushLazy(): void {
    lazyScheduled = false;
    if (lazy.length > 0) put([], false).catch(() => undefined); // their waiters hear of a failure
  }

  return {
    get size() {
      return size;
    },
    /** Appends lines; resolves once written to the OS (and fsynced when `sync`). */
    write(lines: string, sync: boolean): Promise<void> {
      return put([Buffer.from(lines, 'utf8')], sync);
    },
    /**
     * Appends the record line `R\t<bytes>\n` (the record is not copied before the write); without
     * `sync` at the end of the loop turn at the latest (see above).
     */
    writeRecord(bytes: Buffer, sync: boolean): Promise<void> {
      if (sync) return put([RECORD_PREFIX, bytes, NEWLINE], true);
      lazy.push(RECORD_PREFIX, bytes, NEWLINE);
      const p = new Promise<void>((resolve, reject) => lazyWaiters.push({ resolve, reject }));
      if (!lazyScheduled) {
        lazyScheduled = true;
        setImmediate(flushLazy);
      }
      return p;
    },
    /**
     * Once the writes queued so far are done, runs `replace` (which writes and renames the new
     * file) and continues on the handle it returns; writes made meanwhile wait for it. When
     * `replace` fails, writing goes on in the old file.
     */
    swap(replace: () => Promise<FileHandle>): Promise<void> {
      flushLazy();
      busy += 1;
      const done = chain
        .then(async () => {
          const next = await replace();
          const old = fh;
          fh = next;
          size = (await next.stat()).size;
          await old.close();
        })
        .finally(() => {
          busy -= 1;
        });
      chain = done.catch(() => undefined);
      return done;
    },
    /** Waits until everything written so far is in the file. */
    drain: (): Promise<void> => {
      flushLazy();
      return chain;
    },
    /** Waits for queued writes, then fsyncs and closes the file. */
    async close(): Promise<void> {
      flushLazy();
      await chain;
      await fh.datasync().catch(() => undefined);
      await fh.close();
    },
  };
}

/**
 * The record: the body with `log`, `prev` and `seq` added where RFC 8785 puts them when the body's
 * keys are sorted (request records are built so), so the canonical serializer need not copy it. A
 * spread (`{...body, log, seq, prev}`) cost ≈ 3.5 µs per record, this ≈ 0.2 µs.
 */
function chained(body: RecordBody, log: string, seq: number, prev: string): AuditRecord {
  const fields = body as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  let placed = 0; // how many of log, prev, seq (in that order) are in `out`
  for (const k of Object.keys(fields)) {
    if (k === 'log' || k === 'prev' || k === 'seq') continue; // the writer's own fields win
    if (placed === 0 && k > 'log') {
      out.log = log;
      placed = 1;
    }
    if (placed === 1 && k > 'prev') {
      out.prev = prev;
      placed = 2;
    }
    if (placed === 2 && k > 'seq') {
      out.seq = seq;
      placed = 3;
    }
    out[k] = fields[k];
  }
  if (placed < 1) out.log = log;
  if (placed < 2) out.prev = prev;
  if (placed < 3) out.seq = seq;
  return out as unknown as AuditRecord;
}

/** Opens (and recovers) the writer for one instance's log. */
export async function openAuditLog(opts: AuditLogOptions) {
  const { sink, instance, logger } = opts;
  const batchSize = opts.batchSize ?? 500;
  const shipDelayMs = opts.shipDelayMs ?? 5;
  const compactBytes = opts.compactBytes ?? 64 * 1024 * 1024;
  const maxInMemory = opts.maxInMemory ?? 50_000;
  const dir = join(opts.spoolDir, instance);
  const walPath = join(dir, 'wal.log');
  await mkdir(dir, { recursive: true, mode: 0o700 });

  // --- read the spool --------------------------------------------------------------------------
  const records: StoredRecord[] = [];
  const intents = new Map<string, Intent>();
  const recordedIds = new Set<string>();
  let walAcked = -1;
  let walText = '';
  try {
    walText = await readFile(walPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  for (const line of walText.split('\n')) {
    if (line.length < 2) continue; // blank, or a torn last line cut before its tag
    const tab = line.indexOf('\t');
    const tag = line.slice(0, tab);
    const rest = line.slice(tab + 1);
    try {
      if (tag === 'R') {
        const rec = JSON.parse(rest) as AuditRecord;
        recordedIds.add(rec.id);
        // A line written again after compaction carried it over: keep the first.
        if (rec.seq <= (records.at(-1)?.seq ?? -1)) continue;
        records.push({ seq: rec.seq, bytes: Buffer.from(rest, 'utf8') });
      } else if (tag === 'I') {
        const intent = JSON.parse(rest) as Intent;
        intents.set(intent.id, intent);
      } else if (tag === 'A') {
        walAcked = Math.max(walAcked, Number(rest));
      }
    } catch {
      logger.warn({ file: walPath }, 'audit spool: ignoring a torn line (written during a crash, never acknowledged)');
    }
  }

  // --- anchor the chain ---------------------------------------------------------------------------
  let size = 0; // next seq
  let prev = GENESIS_PREV;
  let anchored = false;
  let acked = -1; // highest seq the sink holds
  const lastLocal = records.at(-1);
  if (lastLocal !== undefined) {
    size = lastLocal.seq + 1;
    prev = leafHash(lastLocal.bytes).toString('hex');
    anchored = true;
    acked = walAcked;
  }
  let sinkHealthy = false;
  let conflict = false;
  try {
    const head = await sink.head(instance);
    sinkHealthy = true;
    if (lastLocal === undefined) {
      size = head.size;
      prev = head.last === undefined ? GENESIS_PREV : leafHash(head.last).toString('hex');
      anchored = true;
      acked = head.size - 1;
    } else if (head.size > size) {
      conflict = true;
      throw new Error(
        `audit log ${opts.origin}: the sink holds ${head.size} records but this spool ends at ${size - 1}; ` +
          'is another gateway using the same instance_id, or is this an old spool?',
      );
    } else {
      acked = head.size - 1;
    }
  } catch (err) {
    if (conflict) throw err;
    logger.warn({ err: (err as Error).message }, 'audit sink unreachable at start; records are spooled until it returns');
  }

  // In-memory queue of records the sink has not acknowledged, in seq order.
  const pending: StoredRecord[] = records.filter((r) => r.seq > acked);
  /**
   * Records beyond memory (more than maxInMemory waiting for the sink): they live only in the
   * spool, from `fromSeq` on, in lines at or after byte `offset` of the spool file.
   */
  let overflow: { fromSeq: number; offset: number } | undefined;

  // --- compact the spool: keep the anchor, unacknowledged records and open intents -------------
  async function compact(): Promise<void> {
    const tmp = `${walPath}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      const anchor = lastRecord;
      const lines: string[] = [];
      if (anchor !== undefined && !pending.some((p) => p.seq === anchor.seq)) lines.push(`R\t${anchor.bytes.toString('utf8')}`);
      for (const r of pending) lines.push(`R\t${r.bytes.toString('utf8')}`);
      if (overflow !== undefined) {
        // Records beyond memory live only in the old spool: carry them over.
        const { records: more } = await readSpoolRecords(overflow.fromSeq, overflow.offset, Number.POSITIVE_INFINITY);
        for (const r of more) lines.push(`R\t${r.bytes.toString('utf8')}`);
      }
      lines.push(`A\t${acked}`);
      for (const i of openIntents.values()) lines.push(`I\t${i}`);
      await fh.write(`${lines.join('\n')}\n`);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, walPath);
  }

  /**
   * Up to `limit` records from `fromSeq` on, read from the spool file's byte `offset` (a line start)
   * to its end, and the offset of the first line not taken. Only lines at or after `offset` are
   * read and parsed, so reading a backlog back in costs what the backlog costs, not the whole file.
   */
  async function readSpoolRecords(fromSeq: number, offset: number, limit: number): Promise<{ records: StoredRecord[]; next: number }> {
    const out: StoredRecord[] = [];
    const fh = await open(walPath, 'r');
    let data: Buffer;
    try {
      const length = Math.max(0, (await fh.stat()).size - offset);
      data = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(data, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      data = data.subarray(0, got);
    } finally {
      await fh.close();
    }
    let pos = 0;
    for (let nl = data.indexOf(0x0a); nl !== -1; pos = nl + 1, nl = data.indexOf(0x0a, pos)) {
      if (data[pos] !== 0x52 || data[pos + 1] !== 0x09) continue; // not `R\t`
      const bytes = Buffer.from(data.subarray(pos + 2, nl));
      const seq = (JSON.parse(bytes.toString('utf8')) as { seq: number }).seq;
      // A line written again after compaction carried it over: keep the first.
      if (seq < fromSeq || seq <= (out.at(-1)?.seq ?? -1)) continue;
      if (out.length >= limit) break;
      out.push({ seq, bytes });
    }
    return { records: out, next: offset + pos };
  }

  let lastRecord: StoredRecord | undefined = lastLocal;
  /** Intents not yet resolved by their record: id → the intent's JSON (as in its spool line). */
  const openIntents = new Map<string, string>();
  const listeners = new Set<AppendListener>();
  // Crash recovery: intents whose record never made it. They stay open, so the compaction below
  // (and any later one) keeps them, until their crash-recovered record is in the spool.
  const orphans = [...intents.values()].filter((i) => !recordedIds.has(i.id));
  for (const o of orphans) openIntents.set(o.id, JSON.stringify(o));
  await compact();
  const walHandle = await open(walPath, 'a', 0o600);
  const spool = createSpoolWriter(walHandle, (await walHandle.stat()).size);
  let spoolFailed = false;

  // --- the sink writer --------------------------------------------------------------------------
  let shipping = false;
  let stopped = false;
  let backoffMs = 100;
  let retryTimer: NodeJS.Timeout | undefined;
  /** The highest seq already counted as a failed append (metrics count each record once). */
  let failureCountedThrough = -1;

  async function ship(): Promise<void> {
    if (shipping || stopped || conflict) return;
    shipping = true;
    try {
      for (;;) {
        if (pending.length === 0 && overflow !== undefined) {
          // Records appended meanwhile go to the spool only, as long as `overflow` is set.
          const from = overflow;
          const { records: more, next } = await readSpoolRecords(from.fromSeq, from.offset, maxInMemory);
          for (const r of more) if (r.seq > acked) pending.push(r);
          const last = more.at(-1)?.seq ?? from.fromSeq - 1;
          // Caught up once the newest chained record was read; else read on from there next time.
          overflow = last >= size - 1 ? undefined : { fromSeq: last + 1, offset: next };
        }
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- close() sets it while this loop awaits
        if (pending.length === 0 || stopped) break;
        if (pending.length < batchSize && shipDelayMs > 0 && sinkHealthy) {
          await new Promise((resolve) => setTimeout(resolve, shipDelayMs));
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- close() sets it while this loop awaits
          if (stopped) break;
        }
        const batch = pending.slice(0, batchSize);
        try {
          await sink.append(instance, batch);
        } catch (err) {
          const lastSeq = batch.at(-1)?.seq ?? failureCountedThrough;
          const fresh = lastSeq - Math.max(failureCountedThrough, (batch[0]?.seq ?? 0) - 1);
          if (fresh > 0) opts.onAppend?.('failure', fresh);
          failureCountedThrough = Math.max(failureCountedThrough, lastSeq);
          if (err instanceof AuditSinkConflictError || err instanceof AuditSinkGapError) {
            conflict = true;
            logger.error(
              { err: err.message },
              err instanceof AuditSinkGapError
                ? 'audit sink holds fewer records than this gateway wrote: the sink lost data (a Redis without persistence restarted?) or another writer uses this instance_id. Requests are refused. Keep the spool, run `portcullis audit verify`, then either restore the sink or start a new log with a new server.instance_id'
                : 'audit sink holds a different record at this position: another writer uses this instance_id. Requests are refused until an operator resolves it',
            );
            return;
          }
          if (sinkHealthy) logger.warn({ err: (err as Error).message, spooled: pending.length }, 'audit sink append failed; spooling and retrying');
          sinkHealthy = false;
          clearTimeout(retryTimer);
          retryTimer = setTimeout(() => void ship(), backoffMs);
          retryTimer.unref();
          backoffMs = Math.min(backoffMs * 2, 5_000);
          return;
        }
        if (!sinkHealthy) logger.info({ replayed: batch.length }, 'audit sink is back; replaying the spool');
        sinkHealthy = true;
        anchored = true;
        backoffMs = 100;
        pending.splice(0, batch.length);
        acked = batch.at(-1)?.seq ?? acked;
        opts.onAppend?.('success', batch.length);
        opts.onAcked?.(batch);
        void spool.write(`A\t${acked}\n`, false).catch(() => undefined);
      }
      if (spool.size > compactBytes && pending.length === 0 && overflow === undefined) await rotateSpool();
    } finally {
      shipping = false;
    }
  }

  /** Compacts the spool into a new file; writes wait meanwhile, so none lands in the old one. */
  async function rotateSpool(): Promise<void> {
    const state = { renamed: false };
    try {
      await spool.swap(async () => {
        await compact();
        state.renamed = true;
        return open(walPath, 'a', 0o600);
      });
    } catch (err) {
      if (state.renamed) {
        // The spool file in use is no longer the one on disk: nothing written now would survive.
        spoolFailed = true;
        logger.error({ err }, 'audit spool could not be reopened after compaction: requests are refused');
      } else {
        logger.warn({ err }, 'audit spool compaction failed; the spool keeps growing');
      }
    }
  }

  /** Anchors the chain once the sink answers (fresh spool, sink down at start). */
  async function tryAnchor(): Promise<void> {
    if (anchored || stopped) return;
    try {
      const head = await sink.head(instance);
      size = head.size;
      prev = head.last === undefined ? GENESIS_PREV : leafHash(head.last).toString('hex');
      acked = head.size - 1;
      anchored = true;
      sinkHealthy = true;
      logger.info({ size }, 'audit log anchored');
    } catch {
      const t = setTimeout(() => void tryAnchor(), 1_000);
      t.unref();
      return;
    }
    await recoverOrphans().catch((err: unknown) => {
      logger.error({ err }, 'audit log: crash-recovered records could not be spooled');
    });
  }

  // --- appending ------------------------------------------------------------------------------
  const originJson = JSON.stringify(opts.origin);

  /** Makes the record with these bytes (chained as record `size`) the head of the chain. */
  function link(bytes: Buffer, leaf: Buffer = leafHash(bytes)): StoredRecord {
    const seq = size;
    size += 1;
    prev = leaf.toString('hex');
    return { seq, bytes, leaf };
  }

  function checkAnchored(): void {
    if (!anchored) throw new Error('audit log is not anchored yet (sink unreachable since start)');
  }

  /** Spools a chained record, then hands it to the listeners and the sink writer. */
  async function spoolRecord(rec: StoredRecord, id: string, durable: boolean): Promise<StoredRecord> {
    lastRecord = rec;
    openIntents.delete(id);
    const written = spool.writeRecord(rec.bytes, durable);
    if (pending.length < maxInMemory && overflow === undefined) pending.push(rec);
    else overflow ??= { fromSeq: rec.seq, offset: spool.size }; // its line lands at or after what is written now
    try {
      await written;
    } catch (err) {
      spoolFailed = true;
      logger.error({ err }, 'audit spool write failed: requests are refused');
      throw err;
    }
    for (const listener of listeners) {
      try {
        listener(rec);
      } catch (err) {
        logger.warn({ err }, 'audit append listener failed; the record is written regardless');
      }
    }
    void ship();
    return rec;
  }

  async function append(body: RecordBody, durable: boolean): Promise<StoredRecord> {
    checkAnchored();
    const bytes = canonicalBytes(chained(body, opts.origin, size, prev));
    return spoolRecord(link(bytes), body.id, durable);
  }

  /** {@link append} for a record given as canonical members (see RecordParts): no object is built. */
  async function appendParts(parts: RecordParts, durable: boolean): Promise<StoredRecord> {
    checkAnchored();
    const { bytes, leaf } = hashedText(chainedText(parts, originJson, prev, size));
    return spoolRecord(link(bytes, leaf), parts.id, durable);
  }

  /** Writes an intent line (its body already serialized); see the returned `intent`. */
  async function writeIntent(id: string, bodyJson: string, durable: boolean): Promise<void> {
    const line = `{"id":${JSON.stringify(id)},"body":${bodyJson}}`;
    openIntents.set(id, line);
    try {
      await spool.write(`I\t${line}\n`, durable);
    } catch (err) {
      spoolFailed = true;
      openIntents.delete(id);
      throw err;
    }
  }

  /** Writes the crash-recovered record of every orphaned intent still open (needs the anchor). */
  async function recoverOrphans(): Promise<void> {
    const unresolved = orphans.filter((o) => openIntents.has(o.id));
    for (const o of unresolved) {
      await append({ ...o.body, decision: 'error', reason: 'crash-recovered' }, true);
    }
    if (unresolved.length > 0) logger.warn({ recovered: unresolved.length }, 'audit log: wrote crash-recovered records for requests interrupted by a crash');
  }

  if (!anchored) void tryAnchor();
  else await recoverOrphans();
  void ship();

  return {
    /** Appends one record; resolves once it is in the spool (fsynced when `durable`). */
    append,
    /**
     * Writes a request's intent before it is forwarded; with `durable` it is fsynced first (strict
     * routes). Its own record later resolves it.
     */
    intent(intent: Intent, durable: boolean): Promise<void> {
      return writeIntent(intent.id, JSON.stringify(intent.body), durable);
    },
    /** {@link intent} with the body as canonical members (a request record's, before forwarding). */
    intentParts(parts: RecordParts, durable: boolean): Promise<void> {
      return writeIntent(parts.id, `{${joinParts(parts)}}`, durable);
    },
    appendParts,
    /** Why a request may not be forwarded now, or undefined. */
    admission(): AdmissionRefusal | undefined {
      if (conflict) return 'sink-conflict';
      if (spoolFailed) return 'spool-failed';
      if (!anchored) return 'unanchored';
      if (opts.onFailure === 'reject' && !sinkHealthy) return 'sink-down';
      return undefined;
    },
    /**
     * Calls `listener` with every record appended from now on, once it is in the spool, in seq order
     * (group commits resolve in order). Returns the function that stops it.
     */
    subscribe(listener: AppendListener): () => void {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    stats(): AuditLogStats {
      return { size, acked: acked + 1, spooled: size - (acked + 1), sinkHealthy, anchored };
    },
    /** Waits until the sink has every record (or `timeoutMs` passes); true when it has. */
    async flush(timeoutMs = 5_000): Promise<boolean> {
      const deadline = Date.now() + timeoutMs;
      await spool.drain();
      while (acked + 1 < size && Date.now() < deadline) {
        void ship();
        await new Promise((r) => setTimeout(r, 20));
      }
      return acked + 1 >= size;
    },
    /** Ships what it can (up to 2 s), then closes the spool. */
    async close(): Promise<void> {
      const deadline = Date.now() + 2_000;
      await spool.drain();
      while (acked + 1 < size && Date.now() < deadline && sinkHealthy) {
        void ship();
        await new Promise((r) => setTimeout(r, 20));
      }
      stopped = true;
      clearTimeout(retryTimer);
      await spool.close();
    },
  };
}

/** An open audit log writer. */
export type AuditLog = Awaited<ReturnType<typeof openAuditLog>>;
