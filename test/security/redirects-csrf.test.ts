/**
 * Redirects and CSRF: every open-redirect variant of `rd` (login, step-up, the login redirect itself),
 * login CSRF, logout CSRF, CSRF on MFA enrolment, and a session cookie from a sibling subdomain.
 * Each case is a scenario of real requests; the invariants (one record per request, nothing reaches
 * an upstream) are checked after each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, USERS, hidden, scenario, setCookieOf, signIn, startSecurityEnv, staysOn, type Caller, type SecurityEnv } from './harness.js';

const ORIGIN = `http://${HOST}`;
let env: SecurityEnv;

beforeAll(async () => {
  env = await startSecurityEnv('redirects');
});

afterAll(async () => {
  await env.stop();
});

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();

/** The login page's CSRF cookie and token. */
async function loginPage(call: Caller, rd = '/'): Promise<{ cookie: string; csrf: string; html: string }> {
  const page = await call({ path: `/.portcullis/login?rd=${encodeURIComponent(rd)}`, headers: ['Accept', 'text/html'] });
  expect(page.status).toBe(200);
  const cookie = setCookieOf(page, 'portcullis_csrf');
  if (cookie === undefined) throw new Error('no CSRF cookie');
  return { cookie, csrf: hidden(page.text, 'csrf'), html: page.text };
}

function postLogin(call: Caller, fields: Record<string, string>, headers: readonly string[]) {
  return call({ method: 'POST', path: '/.portcullis/login', headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', ...headers], body: form(fields) });
}

/**
 * Open-redirect variants (oauth2-proxy GHSA-qqxw-m5fj-f7gv / CVE-2020-5233 `/\`, GHSA-j7px-6hwj-hpjg /
 * CVE-2020-4037 whitespace between slashes, GHSA-5m6c-jp6f-2vcv).
 */
const RD: readonly string[] = [
  '//evil.example',
  '///evil.example',
  '////evil.example/',
  '/\\evil.example',
  '\\/evil.example',
  '\\\\evil.example',
  '/%5Cevil.example',
  '/%5c%5cevil.example',
  '/%2F/evil.example',
  '%2F%2Fevil.example',
  '/%252F%252Fevil.example',
  'https://evil.example',
  'HTTPS://evil.example/',
  'http:evil.example',
  'https:/evil.example',
  '//evil.example@app.localhost',
  'javascript:alert(1)',
  'JaVaScRiPt:alert(1)',
  'data:text/html,<script>alert(1)</script>',
  '/\t/evil.example',
  '/%09/evil.example',
  '/\n/evil.example',
  '/%0a/evil.example',
  '/%0d%0a/evil.example',
  ' //evil.example',
  '/ /evil.example',
  '/\u3000/evil.example',
  '//evil%E3%80%82example',
  '/.portcullis/login?rd=//evil.example',
  '/.portcullis/logout',
  'evil.example',
  `/${'a'.repeat(3000)}`,
];

describe('rd never leaves the origin', () => {
  for (const rd of RD) {
    it(`login form post with rd=${JSON.stringify(rd).slice(0, 60)}`, async () => {
      await scenario(env, async (call) => {
        const { cookie, csrf } = await loginPage(call);
        const res = await postLogin(call, { username: 'alice', password: USERS.alice.password, csrf, rd }, ['Cookie', cookie, 'Origin', ORIGIN]);
        expect(res.status).toBe(303);
        const location = res.header('location') ?? '';
        expect(staysOn(ORIGIN, location), location).toBe(true);
        expect(location.startsWith('/.portcullis/login')).toBe(false);
      });
    });
  }

  it('keeps a genuine same-origin rd with its query', async () => {
    await scenario(env, async (call) => {
      const { cookie, csrf } = await loginPage(call);
      const res = await postLogin(call, { username: 'alice', password: USERS.alice.password, csrf, rd: '/app/x?y=1&z=%2F' }, ['Cookie', cookie, 'Origin', ORIGIN]);
      expect(res.header('location')).toBe('/app/x?y=1&z=%2F');
    });
  });

  it('escapes rd in the login page and offers only a safe one back', async () => {
    await scenario(env, async (call) => {
      const { html, csrf } = await loginPage(call, '/"><script>alert(1)</script>');
      expect(html).not.toContain('<script>alert(1)');
      expect(csrf.length).toBeGreaterThan(10);
      const rd = hidden(html, 'rd');
      expect(staysOn(ORIGIN, rd)).toBe(true);
    });
  });

  it('offers only a safe rd on the login page for //evil', async () => {
    await scenario(env, async (call) => {
      const { html } = await loginPage(call, '//evil.example');
      expect(hidden(html, 'rd')).toBe('/');
    });
  });

  it('the step-up page offers only a safe rd', async () => {
    const cookie = await signIn(env, 'alice');
    await scenario(env, async (call) => {
      for (const rd of ['//evil.example', '/\\evil.example', 'https://evil.example', '/%2F/evil.example']) {
        const page = await call({ path: `/.portcullis/mfa?rd=${encodeURIComponent(rd)}`, headers: ['Accept', 'text/html', 'Cookie', cookie] });
        expect(page.status).toBe(200);
        const offered = /name="rd" value="([^"]*)"/.exec(page.text)?.[1] ?? '/';
        expect(staysOn(ORIGIN, offered.replace(/&amp;/g, '&')), offered).toBe(true);
        expect(page.text).not.toContain('evil.example');
      }
    });
  });

  it('the redirect to the login page is same-origin and carries the judged path', async () => {
    await scenario(env, async (call) => {
      const res = await call({ path: '/app/x?next=//evil.example', headers: ['Accept', 'text/html'] });
      expect(res.status).toBe(302);
      const location = res.header('location') ?? '';
      expect(staysOn(ORIGIN, location)).toBe(true);
      expect(new URL(location, ORIGIN).searchParams.get('rd')).toBe('/app/x?next=//evil.example');
    });
  });

  it('a forged hand-off code signs nobody in and redirects nowhere', async () => {
    await scenario(env, async (call) => {
      const res = await call({ path: '/.portcullis/session?code=forged&rd=//evil.example', headers: ['Accept', 'text/html'] });
      expect(res.status).toBe(400);
      expect(res.header('location')).toBeUndefined();
      expect(setCookieOf(res, 'portcullis_session')).toBeUndefined();
    });
  });
});

describe('login CSRF', () => {
  const refused: readonly [string, (t: { cookie: string; csrf: string }) => { fields: Record<string, string>; headers: string[] }][] = [
    ['no CSRF cookie', (t) => ({ fields: { csrf: t.csrf }, headers: ['Origin', ORIGIN] })],
    ['no CSRF field', (t) => ({ fields: {}, headers: ['Cookie', t.cookie, 'Origin', ORIGIN] })],
    ['a field that does not match the cookie', (t) => ({ fields: { csrf: `${t.csrf}x` }, headers: ['Cookie', t.cookie, 'Origin', ORIGIN] })],
    ['a cookie and field both chosen by the attacker', () => ({ fields: { csrf: 'attacker-chosen-token-123' }, headers: ['Cookie', 'portcullis_csrf=attacker-chosen-token-123', 'Origin', ORIGIN] })],
    ['Origin of another site', (t) => ({ fields: { csrf: t.csrf }, headers: ['Cookie', t.cookie, 'Origin', 'http://evil.example'] })],
    ['Origin: null', (t) => ({ fields: { csrf: t.csrf }, headers: ['Cookie', t.cookie, 'Origin', 'null'] })],
    ['Origin with our host as a prefix', (t) => ({ fields: { csrf: t.csrf }, headers: ['Cookie', t.cookie, 'Origin', 'http://app.localhost.evil.example'] })],
    ['Origin on another port', (t) => ({ fields: { csrf: t.csrf }, headers: ['Cookie', t.cookie, 'Origin', 'http://app.localhost:8443'] })],
    ['Origin of a sibling subdomain', (t) => ({ fields: { csrf: t.csrf }, headers: ['Cookie', t.cookie, 'Origin', 'http://evil.app.localhost'] })],
    ['Sec-Fetch-Site: cross-site', (t) => ({ fields: { csrf: t.csrf }, headers: ['Cookie', t.cookie, 'Sec-Fetch-Site', 'cross-site'] })],
    ['Sec-Fetch-Site: same-site (a sibling subdomain)', (t) => ({ fields: { csrf: t.csrf }, headers: ['Cookie', t.cookie, 'Sec-Fetch-Site', 'same-site'] })],
  ];
  for (const [name, make] of refused) {
    it(`refuses a sign-in post with ${name}, records why, and sets no session`, async () => {
      const seen = await scenario(env, async (call) => {
        const t = await loginPage(call);
        const { fields, headers } = make(t);
        const res = await postLogin(call, { username: 'alice', password: USERS.alice.password, rd: '/', ...fields }, headers);
        expect(res.status).toBe(403);
        expect(setCookieOf(res, 'portcullis_session')).toBeUndefined();
      });
      expect(seen.records.at(-1)?.response?.status).toBe(403);
      const auth = env.records.filter((r) => r.kind === 'auth' && r.id === seen.records.at(-1)?.id);
      expect(auth.map((r) => [r.event?.action, r.reason])).toEqual([['login_failure', 'csrf']]);
    });
  }

  it('a CSRF token works once', async () => {
    await scenario(env, async (call) => {
      const t = await loginPage(call);
      const first = await postLogin(call, { username: 'alice', password: USERS.alice.password, csrf: t.csrf, rd: '/' }, ['Cookie', t.cookie, 'Origin', ORIGIN]);
      expect(first.status).toBe(303);
      const again = await postLogin(call, { username: 'alice', password: USERS.alice.password, csrf: t.csrf, rd: '/' }, ['Cookie', t.cookie, 'Origin', ORIGIN]);
      expect(again.status).toBe(403);
    });
  });

  it('a GET with credentials in the query signs nobody in, and the password is not recorded', async () => {
    const seen = await scenario(env, async (call) => {
      const res = await call({ path: `/.portcullis/login?username=alice&password=${encodeURIComponent(USERS.alice.password)}`, headers: ['Accept', 'text/html'] });
      expect(res.status).toBe(200);
      expect(setCookieOf(res, 'portcullis_session')).toBeUndefined();
    });
    expect(seen.records[0]?.request?.query).toBe('username=alice&password=REDACTED');
    expect(env.lines.join('\n')).not.toContain(encodeURIComponent(USERS.alice.password));
  });
});

describe('logout CSRF', () => {
  async function session(): Promise<{ cookie: string; csrf: string }> {
    const cookie = await signIn(env, 'alice');
    let csrf = '';
    await scenario(env, async (call) => {
      const page = await call({ path: '/.portcullis/logout', headers: ['Accept', 'text/html', 'Cookie', cookie] });
      csrf = hidden(page.text, 'csrf');
    });
    return { cookie, csrf };
  }

  async function stillSignedIn(call: Caller, cookie: string): Promise<void> {
    const me = await call({ path: '/.portcullis/me', headers: ['Cookie', cookie] });
    expect(me.status).toBe(200);
  }

  const refused: readonly [string, (s: { cookie: string; csrf: string }) => { fields: Record<string, string>; headers: string[] }][] = [
    ['no token', (s) => ({ fields: {}, headers: ['Cookie', s.cookie, 'Origin', ORIGIN] })],
    ['a wrong token', (s) => ({ fields: { csrf: `${s.csrf}x` }, headers: ['Cookie', s.cookie, 'Origin', ORIGIN] })],
    ['the right token from another site', (s) => ({ fields: { csrf: s.csrf }, headers: ['Cookie', s.cookie, 'Origin', 'http://evil.example'] })],
    ['the right token, Sec-Fetch-Site: cross-site', (s) => ({ fields: { csrf: s.csrf }, headers: ['Cookie', s.cookie, 'Sec-Fetch-Site', 'cross-site'] })],
    ['the right token, Origin: null', (s) => ({ fields: { csrf: s.csrf }, headers: ['Cookie', s.cookie, 'Origin', 'null'] })],
  ];
  for (const [name, make] of refused) {
    it(`refuses a sign-out post with ${name}: the session lives on, and the refusal is recorded`, async () => {
      const s = await session();
      const seen = await scenario(env, async (call) => {
        const { fields, headers } = make(s);
        const res = await call({ method: 'POST', path: '/.portcullis/logout', headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', ...headers], body: form(fields) });
        expect(res.status).toBe(403);
        await stillSignedIn(call, s.cookie);
      });
      expect(seen.records[0]).toMatchObject({ decision: 'deny', response: { status: 403 }, request: { method: 'POST', path: '/.portcullis/logout' } });
    });
  }

  it('does not sign out on a GET (an <img src> cannot log anyone out)', async () => {
    const s = await session();
    await scenario(env, async (call) => {
      const res = await call({ path: '/.portcullis/logout', headers: ['Accept', 'text/html', 'Cookie', s.cookie] });
      expect(res.status).toBe(200);
      await stillSignedIn(call, s.cookie);
    });
  });

  it('signs out with the token from its own origin (the control case)', async () => {
    const s = await session();
    await scenario(env, async (call) => {
      const res = await call({ method: 'POST', path: '/.portcullis/logout', headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Cookie', s.cookie, 'Origin', ORIGIN], body: form({ csrf: s.csrf }) });
      expect(res.status).toBe(200);
      const me = await call({ path: '/.portcullis/me', headers: ['Cookie', s.cookie] });
      expect(me.status).toBe(401);
    });
  });
});

describe('CSRF on MFA enrolment', () => {
  let cookie = '';
  let csrf = '';

  beforeAll(async () => {
    cookie = await signIn(env, 'bob');
    await scenario(env, async (call) => {
      const page = await call({ path: '/.portcullis/mfa/enroll', headers: ['Accept', 'text/html', 'Cookie', cookie] });
      expect(page.status).toBe(200);
      csrf = hidden(page.text, 'csrf');
    });
  });

  async function nothingEnrolled(call: Caller): Promise<void> {
    const me = await call({ path: '/.portcullis/me', headers: ['Cookie', cookie] });
    const factors = (JSON.parse(me.text) as { factors: { totp: unknown[]; webauthn: unknown[] } }).factors;
    expect(factors.totp).toEqual([]);
    expect(factors.webauthn).toEqual([]);
  }

  const FORM_POSTS = ['totp/enroll', 'totp/confirm', 'remove', 'recovery/regenerate'];
  for (const sub of FORM_POSTS) {
    it(`refuses POST mfa/${sub} without the session's token`, async () => {
      await scenario(env, async (call) => {
        const res = await call({ method: 'POST', path: `/.portcullis/mfa/${sub}`, headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Cookie', cookie, 'Origin', ORIGIN], body: form({ name: 'mine', code: '000000', factor: 'totp', id: 'x' }) });
        expect(res.status).toBe(403);
        await nothingEnrolled(call);
      });
    });

    it(`refuses POST mfa/${sub} with the token from another site`, async () => {
      await scenario(env, async (call) => {
        const res = await call({ method: 'POST', path: `/.portcullis/mfa/${sub}`, headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Cookie', cookie, 'Origin', 'http://evil.example'], body: form({ csrf, name: 'mine', code: '000000', factor: 'totp', id: 'x' }) });
        expect(res.status).toBe(403);
        await nothingEnrolled(call);
      });
    });
  }

  it('refuses the passkey registration API without X-Portcullis-CSRF', async () => {
    await scenario(env, async (call) => {
      const res = await call({ method: 'POST', path: '/.portcullis/mfa/webauthn/register/options', headers: ['Content-Type', 'application/json', 'Cookie', cookie, 'Origin', ORIGIN], body: '{}' });
      expect(res.status).toBe(403);
      await nothingEnrolled(call);
    });
  });

  it('refuses the passkey registration API from another site even with the token', async () => {
    await scenario(env, async (call) => {
      const res = await call({ method: 'POST', path: '/.portcullis/mfa/webauthn/register', headers: ['Content-Type', 'application/json', 'X-Portcullis-CSRF', csrf, 'Cookie', cookie, 'Origin', 'http://evil.example'], body: '{}' });
      expect(res.status).toBe(403);
      await nothingEnrolled(call);
    });
  });

  it('refuses a text/plain body (a cross-site form can send one without a preflight)', async () => {
    await scenario(env, async (call) => {
      const res = await call({ method: 'POST', path: '/.portcullis/mfa/webauthn/register/options', headers: ['Content-Type', 'text/plain', 'X-Portcullis-CSRF', csrf, 'Cookie', cookie, 'Origin', ORIGIN], body: '{}' });
      expect(res.status).toBe(400);
      await nothingEnrolled(call);
    });
  });
});

describe('session cookie from a sibling subdomain (public_url https: __Host- cookies)', () => {
  let tls: SecurityEnv;
  let value = '';
  const TLS_ORIGIN = `https://${HOST}`;

  beforeAll(async () => {
    tls = await startSecurityEnv('cookies', { server: { public_url: TLS_ORIGIN } });
    await scenario(tls, async (call) => {
      const page = await call({ path: '/.portcullis/login', headers: ['Accept', 'text/html'] });
      const csrfCookie = setCookieOf(page, '__Host-portcullis-csrf') ?? '';
      const res = await call({
        method: 'POST',
        path: '/.portcullis/login',
        headers: ['Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Cookie', csrfCookie, 'Origin', TLS_ORIGIN],
        body: form({ username: 'alice', password: USERS.alice.password, csrf: hidden(page.text, 'csrf'), rd: '/' }),
      });
      expect(res.status).toBe(303);
      const line = (res.headers['set-cookie'] as string[]).find((l) => l.startsWith('__Host-portcullis='));
      expect(line).toMatch(/; Path=\//);
      expect(line).toMatch(/; Secure/);
      expect(line).toMatch(/; HttpOnly/);
      expect(line).toMatch(/; SameSite=Lax/);
      expect(line).not.toMatch(/Domain=/i);
      value = (line ?? '').split(';')[0]?.split('=')[1] ?? '';
    });
  });

  afterAll(async () => {
    await tls.stop();
  });

  const cases: readonly [string, () => string, number][] = [
    ['the __Host- session cookie (control)', () => `__Host-portcullis=${value}`, 200],
    ['the same id under the plain-HTTP name a sibling could set for .localhost', () => `portcullis_session=${value}`, 401],
    ['the same id under a case variant of the prefix', () => `__host-portcullis=${value}`, 401],
    ['a tossed cookie of the same name before the real one', () => `__Host-portcullis=${'A'.repeat(43)}; __Host-portcullis=${value}`, 401],
    ['a tossed cookie of the same name after the real one', () => `__Host-portcullis=${value}; __Host-portcullis=${'B'.repeat(43)}`, 401],
    ['the real cookie split across two Cookie headers with a tossed one', () => `__Host-portcullis=${value}\r\nCookie: __Host-portcullis=${'C'.repeat(43)}`, 401],
  ];
  for (const [name, cookie, status] of cases) {
    it(name, async () => {
      await scenario(
        tls,
        async (call) => {
          const [first, ...rest] = cookie().split('\r\nCookie: ');
          const headers = ['Accept', 'application/json', 'Cookie', first ?? '', ...rest.flatMap((c) => ['Cookie', c])];
          const res = await call({ path: '/app/cookie', headers });
          expect(res.status).toBe(status);
        },
        status === 200 ? ['/app/cookie'] : [],
      );
    });
  }
});
