/**
 * Verifies IdP-issued JWTs that API clients present as `Authorization: Bearer …` (`identity.bearer`).
 *
 * The issuer is chosen from the token's unverified `iss`, but only among the configured ones; the
 * signature is checked against that issuer's JWKS (its `jwks_uri`, or the one its discovery document
 * names), with an asymmetric-only algorithm allow-list, exact `iss`, the configured audience in `aud`,
 * and exp/nbf with 30 s leeway. Successful verifications are cached (LRU, keyed by the token's
 * SHA-256) until the token expires; failures are never cached.
 */
import { createHash } from 'node:crypto';
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { Config } from '../config/schema.js';
import { epochMsClaim, stringClaim, stringListClaim } from './claims.js';

export type BearerIssuerConfig = Config['identity']['bearer'][number];

export interface BearerClaims {
  /** `email` when present, else `sub`. */
  user: string;
  email: string | undefined;
  groups: string[];
  subject: string;
  issuer: string;
  /** Epoch milliseconds (`exp`). */
  expiresAt: number;
  /** Epoch milliseconds (`auth_time`), when present. */
  authTime: number | undefined;
  amr: string[];
}

export type BearerFailureReason =
  | 'malformed'
  | 'unknown-issuer'
  | 'bad-signature'
  | 'expired'
  | 'not-yet-valid'
  | 'wrong-audience'
  | 'alg-not-allowed'
  | 'unknown-key';

export type BearerResult = { ok: true; claims: BearerClaims } | { ok: false; reason: BearerFailureReason };

export interface BearerVerifier {
  verify(token: string): Promise<BearerResult>;
}

export interface BearerVerifierOptions {
  /** Clock, epoch milliseconds (default Date.now). */
  now?: () => number;
  /** Successful verifications remembered (default 10 000; 0 disables the cache). */
  cacheSize?: number;
  /** Minimum time between JWKS refetches triggered by an unknown `kid` (jose's cooldown; default 30 s). */
  jwksCooldownMs?: number;
}

/** Accepted unless configured otherwise: asymmetric only (never `none`, never HS*). */
export const DEFAULT_BEARER_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;

const CLOCK_TOLERANCE_S = 30;
const DEFAULT_CACHE_SIZE = 10_000;
/** Longer tokens are refused unparsed (a JWT from an IdP is a few KiB at most). */
const MAX_TOKEN_LENGTH = 16 * 1024;
const JWS_COMPACT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const FETCH_TIMEOUT_MS = 5000;

const fail = (reason: BearerFailureReason): BearerResult => ({ ok: false, reason });

interface IssuerState {
  readonly cfg: BearerIssuerConfig;
  readonly algorithms: string[];
  /** The JWKS resolver once known; discovery is retried on the next token after a failure. */
  keys: Promise<JWTVerifyGetKey> | undefined;
}

export function createBearerVerifier(issuers: readonly BearerIssuerConfig[], opts: BearerVerifierOptions = {}): BearerVerifier {
  const now = opts.now ?? Date.now;
  const cacheSize = opts.cacheSize ?? DEFAULT_CACHE_SIZE;
  const cooldownDuration = opts.jwksCooldownMs ?? 30_000;
  const cache = new Map<string, { claims: BearerClaims; validUntil: number }>();

  const byIssuer = new Map<string, IssuerState[]>();
  for (const cfg of issuers) {
    const list = byIssuer.get(cfg.issuer) ?? [];
    list.push({ cfg, algorithms: [...(cfg.algorithms ?? DEFAULT_BEARER_ALGORITHMS)], keys: undefined });
    byIssuer.set(cfg.issuer, list);
  }

  function keysFor(state: IssuerState): Promise<JWTVerifyGetKey> {
    if (state.keys === undefined) {
      const promise = jwksUri(state.cfg).then((uri) =>
        createRemoteJWKSet(uri, { cooldownDuration, timeoutDuration: FETCH_TIMEOUT_MS }),
      );
      state.keys = promise;
      promise.catch(() => {
        if (state.keys === promise) state.keys = undefined;
      });
    }
    return state.keys;
  }

  async function verifyWith(state: IssuerState, token: string): Promise<BearerResult> {
    let keys: JWTVerifyGetKey;
    try {
      keys = await keysFor(state);
    } catch {
      return fail('unknown-key');
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: state.cfg.issuer,
        audience: state.cfg.audience,
        algorithms: state.algorithms,
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: new Date(now()),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      return fail(reasonOf(err));
    }
    const subject = stringClaim(payload, 'sub');
    const exp = epochMsClaim(payload, 'exp');
    if (subject === undefined || exp === undefined) return fail('malformed');
    const email = stringClaim(payload, 'email');
    return {
      ok: true,
      claims: {
        user: email ?? subject,
        email,
        groups: stringListClaim(payload, 'groups'),
        subject,
        issuer: state.cfg.issuer,
        expiresAt: exp,
        authTime: epochMsClaim(payload, 'auth_time'),
        amr: stringListClaim(payload, 'amr'),
      },
    };
  }

  function cached(key: string): BearerClaims | undefined {
    const hit = cache.get(key);
    if (hit === undefined) return undefined;
    cache.delete(key);
    if (hit.validUntil <= now()) return undefined;
    cache.set(key, hit); // most recently used last
    return hit.claims;
  }

  function remember(key: string, claims: BearerClaims): void {
    if (cacheSize <= 0) return;
    // A copy: the caller may change the object it was given; hits hand out copies too.
    const stored = { ...claims, groups: [...claims.groups], amr: [...claims.amr] };
    cache.set(key, { claims: stored, validUntil: claims.expiresAt + CLOCK_TOLERANCE_S * 1000 });
    while (cache.size > cacheSize) {
      const oldest = cache.keys().next();
      if (oldest.done === true) break;
      cache.delete(oldest.value);
    }
  }

  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_LENGTH || !JWS_COMPACT_RE.test(token)) return fail('malformed');
      const key = createHash('sha256').update(token).digest('base64url');
      const hit = cached(key);
      if (hit !== undefined) return { ok: true, claims: { ...hit, groups: [...hit.groups], amr: [...hit.amr] } };

      let alg: unknown;
      let iss: unknown;
      try {
        alg = decodeProtectedHeader(token).alg;
        iss = decodeJwt(token).iss;
      } catch {
        return fail('malformed');
      }
      if (typeof alg !== 'string') return fail('malformed');
      const candidates = typeof iss === 'string' ? byIssuer.get(iss) : undefined;
      if (candidates === undefined) return fail('unknown-issuer');

      let result: BearerResult = fail('unknown-issuer');
      for (const state of candidates) {
        result = state.algorithms.includes(alg) ? await verifyWith(state, token) : fail('alg-not-allowed');
        // The same issuer may be configured once per audience: only a wrong audience tries the next.
        if (result.ok || result.reason !== 'wrong-audience') break;
      }
      if (result.ok) remember(key, result.claims);
      return result;
    },
  };
}

/** The configured jwks_uri, or the one in the issuer's discovery document (whose `issuer` must match). */
async function jwksUri(cfg: BearerIssuerConfig): Promise<URL> {
  if (cfg.jwks_uri !== undefined) return new URL(cfg.jwks_uri);
  const discovery = new URL(`${cfg.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`);
  const res = await fetch(discovery, {
    headers: { accept: 'application/json' },
    redirect: 'error',
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  if (!res.ok) throw new Error(`${discovery.href} answered ${res.status}`);
  const doc: unknown = await res.json();
  if (typeof doc !== 'object' || doc === null) throw new Error(`${discovery.href} is not a JSON object`);
  const { issuer, jwks_uri: uri } = doc as { issuer?: unknown; jwks_uri?: unknown };
  if (issuer !== cfg.issuer) throw new Error(`${discovery.href} names issuer ${String(issuer)}, not ${cfg.issuer}`);
  if (typeof uri !== 'string' || !/^https?:\/\//.test(uri)) throw new Error(`${discovery.href} has no usable jwks_uri`);
  return new URL(uri);
}

function reasonOf(err: unknown): BearerFailureReason {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return 'not-yet-valid';
      case 'aud':
        return 'wrong-audience';
      case 'iss':
        return 'unknown-issuer';
      default:
        return 'malformed';
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'alg-not-allowed';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad-signature';
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return 'unknown-key';
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return 'unknown-key';
  if (err instanceof errors.JOSEError) return 'malformed';
  // Fetching the JWKS failed (network, HTTP status): the key cannot be had.
  return 'unknown-key';
}
