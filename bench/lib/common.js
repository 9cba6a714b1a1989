// Shared helpers for the benchmarks: tool checks, child servers, nginx, wrk, process stats, tables.
// Loopback only: every address here is 127.0.0.1.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, writeFileSync, readFileSync, mkdirSync, chmodSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(BENCH_DIR, '..');
export const LIB = path.join(BENCH_DIR, 'lib');
/** The command that runs Portcullis: bin/portcullis.js (dist/), or `$BENCH_PORTCULLIS_CLI` (another build, to compare). */
export const CLI = process.env.BENCH_PORTCULLIS_CLI ? path.resolve(process.env.BENCH_PORTCULLIS_CLI) : path.join(ROOT, 'bin/portcullis.js');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const log = (...a) => console.error('[bench]', ...a);

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure nginx and wrk are present. As root on Debian/Ubuntu it runs
 * `apt-get update && apt-get install -y nginx wrk`; otherwise it prints exactly that and exits.
 */
export function ensureTools() {
  const need = { nginx: 'nginx', wrk: 'wrk' };
  const missing = Object.keys(need).filter((c) => !has(c) && !existsSync(`/usr/sbin/${c}`));
  if (missing.length) {
    const pkgs = missing.map((m) => need[m]).join(' ');
    const isRoot = process.getuid?.() === 0;
    if (isRoot && has('apt-get')) {
      log(`installing ${pkgs}: apt-get update && apt-get install -y ${pkgs}`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const u = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
      const i = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs.split(' ')], { stdio: 'inherit', env });
      if (u.status !== 0 || i.status !== 0) {
        console.error(`could not install ${pkgs}; install them by hand: sudo apt-get update && sudo apt-get install -y ${pkgs}`);
        process.exit(2);
      }
    } else {
      console.error(`missing: ${missing.join(', ')}. Install with:\n  sudo apt-get update && sudo apt-get install -y ${pkgs}`);
      process.exit(2);
    }
  }
  return {
    nginx: has('nginx') ? 'nginx' : '/usr/sbin/nginx',
    wrk: 'wrk',
    taskset: has('taskset') && cpus().length >= 2,
  };
}

/** Machine description for reports. */
export function machineInfo(tools) {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown';
  const nginxV = spawnSync(tools.nginx, ['-v'], { encoding: 'utf8' }).stderr.trim().replace('nginx version: ', '');
  const wrkV = (spawnSync(tools.wrk, ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? '').split(' ').slice(0, 2).join(' ');
  let undiciV = '?';
  let httpProxyV = '?';
  try { undiciV = JSON.parse(readFileSync(path.join(ROOT, 'node_modules/undici/package.json'), 'utf8')).version; } catch { /* */ }
  try { httpProxyV = JSON.parse(readFileSync(path.join(ROOT, 'node_modules/http-proxy/package.json'), 'utf8')).version; } catch { /* */ }
  let kernel = '';
  try { kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(); } catch { /* */ }
  return {
    nproc: cpus().length, cpu: model, node: process.version, nginx: nginxV, wrk: wrkV,
    undici: undiciV, httpProxy: httpProxyV, kernel, date: new Date().toISOString(),
    pinning: tools.taskset
      ? 'servers (upstream, proxy) on core 0 (`taskset -c 0`), wrk on core 1 (`taskset -c 1`, 1 thread)'
      : 'none (taskset missing or < 2 cores)',
  };
}

export function machineLine(m) {
  return `${m.date.slice(0, 10)} · ${m.nproc} cores, ${m.cpu} · Linux ${m.kernel} · Node ${m.node} · ` +
    `nginx ${m.nginx} · ${m.wrk} · undici ${m.undici} · http-proxy ${m.httpProxy}`;
}

const children = new Set();
export function killAll() {
  for (const c of children) {
    try { c.kill('SIGTERM'); } catch { /* gone */ }
  }
  children.clear();
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { killAll(); process.exit(130); });
}
process.on('exit', killAll);

function pinned(core, cmd, args, tools) {
  return tools.taskset ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args];
}

/**
 * Starts a child process (pinned to core 0 when possible) that prints `{"port":N,...}` as its
 * first stdout line. Resolves {proc, pid, port, info}. taskset execs, so the pid is the server's.
 */
export function startJsonServer(args, tools, { cwd = ROOT, env = process.env, timeoutMs = 10_000 } = {}) {
  const [cmd, argv] = pinned(0, process.execPath, args, tools);
  const proc = spawn(cmd, argv, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; if (stderr.length > 20_000) stderr = stderr.slice(-10_000); });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${args.join(' ')} did not start: ${stderr}`)), timeoutMs);
    const rl = createInterface({ input: proc.stdout });
    rl.once('line', (line) => {
      clearTimeout(t);
      try {
        const info = JSON.parse(line);
        resolve({ proc, pid: proc.pid, port: info.port, info, stop: () => stopProc(proc) });
      } catch { reject(new Error(`bad first line from ${args.join(' ')}: ${line}`)); }
    });
    proc.on('exit', (code) => { clearTimeout(t); reject(new Error(`${args.join(' ')} exited ${code}: ${stderr}`)); });
  });
}

/** Starts a long-running child (pinned to core 0 when possible) without a port handshake. */
export function startProc(cmd, args, tools, opts = {}) {
  const [c, a] = pinned(0, cmd, args, tools);
  const proc = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  proc.output = '';
  const add = (d) => { proc.output += d; if (proc.output.length > 50_000) proc.output = proc.output.slice(-25_000); };
  proc.stdout.on('data', add);
  proc.stderr.on('data', add);
  return proc;
}

export function stopProc(proc, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* */ } }, 3000);
    proc.once('exit', () => { clearTimeout(t); resolve(); });
    try { proc.kill(signal); } catch { resolve(); }
  });
}

/** A free loopback TCP port (bind to 0, read, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export async function waitForPort(port, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); r(true); });
      s.once('error', () => r(false));
    });
    if (ok) return true;
    await sleep(50);
  }
  return false;
}

// ---- nginx ---------------------------------------------------------------------------------
export const NGINX_NOTES =
  'nginx: 1 worker (`worker_processes 1`), `daemon off`, `access_log off`, upstream `keepalive 64`, ' +
  '`proxy_http_version 1.1`, `proxy_set_header Connection ""`, `proxy_request_buffering off`, ' +
  '`keepalive_requests 1000000` (client and upstream side, so neither side recycles connections ' +
  'during a run, like the Node servers)';

/** Writes a temp nginx.conf proxying to 127.0.0.1:upstreamPort and starts nginx in the foreground. */
export async function startNginx(tools, upstreamPort) {
  const dir = mkdtempSync(path.join(tmpdir(), 'portcullis-bench-nginx-'));
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    mkdirSync(path.join(dir, d));
    chmodSync(path.join(dir, d), 0o777); // the worker may run as nobody
  }
  chmodSync(dir, 0o755);
  const port = await freePort();
  const conf = `# generated by bench/lib/common.js
worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  client_max_body_size 64m;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  # WebSockets: "Connection: upgrade" only when the client asks to upgrade, else "" (upstream keep-alive).
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_request_buffering off;
      proxy_read_timeout 3600s;
    }
  }
}
`;
  const confPath = path.join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const proc = startProc(tools.nginx, ['-p', dir, '-c', confPath, '-e', path.join(dir, 'error.log')], tools);
  if (!(await waitForPort(port))) {
    let err = '';
    try { err = readFileSync(path.join(dir, 'error.log'), 'utf8'); } catch { /* */ }
    await stopProc(proc);
    throw new Error(`nginx did not start: ${proc.output} ${err}`);
  }
  const stop = async () => {
    await stopProc(proc, 'SIGQUIT');
    rmSync(dir, { recursive: true, force: true });
  };
  return { proc, pid: proc.pid, port, dir, confPath, stop };
}

// ---- section plumbing ----------------------------------------------------------------------
/**
 * A section's command-line options, from its defaults: `--kebab-case` of each key takes a number, a
 * comma-separated list (when the default is an array) or a string; a key whose default is `true` is
 * turned off by `--no-<key>`. `-h`/`--help` prints `usage` and exits. Throws on anything else.
 */
export function parseOptions(argv, defaults, usage) {
  const o = { ...defaults };
  const flags = new Map();
  for (const [key, d] of Object.entries(defaults)) {
    const name = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    flags.set(d === true ? `--no-${name}` : `--${name}`, key);
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      console.log(usage);
      process.exit(0);
    }
    const key = flags.get(a);
    if (key === undefined) throw new Error(`unknown argument ${a}\n${usage}`);
    const d = defaults[key];
    if (d === true) {
      o[key] = false;
      continue;
    }
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value\n${usage}`);
    const number = (x) => {
      const n = Number(x);
      if (x === '' || !Number.isFinite(n)) throw new Error(`${a} takes a number, not ${JSON.stringify(x)}`);
      return n;
    };
    if (typeof d === 'number') o[key] = number(v);
    else if (Array.isArray(d)) o[key] = v.split(',').map((x) => (typeof d[0] === 'number' ? number(x) : x));
    else o[key] = v;
  }
  return o;
}

/** The exit status of a section that was skipped (it says why): `bench/run.js` carries on. */
export const SKIPPED = 3;

/**
 * Runs a section's `run(argv)` when its file is the script node was started with: exit status
 * {@link SKIPPED} when it was skipped, 1 (after stopping its servers) on an error.
 */
export function runIfMain(moduleUrl, run) {
  if (!process.argv[1] || path.resolve(process.argv[1]) !== fileURLToPath(moduleUrl)) return;
  run(process.argv.slice(2)).then(
    (r) => { if (r?.skipped) process.exitCode = SKIPPED; },
    (e) => { console.error(e); killAll(); process.exit(1); },
  );
}

/** Checks for nginx and wrk (installing them as root), then logs and returns the machine's description. */
export function sectionMachine() {
  const tools = ensureTools();
  const machine = machineInfo(tools);
  log(machineLine(machine));
  return { tools, machine };
}

/**
 * Reports a section that could not run (build failed, a service is missing …): prints the reason
 * (and the tail of `detail`) and returns `{skipped: true, why}` for bench/run.js (exit 3).
 */
export function skipSection(title, why, detail = '') {
  const msg = `${title.toUpperCase()} SKIPPED: ${why}`;
  console.log(`\n## ${title}\n\n**${msg}**\n`);
  if (detail) console.log('```\n' + String(detail).trim().split('\n').slice(-40).join('\n') + '\n```\n');
  log(msg);
  return { skipped: true, why };
}

/**
 * Runs a load generator to its end and resolves {json, out}: the JSON of its `BENCHJSON {…}` line and
 * its whole stdout; rejects, with what it printed, when there is no such line.
 */
function runBenchJson(cmd, argv, what) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => {
      children.delete(p);
      const line = out.split('\n').find((l) => l.startsWith('BENCHJSON '));
      if (!line) return reject(new Error(`${what} failed (${code}): ${err || out}`));
      resolve({ json: JSON.parse(line.slice('BENCHJSON '.length)), out });
    });
  });
}

/**
 * Runs `node SCRIPT ARGS…` on core 1 (the load generator's core) and resolves the JSON of its
 * `BENCHJSON {…}` line (bench/lib/paced.js, ws-load.js echo).
 */
export async function runLoadScript(tools, script, args) {
  const full = [script, ...args];
  const [cmd, argv] = tools.taskset ? ['taskset', ['-c', '1', process.execPath, ...full]] : [process.execPath, full];
  return (await runBenchJson(cmd, argv, path.basename(script))).json;
}

/**
 * `npm run build` (bin/portcullis.js runs dist/), unless `build` is false; then checks that every
 * `dist/<file>` the section needs is there. Returns undefined, or `{why, detail}` to skip with.
 */
export function buildProject(build, needs = ['main.js']) {
  if (build) {
    log('npm run build …');
    const b = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
    if (b.status !== 0) return { why: '`npm run build` failed', detail: `${b.stdout}\n${b.stderr}` };
  }
  const missing = needs.find((f) => !existsSync(path.join(ROOT, 'dist', f)));
  return missing === undefined ? undefined : { why: `dist/${missing} is missing after the build` };
}

/** Writes a section's report to `out`, else `bench/results/<name>-<date>.md`, and its raw numbers beside it (.json). */
export function writeResults(name, date, md, results, out) {
  const file = out ?? path.join(BENCH_DIR, 'results', `${name}-${date.slice(0, 19).replaceAll(':', '')}.md`);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, md + '\n');
  writeFileSync(file.replace(/\.md$/, '') + '.json', JSON.stringify(results, null, 2) + '\n');
  log(`written ${path.relative(process.cwd(), file)}`);
  return file;
}

// ---- private redis -------------------------------------------------------------------------
/**
 * A private redis-server on a free loopback port, its data in `dir` (`appendonly yes`, `appendfsync
 * everysec`, no RDB) — never the shared 6379.
 */
export async function startRedis(tools, dir) {
  const port = await freePort();
  const proc = startProc('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes',
    '--appendfsync', 'everysec', '--daemonize', 'no', '--protected-mode', 'yes', '--loglevel', 'warning',
  ], tools);
  if (!(await waitForPort(port))) {
    await stopProc(proc);
    throw new Error(`redis-server did not start: ${proc.output}`);
  }
  const version = (spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.match(/v=(\S+)/) ?? [])[1] ?? '?';
  return { proc, pid: proc.pid, port, url: `redis://127.0.0.1:${port}/0`, version, stop: () => stopProc(proc) };
}

export const hasRedis = () => has('redis-server');

// ---- a gateway to measure --------------------------------------------------------------------
/** GET `urlPath` with a Host header (and more headers); resolves {status, body, headers} or {error}. */
export function probe(port, host, urlPath = '/', headers = {}) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: { host, ...headers }, agent: false, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ error }));
  });
}

/**
 * Starts `node bin/portcullis.js serve --config FILE` (pinned to core 0) and waits until `path`
 * on Host `localhost:<port>` answers 200 `hello world`. Throws {message, detail} when it does not
 * within 30 s.
 */
export async function startPortcullis(tools, { configFile, port, env = process.env, path: urlPath = '/', logLevel = 'warn' }) {
  const proc = startProc(process.execPath, [CLI, 'serve', '--config', configFile, '--log-level', logLevel], tools, { cwd: ROOT, env: { ...env, NODE_ENV: 'production' } });
  const host = `localhost:${port}`;
  const deadline = Date.now() + 30_000;
  let last;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) break;
    last = await probe(port, host, urlPath);
    if (last.status === 200 && last.body === 'hello world\n') return { proc, pid: proc.pid, port, host, stop: () => stopProc(proc) };
    await sleep(250);
  }
  await stopProc(proc);
  const state = proc.exitCode !== null || proc.signalCode !== null ? `exited (${proc.exitCode ?? proc.signalCode})` : 'running';
  throw Object.assign(new Error(`Portcullis did not serve ${urlPath} within 30 s (process ${state}; last answer: ${last?.error ? last.error.message : `${last?.status} ${String(last?.body).slice(0, 200)}`})`), { detail: proc.output });
}

/** Adds a local user with a password (through the real CLI); resolves when the users file has it. */
export function addUser(usersFile, name, groups, password) {
  const r = spawnSync(process.execPath, [CLI, 'users', 'add', name, '--groups', groups.join(','), '--users-file', usersFile], { cwd: ROOT, input: `${password}\n`, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`portcullis users add ${name} failed: ${r.stdout}${r.stderr}`);
}

/**
 * Signs `user` in through the login form (bench/lib/sign-in.ts, run by tsx) and returns the Cookie
 * header value; with `passkey`, also enrols a software passkey, which is a fresh WebAuthn check.
 */
export function signIn(port, user, password, { passkey = false } = {}) {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/tsx/dist/cli.mjs'), path.join(LIB, 'sign-in.ts'), String(port), user, password, ...(passkey ? ['--passkey'] : [])], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`sign-in of ${user} failed: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)).cookie;
}

/** Open file descriptors of a process and its children (nginx: master + worker). */
export function openFds(pid) {
  let n = 0;
  for (const p of pidTree(pid)) {
    try { n += readdirSync(`/proc/${p}/fd`).length; } catch { /* gone */ }
  }
  return n;
}

/** Sets the CPU affinity of every thread of a running process (`taskset -a -p -c CORES PID`). */
export function setAffinity(pid, cores) {
  const r = spawnSync('taskset', ['-a', '-p', '-c', cores, String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`taskset -a -p -c ${cores} ${pid}: ${r.stderr}`);
}

// ---- process stats -------------------------------------------------------------------------
function childrenOf(pid) {
  try {
    const tasks = readdirSync(`/proc/${pid}/task`);
    return tasks.flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  } catch { return []; }
}

/** The pid and its descendants (nginx master + workers). */
export function pidTree(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...childrenOf(out[i]));
  return out;
}

/** Resident set size in MiB of the process tree. */
export function rssMiB(pid) {
  let kb = 0;
  for (const p of pidTree(pid)) {
    try { kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0); } catch { /* */ }
  }
  return kb / 1024;
}

const CLK_TCK = 100; // getconf CLK_TCK is 100 on Linux
/** CPU seconds (user + system) used so far by the process tree. */
export function cpuSeconds(pid) {
  let ticks = 0;
  for (const p of pidTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
    } catch { /* */ }
  }
  return ticks / CLK_TCK;
}

/** Busy CPU seconds of one core so far (everything but idle and iowait; steal counts as busy). */
export function coreBusySeconds(core) {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${core} `));
  if (!line) return 0;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + (steal || 0)) / CLK_TCK;
}

// ---- wrk -----------------------------------------------------------------------------------
export const WRK_GET_LUA = path.join(LIB, 'wrk-report.lua');
export const WRK_POST_LUA = path.join(LIB, 'wrk-post.lua');

/**
 * Runs wrk (pinned to core 1 when possible, 1 thread) and returns
 * {rps, p50, p99 (ms), requests, errors, non2xx, bad, raw}.
 */
export async function runWrk(tools, url, { connections, seconds, script = WRK_GET_LUA, headers = [], timeout = '10s' }) {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', timeout, '-s', script];
  for (const h of headers) args.push('-H', h);
  args.push(url);
  const wrkCmd = (tools.taskset ? ['taskset', '-c', '1', tools.wrk, ...args] : [tools.wrk, ...args]);
  // Run through sh so that, after wrk exits, the shell's cutime/cstime (/proc/$$/stat) give wrk's CPU.
  const shScript = '"$@"; rc=$?; echo "CHILDSTAT $(cat /proc/$$/stat)"; exit $rc';
  const { json: j, out } = await runBenchJson('sh', ['-c', shScript, 'sh', ...wrkCmd], 'wrk');
  let wrkCpu;
  const st = out.split('\n').find((l) => l.startsWith('CHILDSTAT '));
  if (st) {
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    wrkCpu = (Number(f[13]) + Number(f[14])) / CLK_TCK; // cutime, cstime (fields 16, 17)
  }
  return {
    rps: j.requests / (j.duration_us / 1e6),
    p50: j.p50 / 1000,
    p99: j.p99 / 1000,
    requests: j.requests,
    errors: j.connect + j.read + j.write + j.timeout,
    non2xx: j.status,
    bad: j.bad ?? 0,
    wrkCpu,
    raw: out,
  };
}

// ---- tables --------------------------------------------------------------------------------
export function mdTable(head, rows) {
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((h, i) => (i === 0 || /notes|pass|intact|stripped|closes/.test(h) ? '---' : '---:')).join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  return lines.join('\n');
}
export const fmt = {
  rps: (n) => (n === undefined ? '–' : Math.round(n).toLocaleString('en-US')),
  ms: (n) => (n === undefined ? '–' : n < 10 ? n.toFixed(2) : n.toFixed(1)),
  x: (n) => (n === undefined || !Number.isFinite(n) ? '–' : `${n.toFixed(2)}×`),
  mib: (n) => (n === undefined ? '–' : n.toFixed(0)),
  us: (n) => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(0)),
};
