/**
 * What the audit viewer's charts show (pure): per-minute counts over the last hour of one log —
 * requests and denials per minute, step-ups per route, and the busiest users — kept in 60 one-minute
 * buckets fed with records as they are appended (and, at start, the newest ones already stored).
 * Memory is bounded: at most `maxKeys` distinct routes and users per minute (the rest count as
 * `(other)`).
 */

/** The parts of a record the charts count. */
export interface ActivityRecord {
  readonly at: number;
  readonly kind: string | undefined;
  readonly decision: string | undefined;
  readonly route: string | undefined;
  readonly user: string | undefined;
}

/** The chart data. */
export interface ActivitySnapshot {
  /** Epoch ms of the first minute shown. */
  readonly from: number;
  /** Epoch ms from which the counts are complete (records before it were not seen). */
  readonly coveredFrom: number | null;
  /** One entry per minute, oldest first. */
  readonly minutes: { readonly at: number; readonly requests: number; readonly denials: number; readonly stepUps: number }[];
  /** Step-ups (decision step_up) by route over the window, most first. */
  readonly stepUpsByRoute: { readonly route: string; readonly count: number }[];
  /** Records by user over the window, most first (top 10). */
  readonly topUsers: { readonly user: string; readonly count: number }[];
}

interface Bucket {
  readonly at: number;
  requests: number;
  denials: number;
  stepUps: number;
  readonly stepUpRoutes: Map<string, number>;
  readonly users: Map<string, number>;
}

const MINUTE = 60_000;
const OTHER = '(other)';

/** The parts of a parsed stored record the charts count (undefined when it has no usable time). */
export function activityOf(record: unknown): ActivityRecord | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  const r = record as { ts?: unknown; kind?: unknown; decision?: unknown; route?: unknown; identity?: unknown };
  const at = typeof r.ts === 'string' ? Date.parse(r.ts) : Number.NaN;
  if (Number.isNaN(at)) return undefined;
  const identity = typeof r.identity === 'object' && r.identity !== null ? (r.identity as { user?: unknown }) : undefined;
  return {
    at,
    kind: typeof r.kind === 'string' ? r.kind : undefined,
    decision: typeof r.decision === 'string' ? r.decision : undefined,
    route: typeof r.route === 'string' ? r.route : undefined,
    user: typeof identity?.user === 'string' ? identity.user : undefined,
  };
}

function bump(map: Map<string, number>, key: string, maxKeys: number): void {
  const k = map.has(key) || map.size < maxKeys ? key : OTHER;
  map.set(k, (map.get(k) ?? 0) + 1);
}

/** Creates the counters for a window of `minutes` minutes. */
export function createActivity(opts: { minutes?: number; maxKeys?: number } = {}) {
  const minutes = opts.minutes ?? 60;
  const maxKeys = opts.maxKeys ?? 1_000;
  const buckets = new Map<number, Bucket>();
  let coveredFrom: number | null = null;

  function bucketFor(at: number): Bucket {
    const key = Math.floor(at / MINUTE) * MINUTE;
    let b = buckets.get(key);
    if (b === undefined) {
      b = { at: key, requests: 0, denials: 0, stepUps: 0, stepUpRoutes: new Map(), users: new Map() };
      buckets.set(key, b);
    }
    return b;
  }

  function prune(nowMs: number): void {
    const oldest = Math.floor(nowMs / MINUTE) * MINUTE - (minutes - 1) * MINUTE;
    for (const key of buckets.keys()) if (key < oldest) buckets.delete(key);
  }

  return {
    /** Counts one record (records older than the window are ignored). */
    add(r: ActivityRecord, nowMs: number): void {
      if (r.at < Math.floor(nowMs / MINUTE) * MINUTE - (minutes - 1) * MINUTE) return;
      const b = bucketFor(r.at);
      if (r.kind === 'http' || r.kind === 'websocket') {
        b.requests += 1;
        if (r.decision === 'deny') b.denials += 1;
      }
      if (r.decision === 'step_up') {
        b.stepUps += 1;
        bump(b.stepUpRoutes, r.route ?? '(no route)', maxKeys);
      }
      if (r.user !== undefined) bump(b.users, r.user, maxKeys);
      if (buckets.size > minutes + 2) prune(nowMs);
    },
    /** Marks the time from which every record was counted. */
    covered(fromMs: number): void {
      coveredFrom = coveredFrom === null ? fromMs : Math.min(coveredFrom, fromMs);
    },
    snapshot(nowMs: number): ActivitySnapshot {
      prune(nowMs);
      const first = Math.floor(nowMs / MINUTE) * MINUTE - (minutes - 1) * MINUTE;
      const rows: { at: number; requests: number; denials: number; stepUps: number }[] = [];
      const routes = new Map<string, number>();
      const users = new Map<string, number>();
      for (let i = 0; i < minutes; i++) {
        const at = first + i * MINUTE;
        const b = buckets.get(at);
        rows.push({ at, requests: b?.requests ?? 0, denials: b?.denials ?? 0, stepUps: b?.stepUps ?? 0 });
        if (b === undefined) continue;
        for (const [k, n] of b.stepUpRoutes) routes.set(k, (routes.get(k) ?? 0) + n);
        for (const [k, n] of b.users) users.set(k, (users.get(k) ?? 0) + n);
      }
      const ranked = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
      return {
        from: first,
        coveredFrom: coveredFrom === null ? null : Math.max(coveredFrom, first),
        minutes: rows,
        stepUpsByRoute: ranked(routes).slice(0, 20).map(([route, count]) => ({ route, count })),
        topUsers: ranked(users).slice(0, 10).map(([user, count]) => ({ user, count })),
      };
    },
  };
}

/** The activity counters. */
export type Activity = ReturnType<typeof createActivity>;
