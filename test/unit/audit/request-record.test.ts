import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../../src/audit/canonical.js';
import { requestRecord, type AuditedRequest, type RequestOutcome } from '../../../src/audit/request-auditor.js';

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

  it('builds every object with its keys already in RFC 8785 order (the canonical serializer then copies nothing)', () => {
    for (const keys of keyOrders(body)) expect(keys).toEqual([...keys].sort());
  });

  it('carries what SPEC §4 asks for, redacted', () => {
    expect(JSON.parse(canonicalBytes(body).toString('utf8'))).toEqual({
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
