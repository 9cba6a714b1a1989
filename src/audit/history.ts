/**
 * Paging through a log's history newest first, from either sink (the audit viewer's table). A sink
 * reads forward from a seq, so a page is found by reading windows backwards from an upper bound and
 * keeping the matches; every call reads at most `scanBudget` records, and says where the next call
 * goes on (`next`), so a filter that matches rarely never turns into one unbounded scan.
 *
 * Times: records are appended in time order (`ts` is taken when the record is built, and the writer
 * chains synchronously), so a `until` bound is found by binary search on seq, and the scan stops
 * below a window whose newest record is older than `since`. Records written after a crash for
 * interrupted requests (`crash-recovered`) carry their request's older time: they may be left out of
 * a time-bounded page, never shown out of their bounds.
 */
import type { AuditSink, StoredRecord } from './sink.js';
import { viewerMatches, type ViewerFilter } from './viewer-filter.js';

/** One record of a page: its seq and stored JSON. */
export interface HistoryItem {
  readonly seq: number;
  readonly text: string;
}

/** A page of matches, newest first. */
export interface HistoryPage {
  readonly log: string;
  /** The log's size when read (the next seq it will append). */
  readonly size: number;
  readonly items: HistoryItem[];
  /** The exclusive upper bound for the next (older) page; null when the scan reached the start. */
  readonly next: number | null;
  /** Records read to build this page. */
  readonly scanned: number;
}

/** How to page. */
export interface HistoryQuery {
  readonly filter: ViewerFilter;
  /** Exclusive upper bound on seq (default: the log's size, i.e. from the newest record). */
  readonly before?: number | undefined;
  /** Matches wanted (the page may be shorter when the scan budget runs out first). */
  readonly limit: number;
  /** Records read at most per call. Default 20,000. */
  readonly scanBudget?: number;
  /** Records per sink read. Default 1,000. */
  readonly window?: number;
}

const TS_RE = /"ts":"([^"]*)"/;

/** The `ts` of a stored record in epoch ms (NaN when absent). Canonical JSON has no spaces, so a scan finds it. */
export function recordTime(text: string): number {
  const m = TS_RE.exec(text);
  return m?.[1] === undefined ? Number.NaN : Date.parse(m[1]);
}

/** The stored JSON parsed, or undefined when it is not JSON. */
export function parseRecord(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The smallest seq in [0, size) whose record's `ts` is at or after `at` (size when none), by binary
 * search: one one-record read per step.
 */
export async function firstSeqAtOrAfter(sink: Pick<AuditSink, 'read'>, log: string, size: number, at: number): Promise<number> {
  let lo = 0;
  let hi = size;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const [rec] = await sink.read(log, mid, 1);
    if (rec === undefined) {
      hi = mid;
      continue;
    }
    const t = recordTime(rec.bytes.toString('utf8'));
    if (!Number.isNaN(t) && t < at) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Reads one page of `log`'s matches, newest first. */
export async function readHistory(sink: Pick<AuditSink, 'read' | 'head'>, log: string, q: HistoryQuery): Promise<HistoryPage> {
  const budget = q.scanBudget ?? 20_000;
  const window = q.window ?? 1_000;
  const { size } = await sink.head(log);
  let end = Math.max(0, Math.min(q.before ?? size, size));
  const { since, until } = q.filter.base;
  if (until !== undefined && end > window) end = Math.min(end, await firstSeqAtOrAfter(sink, log, end, until));
  const items: HistoryItem[] = [];
  let scanned = 0;
  while (end > 0 && items.length < q.limit && scanned < budget) {
    const from = Math.max(0, end - Math.min(window, budget - scanned));
    const page: StoredRecord[] = await sink.read(log, from, end - from);
    if (page.length === 0) break;
    scanned += page.length;
    let newest = Number.NaN;
    for (let i = page.length - 1; i >= 0; i--) {
      const rec = page[i];
      if (rec === undefined || rec.seq >= end) continue;
      const text = rec.bytes.toString('utf8');
      if (Number.isNaN(newest)) newest = recordTime(text);
      if (!viewerMatches(q.filter, text, () => parseRecord(text))) continue;
      items.push({ seq: rec.seq, text });
      if (items.length >= q.limit) return { log, size, items, next: rec.seq > 0 ? rec.seq : null, scanned };
    }
    end = from;
    // Everything below this window is older still: nothing there can be at or after `since`.
    if (since !== undefined && !Number.isNaN(newest) && newest < since) end = 0;
  }
  return { log, size, items, next: end > 0 ? end : null, scanned };
}

/** One record by seq, or undefined when the log does not hold it. */
export async function readOne(sink: Pick<AuditSink, 'read'>, log: string, seq: number): Promise<HistoryItem | undefined> {
  const [rec] = await sink.read(log, seq, 1);
  return rec?.seq === seq ? { seq, text: rec.bytes.toString('utf8') } : undefined;
}
