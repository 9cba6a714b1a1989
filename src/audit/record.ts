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
  readonly duration_us?: number;
  /** Extra facts for `auth` and `config` records (action, provider, result, …). */
  readonly event?: Readonly<Record<string, string | number | boolean | null>>;
}

/** A chained record as stored. */
export type AuditRecord = RecordBody & { readonly log: string; readonly seq: number; readonly prev: string };

/** Length caps for request-derived strings (characters). */
export const CAPS = { path: 2048, query: 2048, host: 256, userAgent: 512, reason: 256, user: 256, default: 1024 } as const;

/** A well-formed string of at most `max` characters (`…` marks a cut). */
export function clean(text: string, max: number = CAPS.default): string {
  const wf = text.toWellFormed();
  if (wf.length <= max) return wf;
  return `${wf.slice(0, max - 1).toWellFormed()}…`;
}

/**
 * Replaces the values of the named query parameters (compared case-insensitively after decoding the
 * name) with `REDACTED`, keeping everything else byte for byte.
 */
export function redactQuery(query: string, names: readonly string[]): string {
  if (query === '' || names.length === 0) return query;
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
      return redact.has(name.toLowerCase()) ? `${rawName}=REDACTED` : pair;
    })
    .join('&');
}

/** Whole microseconds between two hrtime.bigint() readings. */
export function microsBetween(startNs: bigint, endNs: bigint): number {
  return Number((endNs - startNs) / 1000n);
}
