#!/usr/bin/env node
// Audit viewer benchmark: does the live tail keep up with 1,000 records/s, and what does a connected
// viewer cost the gateway?
//
//   node bench/viewer.js [--rate 1000] [--seconds 6] [--rounds 8] [--connections 20] [--warmup 3]
//                        [--slow-seconds 30] [--pause 16] [--no-build] [--out FILE]
//
// `node bin/portcullis.js serve` (file audit sink, memory store, one public route to the bench
// upstream, both pinned to core 0) gets a fixed request rate from autocannon (`--overallRate`, its
// latencies corrected for coordinated omission; pinned to core 1). Every request is one audit record,
// so the log grows at `--rate` records/s. Phases, interleaved per round (the order rotates):
//
//   none    no viewer connected
//   viewer  one viewer on /.portcullis/audit/live (a real `ws` client, no filter: every record)
// once before any viewer ever connected, `cold` (the feed has never run); and once at the end, for
// `--slow-seconds`:
//
//   slow    two viewers that stop reading after their first message: one for `--pause` seconds
//           (then it reads again: it must get a `gap` notice naming what it missed, then live
//           records), one for good (the gateway must close it once its socket has not drained for
//           15 s). Until the TCP buffers between them fill (several MiB on loopback) the gateway
//           cannot tell; then it must drop, notify and close — keeping its own latency and memory.
//           The gateway's RSS is sampled every second, and its audit records of the two feeds
//           (reason, messages and bytes sent) are read back from the file sink afterwards.
//
// Reported per phase: the gateway's p50/p99/p99.9 (median over rounds) and the paired p99 ratio to
// `none` of the same round (slow: to the median of `none`); for the viewer, records/s received,
// records missing from the seq sequence, drop notices, and the lag from a record's `ts` to its
// arrival (p50/p99/max); the gateway's CPU per request and RSS after each phase.
//
// The viewer signs in as a local user in group `sre`; the bench config sets `audit.viewer.mfa: null`
// (a passkey step-up needs a browser; it gates access and does not touch the feed's path).
// Builds first (`npm run build`) unless --no-build. Prints markdown and writes
// bench/results/viewer-<date>.md (+ .json). Exits 3 ("skipped") when the build or the gateway fails.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { LIB, ROOT, cpuSeconds, fmt, freePort, killAll, log, mdTable, rssMiB, sleep, startJsonServer, startProc, stopProc, skipSection, buildProject, writeResults } from './lib/common.js';

export const SKIPPED = 3;
const PASSWORD = 'bench viewer password 1';

function parseArgs(argv) {
  const o = { rate: 1000, seconds: 6, rounds: 8, connections: 20, warmup: 3, slowSeconds: 30, pause: 16, build: true, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--rate') o.rate = Number(v());
    else if (a === '--seconds') o.seconds = Number(v());
    else if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--connections') o.connections = Number(v());
    else if (a === '--warmup') o.warmup = Number(v());
    else if (a === '--slow-seconds') o.slowSeconds = Number(v());
    else if (a === '--pause') o.pause = Number(v());
    else if (a === '--no-build') o.build = false;
    else if (a === '--out') o.out = v();
    else if (a === '-h' || a === '--help') {
      console.log('usage: node bench/viewer.js [--rate 1000] [--seconds 6] [--rounds 8] [--connections 20] [--warmup 3] [--slow-seconds 30] [--pause 16] [--no-build] [--out FILE]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const skip = (why, detail = '') => skipSection('Audit viewer benchmark', why, detail);

const median = (xs) => {
  const a = xs.filter((x) => x !== undefined && Number.isFinite(x)).sort((x, y) => x - y);
  if (a.length === 0) return undefined;
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
};
const pct = (sorted, p) => (sorted.length === 0 ? undefined : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]);

function machine(taskset) {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  let kernel = '';
  try { kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(); } catch { /* */ }
  let autocannon = '?';
  try { autocannon = JSON.parse(readFileSync(path.join(ROOT, 'node_modules/autocannon/package.json'), 'utf8')).version; } catch { /* */ }
  return {
    date: new Date().toISOString(), nproc: cpus().length, cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown', kernel, node: process.version, autocannon,
    pinning: taskset ? 'gateway and upstream on core 0, autocannon on core 1 (`taskset`); the viewer client runs in the bench process, unpinned' : 'none (taskset missing or < 2 cores)',
  };
}

function yamlConfig({ listen, admin, upstream, tmp }) {
  return `# generated by bench/viewer.js
server:
  listen: ${listen}
  public_url: http://localhost:${listen.split(':')[1]}
  admin_listen: ${admin}
  instance_id: bench
store:
  type: memory
identity:
  providers:
    - {id: local, type: local, users_file: ${tmp}/users.yaml}
  assertion: {key_file: ${tmp}/assertion-keys.json}
mfa:
  credentials_file: ${tmp}/mfa/credentials.json
  secret_key_file: ${tmp}/mfa/secret.key
audit:
  sink: {type: file, dir: ${tmp}/audit}
  spool_dir: ${tmp}/spool
  seal:
    key_file: ${tmp}/seal.key
    witness_dir: ${tmp}/checkpoints
    origin: bench.portcullis.local/audit
  viewer:
    allow: {groups: [sre]}
    mfa: null
routes:
  - {id: bench, host: localhost, path: /, upstream: ${upstream}, public: true}
`;
}

/** One HTTP request to the gateway with a Host header; resolves {status, headers, body}. */
function request(port, host, { method = 'GET', path: p = '/', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: { host, ...headers }, agent: false, setHost: false }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function cookiesOf(headers) {
  return (headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).filter((c) => !c.endsWith('='));
}

/** Signs in with the password form; returns the Cookie header value of the session. */
async function signIn(port, host, user) {
  const page = await request(port, host, { path: '/.portcullis/login', headers: { accept: 'text/html' } });
  const csrf = /name="csrf" value="([^"]*)"/.exec(page.body)?.[1];
  if (!csrf) throw new Error(`no csrf on the login page (${page.status})`);
  const form = new URLSearchParams({ username: user, password: PASSWORD, csrf, rd: '/.portcullis/audit' }).toString();
  const res = await request(port, host, {
    method: 'POST', path: '/.portcullis/login', body: form,
    headers: { accept: 'text/html', origin: `http://${host}`, cookie: cookiesOf(page.headers).join('; '), 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(form)) },
  });
  const session = cookiesOf(res.headers).find((c) => c.startsWith('portcullis_session='));
  if (res.status !== 303 || !session) throw new Error(`sign-in failed: ${res.status} ${res.body.slice(0, 200)}`);
  const viewer = await request(port, host, { path: '/.portcullis/audit', headers: { accept: 'text/html', cookie: session } });
  if (viewer.status !== 200) throw new Error(`the viewer answered ${viewer.status}`);
  return session;
}

/**
 * A viewer on the live feed. `slow`: stops reading after the first message (pauses the socket), so
 * the kernel buffers fill and the gateway sees a browser that does not keep up.
 */
function openViewer(port, host, cookie, { pauseMs = 0 } = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/.portcullis/audit/live`, { headers: { host, origin: `http://${host}`, cookie }, perMessageDeflate: false });
  const v = { ws, received: 0, lags: [], gaps: 0, dropped: 0, firstSeq: undefined, lastSeq: undefined, outOfOrder: 0, closeCode: undefined, messages: 0, afterResume: 0, pausedAt: undefined, resumedAt: undefined, firstGapAt: undefined };
  const opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`live feed refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
  ws.on('message', (data) => {
    const at = Date.now();
    v.messages += 1;
    const m = JSON.parse(String(data));
    if (m.type === 'records') {
      for (const r of m.records) {
        v.received += 1;
        if (v.firstSeq === undefined) v.firstSeq = r.seq;
        if (v.lastSeq !== undefined && r.seq <= v.lastSeq) v.outOfOrder += 1;
        v.lastSeq = r.seq;
        v.lags.push(at - Date.parse(r.record.ts));
        if (v.firstGapAt !== undefined) v.afterResume += 1;
      }
    } else if (m.type === 'gap') {
      v.gaps += 1;
      v.dropped += m.dropped ?? 0;
      v.firstGapAt ??= at;
    }
    if (pauseMs > 0 && v.messages === 1) {
      ws.pause();
      v.pausedAt = Date.now();
      if (Number.isFinite(pauseMs)) setTimeout(() => { v.resumedAt = Date.now(); ws.resume(); }, pauseMs).unref();
    }
  });
  ws.on('close', (code) => { v.closeCode = code; });
  ws.on('error', () => undefined);
  v.opened = opened;
  v.close = () => new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.once('close', resolve);
    ws.close(1000, 'bench done');
    setTimeout(() => { ws.terminate(); resolve(); }, 2000).unref();
  });
  return v;
}

/** autocannon at a fixed overall rate, pinned to core 1; resolves its JSON result. */
function autocannon(taskset, url, host, { rate, seconds, connections }) {
  const args = [path.join(ROOT, 'node_modules/autocannon/autocannon.js'), '-j', '-c', String(connections), '-d', String(seconds), '-R', String(rate), '-H', `host=${host}`, url];
  const [cmd, argv] = taskset ? ['taskset', ['-c', '1', process.execPath, ...args]] : [process.execPath, args];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => {
      const line = out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
      if (code !== 0 || !line) return reject(new Error(`autocannon failed (${code}): ${err || out}`));
      resolve(JSON.parse(line));
    });
  });
}

function viewerStats(viewer, name, seconds) {
  const lags = viewer.lags.sort((a, b) => a - b);
  const span = viewer.lastSeq === undefined ? 0 : viewer.lastSeq - viewer.firstSeq + 1;
  return {
    name,
    received: viewer.received,
    perSecond: viewer.received / seconds,
    missing: name === 'viewer' ? span - viewer.received : undefined,
    outOfOrder: viewer.outOfOrder,
    gaps: viewer.gaps,
    dropped: viewer.dropped,
    afterResume: viewer.afterResume,
    lagP50: pct(lags, 50),
    lagP99: pct(lags, 99),
    lagMax: lags.at(-1),
    closeCode: viewer.closeCode,
  };
}

/** The gateway's audit records of live feeds opened since `fromSeq` (read back from the file sink). */
function liveFeedRecords(tmp) {
  const dir = path.join(tmp, 'audit', 'bench');
  const out = [];
  for (const f of readdirSync(dir).filter((n) => n.startsWith('records-')).sort()) {
    for (const line of readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (!line.includes('"/.portcullis/audit/live"')) continue;
      const r = JSON.parse(line);
      if (r.kind === 'websocket') out.push({ seq: r.seq, reason: r.reason, messagesOut: r.websocket?.messages_out, bytesOut: r.websocket?.bytes_out, seconds: (r.websocket?.duration_us ?? 0) / 1e6 });
    }
  }
  return out;
}

async function phase(ctx, name, round) {
  const { port, host, cookie, gwPid, opts, taskset } = ctx;
  const viewers = [];
  if (name === 'viewer') viewers.push(['viewer', openViewer(port, host, cookie)]);
  if (name === 'slow') {
    viewers.push(['paused', openViewer(port, host, cookie, { pauseMs: opts.pause * 1000 })]);
    viewers.push(['stalled', openViewer(port, host, cookie, { pauseMs: Infinity })]);
  }
  for (const [, v] of viewers) await v.opened;
  if (viewers.length > 0) await sleep(300);
  const seconds = name === 'slow' ? opts.slowSeconds : opts.seconds;
  const cpu0 = cpuSeconds(gwPid);
  const rss0 = rssMiB(gwPid);
  const rssSamples = [];
  const sampler = setInterval(() => rssSamples.push(rssMiB(gwPid)), 1000);
  const r = await autocannon(taskset, `http://127.0.0.1:${port}/`, host, { rate: opts.rate, seconds, connections: opts.connections });
  clearInterval(sampler);
  const cpu = cpuSeconds(gwPid) - cpu0;
  const rssDuring = rssMiB(gwPid);
  const v = [];
  if (viewers.length > 0) {
    for (const [, viewer] of viewers) viewer.ws.resume();
    await sleep(name === 'slow' ? 2000 : 500);
    for (const [label, viewer] of viewers) v.push(viewerStats(viewer, label, r.duration ?? seconds));
    for (const [, viewer] of viewers) await viewer.close();
  }
  const row = {
    name, round,
    rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, p999: r.latency.p99_9, max: r.latency.max,
    errors: r.errors + r.timeouts + (r.non2xx ?? 0), requests: r.requests.total,
    cpuUsPerReq: (cpu / Math.max(1, r.requests.total)) * 1e6, rssBefore: rss0, rss: rssDuring,
    rssMin: Math.min(rss0, ...rssSamples), rssMax: Math.max(rss0, ...rssSamples), seconds, viewers: v,
  };
  if (name === 'slow') {
    await sleep(1000);
    row.feeds = liveFeedRecords(ctx.tmp).slice(-2);
  }
  log(`${name.padEnd(6)} round ${round}: ${fmt.rps(row.rps)} req/s  p50 ${row.p50} ms  p99 ${row.p99} ms  p99.9 ${row.p999} ms  cpu ${fmt.us(row.cpuUsPerReq)} µs/req  rss ${fmt.mib(row.rssMin)}–${fmt.mib(row.rssMax)} MiB` +
    v.map((x) => `  ${x.name}: ${fmt.rps(x.perSecond)} rec/s missing ${x.missing ?? '–'} gaps ${x.gaps} dropped ${x.dropped} lag p99 ${x.lagP99} ms closed ${x.closeCode ?? 'no'}`).join('') + (row.errors ? `  errors ${row.errors}` : ''));
  await sleep(500);
  return row;
}

export async function run(argv = []) {
  const opts = parseArgs(argv);
  const t0 = Date.now();
  const taskset = spawnSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }).status === 0 && cpus().length >= 2;
  const m = machine(taskset);
  const unbuilt = buildProject(opts.build, ['main.js']);
  if (unbuilt) return skip(unbuilt.why, unbuilt.detail);
  const tools = { taskset };
  const upstream = await startJsonServer([path.join(LIB, 'upstream.js')], tools);
  const tmp = mkdtempSync(path.join(tmpdir(), 'portcullis-bench-viewer-'));
  const port = await freePort();
  const admin = await freePort();
  const host = `localhost:${port}`;
  const cli = path.join(ROOT, 'bin/portcullis.js');
  const configFile = path.join(tmp, 'portcullis.yaml');
  writeFileSync(configFile, yamlConfig({ listen: `127.0.0.1:${port}`, admin: `127.0.0.1:${admin}`, upstream: `http://127.0.0.1:${upstream.port}`, tmp }));
  let gw;
  try {
    const add = spawnSync(process.execPath, [cli, 'users', 'add', 'sre', '--groups', 'sre', '--users-file', path.join(tmp, 'users.yaml')], { cwd: ROOT, input: `${PASSWORD}\n`, encoding: 'utf8' });
    if (add.status !== 0) return skip('`portcullis users add` failed', `${add.stdout}\n${add.stderr}`);
    gw = startProc(process.execPath, [cli, 'serve', '--config', configFile], tools, { cwd: ROOT, env: { ...process.env, NODE_ENV: 'production' } });
    const deadline = Date.now() + 30_000;
    let up = false;
    while (Date.now() < deadline && !up) {
      if (gw.exitCode !== null) break;
      up = await request(port, host).then((r) => r.status === 200 && r.body === 'hello world\n', () => false);
      if (!up) await sleep(250);
    }
    if (!up) return skip('Portcullis did not serve the route within 30 s', gw.output);
    const cookie = await signIn(port, host, 'sre');
    log(`Portcullis is up on ${port}; signed in as sre`);
    const ctx = { port, host, cookie, gwPid: gw.pid, opts, taskset, tmp };

    log(`warm-up ${opts.warmup} s at ${opts.rate} req/s`);
    await autocannon(taskset, `http://127.0.0.1:${port}/`, host, { rate: opts.rate, seconds: opts.warmup, connections: opts.connections });
    const rows = [await phase(ctx, 'cold', 0)];
    const names = ['none', 'viewer'];
    for (let round = 1; round <= opts.rounds; round++) {
      for (let i = 0; i < names.length; i++) rows.push(await phase(ctx, names[(i + round - 1) % names.length], round));
    }
    if (opts.slowSeconds > 0) rows.push(await phase(ctx, 'slow', opts.rounds + 1));
    const results = { machine: m, opts, rows, seconds: (Date.now() - t0) / 1000 };
    const md = report(results);
    console.log(md);
    writeResults('viewer', m.date, md, results, opts.out);
    return results;
  } finally {
    if (gw) await stopProc(gw);
    await upstream.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

export function report(R) {
  const { machine: m, opts, rows } = R;
  const by = (name) => rows.filter((r) => r.name === name);
  const roundsOf = (name) => new Map(by(name).map((r) => [r.round, r]));
  const none = roundsOf('none');
  const noneP99 = median(by('none').map((r) => r.p99));
  const paired = (name) => median(by(name).map((r) => (none.get(r.round) ? r.p99 / none.get(r.round).p99 : r.p99 / noneP99)));
  const out = [];
  out.push(`# Audit viewer benchmark (${m.date.slice(0, 10)})`, '');
  out.push(`Machine: ${m.nproc} cores, ${m.cpu} · Linux ${m.kernel} · Node ${m.node} · autocannon ${m.autocannon}. Pinning: ${m.pinning}.`, '');
  out.push(`Load: ${opts.rate} req/s (autocannon \`--overallRate\`, ${opts.connections} connections, latencies corrected for coordinated omission) against one public route; ` +
    `every request is one audit record, so the log grows at ${opts.rate} records/s. ${opts.rounds} rounds of ${opts.seconds} s per phase, interleaved; medians over rounds.`, '');
  const phases = ['cold', 'none', 'viewer', 'slow'];
  out.push(mdTable(['phase', 'runs × s', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'p99 × none', 'errors', 'CPU µs/req', 'RSS MiB (min–max)'], phases.filter((n) => by(n).length > 0).map((name) => {
    const rs = by(name);
    return [name, `${rs.length} × ${rs[0].seconds}`, fmt.rps(median(rs.map((r) => r.rps))), fmt.ms(median(rs.map((r) => r.p50))), fmt.ms(median(rs.map((r) => r.p99))), fmt.ms(median(rs.map((r) => r.p999))),
      name === 'none' ? '1.00×' : fmt.x(paired(name)), rs.reduce((n, r) => n + r.errors, 0), fmt.us(median(rs.map((r) => r.cpuUsPerReq))),
      `${fmt.mib(Math.min(...rs.map((r) => r.rssMin)))}–${fmt.mib(Math.max(...rs.map((r) => r.rssMax)))}`];
  })), '');
  out.push(mdTable(['phase', 'round', 'viewer', 'records received/s', 'missing', 'out of order', 'gap notices', 'records dropped', 'received after the gap', 'lag p50 ms', 'lag p99 ms', 'lag max ms', 'closed'], rows.flatMap((r) => r.viewers.map((v) => [
    r.name, r.round, v.name, fmt.rps(v.perSecond), v.missing ?? '–', v.outOfOrder, v.gaps, fmt.rps(v.dropped), v.gaps > 0 ? fmt.rps(v.afterResume) : '–', v.lagP50 ?? '–', v.lagP99 ?? '–', v.lagMax ?? '–', v.closeCode ?? 'no',
  ]))), '');
  const feeds = rows.find((r) => r.feeds)?.feeds ?? [];
  if (feeds.length > 0) {
    out.push('The gateway\'s own audit records of the two slow feeds (read back from the file sink):', '');
    out.push(mdTable(['seq', 'reason', 'messages sent', 'bytes sent', 'open s'], feeds.map((f) => [f.seq, f.reason, fmt.rps(f.messagesOut), fmt.rps(f.bytesOut), f.seconds.toFixed(1)])), '');
  }
  out.push(mdTable(['phase', 'round', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms'], rows.map((r) => [r.name, r.round, fmt.rps(r.rps), fmt.ms(r.p50), fmt.ms(r.p99), fmt.ms(r.p999), fmt.ms(r.max)])), '');
  out.push(`Total run time: ${R.seconds.toFixed(0)} s.`);
  return out.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run(process.argv.slice(2)).then(
    (r) => { process.exitCode = r?.skipped ? SKIPPED : 0; },
    (e) => { console.error(e); killAll(); process.exit(1); },
  );
}
