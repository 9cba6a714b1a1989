#!/usr/bin/env node
// Proxy engine comparison: direct vs nginx vs undici (dispatch / stream) vs http-proxy vs node:http
// piping, all on loopback, each server in its own process pinned to core 0, wrk pinned to core 1.
//
//   node bench/engines.js [--engines a,b,...] [--levels 1,50,500] [--duration 5] [--rounds 5]
//                         [--warmup 1] [--pool 64] [--no-post] [--no-checks] [--out FILE]
//
// Prints markdown to stdout and writes bench/results/engines-<date>.md (+ .json).
// Needs nginx and wrk (installed with apt-get when running as root; otherwise it says how).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  BENCH_DIR, LIB, WRK_POST_LUA, NGINX_NOTES, ensureTools, machineInfo, machineLine, startJsonServer,
  startNginx, mdTable, fmt, log, parseOptions, runIfMain,
} from './lib/common.js';
import { checkHopByHop, checkAbort } from './lib/checks.js';
import { measureLevel, otherLoad } from './lib/measure.js';

/** Every engine; `levels` limits the connection counts (http-proxy without an agent opens one
 *  upstream connection per request, so it only runs at 50 connections, for the record). */
export const ENGINES = [
  { id: 'direct', label: 'direct (no proxy)' },
  { id: 'nginx', label: 'nginx' },
  { id: 'undici-dispatch', label: 'undici Pool.dispatch()' },
  { id: 'undici-dispatch-raw', label: 'undici Pool.dispatch() legacy handler', optional: true },
  { id: 'undici-stream', label: 'undici Pool.stream()' },
  { id: 'node-pipe', label: 'node:http pipe + keep-alive Agent' },
  { id: 'http-proxy-agent', label: 'http-proxy 1.18 + keep-alive Agent' },
  { id: 'http-proxy', label: 'http-proxy 1.18, default (no agent)', levels: [50] },
];

/** `--engines` ids; `all` adds the optional ones; `ENGINE@N` runs an undici engine with pool size N. */
function selectEngines(ids) {
  if (!ids) return ENGINES.filter((e) => !e.optional);
  if (ids.includes('all')) return ENGINES;
  return ids.map((id) => {
    const [base, pool] = id.split('@');
    const e = ENGINES.find((x) => x.id === base);
    if (!e) throw new Error(`unknown engine ${id}; known: ${ENGINES.map((x) => x.id).join(', ')}`);
    return pool ? { ...e, id, label: `${e.label}, ${pool} connections`, pool: Number(pool) } : e;
  });
}

export function parseArgs(argv) {
  const o = parseOptions(argv,
    { engines: null, levels: [1, 50, 500], duration: 5, warmup: 1, pool: 64, post: true, checks: true, out: null, postRounds: 2, postConnections: 8, rounds: 5 },
    'usage: node bench/engines.js [--engines ' + ENGINES.map((e) => e.id).join(',') +
      '] [--levels 1,50,500] [--duration 5] [--rounds 5] [--warmup 1] [--pool 64] [--no-post] [--no-checks] [--out FILE]');
  if (o.engines !== null) o.engines = o.engines.split(',');
  return o;
}

async function startEngine(e, tools, upstream, opts) {
  if (e.id === 'direct') return { pid: upstream.pid, port: upstream.port, stop: async () => {} };
  if (e.id === 'nginx') return startNginx(tools, upstream.port);
  return startJsonServer([path.join(LIB, 'forwarder.js'), e.id.split('@')[0], String(upstream.port), String(e.pool ?? opts.pool)], tools);
}

export async function run(argv = []) {
  const opts = parseArgs(argv);
  const t0 = Date.now();
  const tools = ensureTools();
  const machine = machineInfo(tools);
  const engines = selectEngines(opts.engines);
  log(machineLine(machine));
  log(`pinning: ${machine.pinning}`);

  const upstream = await startJsonServer([path.join(LIB, 'upstream.js')], tools);
  const results = { machine, opts, nginx: NGINX_NOTES, runs: [], post: [], checks: [] };

  try {
    // ---- correctness: every proxy at once (they are idle), in parallel ------------------------
    if (opts.checks) {
      const proxies = engines.filter((e) => e.id !== 'direct');
      const started = await Promise.all(proxies.map((e) => startEngine(e, tools, upstream, opts)));
      const res = await Promise.all(proxies.map(async (e, i) => {
        const [hop, ab] = await Promise.all([checkHopByHop(started[i].port), checkAbort(started[i].port, upstream.port, e.id)]);
        return { engine: e.id, ...hop, ...ab, detail: [hop.detail, ab.detail].filter(Boolean).join('; ') };
      }));
      await Promise.all(started.map((s) => s.stop()));
      results.checks = res;
      log('checks done');
    }

    // ---- throughput ---------------------------------------------------------------------------
    // Every engine runs in its own process (idle when not measured) for the whole section; see
    // lib/measure.js for the interleaved sampling and paired ratios.
    const servers = new Map();
    for (const e of engines) servers.set(e.id, { id: e.id, ...(await startEngine(e, tools, upstream, opts)) });
    const seconds = Math.max(1, Math.round(opts.duration / opts.rounds));
    for (const c of opts.levels) {
      const here = engines.filter((e) => (e.levels ?? opts.levels).includes(c)).map((e) => servers.get(e.id));
      if (!here.length) continue;
      results.runs.push(...(await measureLevel(tools, here, {
        connections: c, rounds: opts.rounds, seconds, warmup: opts.warmup, upstreamPid: upstream.pid,
      })));
    }

    // ---- 1 MiB POST: streaming request bodies --------------------------------------------------
    if (opts.post) {
      results.post = await measureLevel(tools, [...servers.values()], {
        connections: opts.postConnections, rounds: opts.postRounds, seconds: 1, warmup: 0, path: '/upload',
        script: WRK_POST_LUA, upstreamPid: upstream.pid, tag: 'POST 1MiB ',
      });
    }
    for (const srv of servers.values()) await srv.stop();
  } finally {
    await upstream.stop();
  }
  results.seconds = (Date.now() - t0) / 1000;
  const md = report(results);
  console.log(md);
  const dir = path.join(BENCH_DIR, 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = machine.date.slice(0, 19).replaceAll(':', '');
  const out = opts.out ?? path.join(dir, `engines-${stamp}.md`);
  writeFileSync(out, md + '\n');
  writeFileSync(out.replace(/\.md$/, '') + '.json', JSON.stringify(results, null, 2) + '\n');
  log(`written ${path.relative(process.cwd(), out)} (${results.seconds.toFixed(0)} s)`);
  return results;
}

const label = (id) => {
  const [base, pool] = id.split('@');
  const l = ENGINES.find((e) => e.id === base)?.label ?? base;
  return pool ? `${l}, pool ${pool}` : l;
};

export function report(R) {
  const { machine, runs, post, checks, opts } = R;
  const find = (id, c) => runs.find((r) => r.engine === id && r.connections === c);
  const ids = [...new Set(runs.map((r) => r.engine))];
  const levels = [...new Set(runs.map((r) => r.connections))].sort((a, b) => a - b);
  const out = [];
  out.push(`# Proxy engine comparison (${machine.date.slice(0, 10)})`, '');
  out.push(`Machine: ${machineLine(machine)}.`, '');
  out.push(`Pinning: ${machine.pinning}. Upstream: node:http, \`hello world\\n\` (12-byte body, 3 headers), keep-alive.`);
  out.push(`Load: wrk -t1; per connection level ${opts.warmup} s warm-up per engine, then ${opts.rounds} samples of ` +
    `${Math.max(1, Math.round(opts.duration / opts.rounds))} s per engine, interleaved round-robin across engines; req/s, p50, p99 are the median sample; ` +
    `ratios are paired (engine ÷ reference within the same round, median over rounds). ` +
    `undici Pool connections: ${opts.pool}; node Agents: keepAlive, default maxSockets.`);
  out.push(`${R.nginx}.`, '');

  out.push('## Throughput (req/s) and ratios', '');
  const head = ['engine'];
  for (const c of levels) head.push(`${c} conn req/s`, '× nginx', '× direct');
  out.push(mdTable(head, ids.map((id) => {
    const row = [label(id)];
    for (const c of levels) {
      const r = find(id, c);
      row.push(fmt.rps(r?.rps), fmt.x(r?.x_nginx), fmt.x(r?.x_direct));
    }
    return row;
  })), '');

  out.push('## Detail per run', '');
  out.push('p50/p99: wrk latency percentiles (ms). RSS: the server process (nginx: master + worker) right after the run. ' +
    'CPU: the proxy\'s own CPU time per request (direct: the upstream\'s); upstream CPU is on the same core. ' +
    '"other load": share of core 0 / core 1 used by processes that are not part of the benchmark during this engine\'s samples (noise indicator; ' +
    'the VM\'s own speed also drifts, which is why samples are interleaved and ratios paired).', '');
  out.push(mdTable(['engine', 'conns', 'req/s', 'min–max', '× nginx', '× direct', 'p50 ms', 'p99 ms', 'errors', 'RSS MiB', 'proxy CPU µs/req', 'upstream CPU µs/req', 'other load'],
    ids.flatMap((id) => levels.map((c) => find(id, c)).filter(Boolean).map((r) => {
      return [label(id), r.connections, fmt.rps(r.rps), `${fmt.rps(r.rpsMin)}–${fmt.rps(r.rpsMax)}`, fmt.x(r.x_nginx), fmt.x(r.x_direct),
        fmt.ms(r.p50), fmt.ms(r.p99), r.errors + r.non2xx, fmt.mib(r.rss), fmt.us(r.cpuUsPerReq), fmt.us(r.upstreamCpuUsPerReq), otherLoad(r)];
    }))), '');

  if (post.length) {
    out.push(`## POST, 1 MiB body per request (${post[0].connections} connections, ${opts.postRounds} interleaved 1 s samples per engine)`, '');
    out.push('Sent with Content-Length by wrk; the upstream answers the byte count it received; "bad" counts answers that are not exactly 1048576. ' +
      'nginx runs with `proxy_request_buffering off` so it streams too.', '');
    out.push(mdTable(['engine', 'req/s (= MiB/s)', '× nginx', '× direct', 'p50 ms', 'p99 ms', 'bad', 'errors', 'RSS MiB', 'proxy CPU µs/req'],
      post.map((r) => [label(r.engine), fmt.rps(r.rps), fmt.x(r.x_nginx), fmt.x(r.x_direct),
        fmt.ms(r.p50), fmt.ms(r.p99), r.bad, r.errors + r.non2xx, fmt.mib(r.rss), fmt.us(r.cpuUsPerReq)])), '');
  }

  if (checks.length) {
    const pf = (b) => (b ? 'pass' : '**FAIL**');
    const postBad = (id) => {
      const p = post.find((x) => x.engine === id);
      return p ? pf(p.bad === 0 && p.errors + p.non2xx === 0) : '–';
    };
    out.push('## Correctness', '');
    out.push('Request: `Connection: X-Secret`, `X-Secret: 1`, `Keep-Alive: timeout=30`, chunked body (64 KiB + 1 B + 200 000 B). ' +
      'Upstream answers with `Connection: keep-alive, X-Up-Secret` + `X-Up-Secret: 1`. ' +
      'Abort: client closes its socket 300 ms into a request the upstream holds for 3 s.', '');
    out.push(mdTable(['engine', 'hop-by-hop stripped (request)', 'chunked body intact', 'hop-by-hop stripped (response)', 'client abort closes upstream request', '1 MiB POSTs intact', 'notes'],
      checks.map((c) => [label(c.engine), pf(c.reqHop), pf(c.body), pf(c.respHop), pf(c.abort), postBad(c.engine), c.detail || ''])), '');
  }
  out.push(`Total run time: ${R.seconds?.toFixed(0) ?? '?'} s.`);
  return out.join('\n');
}

runIfMain(import.meta.url, run);
