/**
 * CLI tokens' pure parts and the token service on the memory store: DPoP proof checks (RFC 9449),
 * loopback redirect_uri validation (RFC 8252), user codes (RFC 8628), authorize parameters, and
 * issue / lookup / refresh / revoke / list.
 */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import {
  canonicalUserCode,
  checkDpopProof,
  createCliTokens,
  newUserCode,
  tokenReference,
  validLoopbackRedirect,
  verifyDpop,
  type CliGrantSubject,
} from '../../src/identity/cli-tokens.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/index.js';
import { parseAuthorizeParams } from '../../src/web/cli-endpoints.js';

const NOW = 1_800_000_000_000;
const URL_ = 'https://gw.example/api/x';

interface Key {
  privateKey: CryptoKey;
  jwk: JWK;
  jkt: string;
  alg: 'ES256' | 'EdDSA';
}

async function key(alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256'), alg };
}

async function proof(k: Key, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ htm: 'GET', htu: URL_, iat: Math.floor(NOW / 1000), jti: randomBytes(8).toString('hex'), ...claims })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: k.alg, jwk: k.jwk, ...header })
    .sign(k.privateKey);
}

const expectation = { method: 'GET', url: URL_, now: NOW };

describe('DPoP proofs', () => {
  it('accepts ES256 and EdDSA proofs and returns the RFC 7638 thumbprint', async () => {
    for (const alg of ['ES256', 'EdDSA'] as const) {
      const k = await key(alg);
      const r = await checkDpopProof(await proof(k), expectation);
      expect(r).toMatchObject({ ok: true, jkt: k.jkt });
    }
  });

  it('compares htu without query and with default-port and host-case normalization', async () => {
    const k = await key();
    expect((await checkDpopProof(await proof(k, { htu: 'https://GW.example:443/api/x?q=1' }), expectation)).ok).toBe(true);
    expect(await checkDpopProof(await proof(k, { htu: 'https://gw.example/api/y' }), expectation)).toEqual({ ok: false, reason: 'bad-url' });
    expect(await checkDpopProof(await proof(k, { htu: 'http://gw.example/api/x' }), expectation)).toEqual({ ok: false, reason: 'bad-url' });
    expect(await checkDpopProof(await proof(k, { htu: 42 }), expectation)).toEqual({ ok: false, reason: 'bad-url' });
  });

  it('refuses wrong method, stale or future iat, missing jti, wrong ath, wrong key', async () => {
    const k = await key();
    expect(await checkDpopProof(await proof(k, { htm: 'POST' }), expectation)).toEqual({ ok: false, reason: 'bad-method' });
    expect(await checkDpopProof(await proof(k, { iat: Math.floor(NOW / 1000) - 61 }), expectation)).toEqual({ ok: false, reason: 'stale' });
    expect(await checkDpopProof(await proof(k, { iat: Math.floor(NOW / 1000) + 61 }), expectation)).toEqual({ ok: false, reason: 'stale' });
    expect((await checkDpopProof(await proof(k, { iat: Math.floor(NOW / 1000) - 59 }), expectation)).ok).toBe(true);
    expect(await checkDpopProof(await proof(k, { jti: undefined }), expectation)).toEqual({ ok: false, reason: 'bad-jti' });
    const token = `pct_${randomBytes(32).toString('base64url')}`;
    const ath = createHash('sha256').update(token).digest('base64url');
    expect((await checkDpopProof(await proof(k, { ath }), { ...expectation, accessToken: token })).ok).toBe(true);
    expect(await checkDpopProof(await proof(k), { ...expectation, accessToken: token })).toEqual({ ok: false, reason: 'bad-ath' });
    expect(await checkDpopProof(await proof(k, { ath: ath.replace(/^./, ath.startsWith('A') ? 'B' : 'A') }), { ...expectation, accessToken: token })).toEqual({ ok: false, reason: 'bad-ath' });
    const other = await key();
    expect(await checkDpopProof(await proof(k), { ...expectation, jkt: other.jkt })).toEqual({ ok: false, reason: 'key-mismatch' });
  });

  it('refuses wrong typ, symmetric or none algorithms, private or foreign keys, and bad signatures', async () => {
    const k = await key();
    expect(await checkDpopProof(await proof(k, {}, { typ: 'JWT' }), expectation)).toEqual({ ok: false, reason: 'bad-type' });
    const hs = await new SignJWT({ htm: 'GET', htu: URL_, iat: NOW / 1000, jti: 'x' }).setProtectedHeader({ typ: 'dpop+jwt', alg: 'HS256', jwk: k.jwk }).sign(new Uint8Array(32));
    expect(await checkDpopProof(hs, expectation)).toEqual({ ok: false, reason: 'bad-algorithm' });
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ typ: 'dpop+jwt', alg: 'none', jwk: k.jwk })}.${b64({ htm: 'GET', htu: URL_, iat: NOW / 1000, jti: 'x' })}.`;
    expect((await checkDpopProof(none, expectation)).ok).toBe(false);
    const priv = { ...k.jwk, d: randomBytes(32).toString('base64url') };
    expect(await checkDpopProof(await proof(k, {}, { jwk: priv }), expectation)).toEqual({ ok: false, reason: 'bad-key' });
    expect(await checkDpopProof(await proof(k, {}, { jwk: undefined }), expectation)).toEqual({ ok: false, reason: 'bad-key' });
    // A point that is not on P-256.
    const offCurve = { ...k.jwk, y: Buffer.from(Buffer.from(k.jwk.y ?? '', 'base64url').map((v, i) => (i === 31 ? v ^ 1 : v))).toString('base64url') };
    expect(await checkDpopProof(await proof(k, {}, { jwk: offCurve }), expectation)).toEqual({ ok: false, reason: 'bad-key' });
    // `crit` (which jose would refuse to sign): signed by hand with WebCrypto.
    const b64j = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${b64j({ typ: 'dpop+jwt', alg: 'ES256', jwk: k.jwk, crit: ['x-ext'], 'x-ext': 1 })}.${b64j({ htm: 'GET', htu: URL_, iat: NOW / 1000, jti: 'c' })}`;
    const sig = Buffer.from(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, k.privateKey, Buffer.from(input))).toString('base64url');
    expect(await checkDpopProof(`${input}.${sig}`, expectation)).toEqual({ ok: false, reason: 'malformed' });
    expect(await checkDpopProof(await proof(k, { exp: NOW / 1000 - 1 }), expectation)).toEqual({ ok: false, reason: 'stale' });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    expect(await checkDpopProof(await proof(k, {}, { jwk: rsa }), expectation)).toEqual({ ok: false, reason: 'bad-key' });
    // Claims a key that did not sign it.
    const other = await key();
    expect(await checkDpopProof(await proof(k, {}, { jwk: other.jwk }), expectation)).toEqual({ ok: false, reason: 'bad-signature' });
    const good = await proof(k);
    const [h, p, s] = good.split('.');
    const tampered = `${h ?? ''}.${Buffer.from(JSON.stringify({ htm: 'GET', htu: URL_, iat: NOW / 1000, jti: 'forged' })).toString('base64url')}.${s ?? ''}`;
    expect(p).not.toBeUndefined();
    expect(await checkDpopProof(tampered, expectation)).toEqual({ ok: false, reason: 'bad-signature' });
    expect(await checkDpopProof('a.b', expectation)).toEqual({ ok: false, reason: 'malformed' });
    expect(await checkDpopProof(`${good}${'A'.repeat(5000)}`, expectation)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('remembers each jti for its key: a replay is refused', async () => {
    const store = createMemoryStore({ now: () => NOW });
    const cli = createCliTokens({ store, now: () => NOW, refreshTtlMs: () => 3_600_000 });
    const k = await key();
    const p = await proof(k);
    expect(await verifyDpop(cli, p, expectation)).toEqual({ ok: true, jkt: k.jkt });
    expect(await verifyDpop(cli, p, expectation)).toEqual({ ok: false, reason: 'replayed' });
    // An invalid proof does not spend its jti.
    const p2 = await proof(k, { jti: 'same' });
    expect((await verifyDpop(cli, p2, { ...expectation, method: 'POST' })).ok).toBe(false);
    expect((await verifyDpop(cli, p2, expectation)).ok).toBe(true);
    await store.close();
  });
});

describe('loopback redirect_uri (RFC 8252 §7.3, §8.3)', () => {
  it.each([
    ['http://127.0.0.1:53682/callback', 'http://127.0.0.1:53682/callback'],
    ['http://[::1]:8000/cb', 'http://[::1]:8000/cb'],
    ['http://127.0.0.1:1/', 'http://127.0.0.1:1/'],
    ['http://127.0.0.1:65535', 'http://127.0.0.1:65535/'],
  ])('accepts %s', (raw, want) => {
    expect(validLoopbackRedirect(raw)).toBe(want);
  });

  it.each([
    'http://localhost:8000/cb',
    'https://127.0.0.1:8000/cb',
    'http://127.0.0.2:8000/cb',
    'http://127.0.0.1/cb',
    'http://127.0.0.1:0/cb',
    'http://127.0.0.1:65536/cb',
    'http://127.0.0.1:080/cb',
    'http://127.0.0.1:8000/cb?x=1',
    'http://127.0.0.1:8000/cb#frag',
    'http://user@127.0.0.1:8000/cb',
    'http://127.0.0.1.evil.example:8000/cb',
    'http://127.0.0.1:8000@evil.example/cb',
    'http://127.0.0.1:8000\\@evil.example/cb',
    'http://127.0.0.1:8000/../x',
    'http://127.0.0.1:8000/a/%2e%2e/x',
    'http://127.0.0.1:8000/cb\r\nSet-Cookie: x=1',
    'http://[::ffff:127.0.0.1]:8000/cb',
    'http://0x7f.0.0.1:8000/cb',
    'http://2130706433:8000/cb',
    '//127.0.0.1:8000/cb',
    'javascript:alert(1)',
    '',
    `http://127.0.0.1:8000/${'a'.repeat(600)}`,
  ])('refuses %s', (raw) => {
    expect(validLoopbackRedirect(raw)).toBeUndefined();
  });
});

describe('user codes and authorize parameters', () => {
  it('makes XXXX-XXXX codes from consonants and reads them back as typed', () => {
    for (let i = 0; i < 50; i++) {
      const c = newUserCode();
      expect(c).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
      expect(canonicalUserCode(c.toLowerCase().replace('-', ' '))).toBe(c);
    }
    expect(canonicalUserCode('ABCD-EFGH')).toBeUndefined();
    expect(canonicalUserCode('BCDF-GHJ')).toBeUndefined();
    expect(canonicalUserCode('BCDF-GHJK\nX')).toBeUndefined();
  });

  const base = { response_type: 'code', redirect_uri: 'http://127.0.0.1:5000/cb', state: 'abc', code_challenge: 'A'.repeat(43), code_challenge_method: 'S256' };
  it('accepts a complete request', () => {
    expect(parseAuthorizeParams(new URLSearchParams({ ...base, name: 'my laptop', jkt: 'B'.repeat(43) }))).toEqual({
      ok: true,
      params: { redirectUri: base.redirect_uri, state: 'abc', codeChallenge: 'A'.repeat(43), jkt: 'B'.repeat(43), name: 'my laptop' },
    });
  });
  it.each([
    ['no PKCE', { code_challenge_method: 'plain' }],
    ['short challenge', { code_challenge: 'A'.repeat(42) }],
    ['token response', { response_type: 'token' }],
    ['no state', { state: '' }],
    ['state with CRLF', { state: 'a\r\nLocation: http://evil' }],
    ['state with space', { state: 'a b' }],
    ['long state', { state: 'a'.repeat(513) }],
    ['bad jkt', { jkt: 'xyz' }],
    ['control character in name', { name: 'a\u0000b' }],
    ['long name', { name: 'n'.repeat(65) }],
    ['non-loopback redirect', { redirect_uri: 'http://evil.example/cb' }],
  ])('refuses %s', (_label, patch) => {
    expect(parseAuthorizeParams(new URLSearchParams({ ...base, ...patch })).ok).toBe(false);
  });
  it('refuses a repeated parameter', () => {
    const p = new URLSearchParams(base);
    p.append('redirect_uri', 'http://127.0.0.1:6000/cb');
    expect(parseAuthorizeParams(p).ok).toBe(false);
  });
});

describe('the token service', () => {
  let store: MemoryStore | undefined;
  afterEach(async () => {
    await store?.close();
  });
  const subject: CliGrantSubject = { user: 'ann', email: undefined, groups: ['eng'], provider: 'local', amr: ['pwd'], authTime: NOW, mfa: undefined, sessionHandle: 'session:x', session: '0123456789abcdef' };

  it('stores only hashes, and lookup, refresh, revoke and list behave', async () => {
    let now = NOW;
    store = createMemoryStore({ now: () => now });
    const cli = createCliTokens({ store, now: () => now, refreshTtlMs: () => 12 * 3_600_000 });
    const pair = await cli.issue(subject, { name: 'box', jkt: undefined, ttlMs: 3_600_000 });
    expect(pair.ref).toBe(tokenReference(pair.accessToken));
    expect(await store.get(`clitoken:${pair.accessToken}`)).toBeUndefined();
    const raw = await store.get(`clitoken:${pair.ref}`);
    expect(raw).toBeDefined();
    expect(raw).not.toContain(pair.accessToken);
    expect(raw).not.toContain(pair.refreshToken);
    expect((await cli.lookup(pair.ref))?.user).toBe('ann');

    // Expired: lookup refuses, but the pair stays listed (its refresh still works) until revoked.
    now += 3_600_000;
    expect(await cli.lookup(pair.ref)).toBeUndefined();
    expect((await cli.list('ann')).map((x) => x.ref)).toEqual([pair.ref]);
    const taken = await cli.takeRefresh(pair.refreshToken);
    expect(taken?.ref).toBe(pair.ref);
    expect(await cli.takeRefresh(pair.refreshToken)).toBeUndefined();
    expect(await cli.list('ann')).toEqual([]);

    const p2 = await cli.issue(subject, { name: 'box', jkt: 'J'.repeat(43), ttlMs: 24 * 3_600_000 });
    expect(p2.record.expiresAt - now).toBe(12 * 3_600_000);
    expect(await cli.revokeRefOf('bob', p2.ref)).toBeUndefined();
    expect(await cli.revokeToken(p2.refreshToken)).toMatchObject({ ref: p2.ref });
    expect(await cli.lookup(p2.ref)).toBeUndefined();
    expect(await cli.revokeToken('pct_unknown')).toBeUndefined();
  });
});
