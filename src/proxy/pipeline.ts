/**
 * The request pipeline: the one place where the order of steps is written out, for HTTP requests and
 * WebSocket upgrades alike.
 *
 *   check host → normalize target → reserved prefix → match route → authenticate → decide → forward
 *
 * Each step is a named function returning a value; a request's state is one RequestContext, and it
 * keeps the config snapshot it started with even if a reload swaps in another one meanwhile.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { GatewayError, isGatewayError, type ErrorCode } from '../errors/index.js';
import type { RequestAuditor, RequestOutcome } from '../audit/request-auditor.js';
import type { Identity, MfaCheck } from '../identity/index.js';
import type { Channels } from '../metrics/events.js';
import { evaluatePolicy, type Decision } from '../policy/index.js';
import { normalizeTarget, type RouteMatch } from '../routing/index.js';
import { errorResponse, escapeHtml, redirectResponse, renderPage, wantsHtml, type GatewayResponse } from '../web/error-response.js';
import { safeReturnPath } from '../web/return-path.js';
import type { MfaRequirementConfig } from '../config/index.js';
import { buildUpstreamHeaders } from './headers.js';
import { forwardHttp, type ForwardResult } from './http-forwarder.js';
import { identityHeaders } from './identity-headers.js';
import type { Snapshot } from './snapshot.js';
import { forwardWebSocket } from './websocket-forwarder.js';

/** The reserved prefix for the gateway's own pages and APIs; nothing under it is ever proxied. */
export const RESERVED_SEGMENT = '.portcullis';

/** The audit-style decision label of a request's outcome (SPEC §4). */
export type DecisionLabel = 'allow' | 'deny' | 'step_up' | 'unauthenticated' | 'not_found' | 'error';

/** Finds who is asking; returns undefined when the request carries no valid identity. */
export interface Authenticator {
  authenticate(req: IncomingMessage, snapshot: Snapshot): Promise<Identity | undefined> | Identity | undefined;
}

/** Serves the gateway's own endpoints under `/.portcullis/`. */
export type GatewayEndpointHandler = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => void | Promise<void>;

/** Per-request state. */
export interface RequestContext {
  readonly req: IncomingMessage;
  readonly id: string;
  readonly startNs: bigint;
  readonly snapshot: Snapshot;
  readonly method: string;
  readonly html: boolean;
  readonly clientIp: string;
  readonly peerTrusted: boolean;
  /** The canonical path (what policy judged, what the upstream receives), once normalized. */
  path: string | undefined;
  query: string | undefined;
  segments: readonly string[];
  match: RouteMatch | undefined;
  identity: Identity | undefined;
  decision: Decision | undefined;
}

/** What the pipeline decided to do with a request. */
export type Verdict =
  | { readonly kind: 'respond'; readonly response: GatewayResponse; readonly label: DecisionLabel }
  | { readonly kind: 'gateway-endpoint' }
  | { readonly kind: 'forward'; readonly match: RouteMatch };

/** What the pipeline needs from the app. */
export interface PipelineDeps {
  /** The current snapshot; read once per request. */
  readonly snapshot: () => Snapshot;
  readonly authenticator: Authenticator;
  readonly endpoints: GatewayEndpointHandler;
  readonly channels: Channels;
  readonly logger: Logger;
  readonly now: () => number;
  /** Tracks in-flight work so shutdown can wait for it. */
  readonly track: <T>(work: Promise<T>) => Promise<T>;
  /** Whether the gateway is draining for shutdown (responses then carry Connection: close). */
  readonly draining: () => boolean;
  /** Records every request (and refuses to forward when it cannot). */
  readonly auditor?: RequestAuditor;
  /**
   * The step-up a user completed in a browser for this bearer token (RFC 9470 flow), when any. Asked
   * only when a bearer request would otherwise be answered with a step-up challenge.
   */
  readonly tokenStepUp?: (identity: Identity) => Promise<MfaCheck | undefined>;
  /** Signs the X-Portcullis-Assertion JWT for an identity and a route (audience). */
  readonly signAssertion?: (identity: Identity, audience: string) => Promise<string>;
}

// ---------------------------------------------------------------------------------------------
// Steps (each returns a value; the first one that produces a response ends the pipeline)
// ---------------------------------------------------------------------------------------------

function fail(ctx: RequestContext, code: ErrorCode, label: DecisionLabel, extra?: { routeId?: string; message?: string; headers?: Record<string, string> }): Verdict {
  const opts = {
    html: ctx.html,
    requestId: ctx.id,
    ...(extra?.routeId === undefined ? {} : { routeId: extra.routeId }),
    ...(extra?.message === undefined ? {} : { message: extra.message }),
    ...(extra?.headers === undefined ? {} : { extraHeaders: extra.headers }),
  };
  return { kind: 'respond', response: errorResponse(code, opts), label };
}

/** Step 1: exactly one Host header. */
function checkHostHeader(req: IncomingMessage): string | undefined {
  let host: string | undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name !== undefined && name.length === 4 && name.toLowerCase() === 'host') {
      if (host !== undefined) return undefined;
      host = raw[i + 1];
    }
  }
  return host;
}

/** Step 2: normalize the target once; the result is what policy judges and what is forwarded. */
function normalizeStep(req: IncomingMessage, ctx: RequestContext): Verdict | undefined {
  const host = checkHostHeader(req);
  if (host === undefined) return fail(ctx, 'GW_ERR_REQUEST_HOST', 'error');
  const t = normalizeTarget(req.url ?? '', host, ctx.snapshot.scheme);
  if (!t.ok) return fail(ctx, t.code, 'error', { message: `${t.code === 'GW_ERR_REQUEST_HOST' ? 'Bad Host header' : 'Bad request target'} (${t.reason}).` });
  ctx.path = t.path;
  ctx.query = t.query;
  ctx.segments = t.segments;
  const match = ctx.snapshot.routes.match(t.host, t.segments, ctx.method);
  ctx.match = match;
  return undefined;
}

/** Step 3: the gateway's own endpoints are never proxied. */
function reservedStep(ctx: RequestContext): Verdict | undefined {
  return ctx.segments[0] === RESERVED_SEGMENT ? { kind: 'gateway-endpoint' } : undefined;
}

/** Step 4: some route must match. */
function routeStep(ctx: RequestContext): Verdict | undefined {
  return ctx.match === undefined ? fail(ctx, 'GW_ERR_ROUTE_NOT_FOUND', 'not_found') : undefined;
}

/**
 * Step 5: who is asking. A store that cannot answer means nobody can be recognised: the request is
 * refused with 503 (closed), never treated as anonymous-but-allowed.
 */
async function authenticateStep(req: IncomingMessage, ctx: RequestContext, deps: PipelineDeps): Promise<Identity | undefined> {
  try {
    return await deps.authenticator.authenticate(req, ctx.snapshot);
  } catch (err) {
    throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', undefined, { cause: err });
  }
}

/** Step 6: policy decides; non-allow decisions become the SPEC §3 responses. */
function decideStep(ctx: RequestContext, match: RouteMatch, now: number): Verdict {
  const decision = evaluatePolicy(match, ctx.identity, now);
  ctx.decision = decision;
  const routeId = match.route.id;
  switch (decision.effect) {
    case 'allow':
      return { kind: 'forward', match };
    case 'deny':
      return fail(ctx, 'GW_ERR_POLICY_DENIED', 'deny', { routeId });
    case 'unauthenticated': {
      if (ctx.html && ctx.method === 'GET') return { kind: 'respond', response: redirectResponse(loginRedirect(ctx)), label: 'unauthenticated' };
      return fail(ctx, 'GW_ERR_AUTH_REQUIRED', 'unauthenticated', { headers: { 'www-authenticate': 'Bearer realm="portcullis"' } });
    }
    case 'step_up':
      return stepUpVerdict(ctx, decision.requirement);
  }
}

/**
 * The answer when a fresh second factor is needed (SPEC §3). A browser navigation goes to the step-up
 * page and comes back. A browser form post is not replayed (its body is gone): a page says so and
 * links to the step-up. API and CLI clients get the RFC 9470 challenge, and a JSON body with the URL
 * where the user completes the step-up in a browser; for a bearer token that URL names the token
 * (by hash), and the same token is accepted afterwards.
 */
function stepUpVerdict(ctx: RequestContext, requirement: MfaRequirementConfig): Verdict {
  if (ctx.html && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
    return { kind: 'respond', response: redirectResponse(`/.portcullis/mfa?rd=${encodeURIComponent(returnPath(ctx))}`), label: 'step_up' };
  }
  const maxAge = Math.floor(requirement.max_age / 1000);
  const factors = requirement.factors.join(' ');
  const description = `A ${requirement.factors.join(' or ')} check within ${maxAge}s is required`;
  const challenge = `Bearer error="insufficient_user_authentication", error_description="${description}", max_age=${maxAge}, acr_values="${factors}"`;
  if (ctx.html) {
    const back = sameOriginReferer(ctx) ?? '/';
    return { kind: 'respond', response: stepUpFormPage(ctx, back, challenge), label: 'step_up' };
  }
  const publicUrl = new URL(ctx.snapshot.config.server.public_url);
  const tokenRef = ctx.identity?.tokenRef;
  const stepUpUrl =
    ctx.identity?.auth === 'bearer' && tokenRef !== undefined
      ? `${publicUrl.origin}/.portcullis/mfa?token=${tokenRef}&factors=${requirement.factors.join(',')}`
      : `${publicUrl.protocol}//${ctx.req.headers.host ?? publicUrl.host}/.portcullis/mfa?rd=${encodeURIComponent(returnPath(ctx))}`;
  const body = {
    error: 'GW_ERR_MFA_REQUIRED',
    message: `${description}. Complete the step-up in a browser at step_up_url, then retry.`,
    request_id: ctx.id,
    route: ctx.match?.route.id,
    step_up_url: stepUpUrl,
    factors: requirement.factors,
    max_age: maxAge,
  };
  return {
    kind: 'respond',
    response: {
      status: 401,
      headers: { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'content-type': 'application/json; charset=utf-8', 'www-authenticate': challenge },
      body: `${JSON.stringify(body)}\n`,
    },
    label: 'step_up',
  };
}

/** The path of a same-origin Referer (where a refused form was), if the browser sent one. */
function sameOriginReferer(ctx: RequestContext): string | undefined {
  const referer = ctx.req.headers.referer;
  if (referer === undefined) return undefined;
  try {
    const u = new URL(referer);
    if (u.host.toLowerCase() !== (ctx.req.headers.host ?? '').toLowerCase()) return undefined;
    const path = safeReturnPath(u.pathname + u.search);
    return path === '/' && u.pathname !== '/' ? undefined : path;
  } catch {
    return undefined;
  }
}

/** Tells a browser whose form post needs a step-up that nothing was sent, and where to confirm. */
function stepUpFormPage(ctx: RequestContext, back: string, challenge: string): GatewayResponse {
  const target = `/.portcullis/mfa?rd=${encodeURIComponent(back)}`;
  const html = renderPage(
    'Confirm it’s you',
    `<h1>Confirm it’s you first</h1><p>This action needs a fresh second factor. <strong>What you submitted was not sent</strong>: nothing was changed.</p>
<p><a href="${escapeHtml(target)}">Confirm it’s you</a>, then submit it again.</p><p class="muted">Request <code>${escapeHtml(ctx.id)}</code></p>`,
  );
  return {
    status: 401,
    headers: {
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
      'www-authenticate': challenge,
    },
    body: html,
  };
}

/** The part of a request the auditor records. */
function auditView(ctx: RequestContext) {
  return {
    id: ctx.id,
    startNs: ctx.startNs,
    method: ctx.method,
    clientIp: ctx.clientIp,
    path: ctx.path,
    query: ctx.query,
    routeId: ctx.match?.route.id,
    identity: ctx.identity,
    reason: ctx.decision?.reason,
  };
}

function returnPath(ctx: RequestContext): string {
  return (ctx.path ?? '/') + (ctx.query === undefined ? '' : `?${ctx.query}`);
}

function loginRedirect(ctx: RequestContext): string {
  return `/.portcullis/login?rd=${encodeURIComponent(returnPath(ctx))}`;
}

// ---------------------------------------------------------------------------------------------

function contextFor(req: IncomingMessage, deps: PipelineDeps): RequestContext {
  const snapshot = deps.snapshot();
  const remote = req.socket.remoteAddress ?? '';
  return {
    req,
    id: randomUUID(),
    startNs: process.hrtime.bigint(),
    snapshot,
    method: req.method ?? 'GET',
    html: wantsHtml(req.headers.accept),
    clientIp: snapshot.clientAddress(remote, req.headers['x-forwarded-for']),
    peerTrusted: snapshot.isTrustedPeer(remote),
    path: undefined,
    query: undefined,
    segments: [],
    match: undefined,
    identity: undefined,
    decision: undefined,
  };
}

/**
 * Runs steps 1–6. Authentication (step 5) is the only asynchronous step; it runs only when a route
 * matched and is not public.
 */
async function runSteps(req: IncomingMessage, ctx: RequestContext, deps: PipelineDeps): Promise<Verdict> {
  const bad = normalizeStep(req, ctx);
  if (bad !== undefined) return bad;
  const reserved = reservedStep(ctx);
  if (reserved !== undefined) {
    // The gateway's own endpoints (`me`, `logout` …) need to know who is asking too.
    ctx.identity = await authenticateStep(req, ctx, deps);
    return reserved;
  }
  const early = routeStep(ctx);
  if (early !== undefined) return early;
  const match = ctx.match;
  if (match === undefined) return fail(ctx, 'GW_ERR_ROUTE_NOT_FOUND', 'not_found');
  if (!match.route.public) ctx.identity = await authenticateStep(req, ctx, deps);
  const verdict = decideStep(ctx, match, deps.now());
  const who = ctx.identity;
  if (ctx.decision?.effect !== 'step_up' || who?.auth !== 'bearer' || deps.tokenStepUp === undefined) return verdict;
  let grant: MfaCheck | undefined;
  try {
    grant = await deps.tokenStepUp(who);
  } catch (err) {
    throw new GatewayError('GW_ERR_STORE_UNAVAILABLE', undefined, { cause: err });
  }
  if (grant === undefined) return verdict;
  ctx.identity = { ...who, mfa: grant };
  return decideStep(ctx, match, deps.now());
}

/**
 * Connections the gateway has decided to close (after a refused or unframeable request). Requests
 * the client pipelined behind that one are never handled: the connection ends after the answer.
 */
const closingSockets = new WeakSet<object>();

function writeResponse(res: ServerResponse, response: GatewayResponse, requestId: string, close: boolean): void {
  const headers: Record<string, string> = { ...response.headers, 'x-portcullis-request-id': requestId };
  if (close) {
    headers.connection = 'close';
    closingSockets.add(res.socket ?? res);
  }
  res.writeHead(response.status, headers);
  res.end(response.body);
}

function upstreamFailure(ctx: RequestContext, r: Extract<ForwardResult, { ok: false }>): Verdict {
  if (r.kind === 'body-too-large') return fail(ctx, 'GW_ERR_REQUEST_BODY_TOO_LARGE', 'error');
  if (r.kind === 'timeout') return fail(ctx, 'GW_ERR_UPSTREAM_TIMEOUT', 'error');
  return fail(ctx, 'GW_ERR_UPSTREAM_UNAVAILABLE', 'error');
}

/** Creates the HTTP request and WebSocket upgrade handlers. */
export function createPipeline(deps: PipelineDeps) {
  const { channels } = deps;

  /** The request's child logger (`reqId`, `route`), created only when something is logged. */
  function log(ctx: RequestContext): Logger {
    return deps.logger.child({ reqId: ctx.id, route: ctx.match?.route.id });
  }

  /** Facts about how a request ended, beyond its status. */
  interface EndFacts {
    readonly upstreamNs?: bigint | undefined;
    readonly bytesIn?: number;
    readonly bytesOut?: number;
    readonly upstream?: string;
    readonly websocket?: RequestOutcome['websocket'];
    readonly reason?: string;
  }

  /** The end of every request: its audit record, its metrics, and (at debug) a log line. */
  function publishEnd(ctx: RequestContext, status: number, label: DecisionLabel, facts: EndFacts = {}): void {
    if (deps.auditor !== undefined) {
      deps.auditor.complete(ctx.req, auditView(ctx), {
        kind: facts.websocket === undefined ? 'http' : 'websocket',
        status,
        decision: label,
        ...(facts.reason === undefined ? {} : { reason: facts.reason }),
        ...(facts.bytesIn === undefined ? {} : { bytesIn: facts.bytesIn }),
        ...(facts.bytesOut === undefined ? {} : { bytesOut: facts.bytesOut }),
        ...(facts.upstream === undefined ? {} : { upstream: { target: facts.upstream, ttfbNs: facts.upstreamNs } }),
        ...(facts.websocket === undefined ? {} : { websocket: facts.websocket }),
      });
    }
    if (deps.logger.isLevelEnabled('debug')) {
      const durationMs = Number(process.hrtime.bigint() - ctx.startNs) / 1e6;
      log(ctx).debug({ method: ctx.method, path: ctx.path, status, decision: label, reason: ctx.decision?.reason, durationMs, client: ctx.clientIp }, 'request');
    }
    if (!channels.requestEnd.hasSubscribers) return;
    channels.requestEnd.publish({
      route: ctx.match?.route.id ?? 'none',
      method: ctx.method,
      status,
      decision: label,
      durationSeconds: Number(process.hrtime.bigint() - ctx.startNs) / 1e9,
      upstreamSeconds: facts.upstreamNs === undefined ? undefined : Number(facts.upstreamNs) / 1e9,
    });
  }

  /**
   * Before forwarding: the auditor must be able to record the request, and its intent is written
   * (fsynced first on strict routes). Returns a refusal to send instead, or undefined to go on.
   */
  async function admitStep(ctx: RequestContext, strict: boolean): Promise<Verdict | undefined> {
    const auditor = deps.auditor;
    if (auditor === undefined) return undefined;
    const refusal = auditor.admit();
    if (refusal !== undefined) return fail(ctx, refusal, 'error');
    try {
      await auditor.intent(ctx.req, auditView(ctx), strict);
    } catch (err) {
      log(ctx).error({ err }, 'audit intent could not be written; refusing to forward');
      return fail(ctx, 'GW_ERR_AUDIT_UNAVAILABLE', 'error');
    }
    return undefined;
  }

  /** X-Portcullis-User/-Email/-Groups/-MFA and the signed assertion, for a signed-in identity. */
  async function upstreamIdentity(ctx: RequestContext, routeId: string): Promise<(readonly [string, string])[]> {
    const identity = ctx.identity;
    if (identity === undefined) return [];
    const headers = identityHeaders(identity, deps.now());
    if (deps.signAssertion !== undefined) headers.push(['x-portcullis-assertion', await deps.signAssertion(identity, routeId)]);
    return headers;
  }

  async function forward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, match: RouteMatch): Promise<void> {
    const { snapshot } = ctx;
    const route = match.route;
    const upstream = snapshot.upstreams.get(route.id);
    if (upstream === undefined) throw new Error(`no upstream compiled for route ${route.id}`);
    const limits = snapshot.config.server.limits;
    const cl = req.headers['content-length'];
    const hasContentLength = cl !== undefined;
    if (hasContentLength && Number(cl) > limits.max_body) {
      const v = fail(ctx, 'GW_ERR_REQUEST_BODY_TOO_LARGE', 'error');
      if (v.kind === 'respond') {
        writeResponse(res, v.response, ctx.id, true);
        publishEnd(ctx, v.response.status, 'error');
      }
      return;
    }
    const refused = await admitStep(ctx, route.audit.strict);
    if (refused?.kind === 'respond') {
      writeResponse(res, refused.response, ctx.id, true);
      publishEnd(ctx, refused.response.status, 'error', { reason: 'audit-unavailable' });
      return;
    }
    const hasBody = (hasContentLength && cl !== '0') || req.headers['transfer-encoding'] !== undefined;
    const host = req.headers.host ?? '';
    const headers = buildUpstreamHeaders(req.rawHeaders, {
      remoteAddress: req.socket.remoteAddress ?? '',
      peerTrusted: ctx.peerTrusted,
      proto: snapshot.scheme,
      host,
      upstreamHost: route.preserve_host ? host : upstream.url.host,
      requestId: ctx.id,
      identityHeaders: await upstreamIdentity(ctx, route.id),
      dropAuthorization: ctx.identity?.auth === 'bearer',
      contentLength: hasContentLength ? cl : undefined,
    });
    const result = await forwardHttp(req, res, {
      pool: upstream.pool,
      path: returnPath(ctx),
      method: ctx.method,
      headers,
      requestId: ctx.id,
      headersTimeoutMs: upstream.responseTimeoutMs,
      bodyTimeoutMs: upstream.responseTimeoutMs,
      maxBodyBytes: limits.max_body,
      hasBody,
      hasContentLength,
    });
    if (result.ok) {
      publishEnd(ctx, result.status, 'allow', { upstreamNs: result.ttfbNs, bytesOut: result.bytesOut, upstream: route.upstream, ...(hasContentLength ? { bytesIn: Number(cl) } : {}) });
      return;
    }
    if (result.kind !== 'client-aborted' && result.kind !== 'body-too-large' && channels.upstreamError.hasSubscribers) {
      channels.upstreamError.publish({ route: route.id, kind: result.kind });
    }
    if (result.responseStarted || result.kind === 'client-aborted' || res.headersSent || res.destroyed) {
      if (result.kind === 'client-aborted') log(ctx).debug({ err: result.error.message }, 'client went away before the response ended');
      else log(ctx).warn({ kind: result.kind, err: result.error.message }, 'upstream response failed mid-stream');
      publishEnd(ctx, result.status === 0 ? 499 : result.status, 'error', { upstreamNs: result.ttfbNs, bytesOut: result.bytesOut, upstream: route.upstream, reason: `upstream-${result.kind}` });
      return;
    }
    log(ctx).warn({ kind: result.kind, err: result.error.message }, 'upstream request failed');
    const v = upstreamFailure(ctx, result);
    if (v.kind === 'respond') {
      writeResponse(res, v.response, ctx.id, result.kind === 'body-too-large' || deps.draining());
      publishEnd(ctx, v.response.status, 'error', { upstream: route.upstream, reason: `upstream-${result.kind}` });
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (closingSockets.has(req.socket)) {
      // Pipelined behind a request the gateway refused: drop it; the connection is closing.
      req.resume();
      return;
    }
    const ctx = contextFor(req, deps);
    try {
      const verdict = await runSteps(req, ctx, deps);
      // Node emits pipelined requests together; one behind a refused request is dropped here too.
      if (closingSockets.has(req.socket)) {
        req.resume();
        return;
      }
      switch (verdict.kind) {
        case 'respond':
          writeResponse(res, verdict.response, ctx.id, deps.draining() || verdict.response.status === 400);
          publishEnd(ctx, verdict.response.status, verdict.label);
          return;
        case 'gateway-endpoint':
          await deps.endpoints(req, res, ctx);
          return;
        case 'forward':
          if (deps.draining()) res.shouldKeepAlive = false;
          await forward(req, res, ctx, verdict.match);
          return;
      }
    } catch (err) {
      const known = isGatewayError(err);
      if (known) log(ctx).warn({ code: err.code, err: err.cause }, err.message);
      else log(ctx).error({ err }, 'request failed inside the gateway');
      if (!res.headersSent) {
        const v = fail(ctx, known ? err.code : 'GW_ERR_GATEWAY_INTERNAL', 'error');
        if (v.kind === 'respond') writeResponse(res, v.response, ctx.id, true);
      } else res.destroy();
      publishEnd(ctx, known ? err.status : 500, 'error', { reason: known ? err.code : 'internal-error' });
    }
  }

  function rejectUpgrade(socket: Duplex, response: GatewayResponse, requestId: string): void {
    let head = `HTTP/1.1 ${response.status} ${statusText(response.status)}\r\n`;
    const headers: Record<string, string> = {
      ...response.headers,
      'x-portcullis-request-id': requestId,
      'content-length': String(Buffer.byteLength(response.body)),
      connection: 'close',
    };
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    socket.end(`${head}\r\n${response.body}`);
  }

  async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const ctx = contextFor(req, deps);
    socket.on('error', () => socket.destroy());
    try {
      const upgrade = (req.headers.upgrade ?? '').toLowerCase();
      let verdict: Verdict;
      if (upgrade !== 'websocket') {
        // h2c and other protocol switches are refused: they would tunnel past the gateway's parser.
        verdict = fail(ctx, 'GW_ERR_REQUEST_HEADERS', 'error', { message: `Upgrade to "${upgrade}" is not supported.` });
      } else {
        verdict = await runSteps(req, ctx, deps);
      }
      if (verdict.kind === 'gateway-endpoint') verdict = fail(ctx, 'GW_ERR_ROUTE_NOT_FOUND', 'not_found');
      if (verdict.kind === 'forward' && !verdict.match.route.websocket) {
        verdict = fail(ctx, 'GW_ERR_WEBSOCKET_DISABLED', 'deny', { routeId: verdict.match.route.id });
      }
      if (verdict.kind === 'respond') {
        rejectUpgrade(socket, verdict.response, ctx.id);
        publishEnd(ctx, verdict.response.status, verdict.label);
        return;
      }
      if (verdict.kind !== 'forward') return;
      const route = verdict.match.route;
      const upstream = ctx.snapshot.upstreams.get(route.id);
      if (upstream === undefined) throw new Error(`no upstream compiled for route ${route.id}`);
      const refused = await admitStep(ctx, route.audit.strict);
      if (refused?.kind === 'respond') {
        rejectUpgrade(socket, refused.response, ctx.id);
        publishEnd(ctx, refused.response.status, 'error', { reason: 'audit-unavailable' });
        return;
      }
      const host = req.headers.host ?? '';
      const headers = buildUpstreamHeaders(req.rawHeaders, {
        remoteAddress: req.socket.remoteAddress ?? '',
        peerTrusted: ctx.peerTrusted,
        proto: ctx.snapshot.scheme,
        host,
        upstreamHost: route.preserve_host ? host : upstream.url.host,
        requestId: ctx.id,
        identityHeaders: await upstreamIdentity(ctx, route.id),
        dropAuthorization: ctx.identity?.auth === 'bearer',
        keepUpgrade: true,
      });
      const state = { opened: false };
      const result = await forwardWebSocket(socket, head, {
        upstream: upstream.url,
        path: returnPath(ctx),
        headers,
        connectTimeoutMs: upstream.connectTimeoutMs,
        onOpen: () => {
          state.opened = true;
          if (channels.websocket.hasSubscribers) channels.websocket.publish({ route: route.id, delta: 1 });
        },
      });
      if (state.opened && channels.websocket.hasSubscribers) channels.websocket.publish({ route: route.id, delta: -1 });
      if (result.ok) {
        publishEnd(ctx, 101, 'allow', {
          upstream: route.upstream,
          bytesIn: result.bytesIn,
          bytesOut: result.bytesOut,
          websocket: { messagesIn: result.messagesIn, messagesOut: result.messagesOut, bytesIn: result.bytesIn, bytesOut: result.bytesOut, openNs: result.openedAtNs },
        });
      } else if (result.kind === 'rejected') {
        publishEnd(ctx, result.status, 'allow', { upstream: route.upstream, reason: 'upstream-refused-upgrade' });
      } else {
        if (channels.upstreamError.hasSubscribers) channels.upstreamError.publish({ route: route.id, kind: result.kind });
        const v = result.kind === 'timeout' ? fail(ctx, 'GW_ERR_UPSTREAM_TIMEOUT', 'error') : fail(ctx, 'GW_ERR_UPSTREAM_UNAVAILABLE', 'error');
        if (v.kind === 'respond') {
          rejectUpgrade(socket, v.response, ctx.id);
          publishEnd(ctx, v.response.status, 'error');
        }
      }
    } catch (err) {
      log(ctx).error({ err }, 'upgrade failed inside the gateway');
      socket.destroy();
    }
  }

  return {
    handleRequest: (req: IncomingMessage, res: ServerResponse): void => {
      void deps.track(handle(req, res));
    },
    handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      void deps.track(handleUpgrade(req, socket, head));
    },
  };
}

function statusText(status: number): string {
  return STATUS_CODES[status] ?? 'Error';
}
