/**
 * Worker thread entry of the audit viewer's "verify now" (verify-run.ts): verifies every log of the
 * configured sink exactly as `portcullis audit verify --config …` does — the CLI's own helpers for
 * keys, witness copies and paging, and the verifier's public `verifyLog` — and reports each log's
 * result to the parent. It runs in its own thread with its own sink connection, so a long
 * verification never holds up the gateway's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readTrustedKeys, readWitness, signerNames, sinkRecords, summarize, summaryLine, verifiersFor, witnessInstances } from '../cli/audit-verify.js';
import type { Config } from '../config/index.js';
import { createAuditSink } from './create-sink.js';
import { FINDING_CODES, verifyLog, type LogReport } from './verify.js';
import type { VerifyWorkerMessage, VerifiedLog } from './verify-run.js';

/** Findings listed per log at most (the rest are counted). */
const MAX_LISTED = 100;

function post(message: VerifyWorkerMessage): void {
  parentPort?.postMessage(message);
}

function summaryOf(report: LogReport): VerifiedLog {
  const tampered = report.findings.filter((f) => FINDING_CODES[f.code] === 'tampered');
  const notices = report.findings.filter((f) => FINDING_CODES[f.code] === 'notice');
  const listed = [...tampered, ...notices].slice(0, MAX_LISTED);
  return {
    log: report.log,
    records: report.records,
    sealedRecords: report.sealedRecords,
    checkpoints: report.checkpoints,
    validCheckpoints: report.validCheckpoints,
    tampered: tampered.length,
    notices: notices.length,
    findings: listed,
    unlisted: report.findings.length - listed.length,
  };
}

async function main(audit: Config['audit']): Promise<void> {
  const sink = createAuditSink(audit.sink);
  const seal = audit.seal;
  try {
    const own = await readTrustedKeys([seal.key_file, ...(seal.previous_key_file === undefined ? [] : [seal.previous_key_file])]);
    const keys = own.map((k) => ({ ...k, name: seal.origin }));
    const logs = [...new Set([...(await sink.logs()), ...(await witnessInstances(seal.witness_dir))])].sort();
    const reports: LogReport[] = [];
    for (const log of logs) {
      // As the CLI: witness first, then the sink's checkpoints, then the records, so that whatever is
      // sealed meanwhile is only ever newer than what was read before it.
      const witness = await readWitness(seal.witness_dir, log);
      const checkpoints = await sink.readCheckpoints(log);
      const verifiers = verifiersFor(keys, [seal.origin, ...signerNames([...checkpoints, ...witness])]);
      post({ type: 'progress', log, records: 0 });
      // One thread is enough here: this runs beside a serving gateway, which keeps the other core.
      const report = await verifyLog(
        { instance: log, origin: `${seal.origin}/${log}`, records: sinkRecords(sink, log, 4096), checkpoints, witness },
        verifiers,
        (n) => {
          post({ type: 'progress', log, records: n });
        },
        { workers: 0 },
      );
      reports.push(report);
      post({ type: 'log', result: summaryOf(report) });
    }
    post({ type: 'done', summary: summaryLine(summarize(reports)) });
  } finally {
    await sink.close().catch(() => undefined);
  }
}

const data = workerData as { audit?: Config['audit'] } | null;
if (parentPort !== null && data?.audit !== undefined) {
  main(data.audit).catch((err: unknown) => {
    post({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  });
}
