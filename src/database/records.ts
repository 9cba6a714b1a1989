/**
 * `postgres` audit record bodies (SPEC §4), built from what a database connection knows (pure).
 * One record when a connection is accepted or refused, one per statement, one when it closes.
 */
import { CAPS, clean, microsBetween, type PostgresRecordFields, type RecordBody } from '../audit/record.js';
import { recordIdentity } from '../audit/request-auditor.js';
import type { Identity } from '../identity/index.js';
import type { StatementEnd, StatementStart } from './statement-tracker.js';

/** What every record of one client connection shares. */
export interface ConnectionFacts {
  readonly connection: string;
  readonly database: string;
  readonly clientIp: string;
  /** The verified identity (from the token), once the client has authenticated. */
  readonly identity: Identity | undefined;
  /** The user name the client gave in its startup packet. */
  readonly claimedUser: string;
  /** `postgres://user@host:port/database` of the upstream. */
  readonly upstream: string;
}

function identityOf(facts: ConnectionFacts, nowMs: number): RecordBody['identity'] {
  if (facts.identity !== undefined) return recordIdentity(facts.identity, nowMs);
  if (facts.claimedUser === '') return undefined;
  // Not authenticated: what the client claimed, so refusals can be found by user.
  return { user: clean(facts.claimedUser, CAPS.user), groups: [], provider: '-', auth: 'token' };
}

function base(facts: ConnectionFacts, id: string, nowMs: number, decision: NonNullable<RecordBody['decision']>, reason: string): RecordBody {
  const identity = identityOf(facts, nowMs);
  return {
    v: 1,
    id,
    ts: new Date(nowMs).toISOString(),
    kind: 'postgres',
    route: facts.database,
    decision,
    reason: clean(reason, CAPS.reason),
    ...(identity === undefined ? {} : { identity }),
    client: { ip: facts.clientIp },
  };
}

function postgres(facts: ConnectionFacts, fields: Omit<PostgresRecordFields, 'database' | 'connection'>): PostgresRecordFields {
  return { database: facts.database, connection: facts.connection, ...fields };
}

/** A connection accepted (`allow`) or refused (with the refusal's decision and reason). */
export function connectRecord(
  facts: ConnectionFacts,
  outcome: { readonly decision: NonNullable<RecordBody['decision']>; readonly reason: string },
  extra: { readonly tls: boolean; readonly application: string | undefined; readonly nowMs: number },
): RecordBody {
  return {
    ...base(facts, facts.connection, extra.nowMs, outcome.decision, outcome.reason),
    ...(outcome.decision === 'allow' ? { upstream: { target: facts.upstream } } : {}),
    postgres: postgres(facts, { event: 'connect', tls: extra.tls, ...(extra.application === undefined || extra.application === '' ? {} : { application: clean(extra.application, CAPS.userAgent) }) }),
  };
}

/** The record written before a statement is forwarded (replaced by its end record; kept only after a crash). */
export function statementIntentRecord(facts: ConnectionFacts, start: StatementStart, opts: { readonly nowMs: number; readonly maxSql: number }): RecordBody {
  return {
    ...base(facts, start.id, opts.nowMs, 'allow', 'in-flight'),
    postgres: postgres(facts, { event: 'statement', sql: clean(start.sql, opts.maxSql), protocol: start.protocol, ...(start.params === undefined ? {} : { params: start.params }) }),
  };
}

/** One statement's record. */
export function statementRecord(facts: ConnectionFacts, end: StatementEnd, opts: { readonly nowMs: number; readonly maxSql: number }): RecordBody {
  return {
    ...base(facts, end.id, opts.nowMs, 'allow', `statement-${end.outcome}`),
    postgres: postgres(facts, {
      event: 'statement',
      sql: clean(end.sql, opts.maxSql),
      protocol: end.protocol,
      ...(end.params === undefined ? {} : { params: end.params }),
      ...(end.command === undefined ? {} : { command: clean(end.command, 64) }),
      ...(end.rows === undefined || !Number.isSafeInteger(end.rows) ? {} : { rows: end.rows }),
      ...(end.error === undefined ? {} : { error: clean(end.error, 5) }),
    }),
    duration_us: microsBetween(end.startNs, end.endNs),
  };
}

/** How a connection ended. */
export interface DisconnectSummary {
  readonly id: string;
  readonly reason: string;
  readonly statements: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly openNs: bigint;
  readonly endNs: bigint;
  readonly nowMs: number;
}

/** The record of a connection that closed. */
export function disconnectRecord(facts: ConnectionFacts, s: DisconnectSummary): RecordBody {
  return {
    ...base(facts, s.id, s.nowMs, 'allow', s.reason),
    upstream: { target: facts.upstream },
    postgres: postgres(facts, { event: 'disconnect', statements: s.statements, bytes_in: s.bytesIn, bytes_out: s.bytesOut }),
    duration_us: microsBetween(s.openNs, s.endNs),
  };
}
