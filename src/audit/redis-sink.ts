/**
 * The Redis audit sink: each log is two streams (SPEC §5), `<stream>:{<log>}:records` and
 * `<stream>:{<log>}:checkpoints`; the hash tag keeps both in one cluster slot, so each batch
 * is single-slot under Redis Cluster (the same key names with one node, Sentinel or Cluster).
 *
 * Records. Record `seq` is the entry with the explicit ID `0-<seq+1>` (`0-0` is not a valid ID) and the
 * one field `r` holding exactly its canonical bytes. Explicit IDs make a re-send harmless: Redis refuses
 * an ID at or below the stream's top ("equal or smaller than the target stream top item"), and the sink
 * then reads that entry back (XRANGE id id) — the same bytes count as stored, other bytes are an
 * `AuditSinkConflictError`. The sink never trims or deletes (no XTRIM, XDEL, DEL), so the ACL of its
 * Redis user can forbid all of those (deploy/redis/).
 *
 * Group commit. `append()` calls for a log queue up; each round takes what is queued (whole calls, up
 * to about 1,000 records), checks each call against the head in call order, and sends the new records
 * in one round trip: one `EVALSHA` of a script that XADDs them in order (one command for the client to
 * build and one reply to parse, ≈ 3 µs of client CPU per record against ≈ 11 µs for a MULTI of N
 * XADDs; docs/adr/0002). The script runs atomically and stops at the first failed XADD (out of memory,
 * refused by the ACL) — the records after it are reported as not attempted — so a failed batch never
 * leaves a hole in the stream; an ID at or below the top (a re-send) does not stop it, as with MULTI.
 * ACL checks apply inside the script: it can do nothing its user could not do directly. A Redis user
 * that may not run scripts (an ACL from before this change: NOPERM on EVALSHA) gets MULTI/EXEC
 * batches instead, all-or-nothing too, with one warning in the log.
 *
 * The head (size, last record) is cached per log once read with XREVRANGE and advanced by every
 * successful batch; the cache is tied to the TCP connection it was read on and dropped on any
 * reconnect or error. (XADD cannot refuse an ID that skips ahead, so the gap
 * check needs the head, and with one writer per log the cache is exact while the connection lasts.)
 *
 * Failure mode — fail fast, like the store (src/store/redis-store.ts): every command is bounded by
 * `commandTimeoutMs`; after the first connect the offline queue is off, so while Redis is away calls
 * reject at once and the caller spools; commands in flight when the connection drops are rejected,
 * never replayed (`autoResendUnfulfilledCommands: false`). A batch whose reply was lost may still have
 * been stored: appending it again is how the caller finds out, and the explicit IDs make that safe.
 *
 * Checkpoints are `XADD <checkpoints key> * c <text>`: not idempotent, so a checkpoint whose reply was
 * lost and that is appended again is stored twice.
 *
 * Preconditions: one writer per log; log names are instance ids (letters, digits, `.`, `-`, `_`); record
 * bytes are canonical JSON, so never empty and never containing a raw line feed (refused, as by the file
 * sink, so logs can move between sinks).
 */
import type { Logger } from 'pino';
import { AuditSinkConflictError, AuditSinkGapError, type AuditSink, type LogHead, type StoredRecord } from './sink.js';
import { checkLog, checkRange, checkRecords, isLogName, takeRound, type PendingAppend } from './sink-input.js';
import { createRedisConnection, quitOrDisconnect, scanKeys, type RedisConnectionConfig } from '../store/redis-connection.js';

/** Options for {@link createRedisSink}. */
export interface RedisSinkOptions {
  /** `redis://[user:pass@]host:port/db` or `rediss://…` for TLS (one node). Ignored when `connection` is given. */
  readonly url?: string;
  /** One node, Sentinel or Cluster, as configured in a redis `audit.sink` (src/store/redis-connection.ts). */
  readonly connection?: RedisConnectionConfig;
  /** The key prefix of every log's streams, e.g. `portcullis:audit`. */
  readonly stream: string;
  /** Connection state changes are logged on a `{component: 'audit-sink'}` child. */
  readonly logger?: Logger;
  /** How long one command may take, including time queued before the first connect. Default 1000. */
  readonly commandTimeoutMs?: number;
  /** How long one connection attempt may take, in ms. Default 2000. */
  readonly connectTimeoutMs?: number;
}

/**
 * Appends ARGV's (id, bytes) pairs to KEYS[1] as entries with the one field `r`, in order. Returns one
 * entry per record: 0 when stored, else the error. Stops at the first error other than "ID at or below
 * the top" (a re-send), reporting the rest as not attempted, so nothing after a failed record is stored.
 */
export const APPEND_LUA = `
local out = {}
local n = #ARGV / 2
for i = 1, n do
  local r = redis.pcall('XADD', KEYS[1], ARGV[2 * i - 1], 'r', ARGV[2 * i])
  if type(r) == 'table' and r.err then
    out[i] = r.err
    if not string.find(r.err, 'equal or smaller than the target stream top item', 1, true) then
      for j = i + 1, n do out[j] = 'NOTRUN an earlier record of this batch failed' end
      return out
    end
  else
    out[i] = 0
  end
end
return out`;

/** The command `defineCommand` adds (EVALSHA, falling back to EVAL once per connection). */
interface SinkScripts {
  portcullisAuditAppend(key: string, ...idsAndBytes: (string | Buffer)[]): Promise<unknown>;
}

/**
 * EVALSHA/EVAL refused as commands — by the ACL, or by a server without scripting: batches go as
 * MULTI/EXEC instead. (A NOPERM for the keys is not this: MULTI would be refused the same way.)
 */
const SCRIPT_REFUSED = /^NOPERM .*'(?:evalsha|eval)' command|^ERR unknown command/i;

/** One batch carries at most about this many records (whole calls; a larger single call goes alone). */
const MAX_ROUND_RECORDS = 1000;
const RECORD_ID = /^0-([1-9][0-9]*)$/;
const ID_NOT_ABOVE_TOP = /equal or smaller than the target stream top item/;
const CHECKPOINT_PAGE = 1000;
const SCAN_COUNT = 1000;




/** Escapes Redis glob characters so a prefix matches only itself in SCAN MATCH. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}


const recordId = (seq: number): string => `0-${seq + 1}`;

/** One stream entry as a record. @throws Error when the entry is not one the sink wrote. */
function toRecord(key: string, [id, fields]: [Buffer, Buffer[]]): StoredRecord {
  const match = RECORD_ID.exec(id.toString('latin1'));
  if (match?.[1] === undefined) throw new Error(`${key}: entry ${id.toString('latin1')} is not an audit record id`);
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1];
    if (fields[i]?.toString('latin1') === 'r' && value !== undefined) return { seq: Number(match[1]) - 1, bytes: value };
  }
  throw new Error(`${key}: entry ${id.toString('latin1')} has no field r`);
}



/** What the sink knows of a log's head, valid only on the connection (epoch) it was read on. */
interface KnownHead {
  readonly size: number;
  readonly last: Buffer | undefined;
  readonly epoch: number;
}

interface LogState {
  known: KnownHead | undefined;
  queue: PendingAppend[];
  flushing: Promise<void> | undefined;
}

/**
 * Creates a Redis Streams {@link AuditSink}. It starts connecting at once; see the module comment for
 * the layout, the group commit and the behaviour while Redis is unavailable. `close()` sends QUIT (or
 * drops the connection when Redis is away); afterwards every method except `ping` (false) and `close`
 * rejects.
 */
export function createRedisSink(opts: RedisSinkOptions): AuditSink {
  const log = opts.logger?.child({ component: 'audit-sink', sink: 'redis' });
  let closing: Promise<void> | undefined;
  const redis = createRedisConnection({
    connection: opts.connection ?? { url: opts.url },
    connectionName: 'portcullis-audit',
    what: 'redis audit sink',
    logger: log,
    connectTimeoutMs: opts.connectTimeoutMs,
    commandTimeoutMs: opts.commandTimeoutMs,
    isClosing: () => closing !== undefined,
  });
  redis.defineCommand('portcullisAuditAppend', { numberOfKeys: 1, lua: APPEND_LUA });
  const scripts = redis as unknown as SinkScripts;
  /** False once the server refused the script (see the module comment): MULTI/EXEC from then on. */
  let scripted = true;
  /**
   * Counts lost connections: a cached head is trusted only on the connection it was read on. ('close'
   * always fires before a reconnect, and commands queued before the first connect go out on it.)
   */
  let epoch = 0;
  redis.on('close', () => {
    epoch++;
  });
  // A Cluster (or a failover in it) changes which node holds a log without closing the cluster
  // connection: a node joining or leaving the connection pool once connected ends the cached head's
  // validity too. (The pool filling up during the first connect changes nothing.)
  for (const event of ['+node', '-node']) {
    redis.on(event, () => {
      if (redis.status === 'ready') epoch++;
    });
  }

  const states = new Map<string, LogState>();
  const recordsKey = (name: string): string => `${opts.stream}:{${name}}:records`;
  const checkpointsKey = (name: string): string => `${opts.stream}:{${name}}:checkpoints`;

  const assertOpen = (): void => {
    if (closing) throw new Error('the audit sink is closed');
  };

  const readHead = async (name: string): Promise<LogHead> => {
    const key = recordsKey(name);
    const entries = await redis.xrevrangeBuffer(key, '+', '-', 'COUNT', 1);
    const top = entries[0];
    if (top === undefined) return { size: 0, last: undefined };
    const record = toRecord(key, top);
    return { size: record.seq + 1, last: record.bytes };
  };

  /** Stored records [from, to], by seq (a missing one is simply absent). */
  const readStored = async (name: string, from: number, to: number): Promise<Map<number, Buffer>> => {
    const key = recordsKey(name);
    const entries = await redis.xrangeBuffer(key, recordId(from), recordId(to));
    return new Map(entries.map((entry) => toRecord(key, entry)).map((r) => [r.seq, r.bytes]));
  };

  /** Reads the head when none is cached for the current connection. */
  const knownHead = async (name: string, state: LogState): Promise<KnownHead> => {
    if (state.known?.epoch === epoch) return state.known;
    const at = epoch;
    const head = await readHead(name);
    if (at !== epoch) throw new Error('the connection to redis changed while the audit log head was read');
    state.known = { ...head, epoch: at };
    return state.known;
  };

  /** Stores the records in one round trip; resolves each one's error (null when stored). */
  const sendBatch = async (key: string, batch: readonly StoredRecord[]): Promise<(Error | null)[]> => {
    if (scripted) {
      const args: (string | Buffer)[] = [];
      for (const record of batch) args.push(recordId(record.seq), record.bytes);
      try {
        const replies = await scripts.portcullisAuditAppend(key, ...args);
        if (!Array.isArray(replies) || replies.length !== batch.length) throw new Error('redis returned no result for the audit batch');
        return replies.map((reply) => (reply === 0 ? null : new Error(String(reply))));
      } catch (err) {
        if (!(err instanceof Error) || !SCRIPT_REFUSED.test(err.message)) throw err;
        scripted = false;
        log?.warn(
          { err: err.message },
          "the audit sink's Redis user may not run the append script; sending batches as MULTI/EXEC, which costs about three times the CPU per record. Add +evalsha +eval to its ACL (deploy/redis/users.acl)",
        );
      }
    }
    const multi = redis.multi();
    for (const record of batch) multi.xadd(key, recordId(record.seq), 'r', record.bytes);
    const results = await multi.exec();
    if (results?.length !== batch.length) throw new Error('redis returned no result for the audit batch');
    return results.map(([err]) => err);
  };

  /** Takes every queued call, checks each against the head, sends the new records in one round trip. */
  const commitRound = async (name: string, state: LogState, round: readonly PendingAppend[]): Promise<void> => {
    let head: KnownHead;
    try {
      head = await knownHead(name, state);
    } catch (err) {
      for (const call of round) call.reject(err);
      return;
    }
    const batch: StoredRecord[] = [];
    const owners: PendingAppend[] = [];
    const accepted: PendingAppend[] = [];
    for (const call of round) {
      const first = call.records[0]?.seq ?? 0;
      const expected = head.size + batch.length;
      if (first > expected) {
        call.reject(new AuditSinkGapError(name, expected, first));
        continue;
      }
      const overlapEnd = Math.min(expected, first + call.records.length);
      try {
        let conflict: number | undefined;
        for (let seq = Math.max(first, head.size); seq < overlapEnd && conflict === undefined; seq++) {
          if (!call.records[seq - first]?.bytes.equals(batch[seq - head.size]?.bytes ?? Buffer.alloc(0))) conflict = seq;
        }
        const storedEnd = Math.min(head.size, overlapEnd);
        if (conflict === undefined && first < storedEnd) {
          const stored = await readStored(name, first, storedEnd - 1);
          for (let seq = first; seq < storedEnd && conflict === undefined; seq++) {
            const bytes = stored.get(seq);
            if (bytes === undefined || !bytes.equals(call.records[seq - first]?.bytes ?? Buffer.alloc(0))) conflict = seq;
          }
        }
        if (conflict !== undefined) {
          call.reject(new AuditSinkConflictError(name, conflict));
          continue;
        }
      } catch (err) {
        state.known = undefined;
        call.reject(err);
        continue;
      }
      for (const record of call.records.slice(overlapEnd - first)) {
        batch.push(record);
        owners.push(call);
      }
      accepted.push(call);
    }
    if (batch.length === 0) {
      for (const call of accepted) call.resolve();
      return;
    }
    // From this check to the write there is no await: the batch goes out on the connection the head was read on.
    if (state.known?.epoch !== epoch) {
      state.known = undefined;
      const err = new Error('the connection to redis changed during the append; append again');
      for (const call of accepted) call.reject(err);
      return;
    }
    let results: (Error | null)[];
    try {
      results = await sendBatch(recordsKey(name), batch);
    } catch (err) {
      state.known = undefined;
      for (const call of accepted) call.reject(err);
      return;
    }

    // Per call: the first failure among its records, if any.
    const failures = new Map<PendingAppend, unknown>();
    const toVerify: number[] = [];
    results.forEach((err, i) => {
      const owner = owners[i];
      if (err === null || owner === undefined) return;
      if (ID_NOT_ABOVE_TOP.test(err.message)) toVerify.push(i);
      else if (!failures.has(owner)) failures.set(owner, err);
    });
    if (toVerify.length > 0 || failures.size > 0) {
      // Someone else wrote to this log, or Redis refused: the cache is no longer the truth.
      state.known = undefined;
      if (toVerify.length > 0) {
        const from = batch[toVerify[0] ?? 0]?.seq ?? 0;
        const to = batch[toVerify.at(-1) ?? 0]?.seq ?? 0;
        let stored: Map<number, Buffer> | undefined;
        let readError: unknown;
        try {
          stored = await readStored(name, from, to);
        } catch (err) {
          readError = err;
        }
        for (const i of toVerify) {
          const record = batch[i];
          const owner = owners[i];
          if (record === undefined || owner === undefined || failures.has(owner)) continue;
          if (stored === undefined) failures.set(owner, readError);
          else if (!stored.get(record.seq)?.equals(record.bytes)) failures.set(owner, new AuditSinkConflictError(name, record.seq));
        }
      }
    } else {
      state.known = { size: head.size + batch.length, last: batch.at(-1)?.bytes, epoch: head.epoch };
    }
    for (const call of accepted) {
      if (failures.has(call)) call.reject(failures.get(call));
      else call.resolve();
    }
  };

  const flush = async (name: string, state: LogState): Promise<void> => {
    while (state.queue.length > 0) await commitRound(name, state, takeRound(state.queue, MAX_ROUND_RECORDS));
    state.flushing = undefined;
  };

  const stateOf = (name: string): LogState => {
    let state = states.get(name);
    if (state === undefined) {
      state = { known: undefined, queue: [], flushing: undefined };
      states.set(name, state);
    }
    return state;
  };

  return {
    kind: 'redis',

    append(name, records) {
      try {
        assertOpen();
        checkLog(name);
        checkRecords(records);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      if (records.length === 0) return Promise.resolve();
      const state = stateOf(name);
      const done = new Promise<void>((resolve, reject) => {
        state.queue.push({ records, resolve, reject });
      });
      state.flushing ??= flush(name, state);
      return done;
    },

    async head(name) {
      assertOpen();
      checkLog(name);
      return readHead(name);
    },

    async read(name, fromSeq, limit) {
      assertOpen();
      checkLog(name);
      checkRange(fromSeq, limit);
      if (limit === 0) return [];
      const key = recordsKey(name);
      const entries = await redis.xrangeBuffer(key, recordId(fromSeq), '+', 'COUNT', limit);
      return entries.map((entry) => toRecord(key, entry));
    },

    async logs() {
      assertOpen();
      const prefix = `${opts.stream}:{`;
      const found = new Set<string>();
      // Every master of a Cluster (SCAN is per node).
      for (const key of await scanKeys(redis, `${escapeGlob(prefix)}*}:*`, SCAN_COUNT)) {
        const suffix = key.endsWith('}:records') ? '}:records' : key.endsWith('}:checkpoints') ? '}:checkpoints' : undefined;
        if (suffix === undefined || !key.startsWith(prefix)) continue;
        const name = key.slice(prefix.length, key.length - suffix.length);
        if (isLogName(name)) found.add(name);
      }
      return [...found].sort();
    },

    async appendCheckpoint(name, text) {
      assertOpen();
      checkLog(name);
      if (Buffer.from(text, 'utf8').toString('utf8') !== text) throw new TypeError('checkpoint text is not well-formed Unicode');
      await redis.xadd(checkpointsKey(name), '*', 'c', text);
    },

    async readCheckpoints(name) {
      assertOpen();
      checkLog(name);
      const key = checkpointsKey(name);
      const texts: string[] = [];
      let start = '-';
      for (;;) {
        const entries = await redis.xrange(key, start, '+', 'COUNT', CHECKPOINT_PAGE);
        for (const [id, fields] of entries) {
          const at = fields.indexOf('c');
          const text = at % 2 === 0 ? fields[at + 1] : undefined;
          if (text === undefined) throw new Error(`${key}: entry ${id} has no field c`);
          texts.push(text);
        }
        const lastId = entries.at(-1)?.[0];
        if (entries.length < CHECKPOINT_PAGE || lastId === undefined) return texts;
        start = `(${lastId}`;
      }
    },

    async ping() {
      if (closing) return false;
      try {
        await redis.ping();
        return true;
      } catch {
        return false;
      }
    },

    close() {
      closing ??= (async () => {
        for (const state of states.values()) await state.flushing;
        await quitOrDisconnect(redis);
      })();
      return closing;
    },
  };
}
