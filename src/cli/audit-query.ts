/**
 * `portcullis audit query [--config FILE] [filters] [--limit N]`: prints the stored records that match
 * the filters as JSON lines — each line is a record's stored canonical bytes, verbatim. Logs are read
 * in sorted order, each oldest first, page by page (never the whole log in memory).
 *
 * Also the shared part of `audit tail` (src/cli/audit-tail.ts): options, usage text, config and sink
 * setup, and turning stored records into output lines.
 */
import { createAuditSink } from '../audit/create-sink.js';
import { matches, parseFilter, type RecordFilter } from '../audit/record-filter.js';
import type { AuditSink, StoredRecord } from '../audit/sink.js';
import { formatIssues, loadConfigFile, type Config } from '../config/index.js';
import { DEFAULT_REDIS_URL } from '../store/redis-connection.js';
import { configPath, parseCommand, type CliIo, type CommandOptions } from './io.js';

/** The options `audit query` and `audit tail` share. */
export const AUDIT_READ_OPTIONS = {
  config: { type: 'string' },
  user: { type: 'string' },
  route: { type: 'string' },
  decision: { type: 'string' },
  kind: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string', short: 'n' },
  instance: { type: 'string' },
} as const satisfies CommandOptions;

/** Usage lines for the shared options. */
export const AUDIT_READ_OPTIONS_HELP = `  --config FILE     the gateway's YAML configuration; its audit.sink is read
                    (default: $PORTCULLIS_CONFIG, else config/portcullis.yaml)
  --user U          identity.user equal to U, or identity.email equal to U ignoring case
  --route R         records of route R
  --decision D      allow, deny, step_up, unauthenticated, not_found or error
  --kind K          http, websocket, postgres, auth or config
  --since T         records with ts >= T; T is RFC 3339 (2026-11-26T10:00:00Z, 2026-11-26)
                    or a duration back from now (90s, 15m, 2h, 7d)
  --until T         records with ts < T (same forms)
  --instance ID     only the log of this gateway instance (default: every log in the sink)`;

/** Dependencies of the audit read commands; tests replace them. */
export interface AuditReadOptions {
  /** The current time in epoch ms, for relative `--since` / `--until`. Default `Date.now`. */
  readonly now?: () => number;
  /** Records per sink read. Default 1000. */
  readonly pageSize?: number;
  /** Builds the sink from `audit.sink`. Default {@link createAuditSink}. */
  readonly createSink?: (config: Config['audit']['sink']) => AuditSink;
}

/** What a read command works with once its command line and config are accepted. */
export interface AuditReadSetup {
  readonly filter: RecordFilter;
  /** `--limit` (0 = none for query, no backlog for tail). */
  readonly limit: number;
  readonly sink: AuditSink;
  /** The sink for messages, e.g. `the redis sink at redis://127.0.0.1:6379/0 (stream portcullis:audit)`. */
  readonly where: string;
  readonly pageSize: number;
}

/** A URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}

/** The configured sink, described for messages. */
export function describeSink(config: Config['audit']['sink']): string {
  if (config.type === 'file') return `the file sink in ${config.dir}`;
  const where =
    config.cluster !== undefined
      ? `cluster ${config.cluster.nodes.join(',')}`
      : config.sentinel !== undefined
        ? `sentinel group ${config.sentinel.name} (${config.sentinel.nodes.join(',')})`
        : redactUrl(config.url ?? DEFAULT_REDIS_URL);
  return `the redis sink at ${where} (stream ${config.stream})`;
}

/** The message of whatever was thrown. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Why a sink read failed, for stderr: the error, plus a hint when Redis did not answer. */
export function readFailure(sink: AuditSink, err: unknown): string {
  return sink.kind === 'redis' ? `${errorText(err)} (is Redis running and reachable from here?)` : errorText(err);
}

/**
 * Parses a read command's arguments, validates its filters, loads the config and creates the sink.
 * Returns the exit code instead when the command is answered: 0 after `--help`, 2 for a bad command
 * line or filter, 1 when the config is invalid or unreadable (printed as FILE:LINE:COL: message).
 */
export async function setUpAuditRead(
  command: string,
  args: readonly string[],
  usage: string,
  io: CliIo,
  opts: AuditReadOptions,
  defaultLimit: number,
): Promise<AuditReadSetup | number> {
  const parsed = parseCommand(args, AUDIT_READ_OPTIONS, usage, io);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const filter = parseFilter(values, (opts.now ?? Date.now)());
  const errors = filter.ok ? [] : [...filter.errors];
  let limit = defaultLimit;
  if (values.limit !== undefined) {
    if (/^\d{1,15}$/.test(values.limit)) limit = Number(values.limit);
    else errors.push(`--limit expects a whole number (0 = ${command === 'query' ? 'no limit' : 'no backlog'}); got ${JSON.stringify(values.limit)}`);
  }
  if (!filter.ok || errors.length > 0) {
    io.stderr(`${errors.map((e) => `audit ${command}: ${e}`).join('\n')}\n\n${usage}`);
    return 2;
  }
  const setup = await openAuditSetup(values.config, io, opts);
  if (typeof setup === 'number') return setup;
  return { filter: filter.filter, limit, sink: setup.sink, where: setup.where, pageSize: setup.pageSize };
}

/** The config and sink a command works with. */
export interface AuditSetup {
  readonly config: Config;
  readonly sink: AuditSink;
  /** The sink, described for messages. */
  readonly where: string;
  readonly pageSize: number;
}

/**
 * Loads the config (`--config`, else $PORTCULLIS_CONFIG, else config/portcullis.yaml) and creates its
 * sink. Returns 1 after printing the problems when the config is invalid or unreadable.
 */
export async function openAuditSetup(configFile: string | undefined, io: CliIo, opts: AuditReadOptions): Promise<AuditSetup | number> {
  const file = configPath(configFile, io);
  const loaded = await loadConfigFile(file, io.env);
  if (!loaded.ok) {
    io.stderr(`${formatIssues(loaded.issues)}\n`);
    return 1;
  }
  const sinkConfig = loaded.config.audit.sink;
  const sink = (opts.createSink ?? ((c: Config['audit']['sink']) => createAuditSink(c)))(sinkConfig);
  return { config: loaded.config, sink, where: describeSink(sinkConfig), pageSize: opts.pageSize ?? 1000 };
}

/** A stored record that passed the filter, with its output line (the stored bytes, verbatim). */
export interface Match {
  readonly log: string;
  readonly seq: number;
  /** `ts` in epoch ms (NaN when the record has none). */
  readonly at: number;
  readonly line: string;
}

/**
 * The records of `page` that pass `filter`, as output lines. A stored record that is not JSON is
 * reported on stderr and skipped (`audit verify` is the tool for damaged logs).
 */
export function matchPage(log: string, page: readonly StoredRecord[], filter: RecordFilter, io: CliIo, command: string): Match[] {
  const out: Match[] = [];
  for (const stored of page) {
    const line = stored.bytes.toString('utf8');
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      io.stderr(`audit ${command}: log ${log} record ${stored.seq} is not JSON; skipped (run portcullis audit verify)\n`);
      continue;
    }
    if (!matches(record, filter)) continue;
    const ts = typeof record === 'object' && record !== null ? (record as { ts?: unknown }).ts : undefined;
    out.push({ log, seq: stored.seq, at: typeof ts === 'string' ? Date.parse(ts) : Number.NaN, line });
  }
  return out;
}

/** Prints output lines in one write. */
export function printMatches(found: readonly Match[], io: CliIo): void {
  if (found.length > 0) io.stdout(`${found.map((m) => m.line).join('\n')}\n`);
}

const USAGE = `Usage: portcullis audit query [--config FILE] [filters] [--limit N]

Prints the audit records that match every filter given, as JSON lines: each line is a record's
stored canonical bytes. Logs are read in sorted order (one per gateway instance), each oldest first.

Options:
${AUDIT_READ_OPTIONS_HELP}
  --limit N, -n N   stop after N matching records (default 100; 0 = no limit)

Exit status: 0 done (also when nothing matched), 1 config invalid or the sink could not be read,
2 bad command line.
`;

/**
 * Runs `audit query`. `args` are the words after `audit query`.
 * @returns 0 when done, 1 when the config or the sink failed, 2 on a usage error.
 */
export async function runAuditQuery(args: readonly string[], io: CliIo, opts: AuditReadOptions = {}): Promise<number> {
  const setup = await setUpAuditRead('query', args, USAGE, io, opts, 100);
  if (typeof setup === 'number') return setup;
  const { filter, limit, sink, where, pageSize } = setup;
  try {
    const logs = filter.instance !== undefined ? [filter.instance] : await sink.logs();
    let printed = 0;
    for (const log of logs) {
      let from = 0;
      for (;;) {
        const page = await sink.read(log, from, pageSize);
        let found = matchPage(log, page, filter, io, 'query');
        if (limit > 0 && printed + found.length >= limit) found = found.slice(0, limit - printed);
        printMatches(found, io);
        printed += found.length;
        if (limit > 0 && printed >= limit) return 0;
        const last = page.at(-1);
        if (page.length < pageSize || last === undefined) break;
        from = last.seq + 1;
      }
    }
    return 0;
  } catch (err) {
    io.stderr(`audit query: cannot read ${where}: ${readFailure(sink, err)}\n`);
    return 1;
  } finally {
    await sink.close().catch(() => undefined);
  }
}
