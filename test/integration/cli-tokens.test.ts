/**
 * Gateway-issued CLI tokens end to end without a browser (docs/cli-protocol.md): a real gateway, a
 * recording upstream, a real loopback listener receiving the authorization redirect, users signed in
 * with the password form (GatewayAgent), and DPoP proofs made with jose. The gateway's clock (and its
 * memory store's) is real time plus an offset the device-flow tests move forward.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AuditRecord } from '../../src/audit/record.js';
import { addUser } from '../../src/identity/local-users.js';
import { launchChromium } from '../support/chromium.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/index.js';
import { readFileSinkRecords } from '../support/audit-records.js';
import { GatewayAgent, signInAgent } from '../support/gateway-agent.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send, type ClientResponse } from '../support/http-client.js';
import { eventually, freePorts } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';
import { SoftAuthenticator } from '../support/soft-authenticator.js';

const INSTANCE = 'gw-cli-tokens';
const PASSWORD = 'cli tokens password 1';
const U = { flow: 'c-flow', refuse: 'c-refuse', revoke: 'c-revoke', refresh: 'c-refresh', device: 'c-device', bound: 'c-bound', stepup: 'c-stepup', list: 'c-list', other: 'c-other' } as const;

let offsetMs = 0;
const clock = (): number => Date.now() + offsetMs;
let port: number;
let host: string;
let store: MemoryStore;
let gw: TestGateway;
let upstream: RecordingUpstream;
let pgPorts: number[];

/** The loopback listener a CLI runs: records each callback's query. */
let callbackServer: http.Server;
let callbackPort: number;
const callbacks: URLSearchParams[] = [];

beforeAll(async () => {
  [port = 0, ...pgPorts] = await freePorts(3);
  host = `localhost:${port}`;
  upstream = await startRecordingUpstream();
  store = createMemoryStore({ now: clock });
  const pgUpstream = { host: '127.0.0.1', port: 5432, database: 'test', user: 'nobody', password: 'x' };
  gw = await startGateway(
    {
      server: { public_url: `http://${host}`, instance_id: INSTANCE },
      identity: { session: { recheck_every: '200ms' } },
      routes: [
        { id: 'admin', host: 'localhost', path: '/admin', upstream: upstream.url, allow: { groups: ['eng'] }, mfa: { factors: ['webauthn'], max_age: '10m' } },
        { id: 'ws', host: 'localhost', path: '/ws', upstream: upstream.url, allow: { groups: ['eng'] }, websocket: true },
        { id: 'ops', host: 'ops.localhost', path: '/', upstream: upstream.url, allow: { groups: ['ops'] } },
        { id: 'home', host: 'localhost', path: '/', upstream: upstream.url, allow: { groups: ['eng'] } },
      ],
      databases: [
        { id: 'appdb', type: 'postgres', listen: `127.0.0.1:${pgPorts[0] ?? 0}`, upstream: pgUpstream, allow: { groups: ['eng'] } },
        { id: 'opsdb', type: 'postgres', listen: `127.0.0.1:${pgPorts[1] ?? 0}`, upstream: pgUpstream, allow: { groups: ['ops'] } },
      ],
    },
    { listen: `127.0.0.1:${port}`, now: clock, store },
  );
  await Promise.all(Object.values(U).map((name) => addUser(join(gw.dir, 'users.yaml'), { name, groups: ['eng'], password: PASSWORD })));
  callbackServer = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (u.pathname !== '/favicon.ico') callbacks.push(u.searchParams);
    res.end('You can close this window.');
  });
  await new Promise<void>((resolve) => callbackServer.listen(0, '127.0.0.1', resolve));
  callbackPort = (callbackServer.address() as AddressInfo).port;
});

afterAll(async () => {
  await gw.stop();
  await store.close();
  await upstream.close();
  await new Promise<void>((resolve) => callbackServer.close(() => resolve()));
});

// ---------------------------------------------------------------------------------------------
// A CLI, in test form
// ---------------------------------------------------------------------------------------------

function unescapeAttribute(v: string): string {
  return v.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** The hidden fields of the first form on a page. */
function hiddenFields(html: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) out[unescapeAttribute(m[1] ?? '')] = unescapeAttribute(m[2] ?? '');
  return out;
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(48).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

interface DpopKey {
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
  readonly jkt: string;
}

async function newKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

async function proof(key: DpopKey, htm: string, path: string, o: { token?: string; iat?: number; jti?: string; htu?: string } = {}): Promise<string> {
  const claims: Record<string, unknown> = { htm, htu: o.htu ?? `http://${host}${path}`, iat: o.iat ?? Math.floor(clock() / 1000), jti: o.jti ?? randomBytes(12).toString('base64url') };
  if (o.token !== undefined) claims.ath = createHash('sha256').update(o.token).digest('base64url');
  return new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk }).sign(key.privateKey);
}

function redirectUri(path = '/callback'): string {
  return `http://127.0.0.1:${callbackPort}${path}`;
}

function authorizeQuery(p: { challenge: string; state: string; redirect?: string; jkt?: string; name?: string }): string {
  const q = new URLSearchParams({ response_type: 'code', redirect_uri: p.redirect ?? redirectUri(), state: p.state, code_challenge: p.challenge, code_challenge_method: 'S256' });
  if (p.jkt !== undefined) q.set('jkt', p.jkt);
  q.set('name', p.name ?? 'laptop');
  return q.toString();
}

/** Opens the authorize page as the signed-in agent, approves, and follows the redirect to the loopback listener. */
async function authorize(a: GatewayAgent, p: { challenge: string; state: string; jkt?: string; decision?: 'approve' | 'deny' }): Promise<URLSearchParams> {
  const pageRes = await a.get(`/.portcullis/cli/authorize?${authorizeQuery(p)}`);
  expect(pageRes.status, pageRes.text()).toBe(200);
  expect(pageRes.text()).toContain('act as <strong>');
  const fields = hiddenFields(pageRes.text());
  const res = await a.form('/.portcullis/cli/authorize', { ...fields, decision: p.decision ?? 'approve' });
  expect(res.status, res.text()).toBe(303);
  const location = res.headers.location ?? '';
  expect(location.startsWith(`${redirectUri()}?`)).toBe(true);
  const before = callbacks.length;
  await fetch(location);
  expect(callbacks.length).toBe(before + 1);
  return callbacks[before] ?? new URLSearchParams();
}

function post(path: string, form: Record<string, string>, headers: string[] = []): Promise<ClientResponse> {
  const body = new URLSearchParams(form).toString();
  return send(port, { method: 'POST', path, headers: ['Host', host, 'Accept', 'application/json', 'Content-Type', 'application/x-www-form-urlencoded', 'Content-Length', String(Buffer.byteLength(body)), ...headers], body });
}

interface TokenAnswer {
  access_token: string;
  token_type: string;
  expires_in: number;
  expires_at: string;
  refresh_token: string;
  user: string;
  groups: string[];
}

/** Signs in, authorizes and exchanges the code: a token pair. */
async function login(user: string, key?: DpopKey): Promise<{ agent: GatewayAgent; tokens: TokenAnswer }> {
  const agent = await signInAgent(new GatewayAgent(port, user), PASSWORD);
  const { verifier, challenge } = pkce();
  const state = randomBytes(16).toString('base64url');
  const cb = await authorize(agent, { challenge, state, ...(key === undefined ? {} : { jkt: key.jkt }) });
  expect(cb.get('state')).toBe(state);
  const headers = key === undefined ? [] : ['DPoP', await proof(key, 'POST', '/.portcullis/cli/token')];
  const res = await post('/.portcullis/cli/token', { grant_type: 'authorization_code', code: cb.get('code') ?? '', code_verifier: verifier, redirect_uri: redirectUri() }, headers);
  expect(res.status, res.text()).toBe(200);
  return { agent, tokens: res.json() as TokenAnswer };
}

function api(path: string, authorization: string, extra: string[] = [], method = 'GET'): Promise<ClientResponse> {
  return send(port, { method, path, headers: ['Host', host, 'Accept', 'application/json', 'Authorization', authorization, ...extra] });
}

async function auditRecords(): Promise<AuditRecord[]> {
  expect(await gw.app.audit.flush(5000)).toBe(true);
  return readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE).map((r) => r.record);
}

// ---------------------------------------------------------------------------------------------

describe('authorization code + PKCE (RFC 8252)', () => {
  it('issues a token that passes a protected route as the user, and /me says so', async () => {
    const { tokens } = await login(U.flow);
    expect(tokens.token_type).toBe('Bearer');
    expect(tokens.access_token).toMatch(/^pct_[A-Za-z0-9_-]{43}$/);
    expect(tokens.refresh_token).toMatch(/^pcr_[A-Za-z0-9_-]{43}$/);
    expect(tokens.user).toBe(U.flow);
    expect(tokens.groups).toEqual(['eng']);
    expect(tokens.expires_in).toBeGreaterThan(12 * 3600 - 60);
    expect(tokens.expires_in).toBeLessThanOrEqual(12 * 3600);
    const res = await api('/hello', `Bearer ${tokens.access_token}`);
    expect(res.status, res.text()).toBe(200);
    expect(upstream.header('x-portcullis-user')).toEqual([U.flow]);
    // The token is the gateway's: never forwarded.
    expect(upstream.header('authorization')).toEqual([]);
    const me = (await api('/.portcullis/me', `Bearer ${tokens.access_token}`)).json() as { user: string; auth: string; session: string };
    expect(me).toMatchObject({ user: U.flow, auth: 'cli' });
    expect(me.session).toMatch(/^[0-9a-f]{16}$/);
  });

  it('refuses a wrong verifier, a wrong redirect_uri and a reused code; echoes state exactly', async () => {
    const agent = await signInAgent(new GatewayAgent(port, U.refuse), PASSWORD);
    const exchange = (code: string, verifier: string, redirect = redirectUri()) => post('/.portcullis/cli/token', { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirect });

    const a = pkce();
    const cbA = await authorize(agent, { challenge: a.challenge, state: 'st-a' });
    expect(cbA.get('state')).toBe('st-a');
    const wrongVerifier = await exchange(cbA.get('code') ?? '', pkce().verifier);
    expect(wrongVerifier.status).toBe(400);
    expect(wrongVerifier.json()).toMatchObject({ error: 'invalid_grant' });
    // The code was spent by the failed attempt: the right verifier no longer helps.
    expect((await exchange(cbA.get('code') ?? '', a.verifier)).json()).toMatchObject({ error: 'invalid_grant' });

    const b = pkce();
    const cbB = await authorize(agent, { challenge: b.challenge, state: 'st-b' });
    expect((await exchange(cbB.get('code') ?? '', b.verifier, redirectUri('/other'))).json()).toMatchObject({ error: 'invalid_grant' });

    const c = pkce();
    const cbC = await authorize(agent, { challenge: c.challenge, state: 'st-c' });
    expect((await exchange(cbC.get('code') ?? '', c.verifier)).status).toBe(200);
    const reused = await exchange(cbC.get('code') ?? '', c.verifier);
    expect(reused.status).toBe(400);
    expect(reused.json()).toMatchObject({ error: 'invalid_grant' });

    // Deny sends the user's refusal back to the CLI.
    const d = pkce();
    const denied = await authorize(agent, { challenge: d.challenge, state: 'st-d', decision: 'deny' });
    expect(denied.get('error')).toBe('access_denied');
    expect(denied.get('state')).toBe('st-d');
    expect(denied.get('code')).toBeNull();
  });

  it('answers a non-loopback redirect_uri with a 400 page and no redirect, signed in or not', async () => {
    const agent = await signInAgent(new GatewayAgent(port, U.other), PASSWORD);
    const { challenge } = pkce();
    for (const redirect of ['http://localhost:9999/callback', 'https://evil.example/cb', `http://127.0.0.1.evil.example:${callbackPort}/cb`]) {
      const q = authorizeQuery({ challenge, state: 's', redirect });
      for (const res of [await agent.get(`/.portcullis/cli/authorize?${q}`), await send(port, { path: `/.portcullis/cli/authorize?${q}`, headers: ['Host', host, 'Accept', 'text/html'] })]) {
        expect(res.status, redirect).toBe(400);
        expect(res.headers.location).toBeUndefined();
      }
      const posted = await agent.form('/.portcullis/cli/authorize', { ...Object.fromEntries(new URLSearchParams(q)), csrf: agent.csrf, decision: 'approve' });
      expect(posted.status).toBe(400);
      expect(posted.headers.location).toBeUndefined();
    }
  });

  it('sends a signed-out user to the login page and back', async () => {
    const { challenge } = pkce();
    const res = await send(port, { path: `/.portcullis/cli/authorize?${authorizeQuery({ challenge, state: 's' })}`, headers: ['Host', host, 'Accept', 'text/html'] });
    expect(res.status).toBe(302);
    expect(res.headers.location).toMatch(/^\/\.portcullis\/login\?rd=%2F\.portcullis%2Fcli%2Fauthorize%3F/);
  });

  it('needs the CSRF token and the same origin to approve', async () => {
    const agent = await signInAgent(new GatewayAgent(port, U.other), PASSWORD);
    const { challenge } = pkce();
    const fields = hiddenFields((await agent.get(`/.portcullis/cli/authorize?${authorizeQuery({ challenge, state: 's' })}`)).text());
    const noCsrf = await agent.form('/.portcullis/cli/authorize', { ...fields, csrf: 'x', decision: 'approve' });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.headers.location).toBeUndefined();
    const body = new URLSearchParams({ ...fields, decision: 'approve' }).toString();
    const crossSite = await agent.request('POST', '/.portcullis/cli/authorize', { body, contentType: 'application/x-www-form-urlencoded', headers: ['Origin', 'http://evil.example'] });
    expect(crossSite.status).toBe(403);
    expect(crossSite.headers.location).toBeUndefined();
  });
});

describe('revocation and refresh', () => {
  it('revokes at once (RFC 7009): the very next request is refused', async () => {
    const { tokens } = await login(U.revoke);
    expect((await api('/hello', `Bearer ${tokens.access_token}`)).status).toBe(200);
    const res = await post('/.portcullis/cli/revoke', { token: tokens.access_token });
    expect(res.status).toBe(200);
    const after = await api('/hello', `Bearer ${tokens.access_token}`);
    expect(after.status).toBe(401);
    expect(after.headers['www-authenticate']).toContain('invalid_token');
    // The refresh token went with it; revoking something unknown is still 200.
    expect((await post('/.portcullis/cli/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token })).json()).toMatchObject({ error: 'invalid_grant' });
    expect((await post('/.portcullis/cli/revoke', { token: 'pct_nothing' })).status).toBe(200);
  });

  it('rotates on refresh, refuses a reused refresh token, and stops refreshing after the browser signs out', async () => {
    const { agent, tokens } = await login(U.refresh);
    const r1 = await post('/.portcullis/cli/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    expect(r1.status, r1.text()).toBe(200);
    const next = r1.json() as TokenAnswer;
    expect(next.access_token).not.toBe(tokens.access_token);
    expect(next.refresh_token).not.toBe(tokens.refresh_token);
    expect((await api('/hello', `Bearer ${tokens.access_token}`)).status).toBe(401);
    expect((await api('/hello', `Bearer ${next.access_token}`)).status).toBe(200);
    expect((await post('/.portcullis/cli/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token })).json()).toMatchObject({ error: 'invalid_grant' });

    await agent.signOut();
    const r2 = await post('/.portcullis/cli/token', { grant_type: 'refresh_token', refresh_token: next.refresh_token });
    expect(r2.status).toBe(400);
    expect(r2.json()).toMatchObject({ error: 'invalid_grant' });
  });
});

describe('device authorization (RFC 8628)', () => {
  async function start(name = 'build-box'): Promise<{ device_code: string; user_code: string; verification_uri: string; verification_uri_complete: string; expires_in: number; interval: number }> {
    const res = await post('/.portcullis/cli/device', { name });
    expect(res.status, res.text()).toBe(200);
    return res.json() as never;
  }
  const poll = (deviceCode: string) => post('/.portcullis/cli/token', { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: deviceCode });

  it('goes pending → slow_down → approved in a browser → token', async () => {
    const d = await start();
    expect(d.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(d).toMatchObject({ verification_uri: `http://${host}/.portcullis/cli/device`, expires_in: 600, interval: 5 });
    expect(d.verification_uri_complete).toBe(`${d.verification_uri}?user_code=${d.user_code}`);
    expect((await poll(d.device_code)).json()).toMatchObject({ error: 'authorization_pending' });
    expect((await poll(d.device_code)).json()).toMatchObject({ error: 'slow_down' });

    const agent = await signInAgent(new GatewayAgent(port, U.device), PASSWORD);
    const entry = await agent.get(`/.portcullis/cli/device?user_code=${d.user_code.toLowerCase()}`);
    expect(entry.status).toBe(200);
    expect(entry.text()).toContain(`value="${d.user_code}"`);
    const confirm = await agent.form('/.portcullis/cli/device', { csrf: agent.csrf, user_code: d.user_code.toLowerCase().replace('-', ' ') });
    expect(confirm.status).toBe(200);
    expect(confirm.text()).toContain('build-box');
    const approve = await agent.form('/.portcullis/cli/device', { ...hiddenFields(confirm.text()), decision: 'approve' });
    expect(approve.status).toBe(200);
    offsetMs += 5_000;
    const ok = await poll(d.device_code);
    expect(ok.status, ok.text()).toBe(200);
    const tokens = ok.json() as TokenAnswer;
    expect(tokens.user).toBe(U.device);
    expect((await api('/hello', `Bearer ${tokens.access_token}`)).status).toBe(200);
    offsetMs += 5_000;
    expect((await poll(d.device_code)).json()).toMatchObject({ error: 'invalid_grant' });
  });

  it('answers access_denied when the user denies, and expired_token after 10 minutes', async () => {
    const agent = await signInAgent(new GatewayAgent(port, U.device), PASSWORD);
    const denied = await start();
    const confirm = await agent.form('/.portcullis/cli/device', { csrf: agent.csrf, user_code: denied.user_code });
    expect((await agent.form('/.portcullis/cli/device', { ...hiddenFields(confirm.text()), decision: 'deny' })).status).toBe(200);
    offsetMs += 5_000;
    expect((await poll(denied.device_code)).json()).toMatchObject({ error: 'access_denied' });

    const late = await start();
    offsetMs += 601_000;
    expect((await poll(late.device_code)).json()).toMatchObject({ error: 'expired_token' });
    // The user code died with it.
    expect((await agent.form('/.portcullis/cli/device', { csrf: agent.csrf, user_code: late.user_code })).status).toBe(400);
  });

  it('limits wrong codes per user and needs CSRF', async () => {
    const agent = await signInAgent(new GatewayAgent(port, U.other), PASSWORD);
    const d = await start();
    expect((await agent.form('/.portcullis/cli/device', { csrf: 'nope', user_code: d.user_code })).status).toBe(403);
    for (let i = 0; i < 4; i++) expect((await agent.form('/.portcullis/cli/device', { csrf: agent.csrf, user_code: 'BBBB-BBBB' })).status).toBe(400);
    // One wrong code left (the fifth); then even the right code is refused for a while.
    expect((await agent.form('/.portcullis/cli/device', { csrf: agent.csrf, user_code: 'CCCC-CCCC' })).status).toBe(400);
    expect((await agent.form('/.portcullis/cli/device', { csrf: agent.csrf, user_code: d.user_code })).status).toBe(429);
  });
});

describe('key-bound tokens (DPoP, RFC 9449)', () => {
  it('issues a DPoP token usable only with fresh proofs from the key', async () => {
    const key = await newKey();
    const { tokens } = await login(U.bound, key);
    expect(tokens.token_type).toBe('DPoP');
    const t = tokens.access_token;
    const ok = await api('/hello', `DPoP ${t}`, ['DPoP', await proof(key, 'GET', '/hello', { token: t })]);
    expect(ok.status, ok.text()).toBe(200);
    expect(upstream.header('x-portcullis-user')).toEqual([U.bound]);

    const refused = (res: ClientResponse): void => {
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toContain('DPoP error="invalid_token"');
    };
    // Stolen token without the key: as Bearer, as DPoP without a proof, with a proof by another key.
    refused(await api('/hello', `Bearer ${t}`));
    refused(await api('/hello', `DPoP ${t}`));
    const thief = await newKey();
    refused(await api('/hello', `DPoP ${t}`, ['DPoP', await proof(thief, 'GET', '/hello', { token: t })]));
    // A replayed proof.
    const once = await proof(key, 'GET', '/hello', { token: t });
    expect((await api('/hello', `DPoP ${t}`, ['DPoP', once])).status).toBe(200);
    refused(await api('/hello', `DPoP ${t}`, ['DPoP', once]));
    // Wrong htu, wrong htm, stale iat, no ath.
    refused(await api('/hello', `DPoP ${t}`, ['DPoP', await proof(key, 'GET', '/other', { token: t })]));
    refused(await api('/hello', `DPoP ${t}`, ['DPoP', await proof(key, 'GET', '/hello', { token: t, htu: `http://evil.example/hello` })]));
    refused(await api('/hello', `DPoP ${t}`, ['DPoP', await proof(key, 'POST', '/hello', { token: t })]));
    refused(await api('/hello', `DPoP ${t}`, ['DPoP', await proof(key, 'GET', '/hello', { token: t, iat: Math.floor(clock() / 1000) - 120 })]));
    refused(await api('/hello', `DPoP ${t}`, ['DPoP', await proof(key, 'GET', '/hello')]));

    // Refresh needs the key too; with it, the new pair stays bound.
    const noKey = await post('/.portcullis/cli/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, ['DPoP', await proof(thief, 'POST', '/.portcullis/cli/token')]);
    expect(noKey.json()).toMatchObject({ error: 'invalid_dpop_proof' });
  });

  it('refuses a code bound to a key when the token request proves another key', async () => {
    const key = await newKey();
    const agent = await signInAgent(new GatewayAgent(port, U.bound), PASSWORD);
    const { verifier, challenge } = pkce();
    const cb = await authorize(agent, { challenge, state: 's', jkt: key.jkt });
    const exchange = (headers: string[]) => post('/.portcullis/cli/token', { grant_type: 'authorization_code', code: cb.get('code') ?? '', code_verifier: verifier, redirect_uri: redirectUri() }, headers);
    const other = await newKey();
    const res = await exchange(['DPoP', await proof(other, 'POST', '/.portcullis/cli/token')]);
    expect(res.status).toBe(400);
    expect(res.json()).toMatchObject({ error: 'invalid_dpop_proof' });
  });
});

describe('WebSockets with a key-bound token', () => {
  it('stays open across re-checks (the proof is not counted as its own replay) and closes once the token is revoked', async () => {
    const key = await newKey();
    const { tokens } = await login(U.bound, key);
    const t = tokens.access_token;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/echo`, { headers: { Host: host, Authorization: `DPoP ${t}`, DPoP: await proof(key, 'GET', '/ws/echo', { token: t }) } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${String(res.statusCode)}`)));
    });
    const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
    // Several re-checks (every 200 ms) pass with the same request and proof.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect((await post('/.portcullis/cli/revoke', { token: t })).status).toBe(200);
    const t0 = Date.now();
    expect(await closed).toBe(1008);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

describe('step-up (RFC 9470) for a CLI token', () => {
  it('challenges with a step_up_url naming the token; a browser step-up for it lets the same token in', async () => {
    const { agent, tokens } = await login(U.stepup);
    const t = `Bearer ${tokens.access_token}`;
    const first = await api('/admin/x', t);
    expect(first.status).toBe(401);
    expect(first.headers['www-authenticate']).toContain('insufficient_user_authentication');
    const { step_up_url: url } = first.json() as { step_up_url: string };
    const ref = new URL(url).searchParams.get('token') ?? '';
    expect(ref).toBe(createHash('sha256').update(tokens.access_token).digest('base64url'));
    expect(((await api('/.portcullis/me', t)).json() as { mfa: unknown }).mfa).toBeNull();

    const passkey = SoftAuthenticator.create({ origin: agent.origin, algorithm: 'ES256' });
    await agent.enrolPasskey(passkey);
    const options = await agent.post('/.portcullis/mfa/webauthn/authenticate/options', {});
    const res = await agent.post('/.portcullis/mfa/webauthn/authenticate', { response: passkey.authenticate((options.json() as { options: PublicKeyCredentialRequestOptionsJSON }).options), token: ref });
    expect(res.status, res.text()).toBe(200);
    expect((await api('/admin/x', t)).status).toBe(200);
    expect(upstream.header('x-portcullis-mfa')[0]).toMatch(/^webauthn;age=\d+$/);
    expect(((await api('/.portcullis/me', t)).json() as { mfa: { factor: string } }).mfa).toMatchObject({ factor: 'webauthn' });
  });
});

describe('discovery, the tokens page and audit', () => {
  it('lists only the routes and databases the caller could reach', async () => {
    const { tokens } = await login(U.list);
    const res = await api('/.portcullis/cli/routes', `Bearer ${tokens.access_token}`);
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({
      routes: [
        { id: 'admin', url: `http://localhost:${port}/admin` },
        { id: 'ws', url: `http://localhost:${port}/ws` },
        { id: 'home', url: `http://localhost:${port}/` },
      ],
      databases: [{ id: 'appdb', host: '127.0.0.1', port: pgPorts[0], sslmode: 'prefer' }],
    });
    expect((await send(port, { path: '/.portcullis/cli/routes', headers: ['Host', host, 'Accept', 'application/json'] })).status).toBe(401);
  });

  it('lists the user’s tokens (JSON with a token, page with a session) and revokes one with CSRF', async () => {
    const { agent, tokens } = await login(U.list);
    const second = await login(U.list);
    const listed = (await api('/.portcullis/tokens', `Bearer ${tokens.access_token}`)).json() as { tokens: { id: string; name: string; bound: boolean; current: boolean; expired: boolean }[] };
    expect(listed.tokens.length).toBeGreaterThanOrEqual(2);
    const mine = listed.tokens.find((x) => x.current);
    expect(mine).toMatchObject({ name: 'laptop', bound: false, expired: false });
    expect(JSON.stringify(listed)).not.toContain(tokens.access_token);

    const pageRes = await agent.get('/.portcullis/tokens');
    expect(pageRes.status).toBe(200);
    const secondRef = createHash('sha256').update(second.tokens.access_token).digest('base64url');
    expect(pageRes.text()).toContain(secondRef);
    // Without the CSRF token, or from another site: refused, the token still works.
    expect((await agent.form('/.portcullis/tokens/revoke', { csrf: 'x', id: secondRef })).status).toBe(403);
    const crossSite = await agent.request('POST', '/.portcullis/tokens/revoke', { body: new URLSearchParams({ csrf: agent.csrf, id: secondRef }).toString(), contentType: 'application/x-www-form-urlencoded', headers: ['Origin', 'http://evil.example'] });
    expect(crossSite.status).toBe(403);
    expect((await api('/hello', `Bearer ${second.tokens.access_token}`)).status).toBe(200);
    const ok = await agent.form('/.portcullis/tokens/revoke', { csrf: agent.csrf, id: secondRef });
    expect(ok.status).toBe(200);
    expect(ok.text()).toContain('Revoked laptop');
    expect((await api('/hello', `Bearer ${second.tokens.access_token}`)).status).toBe(401);
    // Another user cannot revoke it by reference.
    const other = await login(U.other);
    const theirs = await api('/.portcullis/tokens', `Bearer ${other.tokens.access_token}`);
    expect(JSON.stringify(theirs.json())).not.toContain(createHash('sha256').update(tokens.access_token).digest('base64url'));
    const foreign = await post('/.portcullis/tokens/revoke', { id: createHash('sha256').update(tokens.access_token).digest('base64url') }, ['Authorization', `Bearer ${other.tokens.access_token}`]);
    expect(foreign.status).toBe(404);
    expect((await api('/hello', `Bearer ${tokens.access_token}`)).status).toBe(200);
  });

  it('records issue, refresh, revoke and refusals with the token reference, never the token', async () => {
    const { tokens } = await login(U.other);
    const ref = createHash('sha256').update(tokens.access_token).digest('base64url');
    const refreshed = (await post('/.portcullis/cli/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token })).json() as TokenAnswer;
    await post('/.portcullis/cli/revoke', { token: refreshed.refresh_token });
    await post('/.portcullis/cli/token', { grant_type: 'authorization_code', code: randomBytes(32).toString('base64url'), code_verifier: pkce().verifier, redirect_uri: redirectUri() });
    let records: AuditRecord[] = [];
    await eventually(async () => {
      records = (await auditRecords()).filter((r) => r.kind === 'auth' && String(r.event?.action).startsWith('cli_token_'));
      return records.some((r) => r.event?.action === 'cli_token_revoke' && r.identity?.user === U.other);
    });
    const issue = records.find((r) => r.event?.action === 'cli_token_issue' && r.event.token === ref);
    expect(issue).toMatchObject({ decision: 'allow', identity: { user: U.other }, event: { label: 'laptop', bound: false } });
    expect(records.some((r) => r.event?.action === 'cli_token_refresh' && r.decision === 'allow' && r.identity?.user === U.other)).toBe(true);
    expect(records.some((r) => r.event?.action === 'cli_token_refused' && r.decision === 'deny' && (r.reason ?? '').startsWith('invalid_grant'))).toBe(true);
    const all = readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE)
      .map((r) => r.line)
      .join('\n');
    expect(all).not.toContain(tokens.access_token);
    expect(all).not.toContain(tokens.refresh_token);
    expect(all).not.toContain(refreshed.access_token);
  });
});

describe('identity.cli_tokens settings', () => {
  it('require_binding refuses unbound requests; mfa demands a fresh step-up before the confirmation page; enabled: false turns it all off', async () => {
    // This gateway runs on real time (the shared one's clock was moved forward).
    const realNow = () => Math.floor(Date.now() / 1000);
    const [p2 = 0] = await freePorts(1);
    const h2 = `localhost:${p2}`;
    const strict = await startGateway(
      {
        server: { public_url: `http://${h2}`, instance_id: 'gw-cli-strict' },
        identity: { cli_tokens: { require_binding: true, mfa: { factors: ['webauthn'], max_age: '5m' }, ttl: '1h' } },
        routes: [{ id: 'home', host: 'localhost', path: '/', upstream: upstream.url, allow: { groups: ['eng'] } }],
      },
      { listen: `127.0.0.1:${p2}` },
    );
    try {
      await addUser(join(strict.dir, 'users.yaml'), { name: 'strict', groups: ['eng'], password: PASSWORD });
      const agent = await signInAgent(new GatewayAgent(p2, 'strict'), PASSWORD);
      const key = await newKey();
      const { verifier, challenge } = pkce();
      const q = authorizeQuery({ challenge, state: 's', jkt: key.jkt });
      // No second factor yet: to the step-up page, and back here afterwards.
      const first = await agent.get(`/.portcullis/cli/authorize?${q}`);
      expect(first.status).toBe(302);
      expect(first.headers.location).toBe(`/.portcullis/mfa?rd=${encodeURIComponent(`/.portcullis/cli/authorize?${q}`)}&factors=webauthn`);
      const passkey = SoftAuthenticator.create({ origin: agent.origin, algorithm: 'ES256' });
      await agent.enrolPasskey(passkey);
      await agent.stepUp(passkey);
      // Unbound: refused.
      const unbound = await agent.get(`/.portcullis/cli/authorize?${authorizeQuery({ challenge, state: 's' })}`);
      expect(unbound.status).toBe(400);
      expect(unbound.headers.location).toBeUndefined();
      const device = await send(p2, { method: 'POST', path: '/.portcullis/cli/device', headers: ['Host', h2, 'Content-Type', 'application/x-www-form-urlencoded', 'Content-Length', '6'], body: 'name=x' });
      expect(device.json()).toMatchObject({ error: 'invalid_request' });
      // Bound: issued, living the configured hour, carrying the session's check.
      const pageRes = await agent.get(`/.portcullis/cli/authorize?${q}`);
      expect(pageRes.status).toBe(200);
      const res = await agent.form('/.portcullis/cli/authorize', { ...hiddenFields(pageRes.text()), decision: 'approve' });
      const code = new URL(res.headers.location ?? '').searchParams.get('code') ?? '';
      const htu = `http://${h2}/.portcullis/cli/token`;
      const body = new URLSearchParams({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirectUri() }).toString();
      const tok = await send(p2, { method: 'POST', path: '/.portcullis/cli/token', headers: ['Host', h2, 'Content-Type', 'application/x-www-form-urlencoded', 'Content-Length', String(body.length), 'DPoP', await proof(key, 'POST', '', { htu, iat: realNow() })], body });
      expect(tok.status, tok.text()).toBe(200);
      const answer = tok.json() as TokenAnswer;
      expect(answer.token_type).toBe('DPoP');
      expect(answer.expires_in).toBeLessThanOrEqual(3600);
      expect(answer.expires_in).toBeGreaterThan(3500);
      const me = await send(p2, { path: '/.portcullis/me', headers: ['Host', h2, 'Authorization', `DPoP ${answer.access_token}`, 'DPoP', await proof(key, 'GET', '', { htu: `http://${h2}/.portcullis/me`, token: answer.access_token, iat: realNow() })] });
      expect(me.json()).toMatchObject({ user: 'strict', auth: 'cli', mfa: { factor: 'webauthn' } });

      // enabled: false — the endpoints are gone and the issued token stops working.
      strict.app.applyConfig({ ...strict.app.snapshot().config, identity: { ...strict.app.snapshot().config.identity, cli_tokens: { ...strict.app.snapshot().config.identity.cli_tokens, enabled: false } } });
      expect((await agent.get(`/.portcullis/cli/authorize?${q}`)).status).toBe(404);
      const off = await send(p2, { path: '/', headers: ['Host', h2, 'Accept', 'application/json', 'Authorization', `DPoP ${answer.access_token}`, 'DPoP', await proof(key, 'GET', '', { htu: `http://${h2}/`, token: answer.access_token, iat: realNow() })] });
      expect(off.status).toBe(401);
    } finally {
      await strict.stop();
    }
  });
});

describe('in a real browser', () => {
  it('chromium signs in, approves, and follows the redirect to an IPv4 and an IPv6 loopback listener (CSP form-action allows it)', async () => {
    const v6 = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://[::1]');
      if (u.pathname !== '/favicon.ico') callbacks.push(u.searchParams);
      res.end('ok');
    });
    await new Promise<void>((resolve) => v6.listen(0, '::1', resolve));
    const v6Port = (v6.address() as AddressInfo).port;
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      for (const redirect of [redirectUri(), `http://[::1]:${v6Port}/callback`]) {
        const { challenge } = pkce();
        const before = callbacks.length;
        await page.goto(`http://${host}/.portcullis/cli/authorize?${authorizeQuery({ challenge, state: 'browser-state', redirect })}`);
        if (page.url().includes('/.portcullis/login')) {
          await page.fill('input[name=username]', U.other);
          await page.fill('input[name=password]', PASSWORD);
          await page.click('button[type=submit]');
          await page.waitForURL(/\/\.portcullis\/cli\/authorize/);
        }
        await page.click('button[value=approve]');
        await page.waitForURL((u) => u.hostname === '127.0.0.1' || u.hostname === '[::1]');
        expect(callbacks.length, redirect).toBe(before + 1);
        expect(callbacks[before]?.get('state')).toBe('browser-state');
        expect(callbacks[before]?.get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      }
    } finally {
      await browser.close();
      await new Promise<void>((resolve) => v6.close(() => resolve()));
    }
  });
});
