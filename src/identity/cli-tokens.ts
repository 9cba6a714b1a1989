/**
 * Gateway-issued CLI tokens (docs/cli-protocol.md): opaque access tokens (`pct_…`) and refresh tokens
 * (`pcr_…`) for `portcullis login`, authorization codes (RFC 8252 loopback redirect + PKCE), device
 * codes (RFC 8628) and DPoP proofs (RFC 9449), all on the Store port.
 *
 * Tokens are never stored: the store holds records under the token's SHA-256 (`tokenReference`), so
 * a copy of the store yields nothing usable. Every key has a TTL.
 *
 *   clitoken:<ref>        access-token record, TTL = its expiry
 *   clirefresh:<ref>      refresh-token record (names its access token), TTL = the session's max lifetime
 *   clitokens:<user>      the user's access-token refs (for the tokens page and revocation)
 *   clicode:<sha256>      authorization code, 60 s, single use (take)
 *   clidevice:<sha256>    device authorization, 600 s (+ grace to report expired_token)
 *   cliusercode:<code>    user code → device hash, 600 s
 *   clipoll:<sha256>      polling interval marker (slow_down)
 *   dpop-jti:<jkt>:<sha>  seen DPoP proof ids, 2 min
 */
import { createHash, createPublicKey, randomBytes, randomInt, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWK, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import type { Store } from '../store/store.js';
import { safeEqual } from '../web/cookies.js';
import type { MfaCheck } from './identity.js';

/**
 * Names a token: base64url SHA-256 (the token itself is never stored). The same reference names
 * bearer tokens in step-up grants (`authenticator.ts` re-exports it).
 */
export function tokenReference(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export const ACCESS_TOKEN_RE = /^pct_[A-Za-z0-9_-]{43}$/;
export const REFRESH_TOKEN_RE = /^pcr_[A-Za-z0-9_-]{43}$/;
/** A base64url SHA-256 (PKCE S256 challenge, RFC 7638 thumbprint, token reference). */
export const SHA256_B64U_RE = /^[A-Za-z0-9_-]{43}$/;
/** RFC 7636 §4.1 code_verifier. */
export const CODE_VERIFIER_RE = /^[A-Za-z0-9._~-]{43,128}$/;
/** The longest lifetime a CLI token may have (the schema enforces it too). */
export const MAX_CLI_TOKEN_TTL_MS = 12 * 3_600_000;
export const CODE_TTL_MS = 60_000;
export const DEVICE_TTL_MS = 600_000;
export const DEVICE_INTERVAL_S = 5;
/** How long after expiry a device code still answers `expired_token` instead of `invalid_grant`. */
const DEVICE_GRACE_MS = 600_000;
const DPOP_JTI_TTL_MS = 120_000;
const DPOP_IAT_WINDOW_MS = 60_000;
const DPOP_MAX_LENGTH = 4096;
/** RFC 8628 §6.1: consonants only (no vowels: no words), no easily confused letters. */
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

/** Who authorized a token: copied from the browser session at issue time. */
export interface CliGrantSubject {
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
  readonly provider: string;
  readonly amr: readonly string[];
  readonly authTime: number;
  /** The MFA check the session had when it authorized the token. */
  readonly mfa: MfaCheck | undefined;
  /** Store handle of the authorizing session (refresh works only while it is live). */
  readonly sessionHandle: string;
  /** SPEC §4 session reference of the authorizing session (16 hex), for audit records. */
  readonly session: string;
}

/** What the store holds for an access token. */
export interface CliTokenRecord extends CliGrantSubject {
  readonly v: 1;
  /** The label the CLI gave (e.g. the host name). */
  readonly name: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** RFC 7638 thumbprint of the key the token is bound to (DPoP), when bound. */
  readonly jkt: string | undefined;
  /** The reference of the refresh token issued with it. */
  readonly refreshRef: string;
}

interface RefreshRecord {
  readonly v: 1;
  readonly accessRef: string;
  readonly user: string;
}

/** An issued pair. */
export interface IssuedPair {
  readonly accessToken: string;
  readonly refreshToken: string;
  readonly ref: string;
  readonly record: CliTokenRecord;
}

/** A pending authorization code (bound to the PKCE challenge, redirect_uri, key and session). */
export interface AuthorizationCodeRecord {
  readonly subject: CliGrantSubject;
  readonly redirectUri: string;
  readonly codeChallenge: string;
  readonly jkt: string | undefined;
  readonly name: string;
}

/** A device authorization (RFC 8628). */
export interface DeviceRecord {
  readonly userCode: string;
  readonly name: string;
  readonly jkt: string | undefined;
  readonly expiresAt: number;
  readonly state: 'pending' | 'approved' | 'denied';
  readonly subject?: CliGrantSubject;
}

/** Why a DPoP proof was refused. */
export type DpopFailure =
  | 'malformed'
  | 'bad-type'
  | 'bad-algorithm'
  | 'bad-key'
  | 'bad-signature'
  | 'bad-method'
  | 'bad-url'
  | 'stale'
  | 'bad-jti'
  | 'bad-ath'
  | 'replayed'
  | 'key-mismatch';

/** What a proof is checked against. */
export interface DpopExpectation {
  readonly method: string;
  /** `<scheme>://<host><path>` of the request as the gateway sees it (no query). */
  readonly url: string;
  /** The access token it must be bound to (`ath`); absent on the token endpoint. */
  readonly accessToken?: string;
  /** The thumbprint the proof's key must have, when known. */
  readonly jkt?: string;
  readonly now: number;
}

function normalizedUrl(text: string): string | undefined {
  try {
    const u = new URL(text);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    return `${u.protocol}//${u.host.toLowerCase()}${u.pathname}`;
  } catch {
    return undefined;
  }
}

/** A public JWK of an allowed key type: EC P-256 or OKP Ed25519, no private members. */
function publicJwk(jwk: unknown, alg: string): JWK | undefined {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return undefined;
  const k = jwk as Record<string, unknown>;
  if ('d' in k || 'p' in k || 'q' in k || 'k' in k) return undefined;
  if (alg === 'ES256' && k.kty === 'EC' && k.crv === 'P-256' && typeof k.x === 'string' && typeof k.y === 'string') return { kty: 'EC', crv: 'P-256', x: k.x, y: k.y };
  if (alg === 'EdDSA' && k.kty === 'OKP' && k.crv === 'Ed25519' && typeof k.x === 'string') return { kty: 'OKP', crv: 'Ed25519', x: k.x };
  return undefined;
}

/**
 * Public keys of recent proofs, by their JWK members: importing a key and hashing its thumbprint cost
 * more than verifying a signature, and a CLI signs every request with the same key. Bounded.
 */
const KEY_CACHE_MAX = 1024;
const keyCache = new Map<string, { key: KeyObject; jkt: string }>();

async function proofKey(jwk: JWK): Promise<{ key: KeyObject; jkt: string } | undefined> {
  const id = `${jwk.crv ?? ''}|${jwk.x ?? ''}|${jwk.y ?? ''}`;
  const hit = keyCache.get(id);
  if (hit !== undefined) return hit;
  let key: KeyObject;
  try {
    // Node's import checks that an EC point lies on the curve.
    key = createPublicKey({ key: { ...jwk }, format: 'jwk' });
  } catch {
    return undefined;
  }
  const entry = { key, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
  keyCache.set(id, entry);
  return entry;
}

/**
 * Verifies a DPoP proof (RFC 9449 §4.3) except replay: header `typ: dpop+jwt`, `alg` ES256 or EdDSA,
 * a public `jwk` whose key signed it (no `crit`, no unencoded payload); claims `htm`, `htu` (compared
 * without query), `iat` within ±60 s, a `jti`, `exp`/`nbf` when present, and `ath` when an access
 * token is given. Returns the key's RFC 7638 thumbprint and the jti. jose checks the JWS (signature,
 * algorithm, `typ`, `crit`) with the proof's key, imported once and cached; the DPoP claims are
 * checked here.
 */
export async function checkDpopProof(proof: string, expect: DpopExpectation): Promise<{ ok: true; jkt: string; jti: string } | { ok: false; reason: DpopFailure }> {
  if (proof.length === 0 || proof.length > DPOP_MAX_LENGTH || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(proof)) return { ok: false, reason: 'malformed' };
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(proof);
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (header.typ !== 'dpop+jwt') return { ok: false, reason: 'bad-type' };
  const alg = header.alg;
  if (alg !== 'ES256' && alg !== 'EdDSA') return { ok: false, reason: 'bad-algorithm' };
  if (header.crit !== undefined || header.b64 !== undefined) return { ok: false, reason: 'malformed' };
  const jwk = publicJwk(header.jwk, alg);
  const entry = jwk === undefined ? undefined : await proofKey(jwk);
  if (entry === undefined) return { ok: false, reason: 'bad-key' };
  let payload: JWTPayload;
  try {
    // exp and nbf are held to the DPoP window below, more strictly than jose's tolerance.
    ({ payload } = await jwtVerify(proof, entry.key, { typ: 'dpop+jwt', algorithms: [alg], currentDate: new Date(expect.now), clockTolerance: DPOP_IAT_WINDOW_MS / 1000 }));
  } catch (err) {
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) return { ok: false, reason: 'bad-signature' };
    if (err instanceof joseErrors.JWTExpired || err instanceof joseErrors.JWTClaimValidationFailed) return { ok: false, reason: 'stale' };
    return { ok: false, reason: 'malformed' };
  }
  if (payload.htm !== expect.method) return { ok: false, reason: 'bad-method' };
  const htu = typeof payload.htu === 'string' ? normalizedUrl(payload.htu) : undefined;
  const want = normalizedUrl(expect.url);
  if (htu === undefined || want === undefined || htu !== want) return { ok: false, reason: 'bad-url' };
  if (typeof payload.iat !== 'number' || Math.abs(payload.iat * 1000 - expect.now) > DPOP_IAT_WINDOW_MS) return { ok: false, reason: 'stale' };
  if ((payload.exp !== undefined && (typeof payload.exp !== 'number' || payload.exp * 1000 <= expect.now)) || (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf * 1000 > expect.now + DPOP_IAT_WINDOW_MS))) {
    return { ok: false, reason: 'stale' };
  }
  if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256) return { ok: false, reason: 'bad-jti' };
  if (expect.accessToken !== undefined) {
    const ath = createHash('sha256').update(expect.accessToken).digest('base64url');
    if (typeof payload.ath !== 'string' || !safeEqual(payload.ath, ath)) return { ok: false, reason: 'bad-ath' };
  }
  if (expect.jkt !== undefined && !safeEqual(entry.jkt, expect.jkt)) return { ok: false, reason: 'key-mismatch' };
  return { ok: true, jkt: entry.jkt, jti: payload.jti };
}

/**
 * A redirect_uri the gateway will send a code to: `http://127.0.0.1:<port>/<path>` or
 * `http://[::1]:<port>/<path>` (RFC 8252 §7.3, §8.3: IP literals, never `localhost`), no user info,
 * query or fragment, a path of plain characters. Anything else: undefined (and never a redirect).
 */
export function validLoopbackRedirect(raw: string | null | undefined): string | undefined {
  if (raw === null || raw === undefined || raw.length > 512) return undefined;
  const m = /^http:\/\/(127\.0\.0\.1|\[::1\]):(\d{1,5})(\/[A-Za-z0-9._~/-]*)?$/.exec(raw);
  if (m === null) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535 || m[2]?.startsWith('0') === true) return undefined;
  const path = m[3] ?? '/';
  if (path.split('/').some((s) => s === '.' || s === '..')) return undefined;
  return `http://${m[1] ?? ''}:${port}${path}`;
}

/** `XXXX-XXXX` from consonants (RFC 8628 §6.1), ≈ 34 bits. */
export function newUserCode(): string {
  let s = '';
  for (let i = 0; i < 8; i++) s += USER_CODE_ALPHABET.charAt(randomInt(USER_CODE_ALPHABET.length));
  return `${s.slice(0, 4)}-${s.slice(4)}`;
}

/** A user code as typed (lower case, spaces, no dash) → canonical form, or undefined. */
export function canonicalUserCode(raw: string | null | undefined): string | undefined {
  if (raw === null || raw === undefined || raw.length > 32) return undefined;
  const s = raw.toUpperCase().replace(/[\s-]/g, '');
  if (!/^[BCDFGHJKLMNPQRSTVWXZ]{8}$/.test(s)) return undefined;
  return `${s.slice(0, 4)}-${s.slice(4)}`;
}

function random(prefix: string): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the stored shape
function parse<T>(raw: string | undefined): T | undefined {
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return undefined;
  }
}

/** What the service needs. */
export interface CliTokenServiceOptions {
  readonly store: Store;
  readonly now: () => number;
  /** How long a refresh token may live (the session's max lifetime: refresh needs the session anyway). */
  readonly refreshTtlMs: () => number;
}

/** Creates the CLI token service. */
export function createCliTokens(opts: CliTokenServiceOptions) {
  const { store, now } = opts;
  const accessKey = (ref: string) => `clitoken:${ref}`;
  const refreshKey = (ref: string) => `clirefresh:${ref}`;
  const userKey = (user: string) => `clitokens:${user}`;

  async function revokeRef(ref: string): Promise<CliTokenRecord | undefined> {
    const record = parse<CliTokenRecord>(await store.get(accessKey(ref)));
    await store.delete(accessKey(ref));
    if (record !== undefined) {
      await store.delete(refreshKey(record.refreshRef));
      await store.removeFromSet(userKey(record.user), ref);
    }
    return record;
  }

  return {
    /** Issues a new access + refresh pair for `subject` living `ttlMs` (capped at 12 h). */
    async issue(subject: CliGrantSubject, opts2: { name: string; jkt: string | undefined; ttlMs: number }): Promise<IssuedPair> {
      const at = now();
      const ttl = Math.max(1000, Math.min(opts2.ttlMs, MAX_CLI_TOKEN_TTL_MS));
      const accessToken = random('pct_');
      const refreshToken = random('pcr_');
      const ref = tokenReference(accessToken);
      const refreshRef = tokenReference(refreshToken);
      const record: CliTokenRecord = {
        v: 1,
        user: subject.user,
        email: subject.email,
        groups: [...subject.groups],
        provider: subject.provider,
        amr: [...subject.amr],
        authTime: subject.authTime,
        mfa: subject.mfa,
        sessionHandle: subject.sessionHandle,
        session: subject.session,
        name: opts2.name,
        createdAt: at,
        expiresAt: at + ttl,
        jkt: opts2.jkt,
        refreshRef,
      };
      const refresh: RefreshRecord = { v: 1, accessRef: ref, user: subject.user };
      // The record outlives the access token's expiry for as long as its refresh token may be used
      // (refresh reads it; `lookup` checks expiresAt), and stays listed (and revocable) until then.
      const keep = Math.max(ttl, opts.refreshTtlMs());
      await store.set(accessKey(ref), JSON.stringify(record), keep);
      await store.set(refreshKey(refreshRef), JSON.stringify(refresh), keep);
      await store.addToSet(userKey(subject.user), ref, Math.max(MAX_CLI_TOKEN_TTL_MS, opts.refreshTtlMs()));
      return { accessToken, refreshToken, ref, record };
    },

    /** The live record of an access token (by reference), or undefined (unknown, revoked, expired). */
    async lookup(ref: string): Promise<CliTokenRecord | undefined> {
      const record = parse<CliTokenRecord>(await store.get(accessKey(ref)));
      if (record === undefined || now() >= record.expiresAt) return undefined;
      return record;
    },

    /**
     * Consumes a refresh token (single use): the access record it belongs to, which is revoked. The
     * caller issues the next pair (or refuses). Undefined when unknown or already used.
     */
    async takeRefresh(refreshToken: string): Promise<{ ref: string; record: CliTokenRecord | undefined } | undefined> {
      if (!REFRESH_TOKEN_RE.test(refreshToken)) return undefined;
      const saved = parse<RefreshRecord>(await store.take(refreshKey(tokenReference(refreshToken))));
      if (saved === undefined) return undefined;
      const record = parse<CliTokenRecord>(await store.get(accessKey(saved.accessRef)));
      await revokeRef(saved.accessRef);
      return { ref: saved.accessRef, record };
    },

    /** Revokes the pair an access or refresh token belongs to; the revoked record, if any. */
    async revokeToken(token: string): Promise<{ ref: string; record: CliTokenRecord } | undefined> {
      let ref: string | undefined;
      if (ACCESS_TOKEN_RE.test(token)) ref = tokenReference(token);
      else if (REFRESH_TOKEN_RE.test(token)) {
        const saved = parse<RefreshRecord>(await store.take(refreshKey(tokenReference(token))));
        ref = saved?.accessRef;
      }
      if (ref === undefined) return undefined;
      const record = await revokeRef(ref);
      return record === undefined ? undefined : { ref, record };
    },

    /** Revokes one of `user`'s tokens by reference (the tokens page); the record when it was theirs. */
    async revokeRefOf(user: string, ref: string): Promise<CliTokenRecord | undefined> {
      if (!SHA256_B64U_RE.test(ref)) return undefined;
      const record = parse<CliTokenRecord>(await store.get(accessKey(ref)));
      if (record?.user !== user) return undefined;
      return revokeRef(ref);
    },

    /**
     * `user`'s tokens, newest first: live ones and expired ones whose refresh token still works (both
     * can be revoked). Stale index entries are dropped.
     */
    async list(user: string): Promise<{ ref: string; record: CliTokenRecord }[]> {
      const refs = await store.members(userKey(user));
      const out: { ref: string; record: CliTokenRecord }[] = [];
      for (const ref of refs) {
        const record = parse<CliTokenRecord>(await store.get(accessKey(ref)));
        if (record === undefined) await store.removeFromSet(userKey(user), ref);
        else out.push({ ref, record });
      }
      return out.sort((a, b) => b.record.createdAt - a.record.createdAt);
    },

    // --- authorization codes -----------------------------------------------------------------

    /** Stores a single-use 60-second code. */
    async newCode(saved: AuthorizationCodeRecord): Promise<string> {
      const code = randomBytes(32).toString('base64url');
      await store.set(`clicode:${tokenReference(code)}`, JSON.stringify(saved), CODE_TTL_MS);
      return code;
    },

    /** Consumes a code (whatever happens next, it cannot be used again). */
    async takeCode(code: string): Promise<AuthorizationCodeRecord | undefined> {
      if (!SHA256_B64U_RE.test(code)) return undefined;
      return parse<AuthorizationCodeRecord>(await store.take(`clicode:${tokenReference(code)}`));
    },

    // --- device authorization ------------------------------------------------------------------

    /** Starts a device authorization: the device code (for the CLI) and the user code (for a person). */
    async startDevice(name: string, jkt: string | undefined): Promise<{ deviceCode: string; userCode: string }> {
      for (let attempt = 0; attempt < 5; attempt++) {
        const deviceCode = randomBytes(32).toString('base64url');
        const userCode = newUserCode();
        const hash = tokenReference(deviceCode);
        if (!(await store.setIfAbsent(`cliusercode:${userCode}`, hash, DEVICE_TTL_MS))) continue;
        const record: DeviceRecord = { userCode, name, jkt, expiresAt: now() + DEVICE_TTL_MS, state: 'pending' };
        await store.set(`clidevice:${hash}`, JSON.stringify(record), DEVICE_TTL_MS + DEVICE_GRACE_MS);
        return { deviceCode, userCode };
      }
      throw new Error('could not allocate a unique user code');
    },

    /** The pending device authorization a user code names. */
    async deviceByUserCode(userCode: string): Promise<{ hash: string; record: DeviceRecord } | undefined> {
      const hash = await store.get(`cliusercode:${userCode}`);
      if (hash === undefined) return undefined;
      const record = parse<DeviceRecord>(await store.get(`clidevice:${hash}`));
      if (record?.state !== 'pending' || now() >= record.expiresAt || !safeEqual(record.userCode, userCode)) return undefined;
      return { hash, record };
    },

    /** Approves or denies a pending device authorization (the user code is then spent). */
    async decideDevice(hash: string, record: DeviceRecord, decision: { approve: true; subject: CliGrantSubject } | { approve: false }): Promise<void> {
      await store.delete(`cliusercode:${record.userCode}`);
      const next: DeviceRecord = decision.approve ? { ...record, state: 'approved', subject: decision.subject } : { ...record, state: 'denied' };
      const ttl = record.expiresAt + DEVICE_GRACE_MS - now();
      if (ttl > 0) await store.set(`clidevice:${hash}`, JSON.stringify(next), ttl);
    },

    /**
     * One poll of the token endpoint with a device code (RFC 8628 §3.5): too soon after the last →
     * `slow_down`; pending → `authorization_pending`; approved → the record (consumed: single use).
     */
    async pollDevice(deviceCode: string): Promise<{ error: 'invalid_grant' | 'slow_down' | 'authorization_pending' | 'expired_token' | 'access_denied' } | { record: DeviceRecord }> {
      if (!SHA256_B64U_RE.test(deviceCode)) return { error: 'invalid_grant' };
      const hash = tokenReference(deviceCode);
      const record = parse<DeviceRecord>(await store.get(`clidevice:${hash}`));
      if (record === undefined) return { error: 'invalid_grant' };
      if (now() >= record.expiresAt) {
        await store.delete(`clidevice:${hash}`);
        return { error: 'expired_token' };
      }
      if (!(await store.setIfAbsent(`clipoll:${hash}`, '1', DEVICE_INTERVAL_S * 1000))) return { error: 'slow_down' };
      if (record.state === 'pending') return { error: 'authorization_pending' };
      const taken = parse<DeviceRecord>(await store.take(`clidevice:${hash}`));
      if (taken === undefined) return { error: 'invalid_grant' };
      if (taken.state === 'denied') return { error: 'access_denied' };
      if (taken.state !== 'approved') return { error: 'authorization_pending' };
      return { record: taken };
    },

    // --- DPoP replay ---------------------------------------------------------------------------

    /** Remembers a proof id for 2 minutes; false when it was already seen (a replay). */
    async firstUse(jkt: string, jti: string): Promise<boolean> {
      return store.setIfAbsent(`dpop-jti:${jkt}:${tokenReference(jti)}`, '1', DPOP_JTI_TTL_MS);
    },
  };
}

/** The CLI token service. */
export type CliTokens = ReturnType<typeof createCliTokens>;

/** Full DPoP check including replay: the thumbprint, or why it failed. */
export async function verifyDpop(cli: Pick<CliTokens, 'firstUse'>, proof: string, expect: DpopExpectation): Promise<{ ok: true; jkt: string } | { ok: false; reason: DpopFailure }> {
  const r = await checkDpopProof(proof, expect);
  if (!r.ok) return r;
  if (!(await cli.firstUse(r.jkt, r.jti))) return { ok: false, reason: 'replayed' };
  return { ok: true, jkt: r.jkt };
}
