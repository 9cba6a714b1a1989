/**
 * The audit viewer end to end without a browser (the browser test is audit-viewer-browser.test.ts):
 * a real gateway with the file sink, real sign-ins and passkey step-ups (software authenticator),
 * the JSON API and the live feed over a real WebSocket.
 *
 * The gateway's clock is injected (real time plus an offset) so that a step-up can go stale.
 */
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { canonicalBytes } from '../../src/audit/canonical.js';
import { createFileSink } from '../../src/audit/file-sink.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { addUser } from '../../src/identity/local-users.js';
import { readFileSinkRecords } from '../support/audit-records.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { freePorts } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';
import { signInViewer, SoftAuthenticator, type ViewerAgent } from '../support/viewer-agent.js';

const INSTANCE = 'gw-viewer';
const PASSWORD = 'viewer test password 1';

let offsetMs = 0;
const clock = (): number => Date.now() + offsetMs;
let port: number;
let base: string;
let gw: TestGateway;
let upstream: RecordingUpstream;

beforeAll(async () => {
  [port = 0] = await freePorts(1);
  base = `http://localhost:${port}`;
  upstream = await startRecordingUpstream();
  gw = await startGateway(
    {
      server: { public_url: base, instance_id: INSTANCE },
      routes: [
        { id: 'app', host: 'localhost', path: '/app', upstream: upstream.url, allow: { groups: ['eng', 'sre'] } },
        { id: 'pub', host: 'localhost', path: '/pub', upstream: upstream.url, public: true },
        { id: 'status', host: 'localhost', path: '/status', upstream: upstream.url, public: true },
      ],
    },
    { listen: `127.0.0.1:${port}`, now: clock },
  );
  const users = join(gw.dir, 'users.yaml');
  await Promise.all([
    addUser(users, { name: 'sre1', groups: ['sre'], password: PASSWORD }),
    addUser(users, { name: 'sre2', groups: ['sre'], password: PASSWORD }),
    addUser(users, { name: 'eng1', groups: ['eng'], password: PASSWORD }),
  ]);
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

/** Each user's passkey, once registered. */
const passkeys = new Map<string, SoftAuthenticator>();

/** An SRE with a fresh passkey step-up (registering the passkey the first time). */
async function sre(user = 'sre1'): Promise<ViewerAgent> {
  const a = await signInViewer(port, user, PASSWORD);
  const known = passkeys.get(user);
  if (known !== undefined) {
    await a.stepUp(known);
    return a;
  }
  const auth = SoftAuthenticator.create({ origin: base, algorithm: 'ES256' });
  await a.enrolPasskey(auth);
  passkeys.set(user, auth);
  return a;
}

async function records(): Promise<AuditRecord[]> {
  expect(await gw.app.audit.flush(5000)).toBe(true);
  return readFileSinkRecords(join(gw.dir, 'audit'), INSTANCE).map((r) => r.record);
}

async function pub(path: string): Promise<void> {
  const res = await fetch(`${base}${path}`);
  await res.arrayBuffer();
}

interface Page {
  log: string;
  size: number;
  next: number | null;
  scanned: number;
  records: { seq: number; record: AuditRecord }[];
}

describe('who may open the viewer', () => {
  it('sends strangers to sign in, refuses non-SREs, asks SREs for a fresh passkey, then shows the page', async () => {
    const anon = new (await import('../support/viewer-agent.js')).ViewerAgent(port, 'anon');
    const page = await anon.get('/.portcullis/audit?route=pub');
    expect(page.status).toBe(302);
    expect(page.headers.location).toBe('/.portcullis/login?rd=%2F.portcullis%2Faudit%3Froute%3Dpub');
    const api = await anon.get('/.portcullis/audit/records', 'application/json');
    expect(api.status).toBe(401);
    expect(api.headers['www-authenticate']).toBe('Bearer realm="portcullis"');

    const eng = await signInViewer(port, 'eng1', PASSWORD);
    const denied = await eng.get('/.portcullis/audit');
    expect(denied.status).toBe(403);
    expect(denied.text()).toContain('not allowed to open the audit log viewer');
    expect((await eng.json<{ error: string }>('/.portcullis/audit/health')).body.error).toBe('GW_ERR_POLICY_DENIED');

    const s = await signInViewer(port, 'sre1', PASSWORD);
    const stale = await s.get('/.portcullis/audit');
    expect(stale.status).toBe(302);
    expect(stale.headers.location).toBe('/.portcullis/mfa?rd=%2F.portcullis%2Faudit');
    const challenge = await s.get('/.portcullis/audit/records', 'application/json');
    expect(challenge.status).toBe(401);
    expect(challenge.headers['www-authenticate']).toContain('error="insufficient_user_authentication"');
    expect(challenge.headers['www-authenticate']).toContain('max_age=900, acr_values="webauthn"');
    // The step-up page knows what the viewer needs: a passkey, used in the last 15 minutes.
    const stepUp = await s.get('/.portcullis/mfa?rd=%2F.portcullis%2Faudit');
    expect(stepUp.text()).toContain('used in the last 15 minutes');
    expect(stepUp.text()).not.toContain('action="/.portcullis/mfa/totp"');

    const auth = SoftAuthenticator.create({ origin: base, algorithm: 'ES256' });
    await s.enrolPasskey(auth);
    passkeys.set('sre1', auth);
    const ok = await s.get('/.portcullis/audit');
    expect(ok.status).toBe(200);
    expect(ok.headers['content-security-policy']).toContain("script-src 'self'");
    expect(ok.text()).toContain('<script src="/.portcullis/assets/audit-viewer.js"></script>');
    expect(ok.text()).toContain(`data-csrf="${s.csrf}"`);
    const script = await s.get('/.portcullis/assets/audit-viewer.js', '*/*');
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');

    // Every one of those requests is itself in the audit log, with who asked and what was decided.
    const viewerRecords = (await records()).filter((r) => r.request?.path.startsWith('/.portcullis/audit') === true);
    const seen = viewerRecords.map((r) => [r.identity?.user ?? '-', r.request?.path, r.decision, r.response?.status]);
    expect(seen).toEqual(
      expect.arrayContaining([
        ['-', '/.portcullis/audit', 'unauthenticated', 302],
        ['-', '/.portcullis/audit/records', 'unauthenticated', 401],
        ['eng1', '/.portcullis/audit', 'deny', 403],
        ['eng1', '/.portcullis/audit/health', 'deny', 403],
        ['sre1', '/.portcullis/audit', 'step_up', 302],
        ['sre1', '/.portcullis/audit/records', 'step_up', 401],
        ['sre1', '/.portcullis/audit', 'allow', 200],
      ]),
    );
    for (const r of viewerRecords) expect(r.route).toBeUndefined();
    const allowed = viewerRecords.find((r) => r.decision === 'allow');
    expect(allowed?.identity?.mfa?.factor).toBe('webauthn');
    expect(allowed?.reason).toBe('group-ok');
  });
});

describe('history', () => {
  let s: ViewerAgent;
  beforeAll(async () => {
    s = await sre();
    for (let i = 0; i < 25; i++) await pub(`/pub/item?i=${i}`);
    await pub('/status?code=503');
    await pub('/pub/item?needle=yes');
    await s.get('/app/mine');
    await gw.app.audit.flush(5000);
  });

  it('pages newest first with a cursor, through a filter', async () => {
    const first = await s.json<Page>('/.portcullis/audit/records?route=pub&limit=10');
    expect(first.status).toBe(200);
    const seqs = first.body.records.map((r) => r.seq);
    expect(seqs).toHaveLength(10);
    expect([...seqs].sort((a, b) => b - a)).toEqual(seqs);
    expect(first.body.records.every((r) => r.record.route === 'pub')).toBe(true);
    expect(first.body.records[0]?.record.request?.query).toBe('needle=yes');
    expect(first.body.log).toBe(INSTANCE);
    const second = await s.json<Page>(`/.portcullis/audit/records?route=pub&limit=10&before=${first.body.next ?? 0}`);
    expect(second.body.records[0]?.seq).toBeLessThan(seqs.at(-1) ?? 0);
    expect(second.body.records.every((r) => r.record.route === 'pub')).toBe(true);
  });

  it('filters by status class, free text, user and decision; refuses bad filters', async () => {
    const fivexx = await s.json<Page>('/.portcullis/audit/records?status=5xx');
    expect(fivexx.body.records.map((r) => [r.record.route, r.record.response?.status])).toEqual([['status', 503]]);
    const needle = await s.json<Page>('/.portcullis/audit/records?q=NEEDLE');
    expect(needle.body.records.map((r) => r.record.request?.query)).toEqual(['needle=yes']);
    const mine = await s.json<Page>('/.portcullis/audit/records?user=sre1&route=app');
    expect(mine.body.records.map((r) => r.record.request?.path)).toEqual(['/app/mine']);
    const since = new Date(clock() - 60_000).toISOString();
    const recent = await s.json<Page>(`/.portcullis/audit/records?since=${since}&decision=allow&route=pub&limit=500`);
    expect(recent.body.records.length).toBe(26);
    const bad = await s.json<{ errors: string[] }>('/.portcullis/audit/records?decision=maybe&status=9xx');
    expect(bad.status).toBe(400);
    expect(bad.body.errors).toHaveLength(2);
  });

  it('shows one record by seq', async () => {
    const [newest] = (await s.json<Page>('/.portcullis/audit/records?limit=1&route=pub')).body.records;
    const one = await s.json<Page>(`/.portcullis/audit/records/${newest?.seq ?? -1}`);
    expect(one.body.records).toEqual([newest]);
    expect((await s.json<Page>('/.portcullis/audit/records/999999')).status).toBe(404);
  });

  it('reports log health for this instance and for other logs in the sink', async () => {
    // The writer ships records a few ms after they are spooled: let the earlier tests' records land.
    expect(await gw.app.audit.flush(5_000)).toBe(true);
    const other = createFileSink({ dir: join(gw.dir, 'audit') });
    await other.append('gw-other', [{ seq: 0, bytes: canonicalBytes({ v: 1, seq: 0, id: 'x', ts: new Date().toISOString(), kind: 'config' }) }]);
    await other.close();
    // Another gateway's log (unsealed, so gone again before the verification tests).
    onTestFinished(() => {
      rmSync(join(gw.dir, 'audit', 'gw-other'), { recursive: true, force: true });
    });
    const h = await s.json<{ logs: { instance: string; self: boolean; records: number; tree_size: number | null; spooled: number | null; sink_healthy: boolean | null }[] }>('/.portcullis/audit/health');
    const [self, ...rest] = h.body.logs;
    expect(self).toMatchObject({ instance: INSTANCE, self: true, spooled: 0, sink_healthy: true });
    expect(self?.records).toBeGreaterThan(25);
    expect(rest).toEqual([expect.objectContaining({ instance: 'gw-other', self: false, records: 1, tree_size: null, spooled: null })]);
  });
});

describe('live feed', () => {
  it('refuses other origins, strangers and non-SREs', async () => {
    const s = await sre();
    const noOrigin = s.live('', { origin: null });
    expect(await noOrigin.opened).toBe(false);
    expect(noOrigin.refusedStatus).toBe(403);
    const evil = s.live('', { origin: 'http://evil.example' });
    expect(await evil.opened).toBe(false);
    expect(evil.refusedStatus).toBe(403);
    const eng = await signInViewer(port, 'eng1', PASSWORD);
    const refused = eng.live();
    expect(await refused.opened).toBe(false);
    expect(refused.refusedStatus).toBe(403);
    const anon = new (await import('../support/viewer-agent.js')).ViewerAgent(port, 'anon').live();
    expect(await anon.opened).toBe(false);
    expect(anon.refusedStatus).toBe(401);
  });

  it('streams matching records within a second, resumes after the last seq seen, and is audited when it closes', async () => {
    const s = await sre();
    const size = gw.app.audit.stats().size;
    const live = s.live(`route=pub&after=${size - 1}&log=${INSTANCE}`);
    expect(await live.opened).toBe(true);
    await live.until(() => live.messages.some((m) => m.type === 'hello'), 3000, 'hello');
    expect(live.messages[0]).toMatchObject({ type: 'hello', instance: INSTANCE, live: true });
    for (let i = 0; i < 5; i++) {
      await pub(`/pub/live?n=${i}`);
      const t0 = performance.now();
      await live.until(() => live.records().some((r) => r.record.request !== undefined && (r.record.request as { query?: string }).query === `n=${i}`), 1000, `record n=${i}`);
      expect(performance.now() - t0).toBeLessThan(1000);
    }
    await s.get('/app/not-shown');
    await live.until(() => live.messages.some((m) => m.type === 'health'), 4000, 'health');
    expect(live.records().every((r) => r.record.route === 'pub')).toBe(true);
    const last = live.records().at(-1)?.seq ?? -1;
    await live.close();

    // While away: three more. The reconnect names the last seq it saw and gets exactly those.
    for (let i = 0; i < 3; i++) await pub(`/pub/away?n=${i}`);
    const again = s.live(`route=pub&after=${last}&log=${INSTANCE}`);
    await again.until(() => again.records().length >= 3, 3000, 'the missed records');
    expect(again.records().map((r) => (r.record.request as { query: string }).query)).toEqual(['n=0', 'n=1', 'n=2']);
    expect(again.records()[0]?.seq).toBeGreaterThan(last);
    await again.close();

    const closed = (await records()).filter((r) => r.kind === 'websocket' && r.request?.path === '/.portcullis/audit/live' && r.identity?.user === 'sre1');
    expect(closed.length).toBeGreaterThanOrEqual(2);
    expect(closed[0]).toMatchObject({ decision: 'allow', response: { status: 101 } });
    expect(closed[0]?.websocket?.messages_out).toBeGreaterThan(5);
  });

  it('closes when the session is signed out, and when the step-up goes stale', async () => {
    const a = await sre('sre2');
    const live = a.live();
    expect(await live.opened).toBe(true);
    await a.signOut();
    expect(await live.closed).toBe(4401);

    const b = await sre('sre2');
    const again = b.live();
    expect(await again.opened).toBe(true);
    offsetMs += 16 * 60_000;
    try {
      expect(await again.closed).toBe(4428);
      expect(again.closeReason).toBe('step-up-expired');
    } finally {
      offsetMs -= 16 * 60_000;
    }
  });
});

describe('verification', () => {
  it('runs on request (CSRF and same origin), reports intact logs, and names a tampered record', async () => {
    const s = await sre();
    expect((await s.post('/.portcullis/audit/verify', {}, { csrf: null })).status).toBe(403);
    expect((await s.post('/.portcullis/audit/verify', {}, { origin: 'http://evil.example' })).status).toBe(403);
    await gw.app.audit.flush(5000);
    await gw.app.sealer.sealNow();
    const res = await s.post('/.portcullis/audit/verify', {});
    expect(res.status).toBe(200);
    const run = res.json() as { result: string; summary: string; logs: { log: string; tampered: number; records: number }[] };
    expect(run.logs.filter((l) => l.tampered > 0)).toEqual([]);
    expect(run.result).toBe('intact');
    expect(run.summary).toMatch(/^verified 1 log: \d+\/\d+ records, \d+\/\d+ checkpoints$/);
    expect(run.logs.find((l) => l.log === INSTANCE)?.tampered).toBe(0);
    const h = await s.json<{ verification: { last: { result: string } | null } }>('/.portcullis/audit/health');
    expect(h.body.verification.last?.result).toBe('intact');

    // Change one record in the sink: the next run says which. The records of the requests above must
    // be in the file first, or rewriting it would drop the ones that land meanwhile.
    expect(await gw.app.audit.flush(5000)).toBe(true);
    const dir = join(gw.dir, 'audit', INSTANCE);
    const [segment = ''] = readdirSync(dir).filter((f) => f.startsWith('records-'));
    const lines = readFileSync(join(dir, segment), 'utf8').split('\n');
    lines[3] = (lines[3] ?? '').replace('"decision":"', '"decision":"x');
    writeFileSync(join(dir, segment), lines.join('\n'));
    const tampered = (await s.post('/.portcullis/audit/verify', {})).json() as { result: string; logs: { log: string; findings: { code: string; seq?: number }[] }[] };
    expect(tampered.result).toBe('tampered');
    const findings = tampered.logs.find((l) => l.log === INSTANCE)?.findings ?? [];
    expect(findings).toEqual(expect.arrayContaining([expect.objectContaining({ code: 'record-modified', seq: 3 })]));
    const audited = (await records()).filter((r) => r.request?.path === '/.portcullis/audit/verify').map((r) => r.reason);
    expect(audited).toEqual(expect.arrayContaining(['csrf', 'verify-intact', 'verify-tampered']));
  }, 60_000);
});
