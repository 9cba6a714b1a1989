/**
 * `portcullis audit prove --index N`: an RFC 9162 inclusion proof that record N is in its log, against
 * the newest checkpoint in the sink, as a C2SP tlog-proof (format: src/audit/export-format.ts). The
 * record itself goes to a file next to it, so that
 * `audit verify --proof FILE --record FILE.record --public-key KEY` checks both offline.
 *
 * The proof is computed in one pass over the records sealed by the checkpoint, keeping one compact
 * range per proof hash (O(log n) memory); it is checked against the checkpoint's root before it is
 * written.
 */
import { writeFileAtomic } from '../identity/atomic-file.js';
import { leafHash } from '../audit/canonical.js';
import { parseCheckpoint, type Checkpoint } from '../audit/checkpoint.js';
import { formatTlogProof } from '../audit/export-format.js';
import { CompactRange, verifyInclusion } from '../audit/merkle.js';
import { openNote } from '../audit/signed-note.js';
import { errorText, readFailure } from './audit-query.js';
import { openAuditSetup } from './audit-query.js';
import { sinkRecords, type AuditToolOptions } from './audit-verify.js';
import { parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis audit prove --index N [--instance ID] [--config FILE] [--out FILE] [--record-out FILE]

Prints an RFC 9162 inclusion proof for record N (its seq) of a log against the newest checkpoint in
the sink, in C2SP tlog-proof form (c2sp.org/tlog-proof@v1: index, proof hashes, the signed checkpoint).
Check it offline with
  portcullis audit verify --proof FILE --record FILE.record --public-key KEY

Options:
  --index N          the record's seq (required)
  --instance ID      the gateway instance whose log holds it (default: server.instance_id from the
                     config, else the only log in the sink)
  --config FILE      the gateway's YAML configuration (default: $PORTCULLIS_CONFIG, else
                     config/portcullis.yaml)
  --out FILE         write the proof to FILE instead of standard output
  --record-out FILE  write the record's stored bytes to FILE (default with --out: FILE.record)

Exit status: 0 written, 1 config invalid, sink unreadable or record N not sealed yet, 2 bad command
line, 3 the stored records do not match the checkpoint (run portcullis audit verify).
`;

const OPTIONS = {
  index: { type: 'string' },
  instance: { type: 'string' },
  config: { type: 'string' },
  out: { type: 'string', short: 'o' },
  'record-out': { type: 'string' },
} as const;

function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The leaf ranges [start, end) whose subtree roots form the RFC 9162 inclusion path of leaf `index`
 * in a tree of `size` leaves, leaf side first (the same recursion as PATH in RFC 9162 §2.1.3.1).
 * Precondition: 0 ≤ index < size.
 */
export function inclusionRanges(index: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  const walk = (m: number, start: number, end: number): void => {
    const n = end - start;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      walk(m, start, start + k);
      out.push([start + k, end]);
    } else {
      walk(m - k, start + k, end);
      out.push([start, start + k]);
    }
  };
  walk(index, 0, size);
  return out;
}

/** Thrown when the command is answered with an exit code and a message. */
class Stop extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Runs `audit prove`. `args` are the words after `audit prove`.
 * @returns 0 written, 1 unreadable or not sealed yet, 2 usage error, 3 records do not match the checkpoint.
 */
export async function runAuditProve(args: readonly string[], io: CliIo, opts: AuditToolOptions = {}): Promise<number> {
  const parsed = parseCommand(args, OPTIONS, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  const v = parsed.values;
  const usage = (message: string): number => {
    io.stderr(`audit prove: ${message}\n\n${USAGE}`);
    return 2;
  };
  if (v.index === undefined || !/^\d{1,15}$/.test(v.index)) return usage('--index N is required (a record seq: 0, 1, 2, …)');
  const index = Number(v.index);
  if (v.instance !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(v.instance)) return usage(`--instance expects an instance id; got ${JSON.stringify(v.instance)}`);
  const recordOut = v['record-out'] ?? (v.out === undefined ? undefined : `${v.out}.record`);

  const setup = await openAuditSetup(v.config, io, opts);
  if (typeof setup === 'number') return setup;
  const { config, sink, where } = setup;
  try {
    let instance = v.instance ?? config.server.instance_id;
    let notes: string[];
    try {
      if (instance === undefined) {
        const logs = await sink.logs();
        if (logs.length !== 1) {
          throw new Stop(2, logs.length === 0 ? `${where} holds no log` : `${where} holds ${logs.length} logs; pass --instance (one of ${logs.join(', ')})`);
        }
        instance = logs[0];
      }
      if (instance === undefined) throw new Stop(1, `${where} holds no log`);
      notes = await sink.readCheckpoints(instance);
    } catch (err) {
      if (err instanceof Stop) throw err;
      throw new Stop(1, `cannot read ${where}: ${readFailure(sink, err)}`);
    }
    // The newest readable checkpoint (its signature is for the verifier to judge).
    let newest: { note: string; cp: Checkpoint } | undefined;
    for (let i = notes.length - 1; i >= 0 && newest === undefined; i--) {
      const note = notes[i];
      if (note === undefined) continue;
      const opened = openNote(note, []);
      if ('error' in opened) continue;
      const cp = parseCheckpoint(opened.text);
      if (!('error' in cp)) newest = { note, cp };
    }
    if (newest === undefined) throw new Stop(1, `log ${instance} has no checkpoint yet (the gateway seals every audit.seal.every)`);
    const { cp, note } = newest;
    if (index >= cp.size) {
      throw new Stop(1, `record ${index} of log ${instance} is not sealed yet: the newest checkpoint (${cp.number}) seals ${cp.size} records; wait for the next one`);
    }

    // One pass over records 0…size-1: a compact range per proof hash, and the record itself.
    const ranges = inclusionRanges(index, cp.size);
    const order = ranges.map((r, i) => ({ start: r[0], end: r[1], i, range: new CompactRange() })).sort((a, b) => a.start - b.start);
    let cursor = 0;
    let record: Buffer | undefined;
    let leaf: Buffer | undefined;
    let count = 0;
    try {
      for await (const rec of sinkRecords(sink, instance, setup.pageSize)) {
        if (rec.seq >= cp.size) break;
        if (rec.seq !== count) throw new Stop(3, `log ${instance} has no record ${count} (the next stored is ${rec.seq}); run portcullis audit verify`);
        count += 1;
        const h = leafHash(rec.bytes);
        if (rec.seq === index) {
          record = rec.bytes;
          leaf = h;
          continue;
        }
        while (order[cursor] !== undefined && rec.seq >= (order[cursor]?.end ?? 0)) cursor += 1;
        order[cursor]?.range.append(h);
      }
    } catch (err) {
      if (err instanceof Stop) throw err;
      throw new Stop(1, `cannot read log ${instance} from ${where}: ${readFailure(sink, err)}`);
    }
    if (count < cp.size || record === undefined || leaf === undefined) {
      throw new Stop(3, `log ${instance} holds ${count} records but its newest checkpoint (${cp.number}) seals ${cp.size}; run portcullis audit verify`);
    }
    const hashes = [...order].sort((a, b) => a.i - b.i).map((r) => r.range.root());
    const check = verifyInclusion(index, cp.size, leaf, hashes, cp.root);
    if (!check.ok) {
      throw new Stop(3, `the stored records of log ${instance} do not match its newest checkpoint (${cp.number}): ${check.message}; run portcullis audit verify`);
    }
    const proof = formatTlogProof({ index, hashes, checkpoint: note });
    try {
      if (v.out === undefined) io.stdout(proof);
      else await writeFileAtomic(v.out, proof, { mode: 0o644 });
      if (recordOut !== undefined) await writeFileAtomic(recordOut, `${record.toString('utf8')}\n`, { mode: 0o600 });
    } catch (err) {
      throw new Stop(1, `cannot write: ${errorText(err)}`);
    }
    if (v.out !== undefined || recordOut !== undefined) {
      io.stderr(
        `proof of record ${index} in log ${instance} against checkpoint ${cp.number} (size ${cp.size})${v.out === undefined ? '' : ` written to ${v.out}`}${recordOut === undefined ? '' : `; the record to ${recordOut}`}\n`,
      );
    }
    return 0;
  } catch (err) {
    if (!(err instanceof Stop)) throw err;
    io.stderr(`audit prove: ${err.message}\n`);
    return err.code;
  } finally {
    await sink.close().catch(() => undefined);
  }
}
