import { describe, expect, it } from 'vitest';
import { matches, parseFilter, parseTimeBound, parseTimestamp, type FilterArgs, type RecordFilter } from '../../../src/audit/record-filter.js';
import type { AuditRecord } from '../../../src/audit/record.js';

const NOW = Date.parse('2026-11-26T12:00:00.000Z');

describe('parseTimestamp', () => {
  it.each([
    ['2026-11-26T10:00:00Z', '2026-11-26T10:00:00.000Z'],
    ['2026-11-26T10:00:00.123Z', '2026-11-26T10:00:00.123Z'],
    ['2026-11-26T10:00:00.123456789Z', '2026-11-26T10:00:00.123Z'],
    ['2026-11-26t10:00:00.5z', '2026-11-26T10:00:00.500Z'],
    ['2026-11-26 10:00:00Z', '2026-11-26T10:00:00.000Z'],
    ['2026-11-26T12:00:00+02:00', '2026-11-26T10:00:00.000Z'],
    ['2026-11-26T05:30:00-04:30', '2026-11-26T10:00:00.000Z'],
    ['2026-11-26', '2026-11-26T00:00:00.000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
  ])('%s is %s', (text, iso) => {
    expect(parseTimestamp(text)).toBe(Date.parse(iso));
  });

  it.each([
    ['2026-11-26T10:00:00'], // no offset: RFC 3339 requires one
    ['2026-11-26T10:00Z'],
    ['2026-13-01T00:00:00Z'],
    ['2026-02-30T00:00:00Z'],
    ['2025-02-29'],
    ['2026-11-26T24:00:00Z'],
    ['2026-11-26T10:60:00Z'],
    ['2026-11-26T10:00:00+24:00'],
    ['26-11-26'],
    ['yesterday'],
    [''],
  ])('refuses %j', (text) => {
    expect(parseTimestamp(text)).toBeUndefined();
  });
});

describe('parseTimeBound', () => {
  it.each([
    ['15m', NOW - 15 * 60_000],
    ['2h', NOW - 2 * 3_600_000],
    ['7d', NOW - 7 * 86_400_000],
    ['90s', NOW - 90_000],
    ['500ms', NOW - 500],
    ['0s', NOW],
    ['2026-11-26T11:00:00Z', Date.parse('2026-11-26T11:00:00Z')],
  ])('%s → %d', (text, at) => {
    expect(parseTimeBound(text, NOW)).toBe(at);
  });

  it.each([['15'], ['-15m'], ['1.5h'], ['15 m'], ['15min'], ['2w']])('refuses %j', (text) => {
    expect(parseTimeBound(text, NOW)).toBeUndefined();
  });
});

describe('parseFilter', () => {
  it.each<[string, FilterArgs, RecordFilter]>([
    ['nothing', {}, {}],
    ['user and route', { user: 'alice', route: 'grafana' }, { user: 'alice', route: 'grafana' }],
    ['decision and kind', { decision: 'step_up', kind: 'websocket' }, { decision: 'step_up', kind: 'websocket' }],
    ['relative window', { since: '2h', until: '1h' }, { since: NOW - 7_200_000, until: NOW - 3_600_000 }],
    ['absolute since', { since: '2026-11-26T10:00:00Z' }, { since: Date.parse('2026-11-26T10:00:00Z') }],
    ['instance', { instance: 'gw-0' }, { instance: 'gw-0' }],
  ])('accepts %s', (_name, args, filter) => {
    expect(parseFilter(args, NOW)).toEqual({ ok: true, filter });
  });

  it.each<[string, FilterArgs, RegExp]>([
    ['unknown decision', { decision: 'maybe' }, /--decision must be one of allow, deny, step_up/],
    ['unknown kind', { kind: 'smtp' }, /--kind must be one of http, websocket/],
    ['bad since', { since: 'yesterday' }, /--since expects an RFC 3339 time/],
    ['bad until', { until: '2026-02-30' }, /--until expects/],
    ['empty window', { since: '1h', until: '2h' }, /--since must be before --until/],
    ['bad instance', { instance: '../etc' }, /--instance expects an instance id/],
    ['empty user', { user: '' }, /--user must not be empty/],
    ['empty route', { route: '' }, /--route must not be empty/],
  ])('refuses %s', (_name, args, message) => {
    const result = parseFilter(args, NOW);
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.errors).toEqual([expect.stringMatching(message)]);
  });

  it('reports every bad value at once', () => {
    const result = parseFilter({ decision: 'x', kind: 'y', since: 'z' }, NOW);
    expect(result.ok ? [] : result.errors).toHaveLength(3);
  });
});

const base: AuditRecord = {
  v: 1,
  log: 'portcullis.example/audit/gw-0',
  seq: 7,
  prev: '0'.repeat(64),
  id: 'req-1',
  ts: '2026-11-26T10:00:00.123Z',
  kind: 'http',
  route: 'grafana',
  decision: 'allow',
  identity: { user: 'alice', email: 'Alice@Example.com', groups: ['eng'], provider: 'corp', auth: 'cookie' },
};
const anonymous: AuditRecord = { ...base, identity: undefined, route: 'status', decision: 'unauthenticated' } as unknown as AuditRecord;
const configRecord = { v: 1, log: 'o/gw-1', seq: 0, prev: '0'.repeat(64), id: 'c', ts: '2026-11-26T09:00:00Z', kind: 'config' };

describe('matches', () => {
  it.each<[string, unknown, RecordFilter, boolean]>([
    ['no filter', base, {}, true],
    ['no filter, any shape', { whatever: 1 }, {}, true],
    ['route equal', base, { route: 'grafana' }, true],
    ['route other', base, { route: 'graf' }, false],
    ['route missing', configRecord, { route: 'grafana' }, false],
    ['decision equal', base, { decision: 'allow' }, true],
    ['decision other', base, { decision: 'deny' }, false],
    ['kind equal', configRecord, { kind: 'config' }, true],
    ['kind other', base, { kind: 'auth' }, false],
    ['user by name', base, { user: 'alice' }, true],
    ['user name is case-sensitive', base, { user: 'ALICE' }, false],
    ['user by email, any case', base, { user: 'alice@example.COM' }, true],
    ['user by exact email', base, { user: 'Alice@Example.com' }, true],
    ['user other', base, { user: 'bob' }, false],
    ['user, no identity', anonymous, { user: 'alice' }, false],
    ['user, identity not an object', { ...base, identity: 'alice' }, { user: 'alice' }, false],
    ['since, equal (inclusive)', base, { since: Date.parse(base.ts) }, true],
    ['since, after', base, { since: Date.parse(base.ts) + 1 }, false],
    ['until, equal (exclusive)', base, { until: Date.parse(base.ts) }, false],
    ['until, after', base, { until: Date.parse(base.ts) + 1 }, true],
    ['window around', base, { since: Date.parse(base.ts) - 1000, until: Date.parse(base.ts) + 1000 }, true],
    ['time, record without ts', { kind: 'http' }, { since: 0 }, false],
    ['time, unparseable ts', { ...base, ts: 'soon' }, { until: NOW }, false],
    ['instance of log', base, { instance: 'gw-0' }, true],
    ['instance, other log', base, { instance: 'gw-1' }, false],
    ['instance, suffix only', base, { instance: '0' }, false],
    ['all at once', base, { user: 'alice', route: 'grafana', decision: 'allow', kind: 'http', instance: 'gw-0', since: 0, until: NOW }, true],
    ['all but one', base, { user: 'alice', route: 'grafana', decision: 'deny', kind: 'http' }, false],
    ['not an object', 'text', { route: 'grafana' }, false],
    ['null', null, { user: 'alice' }, false],
  ])('%s', (_name, record, filter, expected) => {
    expect(matches(record, filter)).toBe(expected);
  });
});
