/**
 * The composition root: builds every module and adapter from a config and wires them together.
 * No process side effects here (signals, exit, argv live in main.ts), so tests build the same graph.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { formatIssues, loadConfigFile, type Config } from './config/index.js';
import { createAdminServer, type ReadinessCheck } from './metrics/admin-server.js';
import { createChannels, subscribeMetrics } from './metrics/events.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { createPipeline, type Authenticator, type GatewayEndpointHandler } from './proxy/pipeline.js';
import { createPoolRegistry, createSnapshot, type Snapshot } from './proxy/snapshot.js';
import { hostname } from 'node:os';
import { isAbsolute, relative, resolve } from 'node:path';
import { openAuditLog, type AuditLog } from './audit/audit-log.js';
import { createAuditAuthEventSink, type AuthEventSink } from './audit/auth-events.js';
import { createAuditSink } from './audit/create-sink.js';
import { clean } from './audit/record.js';
import { createRequestAuditor } from './audit/request-auditor.js';
import { createSealer, type Sealer } from './audit/sealer.js';
import { loadOrCreateSealKey } from './audit/seal-key.js';
import { signerFromPrivateKey, vkeyOf, type NoteSigner } from './audit/signed-note.js';
import type { AuditSink } from './audit/sink.js';
import { createAuthenticator } from './identity/authenticator.js';
import type { Identity } from './identity/index.js';
import { createIdentityRuntime, type IdentityRuntime } from './identity/runtime.js';
import { createStore, type Store } from './store/index.js';
import { createGatewayEndpoints } from './web/gateway-endpoints.js';
import { createFileCredentialStore, createRedisCredentialStore } from './mfa/credential-store.js';
import type { CredentialStore } from './mfa/factors.js';
import { loadOrCreateSecretKey, type SecretBox } from './mfa/secret-box.js';
import { createMfaService } from './mfa/service.js';
import { createEndpointKit } from './web/endpoint-kit.js';
import { createMfaEndpoints } from './web/mfa-endpoints.js';
import { createDatabaseGateway, createDatabaseTokens } from './database/index.js';
import { createConnectEndpoints } from './web/connect-endpoints.js';
import { createAuditViewer } from './web/audit-viewer.js';
import { createCliTokens } from './identity/cli-tokens.js';
import { createCliEndpoints } from './web/cli-endpoints.js';

/** Everything the app needs from outside. */
export interface AppOptions {
  readonly config: Readonly<Config>;
  /** The file the config came from; reloads read it again. */
  readonly configFile?: string;
  readonly logger: Logger;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Epoch milliseconds; injectable for tests. */
  readonly now?: () => number;
  readonly authenticator?: Authenticator;
  /** Collect prom-client's default process metrics (off in tests that build many apps). */
  readonly defaultMetrics?: boolean;
  /** Use this store instead of building one from `config.store` (tests). */
  readonly store?: Store;
  /** Also send identity events here (tests); they always go to the audit log. */
  readonly authEvents?: AuthEventSink;
  /** Use this audit sink instead of building one from `config.audit.sink` (tests). */
  readonly auditSink?: AuditSink;
  /** Lets OIDC talk to an http:// issuer. Only tests set this; production requires https. */
  readonly allowInsecureOidc?: boolean;
}

/** The addresses the app listens on once started. */
export interface AppAddresses {
  readonly public: AddressInfo;
  readonly admin: AddressInfo;
}

/** A running (or runnable) gateway. */
export interface App {
  readonly metrics: Metrics;
  /** The snapshot new requests get. */
  snapshot(): Snapshot;
  start(): Promise<AppAddresses>;
  /** Re-reads the config file; an invalid file is refused and the old config keeps serving. */
  reload(): Promise<boolean>;
  /** Swaps in an already validated config. */
  applyConfig(config: Readonly<Config>): void;
  /** This instance's audit log writer. */
  readonly audit: AuditLog;
  /** This instance's checkpoint writer. */
  readonly sealer: Sealer;
  /**
   * Drains and stops: /readyz turns 503 at once; after `drainDelayMs` (server.timeouts.drain_delay)
   * the listeners stop accepting and idle keep-alive connections close; in-flight requests finish
   * (with Connection: close) up to the grace period; then the audit log (final checkpoint) and the
   * store close.
   */
  stop(graceMs?: number, drainDelayMs?: number): Promise<void>;
}

/** Splits `host:port` / `[v6]:port` / `:port`. */
export function parseListen(listen: string): { host: string | undefined; port: number } {
  const idx = listen.lastIndexOf(':');
  let host = listen.slice(0, idx);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host: host === '' ? undefined : host, port: Number(listen.slice(idx + 1)) };
}

/** Starts `srv` listening on a `host:port` address; resolves with the bound address. */
export function listenOn(srv: http.Server, address: string): Promise<AddressInfo> {
  const { host, port } = parseListen(address);
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host, port }, () => {
      srv.off('error', reject);
      resolve(srv.address() as AddressInfo);
    });
  });
}

/**
 * The checkpoint signers: the seal key (created on first start, mode 0600, refused inside the file
 * sink's directory) and, during a rotation, the previous key too.
 */
async function sealSigners(audit: Config['audit'], logger: Logger): Promise<{ signers: NoteSigner[]; introduceKey?: string }> {
  const keyFile = resolve(audit.seal.key_file);
  if (audit.sink.type === 'file') {
    const rel = relative(resolve(audit.sink.dir), keyFile);
    if (!rel.startsWith('..') && !isAbsolute(rel)) {
      throw new Error(`audit.seal.key_file (${audit.seal.key_file}) is inside the audit sink directory; keep the signing key out of the data it seals`);
    }
  }
  const current = await loadOrCreateSealKey(keyFile);
  if (current.created) logger.warn({ keyFile, vkey: vkeyOf(audit.seal.origin, current.publicKey) }, 'created a new audit seal key: back it up, and give verifiers its public key (the vkey)');
  if (current.insecurePermissions) logger.warn({ keyFile }, 'the audit seal key is readable by other users; chmod 600 it');
  const signers = [signerFromPrivateKey(audit.seal.origin, current.privateKey)];
  if (audit.seal.previous_key_file === undefined) return { signers };
  // Rotation: checkpoints are signed by both keys and announce the new one, so a verifier that
  // trusts the old key learns the new key from a checkpoint the old key vouches for.
  const previous = await loadOrCreateSealKey(resolve(audit.seal.previous_key_file), { create: false });
  signers.push(signerFromPrivateKey(audit.seal.origin, previous.privateKey));
  return { signers, introduceKey: vkeyOf(audit.seal.origin, current.publicKey) };
}

/**
 * Where enrolled second factors live: in Redis when the store is Redis (replicas share them), else in
 * the credentials file (the embedded default survives restarts).
 */
function createCredentialStore(config: Readonly<Config>, logger: Logger): CredentialStore {
  if (config.store.type === 'redis' && config.store.redis !== undefined) {
    return createRedisCredentialStore({ connection: config.store.redis, keyPrefix: config.store.redis.key_prefix, logger });
  }
  return createFileCredentialStore(resolve(config.mfa.credentials_file));
}

/** Builds the gateway: its store, identity, pipeline, listeners and metrics. */
export async function createApp(opts: AppOptions): Promise<App> {
  const logger = opts.logger;
  const now = opts.now ?? Date.now;
  const metrics = createMetrics({ defaultMetrics: opts.defaultMetrics ?? true });
  const channels = createChannels(randomBytes(6).toString('hex'));
  const unsubscribe = subscribeMetrics(channels, metrics);
  const store = opts.store ?? createStore(opts.config.store, { logger });
  const ownsStore = opts.store === undefined;
  const auditCfg = opts.config.audit;
  const instance = opts.config.server.instance_id ?? hostname();
  const sink = opts.auditSink ?? createAuditSink(auditCfg.sink, { logger });
  const ownsSink = opts.auditSink === undefined;
  let identity: IdentityRuntime;
  let audit: AuditLog;
  let sealer: Sealer;
  let mfaCredentials: CredentialStore;
  let mfaSecrets: SecretBox;
  let opened: CredentialStore | undefined;
  try {
    sealer = createSealer({
      sink,
      instance,
      origin: `${auditCfg.seal.origin}/${instance}`,
      ...(await sealSigners(auditCfg, logger)),
      everyMs: auditCfg.seal.every,
      maxRecords: auditCfg.seal.max_records,
      witnessDir: auditCfg.seal.witness_dir,
      logger: logger.child({ component: 'sealer' }),
      now,
    });
    audit = await openAuditLog({
      sink,
      instance,
      origin: `${auditCfg.seal.origin}/${instance}`,
      spoolDir: auditCfg.spool_dir,
      onFailure: auditCfg.on_failure,
      logger: logger.child({ component: 'audit' }),
      onAppend: (result, n) => metrics.auditRecords.labels(sink.kind, result).inc(n),
      onAcked: (records) => sealer.acknowledged(records),
    });
    sealer.start();
    identity = await createIdentityRuntime(opts.config, { store, logger, now, ...(opts.allowInsecureOidc === true ? { allowInsecureOidc: true } : {}) });
    opened = createCredentialStore(opts.config, logger);
    mfaCredentials = opened;
    mfaSecrets = await loadOrCreateSecretKey(resolve(opts.config.mfa.secret_key_file));
  } catch (err) {
    await opened?.close();
    if (ownsStore) await store.close();
    if (ownsSink) await sink.close();
    unsubscribe();
    throw err;
  }
  metrics.sources.audit = () => {
    const st = audit.stats();
    return { queueDepth: st.spooled, spooled: st.sinkHealthy ? 0 : st.spooled, treeSize: st.size, lastCheckpointSeconds: Math.floor(sealer.stats().lastCheckpointAt / 1000) };
  };
  const authEvents = createAuditAuthEventSink(audit, logger, opts.authEvents);
  const auditor = createRequestAuditor({ log: audit, logger, now, redactParams: () => current.config.audit.redact.query_params });
  const pools = createPoolRegistry();
  let version = 1;
  let current = createSnapshot(opts.config, version, pools);
  const inFlight = new Set<Promise<unknown>>();
  const upgradedSockets = new Set<Duplex>();
  let draining = false;
  let started = false;

  const kit = createEndpointKit({ sessions: identity.sessions, events: authEvents, channels, logger, now });
  const mfa = createMfaService({ credentials: mfaCredentials, store, secrets: mfaSecrets, sessions: identity.sessions, now });
  const tokenStepUp = (who: Identity) => (who.tokenRef === undefined ? Promise.resolve(undefined) : mfa.tokenGrant(who.tokenRef, who.user));
  const auditViewer = createAuditViewer({
    kit,
    sessions: identity.sessions,
    log: audit,
    sealer,
    instance,
    audit: auditCfg,
    config: () => current.config,
    // History is read through a sink of its own (its own Redis connection): reads never queue behind appends.
    openReader: () => (ownsSink ? createAuditSink(auditCfg.sink, { logger }) : sink),
    tokenStepUp,
    logger: logger.child({ component: 'audit-viewer' }),
    now,
  });
  // Database listeners (SPEC §7): tokens bound to web sessions; the current config's databases.
  const dbTokens = createDatabaseTokens({ store, sessions: identity.sessions, now });
  const databases = createDatabaseGateway({ databases: () => current.config.databases, tokens: dbTokens, audit, channels, logger: logger.child({ component: 'database' }), now });
  // Gateway-issued CLI tokens (docs/cli-protocol.md); a refresh token lives as long as a session may.
  const cliTokens = createCliTokens({ store, now, refreshTtlMs: () => current.config.identity.session.max_lifetime });
  const authenticator =
    opts.authenticator ??
    createAuthenticator({ sessions: identity.sessions, bearer: () => identity.bearer(), oidc: (id) => identity.oidc(id), logger, now, events: authEvents, cliTokens });
  const endpoints: GatewayEndpointHandler = createGatewayEndpoints({
    cli: createCliEndpoints({ kit, cli: cliTokens, sessions: identity.sessions, store, tokenStepUp, challenge: (req) => authenticator.challenge?.(req), events: authEvents, logger, now }),
    tokenStepUp,
    mfa: createMfaEndpoints({ kit, mfa, logger }),
    connect: createConnectEndpoints({ kit, tokens: dbTokens, sessionHandle: (s) => identity.sessions.handleOf(s), tokenStepUp, events: authEvents, logger, now }),
    auditViewer,
    sessions: identity.sessions,
    store,
    localUsers: identity.localUsers,
    oidc: (id) => identity.oidc(id),
    signer: identity.signer,
    events: authEvents,
    channels,
    logger,
    now,
  });
  const pipeline = createPipeline({
    snapshot: () => current,
    authenticator,
    endpoints,
    endpointUpgrade: auditViewer.upgrade,
    signAssertion: (who, audience) => identity.signer.sign(who, audience),
    tokenStepUp,
    auditor,
    channels,
    logger,
    now,
    track: (work) => {
      inFlight.add(work);
      void work.finally(() => inFlight.delete(work));
      return work;
    },
    draining: () => draining,
  });

  const cfg = opts.config.server;
  const serverOptions: http.ServerOptions = {
    maxHeaderSize: cfg.limits.max_header,
    requestTimeout: 0,
    headersTimeout: cfg.timeouts.request_headers,
    keepAliveTimeout: cfg.timeouts.keep_alive,
    // Node checks for slow heads only this often (default 30 s, which would let a slowloris head live
    // up to request_headers + 30 s).
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(cfg.timeouts.request_headers / 2))),
    // The pipeline refuses a missing Host itself (GW_ERR_REQUEST_HOST, with a record); Node's own check
    // would answer a bare 400 that no record mentions.
    requireHostHeader: false,
    joinDuplicateHeaders: false,
  };
  const server =
    cfg.tls === undefined
      ? http.createServer(serverOptions)
      : https.createServer({ ...serverOptions, cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) });
  // Every header the parser read is seen by the pipeline (Node's default stops at 2000 and silently
  // drops the rest — a second Host or a Transfer-Encoding among them); max_header bounds the head.
  server.maxHeadersCount = 0;
  server.on('request', pipeline.handleRequest);
  // `Expect: 100-continue` is answered by the pipeline (only a request it forwards is invited to send
  // its body); other expectations are refused there, with a record, instead of Node's bare 417.
  server.on('checkContinue', pipeline.handleRequest);
  server.on('checkExpectation', pipeline.handleRequest);
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    upgradedSockets.add(socket);
    socket.once('close', () => upgradedSockets.delete(socket));
    pipeline.handleUpgrade(req, socket, head);
  });
  // CONNECT (authority-form) is never proxied: the gateway is not a forward proxy.
  server.on('connect', pipeline.handleConnect);
  // Requests the parser refuses (bad framing, heads too large or too slow) are answered and recorded.
  server.on('clientError', pipeline.handleClientError);

  const readiness: ReadinessCheck[] = [
    { name: 'config', check: () => started && !draining },
    { name: `store (${store.kind})`, check: () => store.ping() },
    {
      name: `audit (${sink.kind})`,
      // In reject mode a sink outage stops traffic, so readiness follows the sink itself.
      check: async () => audit.admission() === undefined && (auditCfg.on_failure === 'spool' || (await sink.ping())),
    },
  ];
  const admin = createAdminServer(metrics.registry, () => readiness);

  /**
   * Releases everything behind the listeners, in dependency order: upstream pools, the audit log
   * (ships what it can), a final checkpoint, then the sink and store connections.
   */
  async function releaseAll(): Promise<void> {
    await auditViewer.close();
    await pools.closeAll();
    await audit.close();
    await sealer.close();
    if (ownsSink) await sink.close();
    await mfaCredentials.close();
    if (ownsStore) await store.close();
    unsubscribe();
  }

  /** A `config` audit record for a reload attempt. */
  function recordConfig(result: 'success' | 'failure', detail: string): void {
    audit
      .append(
        {
          v: 1,
          id: randomUUID(),
          ts: new Date(now()).toISOString(),
          kind: 'config',
          decision: result === 'success' ? 'allow' : 'error',
          reason: result === 'success' ? 'config-reloaded' : 'config-refused',
          event: { action: 'reload', result, file: opts.configFile ?? null, detail: clean(detail, 4096) },
        },
        false,
      )
      .catch((err: unknown) => logger.error({ err }, 'config audit record could not be spooled'));
  }

  function applyConfig(config: Readonly<Config>): void {
    const old = current;
    if (config.server.listen !== old.config.server.listen || config.server.admin_listen !== old.config.server.admin_listen) {
      logger.warn('server.listen / server.admin_listen changes take effect only after a restart');
    }
    // audit.viewer (who may open the viewer) applies on reload; the rest of audit.* needs a restart.
    const restartOnly = (c: Readonly<Config>) => JSON.stringify({ ...c.audit, viewer: undefined });
    if (restartOnly(config) !== restartOnly(old.config) || config.server.instance_id !== old.config.server.instance_id) {
      logger.warn('audit.* and server.instance_id changes take effect only after a restart (the log keeps its single writer)');
    }
    const dbListeners = (c: Readonly<Config>) => JSON.stringify(c.databases.map((d) => [d.id, d.listen, d.tls ?? null]));
    if (dbListeners(config) !== dbListeners(old.config)) {
      logger.warn('databases: added, removed or re-addressed listeners (id, listen, tls) take effect only after a restart; a removed database refuses new connections and closes open ones now; other database settings apply to new connections');
    }
    if (JSON.stringify(config.store) !== JSON.stringify(old.config.store)) {
      logger.warn('store changes take effect only after a restart');
    }
    const next = createSnapshot(config, version + 1, pools);
    identity.applyConfig(config);
    version += 1;
    current = next;
    // Pools the new snapshot no longer uses close once their in-flight requests finish.
    void pools.retainOnly([current]).catch((err: unknown) => {
      logger.warn({ err }, 'closing unused upstream pools failed');
    });
    logger.info({ version, routes: config.routes.length }, 'configuration applied');
  }

  return {
    metrics,
    audit,
    snapshot: () => current,
    async start() {
      const results = await Promise.allSettled([listenOn(server, cfg.listen), listenOn(admin, cfg.admin_listen)]);
      const [pub, adm] = results;
      if (pub.status === 'rejected' || adm.status === 'rejected') {
        // Never leave one listener up when the other failed: close what opened, then report.
        await Promise.all([server, admin].map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
        await releaseAll();
        const failed = pub.status === 'rejected' ? { what: 'server.listen', address: cfg.listen, reason: pub.reason as unknown } : { what: 'server.admin_listen', address: cfg.admin_listen, reason: (adm as PromiseRejectedResult).reason as unknown };
        const detail = failed.reason instanceof Error ? failed.reason.message : String(failed.reason);
        throw new Error(`cannot listen on ${failed.address} (${failed.what}): ${detail}`, { cause: failed.reason });
      }
      try {
        await databases.start(current.config.databases);
      } catch (err) {
        await Promise.all([server, admin].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
        await releaseAll();
        throw err;
      }
      started = true;
      return { public: pub.value, admin: adm.value };
    },
    async reload() {
      if (opts.configFile === undefined) return false;
      const result = await loadConfigFile(opts.configFile, opts.env ?? process.env);
      if (!result.ok) {
        const issues = formatIssues(result.issues).split('\n');
        logger.error({ issues }, 'configuration reload refused; the previous configuration keeps serving');
        channels.configReload.publish({ result: 'failure' });
        recordConfig('failure', issues.slice(0, 20).join('\n'));
        return false;
      }
      try {
        applyConfig(result.config);
      } catch (err) {
        logger.error({ err }, 'configuration reload refused: it could not be compiled; the previous configuration keeps serving');
        channels.configReload.publish({ result: 'failure' });
        recordConfig('failure', err instanceof Error ? err.message : String(err));
        return false;
      }
      channels.configReload.publish({ result: 'success' });
      recordConfig('success', `${result.config.routes.length} routes`);
      return true;
    },
    applyConfig,
    async stop(graceMs = current.config.server.timeouts.shutdown_grace, drainDelayMs = current.config.server.timeouts.drain_delay) {
      // Readiness turns 503 now. During drain_delay both listeners keep accepting (every response
      // with Connection: close) so balancers see the 503 and stop sending; then both stop accepting.
      draining = true;
      if (drainDelayMs > 0) await new Promise<void>((resolve) => setTimeout(resolve, drainDelayMs));
      const closed = Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        new Promise<void>((resolve) => admin.close(() => resolve())),
      ]);
      server.closeIdleConnections();
      admin.closeIdleConnections();
      // WebSockets have no natural end; they are closed now, and their clients reconnect elsewhere.
      for (const s of upgradedSockets) s.destroy();
      // Database sessions too: each gets a FATAL 57P01 (its upstream rolls back), then is closed.
      await databases.stop(Math.min(graceMs, 2000));
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([Promise.allSettled([...inFlight]).then(() => undefined), deadline]);
      server.closeAllConnections();
      admin.closeAllConnections();
      await closed;
      await releaseAll();
    },
    sealer,
  };
}
