/**
 * Bearer tokens: `alg` confusion (none, HS256 keyed with the public key), `kid`/`jku`/`jwk`/`x5u` tricks,
 * expired, not-yet-valid, wrong-audience and wrong-issuer tokens, tokens in query strings (never
 * accepted, never recorded or logged). Route `app` wants group eng; `admin` wants sre.
 */
import { sign } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, rawCase, scenario, signIn, startSecurityEnv, type SecurityEnv } from './harness.js';

let env: SecurityEnv;
const logLines: string[] = [];
/** An attacker's JWKS server: it must never be asked for anything. */
let attacker: http.Server;
let attackerUrl = '';
let attackerHits = 0;
let attackerKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let attackerJwk: JWK;

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
  env = await startSecurityEnv('tokens', { logger });
  const pair = await generateKeyPair('ES256', { extractable: true });
  attackerKey = pair.privateKey;
  attackerJwk = { ...(await exportJWK(pair.publicKey)), kid: env.issuer.kid, alg: 'ES256', use: 'sig' };
  attacker = http.createServer((_req, res) => {
    attackerHits += 1;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [attackerJwk] }));
  });
  await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
  attackerUrl = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await env.stop();
  await new Promise<void>((r) => attacker.close(() => r()));
  expect(attackerHits, 'the attacker’s key server was never asked').toBe(0);
});

/** Claims a valid token for alice (group eng) carries. */
function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { iss: env.issuer.issuer, aud: 'portcullis', sub: 'alice', groups: ['eng'], iat: now(), exp: now() + 300, ...extra };
}

async function expectRefused(token: string, path = '/app/t'): Promise<void> {
  await rawCase(env, {
    name: 'refused token',
    send: `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\nAuthorization: Bearer ${token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
    expect: 401,
    check: (x) => expect(x.responses[0]?.header('www-authenticate')).toBe('Bearer realm="portcullis"'),
  });
}

async function expectAccepted(token: string, scheme = 'Bearer'): Promise<void> {
  await rawCase(env, {
    name: 'accepted token',
    send: `GET /app/t HTTP/1.1\r\nHost: ${HOST}\r\nAuthorization: ${scheme} ${token}\r\nConnection: close\r\n\r\n`,
    expect: 200,
    upstream: ['/app/t'],
    check: (_x, seen) => {
      expect(seen.upstream[0]?.headers.authorization, 'the bearer token is consumed, not forwarded').toBeUndefined();
      expect(seen.records[0]?.identity).toMatchObject({ user: 'alice', auth: 'bearer' });
    },
  });
}

describe('the control cases', () => {
  it('a valid token passes', async () => {
    await expectAccepted(await env.issuer.sign(claims()));
  });

  it('the scheme is case-insensitive (RFC 9110 §11.1)', async () => {
    await expectAccepted(await env.issuer.sign(claims()), 'bEaReR');
  });

  it('expired within the 30 s clock leeway still passes', async () => {
    await expectAccepted(await env.issuer.sign(claims({ exp: now() - 10 })));
  });

  it('an audience list containing ours passes', async () => {
    await expectAccepted(await env.issuer.sign(claims({ aud: ['other-api', 'portcullis'] })));
  });

  it('a valid token of a user outside the route’s group is denied, not unauthenticated', async () => {
    await rawCase(env, { name: 'wrong group', send: `GET /admin/t HTTP/1.1\r\nHost: ${HOST}\r\nAuthorization: Bearer ${await env.issuer.sign(claims())}\r\nConnection: close\r\n\r\n`, expect: 403 });
  });
});

describe('alg confusion', () => {
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    it(`alg: ${alg} with no signature`, async () => {
      await expectRefused(`${b64({ alg, typ: 'JWT', kid: env.issuer.kid })}.${b64(claims())}.`);
    });
  }

  it('alg: none with a signature copied from a valid token', async () => {
    const valid = await env.issuer.sign(claims());
    await expectRefused(`${b64({ alg: 'none', kid: env.issuer.kid })}.${b64(claims())}.${valid.split('.')[2] ?? ''}`);
  });

  // CVE-2015-9235 (node-jsonwebtoken) and kin: HMAC keyed with the issuer's public key.
  it('HS256 keyed with the issuer’s public JWK', async () => {
    const secret = new TextEncoder().encode(JSON.stringify(env.issuer.publicJwk));
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: env.issuer.kid }).sign(secret));
  });

  it('HS256 keyed with the issuer’s public key as PEM', async () => {
    const pem = await exportSPKI((await importJWK(env.issuer.publicJwk, 'ES256')) as Parameters<typeof exportSPKI>[0]);
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: env.issuer.kid }).sign(new TextEncoder().encode(pem)));
  });

  it('HS512 with an empty-ish key', async () => {
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: 'HS512', kid: env.issuer.kid }).sign(new Uint8Array(64)));
  });

  it('the header says ES384 over an ES256 signature', async () => {
    const valid = await env.issuer.sign(claims());
    const [, payload, sig] = valid.split('.');
    await expectRefused(`${b64({ alg: 'ES384', kid: env.issuer.kid, typ: 'JWT' })}.${payload ?? ''}.${sig ?? ''}`);
  });

  it('a valid header and payload with the signature stripped', async () => {
    const valid = await env.issuer.sign(claims());
    await expectRefused(`${valid.split('.').slice(0, 2).join('.')}.`);
  });

  it('a payload changed after signing (groups: sre)', async () => {
    const valid = await env.issuer.sign(claims());
    const [header, , sig] = valid.split('.');
    await expectRefused(`${header ?? ''}.${b64(claims({ groups: ['sre'] }))}.${sig ?? ''}`, '/admin/t');
  });
});

describe('key selection tricks', () => {
  it('kid of an unknown key', async () => {
    await expectRefused(await env.issuer.sign(claims(), { kid: 'no-such-key' }));
  });

  it('kid with a path traversal', async () => {
    await expectRefused(await env.issuer.sign(claims(), { kid: '../../../../../../dev/null' }));
  });

  it('kid with SQL', async () => {
    await expectRefused(await env.issuer.sign(claims(), { kid: "x' UNION SELECT 'secret' --" }));
  });

  it('the right kid, signed by the attacker’s key', async () => {
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: env.issuer.kid }).sign(attackerKey));
  });

  it('jwk: the attacker’s own key embedded in the header', async () => {
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', jwk: attackerJwk }).sign(attackerKey));
  });

  it('jku: a key set URL pointing at the attacker', async () => {
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: env.issuer.kid, jku: `${attackerUrl}/jwks` }).sign(attackerKey));
  });

  it('x5u: a certificate URL pointing at the attacker', async () => {
    await expectRefused(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: env.issuer.kid, x5u: `${attackerUrl}/cert.pem` }).sign(attackerKey));
  });

  it('an unknown critical header extension (RFC 7515 §4.1.11: must be refused)', async () => {
    const input = `${b64({ alg: 'ES256', kid: env.issuer.kid, crit: ['exp-policy'], 'exp-policy': 'none' })}.${b64(claims())}`;
    const sig = sign('sha256', Buffer.from(input), { key: env.issuer.privateKey, dsaEncoding: 'ieee-p1363' });
    await expectRefused(`${input}.${sig.toString('base64url')}`);
  });
});

describe('claims', () => {
  const refused: readonly [string, Record<string, unknown>][] = [
    ['expired beyond the leeway', { exp: now() - 120 }],
    ['not yet valid (nbf in the future)', { nbf: now() + 600 }],
    ['the wrong audience', { aud: 'someone-else' }],
    ['an audience list without ours', { aud: ['a', 'b'] }],
    ['no audience', { aud: undefined }],
    ['another issuer', { iss: 'https://evil.example' }],
    ['our issuer with a trailing slash', { iss: 'ISSUER/' }],
    ['no exp', { exp: undefined }],
    ['no sub', { sub: undefined }],
    ['exp as a string', { exp: String(now() + 300) }],
  ];
  for (const [name, extra] of refused) {
    it(`refuses a token with ${name}`, async () => {
      const all = claims(extra);
      if (all.iss === 'ISSUER/') all.iss = `${env.issuer.issuer}/`;
      await expectRefused(await env.issuer.sign(Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined))));
    });
  }

  it('a token larger than the request head limit is refused before anyone parses it', async () => {
    await rawCase(env, { name: 'huge token', send: `GET /app/t HTTP/1.1\r\nHost: ${HOST}\r\nAuthorization: Bearer ${await env.issuer.sign(claims({ pad: 'x'.repeat(17_000) }))}\r\nConnection: close\r\n\r\n`, expect: 431 });
  });

  it('a 12 KiB token that is otherwise valid passes (the head limit, not a token cap, bounds it)', async () => {
    await expectAccepted(await env.issuer.sign(claims({ pad: 'x'.repeat(12_000) })));
  });

  it('refuses two tokens in one header', async () => {
    const t = await env.issuer.sign(claims());
    await expectRefused(`${t}, Bearer ${t}`);
  });

  it('refuses a token with no cookie fallback even when a valid session cookie is sent', async () => {
    const cookie = await signIn(env, 'alice');
    await rawCase(env, {
      name: 'expired token + cookie',
      send: `GET /app/t HTTP/1.1\r\nHost: ${HOST}\r\nCookie: ${cookie}\r\nAuthorization: Bearer ${await env.issuer.sign(claims({ exp: now() - 600 }))}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
      expect: 401,
    });
  });
});

describe('tokens in query strings are never accepted, recorded or logged', () => {
  const PARAMS = ['access_token', 'token', 'id_token', 'jwt', 'auth', 'Authorization', 'api_key'];
  for (const param of PARAMS) {
    it(`?${param}=<token>`, async () => {
      const token = await env.issuer.sign(claims());
      const seen = await rawCase(env, {
        name: param,
        send: `GET /app/q?${param}=${encodeURIComponent(param === 'Authorization' ? `Bearer ${token}` : token)}&page=2 HTTP/1.1\r\nHost: ${HOST}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`,
        expect: 401,
      });
      expect(seen.raw.toString('latin1')).not.toContain(token);
      expect(env.lines.join('\n')).not.toContain(token.split('.')[2] ?? token);
      expect(logLines.join('')).not.toContain(token.split('.')[2] ?? token);
    });
  }

  it('the audit record keeps the rest of the query and says what was redacted', async () => {
    const token = await env.issuer.sign(claims());
    await rawCase(env, {
      name: 'redacted query',
      send: `GET /public/q?jwt=${token}&page=2 HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`,
      expect: 200,
      upstream: [`/public/q?jwt=${token}&page=2`],
      check: (_x, seen) => expect(seen.records[0]?.request?.query).toBe('jwt=REDACTED&page=2'),
    });
  });

  it('a token in a cookie of its own is not a credential', async () => {
    const token = await env.issuer.sign(claims());
    await rawCase(env, { name: 'token cookie', send: `GET /app/c HTTP/1.1\r\nHost: ${HOST}\r\nCookie: access_token=${token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`, expect: 401 });
  });

  it('the step-up challenge names a bearer token by its hash, never the token', async () => {
    const token = await env.issuer.sign(claims());
    await scenario(env, async (call) => {
      const res = await call({ path: '/stepup/x', headers: ['Authorization', `Bearer ${token}`, 'Accept', 'application/json'] });
      expect(res.status).toBe(401);
      expect(res.header('www-authenticate')).toContain('insufficient_user_authentication');
      expect(res.text).not.toContain(token);
      expect(res.text).not.toContain(token.split('.')[2] ?? token);
    });
    expect(logLines.join('')).not.toContain(token.split('.')[2] ?? token);
  });
});
