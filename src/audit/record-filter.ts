/**
 * Record filters for `audit query` and `audit tail` (pure): parsing the command-line values and
 * matching stored records against them.
 *
 * - `user` matches `identity.user` exactly or `identity.email` case-insensitively.
 * - `route`, `decision`, `kind` match the record's field exactly.
 * - `since` / `until` select `since <= ts < until` (a half-open window, so adjacent windows never
 *   overlap). They take an RFC 3339 timestamp (`2026-11-26T10:00:00Z`, `…+02:00`, fractions allowed),
 *   a bare RFC 3339 date (`2026-11-26`, midnight UTC), or a duration back from now: `90s`, `15m`,
 *   `2h`, `7d`, `500ms`.
 * - `instance` matches records whose `log` is `<origin>/<instance>` (the commands also read only that log).
 *
 * Records are matched as parsed JSON of unknown shape: a record missing a field a filter asks about
 * does not match; with no filters every record matches.
 */
import { parseDuration } from '../config/index.js';
import type { RecordBody } from './record.js';

/** The record kinds of SPEC §4. */
export const RECORD_KINDS = ['http', 'websocket', 'postgres', 'auth', 'config'] as const satisfies readonly RecordBody['kind'][];
/** The decisions of SPEC §4. */
export const DECISIONS = ['allow', 'deny', 'step_up', 'unauthenticated', 'not_found', 'error'] as const satisfies readonly NonNullable<
  RecordBody['decision']
>[];

/** A parsed filter; absent fields do not restrict. Times are epoch milliseconds. */
export interface RecordFilter {
  readonly user?: string;
  readonly route?: string;
  readonly decision?: (typeof DECISIONS)[number];
  readonly kind?: (typeof RECORD_KINDS)[number];
  /** Inclusive lower bound of `ts`. */
  readonly since?: number;
  /** Exclusive upper bound of `ts`. */
  readonly until?: number;
  readonly instance?: string;
}

/** The filter options as given on the command line. */
export interface FilterArgs {
  readonly user?: string | undefined;
  readonly route?: string | undefined;
  readonly decision?: string | undefined;
  readonly kind?: string | undefined;
  readonly since?: string | undefined;
  readonly until?: string | undefined;
  readonly instance?: string | undefined;
}

/** The result of {@link parseFilter}: the filter, or one message per bad value. */
export type ParseFilterResult = { readonly ok: true; readonly filter: RecordFilter } | { readonly ok: false; readonly errors: string[] };

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|([+-])(\d{2}):(\d{2})))?$/;
const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

/**
 * Parses an RFC 3339 timestamp (or a bare full-date, taken as midnight UTC) into epoch ms; fractions
 * beyond milliseconds are truncated. Returns undefined for anything else, including impossible dates
 * (`2026-02-30`) and times (`25:00`).
 */
export function parseTimestamp(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', , sign, oh = '00', om = '00'] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  const offH = Number(oh);
  const offM = Number(om);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60 || offH > 23 || offM > 59) return undefined;
  const midnight = Date.UTC(year, month - 1, day);
  const date = new Date(midnight);
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined;
  const ms = Number(frac.slice(0, 3).padEnd(3, '0'));
  const offset = (sign === '-' ? -1 : 1) * (offH * 60 + offM) * 60_000;
  return midnight + ((hour * 60 + minute) * 60 + second) * 1000 + ms - (sign === undefined ? 0 : offset);
}

/**
 * Parses a `--since` / `--until` value: an RFC 3339 timestamp or date, or a duration (`15m`, `2h`,
 * `7d`, …) meaning that long before `nowMs`. Returns epoch ms, or undefined when malformed.
 */
export function parseTimeBound(text: string, nowMs: number): number | undefined {
  const relative = parseDuration(text);
  if (relative !== undefined) return nowMs - relative;
  return parseTimestamp(text);
}

const isOneOf = <T extends string>(list: readonly T[], value: string): value is T => (list as readonly string[]).includes(value);

/**
 * Validates the command-line filter values. `nowMs` anchors relative `--since` / `--until`.
 * Empty strings are refused (an empty filter would silently match nothing).
 */
export function parseFilter(args: FilterArgs, nowMs: number): ParseFilterResult {
  const errors: string[] = [];
  const filter: { -readonly [K in keyof RecordFilter]: RecordFilter[K] } = {};
  const nonEmpty = (name: string, value: string | undefined): string | undefined => {
    if (value === '') errors.push(`--${name} must not be empty`);
    return value === '' ? undefined : value;
  };
  const user = nonEmpty('user', args.user);
  if (user !== undefined) filter.user = user;
  const route = nonEmpty('route', args.route);
  if (route !== undefined) filter.route = route;
  if (args.decision !== undefined) {
    if (isOneOf(DECISIONS, args.decision)) filter.decision = args.decision;
    else errors.push(`--decision must be one of ${DECISIONS.join(', ')}; got ${JSON.stringify(args.decision)}`);
  }
  if (args.kind !== undefined) {
    if (isOneOf(RECORD_KINDS, args.kind)) filter.kind = args.kind;
    else errors.push(`--kind must be one of ${RECORD_KINDS.join(', ')}; got ${JSON.stringify(args.kind)}`);
  }
  for (const name of ['since', 'until'] as const) {
    const text = args[name];
    if (text === undefined) continue;
    const at = parseTimeBound(text, nowMs);
    if (at === undefined) {
      errors.push(`--${name} expects an RFC 3339 time (2026-11-26T10:00:00Z) or a duration ago (15m, 2h, 7d); got ${JSON.stringify(text)}`);
    } else {
      filter[name] = at;
    }
  }
  if (filter.since !== undefined && filter.until !== undefined && filter.since >= filter.until) {
    errors.push('--since must be before --until');
  }
  if (args.instance !== undefined) {
    if (INSTANCE_ID.test(args.instance)) filter.instance = args.instance;
    else errors.push(`--instance expects an instance id (letters, digits, ., - and _); got ${JSON.stringify(args.instance)}`);
  }
  return errors.length === 0 ? { ok: true, filter } : { ok: false, errors };
}

function field(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[key] : undefined;
}

/** True when `record` (a parsed stored `AuditRecord`, of any shape) passes every part of `filter`. */
export function matches(record: unknown, filter: RecordFilter): boolean {
  if (filter.route !== undefined && field(record, 'route') !== filter.route) return false;
  if (filter.decision !== undefined && field(record, 'decision') !== filter.decision) return false;
  if (filter.kind !== undefined && field(record, 'kind') !== filter.kind) return false;
  if (filter.instance !== undefined) {
    const log = field(record, 'log');
    if (typeof log !== 'string' || !(log === filter.instance || log.endsWith(`/${filter.instance}`))) return false;
  }
  if (filter.user !== undefined) {
    const identity = field(record, 'identity');
    const user = field(identity, 'user');
    const email = field(identity, 'email');
    const byUser = user === filter.user;
    const byEmail = typeof email === 'string' && email.toLowerCase() === filter.user.toLowerCase();
    if (!byUser && !byEmail) return false;
  }
  if (filter.since !== undefined || filter.until !== undefined) {
    const ts = field(record, 'ts');
    const at = typeof ts === 'string' ? Date.parse(ts) : Number.NaN;
    if (Number.isNaN(at)) return false;
    if (filter.since !== undefined && at < filter.since) return false;
    if (filter.until !== undefined && at >= filter.until) return false;
  }
  return true;
}
