/**
 * Turns what the pipeline knows about a request into audit records (the pipeline's RequestAuditor
 * port): an intent before forwarding, one record when it ends, and the admission check that keeps
 * anything from being forwarded unlogged.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { ErrorCode } from '../errors/index.js';
import type { Identity } from '../identity/index.js';
import type { AuditLog } from './audit-log.js';
import { CAPS, clean, microsBetween, redactQuery, type RecordBody, type RecordIdentity } from './record.js';

/** What the pipeline hands the auditor about a request (a subset of its RequestContext). */
export interface AuditedRequest {
  readonly id: string;
  readonly startNs: bigint;
  readonly method: string;
  readonly clientIp: string;
  readonly path: string | undefined;
  readonly query: string | undefined;
  readonly routeId: string | undefined;
  readonly identity: Identity | undefined;
  readonly reason: string | undefined;
}

/** How a request ended. */
export interface RequestOutcome {
  readonly kind: 'http' | 'websocket';
  readonly status: number;
  readonly decision: 'allow' | 'deny' | 'step_up' | 'unauthenticated' | 'not_found' | 'error';
  readonly reason?: string;
  readonly bytesIn?: number;
  readonly bytesOut?: number;
  readonly upstream?: { readonly target: string; readonly ttfbNs: bigint | undefined };
  readonly websocket?: { readonly messagesIn: number; readonly messagesOut: number; readonly bytesIn: number; readonly bytesOut: number; readonly openNs: bigint };
}

/** The port the pipeline calls. */
export interface RequestAuditor {
  /** A reason not to forward now (the request is then answered 503), or undefined. */
  admit(): ErrorCode | undefined;
  /** Records the intent to forward; `durable` (strict routes) waits for fsync. */
  intent(req: IncomingMessage, r: AuditedRequest, durable: boolean): Promise<void>;
  /** Records how the request ended. Never throws; a failure is logged and metered. */
  complete(req: IncomingMessage, r: AuditedRequest, outcome: RequestOutcome): void;
  /**
   * Records a request Node's parser refused before there was a request to hand the pipeline (bad
   * syntax or framing, a head too large or too slow): only the peer and the answer are known. Never throws.
   */
  unparsed(r: UnparsedRequest): void;
}

/** What is known of a request that could not be parsed. */
export interface UnparsedRequest {
  readonly id: string;
  readonly startNs: bigint;
  readonly clientIp: string;
  readonly status: number;
  readonly reason: string;
}

/** The record of an unparsable request (pure). */
export function unparsedRecord(r: UnparsedRequest, opts: { nowMs: number; endNs: bigint }): RecordBody {
  return {
    v: 1,
    id: r.id,
    ts: new Date(opts.nowMs).toISOString(),
    kind: 'http',
    decision: 'error',
    reason: clean(r.reason, CAPS.reason),
    client: { ip: r.clientIp },
    response: { status: r.status },
    duration_us: microsBetween(r.startNs, opts.endNs),
  };
}

/** The record's identity block. */
export function recordIdentity(identity: Identity, nowMs: number): RecordIdentity {
  // Keys in RFC 8785 order, so the canonical serializer need not reorder them (a copy per record).
  return {
    auth: identity.auth,
    ...(identity.email === undefined ? {} : { email: clean(identity.email, CAPS.user) }),
    groups: identity.groups.slice(0, 64).map((g) => clean(g, CAPS.user)),
    ...(identity.mfa === undefined ? {} : { mfa: { age_s: Math.max(0, Math.floor((nowMs - identity.mfa.at) / 1000)), factor: identity.mfa.factor } }),
    provider: clean(identity.provider, CAPS.user),
    ...(identity.session === undefined ? {} : { session: identity.session }),
    user: clean(identity.user, CAPS.user),
  };
}

/** Builds a request record body (pure). */
export function requestRecord(req: IncomingMessage, r: AuditedRequest, outcome: RequestOutcome, opts: { nowMs: number; endNs: bigint; redactParams: readonly string[] }): RecordBody {
  const ua = req.headers['user-agent'];
  const query = r.query === undefined ? undefined : clean(redactQuery(r.query, opts.redactParams), CAPS.query);
  const ws = outcome.websocket;
  // Keys in RFC 8785 order at every level (see recordIdentity); `log`, `prev` and `seq` are added
  // when the record is chained.
  return {
    client: { ip: r.clientIp, ...(ua === undefined ? {} : { user_agent: clean(ua, CAPS.userAgent) }) },
    decision: outcome.decision,
    duration_us: microsBetween(r.startNs, opts.endNs),
    id: r.id,
    ...(r.identity === undefined ? {} : { identity: recordIdentity(r.identity, opts.nowMs) }),
    kind: outcome.kind,
    ...(outcome.reason ?? r.reason ? { reason: clean(outcome.reason ?? r.reason ?? '', CAPS.reason) } : {}),
    request: {
      ...(outcome.bytesIn === undefined ? {} : { bytes_in: outcome.bytesIn }),
      host: clean(req.headers.host ?? '', CAPS.host),
      method: clean(r.method, 32),
      path: clean(r.path ?? req.url?.split('?')[0] ?? '', CAPS.path),
      ...(query === undefined ? {} : { query }),
    },
    response: { ...(outcome.bytesOut === undefined ? {} : { bytes_out: outcome.bytesOut }), status: outcome.status },
    ...(r.routeId === undefined ? {} : { route: r.routeId }),
    ts: new Date(opts.nowMs).toISOString(),
    ...(outcome.upstream === undefined
      ? {}
      : { upstream: { target: outcome.upstream.target, ...(outcome.upstream.ttfbNs === undefined ? {} : { ttfb_us: Number(outcome.upstream.ttfbNs / 1000n) }) } }),
    v: 1,
    ...(ws === undefined
      ? {}
      : { websocket: { bytes_in: ws.bytesIn, bytes_out: ws.bytesOut, duration_us: microsBetween(ws.openNs, opts.endNs), messages_in: ws.messagesIn, messages_out: ws.messagesOut } }),
  };
}

/** Creates the auditor over an open audit log. */
export function createRequestAuditor(deps: { log: AuditLog; logger: Logger; now: () => number; redactParams: () => readonly string[] }): RequestAuditor {
  return {
    admit() {
      return deps.log.admission() === undefined ? undefined : 'GW_ERR_AUDIT_UNAVAILABLE';
    },
    async intent(req, r, durable) {
      const body = requestRecord(req, r, { kind: 'http', status: 0, decision: 'allow', reason: 'in-flight' }, { nowMs: deps.now(), endNs: process.hrtime.bigint(), redactParams: deps.redactParams() });
      await deps.log.intent({ id: r.id, body }, durable);
    },
    complete(req, r, outcome) {
      let body: RecordBody;
      try {
        body = requestRecord(req, r, outcome, { nowMs: deps.now(), endNs: process.hrtime.bigint(), redactParams: deps.redactParams() });
      } catch (err) {
        deps.logger.error({ err, reqId: r.id }, 'audit record could not be built');
        return;
      }
      deps.log.append(body, false).catch((err: unknown) => {
        deps.logger.error({ err, reqId: r.id }, 'audit record could not be spooled');
      });
    },
    unparsed(r) {
      deps.log.append(unparsedRecord(r, { nowMs: deps.now(), endNs: process.hrtime.bigint() }), false).catch((err: unknown) => {
        deps.logger.error({ err, reqId: r.id }, 'audit record could not be spooled');
      });
    },
  };
}
