/**
 * The hostile-input suite's harness: a real gateway in front of an upstream that records everything
 * it receives, raw bytes over real sockets, and the invariants every case is checked against:
 *
 * 1. the gateway is still up: `/readyz` on the admin listener answers 200;
 * 2. the upstream received exactly the requests the case expects, each with the path the policy judged
 *    (the path in that request's audit record), an identity only when the record has one, and none
 *    of the headers a client may not set (`X-Portcullis-*` and look-alikes, forwarding, rewrite and
 *    method-override headers, hop-by-hop headers, the gateway's cookies);
 * 3. exactly one request record (`kind` http or websocket) per request the gateway answered, under the
 *    id in its `X-Portcullis-Request-Id`, with the status the client saw — and no record for anything
 *    the gateway did not answer (a request pipelined behind a refused one); every new audit line is
 *    one JSON object, whatever line breaks a reader recognises.
 *
 * A case declares only its bytes and expectations; `rawCase` runs it and checks all of the above.
 */
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { expect } from 'vitest';
import { addUser } from '../../src/identity/local-users.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { chainProblems } from '../support/audit-records.js';
import { startBearerIssuer, type BearerIssuer } from '../support/bearer-issuer.js';
import { createBrowserClient } from '../support/browser-client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { send } from '../support/http-client.js';
import { startRecordingUpstream, type RecordedRequest, type RecordingUpstream } from '../support/recording-upstream.js';
import type { Logger } from 'pino';

export const HOST = 'app.localhost';
export const PEER = '127.0.0.1';

/** Passwords of the users every environment has. */
export const USERS = {
  alice: { password: 'alice correct horse 1', groups: ['eng'], email: 'alice@example.com' },
  bob: { password: 'bob correct horse 22', groups: ['sre', 'eng'], email: 'bob@example.com' },
} as const;

/** Routes every environment serves: the policy the suite attacks. First match wins. */
export function standardRoutes(upstream: string): Record<string, unknown>[] {
  return [
    { id: 'public', host: HOST, path: '/public', upstream, public: true, websocket: true },
    { id: 'admin', host: HOST, path: '/admin', upstream, allow: { groups: ['sre'] } },
    { id: 'ws', host: HOST, path: '/ws', upstream, allow: { groups: ['eng'] }, websocket: true, websocket_origins: ['https://partner.example'] },
    { id: 'nows', host: HOST, path: '/nows', upstream, allow: { groups: ['eng'] } },
    { id: 'stepup', host: HOST, path: '/stepup', upstream, allow: { groups: ['eng'] }, mfa: { factors: ['totp'], max_age: '10m' } },
    {
      id: 'app',
      host: HOST,
      path: '/',
      upstream,
      allow: { groups: ['eng'] },
      rules: [{ path: '/app/admin', methods: ['POST', 'PUT', 'DELETE'], allow: { groups: ['sre'] } }],
    },
    { id: 'other', host: 'other.localhost', path: '/', upstream, public: true },
    { id: 'wild', host: '*.wild.localhost', path: '/', upstream, public: true },
    { id: 'preserve', host: 'preserve.localhost', path: '/', upstream, public: true, preserve_host: true },
  ];
}

export interface SecurityEnv {
  readonly gw: TestGateway;
  readonly upstream: RecordingUpstream;
  readonly issuer: BearerIssuer;
  readonly instance: string;
  /** Every audit record read so far, in order, with its raw line. */
  readonly lines: string[];
  readonly records: AuditRecord[];
  stop(): Promise<void>;
}

/** Options for {@link startSecurityEnv}. */
export interface EnvOptions {
  readonly server?: Record<string, unknown>;
  readonly identity?: Record<string, unknown>;
  readonly routes?: (upstream: string) => Record<string, unknown>[];
  readonly logger?: Logger;
}

/** Starts an upstream, a bearer issuer and a gateway with the standard routes and users. */
export async function startSecurityEnv(name: string, opts: EnvOptions = {}): Promise<SecurityEnv> {
  const upstream = await startRecordingUpstream();
  const issuer = await startBearerIssuer();
  const instance = `sec-${name}`;
  const gw = await startGateway(
    {
      server: { instance_id: instance, public_url: `http://${HOST}`, trusted_proxies: ['10.0.0.0/8'], ...opts.server },
      identity: {
        bearer: [{ issuer: issuer.issuer, audience: 'portcullis', jwks_uri: issuer.jwksUri }],
        login_limits: { per_user: 1000, per_ip: 1000, window: '1m' },
        ...opts.identity,
      },
      audit: { seal: { origin: 'security.test/audit' } },
      routes: (opts.routes ?? standardRoutes)(upstream.url),
    },
    opts.logger === undefined ? {} : { logger: opts.logger },
  );
  const users = join(gw.dir, 'users.yaml');
  for (const [user, u] of Object.entries(USERS)) await addUser(users, { name: user, email: u.email, groups: [...u.groups], password: u.password });
  const env: SecurityEnv = {
    gw,
    upstream,
    issuer,
    instance,
    lines: [],
    records: [],
    async stop() {
      // The log this environment wrote is one unbroken chain, whatever the suite threw at it.
      await gw.app.audit.flush(2000);
      readNewRecords(env);
      expect(chainProblems(env.lines)).toEqual([]);
      await gw.stop();
      await upstream.close();
      await issuer.close();
    },
  };
  return env;
}

// ---------------------------------------------------------------------------------------------
// Audit records, read incrementally from the file sink
// ---------------------------------------------------------------------------------------------

const readOffsets = new WeakMap<SecurityEnv, Map<string, number>>();

/** Reads the records appended since the last call (whole lines only) into `env.records`. */
function readNewRecords(env: SecurityEnv): void {
  const dir = join(env.gw.dir, 'audit', env.instance);
  let offsets = readOffsets.get(env);
  if (offsets === undefined) {
    offsets = new Map();
    readOffsets.set(env, offsets);
  }
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.startsWith('records-')).sort();
  } catch {
    return;
  }
  for (const f of files) {
    const buf = readFileSync(join(dir, f));
    const from = offsets.get(f) ?? 0;
    const end = buf.lastIndexOf(0x0a) + 1;
    if (end <= from) continue;
    const text = buf.subarray(from, end).toString('utf8');
    offsets.set(f, end);
    for (const line of text.split('\n')) {
      if (line === '') continue;
      env.lines.push(line);
      env.records.push(JSON.parse(line) as AuditRecord);
    }
  }
}

/** A request record (one per request), as opposed to `auth`, `config` and `postgres` event records. */
export function isRequestRecord(r: AuditRecord): boolean {
  return r.kind === 'http' || r.kind === 'websocket';
}

/** Every line break any common reader recognises (Python's splitlines, Unicode line separators …). */
// eslint-disable-next-line no-control-regex
export const ANY_LINE_BREAK = /\r\n|[\n\r\v\f\u001c-\u001e\u0085\u2028\u2029]/;

// ---------------------------------------------------------------------------------------------
// The invariants
// ---------------------------------------------------------------------------------------------

/** Where a case starts: what the upstream and the audit log held before it. */
export interface Mark {
  readonly upstream: number;
  readonly records: number;
}

/** Takes the mark a case's checks start from (flushing the records of anything before it). */
export async function mark(env: SecurityEnv): Promise<Mark> {
  await env.gw.app.audit.flush(2000);
  readNewRecords(env);
  return { upstream: env.upstream.requests.length, records: env.records.length };
}

/** What a case saw, for the invariants. */
export interface Outcome {
  /** The requests the gateway answered: id (from X-Portcullis-Request-Id) and the status the client saw. */
  readonly answered: readonly { readonly id: string; readonly status: number }[];
  /**
   * The targets (path?query) the upstream must have received, in any order; `judged-only` checks
   * each request that arrived against its record without fixing the list (the fuzzer's case).
   */
  readonly upstream: readonly string[] | 'judged-only';
  /** Request records expected beyond the answered ones (the gateway answered but the client did not see it). */
  readonly unanswered?: number;
  /**
   * Whether the number of request records must equal the answered ones exactly (default). Off only
   * when the client gave up before the gateway finished, so a late record is not a surprise.
   */
  readonly exactCount?: boolean;
}

/** Header names (after lower-casing and reading punctuation as `-`) a client may never get to an upstream. */
const NEVER_FORWARDED = new Set([
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-override-url',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-method',
  'proxy-authorization',
  'proxy-connection',
  'keep-alive',
  'te',
  'trailer',
  'http2-settings',
  'expect',
]);
/** The X-Portcullis-* and X-Forwarded-* headers the gateway itself sends, by exact name. */
const GATEWAY_HEADERS = new Set([
  'x-portcullis-request-id',
  'x-portcullis-user',
  'x-portcullis-email',
  'x-portcullis-groups',
  'x-portcullis-mfa',
  'x-portcullis-assertion',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

function norm(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '-');
}

/** Checks one upstream request against its audit record; returns the problems found. */
function upstreamProblems(req: RecordedRequest, records: readonly AuditRecord[], publicRoutes: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const ids = headerValues(req.rawHeaders, 'x-portcullis-request-id');
  if (ids.length !== 1) return [`upstream request ${req.url} carries ${ids.length} request ids`];
  const id = ids[0] ?? '';
  const rec = records.find((r) => r.id === id && isRequestRecord(r));
  if (rec === undefined) return [`upstream request ${req.url} (${id}) has no request record`];
  // Allowed by policy; the upstream may have failed it afterwards. (A request recorded as cut short by
  // its client — a silent or unparsable body — never arrives whole.)
  const failedAfter = rec.decision === 'error' && (rec.reason ?? '').startsWith('upstream-');
  if (rec.decision !== 'allow' && !failedAfter) problems.push(`upstream request ${req.url} was recorded as ${String(rec.decision)} (${String(rec.reason)})`);
  const path = req.url.split('?')[0] ?? '';
  const judged = rec.request?.path ?? '';
  // Records cap paths at 2048 characters (the cut is marked with …): compare what the record kept.
  const same = judged.endsWith('…') && judged.length === 2048 ? path.startsWith(judged.slice(0, -1)) : judged === path;
  if (!same) problems.push(`upstream got path ${path}, policy judged ${judged}`);
  if (rec.identity === undefined && !publicRoutes.has(rec.route ?? '')) problems.push(`anonymous request reached non-public route ${String(rec.route)}`);
  const seen = new Map<string, number>();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] ?? '';
    const key = norm(name);
    seen.set(key, (seen.get(key) ?? 0) + 1);
    if (NEVER_FORWARDED.has(key)) problems.push(`upstream got ${name}`);
    if ((key.startsWith('x-portcullis-') || key.startsWith('x-forwarded-')) && !(GATEWAY_HEADERS.has(key) && name === key)) problems.push(`upstream got client header ${name}`);
    if (key === 'upgrade' && (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') problems.push(`upstream got Upgrade: ${String(req.headers.upgrade)}`);
    if (key === 'cookie' && /(?:^|;\s*)(?:__Host-portcullis|portcullis_)/.test(req.rawHeaders[i + 1] ?? '')) problems.push('upstream got a gateway cookie');
  }
  for (const key of GATEWAY_HEADERS) if ((seen.get(key) ?? 0) > 1) problems.push(`upstream got ${key} ${seen.get(key)} times`);
  const user = headerValues(req.rawHeaders, 'x-portcullis-user');
  if (rec.identity === undefined ? user.length !== 0 : user[0] !== rec.identity.user) problems.push(`upstream got X-Portcullis-User ${JSON.stringify(user)} for identity ${String(rec.identity?.user)}`);
  if (headerValues(req.rawHeaders, 'x-forwarded-for')[0] !== PEER) problems.push(`upstream got X-Forwarded-For ${JSON.stringify(headerValues(req.rawHeaders, 'x-forwarded-for'))}`);
  return problems;
}

function headerValues(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if ((raw[i] ?? '') === name) out.push(raw[i + 1] ?? '');
  return out;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The invariants, checked after every case. Returns the case's new records and upstream requests. */
export async function verifyInvariants(env: SecurityEnv, from: Mark, outcome: Outcome): Promise<{ records: AuditRecord[]; upstream: RecordedRequest[] }> {
  // 1. Still up.
  const ready = await fetch(`${env.gw.adminUrl}/readyz`, { signal: AbortSignal.timeout(5000) });
  expect(ready.status, 'the gateway answers /readyz').toBe(200);

  // 3 (first, since 2 needs the records). Wait until every answered request has its record.
  const want = new Set(outcome.answered.map((a) => a.id));
  const expectedCount = want.size + (outcome.unanswered ?? 0);
  const fresh = (): AuditRecord[] => env.records.slice(from.records).filter(isRequestRecord);
  const deadline = Date.now() + 5000;
  for (;;) {
    await env.gw.app.audit.flush(1000);
    readNewRecords(env);
    const got = fresh();
    if (got.length >= expectedCount && [...want].every((id) => got.some((r) => r.id === id))) break;
    if (Date.now() > deadline) break;
    await sleep(10);
  }
  await sleep(5);
  await env.gw.app.audit.flush(1000);
  readNewRecords(env);
  const records = fresh();
  for (const a of outcome.answered) {
    const mine = records.filter((r) => r.id === a.id);
    expect(mine.length, `request records for ${a.id} (answered ${a.status})`).toBe(1);
    expect(mine[0]?.response?.status, `recorded status of ${a.id}`).toBe(a.status);
  }
  if (outcome.exactCount !== false) expect(records.length, `request records: ${records.map((r) => `${r.id} ${r.response?.status}`).join(', ')}`).toBe(expectedCount);
  for (const line of env.lines.slice(from.records)) {
    expect(line.split(ANY_LINE_BREAK).length, 'an audit line is one line to every reader').toBe(1);
  }

  // 2. The upstream got exactly what the policy let through, as judged.
  const upstream = env.upstream.requests.slice(from.upstream);
  if (outcome.upstream !== 'judged-only') expect(upstream.map((r) => r.url).sort(), 'what reached the upstream').toEqual([...outcome.upstream].sort());
  const all = env.records.slice(from.records);
  const publicRoutes = new Set(env.gw.app.snapshot().config.routes.filter((r) => r.public).map((r) => r.id));
  expect(upstream.flatMap((r) => upstreamProblems(r, all, publicRoutes))).toEqual([]);
  return { records, upstream };
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over a socket
// ---------------------------------------------------------------------------------------------

export interface RawHttpResponse {
  readonly status: number;
  readonly headers: ReadonlyMap<string, readonly string[]>;
  readonly body: Buffer;
  /** The gateway's id for the request, from X-Portcullis-Request-Id. */
  readonly id: string | undefined;
  header(name: string): string | undefined;
}

export interface Exchange {
  /** Final responses, in order (1xx interim responses are in `interim`). */
  readonly responses: RawHttpResponse[];
  readonly interim: RawHttpResponse[];
  /** Everything received. */
  readonly raw: Buffer;
  /** Whether the server closed the connection (rather than the client giving up). */
  readonly closedByServer: boolean;
  /** Milliseconds from the first write to the end. */
  readonly ms: number;
}

/** Parses consecutive HTTP/1.x responses from `buf`; stops at a 101 or at an incomplete one. */
export function parseResponses(buf: Buffer, closed: boolean): { final: RawHttpResponse[]; interim: RawHttpResponse[] } {
  const final: RawHttpResponse[] = [];
  const interim: RawHttpResponse[] = [];
  let at = 0;
  for (;;) {
    const headEnd = buf.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const lines = buf.subarray(at, headEnd).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (m === null) break;
    const status = Number(m[1]);
    const headers = new Map<string, string[]>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const k = line.slice(0, colon).trim().toLowerCase();
      headers.set(k, [...(headers.get(k) ?? []), line.slice(colon + 1).trim()]);
    }
    const bodyStart = headEnd + 4;
    let body: Buffer = Buffer.alloc(0);
    const make = (): RawHttpResponse => ({
      status,
      headers,
      body,
      id: headers.get('x-portcullis-request-id')?.[0],
      header: (name: string) => headers.get(name.toLowerCase())?.[0],
    });
    if (status >= 100 && status < 200 && status !== 101) {
      interim.push(make());
      at = bodyStart;
      continue;
    }
    if (status === 101 || status === 204 || status === 304) {
      final.push(make());
      if (status === 101) break;
      at = bodyStart;
      continue;
    }
    const cl = headers.get('content-length')?.[0];
    const te = headers.get('transfer-encoding')?.[0];
    if (cl !== undefined) {
      const n = Number(cl);
      if (buf.length < bodyStart + n) break;
      body = buf.subarray(bodyStart, bodyStart + n);
      at = bodyStart + n;
    } else if (te !== undefined && te.toLowerCase().includes('chunked')) {
      const parts: Buffer[] = [];
      let p = bodyStart;
      let complete = false;
      for (;;) {
        const eol = buf.indexOf('\r\n', p);
        if (eol < 0) break;
        const size = parseInt(buf.subarray(p, eol).toString('latin1'), 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const end = buf.indexOf('\r\n\r\n', eol);
          if (end < 0) break;
          p = end + 4;
          complete = true;
          break;
        }
        if (buf.length < eol + 2 + size + 2) break;
        parts.push(buf.subarray(eol + 2, eol + 2 + size));
        p = eol + 2 + size + 2;
      }
      if (!complete) break;
      body = Buffer.concat(parts);
      at = p;
    } else {
      if (!closed) break;
      body = buf.subarray(bodyStart);
      at = buf.length;
    }
    final.push(make());
  }
  return { final, interim };
}

/** How to talk to the gateway in one exchange. */
export interface ExchangeOptions {
  /** Stop once this many final responses arrived (and `settleMs` passed without more data). Default 1. */
  readonly responses?: number;
  /** Give up after this long. Default 3000 ms. */
  readonly timeoutMs?: number;
  /** Quiet time after the expected responses before resolving. Default 40 ms. */
  readonly settleMs?: number;
  /** Later writes: [delay after the previous write in ms, bytes]. */
  readonly then?: readonly (readonly [number, string | Buffer])[];
  /** Half-close the connection after the last write. */
  readonly end?: boolean;
}

/** Writes raw bytes to the gateway and reads responses until it closes or enough have arrived. */
export function exchange(port: number, payload: string | Buffer, opts: ExchangeOptions = {}): Promise<Exchange> {
  const want = opts.responses ?? 1;
  const timeoutMs = opts.timeoutMs ?? 3000;
  const settleMs = opts.settleMs ?? 40;
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    let settle: NodeJS.Timeout | undefined;
    const timers: NodeJS.Timeout[] = [];
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      if (settle !== undefined) clearTimeout(settle);
      socket.destroy();
      const raw = Buffer.concat(chunks);
      const { final, interim } = parseResponses(raw, closedByServer);
      resolve({ responses: final, interim, raw, closedByServer, ms: Date.now() - started });
    };
    timers.push(setTimeout(() => finish(false), timeoutMs));
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (settle !== undefined) clearTimeout(settle);
      if (parseResponses(Buffer.concat(chunks), false).final.length >= want) settle = setTimeout(() => finish(false), settleMs);
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => undefined);
    socket.write(payload);
    let delay = 0;
    for (const [ms, bytes] of opts.then ?? []) {
      delay += ms;
      timers.push(
        setTimeout(() => {
          if (!socket.destroyed) socket.write(bytes);
        }, delay),
      );
    }
    if (opts.end === true) timers.push(setTimeout(() => socket.end(), delay + 1));
  });
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/** One raw case: bytes in, what must come out. */
export interface RawCase {
  readonly name: string;
  readonly send: string | Buffer;
  /** The status of each final response, in order; their number is how many the client must get. */
  readonly expect: number | readonly number[];
  /** Targets the upstream must receive (any order); default none. */
  readonly upstream?: readonly string[];
  readonly options?: ExchangeOptions;
  /** Request records beyond the answered ones. */
  readonly unanswered?: number;
  /** Extra checks on what came back and what was recorded. */
  readonly check?: (x: Exchange, seen: { records: AuditRecord[]; upstream: RecordedRequest[] }) => void;
}

/** Runs a raw case and checks its expectations and every invariant. */
export async function rawCase(env: SecurityEnv, c: RawCase): Promise<Exchange> {
  const statuses = typeof c.expect === 'number' ? [c.expect] : c.expect;
  const from = await mark(env);
  const x = await exchange(env.gw.port, c.send, { responses: statuses.length, ...c.options });
  expect(x.responses.map((r) => r.status), `responses to: ${c.name}\n${x.raw.toString('latin1').slice(0, 600)}`).toEqual(statuses);
  for (const r of x.responses) expect(r.id, 'every answer carries a request id').toMatch(/^[0-9a-f-]{36}$/);
  const seen = await verifyInvariants(env, from, {
    answered: x.responses.map((r) => ({ id: r.id ?? '', status: r.status })),
    upstream: c.upstream ?? [],
    ...(c.unanswered === undefined ? {} : { unanswered: c.unanswered }),
  });
  c.check?.(x, seen);
  return x;
}

/** `GET target HTTP/1.1` with Host and extra header lines, closing after the answer. */
export function get(target: string, headers: readonly string[] = [], host = HOST): string {
  return `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`;
}

// ---------------------------------------------------------------------------------------------
// Identities
// ---------------------------------------------------------------------------------------------

/** Signs in with the login form and returns the session cookie (`name=value`). */
export async function signIn(env: SecurityEnv, user: keyof typeof USERS, host = HOST): Promise<string> {
  const b = createBrowserClient(env.gw.port, host);
  const page = await b.get('/.portcullis/login?rd=%2F');
  const res = await b.post('/.portcullis/login', { username: user, password: USERS[user].password, csrf: b.hidden(page, 'csrf'), rd: '/' });
  expect(res.status).toBe(303);
  const value = b.cookies.get('portcullis_session');
  if (value === undefined) throw new Error('no session cookie after sign-in');
  return `portcullis_session=${value}`;
}

/** A valid bearer token for `sub` with `groups`. */
export function bearer(env: SecurityEnv, sub: string, groups: string[], ttlS = 300): Promise<string> {
  return env.issuer.token('portcullis', { sub, groups }, ttlS);
}

// ---------------------------------------------------------------------------------------------
// Scenarios: several requests through a node:http client, checked as one case
// ---------------------------------------------------------------------------------------------

export interface Reply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly text: string;
  readonly id: string;
  header(name: string): string | undefined;
}

export interface Call {
  readonly method?: string;
  readonly path: string;
  /** Flat [name, value, …] list (Host is added unless given). */
  readonly headers?: readonly string[];
  readonly body?: string;
  readonly host?: string;
}

/** A scenario's client: every call is one request whose answer the invariants account for. */
export type Caller = (c: Call) => Promise<Reply>;

/** Notes a request the scenario made by other means (a WebSocket handshake): its id and status. */
export type Note = (id: string, status: number) => void;

/** Runs several requests as one case; checks every invariant over all of them at the end. */
export async function scenario(env: SecurityEnv, run: (call: Caller, note: Note) => Promise<void>, upstreamTargets: readonly string[] = []): Promise<{ records: AuditRecord[]; upstream: RecordedRequest[] }> {
  const from = await mark(env);
  const answered: { id: string; status: number }[] = [];
  const call: Caller = async (c) => {
    const headers = [...(c.headers ?? [])];
    if (!headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'host')) headers.unshift('Host', c.host ?? HOST);
    if (c.body !== undefined) headers.push('Content-Length', String(Buffer.byteLength(c.body)));
    const r = await send(env.gw.port, { method: c.method ?? 'GET', path: c.path, headers, ...(c.body === undefined ? {} : { body: c.body }) });
    const id = String(r.headers['x-portcullis-request-id'] ?? '');
    answered.push({ id, status: r.status });
    return { status: r.status, headers: r.headers, text: r.text(), id, header: (n: string) => { const v = r.headers[n.toLowerCase()]; return Array.isArray(v) ? v[0] : v; } };
  };
  await run(call, (id, status) => answered.push({ id, status }));
  return verifyInvariants(env, from, { answered, upstream: upstreamTargets });
}

/** The value of a hidden form input in a page, as a browser reads it. */
export function hidden(html: string, name: string): string {
  const m = new RegExp(`<input type="hidden" name="${name}" value="([^"]*)"`).exec(html);
  if (m?.[1] === undefined) throw new Error(`no hidden input ${name} in:\n${html}`);
  return m[1].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** The `name=value` of a Set-Cookie for `name` in a reply, if any (deletions excluded). */
export function setCookieOf(r: Reply, name: string): string | undefined {
  const all = r.headers['set-cookie'];
  const list = Array.isArray(all) ? all : all === undefined ? [] : [all];
  const line = list.find((l) => l.startsWith(`${name}=`) && !/Max-Age=0(;|$)/i.test(l));
  return line?.split(';')[0];
}

/** Whether a Location (or rd) keeps a browser on `origin`, read the way browsers read URLs. */
export function staysOn(origin: string, location: string): boolean {
  if (location === '' || !location.startsWith('/') || location.startsWith('//') || location.startsWith('/\\')) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(location)) return false;
  try {
    return new URL(location, origin).origin === origin;
  } catch {
    return false;
  }
}
