import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSinkRecords } from '../support/audit-records.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

let a: RecordingUpstream;
let b: RecordingUpstream;
let dir: string;
let file: string;
let gw: TestGateway;

function yamlFor(upstream: string, extraRoute = ''): string {
  return `server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nroutes:\n${extraRoute}  - {id: app, host: app.localhost, path: /, upstream: "${upstream}", public: true}\n`;
}

async function metric(name: string): Promise<string> {
  const body = (await gw.app.metrics.registry.getSingleMetricAsString(name));
  return body;
}

beforeAll(async () => {
  a = await startRecordingUpstream();
  b = await startRecordingUpstream();
  dir = mkdtempSync(join(tmpdir(), 'portcullis-reload-'));
  file = join(dir, 'portcullis.yaml');
  writeFileSync(file, yamlFor(a.url));
  gw = await startGateway({ server: { instance_id: 'gw-reload' }, routes: [{ id: 'app', host: 'app.localhost', path: '/', upstream: a.url, public: true }] }, { configFile: file });
});

afterAll(async () => {
  await gw.stop();
  await a.close();
  await b.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('App.reload', () => {
  it('swaps configurations under load without failing a single request', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    let stop = false;
    const statuses = new Map<number, number>();
    const errors: unknown[] = [];
    const worker = async () => {
      while (!stop) {
        try {
          const res = await send(gw.port, { path: '/load', headers: ['Host', 'app.localhost'], agent });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        } catch (err) {
          errors.push(err);
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    for (let i = 0; i < 20; i++) {
      writeFileSync(file, yamlFor(i % 2 === 0 ? b.url : a.url));
      expect(await gw.app.reload()).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
    }
    stop = true;
    await Promise.all(workers);
    agent.destroy();
    expect(errors).toEqual([]);
    expect([...statuses.keys()]).toEqual([200]);
    expect(statuses.get(200)).toBeGreaterThan(100);
    expect(a.requests.length).toBeGreaterThan(0);
    expect(b.requests.length).toBeGreaterThan(0);
    expect(await metric('portcullis_config_reloads_total')).toContain('portcullis_config_reloads_total{result="success"} 20');
  });

  it('refuses an invalid configuration and keeps serving the old one', async () => {
    writeFileSync(file, yamlFor(b.url));
    expect(await gw.app.reload()).toBe(true);
    writeFileSync(file, 'routes:\n  - {id: app, host: app.localhost, upstream: "not a url", public: true}\n');
    expect(await gw.app.reload()).toBe(false);
    const before = b.requests.length;
    const res = await send(gw.port, { path: '/still', headers: ['Host', 'app.localhost'] });
    expect(res.status).toBe(200);
    expect(b.requests.length).toBe(before + 1);
    expect(await metric('portcullis_config_reloads_total')).toContain('portcullis_config_reloads_total{result="failure"} 1');
    expect(await gw.app.audit.flush()).toBe(true);
    const config = readFileSinkRecords(join(gw.dir, 'audit'), 'gw-reload').map((r) => r.record).filter((r) => r.kind === 'config');
    expect(config.filter((r) => r.event?.result === 'success').length).toBeGreaterThanOrEqual(21);
    expect(config.at(-1)).toMatchObject({ kind: 'config', decision: 'error', reason: 'config-refused', event: { action: 'reload', result: 'failure', file } });
    expect(String(config.at(-1)?.event?.detail)).toContain(`${file}:2:`);
  });

  it('lets an in-flight request finish on the snapshot it started with', async () => {
    writeFileSync(file, yamlFor(b.url, `  - {id: slow, host: app.localhost, path: /slow, upstream: "${a.url}", public: true}\n`));
    expect(await gw.app.reload()).toBe(true);
    const inFlight = send(gw.port, { path: '/slow?ms=600', headers: ['Host', 'app.localhost'] });
    await new Promise((r) => setTimeout(r, 150));
    writeFileSync(file, yamlFor(b.url));
    expect(await gw.app.reload()).toBe(true);
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.text()).toBe('slow ok\n');
    // New requests see the new snapshot: /slow now belongs to the catch-all route on upstream b.
    const before = b.requests.length;
    const after = await send(gw.port, { path: '/slow?ms=1', headers: ['Host', 'app.localhost'] });
    expect(after.status).toBe(200);
    expect(b.requests.length).toBe(before + 1);
  });
});

describe('the admin listener', () => {
  it('exposes the SPEC metric names, /healthz and /readyz', async () => {
    await send(gw.port, { path: '/m', headers: ['Host', 'app.localhost'] });
    await send(gw.port, { path: '/m', headers: ['Host', 'nowhere.localhost'] });
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    for (const name of [
      'portcullis_requests_total',
      'portcullis_request_duration_seconds',
      'portcullis_upstream_duration_seconds',
      'portcullis_upstream_errors_total',
      'portcullis_websockets_active',
      'portcullis_auth_logins_total',
      'portcullis_mfa_challenges_total',
      'portcullis_audit_records_total',
      'portcullis_audit_queue_depth',
      'portcullis_audit_spooled_records',
      'portcullis_audit_tree_size',
      'portcullis_audit_last_checkpoint_timestamp_seconds',
      'portcullis_config_reloads_total',
      'portcullis_db_sessions_active',
      'portcullis_db_statements_total',
    ]) {
      expect(metrics, name).toContain(`# TYPE ${name} `);
    }
    expect(metrics).toMatch(/portcullis_requests_total\{route="app",method="GET",code="200",decision="allow"\} \d+/);
    expect(metrics).toMatch(/portcullis_requests_total\{route="none",method="GET",code="404",decision="not_found"\} \d+/);
    expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${gw.adminUrl}/readyz`)).status).toBe(200);
    expect((await send(gw.port, { path: '/metrics', headers: ['Host', 'nowhere.localhost'] })).status).toBe(404);
  });
});
