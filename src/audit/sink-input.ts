/**
 * What every AuditSink adapter shares: the argument checks (so both refuse the same bad input the
 * same way — TypeError: a programming error, not a sink failure) and the batching of queued
 * `append()` calls into rounds.
 */
import type { StoredRecord } from './sink.js';

const LF = 0x0a;
const LOG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

/** True when `log` is a usable instance id. */
export function isLogName(log: string): boolean {
  return LOG_NAME.test(log);
}

/** @throws TypeError unless `log` is a usable instance id (it names a directory or a key part). */
export function checkLog(log: string): void {
  if (!LOG_NAME.test(log)) throw new TypeError(`invalid audit log name ${JSON.stringify(log)}`);
}

/** @throws TypeError unless the records are a contiguous run of well-formed records. */
export function checkRecords(records: readonly StoredRecord[]): void {
  records.forEach((record, i) => {
    const first = records[0]?.seq ?? 0;
    if (!Number.isSafeInteger(record.seq) || record.seq < 0) throw new TypeError(`invalid record seq ${String(record.seq)}`);
    if (record.seq !== first + i) throw new TypeError(`records must be contiguous by seq: ${record.seq} follows ${first + i - 1}`);
    if (!Buffer.isBuffer(record.bytes) || record.bytes.length === 0) throw new TypeError(`record ${record.seq} has no bytes`);
    if (record.bytes.includes(LF)) throw new TypeError(`record ${record.seq} contains a line feed; canonical JSON never does`);
  });
}

/** @throws TypeError unless `fromSeq` and `limit` are non-negative integers. */
export function checkRange(fromSeq: number, limit: number): void {
  if (!Number.isSafeInteger(fromSeq) || fromSeq < 0) throw new TypeError(`invalid fromSeq ${String(fromSeq)}`);
  if (!Number.isSafeInteger(limit) || limit < 0) throw new TypeError(`invalid limit ${String(limit)}`);
}

/** One waiting `append()` call. */
export interface PendingAppend {
  readonly records: readonly StoredRecord[];
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Removes and returns the calls of the next round: whole calls in order, until about `maxRecords`
 * (a larger single call goes alone).
 */
export function takeRound(queue: PendingAppend[], maxRecords: number): PendingAppend[] {
  let records = 0;
  let n = 0;
  while (n < queue.length && (n === 0 || records + (queue[n]?.records.length ?? 0) <= maxRecords)) {
    records += queue[n]?.records.length ?? 0;
    n++;
  }
  return queue.splice(0, n);
}
