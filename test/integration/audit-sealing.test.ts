import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCheckpoint } from '../../src/audit/checkpoint.js';
import { createFileSink } from '../../src/audit/file-sink.js';
import { rootOf } from '../../src/audit/merkle.js';
import { leafHash } from '../../src/audit/canonical.js';
import { openNote, verifierFromPublicKey } from '../../src/audit/signed-note.js';
import { loadOrCreateSealKey } from '../../src/audit/seal-key.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

const INSTANCE = 'gw-seal';
let upstream: RecordingUpstream;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
});
afterAll(async () => {
  await upstream.close();
});

function config(dir: string) {
  return {
    server: { instance_id: INSTANCE },
    audit: {
      sink: { type: 'file', dir: join(dir, 'audit') },
      spool_dir: join(dir, 'spool'),
      seal: { every: '200ms', max_records: 25, key_file: join(dir, 'seal.key'), witness_dir: join(dir, 'witness'), origin: 'test.example/audit' },
    },
    routes: [{ id: 'app', host: 'localhost', path: '/', upstream: upstream.url, public: true }],
  };
}

async function traffic(gw: TestGateway, n: number): Promise<void> {
  for (let i = 0; i < n; i++) expect((await send(gw.port, { path: `/r${i}`, headers: ['Host', 'localhost'] })).status).toBe(200);
}

describe('the sealer', () => {
  let dir = '';
  let gw: TestGateway;

  it('writes signed checkpoints to the sink and to witness_dir whose roots match the records', async () => {
    gw = await startGateway({});
    dir = gw.dir;
    await gw.stop();
    gw = await startGateway(config(dir));
    await traffic(gw, 60);
    expect(await gw.app.audit.flush()).toBe(true);
    await gw.app.sealer.sealNow();
    const sink = createFileSink({ dir: join(dir, 'audit') });
    const notes = await sink.readCheckpoints(INSTANCE);
    expect(notes.length).toBeGreaterThanOrEqual(3); // max_records 25 → at least two, plus sealNow
    const key = await loadOrCreateSealKey(join(dir, 'seal.key'), { create: false });
    const verifier = verifierFromPublicKey('test.example/audit', key.publicKey);
    const records = await sink.read(INSTANCE, 0, 10_000);
    notes.forEach((note, i) => {
      const opened = openNote(note, [verifier]);
      if ('error' in opened) throw new Error(opened.error);
      expect(opened.signatures.every((s) => s.known && s.verified)).toBe(true);
      const cp = parseCheckpoint(opened.text);
      if ('error' in cp) throw new Error(cp.error);
      expect(cp.number).toBe(i);
      expect(cp.origin).toBe(`test.example/audit/${INSTANCE}`);
      expect(cp.root.equals(rootOf(records.slice(0, cp.size).map((r) => leafHash(r.bytes))))).toBe(true);
    });
    const witness = readdirSync(join(dir, 'witness', INSTANCE)).sort();
    expect(witness.length).toBe(notes.length);
    expect(readFileSync(join(dir, 'witness', INSTANCE, witness.at(-1) ?? ''), 'utf8')).toBe(notes.at(-1));
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    const ts = Number(/portcullis_audit_last_checkpoint_timestamp_seconds (\d+)/.exec(metrics)?.[1] ?? 0);
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(30);
    await sink.close();
  });

  it('seals at shutdown and continues the checkpoint chain after a restart', async () => {
    await traffic(gw, 5);
    await gw.stop();
    const sink = createFileSink({ dir: join(dir, 'audit') });
    const before = await sink.readCheckpoints(INSTANCE);
    const head = await sink.head(INSTANCE);
    const last = parseCheckpoint((openNote(before.at(-1) ?? '', []) as { text: string }).text);
    if ('error' in last) throw new Error(last.error);
    expect(last.size).toBe(head.size);
    await sink.close();

    gw = await startGateway(config(dir));
    await traffic(gw, 3);
    await gw.app.audit.flush();
    await gw.app.sealer.sealNow();
    await gw.stop();
    const sink2 = createFileSink({ dir: join(dir, 'audit') });
    const after = await sink2.readCheckpoints(INSTANCE);
    const numbers = after.map((n) => {
      const cp = parseCheckpoint((openNote(n, []) as { text: string }).text);
      if ('error' in cp) throw new Error(cp.error);
      return cp.number;
    });
    expect(numbers).toEqual(numbers.map((_, i) => i));
    expect(after.length).toBeGreaterThan(before.length);
    await sink2.close();
  });
});
