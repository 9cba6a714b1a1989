/**
 * `audit verify` with worker threads, end to end: in-process over the file sink (packed reads) and
 * over a sink without packed reads, against the in-thread path; and the built command line
 * (`node bin/portcullis.js`, which loads dist/audit/verify-worker.js) on a log large enough for its
 * default to start a worker. A log is written straight into the file sink's layout (records,
 * checkpoints.txt, witness copies), sealed with the real tree and signed notes.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canonicalBytes, GENESIS_PREV, leafHash } from '../../src/audit/canonical.js';
import { checkpointHash, formatCheckpoint } from '../../src/audit/checkpoint.js';
import { createFileSink } from '../../src/audit/file-sink.js';
import { CompactRange } from '../../src/audit/merkle.js';
import { signerFromPrivateKey, signNote } from '../../src/audit/signed-note.js';
import type { AuditSink } from '../../src/audit/sink.js';
import type { VerifyOptions } from '../../src/audit/verify.js';
import { runAuditVerify } from '../../src/cli/audit-verify.js';
import { captureIo } from '../support/capture-io.js';
import { runCli } from '../support/process.js';

const NAME = 'test.portcullis/audit';
const INSTANCE = 'gw-0';
const ORIGIN = `${NAME}/${INSTANCE}`;
const T0 = Date.parse('2026-11-26T10:00:00.000Z');

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Log {
  config: string;
  publicKey: string;
  segment: string;
  records: number;
}

/** A sealed log of `n` records (checkpoint every `every`) in a fresh file sink, and its config. */
async function sealedLog(n: number, every: number): Promise<Log> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-verify-workers-'));
  dirs.push(dir);
  const logDir = join(dir, 'audit', INSTANCE);
  const witnessDir = join(dir, 'checkpoints', INSTANCE);
  await mkdir(logDir, { recursive: true });
  await mkdir(witnessDir, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const signer = signerFromPrivateKey(NAME, privateKey);
  const lines: Buffer[] = [];
  const notes: string[] = [];
  const range = new CompactRange();
  let prev = GENESIS_PREV;
  let prevHash = GENESIS_PREV;
  for (let seq = 0; seq < n; seq++) {
    const bytes = canonicalBytes({
      v: 1,
      id: `req-${seq}`,
      ts: new Date(T0 + seq * 7).toISOString(),
      kind: 'http',
      route: 'grafana',
      decision: seq % 50 === 0 ? 'deny' : 'allow',
      identity: { user: 'alice', groups: ['eng'] },
      request: { method: 'GET', host: 'grafana.corp', path: `/d/a${seq % 500}` },
      log: ORIGIN,
      seq,
      prev,
    });
    const h = leafHash(bytes);
    prev = h.toString('hex');
    range.append(h);
    lines.push(bytes, Buffer.from('\n'));
    if ((seq + 1) % every === 0 || seq === n - 1) {
      const note = signNote(formatCheckpoint({ origin: ORIGIN, size: range.size, root: range.root(), number: notes.length, prevHash, time: new Date(T0 + seq * 7 + 1).toISOString() }), [signer]);
      prevHash = checkpointHash(note);
      await writeFile(join(witnessDir, `${String(notes.length).padStart(12, '0')}.note`), note);
      notes.push(note);
    }
  }
  const segment = join(logDir, 'records-000000000000.jsonl');
  await writeFile(segment, Buffer.concat(lines));
  await writeFile(join(logDir, 'checkpoints.txt'), notes.map((t) => `checkpoint ${Buffer.byteLength(t)}\n${t}\n`).join(''));
  const config = join(dir, 'portcullis.yaml');
  await writeFile(
    config,
    [
      'server:',
      `  instance_id: ${INSTANCE}`,
      'audit:',
      `  sink: {type: file, dir: "${join(dir, 'audit')}"}`,
      `  spool_dir: "${join(dir, 'spool')}"`,
      `  seal: {origin: ${NAME}, key_file: "${join(dir, 'seal.key')}", witness_dir: "${join(dir, 'checkpoints')}"}`,
      '',
    ].join('\n'),
  );
  const pem = join(dir, 'seal.pub');
  await writeFile(pem, publicKey.export({ format: 'pem', type: 'spki' }));
  return { config, publicKey: pem, segment, records: n };
}

/** Changes one byte of record `seq` ("alice" → "alicE"). */
async function tamper(log: Log, seq: number): Promise<void> {
  const lines = (await readFile(log.segment, 'utf8')).split('\n');
  lines[seq] = (lines[seq] ?? '').replace('"alice"', '"alicE"');
  await writeFile(log.segment, lines.join('\n'));
}

/** A file sink without `readPacked`: records come through `read`, page by page. */
function plainSink(dir: string): AuditSink {
  const sink = createFileSink({ dir });
  return {
    kind: sink.kind,
    append: (log, records) => sink.append(log, records),
    head: (log) => sink.head(log),
    read: (log, from, limit) => sink.read(log, from, limit),
    logs: () => sink.logs(),
    appendCheckpoint: (log, text) => sink.appendCheckpoint(log, text),
    readCheckpoints: (log) => sink.readCheckpoints(log),
    ping: () => sink.ping(),
    close: () => sink.close(),
  };
}

async function verify(log: Log, verifyOptions: VerifyOptions, packed = true) {
  const { io, out } = captureIo({});
  const code = await runAuditVerify(['--config', log.config, '--public-key', log.publicKey], io, {
    progress: false,
    pageSize: 300,
    verify: verifyOptions,
    ...(packed ? {} : { createSink: (c) => plainSink(c.type === 'file' ? c.dir : '') }),
  });
  return { code, ...out };
}

describe('audit verify on worker threads', () => {
  it('gives the in-thread answer, packed or not, intact and tampered', async () => {
    const log = await sealedLog(4000, 500);
    const intact = await verify(log, { workers: 0 });
    expect(intact).toEqual({ code: 0, stdout: 'verified 1 log: 4000/4000 records, 8/8 checkpoints\n', stderr: '' });
    expect(await verify(log, { workers: 1, workersFrom: 0 })).toEqual(intact);
    expect(await verify(log, { workers: 2, workersFrom: 1000 }, false)).toEqual(intact);

    await tamper(log, 1234);
    const tampered = await verify(log, { workers: 0 });
    expect(tampered.code).toBe(3);
    expect(tampered.stdout).toMatch(/^TAMPERED record-modified log=gw-0 seq=1234 id=req-1234: /m);
    expect(tampered.stdout).toMatch(/^TAMPERED root-mismatch log=gw-0 checkpoint=2: /m);
    expect(await verify(log, { workers: 1, workersFrom: 0 })).toEqual(tampered);
    expect(await verify(log, { workers: 2, workersFrom: 1000 }, false)).toEqual(tampered);
  });

  it('runs the built command line (dist worker) on a log past the worker threshold', async () => {
    const log = await sealedLog(26_000, 10_000);
    const args = ['audit', 'verify', '--config', log.config, '--public-key', log.publicKey];
    expect(await runCli(args, 60_000)).toEqual({ code: 0, stdout: 'verified 1 log: 26000/26000 records, 3/3 checkpoints\n', stderr: '' });
    await tamper(log, 24_999);
    const r = await runCli(args, 60_000);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^TAMPERED record-modified log=gw-0 seq=24999 id=req-24999: /m);
    expect(r.stdout).toMatch(/^TAMPERED root-mismatch log=gw-0 checkpoint=2: /m);
  });
});
