/**
 * The step-up and factor-management endpoints under `/.portcullis/mfa` (SPEC §3), and the two
 * scripts their pages load from `/.portcullis/assets/`.
 *
 *   GET  mfa?rd=…[&token=…][&factors=…]   step-up page (passkey, authenticator code, recovery code)
 *   GET  mfa/enroll?rd=…                  list, add and remove factors
 *   POST mfa/totp                         step-up with an authenticator code (form)
 *   POST mfa/recovery                     step-up with a recovery code (form; manages factors only)
 *   POST mfa/totp/enroll, mfa/totp/confirm   add an authenticator app (form)
 *   POST mfa/remove, mfa/recovery/regenerate (form)
 *   POST mfa/webauthn/{register,authenticate}/options, mfa/webauthn/{register,authenticate} (JSON)
 *
 * Every POST needs the session's CSRF token (form field `csrf`, or header `X-Portcullis-CSRF` with an
 * `application/json` body) and a same-origin request. Every outcome is an `auth` audit record.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { MfaRequirementConfig } from '../config/index.js';
import type { Session } from '../identity/sessions.js';
import { sessionReference } from '../identity/sessions.js';
import type { MfaDone, MfaFail, MfaService, MfaSettings } from '../mfa/service.js';
import type { RequestContext } from '../proxy/pipeline.js';
import { normalizeTarget } from '../routing/index.js';
import { safeEqual } from './cookies.js';
import { FormError, json, notFound, page, queryParams, readForm, readJsonObject, redirect, scriptedPage, send, type EndpointKit } from './endpoint-kit.js';
import { errorResponse, renderPage, type GatewayResponse } from './error-response.js';
import { enrollPage, recoveryCodesPage, stepUpPage, tokenConfirmedPage } from './mfa-pages.js';
import { safeReturnPath } from './return-path.js';

/** What the MFA endpoints need. */
export interface MfaEndpointDeps {
  readonly kit: EndpointKit;
  readonly mfa: MfaService;
  readonly logger: Logger;
}

const TOKEN_REF_RE = /^[A-Za-z0-9_-]{43}$/;
const ENROLL_PATH = '/.portcullis/mfa/enroll';
const NOTICES: Readonly<Record<string, string>> = {
  added: 'Factor added.',
  removed: 'Factor removed.',
  recovered: 'Recovery code accepted. Add a new passkey or authenticator app now, and remove the one you lost.',
};

function loadAsset(relative: string): string {
  return readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', relative), 'utf8');
}

function loadWebAuthnBundle(): string {
  const require = createRequire(import.meta.url);
  // The package exports no subpaths; its CommonJS entry is <root>/script/index.js.
  const root = dirname(dirname(require.resolve('@simplewebauthn/browser')));
  return readFileSync(join(root, 'dist', 'bundle', 'index.umd.min.js'), 'utf8');
}

const SCRIPT_HEADERS = { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=3600', 'x-content-type-options': 'nosniff' } as const;

/** The settings in force for a request. */
export function mfaSettings(ctx: RequestContext): MfaSettings {
  const cfg = ctx.snapshot.config;
  return {
    webauthn: {
      rpId: cfg.mfa.webauthn.rp_id ?? new URL(cfg.server.public_url).hostname,
      rpName: cfg.mfa.webauthn.rp_name,
      userVerification: cfg.mfa.webauthn.user_verification,
    },
    totpIssuer: cfg.mfa.totp.issuer,
    enrollWithinMs: cfg.mfa.enroll_within,
    attempts: { perUser: cfg.mfa.totp.attempts.per_user, windowMs: cfg.mfa.totp.attempts.window },
    grantTtlMs: cfg.identity.session.max_lifetime,
  };
}

/** Creates the handler for `/.portcullis/mfa…` and `/.portcullis/assets/…`. */
export function createMfaEndpoints(deps: MfaEndpointDeps) {
  const { kit, mfa } = deps;
  const assets = new Map<string, string>();
  function asset(name: 'mfa.js' | 'simplewebauthn.js'): string {
    let body = assets.get(name);
    if (body === undefined) {
      body = name === 'mfa.js' ? loadAsset('assets/mfa.js') : loadWebAuthnBundle();
      assets.set(name, body);
    }
    return body;
  }

  /** The second-factor requirement of the page `rd` on this host, when it names a route with one. */
  function requirementFor(ctx: RequestContext, req: IncomingMessage, rd: string): MfaRequirementConfig | undefined {
    const t = normalizeTarget(rd, req.headers.host ?? '', ctx.snapshot.scheme);
    if (!t.ok) return undefined;
    // The gateway's own pages: only the audit viewer asks for a second factor.
    if (t.segments[0] === '.portcullis') return t.segments[1] === 'audit' ? (ctx.snapshot.config.audit.viewer.mfa ?? undefined) : undefined;
    const match = ctx.snapshot.routes.match(t.host, t.segments, 'GET');
    if (match === undefined || match.route.public) return undefined;
    return match.rule?.mfa ?? match.route.mfa;
  }

  function allowedFactors(ctx: RequestContext, req: IncomingMessage, rd: string, q: URLSearchParams): { allowed: ('webauthn' | 'totp')[]; maxAge: number | undefined } {
    const req0 = requirementFor(ctx, req, rd);
    const asked = (q.get('factors') ?? '').split(',').filter((f): f is 'webauthn' | 'totp' => f === 'webauthn' || f === 'totp');
    const base = req0?.factors ?? ['webauthn', 'totp'];
    const narrowed = asked.length === 0 ? base : base.filter((f) => asked.includes(f));
    return { allowed: narrowed.length === 0 ? [...base] : narrowed, maxAge: req0 === undefined ? undefined : Math.floor(req0.max_age / 1000) };
  }

  function toLogin(ctx: RequestContext, res: ServerResponse): void {
    const here = `${ctx.path ?? '/'}${ctx.query === undefined ? '' : `?${ctx.query}`}`;
    send(res, ctx, redirect(`/.portcullis/login?rd=${encodeURIComponent(here)}`, 302));
  }

  function tokenParam(raw: string | null | undefined): string | undefined {
    return raw !== null && raw !== undefined && TOKEN_REF_RE.test(raw) ? raw : undefined;
  }

  function emitCheck(ctx: RequestContext, req: IncomingMessage, session: Session, factor: 'webauthn' | 'totp' | 'recovery', r: MfaDone | MfaFail): void {
    const base = { provider: session.record.provider, user: session.record.user, session: sessionReference(session.id), factor };
    if (r.ok) kit.emit(ctx, req, { ...base, action: 'mfa_success', reason: factor, ...(r.check.credential === undefined ? {} : { credential: r.check.credential }) });
    else kit.emit(ctx, req, { ...base, action: r.reason === 'rate-limited' ? 'mfa_rate_limited' : 'mfa_failure', reason: r.reason, ...(r.credential === undefined ? {} : { credential: r.credential }) });
  }

  function emitEnroll(ctx: RequestContext, req: IncomingMessage, session: Session, factor: 'webauthn' | 'totp', r: MfaDone | MfaFail): void {
    const base = { provider: session.record.provider, user: session.record.user, session: sessionReference(session.id), factor };
    if (r.ok) {
      kit.emit(ctx, req, { ...base, action: 'mfa_enroll', reason: factor, ...(r.check.credential === undefined ? {} : { credential: r.check.credential }) });
      if (r.recoveryCodes !== undefined) kit.emit(ctx, req, { ...base, factor: 'recovery', action: 'mfa_recovery_codes', reason: 'first-factor' });
    } else {
      kit.emit(ctx, req, { ...base, action: r.reason === 'rate-limited' ? 'mfa_rate_limited' : 'mfa_failure', reason: `enroll-${r.reason}` });
    }
  }

  /** After a successful step-up: the grant for an API token, or back to where the user was going. */
  async function finishStepUp(ctx: RequestContext, session: Session, done: MfaDone, rd: string, token: string | undefined): Promise<GatewayResponse> {
    if (token !== undefined && done.check.factor !== 'recovery') {
      await mfa.grantToken(token, session.record.user, done.check, mfaSettings(ctx));
      return page(200, tokenConfirmedPage(session.record.user));
    }
    return redirect(rd);
  }

  // --- pages ----------------------------------------------------------------------------------

  async function showStepUp(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session, opts: { rd: string; token: string | undefined; q: URLSearchParams; status?: number; error?: string }): Promise<void> {
    const factors = await mfa.factors(session.record.user);
    const { allowed, maxAge } = allowedFactors(ctx, req, opts.rd, opts.q);
    const html = stepUpPage({
      user: session.record.user,
      csrf: session.record.csrf,
      rd: opts.rd,
      token: opts.token,
      allowed,
      factors,
      maxAgeSeconds: maxAge,
      ...(opts.error === undefined ? {} : { error: opts.error }),
    });
    send(res, ctx, scriptedPage(opts.status ?? 200, html));
  }

  async function showEnroll(res: ServerResponse, ctx: RequestContext, session: Session, opts: { rd: string; status?: number; error?: string; notice?: string; withTotp?: boolean }): Promise<void> {
    const settings = mfaSettings(ctx);
    const factors = await mfa.factors(session.record.user);
    const totp = opts.withTotp === true ? await mfa.pendingTotpEnrollment(session, settings) : undefined;
    const html = enrollPage({
      user: session.record.user,
      csrf: session.record.csrf,
      rd: opts.rd,
      gate: mfa.enrollGate(session, factors, settings),
      factors,
      ...(totp === undefined ? {} : { totp }),
      ...(opts.error === undefined ? {} : { error: opts.error }),
      ...(opts.notice === undefined ? {} : { notice: opts.notice }),
    });
    send(res, ctx, scriptedPage(opts.status ?? 200, html));
  }

  function statusOf(f: MfaFail): number {
    if (f.reason === 'rate-limited') return 429;
    if (f.reason === 'not-allowed') return 403;
    if (f.reason === 'malformed' || f.reason === 'no-challenge' || f.reason === 'no-pending-enrollment' || f.reason === 'unknown-factor' || f.reason === 'no-credentials') return 400;
    return 401;
  }

  // --- form posts -----------------------------------------------------------------------------

  /** Reads a form post and checks its CSRF token and origin; answers and returns undefined when they fail. */
  async function checkedForm(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session): Promise<URLSearchParams | undefined> {
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (err) {
      send(res, ctx, errorResponse('GW_ERR_REQUEST_HEADERS', { html: true, requestId: ctx.id, message: err instanceof FormError ? `Bad form: ${err.message}.` : 'Bad form.' }));
      return undefined;
    }
    if (!safeEqual(form.get('csrf') ?? '', session.record.csrf) || !kit.sameOrigin(ctx, req)) {
      kit.emit(ctx, req, { action: 'mfa_failure', provider: session.record.provider, user: session.record.user, session: sessionReference(session.id), reason: 'csrf' });
      send(res, ctx, page(403, renderPage('Refused', '<h1>Refused</h1><p>This form expired or came from another site. Go back, reload the page and try again.</p>')));
      return undefined;
    }
    return form;
  }

  async function totpStepUp(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session): Promise<void> {
    const form = await checkedForm(req, res, ctx, session);
    if (form === undefined) return;
    const rd = safeReturnPath(form.get('rd'));
    const token = tokenParam(form.get('token'));
    const r = await mfa.verifyTotp(session, mfaSettings(ctx), form.get('code') ?? '');
    emitCheck(ctx, req, session, 'totp', r);
    if (!r.ok) {
      await showStepUp(req, res, ctx, session, { rd, token, q: new URLSearchParams(), status: statusOf(r), error: capitalize(r.detail) });
      return;
    }
    send(res, ctx, await finishStepUp(ctx, r.session, r, rd, token));
  }

  async function recoveryStepUp(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session): Promise<void> {
    const form = await checkedForm(req, res, ctx, session);
    if (form === undefined) return;
    const rd = safeReturnPath(form.get('rd'));
    const r = await mfa.useRecoveryCode(session, mfaSettings(ctx), form.get('code') ?? '');
    emitCheck(ctx, req, session, 'recovery', r);
    if (!r.ok) {
      await showStepUp(req, res, ctx, session, { rd, token: undefined, q: new URLSearchParams(), status: statusOf(r), error: capitalize(r.detail) });
      return;
    }
    send(res, ctx, redirect(`${ENROLL_PATH}?done=recovered`));
  }

  async function totpEnrollBegin(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session): Promise<void> {
    const form = await checkedForm(req, res, ctx, session);
    if (form === undefined) return;
    const rd = safeReturnPath(form.get('rd'));
    const r = await mfa.beginTotpEnrollment(session, mfaSettings(ctx));
    if (!r.ok) {
      await showEnroll(res, ctx, session, { rd, status: statusOf(r), error: capitalize(r.detail) });
      return;
    }
    await showEnroll(res, ctx, session, { rd, withTotp: true });
  }

  async function totpEnrollConfirm(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session): Promise<void> {
    const form = await checkedForm(req, res, ctx, session);
    if (form === undefined) return;
    const rd = safeReturnPath(form.get('rd'));
    const r = await mfa.confirmTotpEnrollment(session, mfaSettings(ctx), form.get('code') ?? '', form.get('name') ?? undefined);
    emitEnroll(ctx, req, session, 'totp', r);
    if (!r.ok) {
      await showEnroll(res, ctx, session, { rd, status: statusOf(r), error: capitalize(r.detail), withTotp: true });
      return;
    }
    const next = `${ENROLL_PATH}?rd=${encodeURIComponent(rd)}&done=added`;
    if (r.recoveryCodes !== undefined) {
      send(res, ctx, page(200, recoveryCodesPage(r.recoveryCodes, next, 'Your authenticator app is set up.')));
      return;
    }
    send(res, ctx, redirect(next));
  }

  async function removeFactor(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session): Promise<void> {
    const form = await checkedForm(req, res, ctx, session);
    if (form === undefined) return;
    const rd = safeReturnPath(form.get('rd'));
    const kind = form.get('kind');
    const id = form.get('id') ?? '';
    if (kind !== 'webauthn' && kind !== 'totp') {
      await showEnroll(res, ctx, session, { rd, status: 400, error: 'Unknown kind of factor.' });
      return;
    }
    const factor: 'webauthn' | 'totp' = kind;
    const r = await mfa.removeFactor(session, mfaSettings(ctx), factor, id);
    const base = { provider: session.record.provider, user: session.record.user, session: sessionReference(session.id), factor, credential: id.slice(0, 256) };
    if (!r.ok) {
      kit.emit(ctx, req, { ...base, action: 'mfa_failure', reason: `remove-${r.reason}` });
      await showEnroll(res, ctx, session, { rd, status: statusOf(r), error: capitalize(r.detail) });
      return;
    }
    kit.emit(ctx, req, { ...base, action: 'mfa_remove', reason: kind });
    send(res, ctx, redirect(`${ENROLL_PATH}?rd=${encodeURIComponent(rd)}&done=removed`));
  }

  async function regenerateCodes(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session): Promise<void> {
    const form = await checkedForm(req, res, ctx, session);
    if (form === undefined) return;
    const rd = safeReturnPath(form.get('rd'));
    const r = await mfa.regenerateRecoveryCodes(session, mfaSettings(ctx));
    const base = { provider: session.record.provider, user: session.record.user, session: sessionReference(session.id), factor: 'recovery' as const };
    if (!r.ok) {
      kit.emit(ctx, req, { ...base, action: 'mfa_failure', reason: `recovery-codes-${r.reason}` });
      await showEnroll(res, ctx, session, { rd, status: statusOf(r), error: capitalize(r.detail) });
      return;
    }
    kit.emit(ctx, req, { ...base, action: 'mfa_recovery_codes', reason: 'regenerated' });
    send(res, ctx, page(200, recoveryCodesPage(r.codes, `${ENROLL_PATH}?rd=${encodeURIComponent(rd)}`, 'New recovery codes were made; the old ones no longer work.')));
  }

  // --- WebAuthn JSON API ----------------------------------------------------------------------

  function apiError(ctx: RequestContext, status: number, error: string, message: string): GatewayResponse {
    return json(status, { error, message, request_id: ctx.id });
  }

  /** Reads a JSON post and checks the CSRF header and origin; answers and returns undefined when they fail. */
  async function checkedJson(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session): Promise<Record<string, unknown> | undefined> {
    const header = req.headers['x-portcullis-csrf'];
    if (typeof header !== 'string' || !safeEqual(header, session.record.csrf) || !kit.sameOrigin(ctx, req)) {
      kit.emit(ctx, req, { action: 'mfa_failure', provider: session.record.provider, user: session.record.user, session: sessionReference(session.id), reason: 'csrf' });
      send(res, ctx, apiError(ctx, 403, 'csrf', 'This request did not come from the gateway’s own page. Reload the page and try again.'));
      return undefined;
    }
    try {
      return await readJsonObject(req);
    } catch (err) {
      send(res, ctx, apiError(ctx, 400, 'malformed', err instanceof FormError ? err.message : 'bad body'));
      return undefined;
    }
  }

  async function webauthnApi(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session, action: 'register-options' | 'register' | 'authenticate-options' | 'authenticate'): Promise<void> {
    const body = await checkedJson(req, res, ctx, session);
    if (body === undefined) return;
    const settings = mfaSettings(ctx);
    const origin = kit.requestOrigin(ctx, req);
    const rd = safeReturnPath(typeof body.rd === 'string' ? body.rd : undefined);
    switch (action) {
      case 'register-options': {
        const r = await mfa.beginPasskeyRegistration(session, settings);
        send(res, ctx, r.ok ? json(200, { options: r.options }) : apiError(ctx, statusOf(r), r.reason, capitalize(r.detail)));
        return;
      }
      case 'authenticate-options': {
        const r = await mfa.beginPasskeyAuthentication(session, settings);
        send(res, ctx, r.ok ? json(200, { options: r.options }) : apiError(ctx, statusOf(r), r.reason, capitalize(r.detail)));
        return;
      }
      case 'register': {
        const r = await mfa.finishPasskeyRegistration(session, settings, body.response, origin, typeof body.name === 'string' ? body.name : undefined);
        emitEnroll(ctx, req, session, 'webauthn', r);
        if (!r.ok) {
          send(res, ctx, apiError(ctx, statusOf(r), r.reason, capitalize(r.detail)));
          return;
        }
        const next = rd === '/' ? `${ENROLL_PATH}?done=added` : rd;
        send(res, ctx, json(200, { ok: true, redirect: next, ...(r.recoveryCodes === undefined ? {} : { recovery_codes: r.recoveryCodes }) }));
        return;
      }
      case 'authenticate': {
        const r = await mfa.finishPasskeyAuthentication(session, settings, body.response, origin);
        emitCheck(ctx, req, session, 'webauthn', r);
        if (!r.ok) {
          send(res, ctx, apiError(ctx, statusOf(r), r.reason, capitalize(r.detail)));
          return;
        }
        const token = tokenParam(typeof body.token === 'string' ? body.token : undefined);
        if (token !== undefined) await mfa.grantToken(token, session.record.user, r.check, settings);
        const next = token === undefined ? rd : `/.portcullis/mfa/confirmed`;
        send(res, ctx, json(200, { ok: true, redirect: next }));
        return;
      }
    }
  }

  // --- dispatch -------------------------------------------------------------------------------

  const FORMS: Readonly<Record<string, (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, session: Session) => Promise<void>>> = {
    totp: totpStepUp,
    recovery: recoveryStepUp,
    'totp/enroll': totpEnrollBegin,
    'totp/confirm': totpEnrollConfirm,
    remove: removeFactor,
    'recovery/regenerate': regenerateCodes,
  };
  const APIS: Readonly<Record<string, 'register-options' | 'register' | 'authenticate-options' | 'authenticate'>> = {
    'webauthn/register/options': 'register-options',
    'webauthn/register': 'register',
    'webauthn/authenticate/options': 'authenticate-options',
    'webauthn/authenticate': 'authenticate',
  };

  return {
    /** What `/.portcullis/me` shows of a user's factors (counts and names, never secrets). */
    async summary(user: string) {
      const f = await mfa.factors(user);
      return {
        webauthn: f.webauthn.map((c) => ({ name: c.name, created_at: Math.floor(c.createdAt / 1000), last_used_at: c.lastUsedAt === undefined ? null : Math.floor(c.lastUsedAt / 1000) })),
        totp: f.totp.map((c) => ({ name: c.name, created_at: Math.floor(c.createdAt / 1000), last_used_at: c.lastUsedAt === undefined ? null : Math.floor(c.lastUsedAt / 1000) })),
        recovery_codes_left: f.recovery.filter((c) => c.usedAt === undefined).length,
      };
    },

    /** `/.portcullis/assets/<name>`. */
    assets(res: ServerResponse, ctx: RequestContext, name: string | undefined): void {
      if (ctx.segments.length !== 3 || (name !== 'mfa.js' && name !== 'simplewebauthn.js')) {
        send(res, ctx, notFound(ctx));
        return;
      }
      send(res, ctx, { status: 200, headers: SCRIPT_HEADERS, body: asset(name) });
    },

    /** `/.portcullis/mfa…`. */
    async handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<void> {
      const sub = ctx.segments.slice(2).join('/');
      const method = req.method ?? 'GET';
      const session = await kit.currentSession(req, ctx);
      const q = queryParams(ctx);
      if (method === 'GET' && (sub === '' || sub === 'enroll' || sub === 'confirmed')) {
        if (session === undefined) {
          toLogin(ctx, res);
          return;
        }
        if (sub === 'confirmed') {
          send(res, ctx, page(200, tokenConfirmedPage(session.record.user)));
          return;
        }
        const rd = safeReturnPath(q.get('rd'));
        if (sub === 'enroll') {
          const done = q.get('done');
          await showEnroll(res, ctx, session, { rd, ...(done !== null && NOTICES[done] !== undefined ? { notice: NOTICES[done] } : {}) });
          return;
        }
        await showStepUp(req, res, ctx, session, { rd, token: tokenParam(q.get('token')), q });
        return;
      }
      const form = FORMS[sub];
      const api = APIS[sub];
      if (method !== 'POST' || (form === undefined && api === undefined)) {
        send(res, ctx, notFound(ctx));
        return;
      }
      if (session === undefined) {
        send(res, ctx, errorResponse('GW_ERR_AUTH_REQUIRED', { html: ctx.html, requestId: ctx.id }));
        return;
      }
      if (form !== undefined) await form(req, res, ctx, session);
      else if (api !== undefined) await webauthnApi(req, res, ctx, session, api);
    },
  };
}

function capitalize(text: string): string {
  const t = text.endsWith('.') ? text : `${text}.`;
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** The MFA endpoints. */
export type MfaEndpoints = ReturnType<typeof createMfaEndpoints>;
