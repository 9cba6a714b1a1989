/**
 * The audit viewer's filters and history paging, against a real file sink (small segments, so that
 * pages cross segment boundaries): newest first, cursors, scan budgets, time bounds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../../src/audit/canonical.js';
import { createFileSink } from '../../../src/audit/file-sink.js';
import { firstSeqAtOrAfter, readHistory, readOne, recordTime } from '../../../src/audit/history.js';
import type { AuditSink } from '../../../src/audit/sink.js';
import { parseViewerFilter, viewerMatches, type ViewerFilter } from '../../../src/audit/viewer-filter.js';

const LOG = 'gw-h';
const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const N = 300;

/** Record i: one per second; every 10th a deny of bob on route admin with 403, the rest alice on home with 200. */
function record(i: number): Record<string, unknown> {
  const deny = i % 10 === 0;
  return {
    v: 1,
    log: `test/${LOG}`,
    seq: i,
    prev: '0'.repeat(64),
    id: `req-${i}`,
    ts: new Date(T0 + i * 1000).toISOString(),
    kind: 'http',
    route: deny ? 'admin' : 'home',
    decision: deny ? 'deny' : 'allow',
    identity: { user: deny ? 'bob' : 'alice', email: deny ? 'Bob@Example.com' : 'alice@example.com', groups: [], provider: 'local', auth: 'cookie' },
    request: { method: 'GET', host: 'localhost', path: i === 123 ? '/needle/here' : `/p/${i}` },
    response: { status: deny ? 403 : 200 },
    duration_us: 1000 + i,
  };
}

let dir: string;
let sink: AuditSink;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-history-'));
  sink = createFileSink({ dir, segmentBytes: 8192 });
  const records = Array.from({ length: N }, (_, i) => ({ seq: i, bytes: canonicalBytes(record(i)) }));
  await sink.append(LOG, records);
});

afterAll(async () => {
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
});

function filter(query: string, now = T0 + N * 1000): ViewerFilter {
  const r = parseViewerFilter(new URLSearchParams(query), now);
  if (!r.ok) throw new Error(r.errors.join('; '));
  return r.filter;
}

const seqs = (items: readonly { seq: number }[]) => items.map((i) => i.seq);

describe('viewer filters', () => {
  it('parses the CLI filters without dashes, plus status class and free text; empty fields are ignored', () => {
    const r = parseViewerFilter(new URLSearchParams('user=alice&route=&decision=deny&status=4xx&q=%20Needle%20&since=2026-11-26T10:00:00Z'), T0);
    expect(r).toEqual({ ok: true, filter: { base: { user: 'alice', decision: 'deny', since: T0 }, status: 4, text: 'needle' } });
  });

  it('reports every bad field, in form terms', () => {
    const r = parseViewerFilter(new URLSearchParams('decision=maybe&status=4x&since=yesterday'), T0);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toHaveLength(3);
    expect(r.errors.join('\n')).toMatch(/^decision must be one of/m);
    expect(r.errors.join('\n')).toMatch(/^since expects/m);
    expect(r.errors.join('\n')).not.toContain('--');
  });

  it.each([
    ['', 0, true],
    ['status=2xx', 1, true],
    ['status=2xx', 10, false],
    ['status=4xx&decision=deny', 10, true],
    ['user=bob@example.com', 10, true],
    ['user=bob@example.com', 11, false],
    ['q=NEEDLE', 123, true],
    ['q=needle', 124, false],
    ['route=admin&user=alice', 10, false],
  ])('%j on record %d → %s', (query, i, expected) => {
    const text = canonicalBytes(record(i)).toString('utf8');
    expect(viewerMatches(filter(query), text, () => JSON.parse(text) as unknown)).toBe(expected);
  });

  it('a record that is not JSON matches only the empty filter', () => {
    expect(viewerMatches(filter(''), '{oops', () => undefined)).toBe(true);
    expect(viewerMatches(filter('status=2xx'), '{oops', () => undefined)).toBe(false);
  });
});

describe('history, newest first', () => {
  it('pages backwards with a cursor until the start of the log', async () => {
    const first = await readHistory(sink, LOG, { filter: filter(''), limit: 100 });
    expect(first.size).toBe(N);
    expect(seqs(first.items)).toEqual(Array.from({ length: 100 }, (_, i) => N - 1 - i));
    expect(first.next).toBe(200);
    const second = await readHistory(sink, LOG, { filter: filter(''), limit: 100, before: first.next ?? 0 });
    expect(seqs(second.items)[0]).toBe(199);
    const third = await readHistory(sink, LOG, { filter: filter(''), limit: 150, before: second.next ?? 0 });
    expect(seqs(third.items)).toEqual(Array.from({ length: 100 }, (_, i) => 99 - i));
    expect(third.next).toBeNull();
  });

  it('keeps only matches, and says where to go on', async () => {
    const page = await readHistory(sink, LOG, { filter: filter('decision=deny'), limit: 5, window: 64 });
    expect(seqs(page.items)).toEqual([290, 280, 270, 260, 250]);
    expect(page.next).toBe(250);
    const more = await readHistory(sink, LOG, { filter: filter('decision=deny'), limit: 100, before: 250 });
    expect(seqs(more.items)).toEqual([240, 230, 220, 210, 200, 190, 180, 170, 160, 150, 140, 130, 120, 110, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 0]);
    expect(more.next).toBeNull();
  });

  it('stops at the scan budget and returns a cursor instead of scanning on', async () => {
    const page = await readHistory(sink, LOG, { filter: filter('q=needle'), limit: 10, scanBudget: 100, window: 50 });
    expect(page.items).toEqual([]);
    expect(page.scanned).toBe(100);
    expect(page.next).toBe(200);
    const next = await readHistory(sink, LOG, { filter: filter('q=needle'), limit: 10, scanBudget: 100, window: 50, before: 200 });
    expect(seqs(next.items)).toEqual([123]);
  });

  it('finds the until bound by binary search and stops below since', async () => {
    const since = new Date(T0 + 100_000).toISOString();
    const until = new Date(T0 + 110_000).toISOString();
    const page = await readHistory(sink, LOG, { filter: filter(`since=${since}&until=${until}`), limit: 100, window: 4 });
    expect(seqs(page.items)).toEqual([109, 108, 107, 106, 105, 104, 103, 102, 101, 100]);
    expect(page.next).toBeNull();
    // The scan never went through the 190 records above `until`, nor far below `since`.
    expect(page.scanned).toBeLessThanOrEqual(16);
    expect(await firstSeqAtOrAfter(sink, LOG, N, T0 + 110_000)).toBe(110);
    expect(await firstSeqAtOrAfter(sink, LOG, N, T0 + 10_000_000)).toBe(N);
  });

  it('reads one record by seq, and nothing beyond the log', async () => {
    const one = await readOne(sink, LOG, 123);
    expect(one?.seq).toBe(123);
    expect(recordTime(one?.text ?? '')).toBe(T0 + 123_000);
    expect(await readOne(sink, LOG, N)).toBeUndefined();
  });

  it('an empty or unknown log is an empty page', async () => {
    expect(await readHistory(sink, 'gw-none', { filter: filter(''), limit: 10 })).toEqual({ log: 'gw-none', size: 0, items: [], next: null, scanned: 0 });
  });
});
