/**
 * The decision stream behind the audit viewer's live tail: records this instance appends, fanned out
 * to subscribers (viewer WebSockets) through their filters, with back-pressure that never reaches
 * the gateway.
 *
 * - The writer only hands each record over (AuditLog.subscribe): the feed queues it and does its work
 *   on a later turn of the event loop — parse once, keep it in a bounded ring (for resuming), match it
 *   against each subscriber's filter.
 * - Each subscriber has a bounded queue. Every `flushMs` what is queued goes out in messages of at
 *   most `messageBytes`, and only while the transport's `bufferedAmount` is below `highWaterBytes`.
 *   A subscriber that reads too slowly loses the oldest queued records and is told so (a `gap`
 *   message with the seqs it missed, which the viewer can page in from history); one whose transport
 *   does not drain at all for `stallMs` is closed (1013), and reconnects with resume.
 * - Resume: a subscriber that saw up to seq N gets N+1… first — from the ring, or from the sink for
 *   what the ring no longer holds (at most `resumeMax` records; older ones are reported as a gap).
 *
 * So memory is bounded by the ring plus `queueRecords` references and `highWaterBytes` (+ one
 * message) per subscriber, and the writer's cost per record is one array push.
 */
import type { Logger } from 'pino';
import type { AppendListener } from './audit-log.js';
import { parseRecord } from './history.js';
import type { StoredRecord } from './sink.js';
import { isEmptyFilter, viewerMatches, type ViewerFilter } from './viewer-filter.js';

/**
 * A record as the feed holds it: the writer's own bytes (no copy; off the JS heap), with its text and
 * parsed form made only when asked and dropped again once the entry is processed, so that the ring
 * adds little to the garbage collector's work.
 */
export class FeedEntry {
  readonly seq: number;
  /** The stored canonical JSON. */
  readonly bytes: Buffer;
  private textValue: string | undefined;
  private parsedValue: unknown;
  private parsedDone = false;

  constructor(record: StoredRecord) {
    this.seq = record.seq;
    this.bytes = record.bytes;
  }

  /** The stored JSON as text. */
  get text(): string {
    this.textValue ??= this.bytes.toString('utf8');
    return this.textValue;
  }

  /** The record parsed (once until released; undefined when it is not JSON). */
  parsed(): unknown {
    if (!this.parsedDone) {
      this.parsedValue = parseRecord(this.text);
      this.parsedDone = true;
    }
    return this.parsedValue;
  }

  /** Drops the text and parsed forms (the ring keeps only the bytes). */
  release(): void {
    this.textValue = undefined;
    this.parsedValue = undefined;
    this.parsedDone = false;
  }
}

const RECORDS_OPEN = Buffer.from('{"type":"records","records":[');
const RECORDS_CLOSE = Buffer.from(']}');
const ITEM_CLOSE = Buffer.from('}');
const COMMA = Buffer.from(',');

/** Where a subscriber's messages go (a WebSocket). Records go as UTF-8 bytes, notices as text. */
export interface FeedTransport {
  send(data: string | Buffer): void;
  /** Bytes accepted by `send` and not yet written to the network. */
  bufferedAmount(): number;
  close(code: number, reason: string): void;
}

/** Limits; every one bounds memory or work. */
export interface FeedLimits {
  /** Records kept for resuming. */
  readonly ringRecords: number;
  /** …and at most about this many bytes of them. */
  readonly ringBytes: number;
  /** Records queued per subscriber before the oldest are dropped. */
  readonly queueRecords: number;
  /** Nothing more is sent while the transport holds this many unsent bytes. */
  readonly highWaterBytes: number;
  /** Largest message (bytes). */
  readonly messageBytes: number;
  readonly flushMs: number;
  /** A transport that does not drain for this long is closed. */
  readonly stallMs: number;
  /** Records a resume reads back from the sink at most. */
  readonly resumeMax: number;
  readonly maxSubscribers: number;
}

export const DEFAULT_FEED_LIMITS: FeedLimits = {
  ringRecords: 10_000,
  ringBytes: 16 * 1024 * 1024,
  queueRecords: 2_000,
  highWaterBytes: 512 * 1024,
  messageBytes: 256 * 1024,
  flushMs: 100,
  stallMs: 15_000,
  resumeMax: 10_000,
  maxSubscribers: 64,
};

/** What the feed needs. */
export interface LiveFeedOptions {
  /** Subscribes to this instance's appends (AuditLog.subscribe). */
  readonly subscribe: (listener: AppendListener) => () => void;
  /** The log's size now (the next seq it appends). */
  readonly size: () => number;
  /** Reads this instance's records from the sink (for resumes the ring cannot serve). */
  readonly read: (fromSeq: number, limit: number) => Promise<StoredRecord[]>;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Also hears every entry, in seq order, while the feed runs (the activity charts). */
  readonly onEntries?: (entries: readonly FeedEntry[]) => void;
  readonly limits?: Partial<FeedLimits>;
}

/** What a subscriber got, for its audit record and the viewer. */
export interface FeedSubscriberStats {
  messages: number;
  bytes: number;
  records: number;
  dropped: number;
}

/** A subscriber's handle. */
export interface FeedSubscription {
  readonly stats: Readonly<FeedSubscriberStats>;
  /** Sends a small message now (skipped while the transport is over its high-water mark). */
  notice(text: string): void;
  /** Stops delivery (call when the transport closes). */
  detach(): void;
}

/** A seq range a subscriber did not get. */
interface Gap {
  from: number;
  to: number;
  /** Matching records dropped; null when unknown (records past the resume window were never read). */
  dropped: number | null;
}

interface Subscriber {
  readonly transport: FeedTransport;
  readonly filter: ViewerFilter;
  readonly all: boolean;
  queue: FeedEntry[];
  lastSent: number;
  resuming: boolean;
  gap: Gap | undefined;
  stalledSince: number | undefined;
  closed: boolean;
  readonly stats: FeedSubscriberStats;
}

/** Thrown by `attach` when the feed already serves `maxSubscribers`. */
export class FeedFullError extends Error {}

/** Creates the feed; `start()` subscribes to the log. */
export function createLiveFeed(opts: LiveFeedOptions) {
  const L: FeedLimits = { ...DEFAULT_FEED_LIMITS, ...opts.limits };
  const now = opts.now ?? Date.now;
  const ring: FeedEntry[] = [];
  let ringChars = 0;
  let incoming: StoredRecord[] = [];
  let scheduled = false;
  /** The seq after the newest entry processed; undefined before the first. */
  let processedUpTo: number | undefined;
  let unsubscribe: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const subscribers = new Set<Subscriber>();

  const listener: AppendListener = (record) => {
    incoming.push(record);
    if (!scheduled) {
      scheduled = true;
      setImmediate(processIncoming);
    }
  };

  function processIncoming(): void {
    scheduled = false;
    const batch = incoming;
    incoming = [];
    if (batch.length === 0) return;
    batch.sort((a, b) => a.seq - b.seq);
    const entries = batch.map((r) => new FeedEntry(r));
    for (const e of entries) {
      ring.push(e);
      ringChars += e.bytes.length;
    }
    if (ring.length > L.ringRecords * 1.1 || ringChars > L.ringBytes) trimRing();
    processedUpTo = (entries.at(-1)?.seq ?? -1) + 1;
    try {
      opts.onEntries?.(entries);
    } catch (err) {
      opts.logger.warn({ err }, 'audit live feed: an entry consumer failed');
    }
    for (const s of subscribers) {
      for (const e of entries) if (s.all || viewerMatches(s.filter, e.text, () => e.parsed())) enqueue(s, e);
    }
    for (const e of entries) e.release();
  }

  function trimRing(): void {
    let drop = Math.max(0, ring.length - L.ringRecords);
    let chars = ringChars;
    for (let i = 0; i < drop; i++) chars -= ring[i]?.bytes.length ?? 0;
    while (chars > L.ringBytes && drop < ring.length - 1) chars -= ring[drop++]?.bytes.length ?? 0;
    ring.splice(0, drop);
    ringChars = chars;
  }

  function enqueue(s: Subscriber, e: FeedEntry): void {
    s.queue.push(e);
    if (s.queue.length <= L.queueRecords || s.resuming) return;
    // Too slow: drop the oldest tenth (the newest are what a live tail is for), and say so.
    const dropped = s.queue.splice(0, Math.ceil(L.queueRecords / 10));
    const first = dropped[0];
    const last = dropped.at(-1);
    if (first === undefined || last === undefined) return;
    s.gap = { from: s.gap?.from ?? first.seq, to: last.seq, dropped: (s.gap?.dropped ?? 0) + dropped.length };
    s.stats.dropped += dropped.length;
  }

  function send(s: Subscriber, data: string | Buffer): void {
    s.transport.send(data);
    s.stats.messages += 1;
    s.stats.bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  }

  function flush(s: Subscriber): void {
    if (s.closed || s.resuming) return;
    let buffered = s.transport.bufferedAmount();
    if (buffered > L.highWaterBytes) {
      s.stalledSince ??= now();
      if (now() - s.stalledSince > L.stallMs) {
        s.closed = true;
        s.transport.close(1013, 'too slow: the feed was not read');
      }
      return;
    }
    s.stalledSince = undefined;
    if (s.gap !== undefined) {
      send(s, JSON.stringify({ type: 'gap', ...s.gap }));
      s.gap = undefined;
    }
    while (s.queue.length > 0 && buffered <= L.highWaterBytes) {
      // `{"seq":N,"record":<stored bytes>}` items: the stored bytes go out as they are, never re-serialized.
      const parts: Buffer[] = [RECORDS_OPEN];
      let size = 0;
      let count = 0;
      let taken = 0;
      for (const e of s.queue) {
        if (size > 0 && size + e.bytes.length > L.messageBytes) break;
        taken += 1;
        if (e.seq <= s.lastSent) continue;
        if (count > 0) parts.push(COMMA);
        parts.push(Buffer.from(`{"seq":${e.seq},"record":`), e.bytes, ITEM_CLOSE);
        size += e.bytes.length + 32;
        count += 1;
        s.lastSent = e.seq;
      }
      s.queue.splice(0, taken);
      if (count === 0) continue;
      parts.push(RECORDS_CLOSE);
      const message = Buffer.concat(parts);
      send(s, message);
      s.stats.records += count;
      buffered += message.length;
    }
  }

  function flushAll(): void {
    for (const s of subscribers) flush(s);
  }

  function startTimer(): void {
    if (timer !== undefined) return;
    timer = setInterval(flushAll, L.flushMs);
    timer.unref();
  }

  function stopTimerIfIdle(): void {
    if (subscribers.size > 0 || timer === undefined) return;
    clearInterval(timer);
    timer = undefined;
  }

  /**
   * Reads [from, to) from the sink for a resume. Records the writer has spooled but the sink not yet
   * acknowledged are waited for briefly (they arrive within milliseconds while the sink is up).
   */
  async function readBack(from: number, to: number): Promise<{ entries: FeedEntry[]; missing: Gap | undefined }> {
    const entries: FeedEntry[] = [];
    let pos = from;
    let tries = 0;
    while (pos < to) {
      const page = await opts.read(pos, Math.min(1_000, to - pos));
      const usable = page.filter((r) => r.seq >= pos && r.seq < to);
      for (const r of usable) entries.push(new FeedEntry(r));
      const last = usable.at(-1);
      if (last !== undefined) {
        pos = last.seq + 1;
        tries = 0;
        continue;
      }
      if (++tries > 20) return { entries, missing: { from: pos, to: to - 1, dropped: null } };
      await new Promise((r) => setTimeout(r, 100));
    }
    return { entries, missing: undefined };
  }

  async function resume(s: Subscriber, after: number): Promise<void> {
    const from = after + 1;
    // The ring's part, taken now (synchronously), so that live entries queue up behind it.
    const ringFirst = ring[0]?.seq;
    const boundary = ringFirst ?? processedUpTo ?? opts.size();
    const fromRing = ring.filter((e) => e.seq >= from && (s.all || viewerMatches(s.filter, e.text, () => e.parsed())));
    for (const e of fromRing) e.release();
    s.queue = [...fromRing, ...s.queue];
    let gap: Gap | undefined;
    let back: FeedEntry[] = [];
    if (from < boundary) {
      const start = Math.max(from, boundary - L.resumeMax);
      if (start > from) gap = { from, to: start - 1, dropped: null };
      try {
        const r = await readBack(start, boundary);
        back = r.entries.filter((e) => s.all || viewerMatches(s.filter, e.text, () => e.parsed()));
        if (r.missing !== undefined) gap = gap === undefined ? r.missing : { from: gap.from, to: r.missing.to, dropped: null };
      } catch (err) {
        opts.logger.warn({ err }, 'audit live feed: resume could not read the sink');
        gap = { from, to: boundary - 1, dropped: null };
      }
    }
    if (s.closed) return;
    s.queue = [...back, ...s.queue];
    s.gap = gap;
    s.resuming = false;
    if (s.queue.length > L.queueRecords) {
      const dropped = s.queue.splice(0, s.queue.length - L.queueRecords);
      const last = dropped.at(-1);
      if (last !== undefined) s.gap = { from: s.gap?.from ?? dropped[0]?.seq ?? last.seq, to: last.seq, dropped: null };
      s.stats.dropped += dropped.length;
    }
    flush(s);
  }

  return {
    limits: L,
    /** Subscribes to the log (idempotent). */
    start(): void {
      unsubscribe ??= opts.subscribe(listener);
    },
    /** Unsubscribes and forgets the ring (subscribers must be detached first). */
    stop(): void {
      unsubscribe?.();
      unsubscribe = undefined;
      ring.length = 0;
      ringChars = 0;
      incoming = [];
      processedUpTo = undefined;
    },
    get running(): boolean {
      return unsubscribe !== undefined;
    },
    get subscribers(): number {
      return subscribers.size;
    },
    /**
     * Adds a subscriber. With `after`, it first gets every matching record after that seq (resume),
     * then live ones; without, only records appended from now on.
     * @throws FeedFullError when the feed already serves `maxSubscribers`.
     */
    attach(transport: FeedTransport, opt: { filter: ViewerFilter; after?: number | undefined }): FeedSubscription {
      if (subscribers.size >= L.maxSubscribers) throw new FeedFullError(`the live feed already serves ${L.maxSubscribers} viewers`);
      unsubscribe ??= opts.subscribe(listener);
      const s: Subscriber = {
        transport,
        filter: opt.filter,
        all: isEmptyFilter(opt.filter),
        queue: [],
        lastSent: opt.after ?? -1,
        resuming: opt.after !== undefined,
        gap: undefined,
        stalledSince: undefined,
        closed: false,
        stats: { messages: 0, bytes: 0, records: 0, dropped: 0 },
      };
      subscribers.add(s);
      startTimer();
      if (opt.after !== undefined) {
        resume(s, opt.after).catch((err: unknown) => {
          opts.logger.warn({ err }, 'audit live feed: resume failed');
          s.resuming = false;
        });
      }
      return {
        stats: s.stats,
        notice(text) {
          if (s.closed || s.transport.bufferedAmount() > L.highWaterBytes) return;
          send(s, text);
        },
        detach() {
          s.closed = true;
          subscribers.delete(s);
          stopTimerIfIdle();
        },
      };
    },
    /** Sends every subscriber what is queued now (tests; the timer does it every flushMs). */
    flushNow(): void {
      if (scheduled) processIncoming();
      flushAll();
    },
  };
}

/** A live feed. */
export type LiveFeed = ReturnType<typeof createLiveFeed>;
