/**
 * OIDC sign-in end to end over real sockets: a real OpenID Provider (oidc-provider), a real gateway
 * and a recording upstream, driven by a browser-less client that follows every redirect by hand and
 * keeps cookies per host. Also the cross-host session hand-off and IdP-issued bearer tokens.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../../src/identity/local-users.js';
import { Browser, hiddenField, locationOf } from '../support/cookie-jar.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { startOidcProvider, type TestOidcProvider, type TestUser } from '../support/oidc-provider.js';
import { freePorts } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

const SESSION = 'portcullis_session';
const BINDING = 'portcullis_oidc';
const BEARER_AUDIENCE = 'portcullis-api';

let idp: TestOidcProvider;
let upstream: RecordingUpstream;
let gw: TestGateway;
let dir: string;
let port: number;
/** A second gateway, plain HTTP behind a (simulated) TLS-terminating proxy: public URL https://localhost:<tlsPort>. */
let tlsGw: TestGateway;
let tlsPort: number;
/** `http://localhost:<port>`: the gateway's public URL. */
let base: string;
/** `http://app.localhost:<port>`: another host the gateway serves. */
let appBase: string;

/** A small JWKS endpoint on loopback for the bearer issuer, and the key that signs its tokens. */
let jwksServer: http.Server;
let bearerIssuer: string;
let bearerKey: CryptoKey;
let bearerKid: string;

beforeAll(async () => {
  [port = 0, tlsPort = 0] = await freePorts(2);
  base = `http://localhost:${port}`;
  appBase = `http://app.localhost:${port}`;
  dir = await mkdtemp(join(tmpdir(), 'portcullis-oidc-test-'));
  const usersFile = join(dir, 'users.yaml');
  await addUser(usersFile, { name: 'dave', email: 'dave@example.com', groups: ['eng'], password: 'dave password 1' });

  idp = await startOidcProvider({ redirectUris: [`${base}/.portcullis/callback`, `https://localhost:${tlsPort}/.portcullis/callback`] });
  upstream = await startRecordingUpstream();

  const { privateKey, publicKey } = await generateKeyPair('ES256');
  bearerKey = privateKey;
  bearerKid = `k-${randomBytes(4).toString('hex')}`;
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid: bearerKid, alg: 'ES256', use: 'sig' };
  jwksServer = http.createServer((req, res) => {
    if (req.url === '/jwks') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [publicJwk] }));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  bearerIssuer = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;

  gw = await startGateway(
    {
      server: { public_url: base },
      identity: {
        providers: [
          { id: 'local', type: 'local', users_file: usersFile },
          {
            id: 'corp',
            type: 'oidc',
            issuer: idp.issuer,
            client_id: idp.clientId,
            client_secret: idp.clientSecret,
            scopes: ['openid', 'email', 'profile', 'groups'],
          },
        ],
        bearer: [{ issuer: bearerIssuer, audience: BEARER_AUDIENCE, jwks_uri: `${bearerIssuer}/jwks` }],
      },
      routes: [
        { id: 'eng-local', host: 'localhost', path: '/private', upstream: upstream.url, allow: { groups: ['eng'] } },
        { id: 'eng-app', host: 'app.localhost', path: '/', upstream: upstream.url, allow: { groups: ['eng'] } },
        { id: 'eng-docs', host: 'docs.localhost', path: '/docs', upstream: upstream.url, allow: { groups: ['eng'] } },
      ],
    },
    { listen: `127.0.0.1:${port}`, allowInsecureOidc: true },
  );
  tlsGw = await startGateway(
    {
      server: { public_url: `https://localhost:${tlsPort}` },
      identity: {
        providers: [{ id: 'corp', type: 'oidc', issuer: idp.issuer, client_id: idp.clientId, client_secret: idp.clientSecret, scopes: ['openid', 'email', 'groups'] }],
      },
      routes: [{ id: 'eng-app', host: 'app.localhost', path: '/', upstream: upstream.url, allow: { groups: ['eng'] } }],
    },
    { listen: `127.0.0.1:${tlsPort}`, allowInsecureOidc: true },
  );
});

afterAll(async () => {
  await Promise.all([gw.stop(), tlsGw.stop()]);
  await Promise.all([
    idp.stop(),
    upstream.close(),
    new Promise<void>((resolve) => {
      jwksServer.close(() => resolve());
      jwksServer.closeAllConnections();
    }),
  ]);
  await rm(dir, { recursive: true, force: true });
  await Promise.all([gw.dir, tlsGw.dir].map((d) => rm(d, { recursive: true, force: true })));
});

/** Starts an OIDC sign-in at the public host; returns the provider's authorization URL. */
async function beginAtPublicHost(b: Browser, rd: string): Promise<URL> {
  const res = await b.get(`${base}/.portcullis/login/oidc/corp?rd=${encodeURIComponent(rd)}`);
  expect(res.status).toBe(302);
  const auth = locationOf(res, base);
  expect(auth.origin).toBe(idp.issuer);
  expect(b.jar.get('localhost', BINDING)).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  return auth;
}

/** Signs `user` in at the public host; returns the gateway's answer to the callback. */
async function signIn(b: Browser, user: TestUser, rd = '/private/x') {
  const callback = await idp.loginViaProvider((await beginAtPublicHost(b, rd)).href, user);
  return b.get(callback);
}

function upstreamHeader(name: string): string[] {
  return upstream.header(name);
}

function bearerToken(claims: JWTPayload, opts: { audience?: string; expiresAt?: number; key?: CryptoKey } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ email: 'carol@example.com', groups: ['eng'], ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: bearerKid, typ: 'JWT' })
    .setIssuer(bearerIssuer)
    .setSubject('carol')
    .setAudience(opts.audience ?? BEARER_AUDIENCE)
    .setIssuedAt(now - 5)
    .setExpirationTime(opts.expiresAt ?? now + 300)
    .sign(opts.key ?? bearerKey);
}

function api(path: string, headers: string[] = [], host = `localhost:${port}`) {
  return send(port, { path, headers: ['Host', host, 'Accept', 'application/json', ...headers] });
}

describe('OIDC sign-in through the gateway', () => {
  it('signs alice in end to end and proxies her identity with a verifiable assertion', async () => {
    const b = new Browser();
    const start = await b.get(`${base}/private`);
    expect(start.status).toBe(302);
    expect(start.headers.location).toBe('/.portcullis/login?rd=%2Fprivate');

    const login = await b.get(locationOf(start, base));
    expect(login.status).toBe(200);
    expect(login.text()).toContain('Sign in with corp');
    expect(login.text()).toContain('href="/.portcullis/login/oidc/corp?rd=%2Fprivate"');

    const auth = await beginAtPublicHost(b, '/private/x');
    expect(auth.searchParams.get('redirect_uri')).toBe(`${base}/.portcullis/callback`);
    expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
    const callback = await idp.loginViaProvider(auth.href, 'alice');
    expect(callback.origin).toBe(base);
    expect(callback.pathname).toBe('/.portcullis/callback');

    const done = await b.get(callback);
    expect(done.status).toBe(303);
    expect(done.headers.location).toBe('/private/x');
    expect(b.jar.get('localhost', SESSION)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(b.jar.get('localhost', BINDING)).toBeUndefined();

    const seen = upstream.requests.length;
    const proxied = await b.get(`${base}/private/x`);
    expect(proxied.status).toBe(200);
    expect(upstream.requests.length).toBe(seen + 1);
    expect(upstream.requests.at(-1)?.url).toBe('/private/x');
    expect(upstreamHeader('x-portcullis-user')).toEqual(['alice@example.com']);
    expect(upstreamHeader('x-portcullis-email')).toEqual(['alice@example.com']);
    expect(upstreamHeader('x-portcullis-groups')).toEqual(['eng,sre']);
    expect(upstreamHeader('cookie').join(';')).not.toContain(SESSION);
    const [assertion] = upstreamHeader('x-portcullis-assertion');
    expect(assertion).toEqual(expect.any(String));

    const jwksRes = await b.get(`${base}/.portcullis/jwks.json`, { accept: 'application/json' });
    expect(jwksRes.status).toBe(200);
    const jwks = jwksRes.json() as JSONWebKeySet;
    const { payload } = await jwtVerify(assertion ?? '', createLocalJWKSet(jwks), { issuer: base, audience: 'eng-local' });
    expect(payload.sub).toBe('alice@example.com');
    expect(payload.groups).toEqual(['eng', 'sre']);
    expect(payload.amr).toContain('oidc');
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBeLessThanOrEqual(60);
    expect(payload.exp).toBeGreaterThan(Date.now() / 1000);

    const me = await b.get(`${base}/.portcullis/me`, { accept: 'application/json' });
    expect(me.status).toBe(200);
    expect(me.json()).toMatchObject({
      user: 'alice@example.com',
      email: 'alice@example.com',
      groups: ['eng', 'sre'],
      provider: 'corp',
      auth: 'cookie',
      amr: ['oidc'],
      mfa: null,
    });
  });

  it('refuses a tampered state, a replayed callback and a callback from another browser', async () => {
    // A tampered state: nothing pending under it.
    const b1 = new Browser();
    const cb1 = await idp.loginViaProvider((await beginAtPublicHost(b1, '/private/x')).href, 'alice');
    const tampered = new URL(cb1);
    tampered.searchParams.set('state', `${cb1.searchParams.get('state') ?? ''}x`);
    const r1 = await b1.get(tampered);
    expect(r1.status).toBe(400);
    expect(b1.jar.get('localhost', SESSION)).toBeUndefined();
    expect((await b1.get(`${base}/private/x`)).status).toBe(302);

    // The same callback twice, with the binding cookie put back: the state is single-use.
    const b2 = new Browser();
    const cb2 = await idp.loginViaProvider((await beginAtPublicHost(b2, '/private/x')).href, 'alice');
    const binding = b2.jar.get('localhost', BINDING) ?? '';
    const ok = await b2.get(cb2);
    expect(ok.status).toBe(303);
    b2.jar.delete('localhost', SESSION);
    b2.jar.set('localhost', BINDING, binding);
    const replay = await b2.get(cb2);
    expect(replay.status).toBe(400);
    // Refused by the gateway's own single-use state, before the (also single-use) code reaches the IdP.
    expect(replay.text()).toContain('state-mismatch');
    expect(b2.jar.get('localhost', SESSION)).toBeUndefined();

    // Another browser (no binding cookie) presenting someone's callback URL.
    const victim = new Browser();
    const cb3 = await idp.loginViaProvider((await beginAtPublicHost(victim, '/private/x')).href, 'alice');
    const attacker = new Browser();
    const stolen = await attacker.get(cb3);
    expect(stolen.status).toBe(400);
    expect(attacker.jar.get('localhost', SESSION)).toBeUndefined();
    expect((await attacker.get(`${base}/private/x`)).status).toBe(302);
  });

  it('signs bob in but denies him the eng route (JSON for API clients, a page naming the route for browsers)', async () => {
    const b = new Browser();
    const done = await signIn(b, 'bob');
    expect(done.status).toBe(303);
    const me = await b.get(`${base}/.portcullis/me`, { accept: 'application/json' });
    expect(me.json()).toMatchObject({ user: 'bob@example.com', groups: ['ops'] });

    const seen = upstream.requests.length;
    const asApi = await b.get(`${base}/private/x`, { accept: 'application/json' });
    expect(asApi.status).toBe(403);
    expect(asApi.headers['content-type']).toMatch(/^application\/json/);
    expect(asApi.json()).toMatchObject({ error: 'GW_ERR_POLICY_DENIED', request_id: expect.any(String) as unknown, route: 'eng-local' });

    const asBrowser = await b.get(`${base}/private/x`);
    expect(asBrowser.status).toBe(403);
    expect(asBrowser.headers['content-type']).toMatch(/^text\/html/);
    expect(asBrowser.text()).toContain('eng-local');
    expect(upstream.requests.length).toBe(seen);
  });

  it('hands the session to another served host with a single-use, host-bound code', async () => {
    const b = new Browser();
    const begin = await b.get(`${appBase}/.portcullis/login/oidc/corp?rd=${encodeURIComponent('/app/y?z=1')}`);
    expect(begin.status).toBe(302);
    const toPublic = locationOf(begin, appBase);
    expect(toPublic.origin).toBe(base);
    expect(toPublic.pathname).toBe('/.portcullis/login/oidc/corp');
    expect(toPublic.searchParams.get('rd')).toBe('/app/y?z=1');
    expect(toPublic.searchParams.get('host')).toBe(`app.localhost:${port}`);

    const toIdp = await b.get(toPublic);
    expect(toIdp.status).toBe(302);
    const callback = await idp.loginViaProvider(locationOf(toIdp, toPublic).href, 'alice');
    const done = await b.get(callback);
    expect(done.status).toBe(303);
    const handoff = locationOf(done, base);
    expect(handoff.origin).toBe(appBase);
    expect(handoff.pathname).toBe('/.portcullis/session');
    expect(handoff.searchParams.get('code')).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    expect(handoff.searchParams.get('rd')).toBe('/app/y?z=1');
    expect(b.jar.get('app.localhost', SESSION)).toBeUndefined();

    const landed = await b.get(handoff);
    expect(landed.status).toBe(303);
    expect(landed.headers.location).toBe('/app/y?z=1');
    expect(b.jar.get('app.localhost', SESSION)).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const proxied = await b.get(`${appBase}/app/y?z=1`);
    expect(proxied.status).toBe(200);
    expect(upstream.requests.at(-1)?.url).toBe('/app/y?z=1');
    expect(upstreamHeader('x-portcullis-user')).toEqual(['alice@example.com']);
    const [assertion] = upstreamHeader('x-portcullis-assertion');
    const jwks = (await api('/.portcullis/jwks.json', [], `app.localhost:${port}`)).json() as JSONWebKeySet;
    await expect(jwtVerify(assertion ?? '', createLocalJWKSet(jwks), { issuer: base, audience: 'eng-app' })).resolves.toBeTruthy();

    // The same code again (in a browser without the cookie): refused.
    const again = new Browser();
    const reused = await again.get(handoff);
    expect(reused.status).toBe(400);
    expect(again.jar.get('app.localhost', SESSION)).toBeUndefined();
  });

  it('hands off to a host whose routes serve only a path below /', async () => {
    const docs = `http://docs.localhost:${port}`;
    const b = new Browser();
    const start = await b.get(`${docs}/docs/a`);
    expect(start.status).toBe(302);
    const toPublic = locationOf(await b.get(`${docs}/.portcullis/login/oidc/corp?rd=%2Fdocs%2Fa`), docs);
    const toIdp = await b.get(toPublic);
    expect(toIdp.status).toBe(302);
    const done = await b.get(await idp.loginViaProvider(locationOf(toIdp, toPublic).href, 'alice'));
    const handoff = locationOf(done, base);
    expect(handoff.origin).toBe(docs);
    expect((await b.get(handoff)).headers.location).toBe('/docs/a');
    expect((await b.get(`${docs}/docs/a`)).status).toBe(200);
  });

  it('refuses a hand-off code presented on another host, and a hand-off to a host it does not serve', async () => {
    const b = new Browser();
    const toPublic = locationOf(await b.get(`${appBase}/.portcullis/login/oidc/corp?rd=%2Fq`), appBase);
    const toIdp = await b.get(toPublic);
    const done = await b.get(await idp.loginViaProvider(locationOf(toIdp, toPublic).href, 'alice'));
    expect(done.status).toBe(303);
    const handoff = locationOf(done, base);
    expect(handoff.origin).toBe(appBase);

    const elsewhere = new Browser();
    const wrongHost = new URL(`${handoff.pathname}${handoff.search}`, base);
    const r = await elsewhere.get(wrongHost);
    expect(r.status).toBe(400);
    expect(elsewhere.jar.get('localhost', SESSION)).toBeUndefined();

    // A served host name on a port the gateway is not reached at: the code would go to whoever listens there.
    const otherPort = new Browser();
    const portRefused = await otherPort.get(`${base}/.portcullis/login/oidc/corp?rd=%2F&host=app.localhost%3A1`);
    expect(portRefused.status).toBe(400);
    expect(portRefused.headers.location).toBeUndefined();

    // A hand-off to another host that was not started on that host (no nonce hash): refused.
    const direct = new Browser();
    const notStartedThere = await direct.get(`${base}/.portcullis/login/oidc/corp?rd=%2F&host=app.localhost%3A${port}`);
    expect(notStartedThere.status).toBe(400);

    const evil = new Browser();
    const refused = await evil.get(`${base}/.portcullis/login/oidc/corp?rd=%2F&host=evil.example`);
    expect(refused.status).toBe(400);
    expect(refused.headers.location).toBeUndefined();
    expect(evil.jar.get('localhost', BINDING)).toBeUndefined();
  });

  it('does not sign a victim in with a hand-off link from an attacker (login CSRF)', async () => {
    // The attacker runs the flow in their own browser as bob and stops before the hand-off.
    const attacker = new Browser();
    const toPublic = locationOf(await attacker.get(`${appBase}/.portcullis/login/oidc/corp?rd=%2Fapp%2Fz`), appBase);
    const toIdp = await attacker.get(toPublic);
    const done = await attacker.get(await idp.loginViaProvider(locationOf(toIdp, toPublic).href, 'bob'));
    const link = locationOf(done, base);
    expect(link.pathname).toBe('/.portcullis/session');
    // The victim opens the link: their browser lacks the nonce cookie set when the attacker started.
    const victim = new Browser();
    const res = await victim.get(link);
    expect(res.status).toBe(400);
    expect(victim.jar.get('app.localhost', SESSION)).toBeUndefined();
  });
});

describe('bearer tokens from a configured issuer', () => {
  it('accepts a valid token, sets the identity headers and does not forward Authorization', async () => {
    const token = await bearerToken({});
    const res = await api('/private/bearer', ['Authorization', `Bearer ${token}`]);
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)?.url).toBe('/private/bearer');
    expect(upstreamHeader('x-portcullis-user')).toEqual(['carol@example.com']);
    expect(upstreamHeader('x-portcullis-groups')).toEqual(['eng']);
    expect(upstreamHeader('authorization')).toEqual([]);
    const [assertion] = upstreamHeader('x-portcullis-assertion');
    const jwks = (await api('/.portcullis/jwks.json')).json() as JSONWebKeySet;
    const { payload } = await jwtVerify(assertion ?? '', createLocalJWKSet(jwks), { issuer: base, audience: 'eng-local' });
    expect(payload.sub).toBe('carol@example.com');

    const me = await api('/.portcullis/me', ['Authorization', `Bearer ${token}`]);
    expect(me.json()).toMatchObject({ user: 'carol@example.com', auth: 'bearer' });
  });

  it('answers 401 with a Bearer challenge to expired, wrong-audience, alg-none, forged and garbage tokens', async () => {
    const now = Math.floor(Date.now() / 1000);
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const algNone = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: bearerIssuer, aud: BEARER_AUDIENCE, sub: 'carol', email: 'carol@example.com', groups: ['eng'], exp: now + 300 })}.`;
    const otherKey = (await generateKeyPair('ES256')).privateKey;
    const bad: [string, string][] = [
      ['expired', await bearerToken({}, { expiresAt: now - 120 })],
      ['wrong audience', await bearerToken({}, { audience: 'someone-else' })],
      ['alg none', algNone],
      ['forged signature', await bearerToken({}, { key: otherKey })],
      ['garbage', 'not-a-jwt'],
      ['not a token at all', '!!!'],
    ];
    const seen = upstream.requests.length;
    for (const [what, token] of bad) {
      const res = await api('/private/bearer', ['Authorization', `Bearer ${token}`]);
      expect(res.status, what).toBe(401);
      expect(res.headers['www-authenticate'], what).toBe('Bearer realm="portcullis"');
      expect(res.json(), what).toMatchObject({ error: 'GW_ERR_AUTH_REQUIRED' });
    }
    expect(upstream.requests.length).toBe(seen);
  });

  it('never falls back to the session cookie when the bearer token is invalid', async () => {
    const b = new Browser();
    expect((await signIn(b, 'alice')).status).toBe(303);
    const cookie = `${SESSION}=${b.jar.get('localhost', SESSION) ?? ''}`;
    expect((await api('/private/x', ['Cookie', cookie])).status).toBe(200);

    const seen = upstream.requests.length;
    const expired = await bearerToken({}, { expiresAt: Math.floor(Date.now() / 1000) - 120 });
    for (const authorization of [`Bearer ${expired}`, 'Bearer not-a-jwt']) {
      const res = await api('/private/x', ['Cookie', cookie, 'Authorization', authorization]);
      expect(res.status, authorization).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="portcullis"');
    }
    expect(upstream.requests.length).toBe(seen);
  });

  it('accepts the scheme in any case, and leaves other Authorization schemes to the upstream', async () => {
    const token = await bearerToken({});
    expect((await api('/private/x', ['Authorization', `bearer ${token}`])).status).toBe(200);
    const b = new Browser();
    expect((await signIn(b, 'alice')).status).toBe(303);
    const cookie = `${SESSION}=${b.jar.get('localhost', SESSION) ?? ''}`;
    const basic = await api('/private/x', ['Cookie', cookie, 'Authorization', 'Basic dXNlcjpwYXNz']);
    expect(basic.status).toBe(200);
    expect(upstreamHeader('authorization')).toEqual(['Basic dXNlcjpwYXNz']);
  });
});

describe('behind a TLS-terminating proxy (public_url https, the gateway itself plain HTTP)', () => {
  it('hands off to the https origin, sets __Host- cookies, and accepts the https Origin of a sign-out form', async () => {
    const pub = `https://localhost:${tlsPort}`;
    const app = `https://app.localhost:${tlsPort}`;
    const b = new Browser();
    const toPublic = locationOf(await b.get(`${app}/.portcullis/login/oidc/corp?rd=%2Fz`), app);
    expect(toPublic.origin).toBe(pub);
    const toIdp = await b.get(toPublic);
    expect(toIdp.status).toBe(302);
    expect(b.jar.get('localhost', '__Host-portcullis-oidc')).toBeDefined();
    const callback = await idp.loginViaProvider(locationOf(toIdp, toPublic).href, 'alice');
    expect(callback.origin).toBe(pub);

    const done = await b.get(callback);
    expect(done.status).toBe(303);
    const handoff = locationOf(done, pub);
    expect(handoff.origin).toBe(app);
    const landed = await b.get(handoff);
    expect(landed.status).toBe(303);
    expect(landed.headers.location).toBe('/z');
    const cookie = (landed.headers['set-cookie'] ?? []).find((c) => c.startsWith('__Host-portcullis='));
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/; Path=\//);
    expect((await b.get(`${app}/z`)).status).toBe(200);

    const page = await b.get(`${app}/.portcullis/logout`);
    const out = await b.post(`${app}/.portcullis/logout`, { csrf: hiddenField(page, 'csrf') });
    expect(out.status).toBe(200);
    expect(b.jar.get('app.localhost', '__Host-portcullis')).toBeUndefined();
    expect((await b.get(`${app}/z`)).status).toBe(302);
  });
});
