/**
 * Step-up MFA end to end without a browser: real sockets, a real gateway, a recording upstream and
 * the software WebAuthn authenticator, driving the JSON API and the form posts the pages make.
 * Every refusal the product promises has its own test, asserting the answer that would change if the
 * protection were missing (and, where it matters, that the same request succeeds once the refused
 * condition is gone).
 *
 * One gateway is shared; each test signs in its own users. The gateway's clock is injected (real
 * time plus an offset the tests move forward), and so is the memory store's, so that enrolment
 * windows, rate-limit windows and TOTP steps pass without waiting.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/record.js';
import { addUser } from '../../src/identity/local-users.js';
import { totpCodeForStep, totpStep } from '../../src/mfa/totp.js';
import { createMemoryStore, type MemoryStore } from '../../src/store/index.js';
import { readFileSinkRecords } from '../support/audit-records.js';
import { startBearerIssuer, type BearerIssuer } from '../support/bearer-issuer.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send, type ClientResponse } from '../support/http-client.js';
import { freePorts } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';
import { SoftAuthenticator, type CeremonyOverrides } from '../support/soft-authenticator.js';

const INSTANCE = 'gw-mfa-api';
const AUDIENCE = 'portcullis-api';
const PASSWORD = 'mfa api password 1';
/** Shorter than the 5-minute life of a WebAuthn challenge, so that a challenge can outlive the window. */
const ENROLL_WITHIN_MS = 2 * 60_000;
const ATTEMPTS = { perUser: 3, windowMs: 60_000 };
const STEP_MS = 30_000;

/** One user per test (added before the first sign-in: the users file is re-read at most once a second). */
const U = {
  passkey: 'u-passkey',
  origin: 'u-origin',
  rpId: 'u-rpid',
  replay: 'u-replay',
  sessions: 'u-sessions',
  clone: 'u-clone',
  uvPreferred: 'u-uv',
  late: 'u-late',
  second: 'u-second',
  remove: 'u-remove',
  recovery: 'u-recovery',
  csrfJson: 'u-csrf-json',
  csrfForm: 'u-csrf-form',
  totp: 'u-totp',
  totpOrder: 'u-totp-order',
  totpWindow: 'u-totp-window',
  totpLimit: 'u-totp-limit',
  pipeGet: 'u-pipe-get',
  pipePost: 'u-pipe-post',
  pipeApi: 'u-pipe-api',
  bearer: 'u-bearer',
  bearerOther: 'u-bearer-other',
  audit: 'u-audit',
} as const;

let offsetMs = 0;
/** The gateway's clock: real time plus an offset the tests move forward. */
const clock = (): number => Date.now() + offsetMs;

let port: number;
let base: string;
let store: MemoryStore;
let gw: TestGateway;
let upstream: RecordingUpstream;
let issuer: BearerIssuer;

/** The shared gateway's config (other gateways in this file start from it). */
function gatewayConfig(publicUrl: string, mfa: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    server: { public_url: publicUrl, instance_id: INSTANCE },
    identity: { bearer: [{ issuer: issuer.issuer, audience: AUDIENCE, jwks_uri: issuer.jwksUri }] },
    mfa: { enroll_within: '2m', totp: { attempts: { per_user: ATTEMPTS.perUser, window: '1m' } }, ...mfa },
    routes: [
      { id: 'admin', host: 'localhost', path: '/admin', upstream: upstream.url, allow: { groups: ['eng'] }, mfa: { factors: ['webauthn', 'totp'], max_age: '10m' } },
      { id: 'home', host: 'localhost', path: '/', upstream: upstream.url, allow: { groups: ['eng'] } },
    ],
  };
}

async function addUsers(dir: string, names: readonly string[]): Promise<void> {
  // Hashing runs in parallel on the thread pool; the users file's lock serializes the writes.
  await Promise.all(names.map((name) => addUser(join(dir, 'users.yaml'), { name, groups: ['eng'], password: PASSWORD })));
}

beforeAll(async () => {
  [port = 0] = await freePorts(1);
  base = `http://localhost:${port}`;
  upstream = await startRecordingUpstream();
  issuer = await startBearerIssuer();
  store = createMemoryStore({ now: clock });
  gw = await startGateway(gatewayConfig(base), { listen: `127.0.0.1:${port}`, now: clock, store, allowInsecureOidc: true });
  await addUsers(gw.dir, Object.values(U));
});

afterAll(async () => {
  await gw.stop();
  await store.close();
  await upstream.close();
  await issuer.close();
});

// ---------------------------------------------------------------------------------------------
// A browser-less client
// ---------------------------------------------------------------------------------------------

interface RequestOptions {
  readonly accept?: string;
  /** More headers, flat `[name, value, …]`. */
  readonly headers?: readonly string[];
  readonly body?: string;
  readonly contentType?: string;
}

/** What the JSON API answers on refusal. */
interface ApiError {
  readonly error: string;
  readonly message: string;
}

/** One browser profile on one gateway: its cookies and its session's CSRF token. */
class Agent {
  readonly cookies = new Map<string, string>();
  /** The session's CSRF token, as the MFA pages carry it. */
  csrf = '';

  constructor(
    readonly port: number,
    readonly user: string,
  ) {}

  get host(): string {
    return `localhost:${this.port}`;
  }

  get origin(): string {
    return `http://${this.host}`;
  }

  async request(method: string, path: string, opts: RequestOptions = {}): Promise<ClientResponse> {
    const headers = ['Host', this.host, 'Accept', opts.accept ?? 'text/html'];
    if (this.cookies.size > 0) headers.push('Cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    if (opts.body !== undefined) headers.push('Content-Type', opts.contentType ?? 'application/octet-stream', 'Content-Length', String(Buffer.byteLength(opts.body)));
    headers.push(...(opts.headers ?? []));
    const res = await send(this.port, { method, path, headers, ...(opts.body === undefined ? {} : { body: opts.body }) });
    for (const line of res.headers['set-cookie'] ?? []) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/;\s*Max-Age=0(;|$)/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  get(path: string, accept = 'text/html'): Promise<ClientResponse> {
    return this.request('GET', path, { accept });
  }

  /** A form post as the pages make it: same-origin `Origin` unless told otherwise (null: none). */
  form(path: string, fields: Record<string, string>, opts: { origin?: string | null } = {}): Promise<ClientResponse> {
    const origin = opts.origin === undefined ? this.origin : opts.origin;
    return this.request('POST', path, {
      body: new URLSearchParams(fields).toString(),
      contentType: 'application/x-www-form-urlencoded',
      headers: origin === null ? [] : ['Origin', origin],
    });
  }

  /** A JSON post as mfa.js makes it; each protection can be left out or falsified. */
  api(path: string, body: unknown, opts: { csrf?: string | null; origin?: string | null; contentType?: string; headers?: readonly string[] } = {}): Promise<ClientResponse> {
    const csrf = opts.csrf === undefined ? this.csrf : opts.csrf;
    const origin = opts.origin === undefined ? this.origin : opts.origin;
    return this.request('POST', `/.portcullis/mfa/${path}`, {
      accept: 'application/json',
      body: JSON.stringify(body),
      contentType: opts.contentType ?? 'application/json',
      headers: [...(csrf === null ? [] : ['X-Portcullis-CSRF', csrf]), ...(origin === null ? [] : ['Origin', origin]), ...(opts.headers ?? [])],
    });
  }
}

function unescapeAttribute(v: string): string {
  return v.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** The CSRF token an MFA page carries on `<main id="mfa">`. */
function pageCsrf(res: ClientResponse): string {
  const m = /<main id="mfa"[^>]*\sdata-csrf="([^"]*)"/.exec(res.text());
  if (m?.[1] === undefined) throw new Error(`no data-csrf in:\n${res.text().slice(0, 500)}`);
  return unescapeAttribute(m[1]);
}

function hidden(res: ClientResponse, name: string): string {
  const m = new RegExp(`<input type="hidden" name="${name}" value="([^"]*)"`).exec(res.text());
  if (m?.[1] === undefined) throw new Error(`no hidden input ${name} in:\n${res.text().slice(0, 500)}`);
  return unescapeAttribute(m[1]);
}

/** Signs `user` in with the password form and reads the session's CSRF token from the factors page. */
async function signIn(user: string, gatewayPort = port): Promise<Agent> {
  const a = new Agent(gatewayPort, user);
  const login = await a.get('/.portcullis/login');
  const res = await a.form('/.portcullis/login', { username: user, password: PASSWORD, csrf: hidden(login, 'csrf'), rd: '/' });
  expect(res.status, res.text().slice(0, 300)).toBe(303);
  const page = await a.get('/.portcullis/mfa/enroll');
  expect(page.status).toBe(200);
  a.csrf = pageCsrf(page);
  return a;
}

/** Status and API error code of a response, for one readable assertion. */
function outcome(res: ClientResponse): { status: number; error: string | undefined } {
  const type = res.headers['content-type'] ?? '';
  return { status: res.status, error: type.startsWith('application/json') ? (res.json() as Partial<ApiError>).error : undefined };
}

function newAuthenticator(origin = base): SoftAuthenticator {
  return SoftAuthenticator.create({ origin, algorithm: 'ES256' });
}

async function registrationOptions(a: Agent): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const res = await a.api('webauthn/register/options', {});
  expect(outcome(res)).toEqual({ status: 200, error: undefined });
  return (res.json() as { options: PublicKeyCredentialCreationOptionsJSON }).options;
}

async function authenticationOptions(a: Agent): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const res = await a.api('webauthn/authenticate/options', {});
  expect(outcome(res)).toEqual({ status: 200, error: undefined });
  return (res.json() as { options: PublicKeyCredentialRequestOptionsJSON }).options;
}

/** Registers `auth` as a passkey of the signed-in user; returns the API's answer (must be 200). */
async function enrolPasskey(a: Agent, auth: SoftAuthenticator, overrides: CeremonyOverrides = {}): Promise<{ ok: true; redirect: string; recovery_codes?: string[] }> {
  const options = await registrationOptions(a);
  const res = await a.api('webauthn/register', { response: auth.register(options, overrides), name: 'soft key' });
  expect(res.status, res.text()).toBe(200);
  return res.json() as { ok: true; redirect: string; recovery_codes?: string[] };
}

/** A passkey step-up: fresh options, the authenticator's answer (with `overrides`), posted with `extra` body fields. */
async function stepUpPasskey(a: Agent, auth: SoftAuthenticator, overrides: CeremonyOverrides = {}, extra: Record<string, string> = {}): Promise<ClientResponse> {
  const options = await authenticationOptions(a);
  return a.api('webauthn/authenticate', { response: auth.authenticate(options, overrides), ...extra });
}

/** Passkeys listed on the factors page. */
async function passkeyCount(a: Agent): Promise<number> {
  const page = await a.get('/.portcullis/mfa/enroll');
  return page.text().match(/<td>Passkey<\/td>/g)?.length ?? 0;
}

/** Moves the clock forward to the middle of a TOTP step, so that a test's real run time never crosses a step. */
function toStepMiddle(): void {
  const r = clock() % STEP_MS;
  offsetMs += r <= STEP_MS / 2 ? STEP_MS / 2 - r : STEP_MS + STEP_MS / 2 - r;
}

function advance(ms: number): void {
  offsetMs += ms;
}

/** The TOTP code `delta` steps from now. */
function codeAt(secret: string, delta = 0): string {
  return totpCodeForStep(secret, totpStep(clock()) + delta);
}

/** A well-formed code that matches no step of the ±1 window. */
function wrongCode(secret: string, salt: number): string {
  const valid = new Set([-1, 0, 1].map((d) => codeAt(secret, d)));
  for (let n = salt; ; n += 7919) {
    const c = String(n % 1_000_000).padStart(6, '0');
    if (!valid.has(c)) return c;
  }
}

/** Adds an authenticator app with the forms: begin, read the key from the page, confirm with a computed code. */
async function enrolTotp(a: Agent): Promise<{ secret: string; confirm: ClientResponse }> {
  const begin = await a.form('/.portcullis/mfa/totp/enroll', { csrf: a.csrf, rd: '/' });
  expect(begin.status, begin.text().slice(0, 500)).toBe(200);
  const shown = /<code id="totp-secret">([^<]*)<\/code>/.exec(begin.text())?.[1];
  if (shown === undefined) throw new Error('no #totp-secret on the page');
  const secret = shown.replace(/\s+/g, '');
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  const confirm = await a.form('/.portcullis/mfa/totp/confirm', { csrf: a.csrf, rd: '/', code: codeAt(secret), name: 'phone' });
  return { secret, confirm };
}

function totpStepUp(a: Agent, code: string, rd = '/admin/x'): Promise<ClientResponse> {
  return a.form('/.portcullis/mfa/totp', { csrf: a.csrf, rd, code });
}

/** The recovery codes shown on the page after a first factor. */
function recoveryCodesOn(res: ClientResponse): string[] {
  return [...res.text().matchAll(/<li><code>([^<]*)<\/code><\/li>/g)].map((m) => m[1] ?? '');
}

function lastMfaHeader(): string[] {
  return upstream.header('x-portcullis-mfa');
}

async function auditRecords(user: string): Promise<AuditRecord[]> {
  expect(await gw.app.audit.flush(5000)).toBe(true);
  return readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE)
    .map((r) => r.record)
    .filter((r) => r.kind === 'auth' && r.identity?.user === user);
}

async function metricsText(): Promise<string> {
  return (await fetch(`${gw.adminUrl}/metrics`)).text();
}

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

// ---------------------------------------------------------------------------------------------

describe('passkeys over the JSON API', () => {
  it('enrols a passkey, then steps up with it: the upstream sees X-Portcullis-MFA and an assertion with amr mfa+hwk', async () => {
    const auth = newAuthenticator();
    const a = await signIn(U.passkey);
    expect((await a.get('/admin/x')).status).toBe(302);
    const enrolled = await enrolPasskey(a, auth);
    expect(enrolled.recovery_codes).toHaveLength(10);
    // Enrolling is itself a step-up with the new passkey.
    expect((await a.get('/admin/x')).status).toBe(200);
    expect(lastMfaHeader()).toEqual(['webauthn;age=0']);

    // A new session of the same user steps up with the registered passkey.
    const b = await signIn(U.passkey);
    expect((await b.get('/admin/y')).status).toBe(302);
    const stepped = await stepUpPasskey(b, auth, {}, { rd: '/admin/y' });
    expect(stepped.status, stepped.text()).toBe(200);
    expect(stepped.json()).toEqual({ ok: true, redirect: '/admin/y' });
    const res = await b.get('/admin/y');
    expect(res.status).toBe(200);
    expect(lastMfaHeader()).toEqual(['webauthn;age=0']);
    const [assertion = ''] = upstream.header('x-portcullis-assertion');
    const jwks = (await b.get('/.portcullis/jwks.json', 'application/json')).json() as JSONWebKeySet;
    const { payload } = await jwtVerify(assertion, createLocalJWKSet(jwks), { issuer: base, audience: 'admin' });
    expect(payload.sub).toBe(U.passkey);
    expect(payload.amr).toEqual(expect.arrayContaining(['pwd', 'mfa', 'hwk']));
    expect(decodeJwt(assertion).amr).toEqual(payload.amr);
  });
});

describe('refused passkey assertions', () => {
  it('refuses an assertion made for another origin', async () => {
    const auth = newAuthenticator();
    const a = await signIn(U.origin);
    await enrolPasskey(a, auth);
    const b = await signIn(U.origin);
    const res = await stepUpPasskey(b, auth, { origin: `http://evil.localhost:${port}` });
    expect(outcome(res)).toEqual({ status: 401, error: 'wrong-origin' });
    expect((await b.get('/admin/x')).status).toBe(302);
    // The same authenticator on the right origin is accepted.
    expect((await stepUpPasskey(b, auth)).status).toBe(200);
  });

  it('refuses an assertion scoped to another RP ID', async () => {
    const auth = newAuthenticator();
    const a = await signIn(U.rpId);
    await enrolPasskey(a, auth);
    const b = await signIn(U.rpId);
    const res = await stepUpPasskey(b, auth, { rpId: 'evil.localhost' });
    expect(outcome(res)).toEqual({ status: 401, error: 'wrong-rp' });
    expect((await b.get('/admin/x')).status).toBe(302);
    expect((await stepUpPasskey(b, auth)).status).toBe(200);
  });

  it('uses a challenge once: replaying a successful assertion is refused, also after new options', async () => {
    const auth = newAuthenticator();
    const a = await signIn(U.replay);
    await enrolPasskey(a, auth);
    const b = await signIn(U.replay);
    const options = await authenticationOptions(b);
    const body = { response: auth.authenticate(options) };
    expect((await b.api('webauthn/authenticate', body)).status).toBe(200);
    expect(outcome(await b.api('webauthn/authenticate', body))).toEqual({ status: 400, error: 'no-challenge' });
    // A fresh challenge does not revive the old assertion either.
    await authenticationOptions(b);
    expect(outcome(await b.api('webauthn/authenticate', body))).toEqual({ status: 401, error: 'challenge-mismatch' });
  });

  it('binds a challenge to the session that asked for it', async () => {
    const auth = newAuthenticator();
    const owner = await signIn(U.sessions);
    await enrolPasskey(owner, auth);
    const a = await signIn(U.sessions);
    const b = await signIn(U.sessions);
    const optionsA = await authenticationOptions(a);
    await authenticationOptions(b);
    const forA = { response: auth.authenticate(optionsA) };
    expect(outcome(await b.api('webauthn/authenticate', forA))).toEqual({ status: 401, error: 'challenge-mismatch' });
    expect((await b.get('/admin/x')).status).toBe(302);
    // The assertion itself was good: the session that asked for the challenge may use it.
    expect((await a.api('webauthn/authenticate', forA)).status).toBe(200);
    expect((await a.get('/admin/x')).status).toBe(200);
  });

  it('refuses a cloned authenticator whose signature counter went backwards', async () => {
    const auth = newAuthenticator();
    const a = await signIn(U.clone);
    await enrolPasskey(a, auth);
    const clone = auth.clone();
    expect((await stepUpPasskey(a, auth)).status).toBe(200);
    const b = await signIn(U.clone);
    const res = await stepUpPasskey(b, clone);
    expect(outcome(res)).toEqual({ status: 401, error: 'counter-regression' });
    expect((await b.get('/admin/x')).status).toBe(302);
    // The original, whose counter keeps growing, still works.
    expect((await stepUpPasskey(b, auth)).status).toBe(200);
  });

  it('refuses an assertion without user verification when user_verification is required (and accepts it when preferred)', async () => {
    // preferred (the shared gateway): UV missing is fine.
    const lax = newAuthenticator();
    const p = await signIn(U.uvPreferred);
    await enrolPasskey(p, lax);
    expect((await stepUpPasskey(p, lax, { uv: false })).status).toBe(200);

    const [strictPort = 0] = await freePorts(1);
    const strictBase = `http://localhost:${strictPort}`;
    const strict = await startGateway(gatewayConfig(strictBase, { webauthn: { user_verification: 'required' } }), { listen: `127.0.0.1:${strictPort}`, now: clock });
    try {
      await addUsers(strict.dir, ['u-uv-required']);
      const auth = newAuthenticator(strictBase);
      const a = await signIn('u-uv-required', strictPort);
      const options = await registrationOptions(a);
      expect(outcome(await a.api('webauthn/register', { response: auth.register(options, { uv: false }) }))).toEqual({ status: 401, error: 'user-verification-missing' });
      await enrolPasskey(a, auth);
      const b = await signIn('u-uv-required', strictPort);
      expect(outcome(await stepUpPasskey(b, auth, { uv: false }))).toEqual({ status: 401, error: 'user-verification-missing' });
      expect((await b.get('/admin/x')).status).toBe(302);
      expect((await stepUpPasskey(b, auth)).status).toBe(200);
    } finally {
      await strict.stop();
    }
  });
});

describe('enrolment rules', () => {
  it('refuses a first factor once enroll_within has passed since sign-in', async () => {
    const auth = newAuthenticator();
    const a = await signIn(U.late);
    const options = await registrationOptions(a);
    advance(ENROLL_WITHIN_MS + 1000);
    // Both the finish (with options fetched in time) and new options are refused.
    expect(outcome(await a.api('webauthn/register', { response: auth.register(options) }))).toEqual({ status: 403, error: 'not-allowed' });
    expect(outcome(await a.api('webauthn/register/options', {}))).toEqual({ status: 403, error: 'not-allowed' });
    expect((await a.form('/.portcullis/mfa/totp/enroll', { csrf: a.csrf, rd: '/' })).status).toBe(403);
    expect(await passkeyCount(a)).toBe(0);
    // Right after a new sign-in it is allowed.
    const b = await signIn(U.late);
    await enrolPasskey(b, auth);
    expect(await passkeyCount(b)).toBe(1);
  });

  it('refuses a second factor without a fresh step-up, and accepts it right after one', async () => {
    const first = newAuthenticator();
    const second = newAuthenticator();
    await enrolPasskey(await signIn(U.second), first);
    const a = await signIn(U.second);
    expect(outcome(await a.api('webauthn/register/options', {}))).toEqual({ status: 403, error: 'not-allowed' });
    expect((await a.form('/.portcullis/mfa/totp/enroll', { csrf: a.csrf, rd: '/' })).status).toBe(403);
    expect((await stepUpPasskey(a, first)).status).toBe(200);
    const added = await enrolPasskey(a, second);
    expect(added.recovery_codes).toBeUndefined();
    expect(await passkeyCount(a)).toBe(2);
    // A step-up older than enroll_within no longer counts.
    advance(ENROLL_WITHIN_MS + 1000);
    expect(outcome(await a.api('webauthn/register/options', {}))).toEqual({ status: 403, error: 'not-allowed' });
  });

  it('refuses removing a factor without a fresh step-up, and removes it right after one', async () => {
    const keep = newAuthenticator();
    const drop = newAuthenticator();
    const owner = await signIn(U.remove);
    await enrolPasskey(owner, keep);
    await enrolPasskey(owner, drop);
    const a = await signIn(U.remove);
    const refused = await a.form('/.portcullis/mfa/remove', { csrf: a.csrf, rd: '/', kind: 'webauthn', id: drop.credentialId });
    expect(refused.status).toBe(403);
    expect(await passkeyCount(a)).toBe(2);
    expect((await stepUpPasskey(a, keep)).status).toBe(200);
    const removed = await a.form('/.portcullis/mfa/remove', { csrf: a.csrf, rd: '/', kind: 'webauthn', id: drop.credentialId });
    expect(removed.status).toBe(303);
    expect(removed.headers.location).toContain('done=removed');
    expect(await passkeyCount(a)).toBe(1);
    // The removed passkey no longer steps up.
    expect(outcome(await stepUpPasskey(a, drop, { ignoreCredentialLists: true }))).toEqual({ status: 401, error: 'unknown-credential' });
  });

  it('gives 10 single-use recovery codes at first enrolment; one allows managing factors but not an mfa route', async () => {
    const auth = newAuthenticator();
    const { recovery_codes: codes = [] } = await enrolPasskey(await signIn(U.recovery), auth);
    expect(codes).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    for (const c of codes) expect(c).toMatch(/^[0-9a-z]{5}(-[0-9a-z]{5}){3}$/);

    const a = await signIn(U.recovery);
    expect(outcome(await a.api('webauthn/register/options', {}))).toEqual({ status: 403, error: 'not-allowed' });
    const used = await a.form('/.portcullis/mfa/recovery', { csrf: a.csrf, rd: '/', code: codes[0] ?? '' });
    expect(used.status).toBe(303);
    expect(used.headers.location).toBe('/.portcullis/mfa/enroll?done=recovered');
    // The route's mfa is not satisfied by the recovery code …
    const nav = await a.get('/admin/x');
    expect(nav.status).toBe(302);
    expect(nav.headers.location).toBe('/.portcullis/mfa?rd=%2Fadmin%2Fx');
    expect((await a.get('/admin/x', 'application/json')).status).toBe(401);
    // … but managing factors is now allowed (and registering a passkey is a step-up with it).
    await enrolPasskey(a, newAuthenticator());
    expect(await passkeyCount(a)).toBe(2);

    // Single use: the same code is refused in another session; an unused one works there.
    const b = await signIn(U.recovery);
    const again = await b.form('/.portcullis/mfa/recovery', { csrf: b.csrf, rd: '/', code: codes[0] ?? '' });
    expect(again.status).toBe(401);
    expect(again.text()).toContain('already used');
    expect(outcome(await b.api('webauthn/register/options', {}))).toEqual({ status: 403, error: 'not-allowed' });
    expect((await b.form('/.portcullis/mfa/recovery', { csrf: b.csrf, rd: '/', code: codes[1] ?? '' })).status).toBe(303);
  });
});

describe('CSRF on the MFA endpoints', () => {
  it('refuses JSON posts without the CSRF header, with a wrong one, from another origin or as text/plain, and enrols nothing', async () => {
    const auth = newAuthenticator();
    const a = await signIn(U.csrfJson);
    const bad = [
      { csrf: null, status: 403, error: 'csrf' },
      { csrf: `${a.csrf}x`, status: 403, error: 'csrf' },
      { origin: 'http://evil.example', status: 403, error: 'csrf' },
      { headers: ['Sec-Fetch-Site', 'cross-site'], origin: null, status: 403, error: 'csrf' },
      { contentType: 'text/plain', status: 400, error: 'malformed' },
    ] as const;
    for (const { status, error, ...opts } of bad) {
      expect(outcome(await a.api('webauthn/register/options', {}, opts)), JSON.stringify(opts)).toEqual({ status, error });
    }
    const options = await registrationOptions(a);
    const body = { response: auth.register(options) };
    for (const { status, error, ...opts } of bad) {
      expect(outcome(await a.api('webauthn/register', body, opts)), JSON.stringify(opts)).toEqual({ status, error });
    }
    expect(await passkeyCount(a)).toBe(0);
    // The refused requests neither used up the challenge nor the response: posted properly, it enrols.
    expect((await a.api('webauthn/register', body)).status).toBe(200);
    expect(await passkeyCount(a)).toBe(1);
  });

  it('refuses the authenticator-app form posts without or with a wrong csrf field, or from another origin', async () => {
    const a = await signIn(U.csrfForm);
    expect((await a.form('/.portcullis/mfa/totp/enroll', { rd: '/' })).status).toBe(403);
    expect((await a.form('/.portcullis/mfa/totp/enroll', { csrf: `${a.csrf}x`, rd: '/' })).status).toBe(403);
    expect((await a.form('/.portcullis/mfa/totp/enroll', { csrf: a.csrf, rd: '/' }, { origin: 'http://evil.example' })).status).toBe(403);
    const begin = await a.form('/.portcullis/mfa/totp/enroll', { csrf: a.csrf, rd: '/' });
    expect(begin.status).toBe(200);
    const secret = (/<code id="totp-secret">([^<]*)<\/code>/.exec(begin.text())?.[1] ?? '').replace(/\s+/g, '');
    expect((await a.form('/.portcullis/mfa/totp/confirm', { code: codeAt(secret), rd: '/' })).status).toBe(403);
    expect((await a.form('/.portcullis/mfa/totp/confirm', { csrf: 'forged', code: codeAt(secret), rd: '/' })).status).toBe(403);
    const page = await a.get('/.portcullis/mfa/enroll');
    expect(page.text()).toContain('No second factor yet.');
  });
});

describe('authenticator apps (TOTP)', () => {
  it('enrols with the forms, steps up with a code, and refuses the same code twice', async () => {
    toStepMiddle();
    const a = await signIn(U.totp);
    const { secret, confirm } = await enrolTotp(a);
    expect(confirm.status).toBe(200);
    expect(recoveryCodesOn(confirm)).toHaveLength(10);
    expect((await a.get('/admin/x')).status).toBe(200);
    expect(lastMfaHeader()).toEqual(['totp;age=0']);

    advance(STEP_MS);
    const code = codeAt(secret);
    const b = await signIn(U.totp);
    expect((await b.get('/admin/x')).status).toBe(302);
    const ok = await totpStepUp(b, code);
    expect(ok.status).toBe(303);
    expect(ok.headers.location).toBe('/admin/x');
    expect((await b.get('/admin/x')).status).toBe(200);
    expect(lastMfaHeader()).toEqual(['totp;age=0']);
    const [assertion = ''] = upstream.header('x-portcullis-assertion');
    expect(decodeJwt(assertion).amr).toEqual(expect.arrayContaining(['mfa', 'otp']));

    const c = await signIn(U.totp);
    const replay = await totpStepUp(c, code);
    expect(replay.status).toBe(401);
    expect(replay.text()).toContain('already used');
    expect((await c.get('/admin/x')).status).toBe(302);
  });

  it('refuses an earlier code after a later one was used', async () => {
    toStepMiddle();
    const a = await signIn(U.totpOrder);
    const { secret, confirm } = await enrolTotp(a);
    expect(confirm.status).toBe(200);
    advance(STEP_MS);
    const earlier = codeAt(secret, 0);
    const later = codeAt(secret, 1);
    const b = await signIn(U.totpOrder);
    expect((await totpStepUp(b, later)).status).toBe(303);
    const c = await signIn(U.totpOrder);
    const res = await totpStepUp(c, earlier);
    expect(res.status).toBe(401);
    expect(res.text()).toContain('already used');
  });

  it('accepts codes one step off and refuses codes two steps off', async () => {
    toStepMiddle();
    const a = await signIn(U.totpWindow);
    const { secret, confirm } = await enrolTotp(a);
    expect(confirm.status).toBe(200);
    advance(10 * STEP_MS);
    const b = await signIn(U.totpWindow);
    for (const delta of [-2, 2]) {
      const res = await totpStepUp(b, codeAt(secret, delta));
      expect(res.status, `step ${delta}`).toBe(401);
      expect(res.text()).toContain('not right');
    }
    expect((await b.get('/admin/x')).status).toBe(302);
    for (const delta of [-1, 1]) {
      const c = await signIn(U.totpWindow);
      expect((await totpStepUp(c, codeAt(secret, delta))).status, `step ${delta}`).toBe(303);
      expect((await c.get('/admin/x')).status).toBe(200);
    }
  });

  it('refuses even the right code with 429 after too many wrong ones, until the window has passed', async () => {
    toStepMiddle();
    const a = await signIn(U.totpLimit);
    const { secret, confirm } = await enrolTotp(a);
    expect(confirm.status).toBe(200);
    advance(STEP_MS);
    const b = await signIn(U.totpLimit);
    for (let i = 0; i < ATTEMPTS.perUser; i++) expect((await totpStepUp(b, wrongCode(secret, 123_456 + i))).status).toBe(401);
    const limited = await totpStepUp(b, codeAt(secret));
    expect(limited.status).toBe(429);
    advance(STEP_MS);
    expect((await totpStepUp(b, codeAt(secret))).status).toBe(429);
    advance(ATTEMPTS.windowMs - STEP_MS + 1000);
    expect((await totpStepUp(b, codeAt(secret))).status).toBe(303);
    expect((await b.get('/admin/x')).status).toBe(200);
    const records = await auditRecords(U.totpLimit);
    const totpEvents = records.filter((r) => r.event?.factor === 'totp').map((r) => `${String(r.event?.action)}:${r.decision}:${r.reason}`);
    expect(totpEvents).toEqual([
      'mfa_enroll:allow:totp',
      ...Array.from({ length: ATTEMPTS.perUser }, () => 'mfa_failure:deny:wrong-code'),
      'mfa_rate_limited:deny:rate-limited',
      'mfa_rate_limited:deny:rate-limited',
      'mfa_success:allow:totp',
    ]);
  });
});

describe('answers when a route needs a step-up', () => {
  it('redirects a browser navigation to the step-up page, with the path to come back to', async () => {
    const a = await signIn(U.pipeGet);
    const before = upstream.requests.length;
    const res = await a.get('/admin/page?tab=2');
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/.portcullis/mfa?rd=%2Fadmin%2Fpage%3Ftab%3D2');
    expect(upstream.requests.length).toBe(before);
  });

  it('answers a browser form post with a 401 page saying it was not sent, and forwards nothing', async () => {
    const a = await signIn(U.pipePost);
    const post = (path: string) => a.request('POST', path, { body: 'amount=100', contentType: 'application/x-www-form-urlencoded', headers: ['Origin', a.origin, 'Referer', `${a.origin}/admin/form`] });
    const before = upstream.requests.length;
    const res = await post('/admin/transfer');
    expect(res.status).toBe(401);
    expect(String(res.headers['content-type'])).toMatch(/^text\/html/);
    expect(res.text()).toContain('was not sent');
    expect(res.text()).toContain('/.portcullis/mfa?rd=%2Fadmin%2Fform');
    expect(res.headers['www-authenticate']).toContain('error="insufficient_user_authentication"');
    expect(upstream.requests.length).toBe(before);
    // The same post to a route without mfa does reach the upstream.
    expect((await post('/transfer')).status).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
  });

  it('answers an API client with a cookie session with the RFC 9470 challenge and a JSON step_up_url', async () => {
    const a = await signIn(U.pipeApi);
    const res = await a.get('/admin/api?q=1', 'application/json');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('Bearer error="insufficient_user_authentication"');
    expect(res.headers['www-authenticate']).toMatch(/max_age=600\b/);
    expect(res.json()).toMatchObject({
      error: 'GW_ERR_MFA_REQUIRED',
      route: 'admin',
      step_up_url: `${base}/.portcullis/mfa?rd=%2Fadmin%2Fapi%3Fq%3D1`,
      max_age: 600,
      factors: ['webauthn', 'totp'],
    });
  });

  it('challenges a bearer token with a step_up_url naming it; after a passkey step-up for the token, the same token passes', async () => {
    const token = await issuer.token(AUDIENCE, { sub: U.bearer, groups: ['eng'] }, 86_400);
    const api = () => send(port, { path: '/admin/api', headers: ['Host', `localhost:${port}`, 'Accept', 'application/json', 'Authorization', `Bearer ${token}`] });
    const first = await api();
    expect(first.status).toBe(401);
    expect(first.headers['www-authenticate']).toContain('insufficient_user_authentication');
    const { step_up_url: stepUpUrl } = first.json() as { step_up_url: string };
    expect(stepUpUrl.startsWith(`${base}/.portcullis/mfa?token=`)).toBe(true);
    const tokenRef = new URL(stepUpUrl).searchParams.get('token') ?? '';
    expect(tokenRef).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // Someone else confirming the token's link does not help it: the grant names the token's user.
    const otherKey = newAuthenticator();
    const other = await signIn(U.bearerOther);
    await enrolPasskey(other, otherKey);
    expect((await stepUpPasskey(other, otherKey, {}, { token: tokenRef })).status).toBe(200);
    expect((await api()).status).toBe(401);

    const auth = newAuthenticator();
    const a = await signIn(U.bearer);
    await enrolPasskey(a, auth);
    // The session's own step-up does not help the token either …
    expect((await api()).status).toBe(401);
    // … a step-up for the token does.
    const res = await stepUpPasskey(a, auth, {}, { token: tokenRef });
    expect(res.status, res.text()).toBe(200);
    expect(res.json()).toEqual({ ok: true, redirect: '/.portcullis/mfa/confirmed' });
    const second = await api();
    expect(second.status).toBe(200);
    expect(lastMfaHeader()).toEqual(['webauthn;age=0']);
    expect(upstream.header('x-portcullis-user')).toEqual([U.bearer]);
  });
});

describe('audit records and metrics', () => {
  it('records enrolment, failure and success as auth events and counts them', async () => {
    const metricsBefore = await metricsText();
    const auth = newAuthenticator();
    const a = await signIn(U.audit);
    await enrolPasskey(a, auth);
    expect((await stepUpPasskey(a, auth, { origin: 'http://evil.example' })).status).toBe(401);
    expect((await stepUpPasskey(a, auth)).status).toBe(200);

    const records = await auditRecords(U.audit);
    const mfa = records.filter((r) => String(r.event?.action).startsWith('mfa_')).map((r) => ({ decision: r.decision, reason: r.reason, event: r.event }));
    expect(mfa).toEqual([
      { decision: 'allow', reason: 'webauthn', event: { action: 'mfa_enroll', provider: 'local', factor: 'webauthn', credential: auth.credentialId } },
      { decision: 'allow', reason: 'first-factor', event: { action: 'mfa_recovery_codes', provider: 'local', factor: 'recovery' } },
      { decision: 'deny', reason: 'wrong-origin', event: { action: 'mfa_failure', provider: 'local', factor: 'webauthn' } },
      { decision: 'allow', reason: 'webauthn', event: { action: 'mfa_success', provider: 'local', factor: 'webauthn', credential: auth.credentialId } },
    ]);
    for (const r of records) expect(r.identity?.session).toMatch(/^[0-9a-f]{16}$/);

    const metricsAfter = await metricsText();
    const delta = (series: string) => metricValue(metricsAfter, series) - metricValue(metricsBefore, series);
    expect(delta('portcullis_mfa_challenges_total{factor="webauthn",result="success"}')).toBe(1);
    expect(delta('portcullis_mfa_challenges_total{factor="webauthn",result="failure"}')).toBe(1);
    expect(delta('portcullis_mfa_enrollments_total{factor="webauthn",action="enroll"}')).toBe(1);
  });
});

describe('credential persistence', () => {
  it('keeps passkeys and authenticator apps across a restart, without the TOTP secret in plain text', async () => {
    const [restartPort = 0] = await freePorts(1);
    const restartBase = `http://localhost:${restartPort}`;
    const user = 'u-restart';
    const first = await startGateway(gatewayConfig(restartBase), { listen: `127.0.0.1:${restartPort}`, now: clock });
    const credentialsFile = join(first.dir, 'mfa', 'credentials.json');
    const secretKeyFile = join(first.dir, 'mfa', 'secret.key');
    const auth = newAuthenticator(restartBase);
    let secret: string;
    try {
      await addUsers(first.dir, [user]);
      toStepMiddle();
      const a = await signIn(user, restartPort);
      await enrolPasskey(a, auth);
      const totp = await enrolTotp(a);
      expect(totp.confirm.status).toBe(303);
      secret = totp.secret;
    } finally {
      await first.stop();
    }
    const stored = readFileSync(credentialsFile, 'utf8');
    expect(stored).toContain(auth.credentialId);
    expect(stored).toContain('"totp"');
    for (const form of [secret, secret.toLowerCase(), secret.replace(/(.{4})/g, '$1 ').trim()]) expect(stored).not.toContain(form);

    const second = await startGateway(gatewayConfig(restartBase, { credentials_file: credentialsFile, secret_key_file: secretKeyFile }), { listen: `127.0.0.1:${restartPort}`, now: clock });
    try {
      await addUsers(second.dir, [user]);
      const b = await signIn(user, restartPort);
      expect((await b.get('/admin/x')).status).toBe(302);
      expect((await stepUpPasskey(b, auth)).status).toBe(200);
      expect((await b.get('/admin/x')).status).toBe(200);
      expect(lastMfaHeader()).toEqual(['webauthn;age=0']);

      advance(STEP_MS);
      const c = await signIn(user, restartPort);
      expect((await totpStepUp(c, codeAt(secret))).status).toBe(303);
      expect((await c.get('/admin/x')).status).toBe(200);
      expect(lastMfaHeader()).toEqual(['totp;age=0']);
    } finally {
      await second.stop();
    }
  });
});
