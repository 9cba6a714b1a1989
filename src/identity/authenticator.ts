/**
 * Finds who is asking (the pipeline's Authenticator port): an `Authorization: Bearer` JWT from a
 * configured issuer, else the session cookie. A request that presents a bearer token is judged by
 * that token alone — an invalid token never falls back to a cookie.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Authenticator } from '../proxy/pipeline.js';
import type { Snapshot } from '../proxy/snapshot.js';
import { readCookie, cookiePolicy } from '../web/cookies.js';
import type { BearerVerifier } from './bearer-verifier.js';
import type { Identity } from './identity.js';
import type { OidcClient } from './oidc-client.js';
import { sessionReference, type Session, type SessionManager } from './sessions.js';
import type { AuthEventSink } from '../audit/auth-events.js';

/** What the authenticator needs. */
export interface AuthenticatorDeps {
  readonly sessions: SessionManager;
  /** The bearer verifier for the current configuration (undefined: no bearer issuers). */
  readonly bearer: () => BearerVerifier | undefined;
  /** The OIDC client of a provider, to refresh sessions whose IdP tokens expired. */
  readonly oidc: (providerId: string) => Promise<OidcClient | undefined>;
  readonly logger: Logger;
  readonly now: () => number;
  /** Where a session ended by the IdP (refused refresh) is recorded. */
  readonly events?: AuthEventSink;
}

/** `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1). */
const BEARER_SCHEME_RE = /^bearer(?: |$)/i;
const BEARER_RE = /^bearer +([A-Za-z0-9_.~+/=-]+) *$/i;

/** Names a bearer token in step-up grants: base64url SHA-256 of the token (the token is never stored). */
export function tokenReference(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** Creates the authenticator. */
export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const refreshing = new Map<string, Promise<Session | undefined>>();

  /** Re-validates an OIDC session whose access token expired; undefined when the IdP says no. */
  async function refresh(session: Session, req: IncomingMessage): Promise<Session | undefined> {
    const token = session.record.oidc?.refreshToken;
    if (token === undefined) return session;
    const client = await deps.oidc(session.record.provider);
    if (client === undefined) return session;
    try {
      const r = await client.refresh(token);
      return await deps.sessions.update(session, { groups: r.groups, email: r.email, oidc: { refreshToken: r.refreshToken ?? token, expiresAt: r.expiresAt } });
    } catch (err) {
      deps.logger.info({ err, provider: session.record.provider }, 'OIDC refresh refused; ending the session');
      await deps.sessions.revoke(session);
      deps.events?.emit({
        kind: 'auth',
        action: 'session_revoked',
        provider: session.record.provider,
        user: session.record.user,
        reason: 'idp-refresh-refused',
        requestId: '',
        client: { ip: req.socket.remoteAddress ?? '', userAgent: req.headers['user-agent']?.slice(0, 512) },
        session: sessionReference(session.id),
        at: deps.now(),
      });
      return undefined;
    }
  }

  async function fromSession(id: string, req: IncomingMessage): Promise<Identity | undefined> {
    let session = await deps.sessions.get(id);
    if (session === undefined) return undefined;
    const expiresAt = session.record.oidc?.expiresAt;
    if (expiresAt !== undefined && expiresAt < deps.now() && session.record.oidc?.refreshToken !== undefined) {
      let pending = refreshing.get(id);
      if (pending === undefined) {
        pending = refresh(session, req).finally(() => refreshing.delete(id));
        refreshing.set(id, pending);
      }
      session = await pending;
      if (session === undefined) return undefined;
    }
    return deps.sessions.identityOf(session);
  }

  async function fromBearer(token: string): Promise<Identity | undefined> {
    const verifier = deps.bearer();
    if (verifier === undefined) return undefined;
    const r = await verifier.verify(token);
    if (!r.ok) return undefined;
    const c = r.claims;
    return {
      user: c.user,
      email: c.email,
      groups: c.groups,
      provider: c.issuer,
      auth: 'bearer',
      session: undefined,
      authTime: c.authTime ?? deps.now(),
      mfa: undefined,
      amr: c.amr,
      tokenRef: tokenReference(token),
    };
  }

  return {
    authenticate(req: IncomingMessage, snapshot: Snapshot): Promise<Identity | undefined> | undefined {
      const authorization = req.headers.authorization;
      // Other schemes (Basic for an upstream app's own login …) are the upstream's business.
      if (authorization !== undefined && BEARER_SCHEME_RE.test(authorization)) {
        const m = BEARER_RE.exec(authorization);
        return m?.[1] === undefined ? undefined : fromBearer(m[1]);
      }
      const id = readCookie(req.headers.cookie, cookiePolicy(snapshot.config.server.public_url).session);
      return id === undefined ? undefined : fromSession(id, req);
    },
  };
}
