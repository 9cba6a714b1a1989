/**
 * Follows one client connection's conversation and tells when statements start and how they end
 * (pure: time and ids are passed in). Frontend messages queue what the server will answer, in order;
 * backend messages settle the head of that queue. This is the protocol's own rule: every extended
 * query message gets exactly one answer (none after an error, until Sync), a simple Query and a
 * FunctionCall end with ReadyForQuery, and an error in the extended protocol makes the server skip
 * every message up to the next Sync.
 *
 * A statement is one execution: a simple Query yields one per result (a Query string holding three
 * statements gives three), an extended Execute one, a FunctionCall one. A Parse or Bind that fails
 * is reported as a failed statement too (its SQL never ran, but the attempt is what an auditor wants
 * to see). Statements the server skipped after an error, and those still open when the connection
 * ends, are reported as such, so that every statement that was started has an end.
 */
import { BE, parseCommandTag, type FrontendMessage } from './protocol.js';

/** A statement about to be sent to the server (the caller records its intent first). */
export interface StatementStart {
  readonly id: string;
  readonly sql: string;
  readonly protocol: 'simple' | 'extended' | 'function';
  /** Bind parameters (extended protocol), when known. */
  readonly params: number | undefined;
  readonly startNs: bigint;
}

/** How a statement ended. */
export interface StatementEnd extends StatementStart {
  /**
   * `ok`: completed (CommandComplete, FunctionCallResponse); `empty`: an empty query; `suspended`:
   * an Execute row limit was reached (the portal may be continued); `error`: the server reported an
   * error; `skipped`: the server skipped it after an earlier error; `closed`: the connection ended
   * before an answer.
   */
  readonly outcome: 'ok' | 'empty' | 'suspended' | 'error' | 'skipped' | 'closed';
  /** The command tag's command (`SELECT`, `INSERT`, `CREATE TABLE` …). */
  readonly command: string | undefined;
  readonly rows: number | undefined;
  /** SQLSTATE of the error. */
  readonly error: string | undefined;
  readonly endNs: bigint;
}

/** A backend message as far as the tracker needs it. `rowsBefore`: DataRows since the previous event. */
export interface BackendEvent {
  readonly type: number;
  readonly rowsBefore: number;
  /** CommandComplete: the tag. */
  readonly tag?: string;
  /** ErrorResponse: SQLSTATE. */
  readonly code?: string;
  /** ReadyForQuery: transaction status. */
  readonly status?: string;
}

type Op =
  | { readonly k: 'parse'; readonly name: string; readonly previous: string | undefined; readonly sql: string; readonly atNs: bigint }
  | { readonly k: 'bind'; readonly portal: string; readonly previous: Portal | undefined; readonly sql: string; readonly params: number | undefined; readonly atNs: bigint }
  | { readonly k: 'describe' }
  | { readonly k: 'close' }
  | { readonly k: 'sync' }
  | { readonly k: 'execute'; readonly start: StatementStart; rows: number }
  | { readonly k: 'query'; start: StatementStart; rows: number; /** the current start was reported */ done: boolean }
  | { readonly k: 'function'; start: StatementStart; rows: number; done: boolean };

interface Portal {
  readonly sql: string;
  readonly params: number | undefined;
}

/** Options for {@link createStatementTracker}. */
export interface StatementTrackerOptions {
  /** A fresh id for each statement (records are keyed by it). */
  readonly newId: () => string;
  /** The most prepared statements and portals remembered by name (beyond that, their SQL is unknown). */
  readonly maxNamed?: number;
}

/** The tracker of one connection. */
export interface StatementTracker {
  /** A frontend message the client sent; returns the statement it starts, if any. */
  frontend(msg: FrontendMessage, nowNs: bigint): StatementStart | undefined;
  /** A backend message the server sent; returns the statements that ended. */
  backend(event: BackendEvent, nowNs: bigint): StatementEnd[];
  /** Statements that ended without a server message (skipped after an error); call after `frontend`. */
  takeSkipped(): StatementEnd[];
  /** The connection ended: every statement still waiting for an answer. */
  close(nowNs: bigint): StatementEnd[];
  /** True while something sent has not been answered yet. */
  busy(): boolean;
  /** The transaction status of the last ReadyForQuery (`I`, `T`, `E`). */
  transactionStatus(): string;
}

/** The SQL of a statement whose Parse the gateway did not see (or no longer remembers). */
export const UNKNOWN_SQL = '';

/** Creates the tracker for one connection. */
export function createStatementTracker(opts: StatementTrackerOptions): StatementTracker {
  const maxNamed = opts.maxNamed ?? 10_000;
  const statements = new Map<string, string>();
  const portals = new Map<string, Portal>();
  const queue: Op[] = [];
  let head = 0;
  /** After an extended-protocol error the server discards every message up to Sync. */
  let discarding = false;
  let skipped: StatementEnd[] = [];
  let txStatus = 'I';

  function remember<V>(map: Map<string, V>, name: string, value: V | undefined): void {
    if (value === undefined) map.delete(name);
    else if (name === '' || map.has(name) || map.size < maxNamed) map.set(name, value);
  }

  function current(): Op | undefined {
    return queue[head];
  }

  function pop(): void {
    head += 1;
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    } else if (head > 256 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
  }

  function starting(sql: string, protocol: StatementStart['protocol'], params: number | undefined, nowNs: bigint): StatementStart {
    return { id: opts.newId(), sql, protocol, params, startNs: nowNs };
  }

  function ended(start: StatementStart, nowNs: bigint, outcome: StatementEnd['outcome'], fields: Partial<Pick<StatementEnd, 'command' | 'rows' | 'error'>> = {}): StatementEnd {
    return { ...start, outcome, command: fields.command, rows: fields.rows, error: fields.error, endNs: nowNs };
  }

  function startOf(op: Op): StatementStart | undefined {
    return op.k === 'execute' || op.k === 'query' || op.k === 'function' ? op.start : undefined;
  }

  /** Queues an operation; while the server is discarding, it drops the operation as the server will. */
  function enqueue(op: Op, nowNs: bigint): void {
    if (discarding && op.k !== 'sync') {
      const start = startOf(op);
      if (start !== undefined) skipped.push(ended(start, nowNs, 'skipped'));
      return;
    }
    discarding = false;
    queue.push(op);
  }

  /** After an extended-protocol error: drop what the server skips, up to the next Sync. */
  function discardUntilSync(out: StatementEnd[], nowNs: bigint): void {
    discarding = true;
    for (let op = current(); op !== undefined; op = current()) {
      if (op.k === 'sync') {
        discarding = false;
        return;
      }
      const start = startOf(op);
      if (start !== undefined) out.push(ended(start, nowNs, 'skipped'));
      pop();
    }
  }

  function takeSkipped(): StatementEnd[] {
    const out = skipped;
    skipped = [];
    return out;
  }

  /** A result of a simple Query (or a FunctionCall's answer): the first takes the Query's start, later ones start where the previous ended. */
  function result(op: Extract<Op, { k: 'query' | 'function' }>, nowNs: bigint): StatementStart {
    if (op.done) op.start = { ...op.start, id: opts.newId(), startNs: op.start.startNs };
    op.done = true;
    const start = op.start;
    op.start = { ...start, startNs: nowNs };
    op.rows = 0;
    return start;
  }

  return {
    frontend(msg, nowNs) {
      switch (msg.t) {
        case 'query': {
          const start = starting(msg.sql, 'simple', undefined, nowNs);
          enqueue({ k: 'query', start, rows: 0, done: false }, nowNs);
          return start;
        }
        case 'function': {
          const start = starting(`<function call ${msg.oid ?? '?'}>`, 'function', undefined, nowNs);
          enqueue({ k: 'function', start, rows: 0, done: false }, nowNs);
          return start;
        }
        case 'parse': {
          const previous = statements.get(msg.name);
          if (!discarding) remember(statements, msg.name, msg.sql);
          enqueue({ k: 'parse', name: msg.name, previous, sql: msg.sql, atNs: nowNs }, nowNs);
          return undefined;
        }
        case 'bind': {
          const previous = portals.get(msg.portal);
          const sql = statements.get(msg.statement) ?? UNKNOWN_SQL;
          if (!discarding) remember(portals, msg.portal, { sql, params: msg.params });
          enqueue({ k: 'bind', portal: msg.portal, previous, sql, params: msg.params, atNs: nowNs }, nowNs);
          return undefined;
        }
        case 'execute': {
          const portal = portals.get(msg.portal);
          const start = starting(portal?.sql ?? UNKNOWN_SQL, 'extended', portal?.params, nowNs);
          enqueue({ k: 'execute', start, rows: 0 }, nowNs);
          return start;
        }
        case 'describe':
          enqueue({ k: 'describe' }, nowNs);
          return undefined;
        case 'close':
          if (!discarding && msg.target === 'portal') portals.delete(msg.name);
          else if (!discarding) statements.delete(msg.name);
          enqueue({ k: 'close' }, nowNs);
          return undefined;
        case 'sync':
          enqueue({ k: 'sync' }, nowNs);
          return undefined;
        default:
          return undefined;
      }
    },

    takeSkipped,

    backend(event, nowNs) {
      const out: StatementEnd[] = [];
      const op = current();
      if (op !== undefined && (op.k === 'execute' || op.k === 'query')) op.rows += event.rowsBefore;
      switch (event.type) {
        case BE.parseComplete:
          if (op?.k === 'parse') pop();
          break;
        case BE.bindComplete:
          if (op?.k === 'bind') pop();
          break;
        case BE.closeComplete:
          if (op?.k === 'close') pop();
          break;
        case BE.rowDescription:
        case BE.noData:
          if (op?.k === 'describe') pop();
          break;
        case BE.commandComplete: {
          const { command, rows } = parseCommandTag(event.tag ?? '');
          if (op?.k === 'execute') {
            out.push(ended(op.start, nowNs, 'ok', { command, rows: rows ?? (op.rows > 0 ? op.rows : undefined) }));
            pop();
          } else if (op?.k === 'query') {
            const r = op.rows;
            out.push(ended(result(op, nowNs), nowNs, 'ok', { command, rows: rows ?? (r > 0 ? r : undefined) }));
          }
          break;
        }
        case BE.emptyQuery:
          if (op?.k === 'execute') {
            out.push(ended(op.start, nowNs, 'empty'));
            pop();
          } else if (op?.k === 'query') {
            out.push(ended(result(op, nowNs), nowNs, 'empty'));
          }
          break;
        case BE.portalSuspended:
          if (op?.k === 'execute') {
            out.push(ended(op.start, nowNs, 'suspended', { rows: op.rows }));
            pop();
          }
          break;
        case BE.functionCallResponse:
          if (op?.k === 'function') out.push(ended(result(op, nowNs), nowNs, 'ok', { command: 'FUNCTION CALL' }));
          break;
        case BE.errorResponse: {
          // No statement waiting (or only a Sync): an asynchronous error, e.g. FATAL at shutdown.
          if (op === undefined || op.k === 'sync' || op.k === 'describe' || op.k === 'close') {
            if (op !== undefined && op.k !== 'sync') {
              pop();
              discardUntilSync(out, nowNs);
            }
            break;
          }
          const fields = { error: event.code ?? '' };
          if (op.k === 'query' || op.k === 'function') {
            out.push(ended(result(op, nowNs), nowNs, 'error', fields)); // ReadyForQuery follows; no skipping
            break;
          }
          if (op.k === 'execute') out.push(ended(op.start, nowNs, 'error', fields));
          else if (op.k === 'parse') {
            out.push(ended(starting(op.sql, 'extended', undefined, op.atNs), nowNs, 'error', fields));
            remember(statements, op.name, op.previous);
          } else {
            out.push(ended(starting(op.sql, 'extended', op.params, op.atNs), nowNs, 'error', fields));
            remember(portals, op.portal, op.previous);
          }
          pop();
          discardUntilSync(out, nowNs);
          break;
        }
        case BE.readyForQuery:
          txStatus = event.status ?? txStatus;
          if (op?.k === 'sync' || op?.k === 'query' || op?.k === 'function') pop();
          break;
        default:
          break;
      }
      return out;
    },

    close(nowNs) {
      const out = takeSkipped();
      for (let op = current(); op !== undefined; op = current()) {
        if (op.k === 'execute' || ((op.k === 'query' || op.k === 'function') && !op.done)) out.push(ended(op.start, nowNs, 'closed'));
        pop();
      }
      return out;
    },

    busy: () => queue.length > head,
    transactionStatus: () => txStatus,
  };
}
