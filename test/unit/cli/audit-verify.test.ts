/**
 * `audit verify`, `audit export` and `audit prove`, run in-process against a file sink written by the
 * real writer and sealer (openAuditLog + createSealer), in a temp dir per test.
 */
import { createPublicKey } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { openAuditLog } from '../../../src/audit/audit-log.js';
import { leafHash } from '../../../src/audit/canonical.js';
import { parseTlogProof } from '../../../src/audit/export-format.js';
import { createFileSink } from '../../../src/audit/file-sink.js';
import { inclusionProof, rootOf } from '../../../src/audit/merkle.js';
import { loadOrCreateSealKey } from '../../../src/audit/seal-key.js';
import { createSealer } from '../../../src/audit/sealer.js';
import { signerFromPrivateKey, vkeyOf } from '../../../src/audit/signed-note.js';
import type { AuditSink } from '../../../src/audit/sink.js';
import { runAuditExport } from '../../../src/cli/audit-export.js';
import { inclusionRanges, runAuditProve } from '../../../src/cli/audit-prove.js';
import { runAuditVerify } from '../../../src/cli/audit-verify.js';
import { main } from '../../../src/main.js';
import { captureIo } from '../../support/capture-io.js';

const NAME = 'test.portcullis/audit';
const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const logger = pino({ level: 'silent' });

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Fixture {
  dir: string;
  config: string;
  keyFile: string;
  sinkDir: string;
  witnessDir: string;
}

/** A config over a fresh file sink, with logs written by the real writer and sealer. */
async function fixture(logs: Record<string, { records: number; sealEvery: number }>): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-audit-verify-'));
  tempDirs.push(dir);
  const f: Fixture = { dir, config: join(dir, 'portcullis.yaml'), keyFile: join(dir, 'seal.key'), sinkDir: join(dir, 'audit'), witnessDir: join(dir, 'checkpoints') };
  await writeFile(
    f.config,
    [
      'audit:',
      `  sink: {type: file, dir: "${f.sinkDir}"}`,
      `  spool_dir: "${join(dir, 'spool')}"`,
      `  seal: {origin: ${NAME}, key_file: "${f.keyFile}", witness_dir: "${f.witnessDir}"}`,
      'routes:',
      '  - {id: app, host: app.localhost, upstream: "http://127.0.0.1:3000", public: true}',
      '',
    ].join('\n'),
  );
  const key = await loadOrCreateSealKey(f.keyFile);
  for (const [instance, spec] of Object.entries(logs)) {
    const sink = createFileSink({ dir: f.sinkDir });
    const origin = `${NAME}/${instance}`;
    const sealer = createSealer({
      sink,
      instance,
      origin,
      signers: [signerFromPrivateKey(NAME, key.privateKey)],
      everyMs: 3_600_000,
      maxRecords: 1_000_000,
      heartbeatMs: 3_600_000,
      witnessDir: f.witnessDir,
      logger,
    });
    const log = await openAuditLog({ sink, instance, origin, spoolDir: join(dir, 'spool'), onFailure: 'spool', logger, onAcked: (r) => sealer.acknowledged(r) });
    for (let i = 0; i < spec.records; i++) {
      await log.append({ v: 1, id: `${instance}-${i}`, ts: new Date(T0 + i * 1000).toISOString(), kind: 'http', route: 'app', decision: 'allow' }, false);
      if ((i + 1) % spec.sealEvery === 0) {
        expect(await log.flush()).toBe(true);
        await sealer.sealNow();
      }
    }
    expect(await log.flush()).toBe(true);
    await sealer.close();
    await log.close();
    await sink.close();
  }
  return f;
}

async function run(fn: typeof runAuditVerify, args: string[]) {
  const { io, out } = captureIo({});
  const code = await fn(args, io, { progress: false });
  return { code, ...out };
}

const verify = (args: string[]) => run(runAuditVerify, args);

async function recordsFile(f: Fixture, instance: string): Promise<string> {
  const files = (await readdir(join(f.sinkDir, instance))).filter((n) => n.startsWith('records-')).sort();
  return join(f.sinkDir, instance, files[0] ?? 'none');
}

/** Rewrites line `index` of a file. */
async function editLine(file: string, index: number, edit: (line: string) => string): Promise<void> {
  const lines = (await readFile(file, 'utf8')).split('\n');
  lines[index] = edit(lines[index] ?? '');
  await writeFile(file, lines.join('\n'));
}

describe('audit verify (sink)', () => {
  it('verifies intact logs: exit 0 and the summary line', async () => {
    const f = await fixture({ 'gw-a': { records: 25, sealEvery: 10 }, 'gw-b': { records: 7, sealEvery: 3 } });
    const r = await verify(['--config', f.config]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // gw-a: checkpoints at 10, 20, 25 (close); gw-b: at 3, 6, 7.
    expect(r.stdout).toBe('verified 2 logs: 32/32 records, 6/6 checkpoints\n');
  });

  it('prints findings and a summary as JSON lines with --json', async () => {
    const f = await fixture({ 'gw-a': { records: 5, sealEvery: 100 } });
    const file = await recordsFile(f, 'gw-a');
    await editLine(file, 2, (l) => l.replace('"route":"app"', '"route":"pwned"'));
    const r = await verify(['--config', f.config, '--json']);
    expect(r.code).toBe(3);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toContainEqual(expect.objectContaining({ type: 'finding', code: 'record-modified', severity: 'tampered', log: 'gw-a', seq: 2, id: 'gw-a-2' }));
    expect(lines.at(-1)).toMatchObject({ type: 'summary', result: 'tampered', logs: 1, records: 5, sealed_records: 5, checkpoints: 1, valid_checkpoints: 1 });
  });

  it('exits 3 naming the modified record, then the summary', async () => {
    const f = await fixture({ 'gw-a': { records: 12, sealEvery: 4 } });
    await editLine(await recordsFile(f, 'gw-a'), 5, (l) => l.replace('"decision":"allow"', '"decision":"deny"'));
    const r = await verify(['--config', f.config]);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^TAMPERED record-modified log=gw-a seq=5 id=gw-a-5: /m);
    expect(r.stdout).toMatch(/^TAMPERED root-mismatch log=gw-a checkpoint=1: /m);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('verified 1 log: 12/12 records, 4/4 checkpoints');
  });

  it('finds a truncated log whose checkpoints were cut too, from the witness copies', async () => {
    const f = await fixture({ 'gw-a': { records: 12, sealEvery: 4 } });
    const file = await recordsFile(f, 'gw-a');
    const lines = (await readFile(file, 'utf8')).split('\n');
    await writeFile(file, `${lines.slice(0, 6).join('\n')}\n`);
    // Keep only the first checkpoint in the sink (the file sink's entry format: "checkpoint <len>\n<text>\n").
    const cpFile = join(f.sinkDir, 'gw-a', 'checkpoints.txt');
    const text = await readFile(cpFile, 'utf8');
    const first = /^checkpoint (\d+)\n/.exec(text);
    const len = Number(first?.[1]);
    await writeFile(cpFile, Buffer.from(text).subarray(0, (first?.[0].length ?? 0) + len + 1));
    const r = await verify(['--config', f.config]);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^TAMPERED checkpoint-rolled-back log=gw-a checkpoint=3: /m);
    expect(r.stdout).toMatch(/^TAMPERED log-truncated log=gw-a seq=6: /m);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('verified 1 log: 4/6 records, 1/1 checkpoints');
  });

  it('takes --public-key as a PEM public key or a verifier key line; an unknown key is tampering', async () => {
    const f = await fixture({ 'gw-a': { records: 3, sealEvery: 100 } });
    const key = await loadOrCreateSealKey(f.keyFile, { create: false });
    const pem = join(f.dir, 'seal.pub');
    await writeFile(pem, createPublicKey(key.privateKey).export({ format: 'pem', type: 'spki' }).toString());
    const vkey = join(f.dir, 'seal.vkey');
    await writeFile(vkey, `${vkeyOf(NAME, key.publicKey)}\n`);
    expect((await verify(['--config', f.config, '--public-key', pem])).code).toBe(0);
    expect((await verify(['--config', f.config, '--public-key', vkey])).code).toBe(0);
    const other = join(f.dir, 'other.key');
    await loadOrCreateSealKey(other);
    const r = await verify(['--config', f.config, '--public-key', other]);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^TAMPERED checkpoint-unknown-key log=gw-a checkpoint=0: /m);
  });

  it('exits 1 when the inputs cannot be read', async () => {
    const f = await fixture({ 'gw-a': { records: 2, sealEvery: 100 } });
    expect((await verify(['--config', join(f.dir, 'missing.yaml')])).code).toBe(1);
    const bad = join(f.dir, 'bad.pub');
    await writeFile(bad, 'not a key\n');
    const r = await verify(['--config', f.config, '--public-key', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.pub/);
    const broken = (): AuditSink => ({
      kind: 'redis',
      append: () => Promise.reject(new Error('connect ECONNREFUSED')),
      head: () => Promise.reject(new Error('connect ECONNREFUSED')),
      read: () => Promise.reject(new Error('connect ECONNREFUSED')),
      logs: () => Promise.reject(new Error('connect ECONNREFUSED')),
      appendCheckpoint: () => Promise.reject(new Error('connect ECONNREFUSED')),
      readCheckpoints: () => Promise.reject(new Error('connect ECONNREFUSED')),
      ping: () => Promise.resolve(false),
      close: () => Promise.resolve(),
    });
    const { io, out } = captureIo({});
    expect(await runAuditVerify(['--config', f.config], io, { createSink: broken, progress: false })).toBe(1);
    expect(out.stderr).toMatch(/ECONNREFUSED.*Redis/);
  });

  it('shows progress on stderr when asked', async () => {
    const f = await fixture({ 'gw-a': { records: 2, sealEvery: 100 } });
    const { io, out } = captureIo({});
    expect(await runAuditVerify(['--config', f.config], io, { progress: true })).toBe(0);
    expect(out.stdout).toBe('verified 1 log: 2/2 records, 1/1 checkpoints\n');
  });

  it('is dispatched by main, with --help', async () => {
    const { io, out } = captureIo({});
    expect(await main(['audit', 'verify', '--help'], io)).toBe(0);
    expect(out.stdout).toMatch(/Usage: portcullis audit verify/);
    expect(await main(['audit', 'export', '--help'], io)).toBe(0);
    expect(await main(['audit', 'prove', '--help'], io)).toBe(0);
  });
});

describe('audit export and verify --from-export', () => {
  it('round-trips a full export offline, and finds tampering in it', async () => {
    const f = await fixture({ 'gw-a': { records: 9, sealEvery: 4 }, 'gw-b': { records: 3, sealEvery: 2 } });
    const out = join(f.dir, 'export.jsonl');
    const e = await run(runAuditExport, ['--config', f.config, '--out', out]);
    expect(e.code).toBe(0);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const lines = (await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: 'portcullis-audit-export', v: 1 });
    expect(lines).toContainEqual({ type: 'log', instance: 'gw-a', origin: `${NAME}/gw-a` });
    expect(lines.filter((l) => l.type === 'record')).toHaveLength(12);
    expect(lines.some((l) => l.type === 'checkpoint') && lines.some((l) => l.type === 'witness')).toBe(true);

    // Needs an independent key.
    expect((await verify(['--from-export', out])).code).toBe(2);
    const r = await verify(['--from-export', out, '--public-key', f.keyFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('verified 2 logs: 12/12 records, 5/5 checkpoints\n');

    const text = await readFile(out, 'utf8');
    const tampered = join(f.dir, 'tampered.jsonl');
    await writeFile(tampered, text.replace('\\"route\\":\\"app\\"', '\\"route\\":\\"evil\\"'));
    const t = await verify(['--from-export', tampered, '--public-key', f.keyFile]);
    expect(t.code).toBe(3);
    expect(t.stdout).toMatch(/^TAMPERED record-modified log=gw-a seq=0 id=gw-a-0: /m);

    const garbage = join(f.dir, 'garbage.jsonl');
    await writeFile(garbage, 'hello\n');
    expect((await verify(['--from-export', garbage, '--public-key', f.keyFile])).code).toBe(1);
    expect((await verify(['--from-export', join(f.dir, 'absent.jsonl'), '--public-key', f.keyFile])).code).toBe(1);
  });

  it('exports from --since with the tree state before it, and the partial export verifies', async () => {
    const f = await fixture({ 'gw-a': { records: 10, sealEvery: 3 } });
    const out = join(f.dir, 'since.jsonl');
    // Records are 1 s apart from T0: records 6… have ts >= T0 + 6 s.
    const e = await run(runAuditExport, ['--config', f.config, '--out', out, '--since', new Date(T0 + 6000).toISOString()]);
    expect(e.code).toBe(0);
    const lines = (await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toContainEqual(expect.objectContaining({ type: 'start', instance: 'gw-a', seq: 6 }));
    expect(lines.filter((l) => l.type === 'record')).toHaveLength(4);
    const r = await verify(['--from-export', out, '--public-key', f.keyFile]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('verified 1 log: 4/4 records, 4/4 checkpoints\n');

    // A relative --since later than every record exports only the state, which still verifies.
    const empty = join(f.dir, 'empty.jsonl');
    const { io } = captureIo({});
    expect(await runAuditExport(['--config', f.config, '--out', empty, '--since', '1h'], io, { now: () => T0 + 3_600_000 + 60_000 })).toBe(0);
    expect((await verify(['--from-export', empty, '--public-key', f.keyFile])).stdout).toBe('verified 1 log: 0/0 records, 4/4 checkpoints\n');

    expect((await run(runAuditExport, ['--config', f.config, '--out', out, '--since', 'yesterday'])).code).toBe(2);
    expect((await run(runAuditExport, ['--config', f.config])).code).toBe(2);
  });
});

describe('audit prove and verify --proof', () => {
  it('computes the RFC 9162 path ranges exactly as inclusionProof does', () => {
    const leaves = Array.from({ length: 40 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
    for (let size = 1; size <= 40; size++) {
      for (let index = 0; index < size; index++) {
        const expected = inclusionProof(index, size, (i) => leaves[i] ?? Buffer.alloc(32)).map((h) => h.toString('hex'));
        const got = inclusionRanges(index, size).map(([a, b]) => rootOf(leaves.slice(a, b)).toString('hex'));
        expect(got).toEqual(expected);
      }
    }
  });

  it('round-trips a proof, and rejects a proof for another index or another record', async () => {
    const f = await fixture({ 'gw-a': { records: 13, sealEvery: 5 } });
    const proofFile = join(f.dir, 'r7.tlog-proof');
    const p = await run(runAuditProve, ['--config', f.config, '--index', '7', '--out', proofFile]);
    expect(p.stderr).toMatch(/proof of record 7/);
    expect(p.code).toBe(0);
    const text = await readFile(proofFile, 'utf8');
    expect(text).toMatch(/^c2sp\.org\/tlog-proof@v1\nindex 7\n/);
    const parsed = parseTlogProof(text);
    if ('error' in parsed) throw new Error(parsed.error);
    expect(parsed.checkpoint).toMatch(new RegExp(`^${NAME}/gw-a\n13\n`));
    expect(parsed.hashes).toHaveLength(4);
    const recordFile = `${proofFile}.record`;
    expect(JSON.parse(await readFile(recordFile, 'utf8'))).toMatchObject({ seq: 7, id: 'gw-a-7' });

    const ok = await verify(['--proof', proofFile, '--record', recordFile, '--public-key', f.keyFile]);
    expect(ok.stdout).toMatch(/^proof valid: record 7 \(id gw-a-7\) is in test\.portcullis\/audit\/gw-a/);
    expect(ok.code).toBe(0);

    const wrongIndex = join(f.dir, 'wrong.tlog-proof');
    await writeFile(wrongIndex, text.replace('index 7\n', 'index 6\n'));
    const w = await verify(['--proof', wrongIndex, '--record', recordFile, '--public-key', f.keyFile]);
    expect(w.code).toBe(3);
    expect(w.stdout).toMatch(/^proof INVALID: /);

    // The record with its seq edited to match the changed index: the inclusion check fails.
    const otherRecord = join(f.dir, 'other.record');
    await writeFile(otherRecord, (await readFile(recordFile, 'utf8')).replace('"seq":7', '"seq":6'));
    const o = await verify(['--proof', wrongIndex, '--record', otherRecord, '--public-key', f.keyFile]);
    expect(o.code).toBe(3);
    expect(o.stdout).toMatch(/inclusion proof does not hold/);

    const stranger = join(f.dir, 'stranger.key');
    await loadOrCreateSealKey(stranger);
    expect((await verify(['--proof', proofFile, '--record', recordFile, '--public-key', stranger])).code).toBe(3);
    expect((await verify(['--proof', proofFile, '--record', recordFile])).code).toBe(2);
  });

  it('prints the proof on stdout, and refuses records not sealed yet', async () => {
    const f = await fixture({ 'gw-a': { records: 3, sealEvery: 100 } });
    const p = await run(runAuditProve, ['--config', f.config, '--index', '0']);
    expect(p.code).toBe(0);
    expect(p.stdout).toMatch(/^c2sp\.org\/tlog-proof@v1\nindex 0\n/);
    const n = await run(runAuditProve, ['--config', f.config, '--index', '3']);
    expect(n.code).toBe(1);
    expect(n.stderr).toMatch(/not sealed yet/);
    expect((await run(runAuditProve, ['--config', f.config])).code).toBe(2);
  });

  it('refuses to prove against records that do not match the checkpoint', async () => {
    const f = await fixture({ 'gw-a': { records: 6, sealEvery: 100 } });
    await editLine(await recordsFile(f, 'gw-a'), 4, (l) => l.replace('"route":"app"', '"route":"evil"'));
    const p = await run(runAuditProve, ['--config', f.config, '--index', '1']);
    expect(p.code).toBe(3);
    expect(p.stderr).toMatch(/audit verify/);
  });
});

describe('--instance', () => {
  it('verifies and exports one log, and refuses an unknown one', async () => {
    const f = await fixture({ 'gw-a': { records: 2, sealEvery: 100 }, 'gw-b': { records: 3, sealEvery: 100 } });
    expect((await verify(['--config', f.config, '--instance', 'gw-b'])).stdout).toBe('verified 1 log: 3/3 records, 1/1 checkpoints\n');
    const none = await verify(['--config', f.config, '--instance', 'gw-c']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no log gw-c/);
    const out = join(f.dir, 'b.jsonl');
    expect((await run(runAuditExport, ['--config', f.config, '--out', out, '--instance', 'gw-a'])).code).toBe(0);
    expect((await verify(['--from-export', out, '--public-key', f.keyFile])).stdout).toBe('verified 1 log: 2/2 records, 1/1 checkpoints\n');
    expect((await run(runAuditProve, ['--config', f.config, '--index', '0'])).stderr).toMatch(/pass --instance/);
    expect((await run(runAuditProve, ['--config', f.config, '--index', '2', '--instance', 'gw-b'])).code).toBe(0);
  });
});
