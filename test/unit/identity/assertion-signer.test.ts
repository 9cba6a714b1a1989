import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAssertionSigner, type AssertionAlgorithm, type AssertionSigner } from '../../../src/identity/assertion-signer.js';
import type { Identity } from '../../../src/identity/identity.js';

const anyString = expect.any(String) as unknown;
const ISSUER = 'https://gw.example.com';
const DAY = 86_400_000;
const T0 = Date.parse('2026-11-26T10:00:00Z');

let dir: string;
let keyFile: string;
let clock: number;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-assertion-'));
  keyFile = join(dir, 'data', 'keys', 'assertion-keys.json');
  clock = T0;
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function signer(algorithm: AssertionAlgorithm = 'ES256', extra: { publishAheadMs?: number } = {}): Promise<AssertionSigner> {
  return createAssertionSigner({ keyFile, algorithm, rotateAfterMs: 30 * DAY, issuer: ISSUER, now: () => clock, ...extra });
}

const alice: Identity = {
  user: 'alice',
  email: 'alice@example.com',
  groups: ['eng', 'sre'],
  provider: 'local',
  auth: 'cookie',
  session: 'abcd',
  authTime: T0 - 90_500,
  mfa: undefined,
};

async function verify(jwks: AssertionSigner, token: string, audience = 'grafana'): Promise<JWTPayload> {
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks.jwks()), {
    issuer: ISSUER,
    audience,
    currentDate: new Date(clock),
    typ: 'JWT',
  });
  return payload;
}

describe('createAssertionSigner', () => {
  it('signs a JWT that verifies with its JWKS, for the route, expiring 60 s after issue', async () => {
    const s = await signer();
    const token = await s.sign(alice, 'grafana');
    const payload = await verify(s, token);
    expect(payload).toEqual({
      iss: ISSUER,
      sub: 'alice',
      aud: 'grafana',
      email: 'alice@example.com',
      groups: ['eng', 'sre'],
      amr: ['pwd'],
      auth_time: Math.floor((T0 - 90_500) / 1000),
      iat: T0 / 1000,
      exp: T0 / 1000 + 60,
      jti: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/) as unknown,
    });
    const header = decodeProtectedHeader(token);
    expect(header).toEqual({ alg: 'ES256', kid: s.jwks().keys[0]?.kid, typ: 'JWT' });
    await expect(verify(s, token, 'other-route')).rejects.toThrow(/aud/);
    clock += 61_000;
    await expect(verify(s, token)).rejects.toThrow(/exp/);
  });

  it('hands out the same token for the same identity and route for 30 s, then a new one', async () => {
    const s = await signer();
    const first = await s.sign(alice, 'grafana');
    clock += 29_999;
    expect(await s.sign(alice, 'grafana')).toBe(first);
    // Anything a claim depends on gives another token, with its own jti.
    const others = [
      await s.sign(alice, 'other-route'),
      await s.sign({ ...alice, groups: ['eng'] }, 'grafana'),
      await s.sign({ ...alice, user: 'bob' }, 'grafana'),
      await s.sign({ ...alice, email: undefined }, 'grafana'),
      await s.sign({ ...alice, mfa: { factor: 'webauthn', at: clock } }, 'grafana'),
      await s.sign({ ...alice, authTime: alice.authTime + 1000 }, 'grafana'),
    ];
    const jtis = new Set([first, ...others].map((t) => decodeJwt(t).jti));
    expect(jtis.size).toBe(7);
    clock += 1;
    const renewed = await s.sign(alice, 'grafana');
    expect(renewed).not.toBe(first);
    // Still at least 30 s to live whenever it is handed out.
    expect((await verify(s, renewed)).exp).toBe(Math.floor(clock / 1000) + 60);
    clock -= 5_000; // a clock stepping back never gets a token issued "in the future"
    expect(await s.sign(alice, 'grafana')).not.toBe(renewed);
  });

  it.each([
    ['a local password sign-in', {}, ['pwd']],
    ['an OIDC sign-in', { provider: 'corp' }, ['oidc']],
    ['a WebAuthn step-up', { mfa: { factor: 'webauthn', at: T0 } }, ['pwd', 'mfa', 'hwk']],
    ['a TOTP step-up', { provider: 'corp', mfa: { factor: 'totp', at: T0 } }, ['oidc', 'mfa', 'otp']],
    ['amr the identity already carries', { provider: 'idp', amr: ['pwd', 'mfa'], mfa: { factor: 'totp', at: T0 } }, ['pwd', 'mfa', 'otp']],
  ] as const)('states amr for %s', async (_what, change, amr) => {
    const s = await signer();
    const payload = await verify(s, await s.sign({ ...alice, ...change }, 'grafana'));
    expect(payload.amr).toEqual(amr);
  });

  it('leaves email out when the identity has none', async () => {
    const s = await signer();
    const payload = await verify(s, await s.sign({ ...alice, email: undefined, groups: [] }, 'grafana'));
    expect(payload).not.toHaveProperty('email');
    expect(payload.groups).toEqual([]);
  });

  it('publishes public keys only', async () => {
    const s = await signer();
    const [key, ...rest] = s.jwks().keys;
    expect(rest).toEqual([]);
    expect(key).toEqual({ kty: 'EC', crv: 'P-256', x: anyString, y: anyString, kid: anyString, alg: 'ES256', use: 'sig' });
    expect(key).not.toHaveProperty('d');
  });

  it('creates the key file with its directories, mode 0600, holding private JWKs named by thumbprint', async () => {
    const s = await signer();
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const ring = JSON.parse(await readFile(keyFile, 'utf8')) as { version: number; keys: { createdAt: string; jwk: Record<string, string> }[] };
    expect(ring.version).toBe(1);
    expect(ring.keys).toHaveLength(1);
    const entry = ring.keys[0];
    expect(entry?.createdAt).toBe(new Date(T0).toISOString());
    expect(entry?.jwk.d).toEqual(anyString);
    const { kty = '', crv = '', x = '', y = '' } = entry?.jwk ?? {};
    expect(entry?.jwk.kid).toBe(await calculateJwkThumbprint({ kty, crv, x, y }));
    expect(s.jwks().keys[0]?.kid).toBe(entry?.jwk.kid);
  });

  it('reuses the key file on the next start', async () => {
    const first = await signer();
    const token = await first.sign(alice, 'grafana');
    clock += DAY;
    const second = await signer();
    expect(second.jwks()).toEqual(first.jwks());
    await verify(second, await second.sign(alice, 'grafana'));
    clock = T0;
    await verify(second, token);
  });

  it('rotates at start when the newest key is older than rotate_after, keeping the old key published', async () => {
    const first = await signer('ES256', { publishAheadMs: 0 });
    const oldKid = first.jwks().keys[0]?.kid;
    const before = await first.sign(alice, 'grafana');
    clock += 30 * DAY;
    const second = await signer('ES256', { publishAheadMs: 0 });
    const kids = second.jwks().keys.map((k) => k.kid);
    expect(kids).toHaveLength(2);
    expect(kids[0]).toBe(oldKid);
    const after = await second.sign(alice, 'grafana');
    expect(decodeProtectedHeader(after).kid).toBe(kids[1]);
    await verify(second, after);
    clock -= 30 * DAY;
    await verify(second, before);
  });

  it('publishes a rotated key before signing with it, and still verifies tokens signed before rotation', async () => {
    const s = await signer('ES256', { publishAheadMs: 600_000 });
    const oldKid = s.jwks().keys[0]?.kid;
    const before = await s.sign(alice, 'grafana');
    await s.rotate();
    const kids = s.jwks().keys.map((k) => k.kid);
    expect(kids).toHaveLength(2);
    expect(kids).toContain(oldKid);
    await verify(s, before);
    expect(decodeProtectedHeader(await s.sign(alice, 'grafana')).kid).toBe(oldKid);
    clock += 600_000;
    await s.refresh();
    const after = await s.sign(alice, 'grafana');
    expect(decodeProtectedHeader(after).kid).toBe(kids[1]);
    await verify(s, after);
  });

  it('removes a key one hour after it stopped signing', async () => {
    const s = await signer('ES256', { publishAheadMs: 0 });
    const oldKid = s.jwks().keys[0]?.kid;
    await s.rotate();
    clock += 3_599_000;
    await s.refresh();
    expect(s.jwks().keys.map((k) => k.kid)).toContain(oldKid);
    clock += 2000;
    await s.refresh();
    expect(s.jwks().keys.map((k) => k.kid)).not.toContain(oldKid);
    const ring = JSON.parse(await readFile(keyFile, 'utf8')) as { keys: unknown[] };
    expect(ring.keys).toHaveLength(1);
  });

  it('lets replicas sharing the key file verify each other after one rotates', async () => {
    const a = await signer();
    const b = await signer();
    expect(b.jwks()).toEqual(a.jwks());
    await verify(b, await a.sign(alice, 'grafana'));
    await a.rotate();
    await b.refresh();
    expect(b.jwks()).toEqual(a.jwks());
    clock += 600_000;
    await a.refresh();
    await b.refresh();
    const fromA = await a.sign(alice, 'grafana');
    const fromB = await b.sign(alice, 'grafana');
    expect(decodeProtectedHeader(fromA).kid).toBe(decodeProtectedHeader(fromB).kid);
    await verify(b, fromA);
    await verify(a, fromB);
  });

  it('signs EdDSA tokens with an Ed25519 key', async () => {
    const s = await signer('EdDSA');
    expect(s.jwks().keys).toEqual([{ kty: 'OKP', crv: 'Ed25519', x: anyString, kid: anyString, alg: 'EdDSA', use: 'sig' }]);
    const token = await s.sign(alice, 'grafana');
    expect(decodeProtectedHeader(token).alg).toBe('EdDSA');
    expect((await verify(s, token)).sub).toBe('alice');
  });

  it('adds a key of the configured algorithm when the ring has only another one', async () => {
    await signer('ES256');
    const s = await signer('EdDSA');
    expect(s.jwks().keys.map((k) => k.alg)).toEqual(['ES256', 'EdDSA']);
    expect(decodeProtectedHeader(await s.sign(alice, 'grafana')).alg).toBe('EdDSA');
  });

  it('refuses a corrupt key file and leaves it untouched', async () => {
    await signer();
    await writeFile(keyFile, '{"version":1,"keys":[{"createdAt":"x"}]}');
    await expect(signer()).rejects.toThrow(/is invalid/);
    expect(await readFile(keyFile, 'utf8')).toBe('{"version":1,"keys":[{"createdAt":"x"}]}');
  });

  it('refuses a key whose kid is not its thumbprint', async () => {
    await signer();
    const ring = JSON.parse(await readFile(keyFile, 'utf8')) as { keys: { jwk: { kid: string } }[] };
    const [entry] = ring.keys;
    if (entry !== undefined) entry.jwk.kid = 'chosen-by-hand';
    await writeFile(keyFile, JSON.stringify(ring));
    await expect(signer()).rejects.toThrow(/thumbprint/);
  });
});
