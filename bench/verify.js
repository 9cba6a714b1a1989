#!/usr/bin/env node
// Verification and sealing benchmark: what `audit verify` costs on a big log, and what sealing costs
// the writer.
//
//   node bench/verify.js [--records 1000000] [--every 10000] [--runs 3] [--no-tamper]
//                        [--seal-records 100000] [--seal-rounds 2] [--seal-rate 2500] [--seal-paced-seconds 8]
//                        [--no-seal] [--no-build] [--keep DIR] [--out FILE]
//
// 1. `audit verify` on a sealed log of `--records` realistic http records (~420 B canonical), one
//    instance, file sink. The log is generated straight into the file sink's documented layout
//    (src/audit/file-sink.ts: `<dir>/<instance>/records-<12-digit first seq>.jsonl` segments of
//    64 MiB, one canonical record per line; `checkpoints.txt` entries `checkpoint <N>\n<note>\n`) and
//    `witness_dir/<instance>/<12-digit n>.note`, using the real code from dist/: records chained with
//    `canonicalBytes`/`leafHash` (dist/audit/canonical.js), the tree with `CompactRange`
//    (dist/audit/merkle.js), a checkpoint every `--every` records with `formatCheckpoint` +
//    `signNote` (dist/audit/checkpoint.js, signed-note.js) under a key from `generateSealKey`. Then
//    `node bin/portcullis.js audit verify --config <yaml> --public-key <pem>` is timed `--runs`
//    times (wall clock, exit 0 and the exact summary line checked; peak RSS from /proc/<pid>/status
//    VmHWM, CPU time of all its threads from /proc/<pid>/stat, the load average when it started).
//    Unless --no-tamper, one byte of the middle record is then changed and one more run must exit 3
//    naming that record (`record-modified seq=<n>`), timed too. `--keep DIR` keeps the generated
//    log (~400 MiB, ~40 s to generate) for later runs with the same --records/--every.
// 2. Sealing throughput: the real writer (`openAuditLog`) into a file sink at its maximum append
//    rate (500 appends in flight, not durable, as bench/audit.js), alternately with the real sealer
//    (`createSealer`, seal.every 10 s, max_records 1000, the defaults) fed by `onAcked` as in
//    src/app.ts, and with `onAcked` only counting: records/s and CPU µs/record for both, and how far
//    the newest stored checkpoint trails the acknowledged records (sampled every 10 ms). Then one
//    sealing run paced at `--seal-rate` records/s (about what one gateway instance serves) for
//    `--seal-paced-seconds`.
//
// Builds first (`npm run build`) unless --no-build. Prints markdown and writes
// bench/results/verify-<date>.md (+ .json). Exits 3 ("skipped") when the build fails, 1 when
// verification gives a wrong answer (a wrong exit code or summary, or the tampered record not named).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BENCH_DIR, ROOT, fmt, log, mdTable, sleep, skipSection, parseOptions, runIfMain } from './lib/common.js';

const INSTANCE = 'gw-0';
const SEAL_ORIGIN = 'bench.portcullis/audit';
const LOG_ORIGIN = `${SEAL_ORIGIN}/${INSTANCE}`;
const SEGMENT_BYTES = 64 * 1024 * 1024; // the file sink's default
const T0 = Date.UTC(2026, 10, 26, 10);

function parseArgs(argv) {
  const o = parseOptions(argv,
    { records: 1_000_000, every: 10_000, runs: 3, sealRecords: 100_000, sealRounds: 2, sealRate: 2500, sealPacedSeconds: 8, tamper: true, seal: true, build: true, keep: null, out: null },
    'usage: node bench/verify.js [--records 1000000] [--every 10000] [--runs 3] [--no-tamper]\n' +
      '                        [--seal-records 100000] [--seal-rounds 2] [--seal-rate 2500] [--seal-paced-seconds 8]\n' +
      '                        [--no-seal] [--no-build] [--keep DIR] [--out FILE]\n' +
      '  --keep DIR   generate the log into DIR and keep it; a later run with the same DIR, --records and --every reuses it');
  if (!(o.records > 0 && o.every > 0 && o.runs > 0)) throw new Error('--records, --every and --runs must be positive');
  return o;
}

const skip = (why, detail = '') => skipSection('Verify benchmark', why, detail);

const dist = (p) => import(pathToFileURL(path.join(ROOT, 'dist', p)).href);

function machine() {
  let kernel = '';
  try { kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(); } catch { /* */ }
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  return { nproc: cpus().length, cpu: model, node: process.version, kernel, date: new Date().toISOString() };
}
const machineText = (m) => `${m.date.slice(0, 10)} · ${m.nproc} cores, ${m.cpu} · Linux ${m.kernel} · Node ${m.node}`;

/** A realistic http record body (SPEC §4 shape; ~400 B canonical once log, seq and prev are added). */
function body(i) {
  return {
    v: 1,
    id: `01JD${String(i).padStart(22, '0')}`,
    ts: new Date(T0 + i * 7).toISOString(),
    kind: 'http',
    route: 'grafana',
    decision: i % 50 === 0 ? 'deny' : 'allow',
    identity: { user: 'alice', groups: ['eng'], auth: 'cookie' },
    request: { method: i % 10 === 0 ? 'POST' : 'GET', host: 'grafana.corp', path: `/d/a${i % 5000}` },
    response: { status: i % 50 === 0 ? 403 : 200, bytes_out: 18_000 + (i % 4096) },
  };
}

// ---- part 1: generate a sealed log, verify it ------------------------------------------------------

function configYaml(dir) {
  return `# generated by bench/verify.js
server:
  instance_id: ${INSTANCE}
audit:
  sink: {type: file, dir: "${dir}/audit"}
  spool_dir: "${dir}/spool"
  seal:
    key_file: "${dir}/seal.key"
    origin: ${SEAL_ORIGIN}
    witness_dir: "${dir}/checkpoints"
`;
}

/** Writes the sealed log; returns what it wrote (and where the middle record's line is). */
async function generate(dir, n, every) {
  const { canonicalBytes, GENESIS_PREV, leafHash } = await dist('audit/canonical.js');
  const { CompactRange } = await dist('audit/merkle.js');
  const { checkpointHash, formatCheckpoint } = await dist('audit/checkpoint.js');
  const { signerFromPrivateKey, signNote } = await dist('audit/signed-note.js');
  const { generateSealKey, writeSealKey } = await dist('audit/seal-key.js');

  const logDir = path.join(dir, 'audit', INSTANCE);
  const witnessDir = path.join(dir, 'checkpoints', INSTANCE);
  mkdirSync(logDir, { recursive: true, mode: 0o700 });
  mkdirSync(witnessDir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateSealKey();
  await writeSealKey(path.join(dir, 'seal.key'), privateKey);
  writeFileSync(path.join(dir, 'seal.pub'), publicKey.export({ format: 'pem', type: 'spki' }));
  writeFileSync(path.join(dir, 'portcullis.yaml'), configYaml(dir));
  const signer = signerFromPrivateKey(SEAL_ORIGIN, privateKey);

  const t0 = performance.now();
  const range = new CompactRange();
  const target = Math.floor(n / 2);
  let targetAt;
  let prev = GENESIS_PREV;
  let fd;
  let segment = '';
  let segmentSize = SEGMENT_BYTES; // start a segment at once
  const chunks = [];
  let chunked = 0;
  const flush = () => {
    if (chunked > 0) writeSync(fd, Buffer.concat(chunks, chunked));
    chunks.length = 0;
    chunked = 0;
  };
  const notes = [];
  let prevHash = GENESIS_PREV;
  let bytes = 0;
  const lf = Buffer.from('\n');
  for (let seq = 0; seq < n; seq++) {
    if (segmentSize >= SEGMENT_BYTES) {
      if (fd !== undefined) {
        flush();
        closeSync(fd);
      }
      segment = path.join(logDir, `records-${String(seq).padStart(12, '0')}.jsonl`);
      fd = openSync(segment, 'w', 0o600);
      segmentSize = 0;
    }
    const rec = canonicalBytes({ ...body(seq), log: LOG_ORIGIN, seq, prev });
    const h = leafHash(rec);
    prev = h.toString('hex');
    range.append(h);
    if (seq === target) targetAt = { file: segment, offset: segmentSize, length: rec.length };
    chunks.push(rec, lf);
    chunked += rec.length + 1;
    segmentSize += rec.length + 1;
    bytes += rec.length;
    if (chunked >= 4 * 1024 * 1024) flush();
    if ((seq + 1) % every === 0 || seq === n - 1) {
      const text = formatCheckpoint({
        origin: LOG_ORIGIN, size: range.size, root: range.root(), number: notes.length, prevHash,
        time: new Date(T0 + seq * 7 + 1).toISOString(),
      });
      const note = signNote(text, [signer]);
      prevHash = checkpointHash(note);
      writeFileSync(path.join(witnessDir, `${String(notes.length).padStart(12, '0')}.note`), note, { mode: 0o600 });
      notes.push(note);
    }
  }
  flush();
  closeSync(fd);
  writeFileSync(path.join(logDir, 'checkpoints.txt'), notes.map((t) => `checkpoint ${Buffer.byteLength(t)}\n${t}\n`).join(''), { mode: 0o600 });
  const facts = { records: n, every, checkpoints: notes.length, avgBytes: bytes / n, totalBytes: bytes + n, target, targetAt, seconds: (performance.now() - t0) / 1000 };
  writeFileSync(path.join(dir, 'facts.json'), JSON.stringify(facts, null, 2));
  return facts;
}

const TICKS_PER_SECOND = 100; // USER_HZ, the unit of utime/stime in /proc/<pid>/stat

/**
 * Runs the command, timing it and sampling its peak RSS (VmHWM) and CPU time (utime + stime of all
 * its threads, from /proc/<pid>/stat every 50 ms: the last < 50 ms are missed), with the 1-minute
 * load average of the machine when it started (other work on the VM slows the run).
 */
function timeCli(args) {
  return new Promise((resolve) => {
    const load = loadavg()[0];
    const t0 = performance.now();
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/portcullis.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    let hwmKiB = 0;
    let ticks = 0;
    const sample = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) hwmKiB = Math.max(hwmKiB, Number(m[1]));
        const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks = Math.max(ticks, Number(f[11]) + Number(f[12]));
      } catch { /* exited */ }
    }, 50);
    child.on('close', (code) => {
      clearInterval(sample);
      resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000, peakRssMiB: hwmKiB / 1024, cpuSeconds: ticks / TICKS_PER_SECOND, load });
    });
  });
}

function changeByte(at, from, to) {
  const fd = openSync(at.file, 'r+');
  try {
    const line = Buffer.alloc(at.length);
    readSync(fd, line, 0, at.length, at.offset);
    const i = line.indexOf(from);
    if (i < 0) throw new Error(`"${from}" not in the target record`);
    writeSync(fd, Buffer.from(to), 0, to.length, at.offset + i);
  } finally {
    closeSync(fd);
  }
}

async function verifyBench(opts, dir) {
  const factsFile = path.join(dir, 'facts.json');
  let facts;
  if (existsSync(factsFile)) {
    const old = JSON.parse(readFileSync(factsFile, 'utf8'));
    if (old.records === opts.records && old.every === opts.every) facts = { ...old, reused: true };
    else throw new Error(`${dir} holds a log of ${old.records} records / every ${old.every}; use another --keep DIR`);
    log(`reusing the log in ${dir} (${fmt.rps(facts.records)} records)`);
  } else {
    log(`generating ${fmt.rps(opts.records)} records, a checkpoint every ${fmt.rps(opts.every)}, into ${dir} …`);
    facts = await generate(dir, opts.records, opts.every);
    log(`generated in ${facts.seconds.toFixed(1)} s: ${(facts.totalBytes / 2 ** 20).toFixed(0)} MiB, ${facts.avgBytes.toFixed(0)} B/record, ${facts.checkpoints} checkpoints`);
  }
  const args = ['audit', 'verify', '--config', path.join(dir, 'portcullis.yaml'), '--public-key', path.join(dir, 'seal.pub')];
  const expected = `verified 1 log: ${facts.records}/${facts.records} records, ${facts.checkpoints}/${facts.checkpoints} checkpoints\n`;
  const runs = [];
  for (let i = 0; i < opts.runs; i++) {
    const r = await timeCli(args);
    const ok = r.code === 0 && r.stdout === expected && r.stderr === '';
    log(`verify run ${i + 1}: ${r.seconds.toFixed(2)} s, CPU ${r.cpuSeconds.toFixed(1)} s, peak RSS ${r.peakRssMiB.toFixed(0)} MiB, load ${r.load.toFixed(1)}, exit ${r.code}${ok ? '' : ` — WRONG ANSWER:\n${r.stdout}${r.stderr}`}`);
    runs.push({ seconds: r.seconds, cpuSeconds: r.cpuSeconds, load: r.load, peakRssMiB: r.peakRssMiB, code: r.code, ok });
  }
  let tampered;
  if (opts.tamper) {
    changeByte(facts.targetAt, '"alice"', '"alicE"');
    try {
      const r = await timeCli(args);
      const ok = r.code === 3 && new RegExp(`^TAMPERED record-modified log=${INSTANCE} seq=${facts.target} `, 'm').test(r.stdout);
      log(`tampered run (record ${facts.target} altered): ${r.seconds.toFixed(2)} s, exit ${r.code}${ok ? '' : ` — WRONG ANSWER:\n${r.stdout}${r.stderr}`}`);
      tampered = { seconds: r.seconds, cpuSeconds: r.cpuSeconds, load: r.load, peakRssMiB: r.peakRssMiB, code: r.code, ok, findings: r.stdout.split('\n').filter((l) => l.startsWith('TAMPERED')).map((l) => l.slice(0, 160)) };
    } finally {
      changeByte(facts.targetAt, '"alicE"', '"alice"');
    }
  }
  return { facts, runs, tampered };
}

// ---- part 2: sealing throughput --------------------------------------------------------------------

/** One writer run: `n` records, as fast as possible or paced at `rate` records/s; `mode` = sealing | count. */
async function sealingRun(mode, n, tmp, rate = 0) {
  const { openAuditLog } = await dist('audit/audit-log.js');
  const { createAuditSink } = await dist('audit/create-sink.js');
  const { createSealer } = await dist('audit/sealer.js');
  const { openNote, signerFromPrivateKey } = await dist('audit/signed-note.js');
  const { parseCheckpoint } = await dist('audit/checkpoint.js');
  const { generateSealKey } = await dist('audit/seal-key.js');
  const { pino } = await import('pino');
  const logger = pino({ level: 'warn' });
  const dir = mkdtempSync(path.join(tmp, `seal-${mode}-`));
  const instance = `seal-${mode}`;
  const sink = createAuditSink({ type: 'file', dir: path.join(dir, 'audit') });
  let sealedSize = 0;
  let checkpoints = 0;
  const storeMs = []; // how long each sink.appendCheckpoint took
  // The sink as the sealer sees it, noting the size of every checkpoint it stores.
  const watched = {
    ...sink,
    async appendCheckpoint(name, note) {
      const ts = performance.now();
      await sink.appendCheckpoint(name, note);
      storeMs.push(performance.now() - ts);
      const opened = openNote(note, []);
      const cp = 'error' in opened ? opened : parseCheckpoint(opened.text);
      if ('error' in cp) throw new Error(cp.error);
      sealedSize = cp.size;
      checkpoints += 1;
    },
  };
  let counted = 0;
  const sealer = mode === 'sealing'
    ? createSealer({
      sink: watched, instance, origin: `${SEAL_ORIGIN}/${instance}`, signers: [signerFromPrivateKey(SEAL_ORIGIN, generateSealKey().privateKey)],
      everyMs: 10_000, maxRecords: 1000, witnessDir: path.join(dir, 'checkpoints'), logger,
    })
    : undefined;
  const auditLog = await openAuditLog({
    sink: watched, instance, origin: `${SEAL_ORIGIN}/${instance}`, spoolDir: path.join(dir, 'spool'), onFailure: 'spool', logger,
    onAcked: sealer ? (records) => sealer.acknowledged(records) : (records) => { counted += records.length; },
  });
  sealer?.start();
  const lags = [];
  const sampler = setInterval(() => {
    const acked = auditLog.stats().acked + 1;
    if (acked > 0) lags.push(acked - sealedSize);
  }, 10);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const CHUNK = rate > 0 ? Math.max(1, Math.round(rate / 100)) : 500; // paced: 100 bursts a second
  for (let i = 0; i < n; i += CHUNK) {
    await Promise.all(Array.from({ length: Math.min(CHUNK, n - i) }, (_, j) => auditLog.append(body(i + j), false)));
    if (rate > 0) {
      const due = t0 + ((i + CHUNK) / rate) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
    }
  }
  const all = await auditLog.flush(120_000);
  const t1 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  clearInterval(sampler);
  const lagAtFlush = n - sealedSize;
  let sealedAt;
  if (sealer) {
    // Let the sealer catch up with what was acknowledged last (it seals at max_records, else at seal.every).
    const tq = performance.now();
    await sealer.sealNow();
    sealedAt = performance.now() - tq;
  }
  await auditLog.close();
  await sealer?.close();
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
  if (!all) throw new Error(`${mode}: the writer did not flush`);
  if (sealer && sealedSize !== n) throw new Error(`${mode}: the newest checkpoint seals ${sealedSize} of ${n} records`);
  if (!sealer && counted !== n) throw new Error(`${mode}: ${counted} of ${n} records acknowledged`);
  lags.sort((a, b) => a - b);
  const row = {
    mode, rate, records: n, seconds: (t1 - t0) / 1000, perSec: n / ((t1 - t0) / 1000), cpuUsPerRecord: (cpu.user + cpu.system) / n,
    checkpoints: sealer ? checkpoints : undefined,
    lagP50: sealer ? lags[Math.floor(lags.length / 2)] : undefined,
    lagMax: sealer ? lags.at(-1) : undefined,
    lagAtFlush: sealer ? lagAtFlush : undefined,
    finalSealMs: sealedAt,
    checkpointStoreMsP50: sealer ? median(storeMs) : undefined,
    checkpointStoreMsMax: sealer ? Math.max(...storeMs) : undefined,
  };
  log(`${mode.padEnd(8)}${rate > 0 ? ` paced at ${fmt.rps(rate)}/s` : ''} ${fmt.rps(row.perSec)} records/s, ${row.cpuUsPerRecord.toFixed(1)} µs CPU/record` +
    (sealer ? `, ${checkpoints} checkpoints, newest checkpoint trails by ${row.lagP50} records (median), ${row.lagMax} (max), ${lagAtFlush} at flush; ` +
      `sink.appendCheckpoint ${row.checkpointStoreMsP50.toFixed(1)} ms median, ${row.checkpointStoreMsMax.toFixed(0)} ms max; final sealNow ${sealedAt.toFixed(0)} ms` : ''));
  return row;
}

async function sealingBench(opts, tmp) {
  const rows = [];
  // Warm-up (JIT, file system), then the modes alternately at the maximum rate, then paced.
  await sealingRun('count', Math.min(20_000, opts.sealRecords), tmp);
  for (let r = 0; r < opts.sealRounds; r++) {
    for (const mode of r % 2 === 0 ? ['count', 'sealing'] : ['sealing', 'count']) rows.push({ round: r + 1, ...(await sealingRun(mode, opts.sealRecords, tmp)) });
  }
  if (opts.sealRate > 0 && opts.sealPacedSeconds > 0) {
    rows.push({ round: 'paced', ...(await sealingRun('sealing', Math.round(opts.sealRate * opts.sealPacedSeconds), tmp, opts.sealRate)) });
  }
  return rows;
}

// ---- report ------------------------------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? undefined : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The issue's targets for this section, each with the figure measured in this run. */
export function summary(R) {
  const rows = [];
  const { facts, runs, tampered } = R.verify;
  const med = median(runs.map((r) => r.seconds));
  rows.push({ figure: `\`audit verify\` of ${fmt.rps(facts.records)} records (median of ${runs.length}${tampered ? '; tampered run names the record' : ''})`, value: `${med.toFixed(2)} s`, target: '≤ 10 s', met: med <= 10 && runs.every((r) => r.ok) && (tampered?.ok ?? true) });
  const max = (R.sealing ?? []).filter((s) => s.round !== 'paced');
  if (max.length > 0) {
    const by = (mode) => median(max.filter((s) => s.mode === mode).map((s) => s.perSec));
    const sealed = max.filter((s) => s.mode === 'sealing');
    rows.push({
      figure: 'checkpoint cost: writer throughput with sealing ÷ without; checkpoint store p50',
      value: `${fmt.x(by('sealing') / by('count'))}; ${median(sealed.map((s) => s.checkpointStoreMsP50)).toFixed(1)} ms`, target: 'measure', met: undefined,
    });
  }
  return rows;
}

export function report(R) {
  const out = [];
  const { facts, runs, tampered } = R.verify;
  out.push(`# Verify benchmark (${R.machine.date.slice(0, 10)})`, '');
  out.push(`Machine: ${machineText(R.machine)}.`, '');
  out.push(`## audit verify, ${fmt.rps(facts.records)} records`, '');
  out.push(`One instance's log in the file sink: ${fmt.rps(facts.records)} records (${facts.avgBytes.toFixed(0)} B canonical on average, ` +
    `${(facts.totalBytes / 2 ** 20).toFixed(0)} MiB in ${Math.ceil(facts.totalBytes / SEGMENT_BYTES)} segments), ${facts.checkpoints} checkpoints (one every ${fmt.rps(facts.every)}), ` +
    `each also in witness_dir${facts.reused ? '' : `; generated in ${facts.seconds.toFixed(1)} s`}. ` +
    '`node bin/portcullis.js audit verify --config <yaml> --public-key <pem>`, wall clock including Node start-up.', '');
  const row = (name, r) => [name, r.seconds.toFixed(2), r.cpuSeconds.toFixed(1), fmt.rps(facts.records / r.seconds), r.peakRssMiB.toFixed(0), r.load.toFixed(1), String(r.code), r.ok ? 'yes' : '**NO**'];
  const rows = runs.map((r, i) => row(`intact, run ${i + 1}`, r));
  if (tampered) rows.push(row(`record ${fmt.rps(facts.target)} altered (one byte)`, tampered));
  out.push(mdTable(['run', 'seconds', 'CPU s', 'records/s', 'peak RSS MiB', 'load avg', 'exit', 'right answer'], rows), '');
  out.push('CPU s: user + system time of the process, all threads (the verifier runs a worker thread next to the main one); load avg: the machine\'s 1-minute load average when the run started.', '');
  out.push(`Median of the intact runs: **${median(runs.map((r) => r.seconds)).toFixed(2)} s** (target < 10 s).`, '');
  if (tampered) out.push('Findings of the tampered run:', '', '```', ...tampered.findings, '```', '');
  if (R.sealing?.length) {
    out.push(`## Sealing throughput (file sink, ${fmt.rps(R.opts.sealRecords)} records per run at the maximum rate)`, '');
    out.push('`openAuditLog` into a file sink, `append(body, durable=false)` with 500 in flight (or paced), timed until `flush()`; `onAcked` feeds the real sealer ' +
      '(`createSealer`, seal.every 10 s, max_records 1000, Ed25519, witness_dir) or only counts. "trails by" = acknowledged records not yet covered by a stored ' +
      'checkpoint, sampled every 10 ms; "store ms" = one `sink.appendCheckpoint` (append + fdatasync of checkpoints.txt); "catch-up" = `sealNow()` right after `flush()`.', '');
    out.push(mdTable(['run', 'onAcked', 'records/s', 'CPU µs/record', 'checkpoints', 'trails by, median', 'trails by, max', 'trails by, at flush', 'store ms p50 / max', 'catch-up ms'],
      R.sealing.map((s) => [s.round === 'paced' ? `paced ${fmt.rps(s.rate)}/s` : `round ${s.round}`, s.mode === 'sealing' ? 'sealer' : 'count only', fmt.rps(s.perSec), s.cpuUsPerRecord.toFixed(1),
        s.checkpoints === undefined ? '–' : String(s.checkpoints), s.lagP50 === undefined ? '–' : fmt.rps(s.lagP50), s.lagMax === undefined ? '–' : fmt.rps(s.lagMax),
        s.lagAtFlush === undefined ? '–' : fmt.rps(s.lagAtFlush),
        s.checkpointStoreMsP50 === undefined ? '–' : `${s.checkpointStoreMsP50.toFixed(1)} / ${s.checkpointStoreMsMax.toFixed(0)}`,
        s.finalSealMs === undefined ? '–' : s.finalSealMs.toFixed(0)])), '');
    const max = R.sealing.filter((s) => s.round !== 'paced');
    const by = (m) => median(max.filter((s) => s.mode === m).map((s) => s.perSec));
    out.push(`Sealing on ÷ off at the maximum rate (median records/s): **${fmt.x(by('sealing') / by('count'))}**.`, '');
  }
  out.push(`Total run time: ${R.seconds.toFixed(0)} s.`);
  return out.join('\n');
}

export async function run(argv = []) {
  const opts = parseArgs(argv);
  const t0 = Date.now();
  const m = machine();
  log(machineText(m));
  if (opts.build) {
    log('npm run build …');
    const b = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
    if (b.status !== 0) return skip('`npm run build` failed', `${b.stdout}\n${b.stderr}`);
  }
  for (const f of ['audit/canonical.js', 'audit/sealer.js', 'cli/audit-verify.js']) {
    if (!existsSync(path.join(ROOT, 'dist', f))) return skip(`dist/${f} is missing after the build`);
  }
  const tmp = mkdtempSync(path.join(tmpdir(), 'portcullis-bench-verify-'));
  const dir = opts.keep ? path.resolve(opts.keep) : path.join(tmp, 'log');
  mkdirSync(dir, { recursive: true });
  try {
    const verify = await verifyBench(opts, dir);
    await sleep(100);
    const sealing = opts.seal ? await sealingBench(opts, tmp) : [];
    const results = { machine: m, opts, verify, sealing, seconds: (Date.now() - t0) / 1000 };
    results.summary = summary(results);
    const md = report(results);
    console.log(md);
    const out = opts.out ?? path.join(BENCH_DIR, 'results', `verify-${m.date.slice(0, 19).replaceAll(':', '')}.md`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, md + '\n');
    writeFileSync(out.replace(/\.md$/, '') + '.json', JSON.stringify(results, null, 2) + '\n');
    log(`written ${path.relative(process.cwd(), out)}`);
    if (verify.runs.some((r) => !r.ok) || (verify.tampered && !verify.tampered.ok)) {
      throw new Error('audit verify gave a wrong answer (see the runs above)');
    }
    return results;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

runIfMain(import.meta.url, run);
