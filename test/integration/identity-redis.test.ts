/**
 * Two gateways sharing one (private) Redis: a session made at one works at the other, a logout at one
 * ends it at both, failed sign-ins are counted across both, and when Redis dies requests with a
 * session cookie fail closed (503, nothing proxied) until it is back.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../../src/identity/local-users.js';
import { createRedisCredentialStore } from '../../src/mfa/credential-store.js';
import { Browser, hiddenField } from '../support/cookie-jar.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { eventually } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';
import { startRedisServer, type TestRedisServer } from '../support/redis-server.js';

const SESSION = 'portcullis_session';
const HOST = 'app.localhost';
const PASSWORDS = { alice: 'alice password 1', carol: 'carol password 1' } as const;

let redis: TestRedisServer;
let upstream: RecordingUpstream;
let dir: string;
let gw1: TestGateway;
let gw2: TestGateway;
let keyPrefix: string;

const baseOf = (gw: TestGateway) => `http://${HOST}:${gw.port}`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-redis-test-'));
  const usersFile = join(dir, 'users.yaml');
  await addUser(usersFile, { name: 'alice', email: 'alice@example.com', groups: ['eng'], password: PASSWORDS.alice });
  await addUser(usersFile, { name: 'carol', email: 'carol@example.com', groups: ['eng'], password: PASSWORDS.carol });
  [redis, upstream] = await Promise.all([startRedisServer(), startRecordingUpstream()]);
  keyPrefix = `pc-test:${randomBytes(6).toString('hex')}:`;
  const config = {
    store: { type: 'redis', redis: { url: redis.url, key_prefix: keyPrefix } },
    identity: { providers: [{ id: 'local', type: 'local', users_file: usersFile }] },
    routes: [{ id: 'app', host: HOST, path: '/', upstream: upstream.url, allow: { groups: ['eng'] } }],
  };
  [gw1, gw2] = await Promise.all([startGateway(config), startGateway(config)]);
});

afterAll(async () => {
  await Promise.all([gw1.stop(), gw2.stop()]);
  await Promise.all([redis.stop(), upstream.close()]);
  await Promise.all([dir, gw1.dir, gw2.dir].map((d) => rm(d, { recursive: true, force: true })));
});

/** Gets the login page (csrf cookie + hidden field) and posts the form with a matching Origin. */
async function signIn(b: Browser, gw: TestGateway, user: string, password: string) {
  const base = baseOf(gw);
  const page = await b.get(`${base}/.portcullis/login?rd=%2Fhome`);
  expect(page.status).toBe(200);
  return b.post(`${base}/.portcullis/login`, { csrf: hiddenField(page, 'csrf'), rd: hiddenField(page, 'rd'), username: user, password });
}

/** An API request (no redirects to login) with exactly this session cookie. */
function withCookie(gw: TestGateway, session: string, path = '/home') {
  return send(gw.port, { path, headers: ['Host', `${HOST}:${gw.port}`, 'Accept', 'application/json', 'Cookie', `${SESSION}=${session}`] });
}

async function readyz(gw: TestGateway): Promise<number> {
  const res = await fetch(`${gw.adminUrl}/readyz`);
  await res.body?.cancel();
  return res.status;
}

describe('two gateways sharing a Redis store', () => {
  let aliceSession = '';

  it('accepts at gateway 2 a session made at gateway 1', async () => {
    const b = new Browser();
    const res = await signIn(b, gw1, 'alice', PASSWORDS.alice);
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/home');
    aliceSession = b.jar.get(HOST, SESSION) ?? '';
    expect(aliceSession).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // The browser holds one cookie for app.localhost, whichever port it talks to.
    const at2 = await b.get(`${baseOf(gw2)}/home`);
    expect(at2.status).toBe(200);
    expect(upstream.header('x-portcullis-user')).toEqual(['alice']);
    expect(upstream.header('x-portcullis-groups')).toEqual(['eng']);
    expect((await withCookie(gw1, aliceSession)).status).toBe(200);
  });


  it('keeps second factors in the same Redis: both gateways see what was enrolled', async () => {
    const credentials = createRedisCredentialStore({ url: redis.url, keyPrefix });
    try {
      await credentials.update('alice', (f) => ({
        ...f,
        userHandle: randomBytes(32).toString('base64url'),
        webauthn: [{ id: randomBytes(16).toString('base64url'), name: 'shared key', publicKey: randomBytes(77).toString('base64url'), counter: 0, transports: ['internal'], backedUp: false, createdAt: Date.now(), lastUsedAt: undefined }],
      }));
    } finally {
      await credentials.close();
    }
    for (const gw of [gw1, gw2]) {
      const me = await withCookie(gw, aliceSession, '/.portcullis/me');
      expect(me.status).toBe(200);
      const body = JSON.parse(me.text()) as { factors: { webauthn: { name: string }[] } };
      expect(body.factors.webauthn.map((c) => c.name)).toEqual(['shared key']);
    }
  });
  it('ends the session at both gateways when it is signed out at gateway 2', async () => {
    const b = new Browser();
    b.jar.set(HOST, SESSION, aliceSession);
    const page = await b.get(`${baseOf(gw2)}/.portcullis/logout`);
    expect(page.status).toBe(200);
    const out = await b.post(`${baseOf(gw2)}/.portcullis/logout`, { csrf: hiddenField(page, 'csrf') });
    expect(out.status).toBe(200);
    expect(b.jar.get(HOST, SESSION)).toBeUndefined();

    const seen = upstream.requests.length;
    for (const gw of [gw1, gw2]) {
      const res = await withCookie(gw, aliceSession);
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="portcullis"');
    }
    expect(upstream.requests.length).toBe(seen);
  });

  it('counts failed sign-ins across both gateways', async () => {
    const b = new Browser();
    for (const gw of [gw1, gw1, gw1, gw2, gw2]) {
      const res = await signIn(b, gw, 'carol', 'wrong password');
      expect(res.status).toBe(401);
    }
    for (const gw of [gw1, gw2]) {
      const res = await signIn(b, gw, 'carol', PASSWORDS.carol);
      expect(res.status).toBe(429);
      expect(b.jar.get(HOST, SESSION)).toBeUndefined();
    }
  });

  it('fails closed and fast while Redis is down, and recovers when it is back', async () => {
    const b = new Browser();
    expect((await signIn(b, gw1, 'alice', PASSWORDS.alice)).status).toBe(303);
    const session = b.jar.get(HOST, SESSION) ?? '';
    expect((await withCookie(gw2, session)).status).toBe(200);
    expect(await readyz(gw1)).toBe(200);

    redis.kill();
    const seen = upstream.requests.length;
    try {
      for (const gw of [gw1, gw2]) {
        const t0 = performance.now();
        const res = await withCookie(gw, session);
        const elapsed = performance.now() - t0;
        expect(res.status).toBe(503);
        expect(res.json()).toMatchObject({ error: 'GW_ERR_STORE_UNAVAILABLE' });
        expect(elapsed).toBeLessThan(3000);
        // A browser gets the same refusal, not a sign-in redirect.
        const t1 = performance.now();
        const page = await b.get(`${baseOf(gw)}/home`);
        expect(page.status).toBe(503);
        expect(performance.now() - t1).toBeLessThan(3000);
      }
      expect(upstream.requests.length).toBe(seen);
      await eventually(async () => (await readyz(gw1)) === 503, 3000);
      expect(await readyz(gw2)).toBe(503);
    } finally {
      await redis.restart();
    }

    await eventually(async () => (await readyz(gw1)) === 200 && (await readyz(gw2)) === 200, 5000);
    await eventually(async () => (await withCookie(gw1, session)).status !== 503, 3000);
    // The restarted Redis is empty: the old session is simply unknown now (401, not 503).
    expect((await withCookie(gw1, session)).status).toBe(401);
    const again = new Browser();
    expect((await signIn(again, gw2, 'alice', PASSWORDS.alice)).status).toBe(303);
    const fresh = again.jar.get(HOST, SESSION) ?? '';
    expect((await withCookie(gw1, fresh)).status).toBe(200);
    expect(upstream.requests.length).toBe(seen + 1);
  });

  it('fails closed within the command timeout while Redis is frozen (connected but not answering)', async () => {
    const b = new Browser();
    expect((await signIn(b, gw1, 'alice', PASSWORDS.alice)).status).toBe(303);
    const session = b.jar.get(HOST, SESSION) ?? '';
    expect((await withCookie(gw2, session)).status).toBe(200);

    redis.freeze();
    const seen = upstream.requests.length;
    try {
      const t0 = performance.now();
      const results = await Promise.all([withCookie(gw1, session), withCookie(gw2, session)]);
      expect(performance.now() - t0).toBeLessThan(3000);
      for (const res of results) {
        expect(res.status).toBe(503);
        expect(res.json()).toMatchObject({ error: 'GW_ERR_STORE_UNAVAILABLE' });
      }
      expect(await readyz(gw1)).toBe(503);
      expect(upstream.requests.length).toBe(seen);
    } finally {
      redis.thaw();
    }
    await eventually(async () => (await withCookie(gw2, session)).status === 200, 5000);
    expect(upstream.requests.length).toBe(seen + 1);
  });
});
