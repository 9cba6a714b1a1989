#!/usr/bin/env node
// `npm run bench`: every benchmark section, or only the ones named.
//
//   node bench/run.js                 # every section in turn, then one summary table against the targets
//   node bench/run.js engines         # proxy engine comparison only   (bench/engines.js)
//   node bench/run.js gateway         # Portcullis vs nginx vs direct  (bench/gateway.js; builds first)
//   node bench/run.js audit           # audit sinks: append throughput, latency per request (bench/audit.js)
//   node bench/run.js verify          # audit verify on a sealed 1,000,000-record log; sealing throughput (bench/verify.js)
//   node bench/run.js viewer          # audit viewer live tail at 1,000 records/s; gateway p99 with/without a viewer (bench/viewer.js)
//   node bench/run.js websocket       # WebSocket messages/s vs nginx and direct; RSS with 10,000 idle WebSockets (bench/websocket.js)
//   node bench/run.js postgres        # pgbench: direct vs pgbouncer vs the database gateway (bench/postgres.js)
//   node bench/run.js gateway -- --levels 50 --no-build    # options after -- go to the section(s)
//
// Exit status: 0 when every section ran, 3 when the gateway, audit, verify or viewer section was skipped (build failed or
// the gateway could not serve yet; the reason is printed), 1 on an error.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdirSync, writeFileSync } from 'node:fs';
import { BENCH_DIR, killAll, mdTable } from './lib/common.js';

const SECTIONS = {
  engines: async (args) => (await import('./engines.js')).run(args),
  gateway: async (args) => (await import('./gateway.js')).run(args),
  audit: async (args) => (await import('./audit.js')).run(args),
  verify: async (args) => (await import('./verify.js')).run(args),
  viewer: async (args) => (await import('./viewer.js')).run(args),
  websocket: async (args) => (await import('./websocket.js')).run(args),
  postgres: async (args) => (await import('./postgres.js')).run(args),
};

/** One table of every section's figures against the targets (sections return `summary` rows). */
function summaryTable(results) {
  const rows = [];
  for (const [name, r] of results) {
    if (r?.skipped) rows.push([name, `skipped: ${r.why}`, '', '']);
    for (const s of r?.summary ?? []) rows.push([name, s.figure, s.value, s.target, s.met === undefined ? '–' : s.met ? 'yes' : '**no**']);
  }
  if (rows.length === 0) return '';
  return ['## Summary against the targets', '', mdTable(['section', 'figure', 'measured', 'target', 'met'], rows.map((r) => (r.length === 4 ? [...r, ''] : r))), ''].join('\n');
}

export async function main(argv) {
  const dash = argv.indexOf('--');
  const names = dash === -1 ? argv : argv.slice(0, dash);
  const args = dash === -1 ? [] : argv.slice(dash + 1);
  if (names.includes('-h') || names.includes('--help')) {
    console.log('usage: node bench/run.js [engines] [gateway] [audit] [verify] [viewer] [websocket] [postgres] [-- section options]\n' +
      '  engines: node bench/engines.js --help\n  gateway: node bench/gateway.js --help\n  audit: node bench/audit.js --help\n  verify: node bench/verify.js --help\n  viewer: node bench/viewer.js --help\n  websocket: node bench/websocket.js --help\n  postgres: node bench/postgres.js --help');
    return 0;
  }
  const unknown = names.filter((n) => !(n in SECTIONS));
  if (unknown.length) {
    console.error(`unknown section(s): ${unknown.join(', ')}; known: ${Object.keys(SECTIONS).join(', ')}`);
    return 1;
  }
  let status = 0;
  const results = [];
  for (const name of names.length ? names : Object.keys(SECTIONS)) {
    console.error(`\n[bench] ===== ${name} =====`);
    const r = await SECTIONS[name](args);
    results.push([name, r]);
    if (r?.skipped) status = 3;
  }
  const table = summaryTable(results);
  if (table) {
    console.log(`\n${table}`);
    mkdirSync(path.join(BENCH_DIR, 'results'), { recursive: true });
    const file = path.join(BENCH_DIR, 'results', `summary-${new Date().toISOString().slice(0, 19).replaceAll(':', '')}.md`);
    writeFileSync(file, `${table}\n`);
    console.error(`[bench] summary written to ${path.relative(process.cwd(), file)}`);
  }
  return status;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => { console.error(e); killAll(); process.exit(1); },
  );
}
