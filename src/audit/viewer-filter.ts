/**
 * The audit viewer's filters (pure): the `audit query` / `audit tail` filters (record-filter.ts, same
 * parsing and matching) plus what a person skimming the log asks for — a status class and free text.
 *
 * Query parameters: `user`, `route`, `decision`, `kind`, `since`, `until`, `instance` (as for the CLI,
 * without the dashes; empty values are ignored, as an HTML form sends them), `status` (`2xx`, `3xx`,
 * `4xx` or `5xx`: the record's `response.status`) and `q` (free text: a case-insensitive substring of
 * the record's stored JSON).
 */
import { matches, parseFilter, type FilterArgs, type RecordFilter } from './record-filter.js';

/** A status class: the hundreds digit of `response.status`. */
export type StatusClass = 1 | 2 | 3 | 4 | 5;

/** A parsed viewer filter; absent parts do not restrict. */
export interface ViewerFilter {
  readonly base: RecordFilter;
  readonly status?: StatusClass;
  /** Lower-cased free text. */
  readonly text?: string;
}

/** The result of {@link parseViewerFilter}. */
export type ParseViewerFilterResult = { readonly ok: true; readonly filter: ViewerFilter } | { readonly ok: false; readonly errors: string[] };

const BASE_PARAMS = ['user', 'route', 'decision', 'kind', 'since', 'until', 'instance'] as const;
const STATUS_RE = /^([1-5])xx$/i;
const MAX_TEXT = 256;

/** Parses the viewer's query parameters; `nowMs` anchors relative times (`15m`). */
export function parseViewerFilter(params: URLSearchParams, nowMs: number): ParseViewerFilterResult {
  const args: { -readonly [K in keyof FilterArgs]: FilterArgs[K] } = {};
  for (const name of BASE_PARAMS) {
    const value = params.get(name)?.trim();
    if (value !== undefined && value !== '') args[name] = value;
  }
  const parsed = parseFilter(args, nowMs);
  // The CLI's messages name its options (--since); here they are form fields (since).
  const errors = parsed.ok ? [] : parsed.errors.map((e) => e.replace(/--([a-z]+)/g, '$1'));
  const filter: { base: RecordFilter; status?: StatusClass; text?: string } = { base: parsed.ok ? parsed.filter : {} };
  const status = params.get('status')?.trim() ?? '';
  if (status !== '') {
    const m = STATUS_RE.exec(status);
    if (m?.[1] === undefined) errors.push(`status must be a class such as 2xx, 4xx or 5xx; got ${JSON.stringify(status.slice(0, 20))}`);
    else filter.status = Number(m[1]) as StatusClass;
  }
  const text = params.get('q')?.trim() ?? '';
  if (text.length > MAX_TEXT) errors.push(`q must be at most ${MAX_TEXT} characters`);
  else if (text !== '') filter.text = text.toLowerCase();
  return errors.length === 0 ? { ok: true, filter } : { ok: false, errors };
}

/** The filter as query parameters again (what the viewer puts in links and in the live feed's URL). */
export function viewerFilterParams(params: URLSearchParams): URLSearchParams {
  const out = new URLSearchParams();
  for (const name of [...BASE_PARAMS, 'status', 'q']) {
    const value = params.get(name)?.trim();
    if (value !== undefined && value !== '') out.set(name, value);
  }
  return out;
}

/** True when the filter restricts nothing. */
export function isEmptyFilter(f: ViewerFilter): boolean {
  return Object.keys(f.base).length === 0 && f.status === undefined && f.text === undefined;
}

function statusOf(record: unknown): unknown {
  if (typeof record !== 'object' || record === null) return undefined;
  const response = (record as { response?: unknown }).response;
  return typeof response === 'object' && response !== null ? (response as { status?: unknown }).status : undefined;
}

/**
 * True when a stored record passes the filter. `text` is the record's stored JSON; `parsed` gives that
 * JSON parsed (asked only when the text alone does not decide; undefined when the text is not JSON:
 * such a record matches only an empty filter).
 */
export function viewerMatches(f: ViewerFilter, text: string, parsed: () => unknown): boolean {
  if (f.text !== undefined && !text.toLowerCase().includes(f.text)) return false;
  const record = parsed();
  if (record === undefined) return isEmptyFilter(f);
  if (f.status !== undefined) {
    const status = statusOf(record);
    if (typeof status !== 'number' || Math.floor(status / 100) !== f.status) return false;
  }
  return matches(record, f.base);
}
