/**
 * What every handler under `/.portcullis/` shares: bounded form and JSON bodies, response builders
 * with the pages' security headers, the session cookie, the same-origin check for state changes,
 * and `auth` events (audit record + log line + metrics).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AuthEvent, AuthEventSink } from '../audit/auth-events.js';
import { CAPS, clean } from '../audit/record.js';
import type { Session, SessionManager } from '../identity/sessions.js';
import type { Channels } from '../metrics/events.js';
import type { RequestContext } from '../proxy/pipeline.js';
import { cookiePolicy, readCookie, sameOriginRequest, setCookie, type CookiePolicy } from './cookies.js';
import { errorResponse, type GatewayResponse } from './error-response.js';

const FORM_LIMIT = 8 * 1024;
const JSON_LIMIT = 128 * 1024;

/** A body that is not the expected form or JSON. */
export class FormError extends Error {}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new FormError('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function mediaType(req: IncomingMessage): string | undefined {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
}

/** Reads an `application/x-www-form-urlencoded` body of at most 8 KiB. */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  if (mediaType(req) !== 'application/x-www-form-urlencoded') throw new FormError('expected a form post');
  return new URLSearchParams((await readBody(req, FORM_LIMIT)).toString('utf8'));
}

/**
 * Reads an `application/json` object body of at most 128 KiB. Requiring this content type also means a
 * cross-site page cannot send it without a CORS preflight, which the gateway never grants.
 */
export async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (mediaType(req) !== 'application/json') throw new FormError('expected application/json');
  let parsed: unknown;
  try {
    parsed = JSON.parse((await readBody(req, JSON_LIMIT)).toString('utf8'));
  } catch (err) {
    if (err instanceof FormError) throw err;
    throw new FormError('malformed JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new FormError('expected a JSON object');
  return parsed as Record<string, unknown>;
}

/** Writes a complete response (with the request id and any cookies). */
export function send(res: ServerResponse, ctx: RequestContext, r: GatewayResponse, cookies: readonly string[] = []): void {
  // The request was already answered (its body timed out or could not be parsed, and the pipeline said so).
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string | string[]> = { ...r.headers, 'x-portcullis-request-id': ctx.id };
  if (cookies.length > 0) headers['set-cookie'] = [...cookies];
  res.writeHead(r.status, headers).end(r.body);
}

/**
 * `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null` on the pages' own
 * form posts, which the same-origin check must refuse. Other sites still get no Referer.
 */
const BASE_PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
} as const;

const PAGE_HEADERS = {
  ...BASE_PAGE_HEADERS,
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
} as const;

const SCRIPTED_PAGE_HEADERS = {
  ...BASE_PAGE_HEADERS,
  'content-security-policy': "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
} as const;

/** An HTML page without scripts. */
export function page(status: number, html: string): GatewayResponse {
  return { status, headers: PAGE_HEADERS, body: html };
}

/** An HTML page that loads the gateway's own scripts (nothing inline, nothing third-party). */
export function scriptedPage(status: number, html: string): GatewayResponse {
  return { status, headers: SCRIPTED_PAGE_HEADERS, body: html };
}

/** A JSON response. */
export function json(status: number, body: unknown, extra: Record<string, string> = {}): GatewayResponse {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...extra }, body: `${JSON.stringify(body)}\n` };
}

/** A redirect to a same-origin path (the caller guarantees it), 303 unless told. */
export function redirect(location: string, status = 303): GatewayResponse {
  return { status, headers: { location, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', 'content-type': 'text/plain; charset=utf-8' }, body: '' };
}

/** The 404 for anything under the prefix that is not an endpoint. */
export function notFound(ctx: RequestContext): GatewayResponse {
  return errorResponse('GW_ERR_ROUTE_NOT_FOUND', { html: ctx.html, requestId: ctx.id });
}

/** The request's query parameters. */
export function queryParams(ctx: RequestContext): URLSearchParams {
  return new URLSearchParams(ctx.query ?? '');
}

/** What the kit needs. */
export interface EndpointKitDeps {
  readonly sessions: SessionManager;
  readonly events: AuthEventSink;
  readonly channels: Channels;
  readonly logger: Logger;
  readonly now: () => number;
}

/** Helpers bound to the app: events, cookies, origins, the current session. */
export function createEndpointKit(deps: EndpointKitDeps) {
  function policyFor(ctx: RequestContext): CookiePolicy {
    return cookiePolicy(ctx.snapshot.config.server.public_url);
  }

  /**
   * The scheme browsers reach the gateway with: the public URL's (a TLS-terminating proxy may sit in
   * front of a plain-HTTP listener).
   */
  function publicScheme(ctx: RequestContext): 'http' | 'https' {
    return new URL(ctx.snapshot.config.server.public_url).protocol === 'https:' ? 'https' : 'http';
  }

  return {
    policyFor,
    publicScheme,

    /** Records an identity event: audit record, log line and (for sign-ins and MFA) metrics. */
    emit: (ctx: RequestContext, req: IncomingMessage, e: Pick<AuthEvent, 'action' | 'provider' | 'user' | 'reason' | 'session' | 'factor' | 'credential'>): void => {
      const event: AuthEvent = {
        kind: 'auth',
        ...e,
        user: e.user === undefined ? undefined : clean(e.user, CAPS.user),
        requestId: ctx.id,
        client: { ip: ctx.clientIp, userAgent: req.headers['user-agent']?.slice(0, 512) },
        at: deps.now(),
      };
      deps.events.emit(event);
      deps.logger.info({ reqId: ctx.id, event: { ...event, client: undefined } }, `auth ${e.action}`);
      if (e.action === 'login' || e.action === 'login_failure' || e.action === 'login_rate_limited') {
        const result = e.action === 'login' ? 'success' : e.action === 'login_failure' ? 'failure' : 'rate_limited';
        deps.channels.authLogin.publish({ provider: e.provider, result });
      } else if ((e.action === 'mfa_success' || e.action === 'mfa_failure' || e.action === 'mfa_rate_limited') && e.factor !== undefined) {
        const result = e.action === 'mfa_success' ? 'success' : e.action === 'mfa_failure' ? 'failure' : 'rate_limited';
        deps.channels.mfaChallenge.publish({ factor: e.factor, result });
      } else if ((e.action === 'mfa_enroll' || e.action === 'mfa_remove') && e.factor !== undefined) {
        deps.channels.mfaEnrollment.publish({ factor: e.factor, action: e.action === 'mfa_enroll' ? 'enroll' : 'remove' });
      }
    },

    /** Whether a state-changing request comes from this host's own pages (public URL's scheme, or the listener's). */
    sameOrigin: (ctx: RequestContext, req: IncomingMessage): boolean => {
      return [publicScheme(ctx), ctx.snapshot.scheme].some((scheme) => sameOriginRequest(req.headers, `${scheme}://${(req.headers.host ?? '').toLowerCase()}`));
    },

    /** The browser origin of this request as the public URL's scheme sees it (for WebAuthn). */
    requestOrigin: (ctx: RequestContext, req: IncomingMessage): string => {
      return `${publicScheme(ctx)}://${(req.headers.host ?? '').toLowerCase()}`;
    },

    /** The session the request's cookie names, if live. */
    currentSession: async (req: IncomingMessage, ctx: RequestContext): Promise<Session | undefined> => {
      const id = readCookie(req.headers.cookie, policyFor(ctx).session);
      return id === undefined ? undefined : deps.sessions.get(id);
    },

    /** The Set-Cookie value for a session id. */
    sessionCookie: (ctx: RequestContext, id: string): string => {
      const policy = policyFor(ctx);
      return setCookie(policy, policy.session, id, ctx.snapshot.config.identity.session.max_lifetime / 1000);
    },
  };
}

/** The endpoint kit. */
export type EndpointKit = ReturnType<typeof createEndpointKit>;
