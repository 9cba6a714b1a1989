/**
 * Tampering with a sealed audit log, as someone with admin access to the sink would, and what
 * `portcullis audit verify` (the compiled CLI, `npm run build` first) says about it: exit 3, and a
 * `TAMPERED <code> log=<instance> seq=… | checkpoint=…` line naming the record or checkpoint.
 *
 * A real gateway (the app's composition root, in this process) serves requests through a public
 * route to a recording upstream, so every record and checkpoint is the product's own. The log is
 * fully sealed (flush, seal, stop: stopping writes a final checkpoint), then copied for each case —
 * in Redis with COPY to a stream prefix of its own, for the file sink as a directory copy, the
 * witness_dir with it — and the copy is tampered with:
 *
 * - Redis: a private `redis-server` on a free port (never the shared 6379), driven with ioredis.
 *   XDEL, XTRIM and XADD where they can do the job; a stream cannot hold two entries under one ID
 *   nor take an ID below its top, so altering, reordering or inserting records means rewriting the
 *   stream (entries copied to a new key with the change, then RENAME over the original).
 * - File sink: the segment file and `checkpoints.txt` edited in place.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { canonicalBytes, leafHash } from '../../src/audit/canonical.js';
import { formatCheckpoint, parseCheckpoint, type Checkpoint } from '../../src/audit/checkpoint.js';
import { openNote, signerFromPrivateKey, signNote } from '../../src/audit/signed-note.js';
import { startGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { killAllCli, runCli, type CliResult } from '../support/process.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';
import { startRedisServer, type TestRedisServer } from '../support/redis-server.js';

const INSTANCE = 'gw';
const SEAL_ORIGIN = 'it.portcullis/audit';
const REQUESTS = 100;
/** The record the record cases tamper with: well inside the log, sealed by a middle checkpoint. */
const TARGET = 50;

type SinkKind = 'redis' | 'file';

let root = '';
let redis: TestRedisServer;
let admin: Redis;
let upstream: RecordingUpstream;
let streams = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'portcullis-tamper-'));
  [redis, upstream] = await Promise.all([startRedisServer(), startRecordingUpstream()]);
  admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
});

afterEach(async () => {
  await killAllCli();
});

afterAll(async () => {
  admin.disconnect();
  await Promise.allSettled([redis.stop(), upstream.close()]);
  await rm(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// A log: where it lives, its config, and admin access to it
// ---------------------------------------------------------------------------------------------

/** One log's storage and configuration (a fresh Redis stream prefix or file sink directory). */
interface LogPlace {
  readonly kind: SinkKind;
  readonly dir: string;
  /** The Redis stream prefix (kind redis). */
  readonly stream: string;
  readonly witnessDir: string;
  readonly keyFile: string;
}

async function newPlace(kind: SinkKind, keyFile?: string): Promise<LogPlace> {
  const dir = await mkdtemp(join(root, `${kind}-`));
  return { kind, dir, stream: `tamper${++streams}`, witnessDir: join(dir, 'checkpoints'), keyFile: keyFile ?? join(dir, 'seal.key') };
}

/** The gateway configuration of a place (also what `audit verify --config` reads). */
function configOf(place: LogPlace, seal: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    server: { instance_id: INSTANCE, public_url: 'http://localhost' },
    audit: {
      sink: place.kind === 'redis' ? { type: 'redis', url: redis.url, stream: place.stream } : { type: 'file', dir: join(place.dir, 'audit') },
      spool_dir: join(place.dir, 'spool'),
      seal: { every: '1h', max_records: 20, key_file: place.keyFile, witness_dir: place.witnessDir, origin: SEAL_ORIGIN, ...seal },
    },
    routes: [{ id: 'app', host: 'localhost', path: '/', upstream: upstream.url, public: true }],
  };
}

async function writeConfig(place: LogPlace, seal: Record<string, unknown> = {}): Promise<string> {
  const file = join(place.dir, `portcullis-${Math.random().toString(36).slice(2, 8)}.yaml`);
  await writeFile(file, stringify(configOf(place, seal)));
  return file;
}

/**
 * Runs the gateway once on `place`: `n` requests through the public route, then flush, seal and
 * stop (which writes a final checkpoint), so everything it wrote is sealed.
 */
async function runGateway(place: LogPlace, n: number, seal: Record<string, unknown> = {}): Promise<void> {
  const gw = await startGateway(configOf(place, seal));
  try {
    for (let i = 0; i < n; i++) {
      const res = await send(gw.port, { path: `/item/${i}?token=secret`, headers: ['Host', 'localhost', 'Accept', 'application/json'] });
      expect(res.status).toBe(200);
    }
    expect(await gw.app.audit.flush(10_000)).toBe(true);
    await gw.app.sealer.sealNow();
  } finally {
    await gw.stop(500);
    await rm(gw.dir, { recursive: true, force: true });
  }
}

/** `portcullis audit verify --config FILE …`. */
async function verify(configFile: string, ...args: string[]): Promise<CliResult> {
  return runCli(['audit', 'verify', '--config', configFile, ...args], 30_000);
}

/** Admin access to one log: what an operator (or an intruder) with the sink's keys can do. */
interface LogAdmin {
  /** The stored records, in stored order. */
  records(): Promise<Buffer[]>;
  /** Replaces every record (Redis: a rewritten stream, IDs 0-1, 0-2, … by position; file: the segment). */
  rewriteRecords(edit: (records: Buffer[]) => Buffer[]): Promise<void>;
  /** Deletes the record stored at position `i` (Redis: XDEL). */
  deleteRecord(i: number): Promise<void>;
  /** Deletes every record from position `keep` on (Redis: XDEL of each; file: truncate). */
  truncate(keep: number): Promise<void>;
  /** Keeps only the newest `keep` records (Redis: XTRIM MAXLEN). */
  trimOldest(keep: number): Promise<void>;
  /** The signed checkpoint notes in the sink, oldest first. */
  checkpoints(): Promise<string[]>;
  /** Replaces every checkpoint (Redis: rewritten stream under the same IDs). */
  rewriteCheckpoints(edit: (notes: string[]) => string[]): Promise<void>;
  /** Deletes the checkpoint stored at position `i` (Redis: XDEL). */
  deleteCheckpoint(i: number): Promise<void>;
  /** Appends a checkpoint note (Redis: XADD *). */
  appendCheckpoint(note: string): Promise<void>;
}

const recordsKey = (place: LogPlace): string => `${place.stream}:{${INSTANCE}}:records`;
const checkpointsKey = (place: LogPlace): string => `${place.stream}:{${INSTANCE}}:checkpoints`;

function redisAdmin(place: LogPlace): LogAdmin {
  const rkey = recordsKey(place);
  const ckey = checkpointsKey(place);
  const entries = async (): Promise<[string, Buffer][]> =>
    (await admin.xrangeBuffer(rkey, '-', '+')).map(([id, fields]) => {
      const value = fields[1];
      if (fields[0]?.toString() !== 'r' || value === undefined) throw new Error(`${rkey} ${id.toString()}: no field r`);
      return [id.toString(), value];
    });
  const cpEntries = async (): Promise<[string, string][]> =>
    (await admin.xrange(ckey, '-', '+')).map(([id, fields]) => {
      const value = fields[1];
      if (fields[0] !== 'c' || value === undefined) throw new Error(`${ckey} ${id}: no field c`);
      return [id, value];
    });
  /** Copies `list` into a new key and renames it over `key` (RENAME replaces the original atomically). */
  const rewrite = async (key: string, field: string, list: [string, Buffer | string][]): Promise<void> => {
    const tmp = `${key}:rewrite`;
    const multi = admin.multi().del(tmp);
    for (const [id, value] of list) multi.xadd(tmp, id, field, value);
    multi.rename(tmp, key);
    const results = await multi.exec();
    const failed = results?.find(([err]) => err !== null);
    if (failed?.[0] != null) throw failed[0];
  };
  return {
    async records() {
      return (await entries()).map(([, r]) => r);
    },
    async rewriteRecords(edit) {
      const next = edit(await this.records());
      await rewrite(
        rkey,
        'r',
        next.map((r, i) => [`0-${i + 1}`, r]),
      );
    },
    async deleteRecord(i) {
      const id = (await entries())[i]?.[0];
      if (id === undefined) throw new Error(`no record at position ${i}`);
      expect(await admin.xdel(rkey, id)).toBe(1);
    },
    async truncate(keep) {
      const ids = (await entries()).slice(keep).map(([id]) => id);
      expect(await admin.xdel(rkey, ...ids)).toBe(ids.length);
    },
    async trimOldest(keep) {
      await admin.xtrim(rkey, 'MAXLEN', keep);
    },
    async checkpoints() {
      return (await cpEntries()).map(([, c]) => c);
    },
    async rewriteCheckpoints(edit) {
      const list = await cpEntries();
      const next = edit(list.map(([, c]) => c));
      if (next.length !== list.length) throw new Error('rewriteCheckpoints keeps the number of checkpoints');
      await rewrite(
        ckey,
        'c',
        list.map(([id], i) => [id, next[i] ?? '']),
      );
    },
    async deleteCheckpoint(i) {
      const id = (await cpEntries())[i]?.[0];
      if (id === undefined) throw new Error(`no checkpoint at position ${i}`);
      expect(await admin.xdel(ckey, id)).toBe(1);
    },
    async appendCheckpoint(note) {
      await admin.xadd(ckey, '*', 'c', note);
    },
  };
}

/** `checkpoints.txt` entries: `checkpoint <byte length>\n<note>\n`. */
function encodeCheckpoints(notes: readonly string[]): string {
  return notes.map((n) => `checkpoint ${Buffer.byteLength(n)}\n${n}\n`).join('');
}

function decodeCheckpoints(data: Buffer): string[] {
  const notes: string[] = [];
  let pos = 0;
  while (pos < data.length) {
    const eol = data.indexOf(0x0a, pos);
    const m = /^checkpoint (\d+)$/.exec(data.toString('latin1', pos, eol));
    if (m?.[1] === undefined) throw new Error(`checkpoints.txt: bad entry at byte ${pos}`);
    const end = eol + 1 + Number(m[1]);
    notes.push(data.toString('utf8', eol + 1, end));
    pos = end + 1;
  }
  return notes;
}

async function fileAdmin(place: LogPlace): Promise<LogAdmin> {
  const logDir = join(place.dir, 'audit', INSTANCE);
  const segments = (await readdir(logDir)).filter((f) => f.startsWith('records-'));
  // ~100 short records: one segment (64 MiB each).
  expect(segments).toEqual(['records-000000000000.jsonl']);
  const segment = join(logDir, 'records-000000000000.jsonl');
  const cpFile = join(logDir, 'checkpoints.txt');
  const write = (records: Buffer[]) => writeFile(segment, Buffer.concat(records.flatMap((r) => [r, Buffer.from('\n')])));
  const writeCps = (notes: string[]) => writeFile(cpFile, encodeCheckpoints(notes));
  const a: LogAdmin = {
    async records() {
      const text = await readFile(segment);
      const out: Buffer[] = [];
      let pos = 0;
      for (let eol = text.indexOf(0x0a); eol !== -1; eol = text.indexOf(0x0a, pos)) {
        out.push(text.subarray(pos, eol));
        pos = eol + 1;
      }
      return out;
    },
    async rewriteRecords(edit) {
      await write(edit(await a.records()));
    },
    async deleteRecord(i) {
      await a.rewriteRecords((rs) => rs.filter((_, j) => j !== i));
    },
    async truncate(keep) {
      await a.rewriteRecords((rs) => rs.slice(0, keep));
    },
    async trimOldest(keep) {
      await a.rewriteRecords((rs) => rs.slice(-keep));
    },
    async checkpoints() {
      return decodeCheckpoints(await readFile(cpFile));
    },
    async rewriteCheckpoints(edit) {
      await writeCps(edit(await a.checkpoints()));
    },
    async deleteCheckpoint(i) {
      await a.rewriteCheckpoints((cs) => cs.filter((_, j) => j !== i));
    },
    async appendCheckpoint(note) {
      await writeCps([...(await a.checkpoints()), note]);
    },
  };
  return a;
}

const adminOf = (place: LogPlace): Promise<LogAdmin> => (place.kind === 'redis' ? Promise.resolve(redisAdmin(place)) : fileAdmin(place));

/** A copy of `from` (records, checkpoints, witness copies; same seal key) at a new place. */
async function copyLog(from: LogPlace): Promise<LogPlace> {
  const to = await newPlace(from.kind, from.keyFile);
  if (from.kind === 'redis') {
    for (const key of [recordsKey, checkpointsKey]) expect(await admin.copy(key(from), key(to))).toBe(1);
  } else {
    await cp(join(from.dir, 'audit'), join(to.dir, 'audit'), { recursive: true });
  }
  await cp(from.witnessDir, to.witnessDir, { recursive: true });
  return to;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint and record helpers
// ---------------------------------------------------------------------------------------------

function checkpointOf(note: string): Checkpoint {
  const opened = openNote(note, []);
  if ('error' in opened) throw new Error(opened.error);
  const cp = parseCheckpoint(opened.text);
  if ('error' in cp) throw new Error(cp.error);
  return cp;
}

/** The note's signature lines (everything after the blank line), kept as they are. */
function signatureLines(note: string): string {
  return note.slice(note.lastIndexOf('\n\n') + 2);
}

/** A record with some fields changed, as canonical bytes. */
function edited(bytes: Buffer, change: (r: Record<string, unknown>) => void): Buffer {
  const r = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  change(r);
  return canonicalBytes(r);
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The finding line of `code` about a record (`seq`) or a checkpoint. */
function line(code: string, at: { seq?: number; checkpoint?: number }): RegExp {
  const where = at.seq === undefined ? `log=${INSTANCE}(?: [^:]*)? checkpoint=${at.checkpoint ?? ''}:` : `log=${INSTANCE} seq=${at.seq}[ :]`;
  return new RegExp(`^TAMPERED ${escape(code)} ${where}`, 'm');
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

/** What the untouched log holds. */
interface Facts {
  readonly records: Buffer[];
  readonly checkpoints: Checkpoint[];
  readonly notes: string[];
}

interface TamperCase {
  readonly name: string;
  /** Tampers with the copy; returns the finding lines the verifier must print. */
  readonly tamper: (log: LogAdmin, facts: Facts, place: LogPlace) => Promise<RegExp[]>;
  /** Codes that must not be reported (the tamper was done cleverly enough to avoid them). */
  readonly absent?: readonly string[];
}

/** The first checkpoint that seals record `seq`. */
function sealing(facts: Facts, seq: number): { cp: Checkpoint } {
  const cp = facts.checkpoints.find((c) => c.size > seq);
  if (cp === undefined) throw new Error(`no checkpoint seals record ${seq}`);
  return { cp };
}

/** A checkpoint in the middle of the series (not the first, not the last). */
const middle = (facts: Facts): Checkpoint => {
  const cp = facts.checkpoints[Math.floor(facts.checkpoints.length / 2)];
  if (cp === undefined) throw new Error('no checkpoints');
  return cp;
};

const CASES: TamperCase[] = [
  {
    name: 'modify one field of a sealed record',
    tamper: async (log, facts) => {
      await log.rewriteRecords((rs) => rs.map((r, i) => (i === TARGET ? edited(r, (x) => (x.decision = 'deny')) : r)));
      return [line('record-modified', { seq: TARGET }), line('root-mismatch', { checkpoint: sealing(facts, TARGET).cp.number })];
    },
  },
  {
    name: 'modify a record and recompute every later prev',
    tamper: async (log, facts) => {
      await log.rewriteRecords((rs) => {
        let prev = '';
        return rs.map((r, i) => {
          const out = i === TARGET ? edited(r, (x) => (x.request = { ...(x.request as object), path: '/item/forged' })) : i > TARGET ? edited(r, (x) => (x.prev = prev)) : r;
          prev = leafHash(out).toString('hex');
          return out;
        });
      });
      // The chain holds; only the seal can tell: the first checkpoint sealing the altered record.
      return [line('root-mismatch', { checkpoint: sealing(facts, TARGET).cp.number })];
    },
    absent: ['record-modified', 'chain-broken', 'record-missing', 'record-inserted'],
  },
  {
    name: 'delete a record (XDEL)',
    tamper: async (log, facts) => {
      await log.deleteRecord(TARGET);
      return [line('record-missing', { seq: TARGET }), line('root-mismatch', { checkpoint: sealing(facts, TARGET).cp.number })];
    },
  },
  {
    name: 'reorder two records',
    tamper: async (log) => {
      await log.rewriteRecords((rs) => rs.map((r, i) => (i === TARGET ? rs[TARGET + 1] : i === TARGET + 1 ? rs[TARGET] : r) ?? r));
      return [line('record-out-of-order', { seq: TARGET })];
    },
    absent: ['record-missing'],
  },
  {
    name: 'insert a forged record',
    tamper: async (log) => {
      // A second record TARGET, chained to the real record TARGET-1 as if it belonged there.
      await log.rewriteRecords((rs) => {
        const real = rs[TARGET];
        if (real === undefined) throw new Error('no target');
        const forged = edited(real, (x) => (x.identity = { user: 'mallory', groups: ['sre'] }));
        return [...rs.slice(0, TARGET + 1), forged, ...rs.slice(TARGET + 1)];
      });
      return [line('record-inserted', { seq: TARGET })];
    },
  },
  {
    name: 'truncate the tail',
    tamper: async (log, facts) => {
      const keep = facts.records.length - 10;
      await log.truncate(keep);
      return [line('log-truncated', { seq: keep })];
    },
  },
  {
    name: 'drop the oldest records (XTRIM MAXLEN)',
    tamper: async (log, facts) => {
      await log.trimOldest(facts.records.length - 10);
      return [new RegExp(`${line('record-missing', { seq: 0 }).source}.*records 0–9 are missing`, 'm')];
    },
  },
  {
    name: 'truncate the tail and delete the checkpoints covering it (caught through witness_dir)',
    tamper: async (log, facts) => {
      // Cut the log back to what a middle checkpoint sealed, and drop every later checkpoint from
      // the sink: the sink alone now looks intact; the witness copies still hold the later ones.
      // (The middle of the checkpoints that seal less than the last one: a heartbeat or the final
      // checkpoint may repeat the last size, and cutting back to it would cut nothing.)
      const last = facts.checkpoints.at(-1)?.size ?? 0;
      const kept = middle({ ...facts, checkpoints: facts.checkpoints.filter((c) => c.size < last) });
      await log.truncate(kept.size);
      const notes = await log.checkpoints();
      for (let i = notes.length - 1; i > facts.checkpoints.indexOf(kept); i--) await log.deleteCheckpoint(i);
      const newest = facts.checkpoints.at(-1);
      if (newest === undefined) throw new Error('no checkpoints');
      return [
        new RegExp(`${line('checkpoint-rolled-back', { checkpoint: newest.number }).source}.*behind the witness copy`, 'm'),
        new RegExp(`${line('log-truncated', { seq: kept.size }).source}.*witness checkpoint ${newest.number}`, 'm'),
      ];
    },
  },
  {
    name: 'delete a middle checkpoint',
    tamper: async (log, facts) => {
      const gone = middle(facts);
      await log.deleteCheckpoint(facts.checkpoints.indexOf(gone));
      return [line('checkpoint-missing', { checkpoint: gone.number })];
    },
  },
  ...(['size', 'root'] as const).map(
    (field): TamperCase => ({
      name: `edit a checkpoint's ${field}`,
      tamper: async (log, facts) => {
        const target = middle(facts);
        await log.rewriteCheckpoints((notes) =>
          notes.map((note) => {
            const cp = checkpointOf(note);
            if (cp.number !== target.number) return note;
            const changed = field === 'size' ? { ...cp, size: cp.size - 1 } : { ...cp, root: leafHash(Buffer.from('forged')) };
            return `${formatCheckpoint(changed)}\n${signatureLines(note)}`;
          }),
        );
        return [line('checkpoint-forged', { checkpoint: target.number })];
      },
    }),
  ),
  {
    name: 'a checkpoint signed by an unknown key',
    tamper: async (log, facts) => {
      const target = middle(facts);
      const intruder = signerFromPrivateKey(SEAL_ORIGIN, generateKeyPairSync('ed25519').privateKey);
      await log.rewriteCheckpoints((notes) => notes.map((note) => (checkpointOf(note).number === target.number ? signNote(formatCheckpoint(checkpointOf(note)), [intruder]) : note)));
      return [line('checkpoint-unknown-key', { checkpoint: target.number })];
    },
  },
  {
    name: 'an old checkpoint replayed as newest',
    tamper: async (log, facts) => {
      const old = facts.notes[1];
      if (old === undefined) throw new Error('fewer than 2 checkpoints');
      await log.appendCheckpoint(old);
      return [new RegExp(`${line('checkpoint-rolled-back', { checkpoint: 1 }).source}.*comes after checkpoint`, 'm')];
    },
  },
];

// ---------------------------------------------------------------------------------------------

describe.each(['redis', 'file'] as const)('audit verify against a tampered %s sink', (kind) => {
  let pristine: LogPlace;
  let facts: Facts;

  beforeAll(async () => {
    pristine = await newPlace(kind);
    await runGateway(pristine, REQUESTS);
    const log = await adminOf(pristine);
    const notes = await log.checkpoints();
    facts = { records: await log.records(), notes, checkpoints: notes.map(checkpointOf) };
    // Every request has its record, all sealed by the newest checkpoint; enough checkpoints that a
    // middle one is neither the first nor the last, and record TARGET is sealed by a middle one.
    expect(facts.records.length).toBeGreaterThanOrEqual(REQUESTS);
    expect(facts.checkpoints.at(-1)?.size).toBe(facts.records.length);
    expect(facts.checkpoints.length).toBeGreaterThanOrEqual(4);
    expect(sealing(facts, TARGET).cp.size).toBeLessThan(facts.records.length);
  }, 30_000);

  it('an untouched log verifies: exit 0 and the summary', async () => {
    const r = await verify(await writeConfig(pristine));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`verified 1 log: ${facts.records.length}/${facts.records.length} records, ${facts.notes.length}/${facts.notes.length} checkpoints\n`);
    expect(r.code).toBe(0);
  });

  it.each(CASES)('$name: exit 3, naming it', async ({ tamper, absent }) => {
    const place = await copyLog(pristine);
    const expected = await tamper(await adminOf(place), facts, place);
    const r = await verify(await writeConfig(place));
    const why = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    expect(r.code, why).toBe(3);
    for (const re of expected) expect(r.stdout, why).toMatch(re);
    for (const code of absent ?? []) expect(r.stdout, why).not.toMatch(new RegExp(`^TAMPERED ${code} `, 'm'));
    expect(r.stdout).toMatch(/^verified 1 log: \d+\/\d+ records, \d+\/\d+ checkpoints$/m);
  });

  it('--json prints the findings as JSON lines, then a summary', async () => {
    const place = await copyLog(pristine);
    await (await adminOf(place)).deleteRecord(TARGET);
    const r = await verify(await writeConfig(place), '--json');
    expect(r.code, r.stderr).toBe(3);
    const lines = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toContainEqual(expect.objectContaining({ type: 'finding', code: 'record-missing', severity: 'tampered', log: INSTANCE, seq: TARGET }));
    expect(lines.at(-1)).toMatchObject({ type: 'summary', result: 'tampered', logs: 1, records: facts.records.length - 1, checkpoints: facts.notes.length });
  });

  it('strip a checkpoint of its signatures: exit 3, checkpoint-unsigned naming it', async () => {
    const place = await copyLog(pristine);
    const target = middle(facts);
    await (await adminOf(place)).rewriteCheckpoints((notes) => notes.map((note) => (checkpointOf(note).number === target.number ? `${formatCheckpoint(checkpointOf(note))}\n` : note)));
    const r = await verify(await writeConfig(place));
    expect(r.code, r.stdout).toBe(3);
    expect(r.stdout).toMatch(line('checkpoint-unsigned', { checkpoint: target.number }));
  });
});

describe.each(['redis', 'file'] as const)('audit verify on an untouched %s sink', (kind) => {
  it('verifies across a gateway restart', { timeout: 30_000 }, async () => {
    const place = await newPlace(kind);
    await runGateway(place, 40);
    await runGateway(place, 40);
    const notes = await (await adminOf(place)).checkpoints();
    const records = (await (await adminOf(place)).records()).length;
    expect(records).toBeGreaterThanOrEqual(80);
    const r = await verify(await writeConfig(place));
    expect(r.stdout).toBe(`verified 1 log: ${records}/${records} records, ${notes.length}/${notes.length} checkpoints\n`);
    expect(r.code).toBe(0);
  });

  it('verifies across a key rotation, trusting only the old key', { timeout: 30_000 }, async () => {
    const place = await newPlace(kind);
    const oldKey = place.keyFile;
    const newKey = join(place.dir, 'seal-2.key');
    await runGateway(place, 30);
    const gen = await runCli(['keys', 'generate', '--out', newKey, '--name', SEAL_ORIGIN]);
    expect(gen.code, gen.stderr).toBe(0);
    // Rotation: signed by both keys, announcing the new one; then the new key alone.
    await runGateway(place, 30, { key_file: newKey, previous_key_file: oldKey });
    await runGateway(place, 30, { key_file: newKey });

    const notes = await (await adminOf(place)).checkpoints();
    const signers = notes.map((n) => signatureLines(n).trimEnd().split('\n').length);
    expect(signers).toContain(2);
    expect(signers.at(-1)).toBe(1);
    const records = (await (await adminOf(place)).records()).length;

    await mkdir(join(place.dir, 'keys'));
    const oldPub = join(place.dir, 'keys', 'old.pub');
    await writeFile(oldPub, createPublicKey(createPrivateKey(await readFile(oldKey, 'utf8'))).export({ format: 'pem', type: 'spki' }));
    const config = await writeConfig(place, { key_file: newKey });
    const summary = `verified 1 log: ${records}/${records} records, ${notes.length}/${notes.length} checkpoints\n`;
    const r = await verify(config, '--public-key', oldPub);
    expect(r.stdout, r.stderr).toBe(summary);
    expect(r.code).toBe(0);

    // The new key alone: the checkpoints of the old key are reached through the prev chain.
    const newPub = join(place.dir, 'keys', 'new.pub');
    await writeFile(newPub, gen.stdout);
    const r2 = await verify(config, '--public-key', newPub);
    expect(r2.stdout, r2.stderr).toBe(summary);
    expect(r2.code).toBe(0);

    // Control: a key that never signed anything vouches for none of it.
    const otherPub = join(place.dir, 'keys', 'other.pub');
    await writeFile(otherPub, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }));
    const r3 = await verify(config, '--public-key', otherPub);
    expect(r3.code, r3.stdout).toBe(3);
    expect(r3.stdout).toMatch(line('checkpoint-unknown-key', { checkpoint: 0 }));
  });
});
