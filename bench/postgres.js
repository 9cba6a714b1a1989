#!/usr/bin/env node
// Database gateway benchmark: pgbench straight at PostgreSQL, through pgbouncer and through the
// Portcullis database gateway, in the same run, interleaved.
//
//   node bench/postgres.js [--clients 10] [--duration 10] [--rounds 2] [--scale 5]
//                          [--modes select,select-prepared,tpcb] [--no-build] [--out FILE]
//                          [--profile DIR]   (the gateway writes a V8 CPU profile there when it exits)
//
// PostgreSQL: the machine's server on 127.0.0.1:5432 (trust, superuser `postgres`); the bench makes
// its own database `portcullis_bench` (pgbench -i -s SCALE) and drops it at the end. pgbouncer
// (Debian package `pgbouncer`, installed when missing and running as root) runs from a generated
// ini on a free port, pool_mode session, one server connection per client like the gateway.
// The gateway runs `node bin/portcullis.js serve` with a generated config (one database `bench`,
// file audit sink in a temp dir); its password comes from /.portcullis/connect/bench after a real
// sign-in, exactly as a user would get it. Every statement through the gateway is an audit record
// (plus its intent, spooled before the statement is forwarded), so the gateway numbers include the
// audit log's work; a second database with `audit: {intents: false}` shows what the intent costs.
//
// Each mode runs `rounds` rounds; in each round every target gets `duration` seconds of
// `pgbench -c CLIENTS -j 2 -T duration`, the order rotating between rounds. Ratios are paired per
// round (target ÷ direct from the same round), then the median over rounds is reported.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, BENCH_DIR, startProc, stopProc, freePort, waitForPort, sleep, log, mdTable, fmt, cpuSeconds, rssMiB, skipSection, parseOptions, runIfMain } from './lib/common.js';
import { median } from './lib/measure.js';

const DB = 'portcullis_bench';
const PG = { host: '127.0.0.1', port: 5432, user: 'postgres' };
const MODES = {
  select: { label: 'select-only, simple protocol', args: ['-S', '-M', 'simple'] },
  'select-prepared': { label: 'select-only, prepared (extended protocol)', args: ['-S', '-M', 'prepared'] },
  tpcb: { label: 'TPC-B-like (default script), simple protocol', args: ['-M', 'simple'] },
};

function parseArgs(argv) {
  const o = parseOptions(argv, { clients: 10, duration: 10, rounds: 2, scale: 5, modes: Object.keys(MODES), build: true, out: null, profile: null },
    'usage: node bench/postgres.js [--clients 10] [--duration 10] [--rounds 2] [--scale 5] [--modes select,select-prepared,tpcb] [--no-build] [--out FILE] [--profile DIR]');
  if (o.profile !== null) o.profile = path.resolve(o.profile);
  for (const m of o.modes) if (!(m in MODES)) throw new Error(`unknown mode ${m}; known: ${Object.keys(MODES).join(', ')}`);
  return o;
}

const skip = (why, detail = '') => skipSection('Database gateway benchmark', why, detail);

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** pgbench, psql and pgbouncer; installs what is missing when root (apt-get), else says what to install. */
function ensurePgTools() {
  const need = { pgbench: 'postgresql-contrib', psql: 'postgresql-client', pgbouncer: 'pgbouncer' };
  const missing = Object.keys(need).filter((c) => !has(c) && !existsSync(`/usr/sbin/${c}`));
  if (missing.length === 0) return { pgbouncer: has('pgbouncer') ? 'pgbouncer' : '/usr/sbin/pgbouncer' };
  const pkgs = [...new Set(missing.map((m) => need[m]))];
  if (process.getuid?.() === 0 && has('apt-get')) {
    log(`installing ${pkgs.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'inherit', env });
    if (r.status === 0) return { pgbouncer: has('pgbouncer') ? 'pgbouncer' : '/usr/sbin/pgbouncer' };
  }
  return { missing: `missing ${missing.join(', ')}: apt-get install -y ${pkgs.join(' ')}` };
}

function psqlAdmin(sql, database = 'postgres') {
  return spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', PG.host, '-p', String(PG.port), '-U', PG.user, '-d', database, '-c', sql], { encoding: 'utf8' });
}

/** Parses pgbench's summary. */
function pgbenchResult(out) {
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1]);
  const latency = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
  const failed = Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0);
  const tx = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
  return { tps, latency, failed, tx };
}

function runPgbench(target, mode, opts) {
  const args = [...MODES[mode].args, '-n', '-c', String(opts.clients), '-j', '2', '-T', String(opts.duration), '-h', '127.0.0.1', '-p', String(target.port), '-U', target.user, target.dbname];
  const r = spawnSync('pgbench', args, { encoding: 'utf8', env: { ...process.env, PGPASSWORD: target.password ?? '' }, timeout: (opts.duration + 60) * 1000 });
  const out = `${r.stdout}\n${r.stderr}`;
  const res = pgbenchResult(out);
  if (r.status !== 0 || !Number.isFinite(res.tps)) throw new Error(`pgbench against ${target.name} failed (exit ${r.status}):\n${out.slice(-2000)}`);
  return res;
}

function gatewayConfig({ listen, admin, dbListen, fastListen, tmp }) {
  return `# generated by bench/postgres.js
server:
  listen: ${listen}
  public_url: http://${listen}
  admin_listen: ${admin}
  instance_id: bench-pg
store: {type: memory}
identity:
  providers: [{id: local, type: local, users_file: ${tmp}/users.yaml}]
  assertion: {key_file: ${tmp}/assertion-keys.json}
mfa: {credentials_file: ${tmp}/mfa/credentials.json, secret_key_file: ${tmp}/mfa/secret.key}
audit:
  sink: {type: file, dir: ${tmp}/audit}
  on_failure: spool
  spool_dir: ${tmp}/spool
  seal: {key_file: ${tmp}/seal.key, witness_dir: ${tmp}/checkpoints, origin: bench.portcullis.local/audit}
databases:
  - id: bench
    type: postgres
    listen: ${dbListen}
    upstream: {host: ${PG.host}, port: ${PG.port}, database: ${DB}, user: ${PG.user}}
    allow: {users: [bench]}
    token_ttl: 1h
  - id: bench-no-intents
    type: postgres
    listen: ${fastListen}
    upstream: {host: ${PG.host}, port: ${PG.port}, database: ${DB}, user: ${PG.user}}
    allow: {users: [bench]}
    token_ttl: 1h
    audit: {intents: false}
`;
}

/** Signs in as `bench` with the login form and asks /.portcullis/connect/bench for a password. */
async function gatewayPassword(port, password, databases) {
  const base = `http://127.0.0.1:${port}`;
  const cookies = new Map();
  const keep = (res) => {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
  };
  const cookieHeader = () => [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  const login = await fetch(`${base}/.portcullis/login`, { headers: { accept: 'text/html' } });
  keep(login);
  const csrf = /name="csrf" value="([^"]*)"/.exec(await login.text())?.[1];
  const form = new URLSearchParams({ username: 'bench', password, csrf, rd: '/' });
  const signed = await fetch(`${base}/.portcullis/login`, { method: 'POST', redirect: 'manual', body: form, headers: { origin: base, cookie: cookieHeader(), 'content-type': 'application/x-www-form-urlencoded' } });
  keep(signed);
  if (signed.status !== 303) throw new Error(`sign-in failed: ${signed.status}`);
  const out = [];
  for (const db of databases) {
    const res = await fetch(`${base}/.portcullis/connect/${db}`, { headers: { accept: 'application/json', cookie: cookieHeader() } });
    if (res.status !== 200) throw new Error(`connect failed: ${res.status} ${await res.text()}`);
    out.push((await res.json()).password);
  }
  return out;
}

export async function run(argv = []) {
  const opts = parseArgs(argv);
  const t0 = Date.now();
  const tools = ensurePgTools();
  if (tools.missing) return skip(tools.missing);
  if (psqlAdmin('SELECT 1').status !== 0) return skip(`PostgreSQL does not answer on ${PG.host}:${PG.port} as ${PG.user}`);
  if (opts.build) {
    log('npm run build …');
    const b = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
    if (b.status !== 0) return skip('`npm run build` failed', `${b.stdout}\n${b.stderr}`);
  }
  const pgVersion = spawnSync('psql', ['-X', '-A', '-t', '-h', PG.host, '-p', String(PG.port), '-U', PG.user, '-d', 'postgres', '-c', 'SHOW server_version'], { encoding: 'utf8' }).stdout.trim();
  const bouncerVersion = spawnSync(tools.pgbouncer, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];

  log(`preparing ${DB} (pgbench -i -s ${opts.scale}) …`);
  psqlAdmin(`DROP DATABASE IF EXISTS ${DB}`);
  if (psqlAdmin(`CREATE DATABASE ${DB}`).status !== 0) return skip(`cannot create database ${DB}`);
  const init = spawnSync('pgbench', ['-i', '-q', '-s', String(opts.scale), '-h', PG.host, '-p', String(PG.port), '-U', PG.user, DB], { encoding: 'utf8' });
  if (init.status !== 0) return skip('pgbench -i failed', init.stderr);

  const tmp = mkdtempSync(path.join(tmpdir(), 'portcullis-bench-pg-'));
  chmodSync(tmp, 0o755);
  const procs = [];
  try {
    // ---- pgbouncer ------------------------------------------------------------------------------
    const bouncerPort = await freePort();
    writeFileSync(path.join(tmp, 'userlist.txt'), `"${PG.user}" ""\n`);
    writeFileSync(
      path.join(tmp, 'pgbouncer.ini'),
      `[databases]\n${DB} = host=${PG.host} port=${PG.port} dbname=${DB}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = ${bouncerPort}\nunix_socket_dir =\nauth_type = trust\nauth_file = ${tmp}/userlist.txt\npool_mode = session\nmax_client_conn = 200\ndefault_pool_size = ${opts.clients + 5}\n`,
    );
    // pgbouncer refuses to run as root; -u drops to the postgres user.
    const asRoot = process.getuid?.() === 0;
    const bouncer = startProc(tools.pgbouncer, [...(asRoot ? ['-u', 'postgres'] : []), path.join(tmp, 'pgbouncer.ini')], { taskset: false });
    procs.push(bouncer);
    if (!(await waitForPort(bouncerPort))) return skip('pgbouncer did not start', bouncer.output);

    // ---- the gateway ----------------------------------------------------------------------------
    const [listenPort, adminPort, dbPort, fastPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const configFile = path.join(tmp, 'portcullis.yaml');
    mkdirSync(path.join(tmp, 'mfa'), { recursive: true });
    writeFileSync(configFile, gatewayConfig({ listen: `127.0.0.1:${listenPort}`, admin: `127.0.0.1:${adminPort}`, dbListen: `127.0.0.1:${dbPort}`, fastListen: `127.0.0.1:${fastPort}`, tmp }));
    const cli = path.join(ROOT, 'bin/portcullis.js');
    const userPassword = 'bench password 1';
    const add = spawnSync(process.execPath, [cli, 'users', 'add', 'bench', '--groups', 'bench', '--users-file', path.join(tmp, 'users.yaml')], { cwd: ROOT, input: `${userPassword}\n`, encoding: 'utf8' });
    if (add.status !== 0) return skip('`portcullis users add` failed', `${add.stdout}\n${add.stderr}`);
    const profile = opts.profile === null ? [] : ['--cpu-prof', '--cpu-prof-dir', opts.profile];
    const gw = startProc(process.execPath, [...profile, cli, 'serve', '--config', configFile], { taskset: false }, { cwd: ROOT, env: { ...process.env, NODE_ENV: 'production' } });
    procs.push(gw);
    if (!(await waitForPort(listenPort, 20_000)) || !(await waitForPort(dbPort, 5000))) return skip('the gateway did not start', gw.output);
    const [token, fastToken] = await gatewayPassword(listenPort, userPassword, ['bench', 'bench-no-intents']);

    const targets = [
      { name: 'direct', port: PG.port, user: PG.user, dbname: DB },
      { name: 'pgbouncer', port: bouncerPort, user: PG.user, dbname: DB },
      { name: 'portcullis', port: dbPort, user: 'bench', dbname: 'bench', password: token },
      { name: 'portcullis, intents off', port: fastPort, user: 'bench', dbname: 'bench-no-intents', password: fastToken },
    ];
    const results = {};
    const gwCpu0 = cpuSeconds(gw.pid);
    let gwRssPeak = 0;
    for (const mode of opts.modes) {
      results[mode] = { rounds: [] };
      for (let round = 0; round < opts.rounds; round++) {
        const order = targets.map((_, i) => targets[(i + round) % targets.length]);
        const r = {};
        for (const t of order) {
          log(`${mode} round ${round + 1}/${opts.rounds}: ${t.name} (${opts.duration} s) …`);
          r[t.name] = runPgbench(t, mode, opts);
          gwRssPeak = Math.max(gwRssPeak, rssMiB(gw.pid));
          await sleep(500);
        }
        results[mode].rounds.push(r);
      }
    }
    const gwCpu = cpuSeconds(gw.pid) - gwCpu0;
    const report = { machine: machineInfo(pgVersion, bouncerVersion), opts, results, gateway: { cpuSeconds: gwCpu, rssPeakMiB: gwRssPeak }, seconds: (Date.now() - t0) / 1000 };
    const md = markdown(report, targets);
    console.log(md);
    const dir = path.join(BENCH_DIR, 'results');
    mkdirSync(dir, { recursive: true });
    const out = opts.out ?? path.join(dir, `postgres-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')}.md`);
    writeFileSync(out, md);
    writeFileSync(out.replace(/\.md$/, '') + '.json', JSON.stringify(report, null, 2) + '\n');
    log(`wrote ${out}`);
    return report;
  } finally {
    for (const p of procs) await stopProc(p);
    psqlAdmin(`DROP DATABASE IF EXISTS ${DB}`);
  }
}

function machineInfo(pgVersion, bouncerVersion) {
  const cpu = /model name\s*:\s*(.*)/.exec(spawnSync('cat', ['/proc/cpuinfo'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== '';
  return { date: new Date().toISOString(), cpu, nproc: spawnSync('nproc', { encoding: 'utf8' }).stdout.trim(), node: process.version, postgres: pgVersion, pgbouncer: bouncerVersion, commit: `${commit}${dirty ? ' + working tree' : ''}` };
}

function markdown(report, targets) {
  const m = report.machine;
  const lines = [
    '## Database gateway benchmark (pgbench)',
    '',
    `${m.date.slice(0, 10)} · ${m.nproc} cores, ${m.cpu} · Node ${m.node} · PostgreSQL ${m.postgres} · ${m.pgbouncer} · commit ${m.commit}`,
    '',
    `pgbench -c ${report.opts.clients} -j 2, scale ${report.opts.scale}, ${report.opts.rounds} interleaved rounds × ${report.opts.duration} s per target and mode; ratios paired per round (median). No CPU pinning: pgbench, PostgreSQL and the proxy share the 2 cores.`,
    '',
  ];
  const rows = [];
  for (const [mode, r] of Object.entries(report.results)) {
    for (const t of targets) {
      const tps = median(r.rounds.map((x) => x[t.name].tps));
      const lat = median(r.rounds.map((x) => x[t.name].latency));
      const tpsRatio = median(r.rounds.map((x) => x[t.name].tps / x.direct.tps));
      const latRatio = median(r.rounds.map((x) => x[t.name].latency / x.direct.latency));
      const failed = r.rounds.reduce((n, x) => n + x[t.name].failed, 0);
      rows.push([MODES[mode].label, t.name, fmt.rps(tps), fmt.ms(lat), t.name === 'direct' ? '1.00×' : fmt.x(tpsRatio), t.name === 'direct' ? '1.00×' : fmt.x(latRatio), String(failed)]);
    }
  }
  lines.push(mdTable(['mode', 'target', 'TPS', 'latency avg (ms)', 'TPS ÷ direct', 'latency ÷ direct', 'failed tx'], rows));
  lines.push('', `Gateway process: ${report.gateway.cpuSeconds.toFixed(1)} CPU s over the run, peak RSS ${report.gateway.rssPeakMiB.toFixed(0)} MiB. Run took ${report.seconds.toFixed(0)} s.`, '');
  return lines.join('\n');
}

runIfMain(import.meta.url, run);
