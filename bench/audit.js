#!/usr/bin/env node
// Audit benchmark: what the audit path costs.
//
//   node bench/audit.js [--records 50000] [--levels 1,50] [--duration 8] [--rounds 4] [--warmup 1]
//                       [--no-build] [--out FILE]
//
// 1. Append throughput of one instance's writer: `openAuditLog` (dist/audit/audit-log.js) with a sink
//    from `createAuditSink` (dist/audit/create-sink.js), `--records` realistic http records (~0.8 KB
//    canonical) made and appended as a gateway does (the request auditor's `requestRecordParts`, then
//    `appendParts`, not durable: non-strict routes), measured until the sink
//    has acknowledged every one (`flush()`). Once into the file sink (temp dir, fdatasync per group
//    commit) and once into the Redis sink (a private `redis-server` on a free loopback port,
//    `appendonly yes`, `appendfsync everysec`; the shared 6379 is never used). For reference, the same
//    records straight into `sink.append()` in batches of 500 (no writer, no spool).
// 2. Latency the audit path adds per request: `node bin/portcullis.js serve` runs twice at the same
//    time — one with the file sink, one with the Redis sink (same private Redis) — one public route
//    each, memory store. There is no "no audit" mode and no memory sink, so the baseline is the bare
//    undici Pool.dispatch() forwarder of bench/engines.js (no policy, no audit, nothing): the ratios
//    bound what the whole gateway adds, and file ÷ redis isolates the sink. wrk samples all three
//    interleaved (bench/lib/measure.js): medians and paired ratios.
//
// Builds first (`npm run build`) unless --no-build. Prints markdown and writes
// bench/results/audit-<date>.md (+ .json). Exits 3 ("skipped") when the build, redis-server or a
// gateway fails, saying why.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  startRedis, LIB, ROOT, fmt, freePort, log, machineLine, mdTable, sleep, startJsonServer, startProc,
  stopProc, skipSection, buildProject, writeResults, hasRedis, parseOptions, runIfMain, sectionMachine,
} from './lib/common.js';
import { measureLevel, otherLoad } from './lib/measure.js';

function parseArgs(argv) {
  return parseOptions(argv, { records: 50_000, levels: [1, 50], duration: 8, rounds: 4, warmup: 1, build: true, out: null, pool: 64 },
    'usage: node bench/audit.js [--records 50000] [--levels 1,50] [--duration 8] [--rounds 4] [--warmup 1] [--no-build] [--out FILE]');
}

const skip = (why, detail = '') => skipSection('Audit benchmark', why, detail);

const dist = (p) => import(pathToFileURL(path.join(ROOT, 'dist', p)).href);

// ---- part 1: append throughput --------------------------------------------------------------------
/**
 * A realistic http request (SPEC §4 shape; ~0.8 KB canonical once chained), as the pipeline hands it
 * to the request auditor: what it knows of the request, and how it ended.
 */
const T0 = Date.UTC(2026, 10, 26, 10);
const IDENTITY = {
  user: 'alice', email: 'alice@example.com', groups: ['eng', 'sre', 'oncall'], provider: 'corp', auth: 'cookie',
  session: '9f86d081884c7d65', authTime: T0 - 3_600_000, amr: ['pwd'],
};
function request(i) {
  const req = {
    headers: { host: 'grafana.example.com', 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36' },
    url: '/',
  };
  const audited = {
    id: `01JD${String(i).padStart(22, '0')}`, startNs: 0n, method: i % 10 === 0 ? 'POST' : 'GET', clientIp: `10.0.${(i >> 8) & 255}.${i & 255}`,
    path: `/api/dashboards/uid/a${i % 5000}/panels/${i % 17}`, query: 'from=now-6h&to=now&orgId=1&token=abc', routeId: 'grafana',
    identity: { ...IDENTITY, mfa: { factor: 'webauthn', at: T0 + i - 42_000 - (i % 600) * 1000 } }, reason: 'group eng',
  };
  const outcome = {
    kind: 'http', status: 200, decision: 'allow', bytesIn: i % 10 === 0 ? 1834 : 0, bytesOut: 18_000 + (i % 4096),
    upstream: { target: 'http://10.1.2.3:3000', ttfbNs: BigInt(2500 + (i % 3000)) * 1000n },
  };
  return { req, audited, outcome, opts: { nowMs: T0 + i, endNs: BigInt(3200 + (i % 5000)) * 1000n, redactParams: ['token'] } };
}

async function appendThroughput(kind, sinkConfig, n, tmp) {
  const { openAuditLog } = await dist('audit/audit-log.js');
  const { createAuditSink } = await dist('audit/create-sink.js');
  const { GENESIS_PREV, leafHash } = await dist('audit/canonical.js');
  const { requestRecordParts } = await dist('audit/request-auditor.js');
  const { chainedText } = await dist('audit/record.js');
  // The request auditor's work: the record's canonical members from what the pipeline knows.
  const parts = (i) => {
    const r = request(i);
    return requestRecordParts(r.req, r.audited, r.outcome, r.opts);
  };
  const { pino } = await import('pino');
  const logger = pino({ level: 'silent' });

  // Through the writer (spool + ship), as the gateway does.
  const sink = createAuditSink(sinkConfig);
  const auditLog = await openAuditLog({
    sink, instance: `bench-${kind}`, origin: 'bench.portcullis.local/audit/bench', spoolDir: path.join(tmp, `spool-${kind}`),
    onFailure: 'spool', logger,
  });
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const CHUNK = 500; // requests in flight at once
  let bytes = 0;
  for (let i = 0; i < n; i += CHUNK) {
    const recs = await Promise.all(Array.from({ length: Math.min(CHUNK, n - i) }, (_, j) => auditLog.appendParts(parts(i + j), false)));
    for (const r of recs) bytes += r.bytes.length;
  }
  const tSpooled = performance.now();
  const all = await auditLog.flush(120_000);
  const tAcked = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const stats = auditLog.stats();
  await auditLog.close();
  const head = await sink.head(`bench-${kind}`);
  await sink.close();
  if (!all || head.size !== n) throw new Error(`${kind} sink holds ${head.size} of ${n} records after flush (stats ${JSON.stringify(stats)})`);

  // Straight into the sink, batches of 500, one after the other: the sink's own ceiling.
  const raw = createAuditSink(sinkConfig);
  const records = [];
  let prev = GENESIS_PREV;
  for (let seq = 0; seq < n; seq++) {
    const b = Buffer.from(chainedText(parts(seq), '"bench.portcullis.local/audit/raw"', prev, seq), 'utf8');
    prev = leafHash(b).toString('hex');
    records.push({ seq, bytes: b });
  }
  const r0 = performance.now();
  for (let i = 0; i < n; i += 500) await raw.append(`raw-${kind}`, records.slice(i, i + 500));
  const r1 = performance.now();
  await raw.close();

  const row = {
    sink: kind, records: n, avgBytes: bytes / n,
    spooledPerSec: n / ((tSpooled - t0) / 1000),
    ackedPerSec: n / ((tAcked - t0) / 1000),
    seconds: (tAcked - t0) / 1000,
    rawPerSec: n / ((r1 - r0) / 1000),
    cpuUsPerRecord: (cpu.user + cpu.system) / n,
  };
  log(`${kind.padEnd(5)} writer: ${fmt.rps(row.ackedPerSec)} records/s in the sink (${fmt.rps(row.spooledPerSec)}/s into the spool), ` +
    `raw sink.append: ${fmt.rps(row.rawPerSec)} records/s, ${row.avgBytes.toFixed(0)} B/record`);
  return row;
}

// ---- part 2: gateways -------------------------------------------------------------------------
function gatewayYaml({ listen, admin, upstream, tmp, instance, sink }) {
  return `# generated by bench/audit.js
server:
  listen: ${listen}
  public_url: http://localhost:${listen.split(':')[1]}
  admin_listen: ${admin}
  instance_id: ${instance}
store:
  type: memory
identity:
  providers: []
audit:
  sink: ${sink}
  on_failure: spool
  spool_dir: ${tmp}/spool
  seal:
    key_file: ${tmp}/seal.key
    witness_dir: ${tmp}/checkpoints
    origin: bench.portcullis.local/audit
routes:
  - {id: bench, host: localhost, path: /, upstream: ${upstream}, public: true}
`;
}

function probe(port, host) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', headers: { host }, agent: false, timeout: 2000 }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: b }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ error }));
  });
}

async function startGateway(tools, { id, sink, upstreamPort, tmpRoot }) {
  const tmp = path.join(tmpRoot, id);
  mkdirSync(tmp, { recursive: true });
  const port = await freePort();
  const admin = await freePort();
  const file = path.join(tmp, 'portcullis.yaml');
  writeFileSync(file, gatewayYaml({ listen: `127.0.0.1:${port}`, admin: `127.0.0.1:${admin}`, upstream: `http://127.0.0.1:${upstreamPort}`, tmp, instance: id, sink }));
  const env = { ...process.env, NODE_ENV: 'production' };
  const proc = startProc(process.execPath, [path.join(ROOT, 'bin/portcullis.js'), 'serve', '--config', file, '--log-level', 'warn'], tools, { cwd: ROOT, env });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) break;
    const r = await probe(port, `localhost:${port}`);
    if (r.status === 200 && r.body === 'hello world\n') return { proc, pid: proc.pid, port, host: `localhost:${port}`, stop: () => stopProc(proc) };
    await sleep(250);
  }
  await stopProc(proc);
  throw Object.assign(new Error(`Portcullis (${id}) did not serve the route within 30 s`), { detail: proc.output });
}

export async function run(argv = []) {
  const opts = parseArgs(argv);
  const t0 = Date.now();
  const { tools, machine } = sectionMachine();
  if (!hasRedis()) return skip('redis-server is not installed (Debian: apt-get install -y redis-server)');
  const unbuilt = buildProject(opts.build, ['audit/audit-log.js']);
  if (unbuilt) return skip(unbuilt.why, unbuilt.detail);

  const tmp = mkdtempSync(path.join(tmpdir(), 'portcullis-bench-audit-'));
  const stops = [];
  try {
    const redisDir = path.join(tmp, 'redis');
    mkdirSync(redisDir);
    let redis;
    try {
      redis = await startRedis(tools, redisDir);
    } catch (e) {
      return skip(e.message);
    }
    stops.push(redis.stop);
    log(`private redis-server ${redis.version} on ${redis.port} (appendonly yes, appendfsync everysec)`);

    // ---- part 1 ------------------------------------------------------------------------------
    const throughput = [];
    throughput.push(await appendThroughput('file', { type: 'file', dir: path.join(tmp, 'file-sink') }, opts.records, tmp));
    throughput.push(await appendThroughput('redis', { type: 'redis', url: redis.url, stream: 'bench:append' }, opts.records, tmp));

    // ---- part 2 ------------------------------------------------------------------------------
    const upstream = await startJsonServer([path.join(LIB, 'upstream.js')], tools);
    stops.push(upstream.stop);
    const bare = await startJsonServer([path.join(LIB, 'forwarder.js'), 'undici-dispatch', String(upstream.port), String(opts.pool)], tools);
    stops.push(bare.stop);
    let gwFile;
    let gwRedis;
    try {
      gwFile = await startGateway(tools, { id: 'bench-file', sink: `{type: file, dir: ${tmp}/gw-file-sink}`, upstreamPort: upstream.port, tmpRoot: tmp });
      stops.push(gwFile.stop);
      gwRedis = await startGateway(tools, { id: 'bench-redis', sink: `{type: redis, url: "${redis.url}", stream: "bench:gw"}`, upstreamPort: upstream.port, tmpRoot: tmp });
      stops.push(gwRedis.stop);
    } catch (e) {
      return skip(e.message, e.detail);
    }
    const targets = [
      { id: 'undici-dispatch', pid: bare.pid, port: bare.port },
      { id: 'portcullis-file', pid: gwFile.pid, port: gwFile.port, headers: [`Host: ${gwFile.host}`] },
      { id: 'portcullis-redis', pid: gwRedis.pid, port: gwRedis.port, headers: [`Host: ${gwRedis.host}`] },
    ];
    const seconds = Math.max(1, Math.round(opts.duration / opts.rounds));
    const runs = [];
    for (const c of opts.levels) {
      runs.push(...(await measureLevel(tools, targets, {
        connections: c, rounds: opts.rounds, seconds, warmup: opts.warmup, upstreamPid: upstream.pid,
        refs: ['undici-dispatch', 'portcullis-file'],
      })));
    }

    // Every request must have its record in the sink: compare with what the gateways served.
    await sleep(1500);
    const { createAuditSink } = await dist('audit/create-sink.js');
    const sinkSizes = {};
    for (const [id, cfg] of [['bench-file', { type: 'file', dir: `${tmp}/gw-file-sink` }], ['bench-redis', { type: 'redis', url: redis.url, stream: 'bench:gw' }]]) {
      const s = createAuditSink(cfg);
      sinkSizes[id] = (await s.head(id)).size;
      await s.close();
    }
    const results = { machine, redis: redis.version, opts, throughput, runs, sinkSizes, seconds: (Date.now() - t0) / 1000 };
    results.summary = summary(results);
    const md = report(results);
    console.log(md);
    writeResults('audit', machine.date, md, results, opts.out);
    return results;
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

const LABEL = {
  'undici-dispatch': 'bare undici forwarder (no audit; baseline)',
  'portcullis-file': 'Portcullis, file sink',
  'portcullis-redis': 'Portcullis, Redis sink',
};

/** The targets for this section, each with the figure measured in this run. */
export function summary(R) {
  return R.throughput.map((t) => ({
    figure: `audit append, one instance, into ${t.sink === 'redis' ? 'Redis (one append script per batch)' : 'the file sink'} (writer: canonical record + hash + spool + sink)`,
    value: `${fmt.rps(t.ackedPerSec)} records/s (${fmt.us(t.cpuUsPerRecord)} µs CPU each; raw sink ${fmt.rps(t.rawPerSec)}/s)`,
    target: t.sink === 'redis' ? '≥ 100,000/s' : 'measure',
    met: t.sink === 'redis' ? t.ackedPerSec >= 100_000 : undefined,
  }));
}

export function report(R) {
  const { machine, runs, opts, throughput } = R;
  const levels = [...new Set(runs.map((r) => r.connections))];
  const ids = [...new Set(runs.map((r) => r.engine))];
  const find = (id, c) => runs.find((r) => r.engine === id && r.connections === c);
  const out = [];
  out.push(`# Audit benchmark (${machine.date.slice(0, 10)})`, '');
  out.push(`Machine: ${machineLine(machine)} · redis-server ${R.redis} (private, loopback, appendonly yes, appendfsync everysec).`, '');
  out.push(mdTable(['figure', 'measured', 'target', 'met'], R.summary.map((s) => [s.figure, s.value, s.target, s.met === undefined ? '–' : s.met ? 'yes' : '**no**'])), '');
  out.push(`## Append throughput, one instance (${fmt.rps(opts.records)} records, ~${fmt.rps(throughput[0]?.avgBytes)} B each)`, '');
  out.push(mdTable(['sink', 'writer → sink acked, records/s', 'writer → spool, records/s', 'writer CPU µs/record', 'raw sink.append (500/batch), records/s', 'seconds (writer)'],
    throughput.map((t) => [t.sink, fmt.rps(t.ackedPerSec), fmt.rps(t.spooledPerSec), fmt.us(t.cpuUsPerRecord), fmt.rps(t.rawPerSec), t.seconds.toFixed(1)])), '');
  out.push('Writer = `requestRecordParts` (the request auditor) + `openAuditLog` + `createAuditSink`, `appendParts(parts, durable=false)` with 500 in flight, timed until `flush()` saw every record acknowledged by the sink.', '');
  out.push('## Latency per request (wrk, one public route, GET 12-byte body)', '');
  out.push(`Pinning: ${machine.pinning}; redis-server on core 0 too. Sampling: ${opts.warmup} s warm-up, ${opts.rounds} × ${Math.max(1, Math.round(opts.duration / opts.rounds))} s interleaved samples per target and level; medians; paired ratios. ` +
    'No memory sink exists: the baseline is the bare undici forwarder (no policy, no audit), so "× bare" is everything the gateway adds; "× file" isolates the sink.', '');
  out.push(mdTable(['target', 'conns', 'req/s', 'min–max', 'p50 ms', 'p99 ms', 'req/s × bare', 'req/s × file', 'CPU µs/req', 'RSS MiB', 'errors', 'other load'],
    ids.flatMap((id) => levels.map((c) => find(id, c)).filter(Boolean).map((r) => [
      LABEL[id] ?? id, r.connections, fmt.rps(r.rps), `${fmt.rps(r.rpsMin)}–${fmt.rps(r.rpsMax)}`, fmt.ms(r.p50), fmt.ms(r.p99),
      fmt.x(r['x_undici-dispatch']), fmt.x(r['x_portcullis-file']), fmt.us(r.cpuUsPerReq), fmt.mib(r.rss), r.errors + r.non2xx, otherLoad(r),
    ]))), '');
  const lat = [];
  for (const c of levels) {
    const b = find('undici-dispatch', c);
    const f = find('portcullis-file', c);
    const r = find('portcullis-redis', c);
    if (!b || !f || !r) continue;
    lat.push([c, fmt.ms(f.p50 - b.p50), fmt.ms(r.p50 - b.p50), fmt.ms(r.p50 - f.p50), fmt.x(f.p50 / b.p50), fmt.x(r.p50 / b.p50), fmt.x(r.p50 / f.p50), fmt.x(r.p99 / f.p99)]);
  }
  out.push(mdTable(['conns', 'p50 file − bare ms', 'p50 redis − bare ms', 'p50 redis − file ms', 'p50 file ÷ bare', 'p50 redis ÷ bare', 'p50 redis ÷ file', 'p99 redis ÷ file'], lat), '');
  out.push(`Records in the gateways' sinks after the run: file ${fmt.rps(R.sinkSizes['bench-file'])}, Redis ${fmt.rps(R.sinkSizes['bench-redis'])} (one per request served, warm-ups and readiness probes included; not cross-checked against wrk's counts).`, '');
  out.push(`Total run time: ${R.seconds.toFixed(0)} s.`);
  return out.join('\n');
}

runIfMain(import.meta.url, run);
