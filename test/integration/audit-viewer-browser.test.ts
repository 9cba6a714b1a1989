/**
 * The audit viewer in a real browser: Debian's chromium driven by playwright-core, a CDP virtual
 * authenticator for the passkey step-up, a real gateway (file sink) and a recording upstream. An SRE
 * signs in, registers a passkey (a WebAuthn step-up), opens the viewer, sees requests made through
 * the gateway appear live within a second, filters them, opens a record, runs a verification, and
 * is stopped when the step-up goes stale; a user outside `sre` is refused.
 *
 * Screenshots go to docs/images/audit-viewer*.png when PORTCULLIS_SCREENSHOTS=1.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser } from '../../src/identity/local-users.js';
import { addVirtualAuthenticator, launchChromium } from '../support/chromium.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { freePorts, REPO_ROOT } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

const SCREENSHOTS = process.env.PORTCULLIS_SCREENSHOTS === '1' ? join(REPO_ROOT, 'docs', 'images') : undefined;
const INSTANCE = 'gw-0';

let gw: TestGateway;
let upstream: RecordingUpstream;
let browser: Browser;
let base: string;
let offsetMs = 0;
const clock = () => Date.now() + offsetMs;

beforeAll(async () => {
  const [port = 0] = await freePorts(1);
  base = `http://localhost:${port}`;
  upstream = await startRecordingUpstream();
  gw = await startGateway(
    {
      server: { public_url: base, instance_id: INSTANCE },
      routes: [
        { id: 'grafana', host: 'localhost', path: '/grafana', upstream: upstream.url, allow: { groups: ['eng', 'sre'] } },
        { id: 'billing', host: 'localhost', path: '/billing', upstream: upstream.url, allow: { groups: ['eng', 'sre'] }, mfa: { factors: ['webauthn'], max_age: '10m' } },
        { id: 'ops', host: 'localhost', path: '/ops', upstream: upstream.url, allow: { groups: ['sre'] } },
        { id: 'status', host: 'localhost', path: '/status', upstream: upstream.url, public: true },
      ],
    },
    { listen: `127.0.0.1:${port}`, now: clock },
  );
  const users = join(gw.dir, 'users.yaml');
  await addUser(users, { name: 'sara', email: 'sara@example.com', groups: ['sre'], password: 'sara password 1' });
  await addUser(users, { name: 'eddie', email: 'eddie@example.com', groups: ['eng'], password: 'eddie password 1' });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser.close();
  await gw.stop();
  await upstream.close();
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

/** A request through the gateway from outside the browser (another user's traffic). */
async function through(path: string, headers: Record<string, string> = {}): Promise<void> {
  const res = await fetch(`${base}${path}`, { headers, redirect: 'manual' });
  await res.arrayBuffer();
}

/** The table row showing `path` (the path cell holds path and query). */
function rowFor(page: Page, path: string) {
  return page.locator('#records tbody tr', { has: page.locator('td.path', { hasText: path }) });
}

describe('the audit viewer in a real browser', () => {
  let eng: BrowserContext;
  let sre: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    // Traffic of another user first: allowed, denied, step-ups, public and not found.
    eng = await browser.newContext();
    const p = await eng.newPage();
    await p.goto(`${base}/grafana/d/home`);
    await signIn(p, 'eddie', 'eddie password 1');
    await p.waitForURL(`${base}/grafana/d/home`);
    for (const path of ['/grafana/api/search', '/ops/deploy', '/ops/restart', '/billing/invoices']) await p.goto(`${base}${path}`);
    for (let i = 0; i < 12; i++) await through(`/status/check?i=${i}`);
    await through('/nowhere');
    sre = await browser.newContext();
    page = await sre.newPage();
    await addVirtualAuthenticator(sre, page);
  });

  afterAll(async () => {
    await eng.close();
    await sre.close();
  });

  it('refuses a signed-in user outside the sre group', async () => {
    const p = await eng.newPage();
    const res = await p.goto(`${base}/.portcullis/audit`);
    expect(res?.status()).toBe(403);
    expect(await p.locator('body').innerText()).toContain('not allowed to open the audit log viewer');
    await shot(p, 'audit-viewer-refused');
    await p.close();
  });

  it('an SRE signs in, registers a passkey (the step-up) and lands on the viewer', async () => {
    await page.goto(`${base}/.portcullis/audit`);
    await signIn(page, 'sara', 'sara password 1');
    await page.waitForURL(/\/\.portcullis\/mfa\?rd=%2F\.portcullis%2Faudit/);
    expect(await page.locator('#mfa').innerText()).toContain('used in the last 15 minutes');
    await page.click('text=Set one up now');
    await page.waitForURL(/\/\.portcullis\/mfa\/enroll/);
    await page.fill('#passkey-name', 'laptop');
    await page.click('#add-passkey button[type=submit]');
    await page.waitForSelector('#codes li');
    await page.click('#continue-after-codes');
    await page.waitForURL(`${base}/.portcullis/audit`);
    await page.locator('#live-state', { hasText: `Live: following ${INSTANCE}` }).waitFor({ timeout: 5000 });
    // History is there: the other user's denial, newest first.
    await rowFor(page, '/ops/restart').waitFor();
    expect(await rowFor(page, '/ops/restart').locator('.chip').innerText()).toBe('deny');
    await page.locator('#health tbody tr[data-instance="gw-0"]').waitFor();
  });

  it('shows requests made through the gateway live, within a second', async () => {
    for (let i = 0; i < 3; i++) {
      await through(`/status/live-${i}`);
      // The request has ended (its record is written): it must be on the page within a second.
      const t0 = performance.now();
      await rowFor(page, `/status/live-${i}`).waitFor({ timeout: 1000 });
      expect(performance.now() - t0).toBeLessThan(1000);
    }
    const top = page.locator('#records tbody tr').first();
    expect(await top.locator('td.path').innerText()).toBe('/status/live-2');
    expect(await top.locator('.chip').innerText()).toBe('allow');
    // Charts are drawn from the records (SVG, no third-party code).
    await page.locator('#chart-minutes rect.bar-requests').first().waitFor({ timeout: 8000 });
    await page.locator('#chart-users text', { hasText: 'eddie' }).first().waitFor({ timeout: 8000 });
    await page.locator('#chart-stepups text', { hasText: 'billing' }).first().waitFor({ timeout: 8000 });
    await shot(page, 'audit-viewer');
  });

  it('filters the table and the live tail', async () => {
    await page.fill('#f-user', 'eddie');
    await page.selectOption('#f-decision', 'deny');
    await page.click('#filters button[type=submit]');
    await page.waitForURL(/decision=deny/);
    // eddie's two refusals on routes, and the viewer refusing him (the viewer is audited too).
    await expect.poll(async () => page.locator('#records tbody tr').count()).toBe(3);
    const paths = await page.locator('#records tbody td.path').allInnerTexts();
    expect(paths).toEqual(['/.portcullis/audit', '/ops/restart', '/ops/deploy']);
    // Live: another denial of eddie's appears, an allowed request does not.
    const p = await eng.newPage();
    await p.goto(`${base}/ops/again`);
    await p.goto(`${base}/grafana/ok`);
    await p.close();
    await rowFor(page, '/ops/again').waitFor({ timeout: 1000 });
    await through('/status/not-shown');
    await page.waitForTimeout(400);
    expect(await rowFor(page, '/grafana/ok').count()).toBe(0);
    expect(await page.locator('#records tbody tr').count()).toBe(4);
    await shot(page, 'audit-viewer-filtered');
  });

  it('opens a record: the whole record and its seq', async () => {
    await rowFor(page, '/ops/deploy').click();
    await page.locator('#detail').waitFor();
    const json = await page.locator('#detail-json').innerText();
    const record = JSON.parse(json) as { seq: number; log: string; route: string; decision: string; identity: { user: string } };
    expect(record).toMatchObject({ route: 'ops', decision: 'deny', identity: { user: 'eddie' }, log: `portcullis.example/audit/${INSTANCE}` });
    expect(await page.locator('#detail-seq').innerText()).toBe(`#${record.seq}`);
    await shot(page, 'audit-viewer-detail');
    await page.click('#detail-close');
  });

  it('runs a verification and shows its findings', async () => {
    await gw.app.audit.flush(5000);
    await gw.app.sealer.sealNow();
    await page.click('#verify');
    const summary = page.locator('#verify-summary');
    // A worker thread verifies every log; on a busy machine that can take a while.
    await summary.waitFor({ timeout: 45_000 });
    expect(await summary.innerText()).toMatch(/^Intact — verified 1 log: \d+\/\d+ records, \d+\/\d+ checkpoints/);
    await page.locator('#health tbody tr[data-instance="gw-0"] .ok', { hasText: 'intact' }).waitFor({ timeout: 5000 });
    await page.click('#clear');
    await page.waitForURL(`${base}/.portcullis/audit`);
    await rowFor(page, '/status/not-shown').waitFor();
    await shot(page, 'audit-viewer-verified');
  }, 60_000);

  it('stops the live tail when the step-up goes stale, and offers to confirm again', async () => {
    offsetMs += 16 * 60_000;
    await page.locator('#live-state', { hasText: 'step-up has expired' }).waitFor({ timeout: 5000 });
    expect(await page.locator('#live-bar a.relink').getAttribute('href')).toBe('/.portcullis/mfa?rd=%2F.portcullis%2Faudit');
    await page.click('#live-bar a.relink');
    await page.waitForURL(/\/\.portcullis\/mfa\?rd=/);
    await page.click('#use-passkey');
    await page.waitForURL(`${base}/.portcullis/audit`);
    await page.locator('#live-state', { hasText: 'Live: following' }).waitFor({ timeout: 5000 });
  });
});
