/**
 * The gateway's own endpoints under `/.portcullis/` (SPEC §3): login (local form and OIDC), the OIDC
 * callback, the cross-host session hand-off, logout, `me` and `jwks.json`. Every state-changing
 * endpoint is a POST with a CSRF token and a same-origin check; every redirect target is a
 * same-origin path; every sign-in outcome is an `auth` event.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AuthEventSink } from '../audit/auth-events.js';
import type { AssertionSigner } from '../identity/assertion-signer.js';
import type { LocalUser } from '../identity/local-users.js';
import { OidcLoginError, type OidcClient, type PendingLogin } from '../identity/oidc-client.js';
import { sessionReference, type Session, type SessionManager } from '../identity/sessions.js';
import type { Channels } from '../metrics/events.js';
import type { GatewayEndpointHandler, RequestContext } from '../proxy/pipeline.js';
import { canonicalizeHost, normalizeTarget, sameHost } from '../routing/index.js';
import type { Store } from '../store/store.js';
import { clearCookie, readCookie, safeEqual, setCookie } from './cookies.js';
import { errorResponse, renderPage, escapeHtml } from './error-response.js';
import { loginPage, logoutPage, signedOutPage, type ProviderChoice } from './identity-pages.js';
import { safeReturnPath } from './return-path.js';
import type { MfaEndpoints } from './mfa-endpoints.js';
import type { ConnectEndpoints } from './connect-endpoints.js';
import type { AuditViewer } from './audit-viewer.js';
import type { CliEndpoints } from './cli-endpoints.js';
import type { Identity, MfaCheck } from '../identity/identity.js';
import { createEndpointKit, FormError, json, notFound, page, queryParams, readForm, redirect, send } from './endpoint-kit.js';

/** Something that can check a local user's password. */
export interface LocalUserVerifier {
  verify(username: string, password: string): Promise<LocalUser | undefined>;
}

/** What the endpoints need. */
export interface GatewayEndpointDeps {
  /** The step-up and factor-management endpoints (`mfa…`, `assets/…`). */
  readonly mfa?: MfaEndpoints;
  /** Database passwords (`connect/<id>`, `connect/<id>/revoke`). */
  readonly connect?: ConnectEndpoints;
  /** The audit viewer (`audit…`, `assets/audit-viewer.js`). */
  readonly auditViewer?: AuditViewer;
  /** The command line's endpoints (`cli/…`, `tokens…`). */
  readonly cli?: CliEndpoints;
  /** A browser step-up granted to a token (`me` reports it for CLI tokens). */
  readonly tokenStepUp?: (identity: Identity) => Promise<MfaCheck | undefined>;
  readonly sessions: SessionManager;
  readonly store: Store;
  /** Local user directories, by provider id. */
  readonly localUsers: ReadonlyMap<string, LocalUserVerifier>;
  /** The OIDC client for a provider id (discovered lazily), or undefined when there is none. */
  readonly oidc: (providerId: string) => Promise<OidcClient | undefined>;
  readonly signer: AssertionSigner;
  readonly events: AuthEventSink;
  readonly channels: Channels;
  readonly logger: Logger;
  readonly now: () => number;
}

const LOGIN_CSRF_TTL_MS = 30 * 60_000;
const OIDC_STATE_TTL_MS = 10 * 60_000;
const HANDOFF_TTL_MS = 60_000;

interface PendingOidc {
  readonly pending: PendingLogin;
  readonly provider: string;
  readonly host: string;
  readonly rd: string;
  readonly binding: string;
  /** SHA-256 (hex) of the hand-off nonce cookie set on `host`, when `host` is not the public host. */
  readonly handoffHash: string;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Creates the handler for everything under `/.portcullis/`. */
export function createGatewayEndpoints(deps: GatewayEndpointDeps): GatewayEndpointHandler {
  const { sessions, store, now } = deps;

  const kit = createEndpointKit(deps);
  const { emit, policyFor, publicScheme, sameOrigin } = kit;

  function providers(ctx: RequestContext): ProviderChoice[] {
    return ctx.snapshot.config.identity.providers.map((p) => ({ id: p.id, type: p.type }));
  }

  function currentSession(req: IncomingMessage, ctx: RequestContext): Promise<Session | undefined> {
    return kit.currentSession(req, ctx);
  }

  function sessionCookie(ctx: RequestContext, id: string): string {
    return kit.sessionCookie(ctx, id);
  }

  // --- login page and local sign-in ---------------------------------------------------------

  async function showLogin(ctx: RequestContext, res: ServerResponse, opts: { rd: string; status?: number; error?: string; username?: string }): Promise<void> {
    const policy = policyFor(ctx);
    const csrf = randomBytes(24).toString('base64url');
    await store.set(`login-csrf:${csrf}`, '1', LOGIN_CSRF_TTL_MS);
    const html = loginPage({
      providers: providers(ctx),
      rd: opts.rd,
      csrf,
      ...(opts.error === undefined ? {} : { error: opts.error }),
      ...(opts.username === undefined ? {} : { username: opts.username }),
    });
    send(res, ctx, page(opts.status ?? 200, html), [setCookie(policy, policy.csrf, csrf, LOGIN_CSRF_TTL_MS / 1000)]);
  }

  async function localLogin(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
    const policy = policyFor(ctx);
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (err) {
      send(res, ctx, errorResponse('GW_ERR_REQUEST_HEADERS', { html: true, requestId: ctx.id, message: err instanceof FormError ? `Bad sign-in form: ${err.message}.` : 'Bad sign-in form.' }));
      return;
    }
    const rd = safeReturnPath(form.get('rd'));
    const username = (form.get('username') ?? '').trim();
    const password = form.get('password') ?? '';
    const formCsrf = form.get('csrf') ?? '';
    const cookieCsrf = readCookie(req.headers.cookie, policy.csrf) ?? '';
    const csrfOk = formCsrf !== '' && safeEqual(formCsrf, cookieCsrf) && sameOrigin(ctx, req) && (await store.take(`login-csrf:${formCsrf}`)) !== undefined;
    const localProviders = [...deps.localUsers.keys()];
    const providerId = localProviders[0] ?? 'local';
    if (!csrfOk) {
      emit(ctx, req, { action: 'login_failure', provider: providerId, user: username, reason: 'csrf', session: undefined });
      await showLogin(ctx, res, { rd, status: 403, error: 'Your sign-in form expired or came from another site. Please try again.' });
      return;
    }
    const limits = ctx.snapshot.config.identity.login_limits;
    const userKey = `login-fail:user:${username.toLowerCase().slice(0, 256)}`;
    const ipKey = `login-fail:ip:${ctx.clientIp}`;
    const [userFails, ipFails] = await Promise.all([store.get(userKey), store.get(ipKey)]);
    if (Number(userFails ?? 0) >= limits.per_user || Number(ipFails ?? 0) >= limits.per_ip) {
      emit(ctx, req, { action: 'login_rate_limited', provider: providerId, user: username, reason: Number(ipFails ?? 0) >= limits.per_ip ? 'per-ip-limit' : 'per-user-limit', session: undefined });
      await showLogin(ctx, res, { rd, status: 429, error: 'Too many failed sign-ins. Please wait a few minutes and try again.', username });
      return;
    }
    let user: LocalUser | undefined;
    let via = providerId;
    for (const [id, dir] of deps.localUsers) {
      user = await dir.verify(username, password);
      if (user !== undefined) {
        via = id;
        break;
      }
    }
    if (user === undefined || username === '' || password === '') {
      await Promise.all([store.increment(userKey, limits.window), store.increment(ipKey, limits.window)]);
      emit(ctx, req, { action: 'login_failure', provider: providerId, user: username, reason: 'bad-credentials', session: undefined });
      await showLogin(ctx, res, { rd, status: 401, error: 'Wrong user name or password.', username });
      return;
    }
    // A sign-in always starts a new session: whatever session id the browser had (possibly one an
    // attacker planted) is revoked and never reused.
    const previous = await currentSession(req, ctx);
    if (previous !== undefined) await sessions.revoke(previous);
    const session = await sessions.create({ user: user.name, email: user.email, groups: user.groups, provider: via, method: 'pwd', authTime: now() });
    emit(ctx, req, { action: 'login', provider: via, user: user.name, reason: 'password', session: sessionReference(session.id) });
    send(res, ctx, redirect(rd), [sessionCookie(ctx, session.id), clearCookie(policy, policy.csrf)]);
  }

  // --- OIDC -----------------------------------------------------------------------------------

  function publicOrigin(ctx: RequestContext): URL {
    return new URL(ctx.snapshot.config.server.public_url);
  }

  function onPublicHost(ctx: RequestContext, req: IncomingMessage): boolean {
    const pub = canonicalizeHost(publicOrigin(ctx).host, ctx.snapshot.scheme);
    const here = canonicalizeHost(req.headers.host ?? '', ctx.snapshot.scheme);
    return pub !== undefined && here !== undefined && sameHost(pub, here);
  }

  /**
   * A host the gateway serves (the public URL's, or a route's that serves `/` or `rd` there), lower
   * case; else undefined. A route host without a port matches any port, but browsers reach the
   * gateway on the public URL's port: a hand-off code sent to another port would go to whoever
   * listens there, so another port counts only when a route names it.
   */
  function servedHost(ctx: RequestContext, raw: string, rd: string): string | undefined {
    const h = canonicalizeHost(raw, ctx.snapshot.scheme);
    const external = canonicalizeHost(raw, publicScheme(ctx));
    const pub = canonicalizeHost(publicOrigin(ctx).host, publicScheme(ctx));
    if (h === undefined || external === undefined || pub === undefined) return undefined;
    if (sameHost(pub, external)) return raw.toLowerCase();
    const target = normalizeTarget(rd, raw, ctx.snapshot.scheme);
    const match = ctx.snapshot.routes.match(h, [], 'GET') ?? (target.ok ? ctx.snapshot.routes.match(h, target.segments, 'GET') : undefined);
    if (match === undefined) return undefined;
    if (external.port !== pub.port && !/:\d+$/.test(match.route.host)) return undefined;
    return raw.toLowerCase();
  }

  async function beginOidc(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, providerId: string): Promise<void> {
    const q = queryParams(ctx);
    const rd = safeReturnPath(q.get('rd'));
    const client = await deps.oidc(providerId);
    if (client === undefined) {
      send(res, ctx, notFound(ctx));
      return;
    }
    const policy = policyFor(ctx);
    if (!onPublicHost(ctx, req)) {
      // The state cookie and the IdP's redirect URI live on the public URL's host; go there first,
      // remembering which host to come back to. A nonce cookie on this host binds the later
      // hand-off to this browser (only its hash travels in the URL).
      const nonce = randomBytes(24).toString('base64url');
      const target = new URL(`/.portcullis/login/oidc/${encodeURIComponent(providerId)}`, publicOrigin(ctx));
      target.searchParams.set('rd', rd);
      target.searchParams.set('host', (req.headers.host ?? '').toLowerCase());
      target.searchParams.set('hb', sha256(nonce));
      send(res, ctx, redirect(target.href, 302), [setCookie(policy, policy.handoff, nonce, OIDC_STATE_TTL_MS / 1000)]);
      return;
    }
    const host = servedHost(ctx, q.get('host') ?? (req.headers.host ?? ''), rd);
    if (host === undefined) {
      send(res, ctx, errorResponse('GW_ERR_REQUEST_HOST', { html: ctx.html, requestId: ctx.id, message: 'That host is not served by this gateway.' }));
      return;
    }
    const handoffHash = q.get('hb') ?? '';
    if (host !== (req.headers.host ?? '').toLowerCase() && !/^[0-9a-f]{64}$/.test(handoffHash)) {
      // A hand-off to another host must have been started on that host (which set the nonce cookie).
      send(res, ctx, errorResponse('GW_ERR_REQUEST_HOST', { html: ctx.html, requestId: ctx.id, message: 'Start the sign-in from the application you want to use.' }));
      return;
    }
    const { url, pending } = await client.beginLogin();
    const binding = randomBytes(24).toString('base64url');
    const saved: PendingOidc = { pending, provider: providerId, host, rd, binding, handoffHash };
    await store.set(`oidc-state:${pending.state}`, JSON.stringify(saved), OIDC_STATE_TTL_MS);
    send(res, ctx, redirect(url, 302), [setCookie(policy, policy.oidc, binding, OIDC_STATE_TTL_MS / 1000)]);
  }

  async function oidcCallback(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
    const policy = policyFor(ctx);
    const q = queryParams(ctx);
    const state = q.get('state') ?? '';
    const raw = state === '' ? undefined : await store.take(`oidc-state:${state}`);
    const fail = (provider: string, reason: string): void => {
      emit(ctx, req, { action: 'login_failure', provider, user: undefined, reason, session: undefined });
      send(res, ctx, page(400, renderPage('Sign-in failed', `<h1>Sign-in failed</h1><p>The sign-in could not be completed (${escapeHtml(reason)}).</p><p><a href="/.portcullis/login">Try again</a></p>`)), [clearCookie(policy, policy.oidc)]);
    };
    if (raw === undefined) {
      fail('oidc', 'state-mismatch');
      return;
    }
    const saved = JSON.parse(raw) as PendingOidc;
    const binding = readCookie(req.headers.cookie, policy.oidc) ?? '';
    if (!safeEqual(binding, saved.binding)) {
      fail(saved.provider, 'browser-binding-mismatch');
      return;
    }
    const client = await deps.oidc(saved.provider);
    if (client === undefined) {
      fail(saved.provider, 'unknown-provider');
      return;
    }
    let result;
    try {
      const callbackUrl = new URL(`${ctx.path ?? '/'}${ctx.query === undefined ? '' : `?${ctx.query}`}`, publicOrigin(ctx));
      result = await client.completeLogin(callbackUrl, saved.pending);
    } catch (err) {
      const reason = err instanceof OidcLoginError ? err.reason : 'idp-error';
      deps.logger.warn({ reqId: ctx.id, err }, 'OIDC sign-in failed');
      fail(saved.provider, reason);
      return;
    }
    const previous = await currentSession(req, ctx);
    if (previous !== undefined) await sessions.revoke(previous);
    const session = await sessions.create({
      user: result.user,
      email: result.email,
      groups: result.groups,
      provider: saved.provider,
      method: 'oidc',
      authTime: result.authTime ?? now(),
      oidc: { refreshToken: result.refreshToken, expiresAt: result.expiresAt },
    });
    emit(ctx, req, { action: 'login', provider: saved.provider, user: result.user, reason: 'oidc', session: sessionReference(session.id) });
    const cookies = [sessionCookie(ctx, session.id), clearCookie(policy, policy.oidc)];
    const here = (req.headers.host ?? '').toLowerCase();
    if (saved.host === here) {
      send(res, ctx, redirect(saved.rd), cookies);
      return;
    }
    // Hand the session to the host the user came from: a single-use code, bound to that host.
    const code = randomBytes(32).toString('base64url');
    await store.set(`handoff:${code}`, JSON.stringify({ session: session.id, host: saved.host, nonceHash: saved.handoffHash }), HANDOFF_TTL_MS);
    const target = new URL('/.portcullis/session', `${publicScheme(ctx)}://${saved.host}`);
    target.searchParams.set('code', code);
    target.searchParams.set('rd', saved.rd);
    send(res, ctx, redirect(target.href), cookies);
  }

  async function sessionHandoff(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
    const policy = policyFor(ctx);
    const q = queryParams(ctx);
    const code = q.get('code') ?? '';
    const raw = code === '' ? undefined : await store.take(`handoff:${code}`);
    const saved = raw === undefined ? undefined : (JSON.parse(raw) as { session: string; host: string; nonceHash: string });
    // The code is single-use, bound to this host, and to the browser that started the sign-in here
    // (its nonce cookie): a code sent to someone else's browser signs nobody in (no login CSRF).
    const nonce = readCookie(req.headers.cookie, policy.handoff) ?? '';
    if (saved?.host !== (req.headers.host ?? '').toLowerCase() || nonce === '' || !safeEqual(sha256(nonce), saved.nonceHash)) {
      send(res, ctx, page(400, renderPage('Sign-in failed', '<h1>Sign-in failed</h1><p>This sign-in link is invalid, was already used, or belongs to another browser.</p><p><a href="/.portcullis/login">Sign in</a></p>')), [clearCookie(policy, policy.handoff)]);
      return;
    }
    send(res, ctx, redirect(safeReturnPath(q.get('rd'))), [sessionCookie(ctx, saved.session), clearCookie(policy, policy.handoff)]);
  }

  // --- logout, me, jwks -------------------------------------------------------------------------

  async function logout(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
    const policy = policyFor(ctx);
    const session = await currentSession(req, ctx);
    if (req.method !== 'POST') {
      send(res, ctx, page(200, logoutPage(session?.record.csrf)));
      return;
    }
    let token = '';
    try {
      token = (await readForm(req)).get('csrf') ?? '';
    } catch {
      token = '';
    }
    if (session === undefined) {
      send(res, ctx, page(200, signedOutPage()), [clearCookie(policy, policy.session)]);
      return;
    }
    if (!safeEqual(token, session.record.csrf) || !sameOrigin(ctx, req)) {
      send(res, ctx, page(403, renderPage('Sign out', '<h1>Sign out refused</h1><p>The request did not come from this site. Use the sign-out button.</p><p><a href="/.portcullis/logout">Sign out</a></p>')));
      return;
    }
    await sessions.revoke(session);
    emit(ctx, req, { action: 'logout', provider: session.record.provider, user: session.record.user, reason: 'user', session: sessionReference(session.id) });
    send(res, ctx, page(200, signedOutPage()), [clearCookie(policy, policy.session)]);
  }

  async function me(res: ServerResponse, ctx: RequestContext): Promise<void> {
    const id = ctx.identity;
    if (id === undefined) {
      send(res, ctx, errorResponse('GW_ERR_AUTH_REQUIRED', { html: false, requestId: ctx.id, extraHeaders: { 'www-authenticate': 'Bearer realm="portcullis"' } }));
      return;
    }
    const at = now();
    // A CLI token's check: the one carried from the session that authorized it, or a later browser
    // step-up granted to the token, whichever is newer (a CLI polls this after step_up_url).
    const grant = id.auth === 'cli' && deps.tokenStepUp !== undefined ? await deps.tokenStepUp(id) : undefined;
    const check = grant !== undefined && (id.mfa === undefined || grant.at > id.mfa.at) ? grant : id.mfa;
    send(
      res,
      ctx,
      json(200, {
        user: id.user,
        email: id.email ?? null,
        groups: id.groups,
        provider: id.provider,
        auth: id.auth,
        auth_time: Math.floor(id.authTime / 1000),
        amr: id.amr ?? [],
        session: id.session ?? null,
        mfa: check === undefined ? null : { factor: check.factor, age_s: Math.max(0, Math.floor((at - check.at) / 1000)) },
        factors: deps.mfa === undefined ? null : await deps.mfa.summary(id.user),
      }),
    );
  }

  return async (req, res, ctx) => {
    const [, first, second] = ctx.segments;
    const method = req.method ?? 'GET';
    switch (first) {
      case 'login':
        if (second === undefined && method === 'GET') return showLogin(ctx, res, { rd: safeReturnPath(queryParams(ctx).get('rd')) });
        if (second === undefined && method === 'POST') return localLogin(req, res, ctx);
        if (second === 'oidc' && ctx.segments[3] !== undefined && ctx.segments.length === 4 && method === 'GET') return beginOidc(req, res, ctx, ctx.segments[3]);
        break;
      case 'callback':
        if (second === undefined && method === 'GET') return oidcCallback(req, res, ctx);
        break;
      case 'session':
        if (second === undefined && method === 'GET') return sessionHandoff(req, res, ctx);
        break;
      case 'logout':
        if (second === undefined && (method === 'GET' || method === 'POST')) return logout(req, res, ctx);
        break;
      case 'me':
        if (second === undefined && method === 'GET') return me(res, ctx);
        break;
      case 'mfa':
        if (deps.mfa !== undefined) return deps.mfa.handle(req, res, ctx);
        break;
      case 'connect':
        if (deps.connect !== undefined) return deps.connect.handle(req, res, ctx);
        break;
      case 'audit':
        if (deps.auditViewer !== undefined) return deps.auditViewer.handle(req, res, ctx);
        break;
      case 'cli':
      case 'tokens':
        if (deps.cli !== undefined) return deps.cli.handle(req, res, ctx);
        break;
      case 'assets':
        if (deps.auditViewer !== undefined && method === 'GET' && second === 'audit-viewer.js' && ctx.segments.length === 3) {
          deps.auditViewer.asset(res, ctx);
          return;
        }
        if (deps.mfa !== undefined && method === 'GET') {
          deps.mfa.assets(res, ctx, second);
          return;
        }
        break;
      case 'jwks.json':
        if (second === undefined && method === 'GET') {
          send(res, ctx, json(200, deps.signer.jwks(), { 'cache-control': 'public, max-age=300' }));
          return;
        }
        break;
      default:
        break;
    }
    send(res, ctx, notFound(ctx));
  };
}
