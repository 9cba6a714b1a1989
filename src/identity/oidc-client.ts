/**
 * OpenID Connect relying party for one configured `type: oidc` provider: authorization code flow with
 * PKCE (S256), state and nonce, on top of openid-client (discovery, token exchange, ID token
 * validation and userinfo are all its work; nothing here speaks the protocol by hand).
 *
 * The caller keeps the {@link PendingLogin} server-side between `beginLogin` and `completeLogin` and
 * uses it once. Every failure is an {@link OidcLoginError} with a stable `reason`.
 */
import { timingSafeEqual } from 'node:crypto';
import * as oidc from 'openid-client';
import type { Config } from '../config/schema.js';
import { epochMsClaim, hasClaim, stringClaim, stringListClaim, type Claims } from './claims.js';

/** One `identity.providers[]` entry of `type: oidc`. */
export type OidcProviderConfig = Extract<Config['identity']['providers'][number], { type: 'oidc' }>;

/** What must survive between the redirect to the IdP and its callback. Plain JSON; single use. */
export interface PendingLogin {
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface OidcLoginResult {
  /** The configured `claims.user` claim. */
  user: string;
  email: string | undefined;
  groups: string[];
  /** The ID token `sub`. */
  subject: string;
  refreshToken: string | undefined;
  /** Epoch milliseconds at which the access token expires, when the IdP said. */
  expiresAt: number | undefined;
  /** Epoch milliseconds of the user's authentication at the IdP (`auth_time`), when present. */
  authTime: number | undefined;
  amr: string[];
}

export interface OidcClient {
  readonly id: string;
  beginLogin(): Promise<{ url: string; pending: PendingLogin }>;
  completeLogin(callbackUrl: URL, pending: PendingLogin): Promise<OidcLoginResult>;
  refresh(refreshToken: string): Promise<OidcLoginResult>;
}

export type OidcLoginErrorReason =
  | 'state-mismatch'
  | 'nonce-mismatch'
  | 'code-invalid'
  | 'idp-error'
  | 'missing-claim'
  | 'discovery-failed';

export class OidcLoginError extends Error {
  override readonly name = 'OidcLoginError';
  readonly reason: OidcLoginErrorReason;
  /** Provider id from the configuration. */
  readonly provider: string;
  /** The OAuth `error` code the IdP returned (`access_denied`, `invalid_grant`, …), if it returned one. */
  readonly idpError: string | undefined;

  constructor(
    reason: OidcLoginErrorReason,
    provider: string,
    message: string,
    options?: { cause?: unknown; idpError?: string | undefined },
  ) {
    super(`${provider}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.reason = reason;
    this.provider = provider;
    this.idpError = options?.idpError;
  }
}

export interface OidcClientOptions {
  /** The callback URL registered at the IdP. */
  redirectUri: string;
  /** Allow an http:// issuer. Tests only: never set from configuration. */
  allowInsecureRequests?: boolean;
  /** Timeout for each request to the IdP; default 10 s. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Discovers the provider (throws `OidcLoginError` with reason `discovery-failed` when it cannot) and
 * returns a client for it.
 */
export async function createOidcClient(cfg: OidcProviderConfig, opts: OidcClientOptions): Promise<OidcClient> {
  const id = cfg.id;
  const timeout = (opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000;
  const redirectUri = new URL(opts.redirectUri);
  const scope = [...new Set(['openid', ...cfg.scopes])].join(' ');
  const userClaim = cfg.claims.user;
  const groupsClaim = cfg.claims.groups;
  const wantsEmail = cfg.scopes.includes('email');

  let config: oidc.Configuration;
  try {
    config = await oidc.discovery(
      new URL(cfg.issuer),
      cfg.client_id,
      cfg.client_secret === undefined ? undefined : { client_secret: cfg.client_secret },
      clientAuthentication(cfg.client_secret),
      {
        timeout,
        // Deprecated only as a warning sign: tests run the IdP over http on loopback.
        // eslint-disable-next-line @typescript-eslint/no-deprecated
        execute: opts.allowInsecureRequests === true ? [oidc.allowInsecureRequests] : [],
      },
    );
  } catch (err) {
    throw new OidcLoginError('discovery-failed', id, `discovery at ${cfg.issuer} failed: ${describe(err)}`, { cause: err });
  }

  /** Maps ID token claims (and userinfo when a needed claim is not in the ID token) to a result. */
  async function toResult(
    tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers,
    previousRefreshToken: string | undefined,
  ): Promise<OidcLoginResult> {
    const idToken = tokens.claims();
    const idClaims: Claims | undefined = idToken;
    let userinfo: Claims | undefined;
    const needUserinfo =
      idClaims === undefined ||
      !hasClaim(idClaims, userClaim) ||
      !hasClaim(idClaims, groupsClaim) ||
      (wantsEmail && !hasClaim(idClaims, 'email'));
    if (needUserinfo && config.serverMetadata().userinfo_endpoint !== undefined) {
      // A refresh response without an ID token leaves nothing to compare userinfo's `sub` with; the
      // result's `subject` is then userinfo's, and the caller compares it with the session's.
      // eslint-disable-next-line @typescript-eslint/no-deprecated
      const expectedSubject = idToken === undefined ? oidc.skipSubjectCheck : idToken.sub;
      try {
        userinfo = await oidc.fetchUserInfo(config, tokens.access_token, expectedSubject);
      } catch (err) {
        throw mapError(err, id, 'userinfo');
      }
    }
    /** The claims object that holds `name`: the ID token's first, else userinfo's. */
    const source = (name: string): Claims =>
      idClaims !== undefined && hasClaim(idClaims, name) ? idClaims : (userinfo ?? idClaims ?? {});

    const subject = stringClaim(idClaims ?? userinfo ?? {}, 'sub');
    if (subject === undefined) throw new OidcLoginError('missing-claim', id, 'the IdP returned no "sub" claim');
    const userSource = source(userClaim);
    const user = stringClaim(userSource, userClaim);
    if (user === undefined) {
      throw new OidcLoginError(
        'missing-claim',
        id,
        `the IdP returned no "${userClaim}" claim (claims.user) for subject ${subject}; check the requested scopes (${scope})`,
      );
    }
    if (userClaim === 'email' && userSource.email_verified === false) {
      throw new OidcLoginError('missing-claim', id, `the IdP says the e-mail address ${user} is not verified`);
    }
    const expiresIn = tokens.expiresIn();
    return {
      user,
      email: stringClaim(source('email'), 'email'),
      groups: stringListClaim(source(groupsClaim), groupsClaim),
      subject,
      refreshToken: tokens.refresh_token ?? previousRefreshToken,
      expiresAt: expiresIn === undefined ? undefined : Date.now() + expiresIn * 1000,
      authTime: idClaims === undefined ? undefined : epochMsClaim(idClaims, 'auth_time'),
      amr: idClaims === undefined ? [] : stringListClaim(idClaims, 'amr'),
    };
  }

  return {
    id,

    async beginLogin() {
      const codeVerifier = oidc.randomPKCECodeVerifier();
      const pending: PendingLogin = { state: oidc.randomState(), nonce: oidc.randomNonce(), codeVerifier };
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri.href,
        scope,
        state: pending.state,
        nonce: pending.nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
      });
      return { url: url.href, pending };
    },

    async completeLogin(callbackUrl, pending) {
      if (!isPendingLogin(pending)) throw new OidcLoginError('state-mismatch', id, 'no valid pending login');
      const state = callbackUrl.searchParams.get('state');
      if (state === null || !sameString(state, pending.state)) {
        throw new OidcLoginError('state-mismatch', id, 'the callback state does not match the pending login');
      }
      // The token request's redirect_uri is derived from this URL, so it is the configured one with
      // the callback's parameters, whatever host or scheme the request reached us on.
      const current = new URL(redirectUri);
      current.search = callbackUrl.search;
      let tokens;
      try {
        tokens = await oidc.authorizationCodeGrant(config, current, {
          expectedState: pending.state,
          expectedNonce: pending.nonce,
          pkceCodeVerifier: pending.codeVerifier,
          idTokenExpected: true,
        });
      } catch (err) {
        throw mapError(err, id, 'code');
      }
      return toResult(tokens, undefined);
    },

    async refresh(refreshToken) {
      let tokens;
      try {
        tokens = await oidc.refreshTokenGrant(config, refreshToken);
      } catch (err) {
        throw mapError(err, id, 'refresh');
      }
      return toResult(tokens, refreshToken);
    },
  };
}

/** client_secret_basic when the IdP supports it (the OIDC default), else client_secret_post; none without a secret. */
function clientAuthentication(secret: string | undefined): oidc.ClientAuth {
  if (secret === undefined) return oidc.None();
  const basic = oidc.ClientSecretBasic(secret);
  const post = oidc.ClientSecretPost(secret);
  return (as, client, body, headers) => {
    const methods = as.token_endpoint_auth_methods_supported;
    if (methods === undefined || methods.includes('client_secret_basic')) basic(as, client, body, headers);
    else post(as, client, body, headers);
  };
}

function isPendingLogin(p: unknown): p is PendingLogin {
  if (typeof p !== 'object' || p === null) return false;
  const r = p as Record<string, unknown>;
  return [r.state, r.nonce, r.codeVerifier].every((v) => typeof v === 'string' && v !== '');
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `${err.message}${cause}`;
}

/** The claim name an openid-client claim-comparison error is about, if any. */
function failedClaim(err: oidc.ClientError): unknown {
  const cause: unknown = err.cause;
  if (typeof cause !== 'object' || cause === null) return undefined;
  const inner: unknown = (cause as { cause?: unknown }).cause;
  return typeof inner === 'object' && inner !== null ? (inner as { claim?: unknown }).claim : undefined;
}

function mapError(err: unknown, id: string, stage: 'code' | 'refresh' | 'userinfo'): OidcLoginError {
  if (err instanceof OidcLoginError) return err;
  if (err instanceof oidc.AuthorizationResponseError) {
    const description = err.error_description === undefined ? '' : `: ${err.error_description}`;
    return new OidcLoginError('idp-error', id, `the IdP refused the login (${err.error}${description})`, {
      cause: err,
      idpError: err.error,
    });
  }
  if (err instanceof oidc.ResponseBodyError) {
    const description = err.error_description === undefined ? '' : `: ${err.error_description}`;
    const reason = stage === 'code' && err.error === 'invalid_grant' ? 'code-invalid' : 'idp-error';
    return new OidcLoginError(reason, id, `the IdP answered ${err.status} ${err.error}${description} (${stage})`, {
      cause: err,
      idpError: err.error,
    });
  }
  if (err instanceof oidc.ClientError && err.code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED' && failedClaim(err) === 'nonce') {
    return new OidcLoginError('nonce-mismatch', id, 'the ID token nonce does not match the pending login', { cause: err });
  }
  if (err instanceof oidc.ClientError && err.code === 'OAUTH_INVALID_RESPONSE' && /"state"/.test(describe(err))) {
    return new OidcLoginError('state-mismatch', id, 'the callback state does not match the pending login', { cause: err });
  }
  return new OidcLoginError('idp-error', id, `${stage} request failed: ${describe(err)}`, { cause: err });
}
