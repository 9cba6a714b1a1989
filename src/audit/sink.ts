/**
 * The audit sink port: where a log's records (and, for sealing, its checkpoints) are stored. One log
 * per gateway instance; each log has exactly one writer, which hands records to the sink in `seq`
 * order. Adapters: `file` (embedded default) and `redis` (Redis Streams). Both pass the contract
 * suite in test/contract/audit-sink.contract.ts.
 *
 * Appends are idempotent by `seq`: re-appending a record that is already stored with the same bytes
 * succeeds without storing it twice (a retry after a lost acknowledgement, a spool replay), while
 * different bytes under a stored `seq` fail with `AuditSinkConflictError`. A `seq` beyond the next
 * expected one fails with `AuditSinkGapError`: a log never has holes.
 */

/** One stored record: its position and its RFC 8785 canonical bytes (no trailing newline). */
export interface StoredRecord {
  readonly seq: number;
  readonly bytes: Buffer;
  /** Its RFC 9162 leaf hash, when the writer computed it already (the sealer then need not hash again). */
  readonly leaf?: Buffer;
}

/** Where a log stands. */
export interface LogHead {
  /** Number of records stored (= the next seq to append). */
  readonly size: number;
  /** The canonical bytes of the last record, undefined when the log is empty. */
  readonly last: Buffer | undefined;
}

/** The sink port. `log` is the instance id (SPEC §5), e.g. `gw-0`. */
export interface AuditSink {
  readonly kind: 'file' | 'redis';
  /**
   * Appends records that follow the log's head, in order, contiguous by seq. Resolves once they are
   * durable in the sink (file: fsynced; redis: acknowledged by the server).
   */
  append(log: string, records: readonly StoredRecord[]): Promise<void>;
  /** The log's size and last record. */
  head(log: string): Promise<LogHead>;
  /** Up to `limit` records from `fromSeq` on, in seq order. */
  read(log: string, fromSeq: number, limit: number): Promise<StoredRecord[]>;
  /** The logs present in the sink (instance ids), sorted. */
  logs(): Promise<string[]>;
  /** Appends a signed checkpoint (opaque text) to the log's checkpoint series. */
  appendCheckpoint(log: string, text: string): Promise<void>;
  /** Every checkpoint of the log, oldest first. */
  readCheckpoints(log: string): Promise<string[]>;
  /** True when the sink can take records right now. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** A record with this seq is stored already, with other bytes. */
export class AuditSinkConflictError extends Error {
  constructor(readonly log: string, readonly seq: number) {
    super(`audit log ${log}: record ${seq} is already stored with different bytes`);
    this.name = 'AuditSinkConflictError';
  }
}

/** The append would leave a hole: its first seq is past the log's size. */
export class AuditSinkGapError extends Error {
  constructor(readonly log: string, readonly expected: number, readonly got: number) {
    super(`audit log ${log}: expected record ${expected} next, got ${got}`);
    this.name = 'AuditSinkGapError';
  }
}
