/**
 * Hostile input against the command line's endpoints (docs/cli-protocol.md): oversized and malformed
 * token forms, header injection through `state`, open-redirect attempts through `redirect_uri`,
 * forged and abused tokens and proofs, and floods of device authorizations. Every case also runs the
 * suite's invariants (one record per answered request, nothing unexpected upstream, gateway up).
 */
import { createHash, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, hidden, rawCase, scenario, signIn, startSecurityEnv, type Caller, type SecurityEnv } from './harness.js';

let env: SecurityEnv;
let cookie: string;

beforeAll(async () => {
  env = await startSecurityEnv('cli-tokens');
  cookie = await signIn(env, 'alice');
});

afterAll(async () => {
  await env.stop();
});

const CHALLENGE = createHash('sha256').update('v'.repeat(43)).digest('base64url');

function authorizeQuery(patch: Record<string, string> = {}): string {
  return new URLSearchParams({ response_type: 'code', redirect_uri: 'http://127.0.0.1:4567/cb', state: 'st', code_challenge: CHALLENGE, code_challenge_method: 'S256', ...patch }).toString();
}

function formPost(path: string, body: string, extra: readonly string[] = []): string {
  return `POST ${path} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n${body}`;
}

const form = (call: Caller, path: string, body: string, headers: string[] = []) =>
  call({ method: 'POST', path, headers: ['Content-Type', 'application/x-www-form-urlencoded', 'Accept', 'application/json', ...headers], body });

describe('the token endpoint refuses malformed and oversized forms', () => {
  it('refuses a form over 8 KiB without reading further', async () => {
    await rawCase(env, {
      name: 'oversized token form',
      send: formPost('/.portcullis/cli/token', `grant_type=authorization_code&code=${'a'.repeat(9000)}`),
      expect: 400,
      check: (x) => expect(x.responses[0]?.body.toString()).toContain('invalid_request'),
    });
  });

  it('refuses other content types, repeated parameters, unknown grants and garbage', async () => {
    await scenario(env, async (call) => {
      const json = await call({ method: 'POST', path: '/.portcullis/cli/token', headers: ['Content-Type', 'application/json'], body: '{"grant_type":"authorization_code"}' });
      expect(json.status).toBe(400);
      expect(JSON.parse(json.text)).toMatchObject({ error: 'invalid_request' });
      const twice = await form(call, '/.portcullis/cli/token', 'grant_type=refresh_token&grant_type=authorization_code');
      expect(JSON.parse(twice.text)).toMatchObject({ error: 'invalid_request' });
      expect(JSON.parse((await form(call, '/.portcullis/cli/token', 'grant_type=password&username=alice&password=x')).text)).toMatchObject({ error: 'unsupported_grant_type' });
      expect(JSON.parse((await form(call, '/.portcullis/cli/token', 'grant_type=client_credentials')).text)).toMatchObject({ error: 'unsupported_grant_type' });
      const garbage = await form(call, '/.portcullis/cli/token', '%%%\u0000\u00ff&&=grant_type');
      expect(garbage.status).toBe(400);
      const code = await form(call, '/.portcullis/cli/token', `grant_type=authorization_code&code=${'A'.repeat(43)}&code_verifier=${'v'.repeat(43)}&redirect_uri=http://127.0.0.1:4567/cb`);
      expect(JSON.parse(code.text)).toMatchObject({ error: 'invalid_grant' });
      const refresh = await form(call, '/.portcullis/cli/token', `grant_type=refresh_token&refresh_token=pcr_${'A'.repeat(43)}`);
      expect(JSON.parse(refresh.text)).toMatchObject({ error: 'invalid_grant' });
      const device = await form(call, '/.portcullis/cli/token', 'grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=../../etc');
      expect(JSON.parse(device.text)).toMatchObject({ error: 'invalid_grant' });
      for (const r of [json, twice, garbage, code]) expect(r.header('cache-control')).toBe('no-store');
      // GET is not a token request.
      expect((await call({ path: `/.portcullis/cli/token?grant_type=refresh_token&refresh_token=pcr_${'A'.repeat(43)}` })).status).toBe(404);
    });
  });

  it('refuses malformed, oversized and doubled DPoP headers on the token endpoint', async () => {
    await scenario(env, async (call) => {
      const body = `grant_type=refresh_token&refresh_token=pcr_${'A'.repeat(43)}`;
      for (const dpop of [['DPoP', 'not-a-jwt'], ['DPoP', `${'a'.repeat(3000)}.${'b'.repeat(3000)}.c`], ['DPoP', 'a.b.c', 'DPoP', 'd.e.f']]) {
        const r = await form(call, '/.portcullis/cli/token', body, dpop);
        expect(r.status).toBe(400);
        expect(JSON.parse(r.text)).toMatchObject({ error: 'invalid_dpop_proof' });
      }
    });
  });
});

describe('authorize: no header injection, no open redirect', () => {
  it('refuses a state carrying CR/LF (raw and encoded) without a Location or cookie', async () => {
    for (const target of [`/.portcullis/cli/authorize?${authorizeQuery({ state: 'x\r\nSet-Cookie: evil=1' })}`, `/.portcullis/cli/authorize?${authorizeQuery().replace('state=st', 'state=x%0d%0aLocation:%20http://evil.example')}`]) {
      await rawCase(env, {
        name: `state injection ${target}`,
        send: `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\nCookie: ${cookie}\r\nAccept: text/html\r\nConnection: close\r\n\r\n`,
        expect: 400,
        check: (x) => {
          const r = x.responses[0];
          expect(r?.headers.get('location')).toBeUndefined();
          expect(r?.headers.get('set-cookie')).toBeUndefined();
          expect(r?.headers.get('content-type')?.[0]).toMatch(/^text\/html/);
          expect(x.raw.toString('latin1')).not.toMatch(/\r\n(Location|Set-Cookie): /i);
        },
      });
    }
  });

  it('carries an odd but valid state only inside the query of the loopback URL, escaped on the page', async () => {
    await scenario(env, async (call) => {
      const state = `"'<script>&x=1#frag`;
      const pageRes = await call({ path: `/.portcullis/cli/authorize?${authorizeQuery({ state, name: '<img src=x onerror=alert(1)>' })}`, headers: ['Cookie', cookie, 'Accept', 'text/html'] });
      expect(pageRes.status).toBe(200);
      expect(pageRes.text).not.toContain('<script>');
      expect(pageRes.text).not.toContain('<img');
      const fields = Object.fromEntries(['csrf', 'response_type', 'redirect_uri', 'state', 'code_challenge', 'code_challenge_method', 'name'].map((n) => [n, hidden(pageRes.text, n)]));
      expect(fields.state).toBe(state);
      const r = await form(call, '/.portcullis/cli/authorize', new URLSearchParams({ ...fields, decision: 'approve' }).toString(), ['Cookie', cookie, 'Origin', `http://${HOST}`]);
      expect(r.status).toBe(303);
      const location = new URL(r.header('location') ?? '');
      expect(location.origin).toBe('http://127.0.0.1:4567');
      expect(location.pathname).toBe('/cb');
      expect(location.hash).toBe('');
      expect(location.searchParams.get('state')).toBe(state);
      expect(location.searchParams.getAll('code')).toHaveLength(1);
      expect(location.searchParams.get('x')).toBeNull();
    });
  });

  it('never redirects to anything but a loopback IP literal', async () => {
    const hostile = [
      'http://evil.example/cb',
      'https://127.0.0.1:4567/cb',
      'http://localhost:4567/cb',
      'http://127.0.0.1:4567@evil.example/cb',
      'http://127.0.0.1:4567\\@evil.example/cb',
      'http://127.0.0.1.nip.io:4567/cb',
      'http://127.1:4567/cb',
      'http://[::ffff:7f00:1]:4567/cb',
      '//evil.example/cb',
      '/\\evil.example',
      'javascript:alert(document.cookie)',
      'http://127.0.0.1:4567/cb?next=http://evil.example',
      'http://127.0.0.1:4567/cb#@evil.example',
      'http://127.0.0.1:4567/%2e%2e/%2f%2fevil.example',
      'HTTP://127.0.0.1:4567/cb',
    ];
    await scenario(env, async (call) => {
      for (const redirect of hostile) {
        const q = authorizeQuery({ redirect_uri: redirect });
        const got = await call({ path: `/.portcullis/cli/authorize?${q}`, headers: ['Cookie', cookie, 'Accept', 'text/html'] });
        expect(got.status, redirect).toBe(400);
        expect(got.header('location'), redirect).toBeUndefined();
        // Even a properly signed approval (right CSRF token, same origin) gets no redirect.
        const csrfPage = await call({ path: `/.portcullis/cli/authorize?${authorizeQuery()}`, headers: ['Cookie', cookie, 'Accept', 'text/html'] });
        const posted = await form(call, '/.portcullis/cli/authorize', `${q}&csrf=${encodeURIComponent(hidden(csrfPage.text, 'csrf'))}&decision=approve`, ['Cookie', cookie, 'Origin', `http://${HOST}`]);
        expect(posted.status, redirect).toBe(400);
        expect(posted.header('location'), redirect).toBeUndefined();
      }
    });
  });

  it('refuses an approval from another site (Sec-Fetch-Site) even with the CSRF token', async () => {
    await scenario(env, async (call) => {
      const pageRes = await call({ path: `/.portcullis/cli/authorize?${authorizeQuery()}`, headers: ['Cookie', cookie, 'Accept', 'text/html'] });
      const r = await form(call, '/.portcullis/cli/authorize', `${authorizeQuery()}&csrf=${encodeURIComponent(hidden(pageRes.text, 'csrf'))}&decision=approve`, ['Cookie', cookie, 'Sec-Fetch-Site', 'cross-site']);
      expect(r.status).toBe(403);
      expect(r.header('location')).toBeUndefined();
    });
  });
});

describe('forged tokens and proofs', () => {
  it('refuses forged, query-string and malformed CLI tokens; nothing reaches the upstream', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    const forged = `pct_${randomBytes(32).toString('base64url')}`;
    const proof = await new SignJWT({ htm: 'GET', htu: `http://${HOST}/x`, iat: Math.floor(Date.now() / 1000), jti: 'j1', ath: createHash('sha256').update(forged).digest('base64url') })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk })
      .sign(privateKey);
    expect(await calculateJwkThumbprint(jwk)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await scenario(env, async (call) => {
      const bearer = await call({ path: '/x', headers: ['Accept', 'application/json', 'Authorization', `Bearer ${forged}`] });
      expect(bearer.status).toBe(401);
      expect(bearer.header('www-authenticate')).toContain('error="invalid_token"');
      const dpop = await call({ path: '/x', headers: ['Accept', 'application/json', 'Authorization', `DPoP ${forged}`, 'DPoP', proof] });
      expect(dpop.status).toBe(401);
      expect(dpop.header('www-authenticate')).toContain('DPoP error="invalid_token"');
      expect((await call({ path: `/x?access_token=${forged}`, headers: ['Accept', 'application/json'] })).status).toBe(401);
      expect((await call({ path: '/x', headers: ['Accept', 'application/json', 'Authorization', `Bearer pct_${'A'.repeat(42)}`] })).status).toBe(401);
      // A token presented with a valid session cookie is judged alone: no fallback to the cookie.
      expect((await call({ path: '/x', headers: ['Accept', 'application/json', 'Authorization', `Bearer ${forged}`, 'Cookie', cookie] })).status).toBe(401);
      expect((await call({ path: '/.portcullis/cli/routes', headers: ['Accept', 'application/json', 'Authorization', `DPoP ${forged}`, 'DPoP', proof] })).header('www-authenticate')).toContain('DPoP');
      expect((await call({ path: '/.portcullis/tokens', headers: ['Accept', 'application/json', 'Authorization', `Bearer ${forged}`] })).status).toBe(401);
      // Revoking garbage is a quiet 200 (RFC 7009), and changes nothing.
      expect((await form(call, '/.portcullis/cli/revoke', `token=${forged}`)).status).toBe(200);
      expect((await form(call, '/.portcullis/cli/revoke', 'token=%00%0d%0a')).status).toBe(200);
      expect((await form(call, '/.portcullis/cli/revoke', '')).status).toBe(400);
    });
  });

  it('limits device authorizations per client address', async () => {
    await scenario(env, async (call) => {
      const statuses: number[] = [];
      for (let i = 0; i < 22; i++) statuses.push((await form(call, '/.portcullis/cli/device', 'name=flood')).status);
      expect(statuses.slice(0, 20).every((s) => s === 200)).toBe(true);
      expect(statuses.slice(20)).toEqual([429, 429]);
    });
  });
});
