/**
 * Audit record bodies (SPEC §4), built from what the pipeline knows (pure). Request-derived strings
 * are made well-formed (lone surrogates replaced) and capped; configured query parameters are
 * redacted; every number is an integer. The writer adds `log`, `seq` and `prev`.
 */

/** The identity part of a record. */
export interface RecordIdentity {
  readonly user: string;
  readonly email?: string;
  readonly groups: readonly string[];
  readonly provider: string;
  readonly auth: string;
  readonly session?: string;
  readonly mfa?: { readonly factor: string; readonly age_s: number };
}

/** The `postgres` part of a record (SPEC §4 `sql`, `command`, `rows`, `error`, and the connection's facts). */
export interface PostgresRecordFields {
  readonly database: string;
  /** Names the client connection (a random id), shared by its connect, statement and disconnect records. */
  readonly connection: string;
  readonly event: 'connect' | 'statement' | 'disconnect';
  /** Statement text as sent (simple Query string, or the Parse text behind an Execute), capped. */
  readonly sql?: string;
  /** Bind parameter count (extended protocol). */
  readonly params?: number;
  readonly protocol?: 'simple' | 'extended' | 'function';
  /** Command tag's command: SELECT, INSERT, CREATE TABLE … */
  readonly command?: string;
  readonly rows?: number;
  /** SQLSTATE of a failed statement. */
  readonly error?: string;
  /** connect: whether the client connection is TLS; its application_name. */
  readonly tls?: boolean;
  readonly application?: string;
  /** disconnect: statements run, bytes from the client and to it. */
  readonly statements?: number;
  readonly bytes_in?: number;
  readonly bytes_out?: number;
}

/** A record before the writer chains it. Optional parts are left out when unknown. */
export interface RecordBody {
  readonly v: 1;
  readonly id: string;
  readonly ts: string;
  readonly kind: 'http' | 'websocket' | 'postgres' | 'auth' | 'config';
  readonly route?: string;
  readonly decision?: 'allow' | 'deny' | 'step_up' | 'unauthenticated' | 'not_found' | 'error';
  readonly reason?: string;
  readonly identity?: RecordIdentity;
  readonly client?: { readonly ip: string; readonly user_agent?: string };
  readonly request?: { readonly method: string; readonly host: string; readonly path: string; readonly query?: string; readonly bytes_in?: number };
  readonly response?: { readonly status: number; readonly bytes_out?: number };
  readonly upstream?: { readonly target: string; readonly ttfb_us?: number };
  readonly websocket?: { readonly messages_in: number; readonly messages_out: number; readonly bytes_in: number; readonly bytes_out: number; readonly duration_us: number };
  /** `postgres` records: a connection opening or closing, or one statement (src/database/records.ts). */
  readonly postgres?: PostgresRecordFields;
  readonly duration_us?: number;
  /** Extra facts for `auth` and `config` records (action, provider, result, …). */
  readonly event?: Readonly<Record<string, string | number | boolean | null>>;
}

/** A chained record as stored. */
export type AuditRecord = RecordBody & { readonly log: string; readonly seq: number; readonly prev: string };

/**
 * A record body as RFC 8785 canonical JSON members (`"key":value`, comma-separated, no braces), in
 * the three runs the writer's own fields fall between: `head` holds the keys sorting before `log`,
 * `mid` those between `prev` and `seq`, `tail` those after `seq` (any run may be empty). Every value
 * is canonical and each run's keys are in UTF-16 order, so the record is the runs with `log`, `prev`
 * and `seq` put in: serialized once, without building an object. Request records are made this way
 * (src/audit/request-auditor.ts); a test holds them to the generic serializer.
 */
export interface RecordParts {
  /** The record's `id` (it resolves the request's intent). */
  readonly id: string;
  readonly head: string;
  readonly mid: string;
  readonly tail: string;
}

/** The body's members in one run (`{${joinParts(p)}}` is the body without the writer's fields). */
export function joinParts(p: RecordParts): string {
  let out = p.head;
  if (p.mid !== '') out = out === '' ? p.mid : `${out},${p.mid}`;
  if (p.tail !== '') out = out === '' ? p.tail : `${out},${p.tail}`;
  return out;
}

/** The record's canonical text: the runs with `log` (given as its JSON string), `prev` and `seq` put in. */
export function chainedText(p: RecordParts, logJson: string, prev: string, seq: number): string {
  return `{${p.head === '' ? '' : `${p.head},`}"log":${logJson},"prev":"${prev}"${p.mid === '' ? '' : `,${p.mid}`},"seq":${seq}${p.tail === '' ? '' : `,${p.tail}`}}`;
}

/** Length caps for request-derived strings (characters). */
export const CAPS = { path: 2048, query: 2048, host: 256, userAgent: 512, reason: 256, user: 256, default: 1024 } as const;

/**
 * Characters JSON leaves raw that readers take for line breaks or that reorder what a reader sees: C1
 * controls (U+0085 NEL is a line break to Python's `splitlines` and many log viewers), U+2028/U+2029,
 * and bidirectional overrides. C0 controls need nothing here: JSON escapes them (`\n` → `\\n`).
 */
const LINE_BREAKING = /[\u0080-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * A well-formed string of at most `max` characters (`…` marks a cut), in which nothing reads as a line
 * break or reorders the line (those characters become U+FFFD), so a request-derived value cannot
 * forge a record or a log line.
 */
export function clean(text: string, max: number = CAPS.default): string {
  const wf = text.toWellFormed().replace(LINE_BREAKING, '\uFFFD');
  if (wf.length <= max) return wf;
  return `${wf.slice(0, max - 1).toWellFormed()}…`;
}

/** A JWS/JWE compact serialization (a bearer token, an ID token), alone or inside a value (`Bearer eyJ…`). */
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*/g;

/** Whether a raw query value decodes to something holding a JWT: a segment whose JSON header names an `alg`. */
function looksLikeJwt(rawValue: string): boolean {
  if (!rawValue.includes('eyJ')) return false;
  let value = rawValue;
  try {
    value = decodeURIComponent(rawValue.replace(/\+/g, ' '));
  } catch {
    // keep the raw value
  }
  for (const m of value.matchAll(JWT_LIKE)) {
    try {
      const header: unknown = JSON.parse(Buffer.from(m[0].slice(0, m[0].indexOf('.')), 'base64url').toString('utf8'));
      if (typeof header === 'object' && header !== null && 'alg' in header) return true;
    } catch {
      // not a JOSE header
    }
  }
  return false;
}

/**
 * Replaces the values of the named query parameters (compared case-insensitively after decoding the
 * name), and any value that looks like a JWT whatever its name, with `REDACTED`, keeping everything
 * else byte for byte.
 */
export function redactQuery(query: string, names: readonly string[]): string {
  if (query === '') return query;
  const redact = new Set(names.map((n) => n.toLowerCase()));
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const rawName = eq === -1 ? pair : pair.slice(0, eq);
      let name = rawName;
      try {
        name = decodeURIComponent(rawName.replace(/\+/g, ' '));
      } catch {
        // keep the raw name
      }
      return redact.has(name.toLowerCase()) || (eq !== -1 && looksLikeJwt(pair.slice(eq + 1))) ? `${rawName}=REDACTED` : pair;
    })
    .join('&');
}

/** Whole microseconds between two hrtime.bigint() readings. */
export function microsBetween(startNs: bigint, endNs: bigint): number {
  return Number((endNs - startNs) / 1000n);
}
