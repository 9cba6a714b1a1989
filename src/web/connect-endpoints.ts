/**
 * `/.portcullis/connect/<database id>` (SPEC §3, §7): issues a short-lived database password when
 * the database's `allow` and `mfa` hold, as a page with a ready-to-paste `psql` command or, with
 * `Accept: application/json`, as `{database, user, password, expires_at, psql}`.
 *
 *   GET  connect/<id>          issue a password (browser: page; API: JSON)
 *   POST connect/<id>/revoke   revoke every password the user holds for the database; open
 *                              connections close at their next re-check (CSRF token + same origin
 *                              for browser sessions; a bearer token needs neither)
 *
 * Not signed in → the login page (browser) or 401. A stale or missing second factor → the step-up
 * page (browser) or the RFC 9470 challenge (API), as for routes. Issues and revocations are `auth`
 * audit records; the request itself gets its own `http` record like any other.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AuthEvent, AuthEventSink } from '../audit/auth-events.js';
import type { DatabaseConfig, MfaRequirementConfig } from '../config/index.js';
import { databasePolicyTarget, type DatabaseTokens } from '../database/index.js';
import type { Identity, MfaCheck } from '../identity/index.js';
import type { Session } from '../identity/sessions.js';
import { evaluatePolicy, type Decision } from '../policy/index.js';
import type { EndpointOutcome, RequestContext } from '../proxy/pipeline.js';
import { connectPageHtml, revokedPageHtml } from './connect-pages.js';
import { safeEqual } from './cookies.js';
import { FormError, json, notFound, page, readForm, redirect, send, type EndpointKit } from './endpoint-kit.js';
import { errorResponse, renderPage, type GatewayResponse } from './error-response.js';

/** What the connect endpoints need. */
export interface ConnectEndpointDeps {
  readonly kit: EndpointKit;
  readonly tokens: DatabaseTokens;
  /** The store handle of a web session (tokens are bound to it). */
  readonly sessionHandle: (session: Session) => string;
  /** A browser step-up granted to a bearer token (RFC 9470 flow), if any. */
  readonly tokenStepUp?: (identity: Identity) => Promise<MfaCheck | undefined>;
  readonly events: AuthEventSink;
  readonly logger: Logger;
  readonly now: () => number;
}

/** Where clients reach a database: `connect_host`, else the listen address (public_url's host for a wildcard listen). */
export function connectAddress(db: DatabaseConfig, publicUrl: string): { host: string; port: number } {
  const listenPort = Number(db.listen.slice(db.listen.lastIndexOf(':') + 1));
  if (db.connect_host !== undefined) {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(db.connect_host);
    return { host: m?.[1] ?? db.connect_host, port: m?.[2] === undefined ? listenPort : Number(m[2]) };
  }
  let host = db.listen.slice(0, db.listen.lastIndexOf(':'));
  if (host === '' || host === '0.0.0.0' || host === '[::]' || host === '::') host = new URL(publicUrl).hostname;
  return { host, port: listenPort };
}

/** The `psql` command line for a password (a connection URI, so user and password travel together). */
export function psqlCommand(a: { host: string; port: number; database: string; user: string; password: string; sslmode: 'require' | undefined }): string {
  const uri = `postgresql://${encodeURIComponent(a.user)}:${encodeURIComponent(a.password)}@${a.host}:${a.port}/${encodeURIComponent(a.database)}${a.sslmode === undefined ? '' : `?sslmode=${a.sslmode}`}`;
  return `psql '${uri.replaceAll("'", "'\\''")}'`;
}

function stepUpChallenge(requirement: MfaRequirementConfig): { challenge: string; description: string; maxAge: number } {
  const maxAge = Math.floor(requirement.max_age / 1000);
  const description = `A ${requirement.factors.join(' or ')} check within ${maxAge}s is required`;
  return {
    maxAge,
    description,
    challenge: `Bearer error="insufficient_user_authentication", error_description="${description}", max_age=${maxAge}, acr_values="${requirement.factors.join(' ')}"`,
  };
}

/** Creates the handler for `/.portcullis/connect/…`. */
export function createConnectEndpoints(deps: ConnectEndpointDeps) {
  const { kit, tokens } = deps;

  function emit(ctx: RequestContext, req: IncomingMessage, identity: Identity, action: 'db_token_issue' | 'db_token_revoke', database: string, reason: string): void {
    const event: AuthEvent = {
      kind: 'auth',
      action,
      provider: identity.provider,
      user: identity.user.slice(0, 256),
      reason,
      requestId: ctx.id,
      client: { ip: ctx.clientIp, userAgent: req.headers['user-agent']?.slice(0, 512) },
      session: identity.session,
      at: deps.now(),
      database,
    };
    deps.events.emit(event);
    deps.logger.info({ reqId: ctx.id, event: { ...event, client: undefined } }, `auth ${action}`);
  }

  function reply(res: ServerResponse, ctx: RequestContext, r: GatewayResponse, decision: EndpointOutcome['decision'], reason: string): EndpointOutcome {
    send(res, ctx, r);
    return { status: r.status, decision, reason };
  }

  function here(ctx: RequestContext): string {
    return `${ctx.path ?? '/'}${ctx.query === undefined ? '' : `?${ctx.query}`}`;
  }

  function unauthenticated(res: ServerResponse, ctx: RequestContext): EndpointOutcome {
    if (ctx.html && ctx.method === 'GET') return reply(res, ctx, redirect(`/.portcullis/login?rd=${encodeURIComponent(here(ctx))}`, 302), 'unauthenticated', 'user-unauthenticated');
    return reply(res, ctx, errorResponse('GW_ERR_AUTH_REQUIRED', { html: ctx.html, requestId: ctx.id, extraHeaders: { 'www-authenticate': 'Bearer realm="portcullis"' } }), 'unauthenticated', 'user-unauthenticated');
  }

  function stepUp(res: ServerResponse, ctx: RequestContext, identity: Identity, decision: Extract<Decision, { effect: 'step_up' }>): EndpointOutcome {
    const requirement = decision.requirement;
    const factors = requirement.factors.join(',');
    if (ctx.html) {
      return reply(res, ctx, redirect(`/.portcullis/mfa?rd=${encodeURIComponent(here(ctx))}&factors=${factors}`, 302), 'step_up', decision.reason);
    }
    const { challenge, description, maxAge } = stepUpChallenge(requirement);
    const origin = new URL(ctx.snapshot.config.server.public_url).origin;
    const stepUpUrl =
      (identity.auth === 'bearer' || identity.auth === 'cli') && identity.tokenRef !== undefined
        ? `${origin}/.portcullis/mfa?token=${identity.tokenRef}&factors=${factors}`
        : `${origin}/.portcullis/mfa?rd=${encodeURIComponent(here(ctx))}&factors=${factors}`;
    const body = { error: 'GW_ERR_MFA_REQUIRED', message: `${description}. Complete the step-up in a browser at step_up_url, then retry.`, request_id: ctx.id, step_up_url: stepUpUrl, factors: requirement.factors, max_age: maxAge };
    return reply(res, ctx, { ...json(401, body, { 'www-authenticate': challenge, 'referrer-policy': 'no-referrer' }) }, 'step_up', decision.reason);
  }

  async function issue(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, db: DatabaseConfig): Promise<EndpointOutcome> {
    let identity = ctx.identity;
    if (identity === undefined) return unauthenticated(res, ctx);
    let session: Session | undefined;
    if (identity.auth === 'cookie') {
      session = await kit.currentSession(req, ctx);
      if (session === undefined) return unauthenticated(res, ctx);
    }
    const target = databasePolicyTarget(db, { mfa: true });
    let decision = evaluatePolicy(target, identity, deps.now());
    if (decision.effect === 'step_up' && (identity.auth === 'bearer' || identity.auth === 'cli') && deps.tokenStepUp !== undefined) {
      const grant = await deps.tokenStepUp(identity);
      if (grant !== undefined) {
        identity = { ...identity, mfa: grant };
        decision = evaluatePolicy(target, identity, deps.now());
      }
    }
    switch (decision.effect) {
      case 'unauthenticated':
        return unauthenticated(res, ctx);
      case 'deny':
        return reply(res, ctx, errorResponse('GW_ERR_DATABASE_DENIED', { html: ctx.html, requestId: ctx.id, message: `You are not allowed to use the database ${db.id}.` }), 'deny', decision.reason);
      case 'step_up':
        return stepUp(res, ctx, identity, decision);
      case 'allow':
        break;
    }
    const { token, record } = await tokens.issue(db.id, identity, { via: identity.auth === 'cookie' ? 'cookie' : 'bearer', sessionHandle: session === undefined ? undefined : deps.sessionHandle(session) }, db.token_ttl);
    emit(ctx, req, identity, 'db_token_issue', db.id, decision.reason);
    const { host, port } = connectAddress(db, ctx.snapshot.config.server.public_url);
    const sslmode = db.tls === undefined ? undefined : 'require';
    const psql = psqlCommand({ host, port, database: db.id, user: identity.user, password: token, sslmode });
    const mfa = db.mfa === undefined || record.mfa === undefined ? undefined : record.mfa.factor;
    if (ctx.html) {
      const html = connectPageHtml({ database: db.id, user: identity.user, password: token, host, port, sslmode, expiresAt: record.expiresAt, psql, csrf: session?.record.csrf, mfa });
      return reply(res, ctx, page(200, html), 'allow', decision.reason);
    }
    return reply(
      res,
      ctx,
      json(200, { database: db.id, user: identity.user, password: token, expires_at: new Date(record.expiresAt).toISOString(), psql, host, port, sslmode: sslmode ?? 'prefer' }),
      'allow',
      decision.reason,
    );
  }

  async function revoke(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, db: DatabaseConfig): Promise<EndpointOutcome> {
    const identity = ctx.identity;
    if (identity === undefined) return unauthenticated(res, ctx);
    if (identity.auth === 'cookie') {
      const session = await kit.currentSession(req, ctx);
      if (session === undefined) return unauthenticated(res, ctx);
      // A browser session proves the request came from the gateway's own page: CSRF token + origin.
      let csrf = typeof req.headers['x-portcullis-csrf'] === 'string' ? req.headers['x-portcullis-csrf'] : '';
      if (csrf === '') {
        try {
          csrf = (await readForm(req)).get('csrf') ?? '';
        } catch (err) {
          const message = err instanceof FormError ? `Bad form: ${err.message}.` : 'Bad form.';
          return reply(res, ctx, errorResponse('GW_ERR_REQUEST_HEADERS', { html: ctx.html, requestId: ctx.id, message }), 'error', 'bad-form');
        }
      }
      if (!safeEqual(csrf, session.record.csrf) || !kit.sameOrigin(ctx, req)) {
        const r = ctx.html
          ? page(403, renderPage('Refused', '<h1>Refused</h1><p>This form expired or came from another site. Go back, reload the page and try again.</p>'))
          : json(403, { error: 'csrf', message: 'This request did not come from the gateway’s own page.', request_id: ctx.id });
        return reply(res, ctx, r, 'deny', 'csrf');
      }
    }
    const n = await tokens.revokeAll(db.id, identity.user);
    emit(ctx, req, identity, 'db_token_revoke', db.id, `revoked-${n}`);
    const seconds = Math.max(1, Math.ceil(db.recheck_every / 1000));
    if (ctx.html) return reply(res, ctx, page(200, revokedPageHtml(db.id, n, seconds)), 'allow', 'tokens-revoked');
    return reply(res, ctx, json(200, { database: db.id, user: identity.user, revoked: n }), 'allow', 'tokens-revoked');
  }

  return {
    /** `/.portcullis/connect/<id>[/revoke]`. */
    async handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
      const [, , id, action, ...rest] = ctx.segments;
      const method = req.method ?? 'GET';
      const db = id === undefined ? undefined : ctx.snapshot.config.databases.find((d) => d.id === id);
      if (db === undefined) {
        return reply(res, ctx, errorResponse('GW_ERR_DATABASE_NOT_FOUND', { html: ctx.html, requestId: ctx.id }), 'not_found', 'no-such-database');
      }
      if (rest.length === 0 && action === undefined && method === 'GET') return issue(req, res, ctx, db);
      if (rest.length === 0 && action === 'revoke' && method === 'POST') return revoke(req, res, ctx, db);
      return reply(res, ctx, notFound(ctx), 'not_found', 'no-such-endpoint');
    },
  };
}

/** The connect endpoints. */
export type ConnectEndpoints = ReturnType<typeof createConnectEndpoints>;
