/**
 * `portcullis audit export --out FILE [--since T]`: writes every log's records, checkpoints and
 * witness copies to one JSON-lines file (format: src/audit/export-format.ts) that
 * `audit verify --from-export FILE --public-key K` checks offline. With `--since`, each log is
 * exported from its first record with `ts >= T`, preceded by the tree state over the records before
 * it. Written to a temporary file (mode 0600) and renamed into place, so FILE is never half written.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { leafHash } from '../audit/canonical.js';
import { EXPORT_HEADER_TYPE, EXPORT_VERSION, formatExportLine, type ExportLine } from '../audit/export-format.js';
import { CompactRange } from '../audit/merkle.js';
import { parseTimeBound } from '../audit/record-filter.js';
import { errorText, readFailure } from './audit-query.js';
import { openAuditSetup } from './audit-query.js';
import { auditLogs, readWitness, sinkRecords, type AuditToolOptions } from './audit-verify.js';
import { parseCommand, type CliIo } from './io.js';

const USAGE = `Usage: portcullis audit export --out FILE [--since T] [--config FILE] [--instance ID]

Writes the audit logs — records, the sink's checkpoints and the witness copies — to FILE, one JSON
object per line (mode 0600, replaced atomically). Check it anywhere with
  portcullis audit verify --from-export FILE --public-key KEY

Options:
  --out FILE        where to write the export (required)
  --since T         export each log from its first record with ts >= T (RFC 3339, or a duration
                    back from now: 90s, 15m, 2h, 7d); the tree state before it is included so the
                    export still verifies against the checkpoints
  --config FILE     the gateway's YAML configuration (default: $PORTCULLIS_CONFIG, else
                    config/portcullis.yaml)
  --instance ID     only this gateway instance's log (default: every log)

Exit status: 0 written, 1 config invalid or the sink could not be read or FILE not written,
2 bad command line.
`;

const OPTIONS = {
  out: { type: 'string', short: 'o' },
  since: { type: 'string' },
  config: { type: 'string' },
  instance: { type: 'string' },
} as const;

/** Buffers lines and writes them in large chunks. */
function bufferedWriter(fh: FileHandle) {
  let chunks: string[] = [];
  let size = 0;
  const flush = async () => {
    if (chunks.length === 0) return;
    const data = chunks.join('');
    chunks = [];
    size = 0;
    await fh.write(data);
  };
  return {
    async line(line: ExportLine): Promise<void> {
      const text = formatExportLine(line);
      chunks.push(text);
      size += text.length;
      if (size >= 1 << 20) await flush();
    },
    flush,
  };
}

/**
 * Runs `audit export`. `args` are the words after `audit export`.
 * @returns 0 when written, 1 when the config, the sink or the output failed, 2 on a usage error.
 */
export async function runAuditExport(args: readonly string[], io: CliIo, opts: AuditToolOptions = {}): Promise<number> {
  const parsed = parseCommand(args, OPTIONS, USAGE, io);
  if (typeof parsed === 'number') return parsed;
  const v = parsed.values;
  const usage = (message: string): number => {
    io.stderr(`audit export: ${message}\n\n${USAGE}`);
    return 2;
  };
  if (v.out === undefined || v.out === '') return usage('--out FILE is required');
  const now = (opts.now ?? Date.now)();
  let since: number | undefined;
  if (v.since !== undefined) {
    since = parseTimeBound(v.since, now);
    if (since === undefined) return usage(`--since expects an RFC 3339 time (2026-11-26T10:00:00Z) or a duration ago (15m, 2h, 7d); got ${JSON.stringify(v.since)}`);
  }
  if (v.instance !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(v.instance)) return usage(`--instance expects an instance id; got ${JSON.stringify(v.instance)}`);

  const setup = await openAuditSetup(v.config, io, opts);
  if (typeof setup === 'number') return setup;
  const { config, sink, where } = setup;
  const seal = config.audit.seal;
  const out = v.out;
  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString('hex')}.tmp`);
  let fh: FileHandle | undefined;
  let stage: 'sink' | 'write' = 'write';
  try {
    fh = await open(tmp, 'wx', 0o600);
    const w = bufferedWriter(fh);
    await w.line({ type: EXPORT_HEADER_TYPE, v: EXPORT_VERSION, created: new Date(now).toISOString() });
    stage = 'sink';
    const logs = await auditLogs(setup, v.instance);
    let records = 0;
    let checkpoints = 0;
    for (const instance of logs) {
      await w.line({ type: 'log', instance, origin: `${seal.origin}/${instance}` });
      // Witness first, then the sink's checkpoints, then the records (see export-format.ts).
      for (const note of await readWitness(seal.witness_dir, instance)) await w.line({ type: 'witness', instance, note });
      for (const note of await sink.readCheckpoints(instance)) {
        await w.line({ type: 'checkpoint', instance, note });
        checkpoints += 1;
      }
      const range = new CompactRange();
      let prev = '0'.repeat(64);
      let started = since === undefined;
      for await (const rec of sinkRecords(sink, instance, setup.pageSize)) {
        const text = rec.bytes.toString('utf8');
        if (!started && since !== undefined && tsOf(text) >= since) {
          started = true;
          if (range.size > 0) await w.line({ type: 'start', instance, seq: range.size, range: range.toJSON(), prev });
        }
        if (started) {
          await w.line({ type: 'record', instance, r: text });
          records += 1;
        } else {
          const h = leafHash(rec.bytes);
          range.append(h);
          prev = h.toString('hex');
        }
      }
      // Nothing at or after --since: the export still carries the state, so its checkpoints verify.
      if (!started && range.size > 0) await w.line({ type: 'start', instance, seq: range.size, range: range.toJSON(), prev });
    }
    stage = 'write';
    await w.flush();
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, out);
    io.stderr(`exported ${records} records and ${checkpoints} checkpoints of ${logs.length} log${logs.length === 1 ? '' : 's'} to ${out}\n`);
    return 0;
  } catch (err) {
    io.stderr(stage === 'sink' ? `audit export: cannot read ${where}: ${readFailure(sink, err)}\n` : `audit export: cannot write ${out}: ${errorText(err)}\n`);
    return 1;
  } finally {
    if (fh !== undefined) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    await sink.close().catch(() => undefined);
  }
}

/** A stored record's `ts` in epoch ms; -Infinity when it has none (never selected by --since). */
function tsOf(text: string): number {
  try {
    const ts = (JSON.parse(text) as { ts?: unknown }).ts;
    const at = typeof ts === 'string' ? Date.parse(ts) : Number.NaN;
    return Number.isNaN(at) ? Number.NEGATIVE_INFINITY : at;
  } catch {
    return Number.NEGATIVE_INFINITY;
  }
}
