/**
 * The command line's endpoints (docs/cli-protocol.md): the gateway as the authorization server for
 * its own CLI tokens, and the discovery and token-management endpoints around them.
 *
 *   GET  cli/authorize      confirmation page (RFC 8252 loopback redirect, PKCE S256, state)
 *   POST cli/authorize      approve / deny (CSRF + same origin) → 303 to the loopback redirect_uri
 *   POST cli/token          authorization_code, refresh_token, device_code grants (form-urlencoded)
 *   POST cli/device         device authorization (RFC 8628) — or, with `user_code`, the browser form
 *   GET  cli/device         the page where a signed-in user enters and confirms a user code
 *   POST cli/revoke         RFC 7009 revocation of an access or refresh token
 *   GET  cli/routes         what the caller could reach (routes and databases), JSON
 *   GET  tokens             the user's CLI tokens (page, or JSON)
 *   POST tokens/revoke      revoke one of them (CSRF for a browser session)
 *
 * A redirect goes only to a validated loopback IP-literal redirect_uri; every other problem with the
 * request is a 400 page and no redirect. Every issue, refresh, revocation and refused grant is an
 * `auth` audit record carrying the token's reference, never the token.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AuthEvent, AuthEventSink } from '../audit/auth-events.js';
import type { MfaRequirementConfig } from '../config/index.js';
import { databasePolicyTarget } from '../database/index.js';
import {
  CODE_VERIFIER_RE,
  DEVICE_INTERVAL_S,
  DEVICE_TTL_MS,
  SHA256_B64U_RE,
  canonicalUserCode,
  validLoopbackRedirect,
  verifyDpop,
  type CliGrantSubject,
  type CliTokenRecord,
  type CliTokens,
} from '../identity/cli-tokens.js';
import type { Identity, MfaCheck } from '../identity/index.js';
import { sessionReference, type Session, type SessionManager } from '../identity/sessions.js';
import { evaluatePolicy } from '../policy/index.js';
import type { EndpointOutcome, RequestContext } from '../proxy/pipeline.js';
import type { Store } from '../store/store.js';
import { authorizePageHtml, cliErrorPageHtml, deviceConfirmPageHtml, deviceDonePageHtml, deviceEntryPageHtml, tokensPageHtml, type TokenRow } from './cli-pages.js';
import { connectAddress } from './connect-endpoints.js';
import { safeEqual } from './cookies.js';
import { FormError, json, notFound, page, queryParams, readForm, redirect, send, type EndpointKit } from './endpoint-kit.js';
import { errorResponse, type GatewayResponse } from './error-response.js';

/** What the CLI endpoints need. */
export interface CliEndpointDeps {
  readonly kit: EndpointKit;
  readonly cli: CliTokens;
  readonly sessions: SessionManager;
  /** For the device page's rate limits. */
  readonly store: Store;
  /** A browser step-up granted to a token (RFC 9470 flow), if any. */
  readonly tokenStepUp?: (identity: Identity) => Promise<MfaCheck | undefined>;
  /** The authenticator's challenge for a request whose token it refused. */
  readonly challenge?: (req: IncomingMessage) => string | undefined;
  readonly events: AuthEventSink;
  readonly logger: Logger;
  readonly now: () => number;
}

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** Wrong user codes a user may type per window before the device page refuses (RFC 8628 §5.1). */
const DEVICE_FAILS_PER_USER = 5;
const DEVICE_FAIL_WINDOW_MS = 15 * 60_000;
/** Device authorizations one client IP may start per minute (each is store state for 10 minutes). */
const DEVICE_STARTS_PER_IP = 20;
/** Printable, no controls (a label is shown on pages and written to records, escaped and capped). */
const NAME_RE = /^[^\p{C}]{0,64}$/u;
/** RFC 6749 `state`: visible ASCII, bounded. */
const STATE_RE = /^[\x21-\x7e]{1,512}$/;

interface AuthorizeParams {
  readonly redirectUri: string;
  readonly state: string;
  readonly codeChallenge: string;
  readonly jkt: string | undefined;
  readonly name: string;
}

function single(p: URLSearchParams, name: string): string | undefined | null {
  const all = p.getAll(name);
  if (all.length > 1) return null;
  return all[0];
}

/** Validates the authorize parameters (query or form); a message when they are unusable. */
export function parseAuthorizeParams(p: URLSearchParams): { ok: true; params: AuthorizeParams } | { ok: false; message: string } {
  const names = ['response_type', 'redirect_uri', 'state', 'code_challenge', 'code_challenge_method', 'jkt', 'name'];
  for (const n of names) if (single(p, n) === null) return { ok: false, message: `The parameter ${n} appears more than once.` };
  const redirectUri = single(p, 'redirect_uri');
  const valid = validLoopbackRedirect(redirectUri);
  if (valid === undefined || valid !== redirectUri) return { ok: false, message: 'redirect_uri must be http://127.0.0.1:<port>/<path> or http://[::1]:<port>/<path>.' };
  if (single(p, 'response_type') !== 'code') return { ok: false, message: 'response_type must be code.' };
  const state = single(p, 'state') ?? '';
  if (!STATE_RE.test(state)) return { ok: false, message: 'state is missing or malformed.' };
  const codeChallenge = single(p, 'code_challenge') ?? '';
  if (single(p, 'code_challenge_method') !== 'S256' || !SHA256_B64U_RE.test(codeChallenge)) return { ok: false, message: 'PKCE is required: code_challenge (S256) and code_challenge_method=S256.' };
  const jkt = single(p, 'jkt') ?? undefined;
  if (jkt !== undefined && !SHA256_B64U_RE.test(jkt)) return { ok: false, message: 'jkt must be an RFC 7638 SHA-256 thumbprint.' };
  const name = single(p, 'name') ?? '';
  if (!NAME_RE.test(name)) return { ok: false, message: 'name must be at most 64 printable characters.' };
  return { ok: true, params: { redirectUri: valid, state, codeChallenge, jkt, name } };
}

/** Whether a second-factor check satisfies a requirement now. */
function mfaFresh(requirement: MfaRequirementConfig | undefined, check: MfaCheck | undefined, now: number): boolean {
  if (requirement === undefined) return true;
  if (check === undefined || check.factor === 'recovery' || !requirement.factors.includes(check.factor)) return false;
  const age = now - check.at;
  return age <= requirement.max_age && age >= -60_000;
}

function newer(a: MfaCheck | undefined, b: MfaCheck | undefined): MfaCheck | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return b.at > a.at ? b : a;
}

/**
 * The confirmation page. Browsers apply `form-action` to the redirect that follows a form post, so the
 * page allows exactly the loopback origin it will redirect to (CSP cannot name an IPv6 literal: for
 * `[::1]` the directive is left out; the page has no script and only escaped values).
 */
function authorizePage(html: string, redirectUri: string): GatewayResponse {
  const r = page(200, html);
  const origin = new URL(redirectUri).origin;
  const formAction = origin.startsWith('http://127.0.0.1:') ? ` form-action 'self' ${origin};` : '';
  return { ...r, headers: { ...r.headers, 'content-security-policy': `default-src 'none'; style-src 'unsafe-inline';${formAction} frame-ancestors 'none'; base-uri 'none'` } };
}

/** Creates the handler for `/.portcullis/cli/…` and `/.portcullis/tokens…`. */
export function createCliEndpoints(deps: CliEndpointDeps) {
  const { kit, cli, sessions, store, now } = deps;

  function reply(res: ServerResponse, ctx: RequestContext, r: GatewayResponse, decision: EndpointOutcome['decision'], reason: string): EndpointOutcome {
    send(res, ctx, r);
    return { status: r.status, decision, reason };
  }

  function oauthError(res: ServerResponse, ctx: RequestContext, status: number, error: string, description: string, extra: Record<string, string> = {}): EndpointOutcome {
    return reply(res, ctx, json(status, { error, error_description: description }, { pragma: 'no-cache', ...extra }), status === 401 ? 'unauthenticated' : 'deny', error);
  }

  function errorPage(res: ServerResponse, ctx: RequestContext, status: number, title: string, message: string): EndpointOutcome {
    return reply(res, ctx, page(status, cliErrorPageHtml(title, message)), status === 401 ? 'unauthenticated' : status >= 500 ? 'error' : 'deny', title.toLowerCase().replace(/[^a-z]+/g, '-'));
  }

  function emit(ctx: RequestContext, req: IncomingMessage, e: { action: AuthEvent['action']; user: string | undefined; provider: string; session: string | undefined; reason: string; ref: string | undefined; label: string | undefined; bound: boolean }): void {
    const event: AuthEvent = {
      kind: 'auth',
      action: e.action,
      provider: e.provider,
      user: e.user?.slice(0, 256),
      reason: e.reason,
      requestId: ctx.id,
      client: { ip: ctx.clientIp, userAgent: req.headers['user-agent']?.slice(0, 512) },
      session: e.session,
      at: now(),
      cliToken: { ref: e.ref, label: e.label, bound: e.bound },
    };
    deps.events.emit(event);
    deps.logger.info({ reqId: ctx.id, event: { ...event, client: undefined } }, `auth ${e.action}`);
  }

  function here(ctx: RequestContext): string {
    return `${ctx.path ?? '/'}${ctx.query === undefined ? '' : `?${ctx.query}`}`;
  }

  function publicOrigin(ctx: RequestContext): string {
    return new URL(ctx.snapshot.config.server.public_url).origin;
  }

  /** `<public scheme>://<Host><path>` — the `htu` a DPoP proof for this request must name. */
  function requestUrl(ctx: RequestContext, req: IncomingMessage): string {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    return `${kit.publicScheme(ctx)}://${(req.headers.host ?? '').toLowerCase()}${q === -1 ? url : url.slice(0, q)}`;
  }

  function subjectOf(session: Session): CliGrantSubject {
    const r = session.record;
    return {
      user: r.user,
      email: r.email,
      groups: [...r.groups],
      provider: r.provider,
      amr: [r.method],
      authTime: r.authTime,
      mfa: r.mfa,
      sessionHandle: sessions.handleOf(session),
      session: sessionReference(session.id),
    };
  }

  function stepUpTarget(ctx: RequestContext, rd: string): string {
    const factors = ctx.snapshot.config.identity.cli_tokens.mfa?.factors.join(',') ?? '';
    return `/.portcullis/mfa?rd=${encodeURIComponent(rd)}&factors=${factors}`;
  }

  function csrfOk(ctx: RequestContext, req: IncomingMessage, session: Session, token: string): boolean {
    return safeEqual(token, session.record.csrf) && kit.sameOrigin(ctx, req);
  }

  // --- authorize -------------------------------------------------------------------------------

  async function authorizeGet(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
    const parsed = parseAuthorizeParams(queryParams(ctx));
    if (!parsed.ok) return errorPage(res, ctx, 400, 'Bad command-line sign-in request', parsed.message);
    const session = await kit.currentSession(req, ctx);
    if (session === undefined) return reply(res, ctx, redirect(`/.portcullis/login?rd=${encodeURIComponent(here(ctx))}`, 302), 'unauthenticated', 'user-unauthenticated');
    const cfg = ctx.snapshot.config.identity.cli_tokens;
    if (!mfaFresh(cfg.mfa, session.record.mfa, now())) return reply(res, ctx, redirect(stepUpTarget(ctx, here(ctx)), 302), 'step_up', 'cli-token-mfa');
    const { params } = parsed;
    if (cfg.require_binding && params.jkt === undefined) return errorPage(res, ctx, 400, 'Key binding required', 'This gateway issues only key-bound (DPoP) tokens. Run portcullis login without --no-bind.');
    const fields: Record<string, string> = {
      response_type: 'code',
      redirect_uri: params.redirectUri,
      state: params.state,
      code_challenge: params.codeChallenge,
      code_challenge_method: 'S256',
      ...(params.jkt === undefined ? {} : { jkt: params.jkt }),
      ...(params.name === '' ? {} : { name: params.name }),
    };
    const html = authorizePageHtml({ user: session.record.user, name: params.name, expiresAt: now() + cfg.ttl, bound: params.jkt !== undefined, csrf: session.record.csrf, fields });
    return reply(res, ctx, authorizePage(html, params.redirectUri), 'allow', 'cli-authorize-page');
  }

  async function authorizePost(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (err) {
      return errorPage(res, ctx, 400, 'Bad command-line sign-in request', err instanceof FormError ? `Bad form: ${err.message}.` : 'Bad form.');
    }
    const parsed = parseAuthorizeParams(form);
    if (!parsed.ok) return errorPage(res, ctx, 400, 'Bad command-line sign-in request', parsed.message);
    const { params } = parsed;
    const session = await kit.currentSession(req, ctx);
    if (session === undefined) return errorPage(res, ctx, 401, 'Signed out', 'Your session ended. Run portcullis login again.');
    if (!csrfOk(ctx, req, session, form.get('csrf') ?? '')) return errorPage(res, ctx, 403, 'Refused', 'This form expired or came from another site. Run portcullis login again.');
    const target = new URL(params.redirectUri);
    const decision = form.get('decision');
    if (decision === 'deny') {
      target.searchParams.set('error', 'access_denied');
      target.searchParams.set('state', params.state);
      emit(ctx, req, { action: 'cli_token_refused', user: session.record.user, provider: session.record.provider, session: sessionReference(session.id), reason: 'user-denied', ref: undefined, label: params.name, bound: params.jkt !== undefined });
      return reply(res, ctx, redirect(target.href, 303), 'deny', 'cli-authorize-denied');
    }
    if (decision !== 'approve') return errorPage(res, ctx, 400, 'Bad command-line sign-in request', 'Choose Allow or Deny.');
    const cfg = ctx.snapshot.config.identity.cli_tokens;
    if (!mfaFresh(cfg.mfa, session.record.mfa, now())) {
      const again = new URLSearchParams({ response_type: 'code', redirect_uri: params.redirectUri, state: params.state, code_challenge: params.codeChallenge, code_challenge_method: 'S256' });
      if (params.jkt !== undefined) again.set('jkt', params.jkt);
      if (params.name !== '') again.set('name', params.name);
      return reply(res, ctx, redirect(stepUpTarget(ctx, `/.portcullis/cli/authorize?${again.toString()}`), 303), 'step_up', 'cli-token-mfa');
    }
    if (cfg.require_binding && params.jkt === undefined) return errorPage(res, ctx, 400, 'Key binding required', 'This gateway issues only key-bound (DPoP) tokens.');
    const code = await cli.newCode({ subject: subjectOf(session), redirectUri: params.redirectUri, codeChallenge: params.codeChallenge, jkt: params.jkt, name: params.name });
    target.searchParams.set('code', code);
    target.searchParams.set('state', params.state);
    return reply(res, ctx, redirect(target.href, 303), 'allow', 'cli-authorize-approved');
  }

  // --- token -----------------------------------------------------------------------------------

  async function issueAnswer(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    subject: CliGrantSubject,
    o: { name: string; jkt: string | undefined; action: 'cli_token_issue' | 'cli_token_refresh'; reason: string },
  ): Promise<EndpointOutcome> {
    const cfg = ctx.snapshot.config.identity.cli_tokens;
    const pair = await cli.issue(subject, { name: o.name, jkt: o.jkt, ttlMs: cfg.ttl });
    emit(ctx, req, { action: o.action, user: subject.user, provider: subject.provider, session: subject.session, reason: o.reason, ref: pair.ref, label: o.name, bound: o.jkt !== undefined });
    const body = {
      access_token: pair.accessToken,
      token_type: o.jkt === undefined ? 'Bearer' : 'DPoP',
      expires_in: Math.floor((pair.record.expiresAt - now()) / 1000),
      expires_at: new Date(pair.record.expiresAt).toISOString(),
      refresh_token: pair.refreshToken,
      user: subject.user,
      groups: subject.groups,
    };
    return reply(res, ctx, json(200, body, { pragma: 'no-cache' }), 'allow', o.action);
  }

  async function token(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (err) {
      return oauthError(res, ctx, 400, 'invalid_request', err instanceof FormError ? err.message : 'bad form');
    }
    for (const k of new Set(form.keys())) if (form.getAll(k).length > 1) return oauthError(res, ctx, 400, 'invalid_request', `${k} appears more than once`);
    const refused = (status: number, error: string, description: string, who?: { user: string; provider: string; session: string | undefined; label?: string; bound?: boolean }): EndpointOutcome => {
      emit(ctx, req, { action: 'cli_token_refused', user: who?.user, provider: who?.provider ?? 'cli', session: who?.session, reason: `${error}: ${description}`, ref: undefined, label: who?.label, bound: who?.bound ?? false });
      return oauthError(res, ctx, status, error, description);
    };
    // A DPoP proof (when sent) is checked before any single-use value is spent.
    const dpop = req.headers.dpop;
    let proofJkt: string | undefined;
    if (dpop !== undefined) {
      if (typeof dpop !== 'string') return refused(400, 'invalid_dpop_proof', 'one DPoP header expected');
      const r = await verifyDpop(cli, dpop, { method: 'POST', url: requestUrl(ctx, req), now: now() });
      if (!r.ok) return refused(400, 'invalid_dpop_proof', `DPoP proof refused (${r.reason})`);
      proofJkt = r.jkt;
    }
    const cfg = ctx.snapshot.config.identity.cli_tokens;
    /** The key the new token is bound to: the one promised earlier (must match the proof), else the proof's. */
    const bindingFor = (promised: string | undefined): { ok: true; jkt: string | undefined } | { ok: false; description: string } => {
      if (promised !== undefined) {
        if (proofJkt === undefined) return { ok: false, description: 'this grant is bound to a key: send a DPoP proof' };
        if (!safeEqual(proofJkt, promised)) return { ok: false, description: 'the DPoP key is not the one this grant is bound to' };
        return { ok: true, jkt: promised };
      }
      return { ok: true, jkt: proofJkt };
    };
    const grantType = form.get('grant_type');
    switch (grantType) {
      case 'authorization_code': {
        const code = form.get('code') ?? '';
        const verifier = form.get('code_verifier') ?? '';
        const redirectUri = form.get('redirect_uri') ?? '';
        if (code === '' || redirectUri === '' || !CODE_VERIFIER_RE.test(verifier)) return refused(400, 'invalid_request', 'code, code_verifier (43-128 characters) and redirect_uri are required');
        const saved = await cli.takeCode(code);
        if (saved === undefined) return refused(400, 'invalid_grant', 'the code is unknown, expired or already used');
        const who = { user: saved.subject.user, provider: saved.subject.provider, session: saved.subject.session, label: saved.name, bound: saved.jkt !== undefined };
        if (!safeEqual(redirectUri, saved.redirectUri)) return refused(400, 'invalid_grant', 'redirect_uri does not match', who);
        const challenge = createHash('sha256').update(verifier).digest('base64url');
        if (!safeEqual(challenge, saved.codeChallenge)) return refused(400, 'invalid_grant', 'code_verifier does not match the code_challenge', who);
        const binding = bindingFor(saved.jkt);
        if (!binding.ok) return refused(400, 'invalid_dpop_proof', binding.description, who);
        if (cfg.require_binding && binding.jkt === undefined) return refused(400, 'invalid_request', 'this gateway issues only key-bound (DPoP) tokens', who);
        if (!(await sessions.isLive(saved.subject.sessionHandle))) return refused(400, 'invalid_grant', 'the browser session that approved this has ended', who);
        return issueAnswer(req, res, ctx, saved.subject, { name: saved.name, jkt: binding.jkt, action: 'cli_token_issue', reason: 'authorization-code' });
      }
      case 'refresh_token': {
        const refreshToken = form.get('refresh_token') ?? '';
        const taken = await cli.takeRefresh(refreshToken);
        if (taken?.record === undefined) return refused(400, 'invalid_grant', 'the refresh token is unknown, revoked or already used');
        const old = taken.record;
        const who = { user: old.user, provider: old.provider, session: old.session, label: old.name, bound: old.jkt !== undefined };
        const binding = bindingFor(old.jkt);
        if (!binding.ok) return refused(400, 'invalid_dpop_proof', binding.description, who);
        if (cfg.require_binding && binding.jkt === undefined) return refused(400, 'invalid_request', 'this gateway issues only key-bound (DPoP) tokens', who);
        if (!(await sessions.isLive(old.sessionHandle))) return refused(400, 'invalid_grant', 'the browser session that approved this token has ended; run portcullis login again', who);
        // A browser step-up granted to the old token carries over to its successor.
        const grant = deps.tokenStepUp === undefined ? undefined : await deps.tokenStepUp(identityOf(old, taken.ref));
        return issueAnswer(req, res, ctx, { ...old, mfa: newer(old.mfa, grant) }, { name: old.name, jkt: binding.jkt, action: 'cli_token_refresh', reason: 'refresh-token' });
      }
      case DEVICE_GRANT: {
        const r = await cli.pollDevice(form.get('device_code') ?? '');
        if ('error' in r) {
          if (r.error === 'authorization_pending' || r.error === 'slow_down') return oauthError(res, ctx, 400, r.error, r.error === 'slow_down' ? `poll at most every ${DEVICE_INTERVAL_S}s` : 'the user has not approved yet');
          return refused(400, r.error, r.error === 'access_denied' ? 'the user denied the request' : r.error === 'expired_token' ? 'the device code expired' : 'the device code is unknown or already used');
        }
        const subject = r.record.subject;
        if (subject === undefined) return refused(400, 'invalid_grant', 'the device code was not approved');
        const who = { user: subject.user, provider: subject.provider, session: subject.session, label: r.record.name, bound: r.record.jkt !== undefined };
        const binding = bindingFor(r.record.jkt);
        if (!binding.ok) return refused(400, 'invalid_dpop_proof', binding.description, who);
        if (cfg.require_binding && binding.jkt === undefined) return refused(400, 'invalid_request', 'this gateway issues only key-bound (DPoP) tokens', who);
        if (!(await sessions.isLive(subject.sessionHandle))) return refused(400, 'invalid_grant', 'the browser session that approved this has ended', who);
        return issueAnswer(req, res, ctx, subject, { name: r.record.name, jkt: binding.jkt, action: 'cli_token_issue', reason: 'device-code' });
      }
      case null:
        return refused(400, 'invalid_request', 'grant_type is required');
      default:
        return refused(400, 'unsupported_grant_type', 'supported: authorization_code, refresh_token, urn:ietf:params:oauth:grant-type:device_code');
    }
  }

  function identityOf(record: CliTokenRecord, ref: string): Identity {
    return { user: record.user, email: record.email, groups: record.groups, provider: record.provider, auth: 'cli', session: record.session, authTime: record.authTime, mfa: record.mfa, amr: record.amr, tokenRef: ref };
  }

  // --- device ----------------------------------------------------------------------------------

  async function deviceStart(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, form: URLSearchParams): Promise<EndpointOutcome> {
    const starts = await store.increment(`clidevice-ip:${ctx.clientIp}`, 60_000);
    if (starts > DEVICE_STARTS_PER_IP) return oauthError(res, ctx, 429, 'slow_down', 'too many device authorizations from this address; wait a minute', { 'retry-after': '60' });
    const name = form.get('name') ?? '';
    const jkt = form.get('jkt') ?? undefined;
    if (!NAME_RE.test(name)) return oauthError(res, ctx, 400, 'invalid_request', 'name must be at most 64 printable characters');
    if (jkt !== undefined && !SHA256_B64U_RE.test(jkt)) return oauthError(res, ctx, 400, 'invalid_request', 'jkt must be an RFC 7638 SHA-256 thumbprint');
    if (ctx.snapshot.config.identity.cli_tokens.require_binding && jkt === undefined) return oauthError(res, ctx, 400, 'invalid_request', 'this gateway issues only key-bound (DPoP) tokens');
    const { deviceCode, userCode } = await cli.startDevice(name, jkt);
    const verification = `${publicOrigin(ctx)}/.portcullis/cli/device`;
    return reply(
      res,
      ctx,
      json(200, { device_code: deviceCode, user_code: userCode, verification_uri: verification, verification_uri_complete: `${verification}?user_code=${userCode}`, expires_in: DEVICE_TTL_MS / 1000, interval: DEVICE_INTERVAL_S }, { pragma: 'no-cache' }),
      'allow',
      'cli-device-start',
    );
  }

  async function devicePage(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
    const session = await kit.currentSession(req, ctx);
    if (session === undefined) return reply(res, ctx, redirect(`/.portcullis/login?rd=${encodeURIComponent(here(ctx))}`, 302), 'unauthenticated', 'user-unauthenticated');
    if (!mfaFresh(ctx.snapshot.config.identity.cli_tokens.mfa, session.record.mfa, now())) return reply(res, ctx, redirect(stepUpTarget(ctx, here(ctx)), 302), 'step_up', 'cli-token-mfa');
    const raw = queryParams(ctx).get('user_code') ?? '';
    const userCode = canonicalUserCode(raw) ?? '';
    return reply(res, ctx, page(200, deviceEntryPageHtml({ csrf: session.record.csrf, userCode })), 'allow', 'cli-device-page');
  }

  async function deviceForm(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, form: URLSearchParams): Promise<EndpointOutcome> {
    const session = await kit.currentSession(req, ctx);
    if (session === undefined) return errorPage(res, ctx, 401, 'Signed out', 'Sign in, then enter the code again.');
    if (!csrfOk(ctx, req, session, form.get('csrf') ?? '')) return errorPage(res, ctx, 403, 'Refused', 'This form expired or came from another site. Reload the page and try again.');
    const user = session.record.user;
    const failKey = `clidevice-fail:${user}`;
    const fails = Number((await store.get(failKey)) ?? 0);
    if (fails >= DEVICE_FAILS_PER_USER) {
      emit(ctx, req, { action: 'cli_token_refused', user, provider: session.record.provider, session: sessionReference(session.id), reason: 'device-code-rate-limited', ref: undefined, label: undefined, bound: false });
      return errorPage(res, ctx, 429, 'Too many wrong codes', 'Too many wrong codes. Wait a few minutes and start portcullis login again.');
    }
    const code = canonicalUserCode(form.get('user_code'));
    const found = code === undefined ? undefined : await cli.deviceByUserCode(code);
    if (found === undefined || code === undefined) {
      await store.increment(failKey, DEVICE_FAIL_WINDOW_MS);
      emit(ctx, req, { action: 'cli_token_refused', user, provider: session.record.provider, session: sessionReference(session.id), reason: 'device-code-wrong', ref: undefined, label: undefined, bound: false });
      return reply(res, ctx, page(400, deviceEntryPageHtml({ csrf: session.record.csrf, userCode: '', error: 'That code is not valid or has expired.' })), 'deny', 'device-code-wrong');
    }
    const cfg = ctx.snapshot.config.identity.cli_tokens;
    const decision = form.get('decision');
    if (decision === null) {
      const html = deviceConfirmPageHtml({ csrf: session.record.csrf, userCode: code, name: found.record.name, user, expiresAt: now() + cfg.ttl, bound: found.record.jkt !== undefined });
      return reply(res, ctx, page(200, html), 'allow', 'cli-device-confirm');
    }
    if (decision === 'deny') {
      await cli.decideDevice(found.hash, found.record, { approve: false });
      emit(ctx, req, { action: 'cli_token_refused', user, provider: session.record.provider, session: sessionReference(session.id), reason: 'user-denied', ref: undefined, label: found.record.name, bound: found.record.jkt !== undefined });
      return reply(res, ctx, page(200, deviceDonePageHtml(false)), 'deny', 'cli-device-denied');
    }
    if (decision !== 'approve') return errorPage(res, ctx, 400, 'Bad request', 'Choose Allow or Deny.');
    if (!mfaFresh(cfg.mfa, session.record.mfa, now())) return reply(res, ctx, redirect(stepUpTarget(ctx, `/.portcullis/cli/device?user_code=${code}`), 303), 'step_up', 'cli-token-mfa');
    await cli.decideDevice(found.hash, found.record, { approve: true, subject: subjectOf(session) });
    return reply(res, ctx, page(200, deviceDonePageHtml(true)), 'allow', 'cli-device-approved');
  }

  async function devicePost(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (err) {
      return oauthError(res, ctx, 400, 'invalid_request', err instanceof FormError ? err.message : 'bad form');
    }
    return form.has('user_code') ? deviceForm(req, res, ctx, form) : deviceStart(req, res, ctx, form);
  }

  // --- revoke, routes, tokens --------------------------------------------------------------------

  async function revoke(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (err) {
      return oauthError(res, ctx, 400, 'invalid_request', err instanceof FormError ? err.message : 'bad form');
    }
    const value = form.get('token');
    if (value === null || form.getAll('token').length > 1) return oauthError(res, ctx, 400, 'invalid_request', 'token is required');
    const revoked = await cli.revokeToken(value);
    if (revoked !== undefined) {
      const r = revoked.record;
      emit(ctx, req, { action: 'cli_token_revoke', user: r.user, provider: r.provider, session: r.session, reason: 'rfc7009', ref: revoked.ref, label: r.name, bound: r.jkt !== undefined });
    }
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    return reply(res, ctx, json(200, {}, { pragma: 'no-cache' }), 'allow', revoked === undefined ? 'cli-revoke-unknown' : 'cli-token-revoked');
  }

  function unauthenticated(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): EndpointOutcome {
    if (ctx.html && ctx.method === 'GET') return reply(res, ctx, redirect(`/.portcullis/login?rd=${encodeURIComponent(here(ctx))}`, 302), 'unauthenticated', 'user-unauthenticated');
    const challenge = deps.challenge?.(req) ?? 'Bearer realm="portcullis"';
    return reply(res, ctx, errorResponse('GW_ERR_AUTH_REQUIRED', { html: ctx.html, requestId: ctx.id, extraHeaders: { 'www-authenticate': challenge } }), 'unauthenticated', 'user-unauthenticated');
  }

  function routes(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): EndpointOutcome {
    const identity = ctx.identity;
    if (identity === undefined) return unauthenticated(req, res, ctx);
    const config = ctx.snapshot.config;
    const pub = new URL(config.server.public_url);
    const at = now();
    const reachable = (target: Parameters<typeof evaluatePolicy>[0]) => evaluatePolicy(target, identity, at).effect !== 'deny';
    const list = config.routes
      .filter((r) => {
        const route = { public: r.public, allow: r.allow, mfa: undefined };
        return reachable({ route, rule: undefined }) || r.rules.some((rule) => reachable({ route, rule: { allow: rule.allow, mfa: undefined } }));
      })
      .map((r) => {
        const host = /:\d+$/.test(r.host) || pub.port === '' ? r.host : `${r.host}:${pub.port}`;
        return { id: r.id, url: `${pub.protocol}//${host.toLowerCase()}${r.path === '/' ? '/' : r.path}` };
      });
    const databases = config.databases
      .filter((db) => reachable(databasePolicyTarget(db, { mfa: false })))
      .map((db) => {
        const { host, port } = connectAddress(db, config.server.public_url);
        return { id: db.id, host, port, sslmode: db.tls === undefined ? 'prefer' : 'require' };
      });
    return reply(res, ctx, json(200, { routes: list, databases }), 'allow', 'cli-routes');
  }

  async function tokenRows(identity: Identity): Promise<(TokenRow & { expired: boolean; current: boolean; check: { factor: string; age_s: number } | null })[]> {
    const at = now();
    const list = await cli.list(identity.user);
    return list.map(({ ref, record }) => ({
      id: ref,
      name: record.name,
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
      bound: record.jkt !== undefined,
      mfa: record.mfa === undefined ? undefined : `${record.mfa.factor}, ${Math.max(0, Math.floor((at - record.mfa.at) / 1000))}s ago`,
      check: record.mfa === undefined ? null : { factor: record.mfa.factor, age_s: Math.max(0, Math.floor((at - record.mfa.at) / 1000)) },
      expired: at >= record.expiresAt,
      current: identity.tokenRef === ref,
    }));
  }

  async function tokensList(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, notice?: string): Promise<EndpointOutcome> {
    const identity = ctx.identity;
    if (identity === undefined) return unauthenticated(req, res, ctx);
    const rows = await tokenRows(identity);
    if (ctx.html) {
      const session = identity.auth === 'cookie' ? await kit.currentSession(req, ctx) : undefined;
      if (session !== undefined) return reply(res, ctx, page(200, tokensPageHtml({ user: identity.user, csrf: session.record.csrf, tokens: rows, ...(notice === undefined ? {} : { notice }) })), 'allow', 'cli-tokens-page');
    }
    const tokens = rows.map((r) => ({
      id: r.id,
      name: r.name,
      created_at: new Date(r.createdAt).toISOString(),
      expires_at: new Date(r.expiresAt).toISOString(),
      expired: r.expired,
      bound: r.bound,
      mfa: r.check,
      current: r.current,
    }));
    return reply(res, ctx, json(200, { user: identity.user, tokens }), 'allow', 'cli-tokens-list');
  }

  async function tokensRevoke(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
    const identity = ctx.identity;
    if (identity === undefined) return unauthenticated(req, res, ctx);
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (err) {
      return errorPage(res, ctx, 400, 'Bad request', err instanceof FormError ? `Bad form: ${err.message}.` : 'Bad form.');
    }
    if (identity.auth === 'cookie') {
      // A browser session proves the request came from the gateway's own page: CSRF token + origin.
      const session = await kit.currentSession(req, ctx);
      if (session === undefined) return unauthenticated(req, res, ctx);
      const header = req.headers['x-portcullis-csrf'];
      const csrf = typeof header === 'string' ? header : (form.get('csrf') ?? '');
      if (!csrfOk(ctx, req, session, csrf)) {
        const r = ctx.html
          ? page(403, cliErrorPageHtml('Refused', 'This form expired or came from another site. Go back, reload the page and try again.'))
          : json(403, { error: 'csrf', message: 'This request did not come from the gateway’s own page.', request_id: ctx.id });
        return reply(res, ctx, r, 'deny', 'csrf');
      }
    }
    const id = form.get('id') ?? '';
    const revoked = await cli.revokeRefOf(identity.user, id);
    if (revoked !== undefined) emit(ctx, req, { action: 'cli_token_revoke', user: revoked.user, provider: revoked.provider, session: revoked.session, reason: 'tokens-page', ref: id, label: revoked.name, bound: revoked.jkt !== undefined });
    if (ctx.html && identity.auth === 'cookie') return tokensList(req, res, ctx, revoked === undefined ? 'That token was not found (already revoked or expired).' : `Revoked ${revoked.name === '' ? 'the token' : revoked.name}.`);
    return reply(res, ctx, json(revoked === undefined ? 404 : 200, { revoked: revoked !== undefined }), revoked === undefined ? 'not_found' : 'allow', revoked === undefined ? 'no-such-token' : 'cli-token-revoked');
  }

  return {
    /** `/.portcullis/cli/…` and `/.portcullis/tokens[/revoke]`. */
    async handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
      const [, first, second, ...rest] = ctx.segments;
      const method = req.method ?? 'GET';
      if (!ctx.snapshot.config.identity.cli_tokens.enabled || rest.length > 0) return reply(res, ctx, notFound(ctx), 'not_found', 'no-such-endpoint');
      if (first === 'tokens') {
        if (second === undefined && method === 'GET') return tokensList(req, res, ctx);
        if (second === 'revoke' && method === 'POST') return tokensRevoke(req, res, ctx);
      } else if (first === 'cli') {
        if (second === 'authorize' && method === 'GET') return authorizeGet(req, res, ctx);
        if (second === 'authorize' && method === 'POST') return authorizePost(req, res, ctx);
        if (second === 'token' && method === 'POST') return token(req, res, ctx);
        if (second === 'device' && method === 'POST') return devicePost(req, res, ctx);
        if (second === 'device' && method === 'GET') return devicePage(req, res, ctx);
        if (second === 'revoke' && method === 'POST') return revoke(req, res, ctx);
        if (second === 'routes' && method === 'GET') return routes(req, res, ctx);
      }
      return reply(res, ctx, notFound(ctx), 'not_found', 'no-such-endpoint');
    },
  };
}

/** The CLI endpoints. */
export type CliEndpoints = ReturnType<typeof createCliEndpoints>;
