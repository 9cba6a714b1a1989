/**
 * Step-up MFA end to end in a real browser: Debian's chromium driven by playwright-core, with a CDP
 * virtual authenticator, against a real gateway and a recording upstream. The gateway's clock is
 * injected so that `max_age` can pass without waiting.
 *
 * Screenshots of each page are written to docs/images/ when PORTCULLIS_SCREENSHOTS=1.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../../src/identity/local-users.js';
import { totpCodeForStep, totpStep } from '../../src/mfa/totp.js';
import { startBearerIssuer, type BearerIssuer } from '../support/bearer-issuer.js';
import { addVirtualAuthenticator, launchChromium, type VirtualAuthenticator } from '../support/chromium.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { freePorts, REPO_ROOT } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

const SCREENSHOTS = process.env.PORTCULLIS_SCREENSHOTS === '1' ? join(REPO_ROOT, 'docs', 'images') : undefined;
const AUDIENCE = 'portcullis-api';

let gw: TestGateway;
let upstream: RecordingUpstream;
let issuer: BearerIssuer;
let browser: Browser;
let base: string;
/** The gateway's clock: real time plus an offset the tests move forward. */
let offsetMs = 0;
const clock = () => Date.now() + offsetMs;

beforeAll(async () => {
  const [port = 0] = await freePorts(1);
  base = `http://localhost:${port}`;
  upstream = await startRecordingUpstream();
  issuer = await startBearerIssuer();
  gw = await startGateway(
    {
      server: { public_url: base },
      identity: { bearer: [{ issuer: issuer.issuer, audience: AUDIENCE, jwks_uri: issuer.jwksUri }] },
      mfa: { enroll_within: '5m' },
      routes: [
        {
          id: 'admin',
          host: 'localhost',
          path: '/admin',
          upstream: upstream.url,
          allow: { users: ['alice', 'bob'] },
          mfa: { factors: ['webauthn', 'totp'], max_age: '10m' },
          rules: [{ path: '/admin/keys', mfa: { factors: ['webauthn'], max_age: '10m' } }],
        },
        { id: 'strict', host: 'localhost', path: '/strict', upstream: upstream.url, allow: { users: ['alice', 'bob'] }, mfa: { factors: ['totp'], max_age: '1s' } },
        { id: 'home', host: 'localhost', path: '/', upstream: upstream.url, allow: { users: ['alice', 'bob'] } },
      ],
    },
    { listen: `127.0.0.1:${port}`, now: clock, allowInsecureOidc: true },
  );
  const users = join(gw.dir, 'users.yaml');
  await addUser(users, { name: 'alice', email: 'alice@example.com', groups: ['eng'], password: 'alice password 1' });
  await addUser(users, { name: 'bob', email: 'bob@example.com', groups: ['eng'], password: 'bob password 1' });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser.close();
  await gw.stop();
  await upstream.close();
  await issuer.close();
});

async function shot(page: Page, name: string): Promise<void> {
  if (SCREENSHOTS === undefined) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page: Page, user: string, password: string): Promise<void> {
  await page.waitForURL(/\/\.portcullis\/login/);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
}

/** The text of the first element matching `selector`, once it is there (and not empty, when it fills in later). */
async function textOf(page: Page, selector: string): Promise<string> {
  const el = page.locator(selector).first();
  await el.waitFor();
  for (let i = 0; i < 50; i++) {
    const t = await el.innerText();
    if (t.trim() !== '' && !t.startsWith('Waiting')) return t;
    await page.waitForTimeout(100);
  }
  return el.innerText();
}

/** The X-Portcullis-MFA header of the upstream's last request. */
function lastMfaHeader(): string | undefined {
  return upstream.header('x-portcullis-mfa')[0];
}

describe('step-up MFA in a real browser', () => {
  let context: BrowserContext;
  let page: Page;
  let authenticator: VirtualAuthenticator;

  beforeAll(async () => {
    context = await browser.newContext();
    page = await context.newPage();
    authenticator = await addVirtualAuthenticator(context, page);
  });
  afterAll(async () => {
    await context.close();
  });

  it('login → MFA route → enrol a passkey → the upstream sees X-Portcullis-MFA', async () => {
    await page.goto(`${base}/admin/dashboard`);
    await shot(page, 'login');
    await signIn(page, 'alice', 'alice password 1');
    await page.waitForURL(/\/\.portcullis\/mfa\?rd=/);
    expect(await textOf(page, 'h1')).toBe('Confirm it’s you');
    await shot(page, 'mfa-step-up-no-factor');
    await page.click('text=Set one up now');
    await page.waitForURL(/\/\.portcullis\/mfa\/enroll/);
    await page.fill('#passkey-name', 'laptop');
    await shot(page, 'mfa-enroll');
    await page.click('#add-passkey button[type=submit]');
    await page.waitForSelector('#codes li');
    expect(await page.locator('#codes li').count()).toBe(10);
    await shot(page, 'mfa-recovery-codes');
    expect(await authenticator.credentials()).toHaveLength(1);
    await page.click('#continue-after-codes');
    await page.waitForURL(`${base}/admin/dashboard`);
    expect(lastMfaHeader()).toMatch(/^webauthn;age=\d+$/);
  });

  it('asks again once max_age has passed, and a passkey step-up brings the user back', async () => {
    offsetMs += 11 * 60_000;
    await page.goto(`${base}/admin/dashboard`);
    await page.waitForURL(/\/\.portcullis\/mfa\?rd=%2Fadmin%2Fdashboard/);
    await shot(page, 'mfa-step-up');
    await page.click('#use-passkey');
    await page.waitForURL(`${base}/admin/dashboard`);
    expect(lastMfaHeader()).toBe('webauthn;age=0');
    const [cred] = await authenticator.credentials();
    expect(cred?.signCount).toBeGreaterThan(0);
  });

  it('enrols an authenticator app with a computed code, then steps up with TOTP; the same code twice is refused', async () => {
    // The passkey step-up above is fresh (well within enroll_within), so a further factor may be added.
    await page.goto(`${base}/.portcullis/mfa/enroll`);
    await page.click('text=Set up an authenticator app');
    await page.waitForSelector('#totp-secret');
    await shot(page, 'mfa-totp-setup');
    const secret = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
    const enrolCode = totpCodeForStep(secret, totpStep(clock()));
    await page.fill('#totp-confirm-code', enrolCode);
    await page.click('#totp-setup button[type=submit]');
    await page.waitForURL(/\/\.portcullis\/mfa\/enroll\?.*done=added/);
    expect(await textOf(page, 'table')).toContain('Authenticator app');

    // /strict accepts only TOTP with a max age of 1 s: move to the start of a fresh 30 s step.
    offsetMs += 30_000 - (clock() % 30_000) + 2_000;
    await page.goto(`${base}/strict/x`);
    await page.waitForURL(/\/\.portcullis\/mfa\?rd=%2Fstrict%2Fx/);
    expect(await page.locator('#use-passkey').count()).toBe(0);
    const code = totpCodeForStep(secret, totpStep(clock()));
    await page.fill('#totp-code', code);
    await page.click('form[action="/.portcullis/mfa/totp"] button');
    await page.waitForURL(`${base}/strict/x`);
    expect(lastMfaHeader()).toMatch(/^totp;age=\d+$/);

    // Two seconds later the check is stale again, but the step is the same: the code is refused.
    offsetMs += 2_000;
    await page.goto(`${base}/strict/x`);
    await page.waitForURL(/\/\.portcullis\/mfa\?rd=/);
    await page.fill('#totp-code', code);
    await page.click('form[action="/.portcullis/mfa/totp"] button');
    expect(await textOf(page, '[role=alert]')).toContain('already used');
    await shot(page, 'mfa-totp-replay-refused');
    expect(page.url()).toContain('/.portcullis/mfa/totp');
  });

  it('lists the factors on the page and in /.portcullis/me', async () => {
    await page.goto(`${base}/.portcullis/mfa/enroll`);
    expect(await page.locator('tbody tr').count()).toBe(2);
    await shot(page, 'mfa-manage');
    const me = (await (await page.request.get(`${base}/.portcullis/me`, { headers: { accept: 'application/json' } })).json()) as {
      mfa: { factor: string } | null;
      factors: { webauthn: { name: string }[]; totp: { name: string }[]; recovery_codes_left: number };
    };
    expect(me.mfa?.factor).toBe('totp');
    expect(me.factors.webauthn.map((c) => c.name)).toEqual(['laptop']);
    expect(me.factors.totp).toHaveLength(1);
    expect(me.factors.recovery_codes_left).toBe(10);
  });

  it('RFC 9470: an API client is challenged, the user steps up in the browser, and the same token is accepted', async () => {
    const token = await issuer.token(AUDIENCE, { sub: 'alice', groups: ['eng'] }, 7200);
    const first = await fetch(`${base}/admin/api`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    expect(first.status).toBe(401);
    const challenge = first.headers.get('www-authenticate') ?? '';
    expect(challenge).toContain('error="insufficient_user_authentication"');
    expect(challenge).toMatch(/max_age=600\b/);
    expect(challenge).toContain('acr_values="webauthn totp"');
    const body = (await first.json()) as { step_up_url: string; error: string };
    expect(body.error).toBe('GW_ERR_MFA_REQUIRED');
    expect(body.step_up_url.startsWith(`${base}/.portcullis/mfa?token=`)).toBe(true);

    await page.goto(body.step_up_url);
    expect(await textOf(page, '#mfa')).toContain('command-line or API client');
    await shot(page, 'mfa-step-up-for-token');
    await page.click('#use-passkey');
    await page.waitForURL(/\/\.portcullis\/mfa\/confirmed/);
    expect(await textOf(page, 'h1')).toBe('Confirmed');

    const second = await fetch(`${base}/admin/api`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    expect(second.status).toBe(200);
    expect(lastMfaHeader()).toMatch(/^webauthn;age=\d+$/);
    // Another token of the same user is still challenged: the grant names one token.
    const other = await issuer.token(AUDIENCE, { sub: 'alice', groups: ['eng'] }, 7200);
    expect((await fetch(`${base}/admin/api`, { headers: { authorization: `Bearer ${other}` } })).status).toBe(401);
  });

  it('a grant for a token whose user is someone else does not help that token', async () => {
    const bobToken = await issuer.token(AUDIENCE, { sub: 'bob', groups: ['eng'] }, 7200);
    const first = await fetch(`${base}/admin/api`, { headers: { authorization: `Bearer ${bobToken}` } });
    const { step_up_url: url } = (await first.json()) as { step_up_url: string };
    // Alice (signed in here) confirms the link meant for Bob's token.
    await page.goto(url);
    await page.click('#use-passkey');
    await page.waitForURL(/\/\.portcullis\/mfa\/confirmed/);
    expect((await fetch(`${base}/admin/api`, { headers: { authorization: `Bearer ${bobToken}` } })).status).toBe(401);
  });

  it('a cloned passkey (signature counter rolled back) is refused', async () => {
    const [cred] = await authenticator.credentials();
    if (cred === undefined) throw new Error('no credential');
    offsetMs += 11 * 60_000;
    await authenticator.setCredential({ ...cred, signCount: 0 });
    await page.goto(`${base}/admin/keys`);
    await page.waitForURL(/\/\.portcullis\/mfa\?rd=/);
    await page.click('#use-passkey');
    expect(await textOf(page, '#passkey-status')).toContain('counter');
    expect(page.url()).toContain('/.portcullis/mfa?rd=');
  });
});
