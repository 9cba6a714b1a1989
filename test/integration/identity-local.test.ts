import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../../src/identity/local-users.js';
import { createBrowserClient } from '../support/browser-client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

let upstream: RecordingUpstream;
let gw: TestGateway;
const HOST = 'localhost';

async function signIn(user = 'alice', password = 'correct horse battery', rd = '/private/x') {
  const b = createBrowserClient(gw.port, HOST);
  const page = await b.get(`/.portcullis/login?rd=${encodeURIComponent(rd)}`);
  const res = await b.post('/.portcullis/login', { username: user, password, csrf: b.hidden(page, 'csrf'), rd: b.hidden(page, 'rd') });
  return { b, res };
}

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startGateway({
    server: { public_url: 'http://localhost' },
    identity: { login_limits: { per_user: 3, per_ip: 6, window: '1m' } },
    routes: [
      {
        id: 'private',
        host: 'localhost',
        path: '/private',
        upstream: upstream.url,
        allow: { groups: ['eng'] },
        rules: [{ path: '/private/admin', allow: { groups: ['sre'] } }],
      },
    ],
  });
  const users = join(gw.dir, 'users.yaml');
  await addUser(users, { name: 'alice', email: 'alice@example.com', groups: ['eng'], password: 'correct horse battery' });
  await addUser(users, { name: 'mallory', email: 'mallory@example.com', groups: ['eng'], password: 'mallory password 1' });
  for (const n of ['carol', 'dave', 'erin', 'frank']) await addUser(users, { name: n, groups: ['ops'], password: `${n} password 1` });
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

describe('local sign-in', () => {
  it('signs in with the form, returns to rd and proxies with identity headers and a verifiable assertion', async () => {
    const { b, res } = await signIn();
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/private/x');
    const setCookie = (res.headers['set-cookie'] ?? []).find((c) => c.startsWith('portcullis_session='));
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Lax/);
    expect(setCookie).toMatch(/Path=\//);

    const proxied = await b.get('/private/x', ['X-Portcullis-User', 'mallory', 'X-Portcullis-Groups', 'sre']);
    expect(proxied.status).toBe(200);
    expect(upstream.header('x-portcullis-user')).toEqual(['alice']);
    expect(upstream.header('x-portcullis-email')).toEqual(['alice@example.com']);
    expect(upstream.header('x-portcullis-groups')).toEqual(['eng']);
    expect(upstream.header('cookie')).toEqual([]);
    const [assertion] = upstream.header('x-portcullis-assertion');
    const jwks = (await send(gw.port, { path: '/.portcullis/jwks.json', headers: ['Host', HOST] })).json() as JSONWebKeySet;
    const { payload, protectedHeader } = await jwtVerify(assertion ?? '', createLocalJWKSet(jwks), { issuer: 'http://localhost', audience: 'private' });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload.sub).toBe('alice');
    expect(payload.groups).toEqual(['eng']);
    expect(payload.amr).toEqual(['pwd']);
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBeLessThanOrEqual(60);

    const me = await send(gw.port, { path: '/.portcullis/me', headers: ['Host', HOST, 'Cookie', `portcullis_session=${b.cookies.get('portcullis_session') ?? ''}`] });
    expect(me.json()).toMatchObject({ user: 'alice', email: 'alice@example.com', groups: ['eng'], provider: 'local', auth: 'cookie', amr: ['pwd'], mfa: null });
  });

  it('signs in by e-mail address, case-insensitively', async () => {
    const { res } = await signIn('ALICE@example.com');
    expect(res.status).toBe(303);
  });

  it('answers 403 naming the route, not the rule, to a signed-in user the rule does not allow', async () => {
    const { b } = await signIn();
    const page = await b.get('/private/admin/users');
    expect(page.status).toBe(403);
    expect(page.text()).toContain('private');
    expect(page.text()).not.toContain('/private/admin');
  });

  it('refuses a wrong password with a generic message that does not reveal whether the user exists', async () => {
    const b = createBrowserClient(gw.port, HOST);
    const p1 = await b.get('/.portcullis/login');
    const wrong = await b.post('/.portcullis/login', { username: 'carol', password: 'nope', csrf: b.hidden(p1, 'csrf'), rd: '/' });
    const p2 = await b.get('/.portcullis/login');
    const ghost = await b.post('/.portcullis/login', { username: 'nobody-here', password: 'nope', csrf: b.hidden(p2, 'csrf'), rd: '/' });
    expect(wrong.status).toBe(401);
    expect(ghost.status).toBe(401);
    const msg = (t: string) => /role="alert"[^>]*>([^<]*)</.exec(t)?.[1];
    expect(msg(wrong.text())).toBe('Wrong user name or password.');
    expect(msg(ghost.text())).toBe(msg(wrong.text()));
    expect(b.cookies.has('portcullis_session')).toBe(false);
  });

  it('refuses a login post without the CSRF cookie, with a forged token, or from another origin', async () => {
    const b = createBrowserClient(gw.port, HOST);
    const page = await b.get('/.portcullis/login');
    const csrf = b.hidden(page, 'csrf');
    const cross = await b.post('/.portcullis/login', { username: 'alice', password: 'correct horse battery', csrf, rd: '/' }, { origin: 'http://evil.example' });
    expect(cross.status).toBe(403);
    const page2 = await b.get('/.portcullis/login');
    const forged = await b.post('/.portcullis/login', { username: 'alice', password: 'correct horse battery', csrf: `${b.hidden(page2, 'csrf')}x`, rd: '/' });
    expect(forged.status).toBe(403);
    const stranger = createBrowserClient(gw.port, HOST);
    const noCookie = await stranger.post('/.portcullis/login', { username: 'alice', password: 'correct horse battery', csrf, rd: '/' });
    expect(noCookie.status).toBe(403);
    expect(stranger.cookies.has('portcullis_session')).toBe(false);
  });

  it('never keeps a session id chosen before sign-in (no fixation)', async () => {
    const attacker = await signIn('mallory', 'mallory password 1', '/');
    const planted = attacker.b.cookies.get('portcullis_session') ?? '';
    expect(planted).not.toBe('');
    // The victim's browser carries the attacker's cookie when signing in.
    const victim = createBrowserClient(gw.port, HOST);
    victim.cookies.set('portcullis_session', planted);
    const page = await victim.get('/.portcullis/login');
    const res = await victim.post('/.portcullis/login', { username: 'alice', password: 'correct horse battery', csrf: victim.hidden(page, 'csrf'), rd: '/' });
    expect(res.status).toBe(303);
    const fresh = victim.cookies.get('portcullis_session');
    expect(fresh).toBeDefined();
    expect(fresh).not.toBe(planted);
    // The planted id is dead: it neither became alice's nor stays mallory's.
    const withPlanted = await send(gw.port, { path: '/.portcullis/me', headers: ['Host', HOST, 'Cookie', `portcullis_session=${planted}`] });
    expect(withPlanted.status).toBe(401);
  });

  it.each([
    ['//evil.example/x'],
    ['/\\evil.example'],
    ['https://evil.example/'],
    ['http:evil.example'],
    ['javascript:alert(1)'],
    ['/%2F%2Fevil.example'],
    ['/%2f/evil.example'],
    ['/%5Cevil.example'],
    ['%2F%2Fevil.example'],
    ['/\t/evil.example'],
    ['/%09/evil.example'],
    ['///evil.example'],
    ['\\\\evil.example'],
    ['/.portcullis/login?rd=//evil.example'],
  ])('sends the browser home instead of to rd %j', async (rd) => {
    const { res } = await signIn('alice', 'correct horse battery', rd);
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/');
  });

  it('keeps a same-origin rd with its query', async () => {
    const { res } = await signIn('alice', 'correct horse battery', '/private/x?tab=2&q=a%20b');
    expect(res.headers.location).toBe('/private/x?tab=2&q=a%20b');
  });
});

describe('sign-out', () => {
  it('revokes the session server-side with a CSRF-protected POST', async () => {
    const { b } = await signIn();
    const cookie = `portcullis_session=${b.cookies.get('portcullis_session') ?? ''}`;
    const confirm = await b.get('/.portcullis/logout');
    expect(confirm.status).toBe(200);
    const forged = await b.post('/.portcullis/logout', { csrf: 'not-the-token' });
    expect(forged.status).toBe(403);
    const crossSite = await b.post('/.portcullis/logout', { csrf: b.hidden(confirm, 'csrf') }, { origin: 'http://evil.example' });
    expect(crossSite.status).toBe(403);
    expect((await b.get('/private/x')).status).toBe(200);
    const out = await b.post('/.portcullis/logout', { csrf: b.hidden(confirm, 'csrf') });
    expect(out.status).toBe(200);
    expect(b.cookies.has('portcullis_session')).toBe(false);
    // The old cookie, replayed, is dead server-side.
    const replay = await send(gw.port, { path: '/private/x', headers: ['Host', HOST, 'Cookie', cookie] });
    expect(replay.status).toBe(401);
  });

  it('does not sign out on a GET', async () => {
    const { b } = await signIn();
    await b.get('/.portcullis/logout');
    expect((await b.get('/private/x')).status).toBe(200);
  });
});

describe('failed sign-in limits', () => {
  it('refuses further attempts for a user after too many failures, even with the right password', async () => {
    const b = createBrowserClient(gw.port, HOST);
    for (let i = 0; i < 3; i++) {
      const p = await b.get('/.portcullis/login');
      const r = await b.post('/.portcullis/login', { username: 'dave', password: `wrong ${i}`, csrf: b.hidden(p, 'csrf'), rd: '/' });
      expect(r.status).toBe(401);
    }
    const p = await b.get('/.portcullis/login');
    const locked = await b.post('/.portcullis/login', { username: 'dave', password: 'dave password 1', csrf: b.hidden(p, 'csrf'), rd: '/' });
    expect(locked.status).toBe(429);
    expect(b.cookies.has('portcullis_session')).toBe(false);
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/portcullis_auth_logins_total\{provider="local",result="rate_limited"\} [1-9]/);
    expect(metrics).toMatch(/portcullis_auth_logins_total\{provider="local",result="failure"\} [1-9]/);
    expect(metrics).toMatch(/portcullis_auth_logins_total\{provider="local",result="success"\} [1-9]/);
  });
});
