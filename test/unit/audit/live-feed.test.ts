/**
 * The live feed's promises, with a scripted log and transports whose buffer the test controls: every
 * record reaches a reader that keeps up, in order, through its filter; a reader that does not keep up
 * loses the oldest records with a notice instead of growing memory; one that stops reading is
 * closed; a resume continues exactly after the last seq seen, from the ring or from the sink.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../../src/audit/canonical.js';
import type { AppendListener } from '../../../src/audit/audit-log.js';
import { createLiveFeed, FeedFullError, type FeedLimits } from '../../../src/audit/live-feed.js';
import type { StoredRecord } from '../../../src/audit/sink.js';
import { parseViewerFilter, type ViewerFilter } from '../../../src/audit/viewer-filter.js';

const logger = pino({ level: 'silent' });

/** A log the test appends to: what the writer would hand the feed, and what the sink holds. */
function scriptedLog() {
  const listeners = new Set<AppendListener>();
  const stored: StoredRecord[] = [];
  return {
    stored,
    subscribe(l: AppendListener) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    size: () => stored.length,
    append(n: number, make: (seq: number) => Record<string, unknown> = (seq) => ({ seq, kind: 'http', route: seq % 2 === 0 ? 'even' : 'odd', response: { status: 200 } })) {
      for (let i = 0; i < n; i++) {
        const rec = { seq: stored.length, bytes: canonicalBytes(make(stored.length)) };
        stored.push(rec);
        for (const l of listeners) l(rec);
      }
    },
    async read(from: number, limit: number): Promise<StoredRecord[]> {
      await Promise.resolve();
      return stored.slice(from, from + limit);
    },
    get listeners() {
      return listeners.size;
    },
  };
}

/** A transport whose unsent bytes the test sets (a browser that reads, or does not). */
function transport() {
  const messages: { type: string; [k: string]: unknown }[] = [];
  const t = {
    messages,
    buffered: 0,
    closed: undefined as { code: number; reason: string } | undefined,
    send(data: string | Buffer) {
      messages.push(JSON.parse(String(data)) as { type: string });
    },
    bufferedAmount: () => t.buffered,
    close(code: number, reason: string) {
      t.closed = { code, reason };
    },
    seqs(): number[] {
      return messages.filter((m) => m.type === 'records').flatMap((m) => (m.records as { seq: number }[]).map((r) => r.seq));
    },
    gaps() {
      return messages.filter((m) => m.type === 'gap');
    },
  };
  return t;
}

function filter(query: string): ViewerFilter {
  const r = parseViewerFilter(new URLSearchParams(query), Date.now());
  if (!r.ok) throw new Error(r.errors.join('; '));
  return r.filter;
}

const tick = () => new Promise((r) => setImmediate(r));
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

function feedFor(log: ReturnType<typeof scriptedLog>, limits: Partial<FeedLimits> = {}, now?: () => number) {
  return createLiveFeed({ subscribe: (l) => log.subscribe(l), size: log.size, read: (f, n) => log.read(f, n), logger, limits: { flushMs: 1_000_000, ...limits }, ...(now === undefined ? {} : { now }) });
}

describe('live feed', () => {
  it('delivers every appended record in order, in messages of bounded size, through each subscriber’s filter', async () => {
    const log = scriptedLog();
    const feed = feedFor(log, { messageBytes: 2_000 });
    const all = transport();
    const even = transport();
    feed.attach(all, { filter: filter('') });
    feed.attach(even, { filter: filter('route=even') });
    log.append(500);
    await tick();
    feed.flushNow();
    expect(all.seqs()).toEqual(range(0, 500));
    expect(even.seqs()).toEqual(range(0, 500).filter((s) => s % 2 === 0));
    expect(all.messages.length).toBeGreaterThan(10);
    for (const m of all.messages) expect(JSON.stringify(m).length).toBeLessThan(2_000 + 200);
  });

  it('the writer only hands records over: nothing is parsed or sent on its path', () => {
    const log = scriptedLog();
    const feed = feedFor(log);
    const t = transport();
    feed.attach(t, { filter: filter('route=even') });
    log.append(100);
    // Still the writer's turn of the event loop: nothing processed or sent yet.
    expect(t.messages).toEqual([]);
  });

  it('a slow reader loses the oldest records with a gap notice; its queue never grows past the limit', async () => {
    const log = scriptedLog();
    const feed = feedFor(log, { queueRecords: 100, highWaterBytes: 10_000 });
    const slow = transport();
    const fast = transport();
    const sub = feed.attach(slow, { filter: filter('') });
    feed.attach(fast, { filter: filter('') });
    slow.buffered = 1_000_000; // the browser stopped reading
    for (let i = 0; i < 10; i++) {
      log.append(100);
      await tick();
      feed.flushNow();
    }
    expect(fast.seqs()).toEqual(range(0, 1000));
    expect(slow.seqs()).toEqual([]);
    slow.buffered = 0; // it catches up
    feed.flushNow();
    const [gap] = slow.gaps();
    expect(gap).toMatchObject({ type: 'gap', from: 0 });
    const got = slow.seqs();
    expect(got.length).toBeLessThanOrEqual(100);
    expect(got.at(-1)).toBe(999);
    // What it got is the newest, contiguous, right after the gap.
    expect((gap?.to as number) + 1).toBe(got[0]);
    expect(got).toEqual(range(got[0] ?? 0, 1000));
    expect(sub.stats.dropped).toBe(1000 - got.length);
    expect(gap?.dropped).toBe(1000 - got.length);
  });

  it('stops sending while the transport is over its high-water mark, and closes one that never drains', async () => {
    let now = 0;
    const log = scriptedLog();
    const feed = feedFor(log, { highWaterBytes: 1_000, stallMs: 10_000 }, () => now);
    const t = transport();
    feed.attach(t, { filter: filter('') });
    log.append(1);
    await tick();
    feed.flushNow();
    expect(t.seqs()).toEqual([0]);
    t.buffered = 5_000;
    log.append(5);
    await tick();
    feed.flushNow();
    expect(t.seqs()).toEqual([0]);
    now += 9_000;
    feed.flushNow();
    expect(t.closed).toBeUndefined();
    now += 2_000;
    feed.flushNow();
    expect(t.closed?.code).toBe(1013);
  });

  it('resumes right after the last seq seen, from the ring', async () => {
    const log = scriptedLog();
    const feed = feedFor(log);
    feed.start();
    log.append(50);
    await tick();
    const t = transport();
    feed.attach(t, { filter: filter(''), after: 41 });
    log.append(5);
    await tick();
    await tick();
    feed.flushNow();
    expect(t.seqs()).toEqual(range(42, 55));
  });

  it('resumes from the sink what the ring no longer holds, and reports what is beyond the resume window', async () => {
    const log = scriptedLog();
    log.append(300); // before the feed ran: only in the sink
    const feed = feedFor(log, { ringRecords: 20, resumeMax: 100 });
    const first = transport();
    feed.attach(first, { filter: filter('route=odd') });
    log.append(100);
    await tick();
    feed.flushNow();
    const t = transport();
    feed.attach(t, { filter: filter('route=odd'), after: 151 });
    for (let i = 0; i < 10 && t.seqs().length === 0; i++) {
      await new Promise((r) => setTimeout(r, 5));
      feed.flushNow();
    }
    // Ring: 20 newest of 400 (seq ≥ ~378); window: 100 below it; older than that: a gap.
    const [gap] = t.gaps();
    expect(gap).toMatchObject({ from: 152, dropped: null });
    const got = t.seqs();
    const firstOdd = (n: number) => (n % 2 === 1 ? n : n + 1);
    expect(got[0]).toBe(firstOdd((gap?.to as number) + 1));
    expect(got.at(-1)).toBe(399);
    expect(got.every((s) => s % 2 === 1)).toBe(true);
    expect(got).toEqual(range(got[0] ?? 0, 400).filter((s) => s % 2 === 1));
  });

  it('no duplicates at the seam between the resumed part and live records', async () => {
    const log = scriptedLog();
    log.append(30);
    const feed = feedFor(log, { ringRecords: 5 });
    const t = transport();
    feed.attach(t, { filter: filter(''), after: 9 });
    log.append(10); // live, while the resume reads the sink
    await new Promise((r) => setTimeout(r, 10));
    await tick();
    feed.flushNow();
    expect(t.seqs()).toEqual(range(10, 40));
  });

  it('caps subscribers, and forgets everything when stopped', () => {
    const log = scriptedLog();
    const feed = feedFor(log, { maxSubscribers: 2 });
    const a = feed.attach(transport(), { filter: filter('') });
    feed.attach(transport(), { filter: filter('') });
    expect(() => feed.attach(transport(), { filter: filter('') })).toThrow(FeedFullError);
    a.detach();
    expect(feed.subscribers).toBe(1);
    expect(log.listeners).toBe(1);
    feed.stop();
    expect(log.listeners).toBe(0);
  });
});
