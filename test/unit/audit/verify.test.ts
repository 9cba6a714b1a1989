/**
 * verifyLog over a synthetic log built exactly as the writer and sealer build one (canonical bytes,
 * `prev` = leaf hash of the record before, RFC 9162 roots, chained signed checkpoints), tampered in
 * every way SPEC §5 names. Each case lists the finding codes it must produce (and where), and no
 * case may produce a tampered finding it does not expect.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalBytes, GENESIS_PREV, leafHash } from '../../../src/audit/canonical.js';
import { checkpointHash, formatCheckpoint } from '../../../src/audit/checkpoint.js';
import { CompactRange, rootOf } from '../../../src/audit/merkle.js';
import { signerFromPrivateKey, signNote, verifierFromPublicKey, vkeyOf, type NoteSigner, type NoteVerifier } from '../../../src/audit/signed-note.js';
import type { StoredRecord } from '../../../src/audit/sink.js';
import { FINDING_CODES, verifyLog, type Finding, type FindingCode, type LogMaterial, type LogReport } from '../../../src/audit/verify.js';

const NAME = 'test.portcullis/audit';
const INSTANCE = 'gw-0';
const ORIGIN = `${NAME}/${INSTANCE}`;
const T0 = Date.parse('2026-11-26T10:00:00.000Z');

const key1 = generateKeyPairSync('ed25519').privateKey;
const key2 = generateKeyPairSync('ed25519').privateKey;
const stranger = generateKeyPairSync('ed25519').privateKey;
const signer = (k: KeyObject): NoteSigner => signerFromPrivateKey(NAME, k);
const verifier = (k: KeyObject): NoteVerifier => verifierFromPublicKey(NAME, k);

interface Body {
  seq: number;
  id: string;
  route: string;
  ts: string;
}

/** Chains bodies into stored records (seq and prev as the writer sets them). */
function chain(bodies: readonly Body[], from = 0, prevHex = GENESIS_PREV): StoredRecord[] {
  let prev = prevHex;
  return bodies.map((b, i) => {
    const bytes = canonicalBytes({ v: 1, kind: 'http', decision: 'allow', log: ORIGIN, ...b, seq: from + i, prev });
    prev = leafHash(bytes).toString('hex');
    return { seq: from + i, bytes };
  });
}

function bodies(n: number): Body[] {
  return Array.from({ length: n }, (_, seq) => ({ seq, id: `req-${seq}`, route: 'app', ts: new Date(T0 + seq * 1000).toISOString() }));
}

/** Signed, chained checkpoints over `records` at `sizes`; `signersAt(n)` picks checkpoint n's signers. */
function seal(records: readonly StoredRecord[], sizes: readonly number[], signersAt: (n: number) => NoteSigner[] = () => [signer(key1)], extensionsAt: (n: number) => string[] = () => []): string[] {
  const leaves = records.map((r) => leafHash(r.bytes));
  const notes: string[] = [];
  let prevHash = GENESIS_PREV;
  sizes.forEach((size, number) => {
    const ext = extensionsAt(number);
    const text = formatCheckpoint({
      origin: ORIGIN,
      size,
      root: rootOf(leaves.slice(0, size)),
      number,
      prevHash,
      time: new Date(T0 + number * 60_000).toISOString(),
      ...(ext.length > 0 ? { extensions: ext } : {}),
    });
    const note = signNote(text, signersAt(number));
    notes.push(note);
    prevHash = checkpointHash(note);
  });
  return notes;
}

const N = 20;
const SIZES = [3, 6, 10, 10, 15, 20];
const RECORDS = chain(bodies(N));
const NOTES = seal(RECORDS, SIZES);

function material(over: Partial<LogMaterial> = {}): LogMaterial {
  return { instance: INSTANCE, origin: ORIGIN, records: RECORDS, checkpoints: NOTES, witness: NOTES, ...over };
}

/** Record `seq` with a field changed (bytes no longer what was sealed). */
function modified(seq: number, route = 'evil'): StoredRecord {
  const rec = RECORDS[seq];
  if (rec === undefined) throw new Error('no such record');
  const obj = JSON.parse(rec.bytes.toString('utf8')) as Record<string, unknown>;
  return { seq, bytes: canonicalBytes({ ...obj, route }) };
}

const without = <T,>(list: readonly T[], ...indices: number[]): T[] => list.filter((_, i) => !indices.includes(i));
const tampered = (r: LogReport): Finding[] => r.findings.filter((f) => FINDING_CODES[f.code] === 'tampered');

interface Case {
  name: string;
  material: () => LogMaterial;
  trusted?: NoteVerifier[];
  /** Codes that must appear, optionally with the seq / checkpoint they must name. */
  expect: { code: FindingCode; seq?: number; checkpoint?: number }[];
  /** Tampered codes that must not appear. */
  absent?: FindingCode[];
}

const cases: Case[] = [
  { name: 'intact', material: () => material(), expect: [] },
  {
    name: 'a modified field',
    material: () => material({ records: RECORDS.map((r, i) => (i === 7 ? modified(7) : r)) }),
    expect: [{ code: 'record-modified', seq: 7 }, { code: 'root-mismatch', checkpoint: 2 }],
    absent: ['record-missing', 'log-truncated'],
  },
  {
    name: 'a modified field with every later prev recomputed',
    material: () => {
      const b = bodies(N).map((x) => (x.seq === 7 ? { ...x, route: 'evil' } : x));
      return material({ records: chain(b) });
    },
    expect: [{ code: 'root-mismatch', checkpoint: 2 }],
    absent: ['record-modified', 'chain-broken'],
  },
  {
    name: 'a deleted record',
    material: () => material({ records: without(RECORDS, 5) }),
    expect: [{ code: 'record-missing', seq: 5 }, { code: 'root-mismatch', checkpoint: 1 }],
    absent: ['log-truncated', 'record-modified', 'record-out-of-order'],
  },
  {
    name: 'two records swapped',
    material: () => {
      const r = [...RECORDS];
      [r[5], r[6]] = [r[6] as StoredRecord, r[5] as StoredRecord];
      return material({ records: r });
    },
    expect: [{ code: 'record-out-of-order', seq: 5 }],
    absent: ['record-missing', 'record-modified', 'log-truncated'],
  },
  {
    name: 'a forged record inserted before the real one',
    material: () => {
      const forged = chain([{ seq: 9, id: 'forged', route: 'app', ts: new Date(T0).toISOString() }], 9, leafHash((RECORDS[8] as StoredRecord).bytes).toString('hex'))[0] as StoredRecord;
      return material({ records: [...RECORDS.slice(0, 9), forged, ...RECORDS.slice(9)] });
    },
    expect: [{ code: 'record-inserted', seq: 9 }, { code: 'root-mismatch' }],
    absent: ['record-modified', 'record-missing'],
  },
  {
    name: 'a forged record inserted after the real one',
    material: () => {
      const forged = chain([{ seq: 9, id: 'forged', route: 'app', ts: new Date(T0).toISOString() }], 9, leafHash((RECORDS[8] as StoredRecord).bytes).toString('hex'))[0] as StoredRecord;
      return material({ records: [...RECORDS.slice(0, 10), forged, ...RECORDS.slice(10)] });
    },
    expect: [{ code: 'record-inserted', seq: 9 }],
    absent: ['record-modified', 'record-missing', 'chain-broken'],
  },
  {
    name: 'a record stored twice',
    material: () => material({ records: [...RECORDS.slice(0, 12), RECORDS[4] as StoredRecord, ...RECORDS.slice(12)] }),
    expect: [{ code: 'record-duplicated', seq: 4 }, { code: 'root-mismatch', checkpoint: 4 }],
    absent: ['record-modified', 'record-inserted'],
  },
  {
    name: 'a truncated tail',
    material: () => material({ records: RECORDS.slice(0, 17) }),
    expect: [{ code: 'log-truncated', seq: 17 }],
    absent: ['record-missing', 'root-mismatch', 'checkpoint-rolled-back'],
  },
  {
    name: 'a truncated tail whose checkpoints were deleted from the sink, the witness copies kept',
    material: () => material({ records: RECORDS.slice(0, 12), checkpoints: NOTES.slice(0, 4) }),
    expect: [{ code: 'checkpoint-rolled-back', checkpoint: 5 }, { code: 'log-truncated', seq: 12 }],
  },
  {
    name: 'the whole log deleted from the sink, the witness copies kept',
    material: () => material({ records: [], checkpoints: [] }),
    expect: [{ code: 'checkpoint-rolled-back' }, { code: 'log-truncated', seq: 0 }],
  },
  {
    name: 'a middle checkpoint deleted',
    material: () => material({ checkpoints: without(NOTES, 2) }),
    expect: [{ code: 'checkpoint-missing', checkpoint: 2 }],
    absent: ['root-mismatch', 'log-truncated'],
  },
  {
    name: "a checkpoint's size and root edited",
    material: () => {
      const note = NOTES[4] as string;
      const lines = note.split('\n');
      lines[1] = '14';
      lines[2] = rootOf(RECORDS.slice(0, 14).map((r) => leafHash(r.bytes))).toString('base64');
      return material({ checkpoints: NOTES.map((n, i) => (i === 4 ? lines.join('\n') : n)) });
    },
    expect: [{ code: 'checkpoint-forged', checkpoint: 4 }],
  },
  {
    name: 'a checkpoint signed by an unknown key',
    material: () => {
      const resigned = signNote(`${(NOTES[3] as string).split('\n\n')[0] ?? ''}\n`, [signer(stranger)]);
      return material({ checkpoints: NOTES.map((n, i) => (i === 3 ? resigned : n)) });
    },
    expect: [{ code: 'checkpoint-unknown-key', checkpoint: 3 }],
  },
  {
    name: 'checkpoints without a signature line of any trusted key',
    material: () => material(),
    trusted: [verifier(stranger)],
    expect: [{ code: 'checkpoint-unknown-key', checkpoint: 0 }],
  },
  {
    name: 'an old checkpoint replayed as the newest',
    material: () => material({ checkpoints: [...NOTES, NOTES[1] as string] }),
    expect: [{ code: 'checkpoint-rolled-back', checkpoint: 1 }],
    absent: ['root-mismatch', 'log-truncated'],
  },
  {
    name: 'a witness copy that differs from the sink (a fork)',
    material: () => {
      const fork = seal(RECORDS, [3, 6, 10, 10, 15, 20].map((s, i) => (i === 5 ? 19 : s)));
      return material({ witness: fork });
    },
    expect: [{ code: 'checkpoint-forged', checkpoint: 5 }],
  },
  {
    name: 'a record that is not JSON',
    material: () => material({ records: RECORDS.map((r, i) => (i === 16 ? { seq: 16, bytes: Buffer.from('{"seq":16,') } : r)) }),
    expect: [{ code: 'record-malformed', seq: 16 }, { code: 'root-mismatch', checkpoint: 5 }],
  },
  {
    name: 'the first record naming a predecessor',
    material: () => material({ records: chain(bodies(N), 0, 'ab'.repeat(32)), checkpoints: [], witness: [] }),
    expect: [{ code: 'chain-broken', seq: 0 }],
  },
];

describe('verifyLog', () => {
  it.each(cases)('$name', async (c) => {
    const report = await verifyLog(c.material(), c.trusted ?? [verifier(key1)]);
    const found = tampered(report);
    for (const want of c.expect) {
      const hit = found.find((f) => f.code === want.code && (want.seq === undefined || f.seq === want.seq) && (want.checkpoint === undefined || f.checkpoint === want.checkpoint));
      expect(hit, `${want.code} ${JSON.stringify(want)} in ${JSON.stringify(found, null, 1)}`).toBeDefined();
    }
    if (c.expect.length === 0) expect(found).toEqual([]);
    for (const code of c.absent ?? []) expect(found.map((f) => f.code)).not.toContain(code);
    for (const f of report.findings) {
      expect(f.log).toBe(INSTANCE);
      expect(f.message).not.toBe('');
    }
  });

  it('reports an intact log fully sealed', async () => {
    const report = await verifyLog(material(), [verifier(key1)]);
    expect(report).toMatchObject({ log: INSTANCE, firstSeq: 0, records: N, sealedRecords: N, checkpoints: SIZES.length, validCheckpoints: SIZES.length, findings: [] });
  });

  it('notes an unsealed tail without calling it tampering', async () => {
    const records = chain(bodies(N + 3));
    const report = await verifyLog(material({ records }), [verifier(key1)]);
    expect(report.findings).toEqual([expect.objectContaining({ code: 'unsealed-tail', severity: 'notice', seq: N })]);
    expect(report).toMatchObject({ records: N + 3, sealedRecords: N });
  });

  it('reads records from an async iterable', async () => {
    async function* gen() {
      for (const r of RECORDS) yield await Promise.resolve(r);
    }
    const report = await verifyLog(material({ records: gen() }), [verifier(key1)]);
    expect(tampered(report)).toEqual([]);
  });

  it('names a root mismatch once, counting the later checkpoints that share it', async () => {
    const b = bodies(N).map((x) => (x.seq === 1 ? { ...x, route: 'evil' } : x));
    const report = await verifyLog(material({ records: chain(b) }), [verifier(key1)]);
    const roots = report.findings.filter((f) => f.code === 'root-mismatch');
    expect(roots).toHaveLength(1);
    expect(roots[0]).toMatchObject({ checkpoint: 0 });
    expect(roots[0]?.message).toMatch(/as do the 5 later checkpoints through 5/);
  });

  it('accepts a checkpoint the sealer issued again after a lost acknowledgement', async () => {
    // Checkpoint 2 issued twice (new time); checkpoint 3 chains to the second copy.
    const leaves = RECORDS.map((r) => leafHash(r.bytes));
    const notes = NOTES.slice(0, 3);
    const again = signNote(
      formatCheckpoint({ origin: ORIGIN, size: 10, root: rootOf(leaves.slice(0, 10)), number: 2, prevHash: checkpointHash(NOTES[1] as string), time: new Date(T0 + 999_000).toISOString() }),
      [signer(key1)],
    );
    const next = signNote(formatCheckpoint({ origin: ORIGIN, size: 20, root: rootOf(leaves), number: 3, prevHash: checkpointHash(again), time: new Date(T0 + 1_999_000).toISOString() }), [signer(key1)]);
    const report = await verifyLog(material({ checkpoints: [...notes, again, next], witness: [] }), [verifier(key1)]);
    expect(report.findings).toEqual([]);
  });

  describe('key rotation', () => {
    // Checkpoints 0-2 by key 1; 3 by both, announcing key 2; 4-5 by key 2.
    const rotated = seal(
      RECORDS,
      SIZES,
      (n) => (n < 3 ? [signer(key1)] : n === 3 ? [signer(key2), signer(key1)] : [signer(key2)]),
      (n) => (n === 3 ? [`key ${vkeyOf(NAME, key2)}`] : []),
    );

    it('is learned from a checkpoint the old key signed', async () => {
      const report = await verifyLog(material({ checkpoints: rotated, witness: rotated }), [verifier(key1)]);
      expect(report.findings).toEqual([]);
      expect(report.validCheckpoints).toBe(SIZES.length);
    });

    it("accepts the old key's checkpoints through the hash chain when only the new key is trusted", async () => {
      const report = await verifyLog(material({ checkpoints: rotated, witness: rotated.slice(4) }), [verifier(key2)]);
      expect(report.findings).toEqual([]);
    });

    it('does not let a key announce itself', async () => {
      const selfIntroduced = seal(
        RECORDS,
        SIZES,
        (n) => (n < 3 ? [signer(key1)] : [signer(stranger)]),
        (n) => (n === 3 ? [`key ${vkeyOf(NAME, stranger)}`] : []),
      );
      const report = await verifyLog(material({ checkpoints: selfIntroduced, witness: [] }), [verifier(key1)]);
      expect(tampered(report).map((f) => f.code)).toContain('checkpoint-unknown-key');
    });
  });

  describe('partial logs (export --since)', () => {
    const S = 8;
    const start = () => {
      const range = new CompactRange();
      for (const r of RECORDS.slice(0, S)) range.append(leafHash(r.bytes));
      return { seq: S, range: range.toJSON(), prev: leafHash((RECORDS[S - 1] as StoredRecord).bytes).toString('hex') };
    };

    it('verifies from a start state', async () => {
      const report = await verifyLog(material({ records: RECORDS.slice(S), start: start() }), [verifier(key1)]);
      expect(report.findings).toEqual([]);
      expect(report).toMatchObject({ firstSeq: S, records: N - S, sealedRecords: N - S, validCheckpoints: SIZES.length });
    });

    it('finds a modified record after the start', async () => {
      const records = RECORDS.slice(S).map((r) => (r.seq === 12 ? modified(12) : r));
      const report = await verifyLog(material({ records, start: start() }), [verifier(key1)]);
      expect(tampered(report)).toEqual(expect.arrayContaining([expect.objectContaining({ code: 'record-modified', seq: 12 })]));
    });

    it('finds a start state that is not the sealed prefix', async () => {
      const s = start();
      const wrong = { ...s, range: { ...s.range, hashes: s.range.hashes.map(() => 'ab'.repeat(32)) } };
      const report = await verifyLog(material({ records: RECORDS.slice(S), start: wrong }), [verifier(key1)]);
      expect(tampered(report).map((f) => f.code)).toContain('root-mismatch');
    });

    it('finds a start prev that the first record does not name', async () => {
      const report = await verifyLog(material({ records: RECORDS.slice(S), start: { ...start(), prev: 'cd'.repeat(32) } }), [verifier(key1)]);
      expect(tampered(report)).toEqual([expect.objectContaining({ code: 'chain-broken', seq: S })]);
    });

    it('refuses a start state whose size is not its seq', async () => {
      await expect(verifyLog(material({ records: RECORDS.slice(S), start: { ...start(), seq: S + 1 } }), [verifier(key1)])).rejects.toThrow(/start state/);
    });
  });
});
