// WebSocket load generator (run pinned to core 1).
//   node ws-load.js echo URL CONNECTIONS SECONDS [HEADER: value]...
//     each connection sends a 64-byte message and waits for its echo, over and over; prints
//     BENCHJSON {messages, seconds, rate, p50, p99 (µs round trip), errors}
//   node ws-load.js idle URL CONNECTIONS [HEADER: value]...
//     opens CONNECTIONS connections (200 handshakes at a time) and keeps them open and silent;
//     prints BENCHJSON {open, failed, seconds} once all are up, then waits for SIGTERM
import { WebSocket } from 'ws';

const [mode, url, connArg, ...rest] = process.argv.slice(2);
const connections = Number(connArg);
const seconds = mode === 'echo' ? Number(rest.shift()) : 0;
const headers = {};
for (const h of rest) {
  const i = h.indexOf(':');
  headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
}
const origin = new URL(url.replace(/^ws/, 'http')).origin;
const open = () => new Promise((resolve) => {
  const ws = new WebSocket(url, { headers, origin: headers.Origin ?? origin, perMessageDeflate: false, handshakeTimeout: 30_000 });
  ws.once('open', () => resolve(ws));
  ws.once('error', () => resolve(undefined));
  ws.once('unexpected-response', (_req, res) => { res.resume(); resolve(undefined); });
});

if (mode === 'echo') {
  const payload = Buffer.alloc(64, 120);
  const socks = (await Promise.all(Array.from({ length: connections }, open))).filter(Boolean);
  const lat = [];
  let messages = 0;
  let errors = connections - socks.length;
  let running = true;
  const t0 = performance.now();
  await Promise.all(socks.map((ws) => new Promise((resolve) => {
    let sent = 0;
    const send = () => { sent = performance.now(); ws.send(payload); };
    ws.on('message', () => {
      messages++;
      if (lat.length < 200_000) lat.push((performance.now() - sent) * 1000);
      if (running) send();
      else { ws.close(); resolve(); }
    });
    ws.on('error', () => { errors++; resolve(); });
    ws.on('close', () => resolve());
    send();
  })).concat(new Promise((r) => setTimeout(() => { running = false; r(); }, seconds * 1000))));
  const took = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)] ?? 0;
  process.stdout.write(`BENCHJSON ${JSON.stringify({ messages, seconds: took, rate: messages / took, p50: pct(50), p99: pct(99), errors })}\n`);
  process.exit(0);
} else if (mode === 'idle') {
  const t0 = performance.now();
  const socks = [];
  let failed = 0;
  for (let i = 0; i < connections; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, connections - i) }, open));
    for (const ws of batch) {
      if (ws) { socks.push(ws); ws.on('error', () => {}); } else failed++;
    }
  }
  process.stdout.write(`BENCHJSON ${JSON.stringify({ open: socks.length, failed, seconds: (performance.now() - t0) / 1000 })}\n`);
  process.on('SIGTERM', () => { for (const ws of socks) ws.terminate(); process.exit(0); });
  setInterval(() => {}, 1 << 30);
} else {
  console.error('usage: node ws-load.js echo URL CONNECTIONS SECONDS [HEADER: value]... | idle URL CONNECTIONS [HEADER: value]...');
  process.exit(2);
}
