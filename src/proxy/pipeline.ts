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
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ERRORS, GatewayError, isGatewayError, type ErrorCode } from '../errors/index.js';
import type { RequestAuditor, RequestOutcome } from '../audit/request-auditor.js';
import type { Identity, MfaCheck } from '../identity/index.js';
import type { Channels } from '../metrics/events.js';
import { evaluatePolicy, type Decision } from '../policy/index.js';
import { canonicalizeHost, formatHost, normalizeTarget, sameHost, type CanonicalHost, type RouteMatch } from '../routing/index.js';
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
  /** The `WWW-Authenticate` for a request whose token was refused, when not the default (DPoP, RFC 9449 §7.1). */
  challenge?(req: IncomingMessage): string | undefined;
}

/**
 * How a gateway endpoint that wants its own request record ended (the audit viewer: its page loads,
 * API calls and live feed are audited like proxied requests). Endpoints that return nothing get none.
 */
export interface EndpointOutcome {
  readonly status: number;
  readonly decision: DecisionLabel;
  readonly reason?: string;
  readonly bytesIn?: number;
  readonly bytesOut?: number;
  /** For a WebSocket the endpoint served, until it closed. */
  readonly websocket?: RequestOutcome['websocket'];
}

/** Nothing (`V` = void, so plain `async () => {…}` handlers fit) or an outcome, maybe as a promise. */
type EndpointResult<V> = V | EndpointOutcome | Promise<V | EndpointOutcome>;

/** Serves the gateway's own endpoints under `/.portcullis/`; an endpoint may return its outcome. */
export type GatewayEndpointHandler = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => EndpointResult<void>;

/**
 * Takes a WebSocket upgrade under `/.portcullis/`: answers a refusal (the pipeline writes and records
 * it), or serves the socket and resolves with its outcome once it has closed; undefined → 404.
 */
export type GatewayUpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RequestContext) => Promise<Extract<Verdict, { kind: 'respond' }> | EndpointOutcome | undefined>;

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
  /** The canonical Host (what routing judged; sent upstream as Host with preserve_host, and as X-Forwarded-Host). */
  host: CanonicalHost | undefined;
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
  /** WebSocket upgrades under `/.portcullis/` (the audit viewer's live feed); without it they get 404. */
  readonly endpointUpgrade?: GatewayUpgradeHandler;
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

/**
 * Step 0: what Node's parser accepts but some other hop could read differently, refused rather than
 * forwarded: a version other than HTTP/1.x, a `Transfer-Encoding` other than exactly `chunked` (`gzip, chunked` names a coding the
 * gateway would not undo), any `Transfer-Encoding` on HTTP/1.0 (RFC 9112 §6.1: faulty framing), more
 * than one `Authorization` (which one would policy have judged?), and an `Expect` other than
 * `100-continue` (RFC 9110 §10.1.1).
 */
function framingStep(req: IncomingMessage, ctx: RequestContext): Verdict | undefined {
  if (req.httpVersionMajor !== 1) return fail(ctx, 'GW_ERR_REQUEST_HEADERS', 'error', { message: `HTTP/${req.httpVersion} is not spoken here.` });
  const te = req.headers['transfer-encoding'];
  if (te !== undefined) {
    if (req.httpVersionMinor === 0) return fail(ctx, 'GW_ERR_REQUEST_HEADERS', 'error', { message: 'Transfer-Encoding is not allowed on HTTP/1.0.' });
    if (te.trim().toLowerCase() !== 'chunked') return fail(ctx, 'GW_ERR_REQUEST_HEADERS', 'error', { message: 'Only "Transfer-Encoding: chunked" is supported.' });
  }
  // Per request and per header: compare by length first (a name that is not 13 characters long
  // cannot be Authorization in any case), so the common header costs one integer comparison.
  let authorizations = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name?.length === 13 && name.toLowerCase() === 'authorization') authorizations += 1;
  }
  if (authorizations > 1) return fail(ctx, 'GW_ERR_REQUEST_HEADERS', 'error', { message: 'More than one Authorization header.' });
  const expect = req.headers.expect;
  if (expect !== undefined && expect.trim().toLowerCase() !== '100-continue') return fail(ctx, 'GW_ERR_REQUEST_HEADERS', 'error', { message: 'Only "Expect: 100-continue" is supported.' });
  return undefined;
}

/** Step 2: normalize the target once; the result is what policy judges and what is forwarded. */
function normalizeStep(req: IncomingMessage, ctx: RequestContext): Verdict | undefined {
  const host = checkHostHeader(req);
  if (host === undefined) return fail(ctx, 'GW_ERR_REQUEST_HOST', 'error');
  const t = normalizeTarget(req.url ?? '', host, ctx.snapshot.scheme);
  if (!t.ok) return fail(ctx, t.code, 'error', { message: `${t.code === 'GW_ERR_REQUEST_HOST' ? 'Bad Host header' : 'Bad request target'} (${t.reason}).` });
  ctx.path = t.path;
  ctx.host = t.host;
  ctx.query = t.query;
  ctx.segments = t.segments;
  const match = ctx.snapshot.routes.match(t.host, t.segments, ctx.method);
  ctx.match = match;
  return undefined;
}

/** Step 3: the gateway's own endpoints are never proxied. */
function reservedStep(ctx: RequestContext): Verdict | undefined {
  if (ctx.segments[0] !== RESERVED_SEGMENT) return undefined;
  // No route owns anything under the prefix: records and metrics must not name one.
  ctx.match = undefined;
  return { kind: 'gateway-endpoint' };
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
    (ctx.identity?.auth === 'bearer' || ctx.identity?.auth === 'cli') && tokenRef !== undefined
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

/**
 * Cross-site WebSocket hijacking: a browser attaches the session cookie to a WebSocket handshake from
 * any page, and WebSockets have no CORS. An upgrade the cookie authenticates must come from the
 * request's own origin (the public URL's or the listener's scheme, and the same host) or from one the
 * route lists in `websocket_origins`. An upgrade without `Origin` does not come from a browser; a
 * bearer token is not an ambient credential a foreign page could borrow.
 */
function crossOriginUpgrade(req: IncomingMessage, ctx: RequestContext, allowed: readonly string[]): boolean {
  if (ctx.identity?.auth !== 'cookie') return false;
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return true; // `null` (sandboxed frames, file:) and anything unparsable
  }
  if (allowed.some((o) => URL.canParse(o) && new URL(o).origin === url.origin)) return false;
  const scheme = url.protocol === 'https:' ? 'https' : url.protocol === 'http:' ? 'http' : undefined;
  const publicScheme = new URL(ctx.snapshot.config.server.public_url).protocol === 'https:' ? 'https' : 'http';
  if (scheme === undefined || (scheme !== publicScheme && scheme !== ctx.snapshot.scheme) || url.pathname !== '/' || url.username !== '' || url.password !== '') return true;
  const from = canonicalizeHost(url.host, scheme);
  const to = canonicalizeHost(req.headers.host ?? '', scheme);
  return from === undefined || to === undefined || !sameHost(from, to);
}

/** The decision label of a response a gateway endpoint wrote by itself. */
function endpointLabel(status: number): DecisionLabel {
  if (status < 400) return 'allow';
  if (status === 401) return 'unauthenticated';
  if (status === 403) return 'deny';
  if (status === 404) return 'not_found';
  return 'error';
}

/** Whether the client waits for `100 Continue` before sending its body. */
function expectsContinue(req: IncomingMessage): boolean {
  return (req.headers.expect ?? '').trim().toLowerCase() === '100-continue';
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
    host: undefined,
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
  const ambiguous = framingStep(req, ctx);
  if (ambiguous !== undefined) return ambiguous;
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
  if (ctx.decision?.effect === 'unauthenticated') {
    const challenge = deps.authenticator.challenge?.(req);
    if (challenge !== undefined) return fail(ctx, 'GW_ERR_AUTH_REQUIRED', 'unauthenticated', { headers: { 'www-authenticate': challenge } });
  }
  if (ctx.decision?.effect !== 'step_up' || (who?.auth !== 'bearer' && who?.auth !== 'cli') || deps.tokenStepUp === undefined) return verdict;
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

  function endpointFacts(o: EndpointOutcome): EndFacts {
    return {
      ...(o.reason === undefined ? {} : { reason: o.reason }),
      ...(o.bytesIn === undefined ? {} : { bytesIn: o.bytesIn }),
      ...(o.bytesOut === undefined ? {} : { bytesOut: o.bytesOut }),
      ...(o.websocket === undefined ? {} : { websocket: o.websocket }),
    };
  }

  /**
   * Requests cut short by the client's side of the connection while in the pipeline: a body that fell
   * silent (408) or that Node's parser refused mid-way (400/413). Their one record says so, whatever
   * the step that was running when it happened saw (an aborted upstream call, an unreadable form).
   */
  const interrupted = new WeakMap<RequestContext, { readonly status: number; readonly reason: string }>();
  /** The request each connection is in the middle of, so a parser error in its body ends that request. */
  const inFlight = new WeakMap<object, { readonly ctx: RequestContext; readonly res: ServerResponse }>();

  /** The end of every request: its audit record, its metrics, and (at debug) a log line. */
  function publishEnd(ctx: RequestContext, statusSeen: number, labelSeen: DecisionLabel, factsSeen: EndFacts = {}): void {
    const cut = interrupted.get(ctx);
    const status = cut?.status ?? statusSeen;
    const label = cut === undefined ? labelSeen : 'error';
    const facts = cut === undefined ? factsSeen : { ...factsSeen, reason: cut.reason };
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
    const host = ctx.host === undefined ? (req.headers.host ?? '') : formatHost(ctx.host);
    const headers = buildUpstreamHeaders(req.rawHeaders, {
      remoteAddress: req.socket.remoteAddress ?? '',
      peerTrusted: ctx.peerTrusted,
      proto: snapshot.scheme,
      host,
      upstreamHost: route.preserve_host ? host : upstream.url.host,
      requestId: ctx.id,
      identityHeaders: await upstreamIdentity(ctx, route.id),
      dropAuthorization: ctx.identity?.auth === 'bearer' || ctx.identity?.auth === 'cli',
      contentLength: hasContentLength ? cl : undefined,
    });
    // Only now, with the request judged and admitted, is the client invited to send its body.
    if (expectsContinue(req) && !res.headersSent) res.writeContinue();
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
    inFlight.set(req.socket, { ctx, res });
    const unguard = guardBody(req, res, ctx);
    try {
      const verdict = await runSteps(req, ctx, deps);
      // Node emits pipelined requests together; one behind a refused request is dropped here too.
      if (closingSockets.has(req.socket)) {
        // …unless this very request was answered while its steps ran (its body broke the parser).
        if (interrupted.has(ctx)) publishEnd(ctx, 0, 'error');
        req.resume();
        return;
      }
      switch (verdict.kind) {
        case 'respond':
          writeResponse(res, verdict.response, ctx.id, deps.draining() || verdict.response.status === 400);
          publishEnd(ctx, verdict.response.status, verdict.label);
          return;
        case 'gateway-endpoint': {
          if (expectsContinue(req)) res.writeContinue();
          const outcome = await deps.endpoints(req, res, ctx);
          // Every request has its record: an endpoint that does not describe its outcome is recorded
          // by the status it answered (a refused logout or enrolment post included).
          if (outcome !== undefined) publishEnd(ctx, outcome.status, outcome.decision, endpointFacts(outcome));
          else publishEnd(ctx, res.statusCode, endpointLabel(res.statusCode), { reason: 'gateway-endpoint' });
          return;
        }
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
    } finally {
      unguard();
      if (inFlight.get(req.socket)?.ctx === ctx) inFlight.delete(req.socket);
    }
  }

  /**
   * Ends a request the client's side cut short (its body fell silent, or broke the parser): answers
   * `code` when nothing was answered yet, closes the connection, and makes the request's one record
   * say so. The answer is written on the socket, not through `res`: the response stays unfinished, so
   * whatever step is still reading the body (an upstream call, a form) sees the connection close and ends.
   */
  function cutShort(ctx: RequestContext, res: ServerResponse, socket: Duplex, code: ErrorCode, reason: string): void {
    if (interrupted.has(ctx)) return;
    interrupted.set(ctx, { status: ERRORS[code].status, reason });
    const v = fail(ctx, code, 'error');
    if (!res.headersSent && socket.writable && v.kind === 'respond') {
      closingSockets.add(socket);
      rejectUpgrade(socket, v.response, ctx.id);
    } else socket.destroy();
  }

  /**
   * A request body must keep arriving (slowloris bodies): after `server.timeouts.request_body` of
   * silence on the connection the request is answered 408 when nothing was answered yet, and the
   * connection is closed. Node emits `timeout` on a request that is not complete. Returns the cleanup.
   */
  function guardBody(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): () => void {
    const cl = req.headers['content-length'];
    const hasBody = (cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (!hasBody || req.complete) return () => undefined;
    const socket = req.socket;
    const onIdle = (): void => {
      if (req.complete) return;
      log(ctx).info('request body timed out');
      cutShort(ctx, res, socket, 'GW_ERR_REQUEST_TIMEOUT', 'request-body-timeout');
    };
    const onEnd = (): void => {
      req.off('timeout', onIdle);
      // Once the response has finished, Node has armed its keep-alive timer on the socket: leave it.
      if (!res.writableFinished) socket.setTimeout(0);
    };
    socket.setTimeout(ctx.snapshot.config.server.timeouts.request_body);
    req.on('timeout', onIdle);
    req.once('end', onEnd);
    return () => {
      req.off('timeout', onIdle);
      req.off('end', onEnd);
    };
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
      } else if (ctx.method !== 'GET' || req.httpVersion !== '1.1') {
        // RFC 6455 §4.1. The upstream handshake is always a GET: policy must not judge another method.
        verdict = fail(ctx, 'GW_ERR_REQUEST_HEADERS', 'error', { message: 'A WebSocket upgrade must be an HTTP/1.1 GET.' });
      } else {
        verdict = await runSteps(req, ctx, deps);
      }
      if (verdict.kind === 'gateway-endpoint') {
        const served = deps.endpointUpgrade === undefined ? undefined : await deps.endpointUpgrade(req, socket, head, ctx);
        if (served !== undefined && !('kind' in served)) {
          publishEnd(ctx, served.status, served.decision, endpointFacts(served));
          return;
        }
        verdict = served ?? fail(ctx, 'GW_ERR_ROUTE_NOT_FOUND', 'not_found');
      }
      if (verdict.kind === 'forward' && !verdict.match.route.websocket) {
        verdict = fail(ctx, 'GW_ERR_WEBSOCKET_DISABLED', 'deny', { routeId: verdict.match.route.id });
      }
      let refusal: string | undefined;
      if (verdict.kind === 'forward' && crossOriginUpgrade(req, ctx, verdict.match.route.websocket_origins)) {
        refusal = 'cross-origin-websocket';
        verdict = fail(ctx, 'GW_ERR_WEBSOCKET_ORIGIN', 'deny', { routeId: verdict.match.route.id });
      }
      if (verdict.kind === 'respond') {
        rejectUpgrade(socket, verdict.response, ctx.id);
        publishEnd(ctx, verdict.response.status, verdict.label, refusal === undefined ? {} : { reason: refusal });
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
      const host = ctx.host === undefined ? (req.headers.host ?? '') : formatHost(ctx.host);
      const headers = buildUpstreamHeaders(req.rawHeaders, {
        remoteAddress: req.socket.remoteAddress ?? '',
        peerTrusted: ctx.peerTrusted,
        proto: ctx.snapshot.scheme,
        host,
        upstreamHost: route.preserve_host ? host : upstream.url.host,
        requestId: ctx.id,
        identityHeaders: await upstreamIdentity(ctx, route.id),
        dropAuthorization: ctx.identity?.auth === 'bearer' || ctx.identity?.auth === 'cli',
        keepUpgrade: true,
      });
      const state: { opened: boolean; closedBy: string | undefined; unwatch: () => void } = { opened: false, closedBy: undefined, unwatch: () => undefined };
      const closer = new AbortController();
      const result = await forwardWebSocket(socket, head, {
        upstream: upstream.url,
        path: returnPath(ctx),
        headers,
        connectTimeoutMs: upstream.connectTimeoutMs,
        requestId: ctx.id,
        signal: closer.signal,
        onOpen: () => {
          state.opened = true;
          state.unwatch = watchConnection(req, ctx, route.id, (reason) => {
            state.closedBy = reason;
            closer.abort();
          });
          if (channels.websocket.hasSubscribers) channels.websocket.publish({ route: route.id, delta: 1 });
        },
      });
      state.unwatch();
      if (state.opened && channels.websocket.hasSubscribers) channels.websocket.publish({ route: route.id, delta: -1 });
      if (result.ok) {
        publishEnd(ctx, 101, 'allow', {
          ...(state.closedBy === undefined ? {} : { reason: state.closedBy }),
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

  /**
   * Re-checks an open WebSocket every `identity.session.recheck_every`: the session (or bearer token)
   * must still be live, and the current configuration must still let this identity through this
   * route. A second factor that has aged past `max_age` does not end a connection it opened. Calls
   * `close` with the reason otherwise; returns the function that stops watching.
   */
  function watchConnection(req: IncomingMessage, ctx: RequestContext, routeId: string, close: (reason: string) => void): () => void {
    const host = ctx.host;
    if (host === undefined) return () => undefined;
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      recheck(req, host, ctx.segments, routeId)
        .then((reason) => {
          if (reason === undefined) return;
          clearInterval(timer);
          log(ctx).info({ reason }, 'closing a WebSocket its identity or route no longer allows');
          close(reason);
        })
        .catch((err: unknown) => log(ctx).warn({ err }, 'WebSocket re-check failed; trying again'))
        .finally(() => {
          running = false;
        });
    }, ctx.snapshot.config.identity.session.recheck_every);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Why an open WebSocket must close now, or undefined while it may stay open. */
  async function recheck(req: IncomingMessage, host: CanonicalHost, segments: readonly string[], routeId: string): Promise<string | undefined> {
    const snapshot = deps.snapshot();
    const match = snapshot.routes.match(host, segments, 'GET');
    if (match?.route.id !== routeId || !match.route.websocket) return 'route-changed';
    let identity: Identity | undefined;
    if (!match.route.public) {
      try {
        identity = await deps.authenticator.authenticate(req, snapshot);
      } catch {
        return undefined; // the store did not answer: nothing was revoked that we know of; ask again
      }
    }
    const effect = evaluatePolicy(match, identity, deps.now()).effect;
    if (effect === 'unauthenticated') return 'session-ended';
    if (effect === 'deny') return 'access-revoked';
    return undefined;
  }

  /**
   * A request Node's parser refused: bad syntax or framing, a head too large, or too slow
   * (`request_headers`); other socket errors just close the connection. When the connection is in the middle of a request the pipeline is handling
   * (the error is in its body), that request ends with the refusal — one record, under its id.
   * Otherwise the refusal gets an id and a record of its own. A connection that never sent a byte
   * (an unused pre-connect that timed out) is closed without an answer: it made no request.
   */
  function handleClientError(err: Error & { code?: string }, socket: Duplex): void {
    // Node also reports plain socket errors here (a reset, or the gateway itself destroying the socket
    // of a failed response): those are not refusals, and the request they interrupt records itself.
    const refusal = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || (err.code?.startsWith('HPE_') ?? false);
    if (!refusal) {
      socket.destroy();
      return;
    }
    const code: ErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'GW_ERR_REQUEST_HEADERS_TOO_LARGE' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'GW_ERR_REQUEST_TIMEOUT' : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 'GW_ERR_REQUEST_BODY_TOO_LARGE' : 'GW_ERR_REQUEST_HEADERS';
    const reason = code === 'GW_ERR_REQUEST_TIMEOUT' ? 'request-head-timeout' : `unparsable-request:${(err.code ?? 'unknown').toLowerCase()}`;
    const current = inFlight.get(socket);
    if (current !== undefined && current.ctx.req.complete) {
      // The error is in what the client pipelined behind a complete request: that one is answered as
      // it would have been (it may already be upstream), then the connection closes; the rest is dropped.
      if (current.res.writableFinished) socket.end();
      else {
        if (!current.res.headersSent) current.res.shouldKeepAlive = false;
        current.res.once('finish', () => socket.end());
      }
      return;
    }
    if (current !== undefined) {
      cutShort(current.ctx, current.res, socket, code, reason);
      return;
    }
    const bytesRead = (socket as Partial<Pick<Socket, 'bytesRead'>>).bytesRead ?? 1;
    if (!socket.writable || (code === 'GW_ERR_REQUEST_TIMEOUT' && bytesRead === 0)) {
      socket.destroy();
      return;
    }
    const id = randomUUID();
    const startNs = process.hrtime.bigint();
    const r = errorResponse(code, { html: false, requestId: id });
    const headers: Record<string, string> = { ...r.headers, 'x-portcullis-request-id': id, 'content-length': String(Buffer.byteLength(r.body)), connection: 'close' };
    let head = `HTTP/1.1 ${r.status} ${statusText(r.status)}\r\n`;
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
    socket.end(`${head}\r\n${r.body}`);
    const remote = (socket as Partial<Pick<Socket, 'remoteAddress'>>).remoteAddress ?? '';
    deps.auditor?.unparsed({ id, startNs, clientIp: deps.snapshot().clientAddress(remote, undefined), status: r.status, reason });
    if (channels.requestEnd.hasSubscribers) {
      channels.requestEnd.publish({ route: 'none', method: 'OTHER', status: r.status, decision: 'error', durationSeconds: 0, upstreamSeconds: undefined });
    }
  }

  /** `CONNECT` (authority-form) is refused and recorded: the gateway is not a forward proxy. */
  function handleConnect(req: IncomingMessage, socket: Duplex): void {
    socket.on('error', () => socket.destroy());
    const ctx = contextFor(req, deps);
    const v = fail(ctx, 'GW_ERR_REQUEST_TARGET', 'error', { message: 'CONNECT is not supported (authority-form target).' });
    if (v.kind !== 'respond') return;
    rejectUpgrade(socket, v.response, ctx.id);
    publishEnd(ctx, v.response.status, v.label, { reason: 'connect-refused' });
  }

  return {
    handleRequest: (req: IncomingMessage, res: ServerResponse): void => {
      void deps.track(handle(req, res));
    },
    handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      void deps.track(handleUpgrade(req, socket, head));
    },
    handleClientError,
    handleConnect,
  };
}

function statusText(status: number): string {
  return STATUS_CODES[status] ?? 'Error';
}
