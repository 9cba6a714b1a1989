/**
 * Finds who is asking (the pipeline's Authenticator port): an `Authorization: Bearer` JWT from a
 * configured issuer, a gateway-issued CLI token (`Bearer pct_…`, or `DPoP pct_…` with a `DPoP` proof
 * for a key-bound one; docs/cli-protocol.md), else the session cookie. A request that presents a
 * token is judged by that token alone — an invalid token never falls back to a cookie.
 */
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
import { ACCESS_TOKEN_RE, tokenReference, verifyDpop, type CliTokens } from './cli-tokens.js';

export { tokenReference };

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
  /** Gateway-issued CLI tokens (absent: `pct_…` tokens are not recognised). */
  readonly cliTokens?: CliTokens;
}

/** `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1). */
const BEARER_SCHEME_RE = /^bearer(?: |$)/i;
const BEARER_RE = /^bearer +([A-Za-z0-9_.~+/=-]+) *$/i;
/** `DPoP <token>` (RFC 9449 §7.1). */
const DPOP_SCHEME_RE = /^dpop(?: |$)/i;
const DPOP_RE = /^dpop +(pct_[A-Za-z0-9_-]{43}) *$/i;
/** RFC 9449 §7.1 / RFC 6750 §3.1: what a refused (bound, or DPoP-presented) CLI token is told. */
export const DPOP_INVALID_TOKEN_CHALLENGE = 'DPoP error="invalid_token", algs="ES256 EdDSA"';
const BEARER_INVALID_TOKEN_CHALLENGE = 'Bearer realm="portcullis", error="invalid_token"';

/** Creates the authenticator. */
export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const refreshing = new Map<string, Promise<Session | undefined>>();
  /** The challenge for a request whose CLI token was refused (read by the pipeline's 401). */
  const challenges = new WeakMap<IncomingMessage, string>();
  /**
   * Requests whose DPoP proof was already verified (by token reference): an open WebSocket re-checks
   * its request on a timer, and the same proof must not then count as its own replay. The token
   * record itself is looked up every time, so a revocation is seen at the next check.
   */
  const provenFor = new WeakMap<IncomingMessage, string>();

  /**
   * A gateway-issued CLI token: its record in the store (one lookup; revocation is seen at once), and
   * for a key-bound token a valid, fresh, unreplayed DPoP proof for this very request.
   */
  async function fromCliToken(req: IncomingMessage, snapshot: Snapshot, token: string, scheme: 'bearer' | 'dpop'): Promise<Identity | undefined> {
    const cli = deps.cliTokens;
    function refuse(challenge: string): Identity | undefined {
      challenges.set(req, challenge);
      return undefined;
    }
    const invalid = scheme === 'dpop' ? DPOP_INVALID_TOKEN_CHALLENGE : BEARER_INVALID_TOKEN_CHALLENGE;
    if (cli === undefined || !snapshot.config.identity.cli_tokens.enabled || !ACCESS_TOKEN_RE.test(token)) return refuse(invalid);
    const ref = tokenReference(token);
    const record = await cli.lookup(ref);
    if (record === undefined) return refuse(invalid);
    if (record.jkt === undefined) {
      // An unbound token is a plain bearer token; presenting it as DPoP is a client error.
      if (scheme !== 'bearer') return refuse(invalid);
    } else {
      if (scheme !== 'dpop') return refuse(DPOP_INVALID_TOKEN_CHALLENGE);
      if (provenFor.get(req) !== ref) {
        const proof = req.headers.dpop;
        if (typeof proof !== 'string') return refuse(DPOP_INVALID_TOKEN_CHALLENGE);
        const scheme2 = new URL(snapshot.config.server.public_url).protocol;
        const url = req.url ?? '/';
        const q = url.indexOf('?');
        const r = await verifyDpop(cli, proof, {
          method: req.method ?? 'GET',
          url: `${scheme2}//${(req.headers.host ?? '').toLowerCase()}${q === -1 ? url : url.slice(0, q)}`,
          accessToken: token,
          jkt: record.jkt,
          now: deps.now(),
        });
        if (!r.ok) {
          deps.logger.debug({ reason: r.reason }, 'DPoP proof refused');
          return refuse(DPOP_INVALID_TOKEN_CHALLENGE);
        }
        provenFor.set(req, ref);
      }
    }
    return {
      user: record.user,
      email: record.email,
      groups: record.groups,
      provider: record.provider,
      auth: 'cli',
      session: record.session,
      authTime: record.authTime,
      mfa: record.mfa,
      amr: record.amr,
      tokenRef: ref,
    };
  }

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
        if (m?.[1] === undefined) return undefined;
        return m[1].startsWith('pct_') ? fromCliToken(req, snapshot, m[1], 'bearer') : fromBearer(m[1]);
      }
      // `DPoP pct_…` is ours; another DPoP token belongs to the upstream, like Basic.
      if (authorization !== undefined && DPOP_SCHEME_RE.test(authorization)) {
        const m = DPOP_RE.exec(authorization);
        if (m?.[1] !== undefined) return fromCliToken(req, snapshot, m[1], 'dpop');
      }
      const id = readCookie(req.headers.cookie, cookiePolicy(snapshot.config.server.public_url).session);
      return id === undefined ? undefined : fromSession(id, req);
    },
    challenge(req: IncomingMessage): string | undefined {
      return challenges.get(req);
    },
  };
}
