/**
 * Runs a verification of every log in the configured sink for the audit viewer ("verify now"), in a
 * worker thread (verify-run-worker.ts) so that the gateway keeps serving at full speed meanwhile.
 * One run at a time: asking while one runs joins it. The newest result is kept for the health panel.
 *
 * The worker entry is `verify-run-worker.js` next to this module (the build in `dist/`); from the
 * TypeScript sources (vitest) the `.ts` entry is loaded through tsx's loader, like verify-pool.ts.
 */
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { Config } from '../config/index.js';
import type { Finding } from './verify.js';

/** One log's verification, as the viewer shows it. */
export interface VerifiedLog {
  readonly log: string;
  readonly records: number;
  readonly sealedRecords: number;
  readonly checkpoints: number;
  readonly validCheckpoints: number;
  /** Findings that mean tampering, and notices (e.g. `unsealed-tail`). */
  readonly tampered: number;
  readonly notices: number;
  /** The first findings (tampering first). */
  readonly findings: readonly Finding[];
  /** Findings not listed. */
  readonly unlisted: number;
}

/** A finished run. */
export interface VerificationRun {
  readonly startedAt: number;
  readonly finishedAt: number;
  /** `intact` (notices allowed), `tampered`, or `error` (the log could not be read). */
  readonly result: 'intact' | 'tampered' | 'error';
  readonly logs: readonly VerifiedLog[];
  /** The CLI's summary line, e.g. `verified 2 logs: 4213/4213 records, 12/12 checkpoints`. */
  readonly summary: string;
  readonly error?: string;
}

/** Where a running verification is. */
export interface VerificationProgress {
  readonly startedAt: number;
  readonly log: string | undefined;
  readonly records: number;
}

/** What the worker sends. */
export type VerifyWorkerMessage =
  | { readonly type: 'progress'; readonly log: string; readonly records: number }
  | { readonly type: 'log'; readonly result: VerifiedLog }
  | { readonly type: 'done'; readonly summary: string }
  | { readonly type: 'error'; readonly message: string };

function newWorker(audit: Config['audit']): Worker {
  const js = new URL('./verify-run-worker.js', import.meta.url);
  if (existsSync(js)) return new Worker(js, { workerData: { audit } });
  const ts = new URL('./verify-run-worker.ts', import.meta.url);
  if (!existsSync(ts)) throw new Error(`the verification worker is missing (${js.pathname})`);
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(ts.href)}); });`;
  return new Worker(boot, { eval: true, workerData: { audit } });
}

/** Creates the runner for one audit configuration. */
export function createVerificationRunner(opts: { audit: Config['audit']; now?: () => number; timeoutMs?: number }) {
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.timeoutMs ?? 30 * 60_000;
  let running: { promise: Promise<VerificationRun>; progress: VerificationProgress; worker: Worker } | undefined;
  let last: VerificationRun | undefined;

  function start(): Promise<VerificationRun> {
    const startedAt = now();
    const logs: VerifiedLog[] = [];
    let worker: Worker;
    try {
      worker = newWorker(opts.audit);
    } catch (err) {
      const run: VerificationRun = { startedAt, finishedAt: now(), result: 'error', logs, summary: '', error: err instanceof Error ? err.message : String(err) };
      last = run;
      return Promise.resolve(run);
    }
    const state = { progress: { startedAt, log: undefined, records: 0 } as VerificationProgress };
    const promise = new Promise<VerificationRun>((resolve) => {
      let settled = false;
      const finish = (result: VerificationRun['result'], summary: string, error?: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const run: VerificationRun = { startedAt, finishedAt: now(), result, logs, summary, ...(error === undefined ? {} : { error }) };
        last = run;
        running = undefined;
        void worker.terminate();
        resolve(run);
      };
      const timer = setTimeout(() => finish('error', '', `the verification did not finish within ${Math.round(timeoutMs / 1000)} s`), timeoutMs);
      timer.unref();
      worker.on('message', (m: VerifyWorkerMessage) => {
        switch (m.type) {
          case 'progress':
            state.progress = { startedAt, log: m.log, records: m.records };
            if (running !== undefined) running.progress = state.progress;
            break;
          case 'log':
            logs.push(m.result);
            break;
          case 'done':
            finish(logs.some((l) => l.tampered > 0) ? 'tampered' : 'intact', m.summary);
            break;
          case 'error':
            finish('error', '', m.message);
            break;
        }
      });
      worker.on('error', (err: Error) => finish('error', '', `the verification failed: ${err.message}`));
      worker.on('exit', (code: number) => finish('error', '', `the verification stopped (worker exit ${code})`));
    });
    running = { promise, progress: state.progress, worker };
    return promise;
  }

  return {
    /** Starts a run, or joins the one in progress. */
    run(): Promise<VerificationRun> {
      return running?.promise ?? start();
    },
    /** The run in progress, if any. */
    progress(): VerificationProgress | undefined {
      return running?.progress;
    },
    /** The newest finished run. */
    last(): VerificationRun | undefined {
      return last;
    },
    /** Stops a run in progress (shutdown). */
    async close(): Promise<void> {
      const r = running;
      if (r !== undefined) await r.worker.terminate();
    },
  };
}

/** The verification runner. */
export type VerificationRunner = ReturnType<typeof createVerificationRunner>;
