/**
 * Seals an instance's audit log: keeps the RFC 9162 tree over the records the sink has acknowledged
 * (a compact range, O(log n) state), and writes signed C2SP checkpoints — every `seal.every` while
 * records arrive, whenever `seal.max_records` are unsealed, at least once a minute when idle (so
 * silence is provable), and at shutdown — to the sink first, then to `witness_dir`, outside the sink.
 *
 * Checkpoint `n+1` carries the SHA-256 of checkpoint `n`'s note, so checkpoints form their own chain.
 * All work runs on one queue: initialisation (rebuilding the tree from the sink), acknowledged
 * records, and sealing never interleave.
 */
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { leafHash } from './canonical.js';
import { checkpointHash, formatCheckpoint, parseCheckpoint } from './checkpoint.js';
import { CompactRange } from './merkle.js';
import { openNote, signNote, type NoteSigner } from './signed-note.js';
import type { AuditSink, StoredRecord } from './sink.js';

/** Options for the sealer. */
export interface SealerOptions {
  readonly sink: AuditSink;
  readonly instance: string;
  /** The log's origin line (`<seal.origin>/<instance>`). */
  readonly origin: string;
  /** Who signs: the current key, plus the previous one while a rotation is being sealed. */
  readonly signers: readonly NoteSigner[];
  readonly everyMs: number;
  readonly maxRecords: number;
  readonly witnessDir: string;
  readonly logger: Logger;
  readonly now?: () => number;
  /** The longest silence between checkpoints (default 60 s). */
  readonly heartbeatMs?: number;
  /** During a rotation: the new key's verifier key (vkey), announced in each checkpoint as `key <vkey>`. */
  readonly introduceKey?: string;
}

/** What the sealer reports for metrics. */
export interface SealerStats {
  readonly treeSize: number;
  readonly checkpoints: number;
  /** Epoch ms of the newest checkpoint written by this process or found at start; 0 when none. */
  readonly lastCheckpointAt: number;
}

const GENESIS = '0'.repeat(64);
const READ_PAGE = 5_000;

/** Creates the sealer; call `start()` once the audit log is open. */
export function createSealer(opts: SealerOptions) {
  const now = opts.now ?? Date.now;
  const heartbeatMs = opts.heartbeatMs ?? 60_000;
  const witnessDir = join(opts.witnessDir, opts.instance);
  let range: CompactRange | undefined;
  let sealedSize = -1;
  let number = -1; // the newest checkpoint's number (the first is 0)
  let prevHash = GENESIS;
  let lastCheckpointAt = 0;
  let lastSealAttempt = 0;
  let queue: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  /** Acknowledged before the tree was rebuilt from the sink; applied right after. */
  const backlog: StoredRecord[] = [];
  let sealQueued = false;

  function enqueue(work: () => Promise<void>): Promise<void> {
    queue = queue.then(work).catch((err: unknown) => {
      opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'audit sealing step failed; it is retried');
    });
    return queue;
  }

  /** Rebuilds the tree from the sink and finds the newest checkpoint (sink or witness). */
  async function init(): Promise<void> {
    if (range !== undefined) return;
    const head = await opts.sink.head(opts.instance);
    const r = new CompactRange();
    while (r.size < head.size) {
      const page = await opts.sink.read(opts.instance, r.size, READ_PAGE);
      if (page.length === 0) break;
      for (const rec of page) if (rec.seq === r.size) r.append(leafHash(rec.bytes));
    }
    const notes = await opts.sink.readCheckpoints(opts.instance);
    const witnessed = await newestWitness();
    const newest = [notes.at(-1), witnessed].filter((n): n is string => n !== undefined);
    for (const note of newest) {
      const opened = openNote(note, []);
      if ('error' in opened) continue;
      const cp = parseCheckpoint(opened.text);
      if ('error' in cp) continue;
      if (cp.number >= number) {
        number = cp.number;
        prevHash = checkpointHash(note);
        lastCheckpointAt = Date.parse(cp.time);
        sealedSize = cp.size;
      }
    }
    for (const rec of backlog) if (rec.seq === r.size) r.append(leafHash(rec.bytes));
    backlog.length = 0;
    range = r;
  }

  async function newestWitness(): Promise<string | undefined> {
    let names: string[];
    try {
      names = (await readdir(witnessDir)).filter((n) => n.endsWith('.note')).sort();
    } catch {
      return undefined;
    }
    const last = names.at(-1);
    return last === undefined ? undefined : readFile(join(witnessDir, last), 'utf8');
  }

  async function seal(): Promise<void> {
    await init();
    const r = range;
    if (r === undefined || opts.signers.length === 0) return;
    lastSealAttempt = now();
    // Size and root are taken now: records acknowledged while this checkpoint is written wait for the next.
    const size = r.size;
    const text = formatCheckpoint({
      origin: opts.origin,
      size,
      root: r.root(),
      number: number + 1,
      prevHash,
      time: new Date(now()).toISOString(),
      ...(opts.introduceKey === undefined ? {} : { extensions: [`key ${opts.introduceKey}`] }),
    });
    const note = signNote(text, [...opts.signers]);
    // The sink first: a witness copy must never be ahead of what the sink can show.
    await opts.sink.appendCheckpoint(opts.instance, note);
    number += 1;
    prevHash = checkpointHash(note);
    sealedSize = size;
    lastCheckpointAt = now();
    await mkdir(witnessDir, { recursive: true, mode: 0o700 });
    const file = join(witnessDir, `${String(number).padStart(12, '0')}.note`);
    await writeFile(`${file}.tmp`, note, { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  function due(): boolean {
    const r = range;
    if (r === undefined) return true;
    const unsealed = r.size - Math.max(sealedSize, 0);
    if (unsealed > 0 && now() - lastCheckpointAt >= opts.everyMs) return true;
    return now() - lastCheckpointAt >= heartbeatMs && now() - lastSealAttempt >= Math.min(heartbeatMs, 5_000);
  }

  return {
    /** Starts the periodic checks (seal.every, heartbeat). */
    start(): void {
      const tick = Math.max(50, Math.min(opts.everyMs, 1_000));
      timer = setInterval(() => {
        if (!closed && due()) void enqueue(seal);
      }, tick);
      timer.unref();
      void enqueue(init);
    },
    /** Records the sink has just acknowledged, in seq order. */
    acknowledged(records: readonly StoredRecord[]): void {
      // The tree is updated at once (not behind queued seals), so sealing keeps up with the writer.
      const r = range;
      if (r === undefined) {
        backlog.push(...records);
        void enqueue(init);
        return;
      }
      for (const rec of records) if (rec.seq === r.size) r.append(rec.leaf ?? leafHash(rec.bytes));
      if (r.size - Math.max(sealedSize, 0) >= opts.maxRecords && !sealQueued) {
        sealQueued = true;
        void enqueue(async () => {
          sealQueued = false;
          await seal();
        });
      }
    },
    /** Seals now (tests, shutdown). */
    sealNow(): Promise<void> {
      return enqueue(seal);
    },
    stats(): SealerStats {
      return { treeSize: range?.size ?? 0, checkpoints: number + 1, lastCheckpointAt };
    },
    /** A final checkpoint, then stops. */
    async close(): Promise<void> {
      closed = true;
      clearInterval(timer);
      await enqueue(seal);
    },
  };
}

/** An instance's sealer. */
export type Sealer = ReturnType<typeof createSealer>;
