import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import {
  commandLabel,
  errorResponse,
  FE,
  parseCommandTag,
  parseStartupPacket,
  readErrorFields,
  readFrontendMessage,
  readPassword,
  type FrontendMessage,
  type StartupPacket,
} from '../../../src/database/protocol.js';

/** A frontend message serialized by pg-protocol (what the `pg` driver sends), split into type and body. */
function split(message: Buffer): { type: number; body: Buffer } {
  return { type: message[0] ?? 0, body: message.subarray(5) };
}

function packet(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(code, 4);
  body.copy(b, 8);
  return b;
}

describe('parseStartupPacket', () => {
  const cases: [string, Buffer, StartupPacket | { kind: 'invalid' }][] = [
    ['reads an SSLRequest', packet(80877103), { kind: 'ssl' }],
    ['reads a GSSENCRequest', packet(80877104), { kind: 'gssenc' }],
    ['reads a CancelRequest with its key', packet(80877102, Buffer.from([0, 0, 0, 42, 0xff, 0xff, 0xff, 0xfe])), { kind: 'cancel', pid: 42, secret: -2 }],
    ['refuses a CancelRequest of the wrong size', packet(80877102, Buffer.from([0, 0, 0, 42])), { kind: 'invalid' }],
    ['refuses protocol 2', packet(2 << 16, Buffer.from('user\0a\0\0')), { kind: 'invalid' }],
    ['refuses a parameter given twice', packet(3 << 16, Buffer.from('user\0a\0user\0b\0\0')), { kind: 'invalid' }],
    ['refuses an unterminated parameter list', packet(3 << 16, Buffer.from('user\0a\0')), { kind: 'invalid' }],
    ['refuses trailing bytes', packet(3 << 16, Buffer.from('user\0a\0\0x')), { kind: 'invalid' }],
  ];
  it.each(cases)('%s', (_name, input, expected) => {
    const got = parseStartupPacket(input);
    if (expected.kind === 'invalid') expect(got.kind).toBe('invalid');
    else expect(got).toEqual(expected);
  });

  it('reads the parameters of a 3.0 startup message as pg sends it', () => {
    const got = parseStartupPacket(serialize.startup({ user: 'alice', database: 'prod', application_name: 'psql', options: '-c x=1' }));
    expect(got).toEqual({ kind: 'startup', major: 3, minor: 0, params: new Map([['user', 'alice'], ['database', 'prod'], ['application_name', 'psql'], ['options', '-c x=1'], ['client_encoding', 'UTF8']]) });
  });

  it('keeps a newer minor version for negotiation', () => {
    const got = parseStartupPacket(packet((3 << 16) | 2, Buffer.from('user\0a\0_pq_.x\0y\0\0')));
    expect(got).toMatchObject({ kind: 'startup', major: 3, minor: 2 });
  });
});

describe('readFrontendMessage', () => {
  const cases: [string, Buffer, FrontendMessage][] = [
    ['reads a simple Query', serialize.query('select 1'), { t: 'query', sql: 'select 1' }],
    ['reads a named Parse', serialize.parse({ name: 's1', text: 'select $1::int', types: [23] }), { t: 'parse', name: 's1', sql: 'select $1::int' }],
    ['reads an unnamed Parse', serialize.parse({ text: 'select now()' }), { t: 'parse', name: '', sql: 'select now()' }],
    ['reads a Bind and counts its parameters', serialize.bind({ portal: 'p', statement: 's1', values: ['1', 'two', null] }), { t: 'bind', portal: 'p', statement: 's1', params: 3 }],
    ['reads a Bind without parameters', serialize.bind({}), { t: 'bind', portal: '', statement: '', params: 0 }],
    ['reads an Execute', serialize.execute({ portal: 'p', rows: 10 }), { t: 'execute', portal: 'p' }],
    ['reads a Close of a portal', serialize.close({ type: 'P', name: 'p' }), { t: 'close', target: 'portal', name: 'p' }],
    ['reads a Close of a statement', serialize.close({ type: 'S', name: 's1' }), { t: 'close', target: 'statement', name: 's1' }],
    ['reads a Describe', serialize.describe({ type: 'S', name: 's1' }), { t: 'describe' }],
    ['reads a Sync', serialize.sync(), { t: 'sync' }],
    ['reads a Flush', serialize.flush(), { t: 'flush' }],
    ['reads a Terminate', serialize.end(), { t: 'terminate' }],
    ['reads COPY data as copy traffic', serialize.copyData(Buffer.from('1\t2\n')), { t: 'copy' }],
    ['reads CopyDone as copy traffic', serialize.copyDone(), { t: 'copy' }],
  ];
  it.each(cases)('%s', (_name, message, expected) => {
    const { type, body } = split(message);
    expect(readFrontendMessage(type, body)).toEqual(expected);
  });

  it('returns the SQL as far as a cut capture goes', () => {
    const { type, body } = split(serialize.query(`select '${'x'.repeat(100)}'`));
    expect(readFrontendMessage(type, body.subarray(0, 20))).toEqual({ t: 'query', sql: "select 'xxxxxxxxxxxx" });
  });

  it('leaves the parameter count unknown when the Bind capture ends before it', () => {
    const { type, body } = split(serialize.bind({ portal: 'p', statement: 's', values: ['1'] }));
    expect(readFrontendMessage(type, body.subarray(0, 4))).toEqual({ t: 'bind', portal: 'p', statement: 's', params: undefined });
  });

  it('reads a FunctionCall by its function oid', () => {
    const body = Buffer.from([0, 0, 0x0b, 0xb8, 0, 0]);
    expect(readFrontendMessage(FE.functionCall, body)).toEqual({ t: 'function', oid: 3000 });
  });
});

describe('readPassword', () => {
  it.each([
    ['reads a NUL-terminated password', Buffer.from('pcdb_abc\0'), 'pcdb_abc'],
    ['refuses an unterminated password', Buffer.from('pcdb_abc'), undefined],
    ['refuses an embedded NUL', Buffer.from('a\0b\0'), undefined],
    ['refuses an empty body', Buffer.alloc(0), undefined],
  ] as const)('%s', (_name, body, expected) => {
    expect(readPassword(body)).toBe(expected);
  });
});

describe('parseCommandTag', () => {
  it.each([
    ['SELECT 5', 'SELECT', 5],
    ['INSERT 0 3', 'INSERT', 3],
    ['UPDATE 0', 'UPDATE', 0],
    ['COPY 100000', 'COPY', 100000],
    ['CREATE TABLE', 'CREATE TABLE', undefined],
    ['BEGIN', 'BEGIN', undefined],
    ['MERGE 2', 'MERGE', 2],
  ] as const)('%s → %s, %s rows', (tag, command, rows) => {
    expect(parseCommandTag(tag)).toEqual({ command, rows });
  });
});

describe('commandLabel', () => {
  it.each([
    ['SELECT', 'SELECT'],
    ['CREATE TABLE', 'CREATE TABLE'],
    [undefined, 'OTHER'],
    ['', 'OTHER'],
    ['select', 'OTHER'],
    ['X'.repeat(40), 'OTHER'],
  ] as const)('%s → %s', (command, label) => {
    expect(commandLabel(command)).toBe(label);
  });
});

describe('errorResponse', () => {
  it('builds an ErrorResponse whose fields read back', () => {
    const msg = errorResponse({ severity: 'FATAL', code: '28P01', message: 'password authentication failed for user "a"', hint: 'get a new one' });
    expect(String.fromCharCode(msg[0] ?? 0)).toBe('E');
    expect(msg.readInt32BE(1)).toBe(msg.length - 1);
    const fields = readErrorFields(msg.subarray(5));
    expect(Object.fromEntries(fields)).toEqual({ S: 'FATAL', V: 'FATAL', C: '28P01', M: 'password authentication failed for user "a"', H: 'get a new one' });
  });

  it('drops NULs from text so the message stays well-formed', () => {
    const fields = readErrorFields(errorResponse({ severity: 'ERROR', code: '42000', message: 'a\0b' }).subarray(5));
    expect(fields.get('M')).toBe('ab');
  });
});
