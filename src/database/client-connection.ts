/**
 * One client connection to a database listener, from the first byte to the last:
 *
 *   negotiate (SSLRequest → TLS or 'N', GSSENCRequest → 'N', CancelRequest → forwarded)
 *   → startup (protocol 3.0, user, database) → TLS rule → cleartext password = token
 *   → policy (the database's allow) → audit admission → upstream sign-in (service credentials)
 *   → relay, both directions, frames passed through untouched
 *
 * While relaying, the client's messages are scanned for statements (an intent record is spooled
 * before a chunk that starts one is forwarded), the server's for their ends (one record each), and
 * the token and the web session behind it are re-checked on a timer and, cheaply, before every
 * statement. A revoked or expired token ends the connection with a FATAL ErrorResponse, sent at a
 * frame boundary so the client reads a well-formed message.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls, { type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { RecordBody } from '../audit/record.js';
import type { DatabaseConfig } from '../config/index.js';
import type { Identity } from '../identity/index.js';
import type { Channels } from '../metrics/events.js';
import { evaluatePolicy } from '../policy/index.js';
import { sendCancel, type CancelKeys, type ClientCancelKey } from './cancel-keys.js';
import { createFrameScanner, FrameError, type Frame, type FrameScanner } from './frame-scanner.js';
import { databasePolicyTarget } from './policy-target.js';
import {
  authenticationCleartext,
  authenticationOk,
  backendKeyData,
  BE,
  commandLabel,
  errorResponse,
  FE,
  frontendCapture,
  MAX_STARTUP_PACKET,
  negotiateProtocolVersion,
  parameterStatus,
  parseStartupPacket,
  readErrorFields,
  readFrontendMessage,
  readPassword,
  readyForQuery,
  terminateMessage,
  type ErrorFields,
  type StartupPacket,
} from './protocol.js';
import { connectRecord, disconnectRecord, statementIntentRecord, statementRecord, type ConnectionFacts } from './records.js';
import { createStatementTracker, type StatementEnd, type StatementStart } from './statement-tracker.js';
import { tokenIdentity, type DatabaseTokenRecord, type DatabaseTokens, type TokenRefusal } from './tokens.js';
import type { SaltedPasswordCache } from './upstream-auth.js';
import { connectUpstream, UpstreamError, type UpstreamSession } from './upstream-connect.js';

/** The audit log as a database connection uses it (a subset of `AuditLog`). */
export interface DatabaseAuditLog {
  append(body: RecordBody, durable: boolean): Promise<unknown>;
  intent(intent: { readonly id: string; readonly body: RecordBody }, durable: boolean): Promise<void>;
  admission(): string | undefined;
}

/** What every connection of a gateway shares. */
export interface ConnectionDeps {
  readonly tokens: DatabaseTokens;
  readonly audit: DatabaseAuditLog;
  readonly cancelKeys: CancelKeys;
  readonly channels: Channels;
  readonly logger: Logger;
  /** Epoch milliseconds (token expiry, audit timestamps). */
  readonly now: () => number;
  readonly saltCache: SaltedPasswordCache;
}

/** A live connection, as the gateway sees it (for shutdown). */
export interface LiveConnection {
  /** Ends the connection with a FATAL error (at a frame boundary); resolves once it is closed. */
  terminate(reason: string, error: ErrorFields): Promise<void>;
}

/** How long a client may take from connecting to being authenticated (PostgreSQL's default is 60 s). */
const STARTUP_TIMEOUT_MS = 30_000;
/** The largest message accepted before authentication (a password message holding a token). */
const MAX_AUTH_MESSAGE = 8192;
/** Frames can be up to 1 GiB in PostgreSQL; nothing is buffered, so the gateway accepts the same. */
const MAX_FRAME = 1024 ** 3;
/** How long a termination waits for the current server frame to end before cutting the connection. */
const TERMINATE_GRACE_MS = 2000;
/** How long a failing store may go unanswered before open connections are closed (fail closed). */
const RECHECK_FAILURE_LIMIT_MS = 30_000;

const FATAL = {
  protocol: (message: string): ErrorFields => ({ severity: 'FATAL', code: '08P01', message }),
  password: (user: string): ErrorFields => ({ severity: 'FATAL', code: '28P01', message: `password authentication failed for user "${user}"`, hint: 'Get a fresh password from /.portcullis/connect on the gateway.' }),
} as const;

/** Startup parameters never passed upstream: the gateway sets these itself or refuses them. */
const RESERVED_PARAMS = new Set(['user', 'database', 'replication']);

function isLoopback(ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.');
}

/**
 * Whether a client may send its password (the token, in cleartext inside the protocol) over this
 * connection: when it is TLS, when the client is on the loopback interface, or when the database
 * allows cleartext explicitly (`allow_cleartext_without_tls`).
 */
export function mayReceivePassword(c: { readonly tls: boolean; readonly clientIp: string; readonly allowCleartext: boolean }): boolean {
  return c.tls || c.allowCleartext || isLoopback(c.clientIp);
}

/** Buffered reads for the negotiation and authentication phase (before the relay takes over). */
function createStartupReader() {
  let chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  let wake: (() => void) | undefined;
  let stream: Duplex | undefined;
  const onData = (c: Buffer) => {
    chunks.push(c);
    size += c.length;
    if (size > MAX_STARTUP_PACKET + MAX_AUTH_MESSAGE) stream?.destroy();
    wake?.();
  };
  const onEnd = () => {
    ended = true;
    wake?.();
  };
  async function take(n: number): Promise<Buffer> {
    while (size < n) {
      if (ended) throw new Error('client closed the connection');
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
    const all = chunks.length === 1 ? (chunks[0] ?? Buffer.alloc(0)) : Buffer.concat(chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    chunks = rest.length > 0 ? [rest] : [];
    size = rest.length;
    return out;
  }
  return {
    attach(s: Duplex): void {
      stream = s;
      s.on('data', onData);
      s.on('end', onEnd);
      s.on('close', onEnd);
    },
    detach(): void {
      stream?.pause();
      stream?.off('data', onData);
      stream?.off('end', onEnd);
      stream?.off('close', onEnd);
      stream = undefined;
    },
    buffered: () => size,
    /** The bytes read beyond what was taken (a client may pipeline its first query). */
    leftover(): Buffer {
      const out = Buffer.concat(chunks);
      chunks = [];
      size = 0;
      return out;
    },
    async startupPacket(): Promise<Buffer> {
      const len = (await take(4)).readInt32BE(0);
      if (len < 8 || len > MAX_STARTUP_PACKET) throw new FrameError(`invalid startup packet length ${len}`);
      const rest = await take(len - 4);
      const packet = Buffer.allocUnsafe(len);
      packet.writeInt32BE(len, 0);
      rest.copy(packet, 4);
      return packet;
    },
    async message(): Promise<{ type: number; body: Buffer }> {
      const header = await take(5);
      const type = header[0] ?? 0;
      const len = header.readInt32BE(1);
      if (len < 4 || len - 4 > MAX_AUTH_MESSAGE) throw new FrameError(`invalid message length ${len}`);
      return { type, body: Buffer.from(await take(len - 4)) };
    },
  };
}

/**
 * Serves one accepted client socket to the end. `database` is the listener's configuration at accept
 * time; `current` reads the database's configuration now (re-checks use it, so a reload that removes
 * a user from `allow` closes that user's connections).
 */
export function serveClient(
  socket: Socket,
  listener: {
    readonly database: DatabaseConfig;
    readonly current: () => DatabaseConfig | undefined;
    readonly tls: SecureContext | undefined;
    readonly register: (c: LiveConnection) => () => void;
    readonly draining: () => boolean;
  },
  deps: ConnectionDeps,
): void {
  const db = listener.database;
  const log = deps.logger;
  const openNs = process.hrtime.bigint();
  const facts: { -readonly [K in keyof ConnectionFacts]: ConnectionFacts[K] } = {
    connection: randomUUID(),
    database: db.id,
    clientIp: socket.remoteAddress ?? '',
    identity: undefined,
    claimedUser: '',
    upstream: `postgres://${db.upstream.user}@${db.upstream.host}:${db.upstream.port}/${db.upstream.database}`,
  };
  socket.setNoDelay(true);
  socket.on('error', (err) => log.debug({ err, connection: facts.connection }, 'database client socket error'));
  let client: Duplex = socket;
  let isTls = false;
  let application: string | undefined;
  const reader = createStartupReader();
  reader.attach(socket);
  const startupTimer = setTimeout(() => socket.destroy(), STARTUP_TIMEOUT_MS);
  startupTimer.unref();

  /** Refuses the connection with a FATAL error (and a `connect` record when it got that far). */
  function refuse(error: ErrorFields, record?: { decision: NonNullable<RecordBody['decision']>; reason: string }): void {
    clearTimeout(startupTimer);
    reader.detach();
    if (record !== undefined) appendRecord(connectRecord(facts, record, { tls: isTls, application, nowMs: deps.now() }));
    if (client.writable) client.end(errorResponse(error));
    else client.destroy();
    setTimeout(() => client.destroy(), 1000).unref();
  }

  function appendRecord(body: RecordBody): void {
    deps.audit.append(body, false).catch((err: unknown) => log.error({ err, connection: facts.connection }, 'database audit record could not be spooled'));
  }

  async function upgradeToTls(context: SecureContext): Promise<void> {
    reader.detach();
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context, ALPNProtocols: ['postgresql'] });
    secure.on('error', (err) => log.debug({ err, connection: facts.connection }, 'database client TLS error'));
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('closed during the TLS handshake')));
    });
    client = secure;
    isTls = true;
    reader.attach(secure);
  }

  async function negotiate(): Promise<Extract<StartupPacket, { kind: 'startup' }> | undefined> {
    for (;;) {
      const packet = parseStartupPacket(await reader.startupPacket());
      switch (packet.kind) {
        case 'ssl':
          if (isTls) {
            refuse(FATAL.protocol('SSLRequest on an encrypted connection'));
            return undefined;
          }
          if (listener.tls === undefined) {
            client.write('N');
            continue;
          }
          // Bytes sent before the handshake would be read as if they came over TLS: refuse them.
          if (reader.buffered() > 0) {
            socket.destroy();
            return undefined;
          }
          socket.write('S');
          await upgradeToTls(listener.tls);
          continue;
        case 'gssenc':
          client.write('N');
          continue;
        case 'cancel':
          clearTimeout(startupTimer);
          if (!deps.cancelKeys.cancel(packet.pid, packet.secret)) log.debug({ connection: facts.connection }, 'database cancel request with an unknown key ignored');
          client.destroy();
          return undefined;
        case 'invalid':
          refuse({ severity: 'FATAL', code: packet.reason.startsWith('unsupported frontend protocol') ? '0A000' : '08P01', message: packet.reason });
          return undefined;
        case 'startup':
          return packet;
      }
    }
  }

  async function authenticate(startup: Extract<StartupPacket, { kind: 'startup' }>): Promise<{ record: DatabaseTokenRecord; hash: string } | undefined> {
    const user = startup.params.get('user') ?? '';
    facts.claimedUser = user;
    application = startup.params.get('application_name');
    // Protocol 3.x with a newer minor version or protocol options: answer what this gateway speaks.
    const options = [...startup.params.keys()].filter((k) => k.startsWith('_pq_.'));
    if (startup.minor > 0 || options.length > 0) client.write(negotiateProtocolVersion(0, options));
    if (user === '') {
      refuse({ severity: 'FATAL', code: '28000', message: 'no user name specified in the startup packet' });
      return undefined;
    }
    const replication = (startup.params.get('replication') ?? 'false').toLowerCase();
    if (!['false', 'off', 'no', '0'].includes(replication)) {
      refuse({ severity: 'FATAL', code: '0A000', message: 'replication connections are not supported through the gateway' }, { decision: 'deny', reason: 'replication-refused' });
      return undefined;
    }
    const dbname = startup.params.get('database') ?? user;
    if (dbname !== db.id && dbname !== db.upstream.database && dbname !== user) {
      refuse({ severity: 'FATAL', code: '3D000', message: `database "${dbname}" does not exist`, hint: `This address serves the database "${db.id}".` });
      return undefined;
    }
    if (!mayReceivePassword({ tls: isTls, clientIp: facts.clientIp, allowCleartext: db.allow_cleartext_without_tls })) {
      refuse(
        { severity: 'FATAL', code: '28000', message: 'an encrypted connection is required', hint: listener.tls === undefined ? 'The gateway has no TLS certificate for this database; ask its operators.' : 'Connect with sslmode=require.' },
        { decision: 'deny', reason: 'tls-required' },
      );
      return undefined;
    }
    client.write(authenticationCleartext());
    const msg = await reader.message();
    const password = msg.type === FE.password ? readPassword(msg.body) : undefined;
    if (password === undefined) {
      refuse(FATAL.protocol('expected a password message'), { decision: 'unauthenticated', reason: 'no-password' });
      return undefined;
    }
    let result;
    try {
      result = await deps.tokens.verify(password, db.id, user);
    } catch (err) {
      log.error({ err, connection: facts.connection }, 'database token check failed: the store does not answer');
      refuse({ severity: 'FATAL', code: '57P03', message: 'the gateway cannot check passwords right now; try again shortly' }, { decision: 'error', reason: 'store-unavailable' });
      return undefined;
    }
    if (!result.ok) {
      refuse(FATAL.password(user), { decision: 'unauthenticated', reason: result.reason });
      return undefined;
    }
    facts.identity = tokenIdentity(result.record);
    const decision = evaluatePolicy(databasePolicyTarget(listener.current() ?? db, { mfa: false }), facts.identity, deps.now());
    if (decision.effect !== 'allow') {
      refuse({ severity: 'FATAL', code: '42501', message: `permission denied for database "${db.id}"` }, { decision: 'deny', reason: decision.reason });
      return undefined;
    }
    if (deps.audit.admission() !== undefined || listener.draining()) {
      refuse({ severity: 'FATAL', code: '57P03', message: 'the gateway cannot record statements right now, so it does not connect; try again shortly' }, { decision: 'error', reason: listener.draining() ? 'gateway-shutdown' : 'audit-unavailable' });
      return undefined;
    }
    return { record: result.record, hash: result.hash };
  }

  async function run(): Promise<void> {
    const startup = await negotiate();
    if (startup === undefined) return;
    const auth = await authenticate(startup);
    if (auth === undefined) return;
    const params: Record<string, string> = {};
    for (const [k, v] of startup.params) if (!RESERVED_PARAMS.has(k) && !k.startsWith('_pq_.')) params[k] = v;
    let upstream: UpstreamSession;
    try {
      upstream = await connectUpstream(db.upstream, { params, timeoutMs: db.upstream.connect_timeout, nonce: () => randomBytes(18).toString('base64'), saltCache: deps.saltCache });
    } catch (err) {
      const e = err instanceof UpstreamError ? err : new UpstreamError(String(err), 'protocol');
      log.warn({ err: e, connection: facts.connection, database: db.id }, 'database upstream unavailable');
      const passOn = e.kind === 'refused' && e.sqlstate !== undefined && !e.sqlstate.startsWith('28');
      refuse(
        passOn ? { severity: 'FATAL', code: e.sqlstate ?? '08001', message: e.message } : { severity: 'FATAL', code: '08001', message: `the gateway could not connect to the database (${e.kind})` },
        { decision: 'error', reason: `upstream-${e.kind}` },
      );
      return;
    }
    clearTimeout(startupTimer);
    try {
      await deps.audit.append(connectRecord(facts, { decision: 'allow', reason: 'token-ok' }, { tls: isTls, application, nowMs: deps.now() }), false);
    } catch (err) {
      log.error({ err, connection: facts.connection }, 'database connect record could not be spooled');
      upstream.socket.destroy();
      refuse({ severity: 'FATAL', code: '57P03', message: 'the gateway cannot record statements right now, so it does not connect; try again shortly' });
      return;
    }
    const leftover = reader.leftover();
    reader.detach();
    relay(upstream, auth, leftover);
  }

  // ---------------------------------------------------------------------------------------------
  // The relay
  // ---------------------------------------------------------------------------------------------

  function relay(upstream: UpstreamSession, auth: { record: DatabaseTokenRecord; hash: string }, leftover: Buffer): void {
    const server = upstream.socket;
    const identity: Identity = tokenIdentity(auth.record);
    const key: ClientCancelKey | undefined = upstream.key === undefined ? undefined : deps.cancelKeys.register({ host: db.upstream.host, port: db.upstream.port, ...upstream.key });
    const tracker = createStatementTracker({ newId: randomUUID });
    const fromClient: FrameScanner = createFrameScanner({ capture: (t) => frontendCapture(t, db.audit.max_sql * 4), maxLength: MAX_FRAME });
    const fromServer: FrameScanner = createFrameScanner({ capture: backendCapture, countType: BE.dataRow, maxLength: MAX_FRAME });
    let bytesIn = 0;
    let bytesOut = 0;
    let statements = 0;
    let clientTerminated = false;
    let serverSentFatal = false;
    /** Set once the connection is being ended: the reason recorded. */
    let ending: string | undefined;
    let fatal: ErrorFields | undefined;
    let closed = false;
    let closedResolve: () => void = () => undefined;
    const closedPromise = new Promise<void>((r) => (closedResolve = r));
    /** Client chunks waiting while an intent is spooled (kept in order). */
    const pending: Buffer[] = [];
    let spooling = false;
    let serverBlocked = false;
    /** A revocation seen by a re-check: the next statement (or the timer) ends the connection. */
    let revoked: { reason: string; error: ErrorFields } | undefined;
    let recheckFailingSince: number | undefined;

    const unregister = listener.register({ terminate: (reason, error) => terminate(reason, error).then(() => closedPromise) });
    deps.channels.dbSession.publish({ database: db.id, delta: 1 });

    // The client sees a normal startup: authentication ok, the server's parameters, a key of ours.
    const hello: Buffer[] = [authenticationOk()];
    for (const [name, value] of upstream.parameters) hello.push(parameterStatus(name, value));
    if (key !== undefined) hello.push(backendKeyData(key.pid, key.secret));
    hello.push(readyForQuery(upstream.status));
    client.write(Buffer.concat(hello));

    function recordEnds(ends: readonly StatementEnd[]): void {
      const nowMs = deps.now();
      for (const end of ends) {
        statements += 1;
        appendRecord(statementRecord({ ...facts, identity }, end, { nowMs, maxSql: db.audit.max_sql }));
        deps.channels.dbStatement.publish({ database: db.id, command: end.outcome === 'error' ? 'ERROR' : commandLabel(end.command) });
      }
    }

    /** Why the token no longer holds, judged without the store (expiry, or a re-check already failed). */
    function quickCheck(): { reason: string; error: ErrorFields } | undefined {
      if (revoked !== undefined) return revoked;
      if (deps.now() >= auth.record.expiresAt) return { reason: 'token-expired', error: { severity: 'FATAL', code: '28000', message: 'terminating connection because the database password expired', hint: 'Get a fresh password from /.portcullis/connect.' } };
      if (deps.audit.admission() !== undefined) return { reason: 'audit-unavailable', error: { severity: 'FATAL', code: '57P01', message: 'terminating connection because the gateway cannot record statements right now' } };
      return undefined;
    }

    function refusalError(reason: TokenRefusal | 'token-revoked' | 'policy-changed'): ErrorFields {
      const why =
        reason === 'session-ended'
          ? 'the web session that issued the database password ended'
          : reason === 'token-expired'
            ? 'the database password expired'
            : reason === 'policy-changed'
              ? 'the user is no longer allowed to use this database'
              : 'the database password was revoked';
      return { severity: 'FATAL', code: '28000', message: `terminating connection because ${why}`, hint: 'Get a fresh password from /.portcullis/connect.' };
    }

    async function recheck(): Promise<void> {
      if (ending !== undefined || revoked !== undefined) return;
      const quick = quickCheck();
      if (quick !== undefined) {
        void terminate(quick.reason, quick.error);
        return;
      }
      try {
        const result = await deps.tokens.check(auth.hash);
        recheckFailingSince = undefined;
        let reason: TokenRefusal | 'token-revoked' | 'policy-changed' | undefined = result.ok ? undefined : result.reason === 'token-unknown' ? 'token-revoked' : result.reason;
        if (reason === undefined) {
          const cfg = listener.current();
          const decision = cfg === undefined ? undefined : evaluatePolicy(databasePolicyTarget(cfg, { mfa: false }), identity, deps.now());
          if (decision?.effect !== 'allow') reason = 'policy-changed';
        }
        if (reason !== undefined) {
          revoked = { reason, error: refusalError(reason) };
          void terminate(revoked.reason, revoked.error);
        }
      } catch (err) {
        const at = deps.now();
        recheckFailingSince ??= at;
        log.warn({ err, connection: facts.connection }, 'database token re-check failed: the store does not answer');
        if (at - recheckFailingSince > RECHECK_FAILURE_LIMIT_MS) void terminate('store-unavailable', { severity: 'FATAL', code: '57P01', message: 'terminating connection because the gateway cannot re-check the database password' });
      }
    }
    const recheckTimer = setInterval(() => void recheck(), db.recheck_every);
    recheckTimer.unref();

    // --- client → server --------------------------------------------------------------------

    /** Client input may be forwarded now (no intent being spooled, not ending). */
    function canForward(): boolean {
      return !spooling && ending === undefined;
    }

    /** Client input may be read now (also: the upstream is not applying back-pressure). */
    function canRead(): boolean {
      return canForward() && !serverBlocked;
    }

    function toServer(chunk: Buffer): void {
      if (ending !== undefined) return;
      if (!server.write(chunk) && !serverBlocked) {
        serverBlocked = true;
        client.pause();
        server.once('drain', () => {
          serverBlocked = false;
          if (canForward()) client.resume();
        });
      }
    }

    function fromClientChunk(chunk: Buffer): void {
      let frames: Frame[];
      try {
        frames = fromClient.push(chunk);
      } catch (err) {
        void terminate('protocol-error', FATAL.protocol(err instanceof Error ? err.message : 'invalid message'));
        return;
      }
      const nowNs = process.hrtime.bigint();
      const starts: StatementStart[] = [];
      for (const f of frames) {
        const msg = readFrontendMessage(f.type, f.head);
        if (msg.t === 'terminate') clientTerminated = true;
        const start = tracker.frontend(msg, nowNs);
        if (start !== undefined) starts.push(start);
      }
      recordEnds(tracker.takeSkipped());
      if (starts.length === 0) {
        toServer(chunk);
        return;
      }
      const problem = quickCheck();
      if (problem !== undefined) {
        // Never forwarded: these statements end with the connection (recorded as `closed`).
        void terminate(problem.reason, problem.error);
        return;
      }
      if (!db.audit.intents) {
        // Configured away: the statement goes at once; its end record is its only record.
        toServer(chunk);
        return;
      }
      spooling = true;
      client.pause();
      const nowMs = deps.now();
      Promise.all(starts.map((s) => deps.audit.intent({ id: s.id, body: statementIntentRecord({ ...facts, identity }, s, { nowMs, maxSql: db.audit.max_sql }) }, false))).then(
        () => {
          spooling = false;
          toServer(chunk);
          while (pending.length > 0 && canForward()) fromClientChunk(pending.shift() ?? Buffer.alloc(0));
          if (canRead()) client.resume();
        },
        (err: unknown) => {
          log.error({ err, connection: facts.connection }, 'database statement intent could not be spooled');
          void terminate('audit-unavailable', { severity: 'FATAL', code: '57P01', message: 'terminating connection because the gateway cannot record statements right now' });
        },
      );
    }

    client.on('data', (chunk: Buffer) => {
      bytesIn += chunk.length;
      if (ending !== undefined) return;
      if (spooling) pending.push(chunk);
      else fromClientChunk(chunk);
    });
    client.on('end', () => {
      if (ending === undefined) {
        ending = clientTerminated ? 'client-terminated' : 'client-closed';
        if (clientTerminated) server.end();
        else server.end(terminateMessage());
      }
    });
    client.on('close', () => finish(ending ?? (clientTerminated ? 'client-terminated' : 'client-closed')));

    // --- server → client --------------------------------------------------------------------

    let cutTimer: NodeJS.Timeout | undefined;

    server.on('data', (chunk: Buffer) => {
      let out = chunk;
      let cut: number | undefined;
      if (fatal !== undefined) {
        cut = fromServer.boundaryIn(chunk);
        if (cut !== undefined) out = chunk.subarray(0, cut);
      }
      let frames: Frame[];
      try {
        frames = fromServer.push(out);
      } catch (err) {
        log.warn({ err, connection: facts.connection }, 'database upstream sent something that is not PostgreSQL protocol');
        server.destroy();
        client.destroy();
        return;
      }
      const nowNs = process.hrtime.bigint();
      for (const f of frames) {
        const ends = tracker.backend(backendEvent(f), nowNs);
        if (ends.length > 0) recordEnds(ends);
        if (f.type === BE.errorResponse) {
          const severity = readErrorFields(f.head).get('V');
          if (severity === 'FATAL' || severity === 'PANIC') serverSentFatal = true;
        }
      }
      bytesOut += out.length;
      if (out.length > 0 && !client.write(out)) {
        server.pause();
        client.once('drain', () => server.resume());
      }
      if (fatal !== undefined && cut !== undefined) sendFatal();
    });
    server.on('error', (err) => log.debug({ err, connection: facts.connection }, 'database upstream socket error'));
    server.on('close', () => {
      if (ending === undefined && !serverSentFatal) {
        void terminate('upstream-closed', { severity: 'FATAL', code: '08006', message: 'the connection to the database was lost' });
        return;
      }
      ending ??= 'upstream-closed';
      if (fatal === undefined) client.end();
    });
    server.resume();

    if (leftover.length > 0) {
      bytesIn += leftover.length;
      fromClientChunk(leftover);
    }
    // The startup reader paused the client; flow resumes unless an intent is being spooled.
    if (canRead()) client.resume();

    /** Ends the connection: no more client input; FATAL at the next frame boundary; both sides closed. */
    function terminate(reason: string, error: ErrorFields): Promise<void> {
      if (ending !== undefined || closed) return closedPromise;
      ending = reason;
      fatal = error;
      client.pause();
      pending.length = 0;
      // A statement still running upstream is cancelled, so that closing does not wait for it.
      if (tracker.busy() && upstream.key !== undefined) sendCancel({ host: db.upstream.host, port: db.upstream.port, ...upstream.key });
      if (fromServer.atBoundary()) sendFatal();
      else {
        server.resume();
        cutTimer = setTimeout(() => {
          client.destroy();
          server.destroy();
        }, TERMINATE_GRACE_MS);
      }
      return closedPromise;
    }

    function sendFatal(): void {
      clearTimeout(cutTimer);
      const error = fatal;
      fatal = undefined;
      if (error !== undefined && client.writable) client.end(errorResponse(error));
      else client.destroy();
      server.end(terminateMessage());
      setTimeout(() => {
        client.destroy();
        server.destroy();
      }, TERMINATE_GRACE_MS).unref();
    }

    function finish(reason: string): void {
      if (closed) return;
      closed = true;
      clearInterval(recheckTimer);
      clearTimeout(cutTimer);
      key?.release();
      server.destroy();
      recordEnds(tracker.close(process.hrtime.bigint()));
      const endNs = process.hrtime.bigint();
      appendRecord(
        disconnectRecord({ ...facts, identity }, { id: randomUUID(), reason, statements, bytesIn, bytesOut, openNs, endNs, nowMs: deps.now() }),
      );
      deps.channels.dbSession.publish({ database: db.id, delta: -1 });
      unregister();
      log.debug({ connection: facts.connection, database: db.id, user: identity.user, reason, statements }, 'database connection closed');
      closedResolve();
    }
  }

  run().catch((err: unknown) => {
    clearTimeout(startupTimer);
    if (err instanceof FrameError) refuse(FATAL.protocol(err.message));
    else {
      log.debug({ err, connection: facts.connection }, 'database client went away during startup');
      client.destroy();
    }
  });
}

/** Body bytes of backend messages the gateway reads (`-1`: not reported). */
function backendCapture(type: number): number {
  switch (type) {
    case BE.commandComplete:
      return 128;
    case BE.errorResponse:
      return 4096;
    case BE.readyForQuery:
      return 1;
    case BE.emptyQuery:
    case BE.parseComplete:
    case BE.bindComplete:
    case BE.closeComplete:
    case BE.rowDescription:
    case BE.noData:
    case BE.portalSuspended:
    case BE.functionCallResponse:
      return 0;
    default:
      return -1;
  }
}

/** The tracker's view of a reported backend frame. */
function backendEvent(f: Frame): { type: number; rowsBefore: number; tag?: string; code?: string; status?: string } {
  switch (f.type) {
    case BE.commandComplete: {
      const end = f.head.indexOf(0);
      return { type: f.type, rowsBefore: f.countedBefore, tag: f.head.toString('utf8', 0, end === -1 ? f.head.length : end) };
    }
    case BE.errorResponse:
      return { type: f.type, rowsBefore: f.countedBefore, code: readErrorFields(f.head).get('C') ?? '' };
    case BE.readyForQuery:
      return { type: f.type, rowsBefore: f.countedBefore, status: String.fromCharCode(f.head[0] ?? 0x49) };
    default:
      return { type: f.type, rowsBefore: f.countedBefore };
  }
}
