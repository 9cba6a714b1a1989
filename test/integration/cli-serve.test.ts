/**
 * The real command line, as an operator runs it: `node bin/portcullis.js …` from the compiled build
 * (`npm run build` first), on real sockets, with temp configs and data dirs. Covers SPEC §1 (commands,
 * exit codes, FILE:LINE:COL errors), §2 (reload on file change and SIGHUP), §3 (what the upstream
 * receives), §6 (admin listener) and graceful shutdown.
 */
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { send, type ClientResponse } from '../support/http-client.js';
import { eventually, freePorts as freeLoopbackPorts, killAllCli, runCli, startCli, tryConnect, type CliProcess } from '../support/process.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

interface RouteSpec {
  readonly id: string;
  readonly host: string;
  readonly upstream: string;
  readonly websocket?: boolean;
}

interface ConfigSpec {
  readonly dir: string;
  readonly port: number;
  readonly adminPort: number;
  readonly routes: readonly RouteSpec[];
  readonly shutdownGrace?: string;
}

/**
 * A complete config whose listeners and data dirs are all the test's own. Data lives in `data/` so
 * that files the gateway creates never show up as changes in the config's own directory.
 */
function configYaml(c: ConfigSpec): string {
  const routes = c.routes.map(
    (r) => `  - {id: ${r.id}, host: ${r.host}, path: /, upstream: "${r.upstream}", public: true, websocket: ${r.websocket === true}}`,
  );
  return [
    'server:',
    `  listen: 127.0.0.1:${c.port}`,
    `  public_url: http://localhost:${c.port}`,
    `  admin_listen: 127.0.0.1:${c.adminPort}`,
    '  instance_id: cli-test',
    `  timeouts: {shutdown_grace: ${c.shutdownGrace ?? '5s'}}`,
    'identity:',
    `  providers: [{id: local, type: local, users_file: "${join(c.dir, 'data', 'users.yaml')}"}]`,
    `  assertion: {key_file: "${join(c.dir, 'data', 'assertion-keys.json')}"}`,
    'audit:',
    `  sink: {type: file, dir: "${join(c.dir, 'data', 'audit')}"}`,
    `  spool_dir: "${join(c.dir, 'data', 'spool')}"`,
    `  seal: {key_file: "${join(c.dir, 'data', 'seal.key')}", witness_dir: "${join(c.dir, 'data', 'checkpoints')}"}`,
    `mfa: {credentials_file: "${join(c.dir, 'data', 'mfa', 'credentials.json')}", secret_key_file: "${join(c.dir, 'data', 'mfa', 'secret.key')}"}`,
    'routes:',
    ...routes,
    '',
  ].join('\n');
}

const tempDirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-'));
  tempDirs.push(dir);
  return dir;
}

interface Ports {
  readonly port: number;
  readonly adminPort: number;
  readonly echoPort: number;
}

async function freePorts(): Promise<Ports> {
  const [port = 0, adminPort = 0, echoPort = 0] = await freeLoopbackPorts(3);
  return { port, adminPort, echoPort };
}

/** Starts `serve` and resolves once it says it is listening. */
async function serve(file: string, extra: readonly string[] = []): Promise<CliProcess> {
  const p = startCli(['serve', '--config', file, ...extra]);
  await p.waitFor(/^portcullis listening on /m);
  return p;
}

/** GET through the gateway with the given Host header. */
function get(port: number, host: string, path = '/'): Promise<ClientResponse> {
  return send(port, { path, headers: ['Host', host, 'Accept', 'application/json'] });
}

async function metricsText(adminPort: number): Promise<string> {
  const res = await send(adminPort, { path: '/metrics', headers: ['Host', '127.0.0.1'] });
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of one exactly-labelled sample, 0 when the series does not exist yet. */
function sample(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return 0;
}

interface EchoReport {
  method: string;
  url: string;
  /** `Name: value` lines (older builds: `[name, value]` pairs), as received. */
  headers: (string | [string, string])[];
}

/** Every value the echo upstream received for header `name`. */
function echoHeader(report: EchoReport, name: string): string[] {
  const out: string[] = [];
  for (const h of report.headers) {
    const [k, v] = typeof h === 'string' ? [h.slice(0, h.indexOf(':')), h.slice(h.indexOf(':') + 1).trim()] : h;
    if (k.toLowerCase() === name.toLowerCase()) out.push(v);
  }
  return out;
}

/** A node:http upstream that answers `slow ok` after `delayMs`, and tells when a request arrived. */
interface SlowUpstream {
  readonly url: string;
  /** Resolves when the first request has arrived. */
  readonly received: Promise<void>;
  close(): Promise<void>;
}

async function startSlowUpstream(delayMs: number): Promise<SlowUpstream> {
  let arrived!: () => void;
  const received = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    req.resume();
    arrived();
    const t = setTimeout(() => {
      timers.delete(t);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('slow ok\n');
    }, delayMs);
    timers.add(t);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    async close() {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const upstreams: SlowUpstream[] = [];

afterEach(async () => {
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

afterAll(async () => {
  await killAllCli();
  await Promise.all(tempDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

// ---------------------------------------------------------------------------------------------

describe('portcullis serve', () => {
  describe('command line', () => {
    afterEach(killAllCli);

    it('prints usage and exits 0 for --help on serve, echo and the top level', async () => {
      const [top, serveHelp, echoHelp] = await Promise.all([runCli(['--help']), runCli(['serve', '--help']), runCli(['echo', '--help'])]);
      expect(top.code).toBe(0);
      expect(top.stdout).toMatch(/^Usage: portcullis <command>/);
      expect(top.stdout).toContain('serve [--config FILE]');
      expect(serveHelp.code).toBe(0);
      expect(serveHelp.stdout).toMatch(/^Usage: portcullis serve \[--config FILE\]/);
      expect(serveHelp.stdout).toContain('SIGHUP');
      expect(echoHelp.code).toBe(0);
      expect(echoHelp.stdout).toMatch(/^Usage: portcullis echo \[--listen HOST:PORT\]/);
    });

    it('exits 2 with usage on stderr for an unknown command', async () => {
      const r = await runCli(['frobnicate']);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('unknown command: frobnicate');
      expect(r.stderr).toContain('Usage: portcullis <command>');
      expect(r.stdout).toBe('');
    });

    it('exits 1 on an invalid config with FILE:LINE:COL lines on stderr and listens on nothing', async () => {
      const dir = await tempDir();
      const ports = await freePorts();
      const file = join(dir, 'invalid.yaml');
      await writeFile(
        file,
        [
          'server:',
          `  listen: 127.0.0.1:${ports.port}`,
          `  admin_listen: 127.0.0.1:${ports.adminPort}`,
          'routes:',
          '  - id: echo',
          '    host: localhost',
          `    upstream: http://127.0.0.1:${ports.echoPort}`,
          '    public: maybe',
          '    timeouts: {response: 5 seconds}',
          '',
        ].join('\n'),
      );
      const p = startCli(['serve', '--config', file, '--echo', `127.0.0.1:${ports.echoPort}`]);
      const exit = await p.exited;
      expect(exit.code).toBe(1);
      expect(p.stderr().trimEnd().split('\n')).toEqual([
        `${file}:8:13: routes[0].public: expected true or false, got a string`,
        `${file}:9:26: routes[0].timeouts.response: expected a duration such as 500ms, 90s, 10m, 12h or 7d`,
      ]);
      expect(p.stdout()).toBe('');
      const probes = await Promise.all([tryConnect(ports.port), tryConnect(ports.adminPort), tryConnect(ports.echoPort)]);
      expect(probes).toEqual(['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
    });

    it('exits 1 with a one-line error and leaves nothing listening when a port is taken', async () => {
      const dir = await tempDir();
      const ports = await freePorts();
      const blocker = http.createServer();
      await new Promise<void>((resolve) => blocker.listen(ports.port, '127.0.0.1', resolve));
      try {
        const file = join(dir, 'portcullis.yaml');
        await writeFile(file, configYaml({ dir, port: ports.port, adminPort: ports.adminPort, routes: [{ id: 'echo', host: 'localhost', upstream: `http://127.0.0.1:${ports.echoPort}` }] }));
        const p = startCli(['serve', '--config', file, '--echo', `127.0.0.1:${ports.echoPort}`]);
        const timer = setTimeout(() => p.signal('SIGKILL'), 8000);
        const exit = await p.exited;
        clearTimeout(timer);
        expect(exit.code).toBe(1);
        expect(p.stderr().trimEnd().split('\n')).toEqual([`portcullis: cannot listen on 127.0.0.1:${ports.port} (server.listen): listen EADDRINUSE: address already in use 127.0.0.1:${ports.port}`]);
        expect(await Promise.all([tryConnect(ports.adminPort), tryConnect(ports.echoPort)])).toEqual(['ECONNREFUSED', 'ECONNREFUSED']);
      } finally {
        await new Promise<void>((resolve) => blocker.close(() => resolve()));
      }
    });

    it('checks config/portcullis.yaml with "config check" and exits 0', async () => {
      const r = await runCli(['config', 'check', 'config/portcullis.yaml']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('ok: 2 routes, 0 databases\n');
      expect(r.code).toBe(0);
    });
  });

  describe('with the built-in echo upstream', () => {
    let gw: CliProcess;
    let ports: Ports;

    beforeAll(async () => {
      const dir = await tempDir();
      ports = await freePorts();
      const file = join(dir, 'portcullis.yaml');
      await writeFile(
        file,
        configYaml({ dir, port: ports.port, adminPort: ports.adminPort, routes: [{ id: 'echo', host: 'localhost', upstream: `http://127.0.0.1:${ports.echoPort}`, websocket: true }] }),
      );
      gw = await serve(file, ['--echo', `127.0.0.1:${ports.echoPort}`]);
    });

    afterAll(async () => {
      gw.signal('SIGTERM');
      const exit = await gw.exited;
      expect(exit.code).toBe(0);
    });

    it('proxies a GET to the echo upstream with the canonical path and the forwarding headers', async () => {
      const res = await send(ports.port, {
        path: '/a/%7euser/%41b/caf%c3%a9?q=1&x=%2F',
        headers: ['Host', 'localhost', 'Accept', 'application/json', 'X-Forwarded-For', '203.0.113.9', 'X-Portcullis-User', 'mallory'],
      });
      expect(res.status).toBe(200);
      const requestId = res.headers['x-portcullis-request-id'];
      expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
      const report = res.json() as EchoReport;
      expect(report.method).toBe('GET');
      expect(report.url).toBe('/a/~user/Ab/caf%C3%A9?q=1&x=%2F');
      // The peer (the test) is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
      expect(echoHeader(report, 'x-forwarded-for')).toEqual(['127.0.0.1']);
      expect(echoHeader(report, 'x-forwarded-proto')).toEqual(['http']);
      expect(echoHeader(report, 'x-forwarded-host')).toEqual(['localhost']);
      expect(echoHeader(report, 'x-portcullis-request-id')).toEqual([requestId]);
      expect(echoHeader(report, 'x-portcullis-user')).toEqual([]);
      expect(echoHeader(report, 'host')).toEqual([`127.0.0.1:${ports.echoPort}`]);
    });

    it('relays WebSocket messages through the gateway to the echo upstream', async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${ports.port}/ws`, { headers: { Host: 'localhost' } });
      try {
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve());
          ws.once('error', reject);
        });
        const reply = new Promise<string>((resolve) => {
          ws.once('message', (data: Buffer) => resolve(data.toString('utf8')));
        });
        ws.send('hello through the gateway');
        expect(await reply).toBe('hello through the gateway');
      } finally {
        ws.terminate();
      }
    });

    it('answers /healthz and /readyz with 200 on the admin listener', async () => {
      const [health, ready] = await Promise.all([
        send(ports.adminPort, { path: '/healthz', headers: ['Host', '127.0.0.1'] }),
        send(ports.adminPort, { path: '/readyz', headers: ['Host', '127.0.0.1'] }),
      ]);
      expect(health.status).toBe(200);
      expect(ready.status).toBe(200);
    });

    it('exposes the SPEC metrics on the admin listener after traffic', async () => {
      const series = 'portcullis_requests_total{route="echo",method="GET",code="200",decision="allow"}';
      const before = sample(await metricsText(ports.adminPort), series);
      for (let i = 0; i < 3; i++) expect((await get(ports.port, 'localhost', `/m${i}`)).status).toBe(200);
      expect((await get(ports.port, 'nowhere.localhost')).status).toBe(404);
      let text = '';
      await eventually(async () => {
        text = await metricsText(ports.adminPort);
        return sample(text, series) === before + 3;
      });
      expect(text).toMatch(/^portcullis_requests_total\{route="echo",method="GET",code="200",decision="allow"\} \d+$/m);
      expect(text).toMatch(/^portcullis_requests_total\{route="none",method="GET",code="404",decision="not_found"\} \d+$/m);
      expect(text).toMatch(/^portcullis_request_duration_seconds_bucket\{le="[^"]+",route="echo"\} \d+$/m);
      expect(text).toMatch(/^portcullis_upstream_duration_seconds_count\{route="echo"\} \d+$/m);
      expect(text).toMatch(/^# TYPE portcullis_config_reloads_total counter$/m);
      expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    });

    it('does not serve /metrics on the public listener', async () => {
      // A host with no route: the gateway answers 404 itself.
      const noRoute = await get(ports.port, '127.0.0.1', '/metrics');
      expect(noRoute.status).toBe(404);
      expect(noRoute.json()).toMatchObject({ error: expect.any(String) as unknown, request_id: expect.any(String) as unknown });
      expect(noRoute.text()).not.toContain('portcullis_');
      // The catch-all route proxies /metrics to the upstream like any other path.
      const routed = await get(ports.port, 'localhost', '/metrics');
      expect(routed.status).toBe(200);
      expect((routed.json() as EchoReport).url).toBe('/metrics');
      expect(routed.text()).not.toContain('portcullis_requests_total');
      // The gateway's reserved prefix does not serve it either.
      const reserved = await get(ports.port, 'localhost', '/.portcullis/metrics');
      expect(reserved.status).toBe(404);
      expect(reserved.text()).not.toContain('portcullis_');
    });
  });

  describe('reload', () => {
    afterEach(killAllCli);

    it('applies a changed config on SIGHUP and on file change, and keeps the old one when the new one is invalid', async () => {
      const dir = await tempDir();
      const ports = await freePorts();
      const echo = `http://127.0.0.1:${ports.echoPort}`;
      const spec = (routes: RouteSpec[]): ConfigSpec => ({ dir, port: ports.port, adminPort: ports.adminPort, routes });
      const base: RouteSpec = { id: 'echo', host: 'localhost', upstream: echo };
      const other: RouteSpec = { id: 'other', host: 'other.localhost', upstream: echo };
      const third: RouteSpec = { id: 'third', host: 'third.localhost', upstream: echo };
      const status = async (host: string) => (await get(ports.port, host)).status;
      const reloads = async (result: 'success' | 'failure') => sample(await metricsText(ports.adminPort), `portcullis_config_reloads_total{result="${result}"}`);

      // The config path is a symlink into another directory: editing its target is invisible to a
      // watch on the config's directory, so only SIGHUP can apply that edit.
      await mkdir(join(dir, 'real'));
      const target = join(dir, 'real', 'portcullis.yaml');
      const file = join(dir, 'portcullis.yaml');
      await writeFile(target, configYaml(spec([base])));
      await symlink(target, file);
      const gw = await serve(file, ['--echo', `127.0.0.1:${ports.echoPort}`]);
      expect(await status('localhost')).toBe(200);
      expect(await status('other.localhost')).toBe(404);

      // SIGHUP after a change.
      await writeFile(target, configYaml(spec([base, other])));
      await new Promise((r) => setTimeout(r, 600));
      expect(await status('other.localhost')).toBe(404); // precondition: nothing reloaded it yet
      gw.signal('SIGHUP');
      await eventually(async () => (await status('other.localhost')) === 200, 3000);
      expect(await reloads('success')).toBe(1);

      // File watch: an editor-style save (write a temp file, rename it over the config).
      const tmp = join(dir, '.portcullis.yaml.swp');
      await writeFile(tmp, configYaml(spec([base, other, third])));
      await rename(tmp, file);
      await eventually(async () => (await status('third.localhost')) === 200, 5000);
      expect(await reloads('success')).toBe(2);

      // File watch: an invalid config written in place is refused; the previous one keeps serving.
      const failuresBefore = await reloads('failure');
      const invalid = configYaml(spec([base, other])).replace('public_url: http://localhost', 'public_url: ftp://localhost');
      await writeFile(file, invalid);
      await eventually(async () => (await reloads('failure')) === failuresBefore + 1, 5000);
      const issueLine = invalid.split('\n').findIndex((l) => l.includes('public_url')) + 1;
      const issue = `${file}:${issueLine}:15: server.public_url: expected an http:// or https:// URL for public_url`;
      const refusals = gw
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg?: string; issues?: unknown })
        .filter((l) => l.msg?.startsWith('configuration reload refused') === true);
      expect(refusals).toHaveLength(1);
      expect(refusals[0]?.issues).toEqual([issue]);
      expect(await status('localhost')).toBe(200);
      expect(await status('other.localhost')).toBe(200);
      expect(await status('third.localhost')).toBe(200);

      // SIGHUP with the invalid file still there: refused again, still serving.
      gw.signal('SIGHUP');
      await eventually(async () => (await reloads('failure')) === failuresBefore + 2, 3000);
      expect(await status('third.localhost')).toBe(200);
      expect(await reloads('success')).toBe(2);

      gw.signal('SIGTERM');
      expect((await gw.exited).code).toBe(0);
    });

    it('refuses a truncated config file instead of dropping every route', async () => {
      const dir = await tempDir();
      const ports = await freePorts();
      const file = join(dir, 'portcullis.yaml');
      const echo = `http://127.0.0.1:${ports.echoPort}`;
      await writeFile(file, configYaml({ dir, port: ports.port, adminPort: ports.adminPort, routes: [{ id: 'echo', host: 'localhost', upstream: echo }] }));
      const gw = await serve(file, ['--echo', `127.0.0.1:${ports.echoPort}`]);
      await writeFile(file, '');
      await eventually(async () => sample(await metricsText(ports.adminPort), 'portcullis_config_reloads_total{result="failure"}') === 1, 5000);
      expect((await get(ports.port, 'localhost')).status).toBe(200);
      gw.signal('SIGTERM');
      expect((await gw.exited).code).toBe(0);
    });
  });

  describe('graceful shutdown', () => {
    afterEach(killAllCli);

    async function serveSlow(delayMs: number, grace: string) {
      const upstream = await startSlowUpstream(delayMs);
      upstreams.push(upstream);
      const dir = await tempDir();
      const { port, adminPort } = await freePorts();
      const file = join(dir, 'portcullis.yaml');
      await writeFile(file, configYaml({ dir, port, adminPort, shutdownGrace: grace, routes: [{ id: 'slow', host: 'localhost', upstream: upstream.url }] }));
      const gw = await serve(file);
      return { gw, upstream, port, adminPort };
    }

    it('finishes an in-flight request on SIGTERM, refuses new connections and exits 0', async () => {
      const { gw, upstream, port, adminPort } = await serveSlow(1500, '5s');
      let settled = false;
      const inFlight = get(port, 'localhost', '/slow').finally(() => {
        settled = true;
      });
      await upstream.received;
      const sigtermAt = performance.now();
      gw.signal('SIGTERM');
      await gw.waitFor(/shutting down/);
      await eventually(async () => (await tryConnect(port)) === 'ECONNREFUSED', 1000, 20);
      expect(await tryConnect(adminPort)).toBe('ECONNREFUSED');
      expect(settled).toBe(false); // the refusals above happened while the request was in flight
      const res = await inFlight;
      expect(res.status).toBe(200);
      expect(res.text()).toBe('slow ok\n');
      expect(res.headers.connection).toBe('close');
      const exit = await gw.exited;
      expect(exit.code).toBe(0);
      expect(exit.at - sigtermAt).toBeLessThan(5000);
    });

    it('does not outlive the shutdown grace for a request stuck longer than it, and exits 0', async () => {
      const { gw, upstream, port } = await serveSlow(5000, '1s');
      const stuck = get(port, 'localhost', '/stuck').then(
        (r) => r.status,
        (err: unknown) => (err instanceof Error ? err.message : String(err)),
      );
      await upstream.received;
      const sigtermAt = performance.now();
      gw.signal('SIGTERM');
      const exit = await gw.exited;
      expect(exit.code).toBe(0);
      expect(exit.at - sigtermAt).toBeGreaterThanOrEqual(900);
      expect(exit.at - sigtermAt).toBeLessThan(2000);
      expect(await stuck).not.toBe(200);
    });
  });
});
