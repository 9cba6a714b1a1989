/**
 * `portcullis audit tail [--config FILE] [filters] [--limit N]`: prints the last N matching records,
 * then follows the sink — every `pollMs` it asks each log for its head and prints what is new, and
 * picks up logs that appear meanwhile (read from their first record) — until SIGINT/SIGTERM (or the
 * injected signal) stops it with exit 0.
 *
 * Output lines are stored records verbatim, as for `audit query`. The backlog is merged across logs
 * by `ts`; followed records are printed per log in `seq` order as each poll finds them.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { RecordFilter } from '../audit/record-filter.js';
import type { AuditSink } from '../audit/sink.js';
import {
  AUDIT_READ_OPTIONS_HELP,
  errorText,
  matchPage,
  readFailure,
  printMatches,
  setUpAuditRead,
  type AuditReadOptions,
  type Match,
} from './audit-query.js';
import type { CliIo } from './io.js';

/** Dependencies of {@link runAuditTail}; tests inject the stop signal and a short poll. */
export interface AuditTailOptions extends AuditReadOptions {
  /**
   * Stops following (exit 0) when aborted. Default: SIGINT or SIGTERM of this process (handlers are
   * installed for the command's lifetime only).
   */
  readonly signal?: AbortSignal;
  /** How often each log's head is polled. Default 500 ms. */
  readonly pollMs?: number;
  /** Called after each completed poll (tests wait on it). */
  readonly onPoll?: () => void;
}

const USAGE = `Usage: portcullis audit tail [--config FILE] [filters] [--limit N]

Prints the last N audit records that match every filter given, then follows new ones as they are
written (every log in the sink, also logs that appear later) until interrupted (Ctrl-C, SIGTERM).
Lines are the records' stored canonical JSON, as for audit query.

Options:
${AUDIT_READ_OPTIONS_HELP}
  --limit N, -n N   how many earlier records to print first (default 10; 0 = only new ones)

Exit status: 0 when interrupted, 1 config invalid or the sink could not be read at start,
2 bad command line. Read errors while following are reported and retried.
`;

/**
 * The last `n` records of `log` before `size` that pass `filter`, oldest first. Walks back in
 * windows that double in size, reading each window forward in pages: bounded memory, and sequential
 * reads (cheap for the file sink, which finds a seq by scanning forward).
 */
async function lastMatches(
  sink: AuditSink,
  log: string,
  size: number,
  filter: RecordFilter,
  n: number,
  pageSize: number,
  io: CliIo,
): Promise<Match[]> {
  let found: Match[] = [];
  let end = size;
  let window = pageSize;
  while (end > 0 && found.length < n) {
    const from = Math.max(0, end - window);
    const need = n - found.length;
    let kept: Match[] = [];
    for (let pos = from; pos < end; ) {
      const page = await sink.read(log, pos, Math.min(pageSize, end - pos));
      const last = page.at(-1);
      if (last === undefined) break;
      kept.push(...matchPage(log, page, filter, io, 'tail'));
      if (kept.length > 2 * need) kept = kept.slice(-need);
      pos = last.seq + 1;
    }
    found = [...kept.slice(-need), ...found];
    end = from;
    window *= 2;
  }
  return found;
}

/** Orders backlog records by time, then log, then seq (records without a time first). */
function byTime(a: Match, b: Match): number {
  const ta = Number.isNaN(a.at) ? -Infinity : a.at;
  const tb = Number.isNaN(b.at) ? -Infinity : b.at;
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (a.log !== b.log) return a.log < b.log ? -1 : 1;
  return a.seq - b.seq;
}

/**
 * Runs `audit tail`. `args` are the words after `audit tail`.
 * @returns 0 once stopped, 1 when the config or the sink failed at start, 2 on a usage error.
 */
export async function runAuditTail(args: readonly string[], io: CliIo, opts: AuditTailOptions = {}): Promise<number> {
  const setup = await setUpAuditRead('tail', args, USAGE, io, opts, 10);
  if (typeof setup === 'number') return setup;
  const { filter, limit, sink, where, pageSize } = setup;
  const pollMs = opts.pollMs ?? 500;

  let signal = opts.signal;
  let removeHandlers = (): void => undefined;
  if (signal === undefined) {
    const controller = new AbortController();
    const stop = () => {
      controller.abort();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    removeHandlers = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    };
    signal = controller.signal;
  }
  const stopSignal = signal;
  /** Read anew each time (an abort can happen during any await). */
  const stopped = (): boolean => stopSignal.aborted;

  const listLogs = async (): Promise<string[]> => (filter.instance !== undefined ? [filter.instance] : sink.logs());
  /** Next seq to print, per log. */
  const positions = new Map<string, number>();
  try {
    // ---- the backlog ---------------------------------------------------------------------------
    try {
      const backlog: Match[] = [];
      for (const log of await listLogs()) {
        const head = await sink.head(log);
        positions.set(log, head.size);
        if (limit > 0) backlog.push(...(await lastMatches(sink, log, head.size, filter, limit, pageSize, io)));
      }
      printMatches(backlog.sort(byTime).slice(-limit), io);
    } catch (err) {
      io.stderr(`audit tail: cannot read ${where}: ${readFailure(sink, err)}\n`);
      return 1;
    }

    // ---- follow --------------------------------------------------------------------------------
    let failing = false;
    while (!stopped()) {
      try {
        await delay(pollMs, undefined, { signal: stopSignal });
      } catch {
        break; // aborted
      }
      try {
        for (const log of await listLogs()) {
          if (stopped()) break;
          const head = await sink.head(log);
          let pos = positions.get(log) ?? 0;
          if (head.size < pos) {
            io.stderr(`audit tail: log ${log} now holds ${head.size} records, fewer than the ${pos} seen; following from its end (run portcullis audit verify)\n`);
            pos = head.size;
          }
          while (pos < head.size && !stopped()) {
            const page = await sink.read(log, pos, Math.min(pageSize, head.size - pos));
            const last = page.at(-1);
            if (last === undefined) break;
            printMatches(matchPage(log, page, filter, io, 'tail'), io);
            pos = last.seq + 1;
          }
          positions.set(log, pos);
        }
        if (failing) io.stderr(`audit tail: ${where} answers again; following\n`);
        failing = false;
      } catch (err) {
        if (!failing) io.stderr(`audit tail: cannot read ${where}: ${errorText(err)}; retrying every ${pollMs} ms\n`);
        failing = true;
      }
      opts.onPoll?.();
    }
    return 0;
  } finally {
    removeHandlers();
    await sink.close().catch(() => undefined);
  }
}
