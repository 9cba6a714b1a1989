/** The viewer's chart counters: per-minute buckets over a sliding hour, bounded keys, coverage. */
import { describe, expect, it } from 'vitest';
import { activityOf, createActivity } from '../../../src/audit/activity.js';

const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const MIN = 60_000;

function rec(at: number, decision: string, route = 'home', user: string | undefined = 'alice', kind = 'http') {
  return { at, kind, decision, route, user };
}

describe('activity', () => {
  it('counts requests, denials and step-ups per minute, step-ups per route and the busiest users', () => {
    const a = createActivity();
    const now = T0 + 59 * MIN + 30_000;
    a.add(rec(T0 + 59 * MIN, 'allow'), now);
    a.add(rec(T0 + 59 * MIN + 1, 'deny', 'admin', 'bob'), now);
    a.add(rec(T0 + 58 * MIN, 'step_up', 'admin', 'bob'), now);
    a.add(rec(T0 + 58 * MIN, 'step_up', 'grafana', 'carol'), now);
    a.add(rec(T0 + 58 * MIN, 'step_up', 'admin', 'bob'), now);
    a.add(rec(T0 + 58 * MIN, 'allow', undefined, 'alice', 'auth'), now);
    const s = a.snapshot(now);
    expect(s.minutes).toHaveLength(60);
    expect(s.from).toBe(T0);
    expect(s.minutes[59]).toEqual({ at: T0 + 59 * MIN, requests: 2, denials: 1, stepUps: 0 });
    expect(s.minutes[58]).toEqual({ at: T0 + 58 * MIN, requests: 3, denials: 0, stepUps: 3 });
    expect(s.stepUpsByRoute).toEqual([
      { route: 'admin', count: 2 },
      { route: 'grafana', count: 1 },
    ]);
    expect(s.topUsers).toEqual([
      { user: 'bob', count: 3 },
      { user: 'alice', count: 2 },
      { user: 'carol', count: 1 },
    ]);
  });

  it('forgets minutes that left the hour, ignores records older than it, and says from when it counted', () => {
    const a = createActivity();
    a.covered(T0 + 30 * MIN);
    a.add(rec(T0, 'deny'), T0);
    a.add(rec(T0 - 2 * 60 * MIN, 'deny'), T0);
    expect(a.snapshot(T0).minutes.at(-1)?.denials).toBe(1);
    const later = a.snapshot(T0 + 61 * MIN);
    expect(later.minutes.reduce((n, m) => n + m.denials, 0)).toBe(0);
    expect(later.coveredFrom).toBe(T0 + 30 * MIN);
    expect(a.snapshot(T0 + 200 * MIN).coveredFrom).toBe(T0 + 141 * MIN);
  });

  it('bounds distinct users per minute; the rest count as (other)', () => {
    const a = createActivity({ maxKeys: 3 });
    for (let i = 0; i < 10; i++) a.add(rec(T0, 'allow', 'home', `u${i}`), T0);
    expect(a.snapshot(T0).topUsers).toEqual([
      { user: '(other)', count: 7 },
      { user: 'u0', count: 1 },
      { user: 'u1', count: 1 },
      { user: 'u2', count: 1 },
    ]);
  });

  it('reads the counted parts of a stored record', () => {
    expect(activityOf({ ts: '2026-11-26T10:00:00.000Z', kind: 'http', decision: 'deny', route: 'r', identity: { user: 'u' } })).toEqual({ at: T0, kind: 'http', decision: 'deny', route: 'r', user: 'u' });
    expect(activityOf({ kind: 'http' })).toBeUndefined();
    expect(activityOf('nope')).toBeUndefined();
  });
});
