import { describe, expect, it } from 'vitest';
import type { FrontendMessage } from '../../../src/database/protocol.js';
import { createStatementTracker, type BackendEvent, type StatementEnd } from '../../../src/database/statement-tracker.js';

type Step = ['fe', FrontendMessage] | ['be', string, Partial<Omit<BackendEvent, 'type'>>?];

/** What the tests compare: everything but the clock. */
type Seen = Pick<StatementEnd, 'id' | 'sql' | 'protocol' | 'params' | 'outcome' | 'command' | 'rows' | 'error'>;

function run(steps: readonly Step[], opts: { close?: boolean } = {}): { ends: Seen[]; starts: string[] } {
  let n = 0;
  const t = createStatementTracker({ newId: () => `s${++n}` });
  const ends: StatementEnd[] = [];
  const starts: string[] = [];
  let clock = 0n;
  for (const step of steps) {
    clock += 1000n;
    if (step[0] === 'fe') {
      const s = t.frontend(step[1], clock);
      if (s !== undefined) starts.push(s.id);
      ends.push(...t.takeSkipped());
    } else {
      ends.push(...t.backend({ type: step[1].charCodeAt(0), rowsBefore: 0, ...step[2] }, clock));
    }
  }
  if (opts.close === true) ends.push(...t.close(clock + 1000n));
  return { ends: ends.map(({ id, sql, protocol, params, outcome, command, rows, error }) => ({ id, sql, protocol, params, outcome, command, rows, error })), starts };
}

const ok = (id: string, sql: string, command: string, rows: number | undefined, more: Partial<Seen> = {}): Seen => ({ id, sql, protocol: 'simple', params: undefined, outcome: 'ok', command, rows, error: undefined, ...more });
const ext = (id: string, sql: string, outcome: Seen['outcome'], more: Partial<Seen> = {}): Seen => ({ id, sql, protocol: 'extended', params: undefined, outcome, command: undefined, rows: undefined, error: undefined, ...more });

const P = (sql: string, name = ''): Step => ['fe', { t: 'parse', name, sql }];
const B = (statement = '', params = 0, portal = ''): Step => ['fe', { t: 'bind', portal, statement, params }];
const E = (portal = ''): Step => ['fe', { t: 'execute', portal }];
const S: Step = ['fe', { t: 'sync' }];
const Q = (sql: string): Step => ['fe', { t: 'query', sql }];
const Z = (status = 'I'): Step => ['be', 'Z', { status }];
const C = (tag: string, rowsBefore = 0): Step => ['be', 'C', { tag, rowsBefore }];
const ERR = (code: string): Step => ['be', 'E', { code }];

describe('createStatementTracker', () => {
  const cases: [string, Step[], Seen[]][] = [
    ['ends a simple query at its CommandComplete', [Q('select 1'), ['be', 'T'], C('SELECT 1', 1), Z()], [ok('s1', 'select 1', 'SELECT', 1)]],
    [
      'gives each statement of a multi-statement query its own record',
      [Q('begin; insert into t values (1),(2); commit'), C('BEGIN'), C('INSERT 0 2'), C('COMMIT'), Z()],
      [ok('s1', 'begin; insert into t values (1),(2); commit', 'BEGIN', undefined), ok('s2', 'begin; insert into t values (1),(2); commit', 'INSERT', 2), ok('s3', 'begin; insert into t values (1),(2); commit', 'COMMIT', undefined)],
    ],
    ['reports a failed simple query with its SQLSTATE', [Q('selec 1'), ERR('42601'), Z()], [{ ...ok('s1', 'selec 1', '', undefined), outcome: 'error', command: undefined, error: '42601' }]],
    ['reports an empty query', [Q(''), ['be', 'I'], Z()], [{ ...ok('s1', '', '', undefined), outcome: 'empty', command: undefined }]],
    [
      'ends an extended query at its Execute, with the Parse text and the Bind parameter count',
      [P('select $1::int, $2::text'), B('', 2), ['fe', { t: 'describe' }], E(), S, ['be', '1'], ['be', '2'], ['be', 'T'], C('SELECT 2', 2), Z()],
      [ext('s1', 'select $1::int, $2::text', 'ok', { params: 2, command: 'SELECT', rows: 2 })],
    ],
    [
      'reports a failed Parse and skips what the server skips until Sync, then goes on',
      [P('selec 1'), B(), E(), S, P('select 2'), B(), E(), S, ERR('42601'), Z(), ['be', '1'], ['be', '2'], C('SELECT 1'), Z()],
      [ext('s3', 'selec 1', 'error', { error: '42601' }), ext('s1', 'selec 1', 'skipped', { params: 0 }), ext('s2', 'select 2', 'ok', { command: 'SELECT', rows: 1, params: 0 })],
    ],
    [
      'attributes an error to the Execute that failed and skips the next one',
      [P('select 1/0'), B(), E(), E(), S, ['be', '1'], ['be', '2'], ERR('22012'), Z()],
      [ext('s1', 'select 1/0', 'error', { error: '22012', params: 0 }), ext('s2', 'select 1/0', 'skipped', { params: 0 })],
    ],
    [
      'reports a row-limited Execute as suspended with the rows sent, and its continuation',
      [P('select g from generate_series(1,3) g'), B(), E(), ['fe', { t: 'flush' }], ['be', '1'], ['be', '2'], ['be', 's', { rowsBefore: 2 }], E(), S, C('SELECT 1', 1), Z()],
      [ext('s1', 'select g from generate_series(1,3) g', 'suspended', { rows: 2, params: 0 }), ext('s2', 'select g from generate_series(1,3) g', 'ok', { command: 'SELECT', rows: 1, params: 0 })],
    ],
    ['ends a COPY FROM STDIN at its CommandComplete', [Q('copy t from stdin'), ['be', 'G'], ['fe', { t: 'copy' }], ['fe', { t: 'copy' }], C('COPY 3'), Z()], [ok('s1', 'copy t from stdin', 'COPY', 3)]],
    ['ends a COPY TO STDOUT at its CommandComplete', [Q('copy t to stdout'), ['be', 'H'], C('COPY 3'), Z()], [ok('s1', 'copy t to stdout', 'COPY', 3)]],
    ['ends a FunctionCall at its answer', [['fe', { t: 'function', oid: 952 }], ['be', 'V'], Z()], [{ ...ok('s1', '<function call 952>', 'FUNCTION CALL', undefined), protocol: 'function' }]],
    [
      'uses a named statement for later Binds until it is closed',
      [P('select 42', 'answer'), S, ['be', '1'], Z(), B('answer'), E(), S, ['be', '2'], C('SELECT 1'), Z(), ['fe', { t: 'close', target: 'statement', name: 'answer' }], B('answer'), E(), S, ['be', '3'], ERR('26000'), Z()],
      [ext('s1', 'select 42', 'ok', { command: 'SELECT', rows: 1, params: 0 }), ext('s3', '', 'error', { error: '26000', params: 0 }), ext('s2', '', 'skipped', { params: 0 })],
    ],
    [
      'keeps the earlier text of a statement name when a new Parse under that name fails',
      [P('select 1', 'x'), S, ['be', '1'], Z(), P('select 2', 'x'), S, ERR('42P05'), Z(), B('x'), E(), S, ['be', '2'], C('SELECT 1'), Z()],
      [ext('s1', 'select 2', 'error', { error: '42P05' }), ext('s2', 'select 1', 'ok', { command: 'SELECT', rows: 1, params: 0 })],
    ],
    [
      'skips messages the client sends after an error until its Sync arrives',
      [P('selec'), B(), E(), ['fe', { t: 'flush' }], ERR('42601'), E(), Q('select 1'), S, Z()],
      [ext('s2', 'selec', 'error', { error: '42601' }), ext('s1', 'selec', 'skipped', { params: 0 }), ext('s3', 'selec', 'skipped', { params: 0 }), { ...ok('s4', 'select 1', '', undefined), outcome: 'skipped', command: undefined }],
    ],
  ];
  it.each(cases)('%s', (_name, steps, expected) => {
    expect(run(steps).ends).toEqual(expected);
  });

  it('ends what is still open when the connection closes', () => {
    const { ends } = run([Q('select pg_sleep(10)'), P('select 1'), B(), E(), S], { close: true });
    expect(ends.map((e) => [e.id, e.outcome])).toEqual([
      ['s1', 'closed'],
      ['s2', 'closed'],
    ]);
  });

  it('reports nothing at close for a query whose results all arrived', () => {
    expect(run([Q('select 1'), C('SELECT 1')], { close: true }).ends.map((e) => e.outcome)).toEqual(['ok']);
  });

  it('starts a statement (for its intent record) on Query, Execute and FunctionCall only', () => {
    const { starts } = run([P('select 1'), B(), ['fe', { t: 'describe' }], E(), S, Q('select 2'), ['fe', { t: 'function', oid: 1 }]]);
    expect(starts).toEqual(['s1', 's2', 's3']);
  });

  it('follows the transaction status of ReadyForQuery', () => {
    const t = createStatementTracker({ newId: () => 'x' });
    t.frontend({ t: 'query', sql: 'begin' }, 0n);
    t.backend({ type: 'C'.charCodeAt(0), rowsBefore: 0, tag: 'BEGIN' }, 1n);
    t.backend({ type: 'Z'.charCodeAt(0), rowsBefore: 0, status: 'T' }, 2n);
    expect(t.transactionStatus()).toBe('T');
    expect(t.busy()).toBe(false);
  });
});
