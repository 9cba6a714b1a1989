#!/usr/bin/env node
// WebSocket benchmark: messages per second through Portcullis vs direct vs nginx, and the memory
// of many idle WebSockets held open through the gateway.
//
//   node bench/websocket.js [--connections 50] [--seconds 4] [--rounds 3] [--idle 10000] [--no-build] [--out FILE]
//
// An echo upstream (bench/lib/ws-upstream.js, the `ws` package) on core 0; nginx (1 worker,
// `Upgrade`/`Connection` passed through) and Portcullis (a public WebSocket route `/`, and `/full`
// behind a session cookie from a real sign-in and a group policy, audit to a private Redis) in
// front of it; the load (bench/lib/ws-load.js) on core 1.
// - echo: CONNECTIONS WebSockets, each sending a 64-byte message and waiting for its echo, over and
//   over; messages/s and round-trip p50/p99; rounds interleaved across targets; paired ratios.
// - idle: `--idle` WebSockets opened through the gateway and held silent; RSS before, with all of
//   them open, and after they close; the same count through nginx. Each proxied WebSocket holds two
//   sockets in the proxy, so the count is capped below half the proxy's open-file limit (said so).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import {
  LIB, machineLine, startJsonServer, startNginx, startRedis, hasRedis, startPortcullis, addUser, signIn,
  openFds, rssMiB, cpuSeconds, freePort, sleep, log, mdTable, fmt, skipSection, buildProject, writeResults,
  runLoadScript, parseOptions, runIfMain, sectionMachine,
} from './lib/common.js';
import { median } from './lib/measure.js';

const PASSWORD = 'bench-password-8d1f2c';

function parseArgs(argv) {
  return parseOptions(argv, { connections: 50, seconds: 4, rounds: 3, idle: 10_000, build: true, out: null },
    'usage: node bench/websocket.js [--connections 50] [--seconds 4] [--rounds 3] [--idle 10000] [--no-build] [--out FILE]');
}

const skip = (why, detail = '') => skipSection('WebSocket benchmark', why, detail);

function loadCmd(tools, args) {
  const full = [path.join(LIB, 'ws-load.js'), ...args];
  return tools.taskset ? ['taskset', ['-c', '1', process.execPath, ...full]] : [process.execPath, full];
}

/** Runs ws-load.js echo; resolves its BENCHJSON. */
function echo(tools, url, connections, seconds, headers) {
  return runLoadScript(tools, path.join(LIB, 'ws-load.js'), ['echo', url, String(connections), String(seconds), ...headers]);
}

/** Starts ws-load.js idle; resolves {info, stop} once its connections are open. */
function idle(tools, url, connections, headers) {
  const [cmd, argv] = loadCmd(tools, ['idle', url, String(connections), ...headers]);
  const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  const stop = () => new Promise((resolve) => {
    if (p.exitCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: p.stdout });
    rl.on('line', (line) => {
      if (line.startsWith('BENCHJSON ')) resolve({ info: JSON.parse(line.slice('BENCHJSON '.length)), stop, pid: p.pid });
    });
    p.on('exit', (code) => reject(new Error(`ws-load idle exited ${code}: ${err}`)));
  });
}

function fdLimit(pid) {
  try {
    const m = /Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch { return undefined; }
}

/** RSS of the proxy with `n` idle WebSockets open through it (and after they close). */
async function idleMemory(tools, label, pid, url, n, headers) {
  await sleep(1000);
  const before = rssMiB(pid);
  const fdsBefore = openFds(pid);
  const cpu0 = cpuSeconds(pid);
  const load = await idle(tools, url, n, headers);
  await sleep(3000);
  const open = rssMiB(pid);
  const fdsOpen = openFds(pid);
  const cpuOpen = cpuSeconds(pid) - cpu0;
  await load.stop();
  await sleep(4000);
  const after = rssMiB(pid);
  const fdsAfter = openFds(pid);
  const row = { label, requested: n, open: load.info.open, failed: load.info.failed, openSeconds: load.info.seconds, before, withOpen: open, after, fdsBefore, fdsOpen, fdsAfter, kibPerConn: ((open - before) * 1024) / Math.max(1, load.info.open), cpuOpen };
  log(`${label.padEnd(12)} ${row.open}/${n} idle WebSockets open (${row.failed} failed, ${row.openSeconds.toFixed(1)} s): RSS ${fmt.mib(before)} → ${fmt.mib(open)} → ${fmt.mib(after)} MiB, ` +
    `${row.kibPerConn.toFixed(1)} KiB each; fds ${fdsBefore} → ${fdsOpen} → ${fdsAfter}`);
  return row;
}

export async function run(argv = []) {
  const opts = parseArgs(argv);
  const t0 = Date.now();
  const { tools, machine } = sectionMachine();
  if (!hasRedis()) return skip('redis-server is not installed (Debian: apt-get install -y redis-server)');
  const unbuilt = buildProject(opts.build, ['main.js']);
  if (unbuilt) return skip(unbuilt.why, unbuilt.detail);

  const tmp = mkdtempSync(path.join(tmpdir(), 'portcullis-bench-ws-'));
  const stops = [];
  try {
    const upstream = await startJsonServer([path.join(LIB, 'ws-upstream.js')], tools);
    stops.push(upstream.stop);
    mkdirSync(path.join(tmp, 'redis'));
    const redis = await startRedis(tools, path.join(tmp, 'redis'));
    stops.push(redis.stop);
    const port = await freePort();
    const admin = await freePort();
    const up = `http://127.0.0.1:${upstream.port}`;
    const configFile = path.join(tmp, 'portcullis.yaml');
    writeFileSync(configFile, `# generated by bench/websocket.js
server: {listen: "127.0.0.1:${port}", public_url: "http://localhost:${port}", admin_listen: "127.0.0.1:${admin}", instance_id: bench-ws}
store: {type: redis, redis: {url: "${redis.url}", key_prefix: "bench:"}}
identity:
  providers: [{id: local, type: local, users_file: ${tmp}/users.yaml}]
  assertion: {key_file: ${tmp}/assertion-keys.json}
mfa: {credentials_file: ${tmp}/mfa-credentials.json, secret_key_file: ${tmp}/mfa-secret.key}
audit:
  sink: {type: redis, url: "${redis.url}", stream: "bench:audit"}
  spool_dir: ${tmp}/spool
  seal: {key_file: ${tmp}/seal.key, witness_dir: ${tmp}/checkpoints, origin: bench.portcullis.local/audit}
routes:
  - {id: full, host: localhost, path: /full, upstream: ${up}, websocket: true, allow: {groups: [eng]}}
  - {id: ws, host: localhost, path: /, upstream: ${up}, websocket: true, public: true}
`);
    addUser(path.join(tmp, 'users.yaml'), 'bench', ['eng'], PASSWORD);
    let gw;
    try {
      gw = await startPortcullis(tools, { configFile, port });
    } catch (e) {
      return skip(e.message, e.detail);
    }
    stops.push(gw.stop);
    const cookie = signIn(port, 'bench', PASSWORD);
    const nginx = await startNginx(tools, upstream.port);
    stops.push(nginx.stop);

    const host = `localhost:${port}`;
    const gwHeaders = [`Host: ${host}`, `Origin: http://${host}`];
    const targets = [
      { id: 'direct', url: `ws://127.0.0.1:${upstream.port}/`, headers: [] },
      { id: 'nginx', url: `ws://127.0.0.1:${nginx.port}/`, headers: [] },
      { id: 'portcullis', url: `ws://127.0.0.1:${port}/`, headers: gwHeaders, pid: gw.pid },
      { id: 'portcullis-full', url: `ws://127.0.0.1:${port}/full`, headers: [...gwHeaders, `Cookie: ${cookie}`], pid: gw.pid },
    ];
    // ---- idle connections (first, on a fresh gateway: RSS before is the process's own) ---------------
    const limit = Math.min(fdLimit(gw.pid) ?? 1024, fdLimit(nginx.pid) ?? 1024);
    const n = Math.min(opts.idle, Math.floor((limit - 400) / 2));
    const idleRows = [];
    idleRows.push(await idleMemory(tools, 'portcullis', gw.pid, `ws://127.0.0.1:${port}/`, n, gwHeaders));
    idleRows.push(await idleMemory(tools, 'nginx', nginx.pid, `ws://127.0.0.1:${nginx.port}/`, n, []));

    // ---- messages -------------------------------------------------------------------------------
    const samples = new Map(targets.map((t) => [t.id, []]));
    for (let round = 0; round < opts.rounds; round++) {
      for (let i = 0; i < targets.length; i++) {
        const t = targets[(i + round) % targets.length];
        const c0 = t.pid ? cpuSeconds(t.pid) : 0;
        const r = await echo(tools, t.url, opts.connections, opts.seconds, t.headers);
        r.cpuUsPerMsg = t.pid ? ((cpuSeconds(t.pid) - c0) / Math.max(1, r.messages)) * 1e6 : undefined;
        samples.get(t.id).push(r);
        log(`${t.id.padEnd(16)} ${fmt.rps(r.rate)} msgs/s  p50 ${(r.p50 / 1000).toFixed(2)} ms  p99 ${(r.p99 / 1000).toFixed(2)} ms  errors ${r.errors}`);
      }
    }
    const paired = (id, ref) => median(samples.get(id).map((s, i) => s.rate / samples.get(ref)[i].rate));
    const echoRows = targets.map((t) => {
      const ss = samples.get(t.id);
      return {
        id: t.id, rate: median(ss.map((s) => s.rate)), p50: median(ss.map((s) => s.p50)), p99: median(ss.map((s) => s.p99)),
        errors: ss.reduce((n, s) => n + s.errors, 0), cpuUsPerMsg: t.pid ? median(ss.map((s) => s.cpuUsPerMsg)) : undefined,
        x_direct: paired(t.id, 'direct'), x_nginx: paired(t.id, 'nginx'),
      };
    });

    const results = { machine, opts, echo: echoRows, idle: idleRows, idleCap: { requested: opts.idle, limit, used: n }, redis: redis.version, seconds: (Date.now() - t0) / 1000 };
    results.summary = summary(results);
    const md = report(results);
    console.log(md);
    writeResults('websocket', machine.date, md, results, opts.out);
    return results;
  } catch (e) {
    return skip(e.message.split('\n')[0], e.stack);
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

const LABEL = { direct: 'direct (no proxy)', nginx: 'nginx', portcullis: 'Portcullis, public route', 'portcullis-full': 'Portcullis, session + policy' };

export function summary(R) {
  const rows = [];
  const pub = R.echo.find((e) => e.id === 'portcullis');
  const full = R.echo.find((e) => e.id === 'portcullis-full');
  if (pub) rows.push({ figure: 'WebSocket messages/s through the public route ÷ nginx', value: `${fmt.rps(pub.rate)} (${fmt.x(pub.x_nginx)})`, target: 'measure', met: undefined });
  if (full) rows.push({ figure: 'WebSocket messages/s behind a session ÷ nginx', value: `${fmt.rps(full.rate)} (${fmt.x(full.x_nginx)})`, target: 'measure', met: undefined });
  const g = R.idle.find((r) => r.label === 'portcullis');
  if (g) {
    const projected = g.before + (g.kibPerConn * 10_000) / 1024;
    rows.push({
      figure: `RSS with ${g.open.toLocaleString('en-US')} idle WebSockets${g.open < 10_000 ? ` (projected to 10,000 at ${g.kibPerConn.toFixed(1)} KiB each)` : ''}`,
      value: `${fmt.mib(g.withOpen)} MiB${g.open < 10_000 ? ` → ${fmt.mib(projected)} MiB` : ''}`, target: '≤ 300 MB', met: (g.open < 10_000 ? projected : g.withOpen) * 1.048576 <= 300,
    });
    rows.push({ figure: 'open fds before / with / after the idle WebSockets', value: `${g.fdsBefore} / ${g.fdsOpen} / ${g.fdsAfter}`, target: 'back to the start', met: g.fdsAfter <= g.fdsBefore + 5 });
  }
  return rows;
}

export function report(R) {
  const out = [];
  out.push(`# WebSocket benchmark (${R.machine.date.slice(0, 10)})`, '');
  out.push(`Machine: ${machineLine(R.machine)}.`, '');
  out.push(`Echo upstream (\`ws\`, no compression) on core 0 with the proxies; load (\`ws\` client) on core 1. ${R.opts.connections} WebSockets each send a 64-byte message and wait for its echo, ` +
    `${R.opts.rounds} rounds of ${R.opts.seconds} s interleaved across targets; medians; paired ratios. Portcullis audits each WebSocket (one record when it closes) to a private Redis ${R.redis}.`, '');
  out.push('### Targets', '');
  out.push(mdTable(['figure', 'measured', 'target', 'met'], R.summary.map((s) => [s.figure, s.value, s.target, s.met === undefined ? '–' : s.met ? 'yes' : '**no**'])), '');
  out.push('### Messages', '');
  out.push(mdTable(['target', 'msgs/s', '× nginx', '× direct', 'p50 ms', 'p99 ms', 'errors', 'proxy CPU µs/msg'], R.echo.map((e) => [
    LABEL[e.id] ?? e.id, fmt.rps(e.rate), fmt.x(e.x_nginx), fmt.x(e.x_direct), (e.p50 / 1000).toFixed(2), (e.p99 / 1000).toFixed(2), e.errors, e.cpuUsPerMsg === undefined ? '–' : fmt.us(e.cpuUsPerMsg),
  ])), '');
  out.push('### Idle WebSockets', '');
  if (R.idleCap.used < R.idleCap.requested) {
    out.push(`Asked for ${R.idleCap.requested.toLocaleString('en-US')}; each proxied WebSocket holds two sockets in the proxy and this machine's open-file limit is ${R.idleCap.limit} (hard limit, not raisable here), so ${R.idleCap.used.toLocaleString('en-US')} were opened and the 10,000 figure is projected from the measured cost per connection.`, '');
  }
  out.push(mdTable(['proxy', 'open', 'failed', 'seconds to open', 'RSS before MiB', 'RSS with them MiB', 'RSS after close MiB', 'KiB per WebSocket', 'fds before / with / after'], R.idle.map((r) => [
    r.label, r.open, r.failed, r.openSeconds.toFixed(1), fmt.mib(r.before), fmt.mib(r.withOpen), fmt.mib(r.after), r.kibPerConn.toFixed(1), `${r.fdsBefore} / ${r.fdsOpen} / ${r.fdsAfter}`,
  ])), '');
  out.push(`Total run time: ${R.seconds.toFixed(0)} s.`);
  return out.join('\n');
}

runIfMain(import.meta.url, run);
