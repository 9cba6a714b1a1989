import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../src/audit/canonical.js';
import { chainedText, joinParts } from '../../../src/audit/record.js';
import type { RecordBody } from '../../../src/audit/record.js';
import { requestRecordParts, type AuditedRequest, type RequestOutcome } from '../../../src/audit/request-auditor.js';

/** The record's body as an object: its members, parsed (JSON.parse keeps the order they were written in). */
function requestRecord(...args: Parameters<typeof requestRecordParts>): RecordBody {
  return JSON.parse(`{${joinParts(requestRecordParts(...args))}}`) as RecordBody;
}

const req = { headers: { host: 'grafana.example.com', 'user-agent': 'curl/8.0' }, url: '/api/x?token=abc&a=1' } as unknown as IncomingMessage;
const audited: AuditedRequest = {
  id: 'req-1',
  startNs: 1_000_000n,
  method: 'POST',
  clientIp: '10.0.0.7',
  path: '/api/x',
  query: 'token=abc&a=1',
  routeId: 'grafana',
  identity: { user: 'alice', email: 'alice@example.com', groups: ['eng'], provider: 'local', auth: 'cookie', session: 'abc', authTime: 0, mfa: { factor: 'webauthn', at: 58_000 }, amr: ['pwd'] },
  reason: 'group eng',
};
const outcome: RequestOutcome = {
  kind: 'websocket',
  status: 101,
  decision: 'allow',
  bytesIn: 12,
  bytesOut: 34,
  upstream: { target: 'http://10.0.0.9:3000', ttfbNs: 2_500_000n },
  websocket: { messagesIn: 1, messagesOut: 2, bytesIn: 3, bytesOut: 4, openNs: 2_000_000n },
};

/** Every object's keys, at every depth, in the order they were inserted. */
function keyOrders(value: unknown, out: string[][] = []): string[][] {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    out.push(Object.keys(value));
    for (const v of Object.values(value)) keyOrders(v, out);
  }
  return out;
}

describe('requestRecord', () => {
  const body = requestRecord(req, audited, outcome, { nowMs: 100_000, endNs: 5_000_000n, redactParams: ['token'] });

  it('writes every object with its keys in RFC 8785 order', () => {
    for (const keys of keyOrders(body)) expect(keys).toEqual([...keys].sort());
  });

  it('carries what SPEC §4 asks for, redacted', () => {
    expect(body).toEqual({
      client: { ip: '10.0.0.7', user_agent: 'curl/8.0' },
      decision: 'allow',
      duration_us: 4000,
      id: 'req-1',
      identity: { auth: 'cookie', email: 'alice@example.com', groups: ['eng'], mfa: { age_s: 42, factor: 'webauthn' }, provider: 'local', session: 'abc', user: 'alice' },
      kind: 'websocket',
      reason: 'group eng',
      request: { bytes_in: 12, host: 'grafana.example.com', method: 'POST', path: '/api/x', query: 'token=REDACTED&a=1' },
      response: { bytes_out: 34, status: 101 },
      route: 'grafana',
      ts: new Date(100_000).toISOString(),
      upstream: { target: 'http://10.0.0.9:3000', ttfb_us: 2500 },
      v: 1,
      websocket: { bytes_in: 3, bytes_out: 4, duration_us: 3000, messages_in: 1, messages_out: 2 },
    });
  });
});

describe('requestRecordParts', () => {
  const text = fc.oneof(fc.string(), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', '\u2028', '\ud800', 'a\u0085b', '"\\\n\t', '\u00e9\ud83d\ude00'));
  const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });
  const count = fc.nat({ max: 2 ** 40 });
  const identity = fc.record({
    user: text,
    email: maybe(text),
    groups: fc.array(text, { maxLength: 70 }),
    provider: text,
    auth: fc.constantFrom('cookie' as const, 'bearer' as const, 'cli' as const),
    session: maybe(text),
    authTime: fc.nat(),
    mfa: maybe(fc.record({ factor: fc.constantFrom('webauthn', 'totp'), at: fc.nat({ max: 200_000 }) })),
    amr: fc.constant(['pwd']),
  });
  const audited = fc.record({
    id: text,
    startNs: fc.bigInt({ min: 0n, max: 5_000_000n }),
    method: text,
    clientIp: text,
    path: maybe(text),
    query: maybe(text),
    routeId: maybe(text),
    identity: maybe(identity),
    reason: maybe(text),
  });
  const outcome = fc.record(
    {
      kind: fc.constantFrom('http' as const, 'websocket' as const),
      status: fc.nat({ max: 599 }),
      decision: fc.constantFrom('allow' as const, 'deny' as const, 'step_up' as const, 'unauthenticated' as const, 'not_found' as const, 'error' as const),
      reason: text,
      bytesIn: count,
      bytesOut: count,
      upstream: fc.record({ target: text, ttfbNs: maybe(fc.bigInt({ min: 0n, max: 10n ** 12n })) }),
      websocket: fc.record({ messagesIn: count, messagesOut: count, bytesIn: count, bytesOut: count, openNs: fc.bigInt({ min: 0n, max: 5_000_000n }) }),
    },
    { requiredKeys: ['kind', 'status', 'decision'] },
  );
  const headers = fc.record({ host: maybe(text), 'user-agent': maybe(text) });

  it('chains to exactly the bytes the RFC 8785 serializer gives the same record', () => {
    fc.assert(
      fc.property(audited, outcome, headers, fc.string(), fc.nat(), (r, o, h, log, seq) => {
        const request = { headers: Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)), url: '/x?y' } as unknown as IncomingMessage;
        const opts = { nowMs: 100_000, endNs: 5_000_000n, redactParams: ['token'] };
        const parts = requestRecordParts(request, r, o, opts);
        const prev = 'ab'.repeat(32);
        const chained = chainedText(parts, JSON.stringify(log), prev, seq);
        const body = JSON.parse(`{${joinParts(parts)}}`) as Record<string, unknown>;
        expect(chained).toBe(canonicalJson({ ...body, log, prev, seq }));
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses a number that is not a safe integer rather than write a non-canonical record', () => {
    const request = { headers: {}, url: '/' } as unknown as IncomingMessage;
    const opts = { nowMs: 100_000, endNs: 5_000_000n, redactParams: [] };
    expect(() => requestRecordParts(request, audited0(), { ...outcome0(), bytesOut: 1.5 }, opts)).toThrow(/response\.bytes_out/);
    expect(() => requestRecordParts(request, audited0(), { ...outcome0(), status: Number.NaN }, opts)).toThrow(/response\.status/);
  });
});

function audited0(): AuditedRequest {
  return { ...audited, identity: undefined };
}
function outcome0(): RequestOutcome {
  return { kind: 'http', status: 200, decision: 'allow' };
}
