// Interleaved wrk measurement of several targets at one connection level.
import { runWrk, cpuSeconds, coreBusySeconds, rssMiB, sleep, fmt, log } from './common.js';

export function median(xs) {
  const a = [...xs].sort((x, y) => x - y);
  if (!a.length) return undefined;
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
}

/**
 * targets: [{id, pid, port, path?, headers?}] — every target stays up (idle when not measured). A warm-up per
 * target, then `rounds` samples of `seconds` per target, interleaved round-robin (rotating the
 * start) so drift and noise from anything else on the machine spread over all targets alike.
 * Each row: median req/s, p50, p99 (ms), min/max req/s, paired ratios vs `refs` (per round
 * target ÷ ref from the same round, median over rounds), RSS after, CPU µs/request of the target
 * process tree and of the upstream, and "other load": the share of core 0 (servers) and core 1
 * (wrk) taken by processes that are not part of the benchmark.
 */
export async function measureLevel(tools, targets, {
  connections, rounds, seconds, warmup = 1, path = '/', script, headers = [], upstreamPid, refs = ['nginx', 'direct'], tag = '',
}) {
  const samples = new Map(targets.map((t) => [t.id, []]));
  const acc = new Map(targets.map((t) => [t.id, { cpu: 0, up: 0, requests: 0, f0: 0, f1: 0, wall: 0 }]));
  const url = (t) => `http://127.0.0.1:${t.port}${t.path ?? path}`;
  const hdrs = (t) => [...headers, ...(t.headers ?? [])];
  if (warmup > 0) for (const t of targets) await runWrk(tools, url(t), { connections, seconds: warmup, script, headers: hdrs(t) });
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + round) % targets.length];
      const a = acc.get(t.id);
      const c0 = cpuSeconds(t.pid);
      const u0 = upstreamPid && upstreamPid !== t.pid ? cpuSeconds(upstreamPid) : 0;
      const b0 = coreBusySeconds(0);
      const b1 = coreBusySeconds(1);
      const w0 = performance.now();
      const r = await runWrk(tools, url(t), { connections, seconds, script, headers: hdrs(t) });
      const wall = (performance.now() - w0) / 1000;
      const dc = cpuSeconds(t.pid) - c0;
      const du = upstreamPid && upstreamPid !== t.pid ? cpuSeconds(upstreamPid) - u0 : 0;
      a.cpu += dc;
      a.up += du;
      a.requests += r.requests;
      a.wall += wall;
      if (tools.taskset) {
        a.f0 += Math.max(0, coreBusySeconds(0) - b0 - dc - du);
        if (r.wrkCpu !== undefined) a.f1 += Math.max(0, coreBusySeconds(1) - b1 - r.wrkCpu);
      }
      samples.get(t.id).push(r);
      await sleep(100);
    }
  }
  const paired = (id, ref) => {
    const x = samples.get(id);
    const y = samples.get(ref);
    return x && y ? median(x.map((s, i) => s.rps / y[i].rps)) : undefined;
  };
  return targets.map((t) => {
    const ss = samples.get(t.id);
    const a = acc.get(t.id);
    const med = (k) => median(ss.map((x) => x[k]));
    const row = {
      engine: t.id, connections, rps: med('rps'),
      rpsMin: Math.min(...ss.map((x) => x.rps)), rpsMax: Math.max(...ss.map((x) => x.rps)),
      p50: med('p50'), p99: med('p99'),
      errors: ss.reduce((n, x) => n + x.errors, 0), non2xx: ss.reduce((n, x) => n + x.non2xx, 0),
      bad: ss.reduce((n, x) => n + x.bad, 0),
      rss: rssMiB(t.pid),
      cpuUsPerReq: (a.cpu / a.requests) * 1e6,
      upstreamCpuUsPerReq: upstreamPid && upstreamPid !== t.pid ? (a.up / a.requests) * 1e6 : undefined,
      otherLoad0: tools.taskset ? (a.f0 / a.wall) * 100 : undefined,
      otherLoad1: tools.taskset ? (a.f1 / a.wall) * 100 : undefined,
      samples: ss.map((x) => Math.round(x.rps)),
    };
    for (const ref of refs) row[`x_${ref}`] = paired(t.id, ref);
    log(`${(tag + t.id).padEnd(24)} c=${String(connections).padStart(3)} ${fmt.rps(row.rps).padStart(7)} req/s ` +
      `[${fmt.rps(row.rpsMin)}–${fmt.rps(row.rpsMax)}]  p50 ${fmt.ms(row.p50)} ms  p99 ${fmt.ms(row.p99)} ms  ` +
      `rss ${fmt.mib(row.rss)} MiB  cpu ${fmt.us(row.cpuUsPerReq)} µs/req  other load ${otherLoad(row)}` +
      `${row.errors + row.non2xx + row.bad ? `  errors ${row.errors} non2xx ${row.non2xx} bad ${row.bad}` : ''}`);
    return row;
  });
}

export const otherLoad = (r) => (r.otherLoad0 === undefined ? '–' : `${r.otherLoad0.toFixed(0)}% / ${(r.otherLoad1 ?? 0).toFixed(0)}%`);
