/**
 * `portcullis audit verify`: checks every log against its signed checkpoints (SPEC §5), from the
 * configured sink and `witness_dir`, or offline from an export file; or checks one inclusion proof
 * offline (`--proof FILE --record FILE`).
 *
 * Also the shared part of `audit export` and `audit prove`: opening the config and the sink, listing
 * logs, reading witness notes, paging records.
 */
import type { KeyObject } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { leafHash } from '../audit/canonical.js';
import { parseCheckpoint } from '../audit/checkpoint.js';
import { exportRecords, parseTlogProof, scanExport, ExportFormatError } from '../audit/export-format.js';
import { verifyInclusion } from '../audit/merkle.js';
import { readPublicKey } from '../audit/seal-key.js';
import { openNote, verifierFromPublicKey, type NoteVerifier } from '../audit/signed-note.js';
import type { AuditSink, StoredRecord } from '../audit/sink.js';
import { isPackedReader, type PackedReader, type PackedRecords } from '../audit/verify-digest.js';
import { FINDING_CODES, verifyLog, type Finding, type LogMaterial, type LogReport, type VerifyOptions } from '../audit/verify.js';
import { errorText, openAuditSetup, readFailure, type AuditReadOptions, type AuditSetup } from './audit-query.js';
import { parseCommand, type CliIo } from './io.js';

/** Dependencies of the audit verify / export / prove commands; tests replace them. */
export interface AuditToolOptions extends AuditReadOptions {
  /** Show progress on stderr. Default: `process.stderr.isTTY`. */
  readonly progress?: boolean;
  /** Worker threads for `audit verify` (see {@link VerifyOptions}; the defaults suit the CLI). */
  readonly verify?: VerifyOptions;
}

/** The instance ids that have a directory under `witnessDir` (sorted; none when it is absent). */
export async function witnessInstances(witnessDir: string): Promise<string[]> {
  try {
    const entries = await readdir(witnessDir, { withFileTypes: true });
    return entries
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The witness notes `<witnessDir>/<instance>/*.note`, in file name (= checkpoint number) order. */
export async function readWitness(witnessDir: string, instance: string): Promise<string[]> {
  const dir = join(witnessDir, instance);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.note')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const notes: string[] = [];
  for (const name of names) notes.push(await readFile(join(dir, name), 'utf8'));
  return notes;
}

/**
 * The logs to work on: every log in the sink or in `witness_dir` (sorted), or just `instance`.
 * @throws Error when `instance` is in neither; whatever reading the sink throws.
 */
export async function auditLogs(setup: AuditSetup, instance: string | undefined): Promise<string[]> {
  const all = new Set([...(await setup.sink.logs()), ...(await witnessInstances(setup.config.audit.seal.witness_dir))]);
  if (instance === undefined) return [...all].sort();
  if (!all.has(instance)) throw new Error(`there is no log ${instance} (logs: ${[...all].sort().join(', ') || 'none'})`);
  return [instance];
}

/** A log's records from `from` on, one sink read per page, in seq order (stops at the first short page). */
export async function* sinkPages(sink: AuditSink, instance: string, pageSize: number, from = 0): AsyncGenerator<StoredRecord[]> {
  let next = from;
  for (;;) {
    const page = await sink.read(instance, next, pageSize);
    if (page.length > 0) yield page;
    const last = page.at(-1);
    if (page.length < pageSize || last === undefined) return;
    next = last.seq + 1;
  }
}

/** {@link sinkPages}, each page read packed (one buffer, see verify-digest.ts). */
export async function* packedPages(reader: PackedReader, instance: string, pageSize: number, from = 0): AsyncGenerator<PackedRecords> {
  let next = from;
  for (;;) {
    const page = await reader.readPacked(instance, next, pageSize);
    const count = page.positions.length;
    if (count > 0) yield page;
    const last = page.positions[count - 1];
    if (count < pageSize || last === undefined) return;
    next = last + 1;
  }
}

/** A log's records from `from` on, read page by page, in seq order (stops at the first short page). */
export async function* sinkRecords(sink: AuditSink, instance: string, pageSize: number, from = 0): AsyncGenerator<StoredRecord> {
  for await (const page of sinkPages(sink, instance, pageSize, from)) yield* page;
}

/** A public key read from a file: named (a verifier key line) or not (PEM). */
export interface TrustedKey {
  readonly file: string;
  readonly publicKey: KeyObject;
  readonly name?: string;
}

/**
 * Reads public keys (PEM public or private key, or a verifier key line).
 * @throws Error naming the file when one cannot be read.
 */
export async function readTrustedKeys(files: readonly string[]): Promise<TrustedKey[]> {
  const keys: TrustedKey[] = [];
  for (const file of files) {
    try {
      const k = await readPublicKey(file);
      keys.push({ file, publicKey: k.publicKey, ...(k.name === undefined ? {} : { name: k.name }) });
    } catch (err) {
      throw new Error(`cannot read the public key ${file}: ${errorText(err)}`, { cause: err });
    }
  }
  return keys;
}

/** The key names on the signature lines of `notes`. */
export function signerNames(notes: Iterable<string>): Set<string> {
  const names = new Set<string>();
  for (const note of notes) {
    const opened = openNote(note, []);
    if (!('error' in opened)) for (const s of opened.signatures) names.add(s.name);
  }
  return names;
}

/**
 * Verifiers for `keys`: a verifier key line under its own name; a PEM key under each of `names` (a
 * signed-note key id commits to name and key, so trying every name seen costs no trust).
 */
export function verifiersFor(keys: readonly TrustedKey[], names: Iterable<string>): NoteVerifier[] {
  const list = [...new Set(names)];
  const out: NoteVerifier[] = [];
  for (const k of keys) {
    for (const name of k.name === undefined ? list : [k.name]) {
      try {
        out.push(verifierFromPublicKey(name, k.publicKey));
      } catch {
        // An invalid key name on a signature line: nothing to verify under it.
      }
    }
  }
  return out;
}

const USAGE = `Usage: portcullis audit verify [--config FILE] [--public-key FILE ...] [--instance ID] [--json]
       portcullis audit verify --from-export FILE --public-key FILE [--instance ID] [--json]
       portcullis audit verify --proof FILE --record FILE --public-key FILE

Checks every audit log against its signed checkpoints: recomputes each Merkle tree from the records,
checks every checkpoint's signature and chain, the records' seq/prev chain, and that the sink's newest
checkpoint is not behind the copy in audit.seal.witness_dir. Prints one line per finding, then a
summary such as "verified 2 logs: 401234/401234 records, 412/412 checkpoints" (sealed/total records,
valid/total checkpoints).

Options:
  --config FILE        the gateway's YAML configuration; its audit sink, witness_dir and seal key are
                       read (default: $PORTCULLIS_CONFIG, else config/portcullis.yaml)
  --public-key FILE    a trusted checkpoint key: PEM public (or private) key, or a verifier key line
                       <name>+<hex>+<base64>; repeat for several (e.g. across a rotation). Default:
                       the public half of audit.seal.key_file (and previous_key_file)
  --from-export FILE   verify an export (portcullis audit export) offline; needs --public-key
  --instance ID        only this gateway instance's log
  --json               findings as JSON lines, then a JSON summary line
  --proof FILE         check a C2SP tlog-proof (portcullis audit prove) offline …
  --record FILE        … for this record file; needs --public-key

Exit status: 0 intact (notices such as unsealed-tail allowed), 3 tampered (or the proof is invalid),
1 the inputs could not be read, 2 bad command line.
`;

const OPTIONS = {
  config: { type: 'string' },
  'from-export': { type: 'string' },
  'public-key': { type: 'string', multiple: true },
  json: { type: 'boolean' },
  instance: { type: 'string' },
  proof: { type: 'string' },
  record: { type: 'string' },
} as const;

/** A finding as a text line. */
export function formatFinding(f: Finding): string {
  const quote = (s: string) => (/^[\x21-\x7e]+$/.test(s) ? s : JSON.stringify(s));
  const at = [
    `log=${quote(f.log)}`,
    ...(f.seq === undefined ? [] : [`seq=${f.seq}`]),
    ...(f.id === undefined || f.id === '' ? [] : [`id=${quote(f.id)}`]),
    ...(f.checkpoint === undefined ? [] : [`checkpoint=${f.checkpoint}`]),
  ];
  return `${f.severity === 'tampered' ? 'TAMPERED' : 'notice'} ${f.code} ${at.join(' ')}: ${f.message}`;
}

/** Totals over the logs verified. */
export interface VerifySummary {
  readonly logs: number;
  readonly records: number;
  readonly sealedRecords: number;
  readonly checkpoints: number;
  readonly validCheckpoints: number;
  readonly tampered: number;
  readonly notices: number;
}

/** Adds up reports. */
export function summarize(reports: readonly LogReport[]): VerifySummary {
  const sum = (f: (r: LogReport) => number) => reports.reduce((n, r) => n + f(r), 0);
  return {
    logs: reports.length,
    records: sum((r) => r.records),
    sealedRecords: sum((r) => r.sealedRecords),
    checkpoints: sum((r) => r.checkpoints),
    validCheckpoints: sum((r) => r.validCheckpoints),
    tampered: sum((r) => r.findings.filter((f) => FINDING_CODES[f.code] === 'tampered').length),
    notices: sum((r) => r.findings.filter((f) => FINDING_CODES[f.code] === 'notice').length),
  };
}

/** The summary line, e.g. `verified 2 logs: 401234/401234 records, 412/412 checkpoints`. */
export function summaryLine(s: VerifySummary): string {
  return `verified ${s.logs} log${s.logs === 1 ? '' : 's'}: ${s.sealedRecords}/${s.records} records, ${s.validCheckpoints}/${s.checkpoints} checkpoints`;
}

/** Records per sink read in `audit verify` (unless `pageSize` is given): fewer, larger reads. */
const VERIFY_PAGE_SIZE = 4096;

/** Thrown for inputs that cannot be read (exit 1). */
class InputError extends Error {}

/**
 * Runs `audit verify`. `args` are the words after `audit verify`.
 * @returns 0 intact, 3 tampered or invalid proof, 1 inputs unreadable, 2 usage error.
 */
export async function runAuditVerify(args: readonly string[], io: CliIo, opts: AuditToolOptions = {}): Promise<number> {
  const parsed = parseCommand(args, OPTIONS, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  const v = parsed.values;
  const keyFiles = v['public-key'] ?? [];
  const usage = (message: string): number => {
    io.stderr(`audit verify: ${message}\n\n${USAGE}`);
    return 2;
  };
  if ((v.proof === undefined) !== (v.record === undefined)) return usage('--proof and --record go together');
  if (v.proof !== undefined && v.record !== undefined) {
    if (v['from-export'] !== undefined) return usage('--proof cannot be combined with --from-export');
    if (keyFiles.length === 0) return usage('--proof needs --public-key (the key that signs the checkpoints)');
    return verifyProofFiles(v.proof, v.record, keyFiles, io);
  }
  if (v['from-export'] !== undefined && keyFiles.length === 0) {
    return usage('--from-export needs --public-key: an export is checked against a key you obtained independently');
  }
  if (v.instance !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(v.instance)) return usage(`--instance expects an instance id; got ${JSON.stringify(v.instance)}`);

  const progress = opts.progress ?? process.stderr.isTTY;
  const reports: LogReport[] = [];
  const print = (report: LogReport): void => {
    reports.push(report);
    if (report.findings.length === 0) return;
    io.stdout(`${report.findings.map((f) => (v.json === true ? JSON.stringify({ type: 'finding', ...f }) : formatFinding(f))).join('\n')}\n`);
  };
  const verifyOne = async (material: LogMaterial, verifiers: NoteVerifier[]): Promise<void> => {
    const shown = { value: false };
    const onProgress = progress
      ? (n: number) => {
          shown.value = true;
          io.stderr(`\rverifying ${material.instance}: ${n} records`);
        }
      : undefined;
    const report = await verifyLog(material, verifiers, onProgress, opts.verify);
    if (shown.value) io.stderr('\r\x1b[K');
    print(report);
  };

  let code: number;
  if (v['from-export'] !== undefined) {
    code = await verifyExport(v['from-export'], keyFiles, v.instance, io, verifyOne);
  } else {
    code = await verifySink(v.config, keyFiles, v.instance, io, opts, verifyOne);
  }
  if (code !== 0) return code;
  const s = summarize(reports);
  if (v.json === true) {
    io.stdout(
      `${JSON.stringify({
        type: 'summary',
        result: s.tampered > 0 ? 'tampered' : 'intact',
        logs: s.logs,
        records: s.records,
        sealed_records: s.sealedRecords,
        checkpoints: s.checkpoints,
        valid_checkpoints: s.validCheckpoints,
        tampered: s.tampered,
        notices: s.notices,
      })}\n`,
    );
  } else {
    io.stdout(`${summaryLine(s)}\n`);
  }
  return s.tampered > 0 ? 3 : 0;
}

type VerifyOne = (material: LogMaterial, verifiers: NoteVerifier[]) => Promise<void>;

async function verifySink(configFile: string | undefined, keyFiles: readonly string[], instance: string | undefined, io: CliIo, opts: AuditToolOptions, verifyOne: VerifyOne): Promise<number> {
  const setup = await openAuditSetup(configFile, io, opts);
  if (typeof setup === 'number') return setup;
  const { config, sink, where } = setup;
  const seal = config.audit.seal;
  try {
    let keys: TrustedKey[];
    try {
      if (keyFiles.length > 0) {
        keys = await readTrustedKeys(keyFiles);
      } else {
        const own = await readTrustedKeys([seal.key_file, ...(seal.previous_key_file === undefined ? [] : [seal.previous_key_file])]);
        keys = own.map((k) => ({ ...k, name: seal.origin }));
      }
    } catch (err) {
      io.stderr(`audit verify: ${errorText(err)}${keyFiles.length === 0 ? ' (audit.seal.key_file; or pass --public-key FILE)' : ''}\n`);
      return 1;
    }
    let logs: string[];
    try {
      logs = await auditLogs(setup, instance);
    } catch (err) {
      io.stderr(`audit verify: cannot read ${where}: ${readFailure(sink, err)}\n`);
      return 1;
    }
    for (const log of logs) {
      let witness: string[];
      let checkpoints: string[];
      try {
        // Witness first, then the sink's checkpoints, then the records: whatever is sealed while this
        // runs is then only ever newer than what was read before it.
        witness = await readWitness(seal.witness_dir, log);
      } catch (err) {
        io.stderr(`audit verify: cannot read the witness copies in ${join(seal.witness_dir, log)}: ${errorText(err)}\n`);
        return 1;
      }
      try {
        checkpoints = await sink.readCheckpoints(log);
        const verifiers = verifiersFor(keys, [seal.origin, ...signerNames([...checkpoints, ...witness])]);
        const pageSize = opts.pageSize ?? VERIFY_PAGE_SIZE;
        const pages = isPackedReader(sink) ? packedPages(sink, log, pageSize) : sinkPages(sink, log, pageSize);
        await verifyOne({ instance: log, origin: `${seal.origin}/${log}`, records: { pages }, checkpoints, witness }, verifiers);
      } catch (err) {
        io.stderr(`audit verify: cannot read log ${log} from ${where}: ${readFailure(sink, err)}\n`);
        return 1;
      }
    }
    return 0;
  } finally {
    await sink.close().catch(() => undefined);
  }
}

async function verifyExport(file: string, keyFiles: readonly string[], instance: string | undefined, io: CliIo, verifyOne: VerifyOne): Promise<number> {
  try {
    const keys = await readTrustedKeys(keyFiles).catch((err: unknown) => {
      throw new InputError(errorText(err));
    });
    const summary = await scanExport(file);
    const logs = summary.logs.filter((l) => instance === undefined || l.instance === instance);
    if (instance !== undefined && logs.length === 0) throw new InputError(`${file} holds no log ${instance}`);
    for (const log of logs) {
      const verifiers = verifiersFor(keys, signerNames([...log.checkpoints, ...log.witness]));
      const material: LogMaterial = {
        instance: log.instance,
        origin: log.origin,
        records: exportRecords(file, log.instance, log.start?.seq ?? 0),
        checkpoints: log.checkpoints,
        witness: log.witness,
        ...(log.start === undefined ? {} : { start: log.start }),
      };
      try {
        await verifyOne(material, verifiers);
      } catch (err) {
        if (err instanceof ExportFormatError) throw err;
        // A start state that does not fit together (verifyLog refuses it).
        if (err instanceof TypeError || err instanceof RangeError) throw new InputError(`${file}: log ${log.instance}: ${err.message}`);
        throw err;
      }
    }
    return 0;
  } catch (err) {
    io.stderr(`audit verify: ${err instanceof InputError || err instanceof ExportFormatError ? err.message : `cannot read ${file}: ${errorText(err)}`}\n`);
    return 1;
  }
}

/** What checking a proof found. */
export type ProofCheck = { ok: true; message: string } | { ok: false; message: string };

/**
 * Checks a C2SP tlog-proof for `record` (the record's stored bytes) against trusted verifiers: the
 * checkpoint's signature, the record's own `seq` and `log` against the proof's index and the
 * checkpoint's origin, and the RFC 9162 inclusion of its leaf hash under the checkpoint's root.
 */
export function checkProof(proofText: string, record: Buffer, verifiers: readonly NoteVerifier[]): ProofCheck {
  const proof = parseTlogProof(proofText);
  if ('error' in proof) return { ok: false, message: `not a tlog-proof: ${proof.error}` };
  const opened = openNote(proof.checkpoint, verifiers);
  if ('error' in opened) return { ok: false, message: `the checkpoint cannot be read: ${opened.error}` };
  const cp = parseCheckpoint(opened.text);
  if ('error' in cp) return { ok: false, message: `the checkpoint cannot be read: ${cp.error}` };
  const signer = opened.signatures.find((s) => s.known && s.verified);
  if (signer === undefined) {
    const known = opened.signatures.some((s) => s.known);
    return { ok: false, message: known ? 'the checkpoint signature does not verify (altered checkpoint)' : 'the checkpoint is not signed by a trusted key' };
  }
  let parsed: { seq?: unknown; log?: unknown; id?: unknown };
  try {
    parsed = JSON.parse(record.toString('utf8')) as typeof parsed;
  } catch {
    return { ok: false, message: 'the record file is not a JSON audit record' };
  }
  if (typeof parsed !== 'object' || (parsed as unknown) === null) return { ok: false, message: 'the record file is not a JSON audit record' };
  if (parsed.seq !== proof.index) return { ok: false, message: `the record has seq ${String(parsed.seq)} but the proof is for index ${proof.index}` };
  if (parsed.log !== undefined && parsed.log !== cp.origin) return { ok: false, message: `the record belongs to log ${JSON.stringify(parsed.log)}, the checkpoint to ${cp.origin}` };
  const check = verifyInclusion(proof.index, cp.size, leafHash(record), proof.hashes, cp.root);
  if (!check.ok) return { ok: false, message: `the inclusion proof does not hold: ${check.message}` };
  const id = typeof parsed.id === 'string' ? ` (id ${parsed.id})` : '';
  return { ok: true, message: `record ${proof.index}${id} is in ${cp.origin}: included in checkpoint ${cp.number} (size ${cp.size}), signed by ${signer.name}+${signer.keyId}` };
}

/** The record bytes of a record file: its content, less one final newline. */
export function recordFileBytes(content: Buffer): Buffer {
  return content.at(-1) === 0x0a ? content.subarray(0, -1) : content;
}

async function verifyProofFiles(proofFile: string, recordFile: string, keyFiles: readonly string[], io: CliIo): Promise<number> {
  let proofText: string;
  let record: Buffer;
  let keys: TrustedKey[];
  try {
    proofText = await readFile(proofFile, 'utf8');
    record = recordFileBytes(await readFile(recordFile));
    keys = await readTrustedKeys(keyFiles);
  } catch (err) {
    io.stderr(`audit verify: ${errorText(err)}\n`);
    return 1;
  }
  const proof = parseTlogProof(proofText);
  if ('error' in proof) {
    io.stderr(`audit verify: ${proofFile} is not a C2SP tlog-proof: ${proof.error}\n`);
    return 1;
  }
  const result = checkProof(proofText, record, verifiersFor(keys, signerNames([proof.checkpoint])));
  if (result.ok) {
    io.stdout(`proof valid: ${result.message}\n`);
    return 0;
  }
  io.stdout(`proof INVALID: ${result.message}\n`);
  return 3;
}
