// Open-loop load at a fixed rate, for latency at a given throughput (wrk has no rate limit).
//   node bench/lib/paced.js URL RATE SECONDS CONNECTIONS [HEADER: value]...
// Request i is due at start + i/RATE; its latency is measured from that due time, not from when it
// was sent, so a stalled server shows up as latency (no coordinated omission, like wrk2). At most
// CONNECTIONS requests are in flight (undici Pool, keep-alive); a due request waits for a free
// connection and that wait counts. The first second runs at the same rate unrecorded (connections
// opening, the client's JIT warming up: without it the slowest 1 % were the client's own start).
// Prints one line: BENCHJSON {sent, completed, errors, non2xx, seconds, rate, p50, p90, p99, p999,
// max} with latencies in microseconds (of the recorded requests).
import { Pool } from 'undici';

const [url, rateArg, secondsArg, connArg, ...headerArgs] = process.argv.slice(2);
if (!url || !rateArg || !secondsArg) {
  console.error('usage: node bench/lib/paced.js URL RATE SECONDS CONNECTIONS [HEADER: value]...');
  process.exit(2);
}
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const connections = Number(connArg ?? 50);
const u = new URL(url);
const headers = {};
for (const h of headerArgs) {
  const i = h.indexOf(':');
  headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
}
const pool = new Pool(u.origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
const warm = Math.round(rate * Math.min(1, seconds / 2));
const total = Math.round(rate * seconds) + warm;
const lat = new Float64Array(total);
let recorded = 0;
let completed = 0;
let errors = 0;
let non2xx = 0;
let inflight = 0;
let sent = 0;
const queue = []; // [due time, index] of requests waiting for a connection
const start = performance.now() + 50;

function send(due, index) {
  inflight++;
  sent++;
  pool.request({ path: u.pathname + u.search, method: 'GET', headers }).then(
    async (res) => {
      await res.body.dump();
      completed++;
      if (index < warm) return;
      if (res.statusCode < 200 || res.statusCode > 299) non2xx++;
      lat[recorded++] = (performance.now() - due) * 1000;
    },
    () => { errors++; },
  ).finally(() => {
    inflight--;
    if (queue.length > 0) send(...queue.shift());
    else if (sent === total && inflight === 0) finish();
  });
}

let issued = 0;
function tick() {
  const now = performance.now();
  while (issued < total && start + (issued * 1000) / rate <= now) {
    const due = start + (issued * 1000) / rate;
    const index = issued++;
    if (inflight < connections) send(due, index);
    else queue.push([due, index]);
  }
  if (issued < total) setTimeout(tick, Math.max(0, Math.min(1, start + (issued * 1000) / rate - performance.now())));
}

function pct(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function finish() {
  const took = (performance.now() - start) / 1000;
  const s = lat.subarray(0, recorded).sort();
  process.stdout.write(`BENCHJSON ${JSON.stringify({
    sent, completed, recorded, errors, non2xx, seconds: took, rate: completed / took,
    p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), p999: pct(s, 99.9), max: s[s.length - 1] ?? 0,
  })}\n`);
  void pool.close().then(() => process.exit(0));
}

setTimeout(tick, Math.max(0, start - performance.now()));
