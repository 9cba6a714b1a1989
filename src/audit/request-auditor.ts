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
import { NonCanonicalValueError } from './canonical.js';
import { CAPS, clean, microsBetween, redactQuery, type RecordBody, type RecordIdentity, type RecordParts } from './record.js';

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

const str = (text: string): string => JSON.stringify(text);

/** A safe integer as RFC 8785 prints it. @throws NonCanonicalValueError for anything else. */
function int(n: number, path: string): string {
  if (!Number.isSafeInteger(n)) throw new NonCanonicalValueError(path);
  return String(n); // -0 too prints as 0
}

/** The record's identity block, its keys in RFC 8785 order (database records carry it too). */
export function recordIdentity(identity: Identity, nowMs: number): RecordIdentity {
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

/**
 * The identity block as canonical JSON: its keys are in order and it holds only strings and one
 * integer, so V8's JSON.stringify prints RFC 8785.
 */
function identityJson(identity: Identity, nowMs: number): string {
  const block = recordIdentity(identity, nowMs);
  if (block.mfa !== undefined && !Number.isSafeInteger(block.mfa.age_s)) throw new NonCanonicalValueError('$.identity.mfa.age_s');
  return JSON.stringify(block);
}

/**
 * Builds a request record as canonical members (pure; see RecordParts): the writer chains it
 * without building or walking an object, which in a gateway under load cost more than the proxying
 * (docs/adr/0002). Keys are written in RFC 8785 order; strings go through JSON.stringify, which is
 * RFC 8785's string form; every number is checked to be a safe integer.
 * @throws NonCanonicalValueError when a number is not a safe integer.
 */
export function requestRecordParts(req: IncomingMessage, r: AuditedRequest, outcome: RequestOutcome, opts: { nowMs: number; endNs: bigint; redactParams: readonly string[] }): RecordParts {
  const ua = req.headers['user-agent'];
  const reason = outcome.reason ?? r.reason;
  let head = `"client":{"ip":${str(r.clientIp)}${ua === undefined ? '' : `,"user_agent":${str(clean(ua, CAPS.userAgent))}`}}`;
  head += `,"decision":${str(outcome.decision)},"duration_us":${int(microsBetween(r.startNs, opts.endNs), '$.duration_us')},"id":${str(r.id)}`;
  if (r.identity !== undefined) head += `,"identity":${identityJson(r.identity, opts.nowMs)}`;
  head += `,"kind":${str(outcome.kind)}`;

  let mid = reason ? `"reason":${str(clean(reason, CAPS.reason))},` : '';
  mid += `"request":{${outcome.bytesIn === undefined ? '' : `"bytes_in":${int(outcome.bytesIn, '$.request.bytes_in')},`}`;
  mid += `"host":${str(clean(req.headers.host ?? '', CAPS.host))},"method":${str(clean(r.method, 32))}`;
  mid += `,"path":${str(clean(r.path ?? req.url?.split('?')[0] ?? '', CAPS.path))}`;
  if (r.query !== undefined) mid += `,"query":${str(clean(redactQuery(r.query, opts.redactParams), CAPS.query))}`;
  mid += `},"response":{${outcome.bytesOut === undefined ? '' : `"bytes_out":${int(outcome.bytesOut, '$.response.bytes_out')},`}"status":${int(outcome.status, '$.response.status')}}`;
  if (r.routeId !== undefined) mid += `,"route":${str(r.routeId)}`;

  let tail = `"ts":${str(new Date(opts.nowMs).toISOString())}`;
  const up = outcome.upstream;
  if (up !== undefined) {
    tail += `,"upstream":{"target":${str(up.target)}${up.ttfbNs === undefined ? '' : `,"ttfb_us":${int(Number(up.ttfbNs / 1000n), '$.upstream.ttfb_us')}`}}`;
  }
  tail += ',"v":1';
  const ws = outcome.websocket;
  if (ws !== undefined) {
    tail += `,"websocket":{"bytes_in":${int(ws.bytesIn, '$.websocket.bytes_in')},"bytes_out":${int(ws.bytesOut, '$.websocket.bytes_out')}`;
    tail += `,"duration_us":${int(microsBetween(ws.openNs, opts.endNs), '$.websocket.duration_us')},"messages_in":${int(ws.messagesIn, '$.websocket.messages_in')},"messages_out":${int(ws.messagesOut, '$.websocket.messages_out')}}`;
  }
  return { id: r.id, head, mid, tail };
}

/** The outcome an intent records: what its crash-recovered record says if the request never ends. */
const IN_FLIGHT: RequestOutcome = { kind: 'http', status: 0, decision: 'allow', reason: 'in-flight' };

/** Creates the auditor over an open audit log. */
export function createRequestAuditor(deps: { log: AuditLog; logger: Logger; now: () => number; redactParams: () => readonly string[] }): RequestAuditor {
  return {
    admit() {
      return deps.log.admission() === undefined ? undefined : 'GW_ERR_AUDIT_UNAVAILABLE';
    },
    async intent(req, r, durable) {
      const parts = requestRecordParts(req, r, IN_FLIGHT, { nowMs: deps.now(), endNs: process.hrtime.bigint(), redactParams: deps.redactParams() });
      await deps.log.intentParts(parts, durable);
    },
    complete(req, r, outcome) {
      let parts: RecordParts;
      try {
        parts = requestRecordParts(req, r, outcome, { nowMs: deps.now(), endNs: process.hrtime.bigint(), redactParams: deps.redactParams() });
      } catch (err) {
        deps.logger.error({ err, reqId: r.id }, 'audit record could not be built');
        return;
      }
      deps.log.appendParts(parts, false).catch((err: unknown) => {
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
