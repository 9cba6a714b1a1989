import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as jose from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createBearerVerifier, type BearerIssuerConfig } from '../../../src/identity/bearer-verifier.js';

// Pass-through spy, so tests can tell a cache hit (no signature verification) from a verification.
vi.mock('jose', async (importOriginal) => {
  const mod = await importOriginal<typeof jose>();
  return { ...mod, jwtVerify: vi.fn(mod.jwtVerify) };
});
const jwtVerifySpy = vi.mocked(jose.jwtVerify);

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: jose.CryptoKey;
  publicJwk: jose.JWK;
}

async function makeKey(kid: string, alg = 'RS256'): Promise<SigningKey> {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await jose.exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** A JWKS (and discovery document) server on loopback whose keys can be swapped. */
let server: http.Server;
let base = '';
let served: jose.JWK[] = [];
let jwksRequests = 0;

const AUDIENCE = 'portcullis';
let ISSUER = '';
let DISCOVERED_ISSUER = '';
let issuers: BearerIssuerConfig[] = [];

let key1: SigningKey;
let key2: SigningKey;
let ecKey: SigningKey;
let ghost: SigningKey;

let clock = 0;
const now = () => clock;
const nowS = () => Math.floor(clock / 1000);

async function mint(
  claims: Record<string, unknown>,
  key: SigningKey = key1,
  header: Partial<jose.JWTHeaderParameters> = {},
): Promise<string> {
  const payload: jose.JWTPayload = {
    iss: ISSUER,
    aud: AUDIENCE,
    iat: nowS(),
    exp: nowS() + 300,
    sub: 'svc-1',
    email: 'alice@example.com',
    groups: ['eng', 'sre'],
    ...claims,
  };
  return new jose.SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

beforeAll(async () => {
  [key1, key2, ecKey, ghost] = await Promise.all([makeKey('k1'), makeKey('k2'), makeKey('e1', 'ES256'), makeKey('ghost')]);
  server = http.createServer((req, res) => {
    if (req.url === '/jwks') {
      jwksRequests++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: served }));
    } else if (req.url === '/disc/.well-known/openid-configuration') {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ issuer: `${base}/disc`, jwks_uri: `${base}/jwks` }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  ISSUER = `${base}/idp`;
  DISCOVERED_ISSUER = `${base}/disc`;
  issuers = [
    { issuer: ISSUER, audience: AUDIENCE, jwks_uri: `${base}/jwks` },
    { issuer: DISCOVERED_ISSUER, audience: AUDIENCE },
  ];
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  served = [key1.publicJwk, ecKey.publicJwk];
  jwksRequests = 0;
  clock = Date.now();
  jwtVerifySpy.mockClear();
});

describe('bearer verifier', () => {
  it('accepts a valid token and maps its claims', async () => {
    const v = createBearerVerifier(issuers, { now });
    const token = await mint({ auth_time: nowS() - 60, amr: ['pwd', 'mfa'] });
    const r = await v.verify(token);
    expect(r).toEqual({
      ok: true,
      claims: {
        user: 'alice@example.com',
        email: 'alice@example.com',
        groups: ['eng', 'sre'],
        subject: 'svc-1',
        issuer: ISSUER,
        expiresAt: (nowS() + 300) * 1000,
        authTime: (nowS() - 60) * 1000,
        amr: ['pwd', 'mfa'],
      },
    });
  });

  it('uses sub when there is no email, accepts a single-string groups claim and ES256', async () => {
    const v = createBearerVerifier(issuers, { now });
    const r = await v.verify(await mint({ email: undefined, groups: 'ops' }, ecKey));
    expect(r.ok && r.claims).toMatchObject({ user: 'svc-1', email: undefined, groups: ['ops'] });
  });

  it('finds the JWKS through the issuer discovery document', async () => {
    const v = createBearerVerifier(issuers, { now });
    const token = await new jose.SignJWT({ sub: 'svc-2' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(DISCOVERED_ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(nowS() + 60)
      .sign(key1.privateKey);
    const r = await v.verify(token);
    expect(r.ok && r.claims.issuer).toBe(DISCOVERED_ISSUER);
  });

  it('refuses expired tokens, with 30 s of leeway', async () => {
    const v = createBearerVerifier(issuers, { now });
    expect(await v.verify(await mint({ exp: nowS() - 20 }))).toMatchObject({ ok: true });
    expect(await v.verify(await mint({ exp: nowS() - 40 }))).toEqual({ ok: false, reason: 'expired' });
  });

  it('refuses tokens not yet valid, with 30 s of leeway, and does not cache the refusal', async () => {
    const v = createBearerVerifier(issuers, { now });
    expect(await v.verify(await mint({ nbf: nowS() + 20 }))).toMatchObject({ ok: true });
    const early = await mint({ nbf: nowS() + 60 });
    expect(await v.verify(early)).toEqual({ ok: false, reason: 'not-yet-valid' });
    clock += 45_000;
    expect(await v.verify(early)).toMatchObject({ ok: true });
  });

  it('refuses the wrong audience', async () => {
    const v = createBearerVerifier(issuers, { now });
    expect(await v.verify(await mint({ aud: 'someone-else' }))).toEqual({ ok: false, reason: 'wrong-audience' });
    expect(await v.verify(await mint({ aud: ['someone-else', AUDIENCE] }))).toMatchObject({ ok: true });
  });

  it('accepts the same issuer configured once per audience', async () => {
    const v = createBearerVerifier([...issuers, { issuer: ISSUER, audience: 'other-api', jwks_uri: `${base}/jwks` }], { now });
    expect(await v.verify(await mint({ aud: 'other-api' }))).toMatchObject({ ok: true });
    expect(await v.verify(await mint({ aud: 'third' }))).toEqual({ ok: false, reason: 'wrong-audience' });
  });

  it('refuses an issuer that is not configured, without fetching anything', async () => {
    const v = createBearerVerifier(issuers, { now });
    expect(await v.verify(await mint({ iss: 'https://evil.example.com' }))).toEqual({ ok: false, reason: 'unknown-issuer' });
    expect(await v.verify(await mint({ iss: `${ISSUER}/` }))).toEqual({ ok: false, reason: 'unknown-issuer' });
    expect(jwksRequests).toBe(0);
  });

  it('refuses alg none', async () => {
    const v = createBearerVerifier(issuers, { now });
    const payload = { iss: ISSUER, aud: AUDIENCE, sub: 'svc-1', exp: nowS() + 60 };
    expect(await v.verify(`${b64({ alg: 'none' })}.${b64(payload)}.`)).toEqual({ ok: false, reason: 'alg-not-allowed' });
    expect(await v.verify(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.c2ln`)).toEqual({
      ok: false,
      reason: 'alg-not-allowed',
    });
  });

  it('refuses HS256 signed with the RSA public key as the HMAC secret', async () => {
    const v = createBearerVerifier(issuers, { now });
    const publicKey = await jose.importJWK(key1.publicJwk, 'RS256');
    if (publicKey instanceof Uint8Array) throw new Error('expected a CryptoKey');
    const pem = await jose.exportSPKI(publicKey);
    for (const secret of [new TextEncoder().encode(pem), new TextEncoder().encode(JSON.stringify(key1.publicJwk))]) {
      const token = await new jose.SignJWT({ sub: 'svc-1' })
        .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime(nowS() + 60)
        .sign(secret);
      expect(await v.verify(token)).toEqual({ ok: false, reason: 'alg-not-allowed' });
    }
  });

  it('refuses algorithms outside a configured allow-list', async () => {
    const v = createBearerVerifier([{ ...issuers[0], algorithms: ['ES256'] } as BearerIssuerConfig], { now });
    expect(await v.verify(await mint({}))).toEqual({ ok: false, reason: 'alg-not-allowed' });
    expect(await v.verify(await mint({}, ecKey))).toMatchObject({ ok: true });
  });

  it('refuses a bad signature', async () => {
    const v = createBearerVerifier(issuers, { now });
    const [h = '', , s = ''] = (await mint({})).split('.');
    const forged = `${h}.${b64({ iss: ISSUER, aud: AUDIENCE, sub: 'root', email: 'root@example.com', exp: nowS() + 60 })}.${s}`;
    expect(await v.verify(forged)).toEqual({ ok: false, reason: 'bad-signature' });
    // Signed by another key that claims a known kid.
    expect(await v.verify(await mint({}, { ...ghost, kid: 'k1' }))).toEqual({ ok: false, reason: 'bad-signature' });
  });

  it('refuses an unknown kid', async () => {
    const v = createBearerVerifier(issuers, { now });
    expect(await v.verify(await mint({}))).toMatchObject({ ok: true });
    expect(await v.verify(await mint({}, ghost))).toEqual({ ok: false, reason: 'unknown-key' });
  });

  it('refuses malformed tokens', async () => {
    const v = createBearerVerifier(issuers, { now });
    for (const t of ['', 'abc', 'a.b', 'a.b.c.d', `${b64({ alg: 'RS256' })}.not-json.`, `x${'a'.repeat(20_000)}.b.c`]) {
      expect(await v.verify(t)).toEqual({ ok: false, reason: 'malformed' });
    }
    expect(await v.verify(await mint({ sub: undefined }))).toEqual({ ok: false, reason: 'malformed' });
  });

  it('picks up a key rotated in at the JWKS server (new kid)', async () => {
    const v = createBearerVerifier(issuers, { now, jwksCooldownMs: 0 });
    expect(await v.verify(await mint({}))).toMatchObject({ ok: true });
    expect(jwksRequests).toBe(1);
    served = [key2.publicJwk];
    expect(await v.verify(await mint({ jti: 'after-rotation' }, key2))).toMatchObject({ ok: true });
    expect(jwksRequests).toBe(2);
  });

  it('does not refetch the JWKS for every unknown kid within the cooldown', async () => {
    const v = createBearerVerifier(issuers, { now, jwksCooldownMs: 60_000 });
    expect(await v.verify(await mint({}))).toMatchObject({ ok: true });
    for (let i = 0; i < 5; i++) expect(await v.verify(await mint({ jti: String(i) }, ghost))).toEqual({ ok: false, reason: 'unknown-key' });
    expect(jwksRequests).toBe(1);
  });

  it('answers a repeated token from the cache until it expires', async () => {
    const v = createBearerVerifier(issuers, { now });
    const token = await mint({ exp: nowS() + 60 });
    const first = await v.verify(token);
    expect(first).toMatchObject({ ok: true });
    if (first.ok) first.claims.groups.push('tampered-by-caller');
    expect(jwtVerifySpy).toHaveBeenCalledTimes(1);
    const requests = jwksRequests;
    for (let i = 0; i < 3; i++) {
      const again = await v.verify(token);
      expect(again.ok && again.claims.groups).toEqual(['eng', 'sre']);
    }
    expect(jwtVerifySpy).toHaveBeenCalledTimes(1);
    expect(jwksRequests).toBe(requests);
    // Past exp (+ leeway) the cached result is gone and the token is re-verified: expired.
    clock += 95_000;
    expect(await v.verify(token)).toEqual({ ok: false, reason: 'expired' });
    expect(jwtVerifySpy).toHaveBeenCalledTimes(2);
  });

  it('does not cache failures', async () => {
    const v = createBearerVerifier(issuers, { now });
    const token = await mint({ aud: 'nope' });
    await v.verify(token);
    await v.verify(token);
    expect(jwtVerifySpy).toHaveBeenCalledTimes(2);
  });

  it('evicts the least recently used entry beyond cacheSize', async () => {
    const v = createBearerVerifier(issuers, { now, cacheSize: 2 });
    const [a, b, c] = await Promise.all([mint({ jti: 'a' }), mint({ jti: 'b' }), mint({ jti: 'c' })]);
    await v.verify(a);
    await v.verify(b);
    await v.verify(a); // hit; b is now the oldest
    await v.verify(c); // evicts b
    expect(jwtVerifySpy).toHaveBeenCalledTimes(3);
    await v.verify(a);
    expect(jwtVerifySpy).toHaveBeenCalledTimes(3);
    await v.verify(b);
    expect(jwtVerifySpy).toHaveBeenCalledTimes(4);
  });
});
