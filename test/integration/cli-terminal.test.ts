/**
 * The engineer's command line end to end: the real built CLI (`node bin/portcullis.js`, dist/) as
 * child processes against a real gateway, a recording upstream, the machine's PostgreSQL, the
 * system's curl and psql, and Debian's chromium (playwright-core) as the user's browser. The CLI
 * runs with PORTCULLIS_BROWSER=none: the tests read the URL it prints and drive chromium there.
 *
 * One story, in order: login through the browser (sign-in form, then the authorize page) → token →
 * curl → a copied key-bound token refused → the RFC 9470 challenge, a TOTP step-up in the browser
 * and the retry → HTTP tunnel used by plain curl → database tunnel used by psql → exec → logout,
 * after which the old token is refused at once → device-code login (unbound) → plain curl with
 * `token --raw` → a credentials file others can read is refused.
 */
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, SignJWT } from 'jose';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { addUser } from '../../src/identity/local-users.js';
import { totpCodeForStep, totpStep } from '../../src/mfa/totp.js';
import { athOf, dpopProof, generateDpopKey, loadDpopKey } from '../../src/cli/client/dpop.js';
import type { PrivateJwk } from '../../src/cli/client/credentials.js';
import { readFileSinkRecords } from '../support/audit-records.js';
import { launchChromium } from '../support/chromium.js';
import { signIn } from '../support/gateway-agent.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { eventually, freePorts, killAllCli, startCli, type CliProcess } from '../support/process.js';
import { LOCAL_PG, psql, selfSignedCertificate } from '../support/postgres.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

const PASSWORD = 'alice terminal password 1';
const INSTANCE = 'gw-cli-terminal';

let gw: TestGateway;
let upstream: RecordingUpstream;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let base: string;
let home: string;
let totpSecret: string;

function cliEnv(): Record<string, string> {
  return { PORTCULLIS_HOME: home, PORTCULLIS_BROWSER: 'none', PORTCULLIS_GATEWAY: '' };
}

function cli(args: readonly string[]): CliProcess {
  return startCli(args, cliEnv());
}

async function run(args: readonly string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = cli(args);
  const timer = setTimeout(() => p.signal('SIGKILL'), timeoutMs);
  const exit = await p.exited;
  clearTimeout(timer);
  return { code: exit.code, stdout: p.stdout(), stderr: p.stderr() };
}

/** The system's curl, without any help from portcullis. */
function systemCurl(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '--max-time', '15', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface StoredCreds {
  gateways: Record<string, { access_token: string; token_type: string; key?: PrivateJwk; user: string; refresh_token?: string; expires_at: string }>;
}

function stored(): StoredCreds {
  return JSON.parse(readFileSync(join(home, 'credentials.json'), 'utf8')) as StoredCreds;
}

/** The upstream's last request (to `url`, when given). */
function upstreamRequest(url?: string): { method: string; url: string; user: string | undefined; mfa: string | undefined } {
  const r = upstream.requests.filter((q) => url === undefined || q.url === url).at(-1);
  if (r === undefined) throw new Error(`the upstream saw nothing${url === undefined ? '' : ` for ${url}`}`);
  const h = (n: string) => {
    const v = r.headers[n];
    return Array.isArray(v) ? v[0] : v;
  };
  return { method: r.method, url: r.url, user: h('x-portcullis-user'), mfa: h('x-portcullis-mfa') };
}

beforeAll(async () => {
  const [port = 0, db = 0] = await freePorts(2);
  base = `http://localhost:${port}`;
  upstream = await startRecordingUpstream();
  gw = await startGateway(
    {
      server: { public_url: base, instance_id: INSTANCE },
      identity: { session: { idle_timeout: '12h', max_lifetime: '24h' } },
      mfa: { enroll_within: '5m' },
      routes: [
        { id: 'admin', host: 'localhost', path: '/admin', upstream: upstream.url, allow: { users: ['alice'] }, mfa: { factors: ['totp'], max_age: '10m' } },
        { id: 'api', host: 'localhost', path: '/api', upstream: upstream.url, allow: { users: ['alice'] }, websocket: true },
        { id: 'status', host: 'localhost', path: '/status', upstream: upstream.url, public: true },
      ],
      // With TLS on its listener, the connect answer says sslmode=require and the tunnel dials TLS.
      databases: [{ id: 'appdb', type: 'postgres', listen: `127.0.0.1:${db}`, tls: selfSignedCertificate(), upstream: { host: LOCAL_PG.host, port: LOCAL_PG.port, database: LOCAL_PG.database, user: LOCAL_PG.user }, allow: { users: ['alice'] } }],
    },
    { listen: `127.0.0.1:${port}` },
  );
  await addUser(join(gw.dir, 'users.yaml'), { name: 'alice', email: 'alice@example.com', groups: ['eng'], password: PASSWORD });
  // Alice has an authenticator app (enrolled in another browser session, confirmed with the
  // previous step's code so that the step-up below may use the current one).
  const agent = await signIn(port, 'alice', PASSWORD);
  const begin = await agent.form('/.portcullis/mfa/totp/enroll', { csrf: agent.csrf, rd: '/' });
  totpSecret = (/<code id="totp-secret">([^<]*)<\/code>/.exec(begin.text())?.[1] ?? '').replace(/\s+/g, '');
  const confirm = await agent.form('/.portcullis/mfa/totp/confirm', { csrf: agent.csrf, rd: '/', code: totpCodeForStep(totpSecret, totpStep(Date.now()) - 1), name: 'phone' });
  expect(confirm.status, confirm.text().slice(0, 300)).toBe(200);
  home = join(mkdtempSync(join(tmpdir(), 'portcullis-cli-')), 'config');
  browser = await launchChromium();
  context = await browser.newContext();
  page = await context.newPage();
}, 60_000);

afterAll(async () => {
  await killAllCli();
  await browser.close();
  await gw.stop();
  await upstream.close();
});

describe('portcullis login (browser, loopback redirect) and the signed-in commands', () => {
  it('login: the printed URL, the sign-in form, the authorize page, and a 0600 credentials file', async () => {
    const login = cli(['login', '--gateway', base, '--name', 'ci-laptop']);
    const [, url = ''] = await login.waitFor(/Open this URL to sign in: (\S+)/);
    expect(url).toMatch(new RegExp(`^${base}/\\.portcullis/cli/authorize\\?response_type=code&redirect_uri=http%3A%2F%2F127\\.0\\.0\\.1%3A\\d+%2Fcallback&state=[\\w-]+&code_challenge=[\\w-]{43}&code_challenge_method=S256&jkt=[\\w-]{43}&name=ci-laptop$`));
    await page.goto(url);
    await page.waitForURL(/\/\.portcullis\/login/);
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForURL(/\/\.portcullis\/cli\/authorize/);
    expect(await page.locator('h1').innerText()).toBe('Allow the command line?');
    expect(await page.locator('main, body').first().innerText()).toContain('ci-laptop');
    await page.click('button[name=decision][value=approve]');
    await page.waitForURL(/^http:\/\/127\.0\.0\.1:\d+\/callback\?code=/);
    expect(await page.locator('h1').innerText()).toBe('Signed in');
    const exit = await login.exited;
    expect(exit.code, login.stderr()).toBe(0);
    expect(login.stdout()).toMatch(new RegExp(`^Logged in to ${base} as alice until \\S+ \\(bound to a key kept on this machine\\)\\.\\n$`));

    expect(statSync(home).mode & 0o777).toBe(0o700);
    expect(statSync(join(home, 'credentials.json')).mode & 0o777).toBe(0o600);
    const entry = stored().gateways[base];
    expect(entry?.token_type).toBe('DPoP');
    expect(entry?.access_token).toMatch(/^pct_[A-Za-z0-9_-]{43}$/);
    expect(entry?.refresh_token).toMatch(/^pcr_[A-Za-z0-9_-]{43}$/);
    expect(entry?.key?.d).toBeDefined();
  });

  it('login: $PORTCULLIS_BROWSER is started with the URL; declining in the browser signs nothing in and says so', async () => {
    const before = readFileSync(join(home, 'credentials.json'), 'utf8');
    // A "browser" that writes down the URL it was given.
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-browser-'));
    const opener = join(dir, 'open');
    writeFileSync(opener, `#!/bin/sh\nprintf '%s' "$1" > ${join(dir, 'url')}.tmp && mv ${join(dir, 'url')}.tmp ${join(dir, 'url')}\n`, { mode: 0o755 });
    const login = startCli(['login', '--gateway', base], { ...cliEnv(), PORTCULLIS_BROWSER: opener });
    const [, printed = ''] = await login.waitFor(/Open this URL to sign in: (\S+)/);
    let url = '';
    await eventually(async () => {
      url = await readFile(join(dir, 'url'), 'utf8');
      return url !== '';
    });
    expect(url).toBe(printed);
    await page.goto(url);
    await page.click('button[name=decision][value=deny]');
    await page.waitForSelector('h1:text-is("Sign-in cancelled")');
    const exit = await login.exited;
    expect(exit.code).toBe(1);
    expect(login.stderr()).toContain('you declined in the browser; not logged in');
    expect(readFileSync(join(home, 'credentials.json'), 'utf8')).toBe(before);
  });

  it('token: a summary, and only the token with --raw', async () => {
    const [summary, raw] = await Promise.all([run(['token']), run(['token', '--raw'])]);
    expect(summary.code, summary.stderr).toBe(0);
    expect(summary.stdout).toContain(`gateway:  ${base}`);
    expect(summary.stdout).toContain('user:     alice (groups: eng)');
    expect(summary.stdout).toMatch(/bound:\s+yes — DPoP key ES256, thumbprint [\w-]{43}; the token alone is refused/);
    expect(raw.code).toBe(0);
    expect(raw.stdout).toBe(`${stored().gateways[base]?.access_token ?? 'missing'}\n`);
  });

  it('token: refreshes when less than 5 minutes remain (the old pair is revoked), and says to log in again when refused', async () => {
    const file = join(home, 'credentials.json');
    const before = stored();
    const old = before.gateways[base];
    const soon = (c: StoredCreds, patch: Record<string, string>): string =>
      JSON.stringify({ ...c, gateways: { ...c.gateways, [base]: { ...c.gateways[base], expires_at: new Date(Date.now() + 60_000).toISOString(), ...patch } } });
    // A refresh token the gateway does not know: refused, and the user is told what to do.
    writeFileSync(file, soon(before, { refresh_token: `pcr_${'A'.repeat(43)}` }));
    const refused = await run(['token', '--raw']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain(`run portcullis login --gateway ${base}`);
    writeFileSync(file, soon(before, {}));
    const r = await run(['token', '--raw']);
    expect(r.code, r.stderr).toBe(0);
    const fresh = stored().gateways[base];
    expect(r.stdout).toBe(`${fresh?.access_token ?? 'missing'}\n`);
    expect(fresh?.access_token).not.toBe(old?.access_token);
    expect(fresh?.refresh_token).not.toBe(old?.refresh_token);
    expect(fresh?.token_type).toBe('DPoP');
    expect(Date.parse(fresh?.expires_at ?? '') - Date.now()).toBeGreaterThan(60 * 60_000);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const key = await loadDpopKey(fresh?.key ?? ({} as PrivateJwk));
    const url = `${base}/api/refreshed`;
    const withToken = async (t: string) => (await fetch(url, { headers: { authorization: `DPoP ${t}`, dpop: await dpopProof(key, 'GET', url, t) } })).status;
    expect(await withToken(old?.access_token ?? '')).toBe(401);
    expect(await withToken(fresh?.access_token ?? '')).toBe(200);
  });

  it('curl: GET and POST through a protected route, HEAD on a public one, with curl\'s exit code; the upstream sees alice', async () => {
    // curl's own exit code comes through (-f on a 404 is 22); a host that is not the gateway's
    // never gets the token (ambiguous command lines: test/unit/cli-client.test.ts).
    const [get, post, missing, foreign, open] = await Promise.all([
      run(['curl', '-s', `${base}/api/hello?x=1`]),
      run(['curl', '--', '-s', '-d', 'a=1', `${base}/api/submit`]),
      run(['curl', '-sf', `${base}/nowhere`]),
      run(['curl', '-s', 'http://example.invalid/']),
      run(['curl', '-sI', `${base}/status/ok`]),
    ]);
    // A public route answers with the token attached too (-I: HEAD, the head on stdout).
    expect(open.code, open.stderr).toBe(0);
    expect(open.stdout).toMatch(/^HTTP\/1\.1 200 /);
    expect(upstreamRequest('/status/ok')).toMatchObject({ method: 'HEAD' });
    expect(get.code, get.stderr).toBe(0);
    expect(JSON.parse(get.stdout)).toMatchObject({ method: 'GET', url: '/api/hello?x=1' });
    expect(upstreamRequest('/api/hello?x=1')).toMatchObject({ method: 'GET', user: 'alice' });
    expect(post.code, post.stderr).toBe(0);
    expect(JSON.parse(post.stdout)).toMatchObject({ method: 'POST', url: '/api/submit', bodyBytes: 3 });
    expect(upstreamRequest('/api/submit')).toMatchObject({ method: 'POST', user: 'alice' });
    expect(missing.code).toBe(22);
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toContain('refusing to send your token there');
  });

  it('a copied key-bound token is refused without the key (as Bearer, without a proof, with another key\'s proof, with a replayed proof)', async () => {
    const token = stored().gateways[base]?.access_token ?? '';
    const url = `${base}/api/stolen`;
    const before = upstream.requests.length;
    const asBearer = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    expect(asBearer.status).toBe(401);
    expect(asBearer.headers.get('www-authenticate') ?? '').toMatch(/DPoP|invalid_token/);
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}` } })).status).toBe(401);
    const thief = await generateDpopKey();
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(thief, 'GET', url, token) } })).status).toBe(401);
    // The real key works, once per proof.
    const key = await loadDpopKey(stored().gateways[base]?.key ?? ({} as PrivateJwk));
    const proof = await dpopProof(key, 'GET', url, token);
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: proof } })).status).toBe(200);
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: proof } })).status).toBe(401);
    // A proof for another URL or method, or without ath, is refused too.
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(key, 'GET', `${base}/api/other`, token) } })).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(key, 'POST', url, token) } })).status).toBe(401);
    const noAth = await new SignJWT({ htm: 'GET', htu: url, iat: Math.floor(Date.now() / 1000), jti: randomUUID() })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicJwk })
      .sign(await importJWK({ ...key.jwk }, 'ES256'));
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: noAth } })).status).toBe(401);
    expect(upstream.requests.length).toBe(before + 1);
    expect(athOf(token)).toHaveLength(43);
  });

  it('RFC 9470: curl is challenged, the user confirms with TOTP in the browser, and the retry succeeds', async () => {
    const before = upstream.requests.length;
    const p = cli(['curl', '-s', `${base}/admin/report`]);
    const [, url = ''] = await p.waitFor(/Open this URL to confirm it is you: (\S+)/, 20_000);
    expect(url.startsWith(`${base}/.portcullis/mfa?token=`)).toBe(true);
    expect(p.stderr()).toContain('The gateway asks for a fresh second factor');
    await page.goto(url);
    expect(await page.locator('#mfa, main, body').first().innerText()).toContain('command-line or API client');
    await page.fill('#totp-code', totpCodeForStep(totpSecret, totpStep(Date.now())));
    await page.click('form[action="/.portcullis/mfa/totp"] button[type=submit]');
    await page.waitForSelector('h1:text-is("Confirmed")');
    const exit = await p.exited;
    expect(exit.code, p.stderr()).toBe(0);
    // Only the final response reaches stdout: the upstream's answer, not the challenge.
    expect(p.stdout()).not.toContain('GW_ERR_MFA_REQUIRED');
    expect(JSON.parse(p.stdout())).toMatchObject({ method: 'GET' });
    expect(p.stderr()).toContain('Confirmed; sending the request again.');
    expect(upstream.requests.length).toBe(before + 1);
    expect(upstreamRequest()).toMatchObject({ url: '/admin/report', user: 'alice' });
    expect(upstreamRequest().mfa).toMatch(/^totp;age=\d+$/);
  });

  it('tunnel --route: plain curl reaches the route through the local listener, with the token attached', async () => {
    const t = cli(['tunnel', '--route', 'api', '--listen', '127.0.0.1:0']);
    // Never on a non-loopback address unless asked.
    const refused = run(['tunnel', '--route', 'api', '--listen', '0.0.0.0:0']);
    const [, port = ''] = await t.waitFor(/Tunnel ready: http:\/\/127\.0\.0\.1:(\d+)\//);
    const r = await systemCurl([`http://127.0.0.1:${port}/hello?via=tunnel`]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ method: 'GET' });
    expect(upstreamRequest()).toMatchObject({ url: '/api/hello?via=tunnel', user: 'alice' });
    const post = await systemCurl(['-d', 'k=v', `http://127.0.0.1:${port}/api/form`]);
    expect(post.code, post.stderr).toBe(0);
    expect(upstreamRequest()).toMatchObject({ method: 'POST', url: '/api/form', user: 'alice' });
    // WebSocket upgrades pass through the tunnel too (with their own proof).
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`);
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('hello through the tunnel'));
      ws.once('message', (data: Buffer) => resolve(data.toString('utf8')));
      ws.once('error', reject);
    });
    ws.close();
    expect(echoed).toBe('hello through the tunnel');
    expect(upstreamRequest()).toMatchObject({ method: 'GET', url: '/api/socket', user: 'alice' });
    const remote = await refused;
    expect(remote.code).toBe(2);
    expect(remote.stderr).toContain('--allow-remote');
    t.signal('SIGINT');
    const exit = await t.exited;
    expect(exit.code).toBe(0);
    expect(t.stderr()).toContain('tunnel closed');
  });

  it('tunnel --database: psql connects without a password and runs a query as the service account', async () => {
    const t = cli(['tunnel', '--database', 'appdb', '--listen', '127.0.0.1:0']);
    const [, port = ''] = await t.waitFor(/Tunnel ready: psql -h 127\.0\.0\.1 -p (\d+) -d appdb/);
    const r = await psql(`postgresql://nobody@127.0.0.1:${port}/test`, ['-A', '-t', '-c', 'select 1']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('1\n');
    // Without -d: the database id is filled in.
    const r2 = await psql(`postgresql://127.0.0.1:${port}`, ['-A', '-t', '-c', 'select current_user']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stdout).toBe(`${LOCAL_PG.user}\n`);
    // The gateway saw alice, over TLS, with a password it issued to her token.
    expect(await gw.app.audit.flush(5000)).toBe(true);
    const connects = readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE)
      .map((x) => x.record)
      .filter((x) => x.kind === 'postgres' && x.postgres?.event === 'connect');
    expect(connects.length).toBeGreaterThanOrEqual(2);
    for (const c of connects) {
      expect(c.identity?.user).toBe('alice');
      expect(c.postgres?.tls).toBe(true);
    }
    t.signal('SIGINT');
    expect((await t.exited).code).toBe(0);
  });

  it('exec: the command gets the token in its environment, and its exit code is ours', async () => {
    const r = await run(['exec', '--', 'sh', '-c', 'echo "$PORTCULLIS_TOKEN_TYPE $PORTCULLIS_GATEWAY ${PORTCULLIS_AUTHORIZATION:-none} ${#PORTCULLIS_TOKEN}"; exit 7']);
    expect(r.stdout).toBe(`DPoP ${base} none 47\n`);
    expect(r.code, r.stderr).toBe(7);
  });

  it('logout: revoked on the gateway, refused at once even with a valid proof, and deleted here', async () => {
    const entry = stored().gateways[base];
    const token = entry?.access_token ?? '';
    const key = await loadDpopKey(entry?.key ?? ({} as PrivateJwk));
    const url = `${base}/api/after`;
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(key, 'GET', url, token) } })).status).toBe(200);
    const out = await run(['logout']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain(`Logged out of ${base}`);
    expect((await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(key, 'GET', url, token) } })).status).toBe(401);
    // The refresh token went with it.
    const refresh = await fetch(`${base}/.portcullis/cli/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(key, 'POST', `${base}/.portcullis/cli/token`) },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: entry?.refresh_token ?? '' }).toString(),
    });
    expect(refresh.status).toBe(400);
    const none = await run(['token']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('not logged in');
  });
});

describe('portcullis login --device --no-bind', () => {
  it('signs in with a code confirmed in the browser; the unbound token works with plain curl', async () => {
    const login = cli(['login', '--gateway', base, '--device', '--no-bind']);
    const [, code = ''] = await login.waitFor(/enter the code ([B-DF-HJ-NP-TV-Z]{4}-[B-DF-HJ-NP-TV-Z]{4})/);
    const [, url = ''] = await login.waitFor(/Open this URL to sign in: (\S+)/);
    await page.goto(url);
    // The browser is still signed in from the first login: the code is prefilled or typed.
    if ((await page.locator('input[name=user_code]').count()) > 0) {
      const value = await page.locator('input[name=user_code]').inputValue();
      if (value === '') await page.fill('input[name=user_code]', code);
      await page.click('form[action="/.portcullis/cli/device"] button[type=submit]');
    }
    await page.waitForSelector('button[name=decision][value=approve]');
    expect(await page.locator('body').innerText()).toContain(code);
    await page.click('button[name=decision][value=approve]');
    await page.waitForSelector('text=Command line connected');
    const exit = await login.exited;
    expect(exit.code, login.stderr()).toBe(0);
    expect(login.stdout()).toContain('unbound (a bearer token)');

    const [raw, viaExec] = await Promise.all([
      run(['token', '--raw']),
      run(['exec', '--', 'sh', '-c', `curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $PORTCULLIS_AUTHORIZATION" ${base}/api/exec`]),
    ]);
    const token = raw.stdout.trim();
    expect(token).toMatch(/^pct_[A-Za-z0-9_-]{43}$/);
    const r = await systemCurl(['-H', `Authorization: Bearer ${token}`, `${base}/api/plain`]);
    expect(r.code, r.stderr).toBe(0);
    expect(upstreamRequest('/api/plain')).toMatchObject({ user: 'alice' });
    expect(viaExec.stdout).toBe('200');
    expect(upstreamRequest('/api/exec')).toMatchObject({ user: 'alice' });
  });

  it('a credentials file others can read is refused, with the fix', async () => {
    const file = join(home, 'credentials.json');
    chmodSync(file, 0o644);
    const r = await run(['token', '--raw']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`chmod 600 ${file}`);
    chmodSync(file, 0o600);
  });
});
