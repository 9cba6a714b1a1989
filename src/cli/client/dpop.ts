/**
 * DPoP (RFC 9449) for key-bound CLI tokens: an ES256 key pair made per login, its RFC 7638
 * thumbprint (`jkt`), and proofs — JWTs with header `typ: dpop+jwt`, `alg: ES256`, `jwk` (the public
 * key) and claims `htm`, `htu`, `iat`, `jti` and, for resource requests, `ath`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import type { PrivateJwk } from './credentials.js';

/** A key pair ready to sign proofs. */
export interface DpopKey {
  /** The private JWK, as the credentials store keeps it. */
  readonly jwk: PrivateJwk;
  /** The public JWK put in each proof's header. */
  readonly publicJwk: { readonly kty: 'EC'; readonly crv: 'P-256'; readonly x: string; readonly y: string };
  /** RFC 7638 SHA-256 thumbprint (base64url): the token's `jkt`. */
  readonly thumbprint: string;
  readonly sign: (claims: Record<string, unknown>) => Promise<string>;
}

function toPrivateJwk(jwk: JWK): PrivateJwk {
  const { kty, crv, x, y, d } = jwk;
  if (kty !== 'EC' || crv !== 'P-256' || x === undefined || y === undefined || d === undefined) throw new Error('expected a P-256 private key');
  return { kty: 'EC', crv: 'P-256', x, y, d };
}

/** Wraps a stored private JWK. */
export async function loadDpopKey(jwk: PrivateJwk): Promise<DpopKey> {
  const publicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } as const;
  const key = await importJWK({ ...jwk }, 'ES256');
  const thumbprint = await calculateJwkThumbprint(publicJwk, 'sha256');
  return {
    jwk,
    publicJwk,
    thumbprint,
    sign: (claims) => new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk }).sign(key),
  };
}

/** Makes a new ES256 key pair. */
export async function generateDpopKey(): Promise<DpopKey> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  return loadDpopKey(toPrivateJwk(await exportJWK(privateKey)));
}

/** `htu` for a request URL: scheme, host (default port dropped) and path — no query, no fragment. */
export function htuOf(url: string | URL): string {
  const u = typeof url === 'string' ? new URL(url) : url;
  return `${u.protocol}//${u.host}${u.pathname}`;
}

/** `ath`: base64url SHA-256 of the access token. */
export function athOf(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/**
 * A proof for one request: `method` and `url` as sent; `accessToken` when presenting a token (adds
 * `ath`), absent on the token endpoint.
 */
export function dpopProof(key: DpopKey, method: string, url: string | URL, accessToken?: string, now: number = Date.now()): Promise<string> {
  const claims: Record<string, unknown> = { htm: method, htu: htuOf(url), iat: Math.floor(now / 1000), jti: randomUUID() };
  if (accessToken !== undefined) claims.ath = athOf(accessToken);
  return key.sign(claims);
}
