/**
 * The audit viewer (SPEC §3 `/.portcullis/audit`, `/.portcullis/audit/live`): a page for SREs to skim
 * who did what as it happens and to see that the log is intact, and the JSON and WebSocket endpoints
 * behind it.
 *
 *   GET  audit                      the page (script: /.portcullis/assets/audit-viewer.js)
 *   GET  audit/records?filters&before=N&limit=N   history, newest first (any log in the sink)
 *   GET  audit/records/<seq>?instance=ID          one record
 *   GET  audit/health               per log: records, tree size, newest checkpoint, spool, last verification
 *   GET  audit/activity             chart data for this instance's last hour
 *   POST audit/verify               runs a verification of every log (X-Portcullis-CSRF + same origin)
 *   GET  audit/live?filters&after=N&instance=ID   WebSocket: this instance's records as they are appended
 *
 * Access: `audit.viewer` (default: group `sre` with a WebAuthn step-up at most 15 minutes old), judged
 * by the same `evaluatePolicy` as routes, on every request and every few seconds on an open live
 * feed (which closes when the session ends or the step-up goes stale). Every request here returns its
 * outcome to the pipeline, which writes its audit record; the live feed gets one when it closes.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { AuditLog } from '../audit/audit-log.js';
import { activityOf, createActivity, type Activity } from '../audit/activity.js';
import { parseCheckpoint } from '../audit/checkpoint.js';
import { parseRecord, readHistory, readOne } from '../audit/history.js';
import { createLiveFeed, FeedFullError } from '../audit/live-feed.js';
import type { Sealer } from '../audit/sealer.js';
import { openNote } from '../audit/signed-note.js';
import type { AuditSink } from '../audit/sink.js';
import { createVerificationRunner, type VerificationRunner } from '../audit/verify-run.js';
import { parseViewerFilter, type ViewerFilter } from '../audit/viewer-filter.js';
import type { Config } from '../config/index.js';
import type { Identity, MfaCheck } from '../identity/index.js';
import type { SessionManager } from '../identity/sessions.js';
import { evaluatePolicy, type Decision, type PolicyTarget } from '../policy/index.js';
import type { DecisionLabel, EndpointOutcome, RequestContext, Verdict } from '../proxy/pipeline.js';
import { safeEqual } from './cookies.js';
import { auditViewerPage } from './audit-viewer-page.js';
import { json, notFound, queryParams, scriptedPage, send, type EndpointKit } from './endpoint-kit.js';
import { errorResponse, redirectResponse, type GatewayResponse } from './error-response.js';

/** What the viewer needs. */
export interface AuditViewerDeps {
  readonly kit: EndpointKit;
  readonly sessions: SessionManager;
  /** This instance's writer: its appends feed the live tail; its counters the health panel. */
  readonly log: Pick<AuditLog, 'subscribe' | 'stats'>;
  readonly sealer: Pick<Sealer, 'stats'>;
  readonly instance: string;
  /** The audit configuration the gateway started with (sink, seal: what verification reads). */
  readonly audit: Config['audit'];
  /** The configuration in force now (the viewer's policy applies on reload). */
  readonly config: () => Readonly<Config>;
  /** Opens a reader of the configured sink (history, health, resumes); closed with the viewer. */
  readonly openReader: () => AuditSink;
  /** The browser step-up granted to a bearer token (RFC 9470 flow), as for routes. */
  readonly tokenStepUp?: (identity: Identity) => Promise<MfaCheck | undefined>;
  readonly logger: Logger;
  readonly now: () => number;
}

const PAGE_LIMIT_MAX = 500;
const HEALTH_CACHE_MS = 5_000;
const IDLE_RELEASE_MS = 10 * 60_000;
const ACTIVITY_SEED_RECORDS = 20_000;
const LIVE_PATH = 'live';
/** How often an open live feed re-checks its session and the policy. */
const RECHECK_MS = 2_000;
/** How often the live feed pushes health (and every third time the chart data). */
const PUSH_MS = 2_000;
/** WebSocket close codes the page understands (4000 + the HTTP status it mirrors). */
export const LIVE_CLOSE = { sessionEnded: 4401, notAllowed: 4403, stepUpStale: 4428 } as const;

const SCRIPT_HEADERS = { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' } as const;

function loadAsset(relative: string): string {
  return readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', relative), 'utf8');
}

/** The viewer's policy as a route, so that the same `evaluatePolicy` judges it. */
function viewerTarget(config: Readonly<Config>): PolicyTarget {
  const v = config.audit.viewer;
  return { route: { public: false, allow: v.allow, ...(v.mfa === null ? {} : { mfa: v.mfa }) }, rule: undefined };
}

function label(decision: Decision): DecisionLabel {
  return decision.effect;
}

/** Creates the viewer's endpoints. */
export function createAuditViewer(deps: AuditViewerDeps) {
  const { kit, now } = deps;
  let reader: AuditSink | undefined;
  const sink = (): AuditSink => (reader ??= deps.openReader());
  const verification: VerificationRunner = createVerificationRunner({ audit: deps.audit, now });
  let activity: Activity | undefined;
  let activityFrom = 0;
  let lastUse = 0;
  let asset: string | undefined;
  const sockets = new Set<WebSocket>();
  let closed = false;

  const feed = createLiveFeed({
    subscribe: (l) => deps.log.subscribe(l),
    size: () => deps.log.stats().size,
    read: (from, limit) => sink().read(deps.instance, from, limit),
    logger: deps.logger,
    now,
    onEntries: (entries) => {
      const a = activity;
      if (a === undefined) return;
      const at = now();
      for (const e of entries) {
        if (e.seq < activityFrom) continue;
        const r = activityOf(e.parsed());
        if (r !== undefined) a.add(r, at);
      }
    },
  });

  /** Starts the feed and the charts' counters on first use; they stop again after a quiet while. */
  function touch(): void {
    lastUse = now();
    if (feed.running) return;
    activity = createActivity();
    activityFrom = deps.log.stats().size;
    activity.covered(now());
    feed.start();
    void seedActivity(activity, activityFrom);
  }

  /** Counts the newest stored records into the charts (at most an hour's, and a bounded number). */
  async function seedActivity(a: Activity, before: number): Promise<void> {
    const windowStart = now() - 60 * 60_000;
    let end = before;
    let read = 0;
    let oldest = Number.NaN;
    try {
      while (end > 0 && read < ACTIVITY_SEED_RECORDS) {
        const from = Math.max(0, end - 1_000);
        const page = await sink().read(deps.instance, from, end - from);
        if (page.length === 0) break;
        read += page.length;
        const at = now();
        for (const rec of page) {
          const r = activityOf(parseRecord(rec.bytes.toString('utf8')));
          if (r === undefined) continue;
          a.add(r, at);
          if (Number.isNaN(oldest) || r.at < oldest) oldest = r.at;
        }
        end = from;
        if (!Number.isNaN(oldest) && oldest < windowStart) break;
        await new Promise((r) => setImmediate(r));
      }
      a.covered(end === 0 || Number.isNaN(oldest) ? 0 : oldest);
    } catch (err) {
      deps.logger.warn({ err }, 'audit viewer: could not read recent records for the charts');
    }
  }

  const idle = setInterval(() => {
    if (feed.running && feed.subscribers === 0 && now() - lastUse > IDLE_RELEASE_MS) {
      feed.stop();
      activity = undefined;
    }
  }, 60_000);
  idle.unref();

  // --- access ---------------------------------------------------------------------------------

  async function decide(ctx: RequestContext): Promise<{ decision: Decision; identity: Identity | undefined }> {
    const target = viewerTarget(ctx.snapshot.config);
    let identity = ctx.identity;
    let decision = evaluatePolicy(target, identity, now());
    if (decision.effect === 'step_up' && (identity?.auth === 'bearer' || identity?.auth === 'cli') && deps.tokenStepUp !== undefined) {
      const grant = await deps.tokenStepUp(identity);
      if (grant !== undefined) {
        identity = { ...identity, mfa: grant };
        // The record shows the check that let the token in, as for routes.
        ctx.identity = identity;
        decision = evaluatePolicy(target, identity, now());
      }
    }
    return { decision, identity };
  }

  /** The answer to a refused request: SPEC §3's, with the viewer as the thing refused. */
  function refusal(ctx: RequestContext, decision: Exclude<Decision, { effect: 'allow' }>, navigation: boolean): GatewayResponse {
    const here = `${ctx.path ?? '/.portcullis/audit'}${ctx.query === undefined ? '' : `?${ctx.query}`}`;
    const back = navigation ? here : '/.portcullis/audit';
    switch (decision.effect) {
      case 'unauthenticated':
        if (navigation) return redirectResponse(`/.portcullis/login?rd=${encodeURIComponent(back)}`);
        return errorResponse('GW_ERR_AUTH_REQUIRED', { html: ctx.html, requestId: ctx.id, extraHeaders: { 'www-authenticate': 'Bearer realm="portcullis"' } });
      case 'deny':
        return errorResponse('GW_ERR_POLICY_DENIED', { html: ctx.html, requestId: ctx.id, message: 'You are not allowed to open the audit log viewer.' });
      case 'step_up': {
        if (navigation) return redirectResponse(`/.portcullis/mfa?rd=${encodeURIComponent(back)}`);
        const req = decision.requirement;
        const maxAge = Math.floor(req.max_age / 1000);
        const description = `A ${req.factors.join(' or ')} check within ${maxAge}s is required`;
        const tokenRef = ctx.identity?.auth === 'bearer' || ctx.identity?.auth === 'cli' ? ctx.identity.tokenRef : undefined;
        const publicUrl = new URL(ctx.snapshot.config.server.public_url);
        const stepUpUrl =
          tokenRef === undefined
            ? `${publicUrl.protocol}//${ctx.req.headers.host ?? publicUrl.host}/.portcullis/mfa?rd=${encodeURIComponent(back)}`
            : `${publicUrl.origin}/.portcullis/mfa?token=${tokenRef}&factors=${req.factors.join(',')}`;
        return json(
          401,
          { error: 'GW_ERR_MFA_REQUIRED', message: `${description}. Complete the step-up in a browser at step_up_url, then retry.`, request_id: ctx.id, step_up_url: stepUpUrl, factors: req.factors, max_age: maxAge },
          { 'www-authenticate': `Bearer error="insufficient_user_authentication", error_description="${description}", max_age=${maxAge}, acr_values="${req.factors.join(' ')}"`, 'referrer-policy': 'no-referrer' },
        );
      }
    }
  }

  function outcome(response: GatewayResponse, decision: DecisionLabel, reason: string, extra: Partial<EndpointOutcome> = {}): EndpointOutcome {
    return { status: response.status, decision, reason, bytesOut: Buffer.byteLength(response.body), ...extra };
  }

  function reply(res: ServerResponse, ctx: RequestContext, response: GatewayResponse, decision: DecisionLabel, reason: string): EndpointOutcome {
    send(res, ctx, response);
    return outcome(response, decision, reason);
  }

  function badRequest(ctx: RequestContext, errors: readonly string[]): GatewayResponse {
    return json(400, { error: 'GW_ERR_REQUEST_TARGET', message: errors.join('; '), errors, request_id: ctx.id });
  }

  // --- data -----------------------------------------------------------------------------------

  let healthCache: { at: number; value: Promise<Record<string, unknown>[]> } | undefined;

  /** The other logs in the sink: records and newest checkpoint (cached briefly; sink reads). */
  function otherLogs(): Promise<Record<string, unknown>[]> {
    if (healthCache !== undefined && now() - healthCache.at < HEALTH_CACHE_MS) return healthCache.value;
    const value = (async () => {
      const out: Record<string, unknown>[] = [];
      const s = sink();
      for (const log of (await s.logs()).filter((l) => l !== deps.instance).slice(0, 50)) {
        const [head, notes] = await Promise.all([s.head(log), s.readCheckpoints(log)]);
        const newest = notes.at(-1);
        const opened = newest === undefined ? undefined : openNote(newest, []);
        const cp = opened === undefined || 'error' in opened ? undefined : parseCheckpoint(opened.text);
        const checkpoint = cp === undefined || 'error' in cp ? null : { number: cp.number, size: cp.size, time: cp.time, age_s: Math.max(0, Math.floor((now() - Date.parse(cp.time)) / 1000)) };
        out.push({ instance: log, self: false, records: head.size, tree_size: checkpoint?.size ?? null, checkpoint, spooled: null, sink_healthy: null });
      }
      return out;
    })();
    healthCache = { at: now(), value };
    value.catch(() => {
      healthCache = undefined;
    });
    return value;
  }

  async function health(): Promise<Record<string, unknown>> {
    const st = deps.log.stats();
    const seal = deps.sealer.stats();
    const self = {
      instance: deps.instance,
      self: true,
      records: st.size,
      tree_size: seal.treeSize,
      checkpoint: seal.lastCheckpointAt === 0 ? null : { number: seal.checkpoints - 1, time: new Date(seal.lastCheckpointAt).toISOString(), age_s: Math.max(0, Math.floor((now() - seal.lastCheckpointAt) / 1000)) },
      spooled: st.spooled,
      sink_healthy: st.sinkHealthy,
    };
    let others: Record<string, unknown>[] = [];
    let error: string | undefined;
    try {
      others = await otherLogs();
    } catch (err) {
      error = `the sink could not be read: ${err instanceof Error ? err.message : String(err)}`;
    }
    const progress = verification.progress();
    return {
      instance: deps.instance,
      now: new Date(now()).toISOString(),
      logs: [self, ...others],
      ...(error === undefined ? {} : { error }),
      verification: { running: progress === undefined ? null : { started_at: new Date(progress.startedAt).toISOString(), log: progress.log ?? null, records: progress.records }, last: verification.last() ?? null },
      live: { viewers: feed.subscribers },
    };
  }

  function activityJson(): Record<string, unknown> {
    const a = activity;
    if (a === undefined) return { instance: deps.instance, from: null, covered_from: null, minutes: [], step_ups_by_route: [], top_users: [] };
    const s = a.snapshot(now());
    return {
      instance: deps.instance,
      from: new Date(s.from).toISOString(),
      covered_from: s.coveredFrom === null ? null : new Date(s.coveredFrom).toISOString(),
      minutes: s.minutes.map((m) => ({ at: new Date(m.at).toISOString(), requests: m.requests, denials: m.denials, step_ups: m.stepUps })),
      step_ups_by_route: s.stepUpsByRoute,
      top_users: s.topUsers,
    };
  }

  /** A JSON body holding stored records verbatim (canonical JSON embeds as is). */
  function recordsBody(fields: Record<string, unknown>, items: readonly { seq: number; text: string }[]): GatewayResponse {
    const head = JSON.stringify(fields).slice(0, -1);
    const body = `${head}${head.length > 1 ? ',' : ''}"records":[${items.map((i) => `{"seq":${i.seq},"record":${i.text}}`).join(',')}]}\n`;
    return { status: 200, headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' }, body };
  }

  function intParam(q: URLSearchParams, name: string): number | undefined | 'bad' {
    const v = q.get(name);
    if (v === null || v === '') return undefined;
    return /^\d{1,15}$/.test(v) ? Number(v) : 'bad';
  }

  async function records(ctx: RequestContext, filter: ViewerFilter): Promise<GatewayResponse> {
    const q = queryParams(ctx);
    const before = intParam(q, 'before');
    const limit = intParam(q, 'limit');
    if (before === 'bad' || limit === 'bad' || (limit !== undefined && (limit < 1 || limit > PAGE_LIMIT_MAX))) {
      return badRequest(ctx, [`before must be a seq and limit a number from 1 to ${PAGE_LIMIT_MAX}`]);
    }
    const log = filter.base.instance ?? deps.instance;
    const page = await readHistory(sink(), log, { filter, before, limit: limit ?? 100 });
    return recordsBody({ log, size: page.size, next: page.next, scanned: page.scanned }, page.items);
  }

  async function oneRecord(ctx: RequestContext, seqText: string): Promise<GatewayResponse> {
    const instance = queryParams(ctx).get('instance') ?? deps.instance;
    if (!/^\d{1,15}$/.test(seqText) || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(instance)) return badRequest(ctx, ['expected /.portcullis/audit/records/<seq>?instance=<id>']);
    const item = await readOne(sink(), instance, Number(seqText));
    if (item === undefined) return json(404, { error: 'GW_ERR_ROUTE_NOT_FOUND', message: `log ${instance} holds no record ${seqText}`, request_id: ctx.id });
    return recordsBody({ log: instance }, [item]);
  }

  async function verify(req: IncomingMessage, ctx: RequestContext, identity: Identity): Promise<{ response: GatewayResponse; reason: string }> {
    if (identity.auth !== 'bearer' && identity.auth !== 'cli') {
      // A browser's session: the page's CSRF token and a same-origin request.
      const session = await kit.currentSession(req, ctx);
      const header = req.headers['x-portcullis-csrf'];
      if (session === undefined || typeof header !== 'string' || !safeEqual(header, session.record.csrf) || !kit.sameOrigin(ctx, req)) {
        return { response: json(403, { error: 'csrf', message: 'This request did not come from the viewer page. Reload it and try again.', request_id: ctx.id }), reason: 'csrf' };
      }
    }
    req.resume();
    const run = await verification.run();
    return { response: json(200, run), reason: `verify-${run.result}` };
  }

  // --- the page and its asset -------------------------------------------------------------------

  async function page(req: IncomingMessage, ctx: RequestContext, identity: Identity): Promise<GatewayResponse> {
    const session = await kit.currentSession(req, ctx);
    const config = ctx.snapshot.config;
    const q = queryParams(ctx);
    const filters: Record<string, string> = {};
    for (const name of ['user', 'route', 'decision', 'status', 'kind', 'since', 'until', 'q', 'instance']) {
      const v = q.get(name);
      if (v !== null) filters[name] = v.slice(0, 256);
    }
    const mfa = config.audit.viewer.mfa;
    return scriptedPage(
      200,
      auditViewerPage({
        user: identity.user,
        csrf: session?.record.csrf ?? '',
        instance: deps.instance,
        routes: config.routes.map((r) => r.id),
        filters,
        mfaMaxAge: mfa === null ? undefined : Math.floor(mfa.max_age / 1000),
      }),
    );
  }

  // --- the live feed ------------------------------------------------------------------------------

  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false, clientTracking: false });
  const handshakeErrors = new WeakMap<Duplex, Error>();
  wss.on('wsClientError', (err: Error, socket: Duplex) => {
    handshakeErrors.set(socket, err);
  });

  function refuse(response: GatewayResponse, decision: DecisionLabel): Extract<Verdict, { kind: 'respond' }> {
    return { kind: 'respond', response, label: decision };
  }

  let pushTimer: NodeJS.Timeout | undefined;
  const pushes = new Set<(text: string) => void>();
  let pushing = false;
  let pushCount = 0;

  function startPushes(): void {
    if (pushTimer !== undefined) return;
    pushTimer = setInterval(() => {
      if (pushing || pushes.size === 0) return;
      pushing = true;
      pushCount += 1;
      health()
        .then((h) => {
          const text = JSON.stringify({ type: 'health', ...h });
          for (const p of pushes) p(text);
          if (pushCount % 3 === 1) {
            const a = JSON.stringify({ type: 'activity', ...activityJson() });
            for (const p of pushes) p(a);
          }
        })
        .catch((err: unknown) => deps.logger.warn({ err }, 'audit viewer: health for the live feed failed'))
        .finally(() => {
          pushing = false;
        });
    }, PUSH_MS);
    pushTimer.unref();
  }

  function stopPushesIfIdle(): void {
    if (pushes.size > 0 || pushTimer === undefined) return;
    clearInterval(pushTimer);
    pushTimer = undefined;
  }

  /** Serves an accepted live feed until it closes. */
  function serveLive(ws: WebSocket, ctx: RequestContext, sessionId: string, filter: ViewerFilter, after: number | undefined): Promise<EndpointOutcome> {
    const openNs = process.hrtime.bigint();
    const counts = { messagesIn: 0, bytesIn: 0 };
    let reason = 'closed by the browser';
    let closing = false;
    const close = (code: number, why: string): void => {
      if (closing) return;
      closing = true;
      reason = why;
      // A socket that stopped draining would never deliver a close frame queued behind its backlog:
      // drop it at once (and its buffers with it); the page reconnects and resumes.
      if (code === 1013) ws.terminate();
      else ws.close(code, why);
    };
    // Throws FeedFullError when another viewer took the last place meanwhile.
    const subscription = feed.attach(
      {
        send: (data) => {
          // Text frames: the records are UTF-8 JSON.
          ws.send(data, { binary: false });
        },
        bufferedAmount: () => ws.bufferedAmount,
        close,
      },
      { filter, after },
    );
    sockets.add(ws);
    const notice = (text: string): void => {
      subscription.notice(text);
    };
    subscription.notice(
      JSON.stringify({
        type: 'hello',
        instance: deps.instance,
        size: deps.log.stats().size,
        after: after ?? null,
        live: filter.base.instance === undefined || filter.base.instance === deps.instance,
        max_age: ctx.snapshot.config.audit.viewer.mfa === null ? null : Math.floor(ctx.snapshot.config.audit.viewer.mfa.max_age / 1000),
      }),
    );
    pushes.add(notice);
    startPushes();
    health()
      .then((h) => {
        notice(JSON.stringify({ type: 'health', ...h }));
        notice(JSON.stringify({ type: 'activity', ...activityJson() }));
      })
      .catch((err: unknown) => deps.logger.warn({ err }, 'audit viewer: health for a new live feed failed'));
    let alive = true;
    let checking = false;
    const recheck = setInterval(() => {
      lastUse = now();
      if (!alive) {
        ws.terminate();
        return;
      }
      if (checking) return;
      checking = true;
      void (async () => {
        try {
          const session = await deps.sessions.get(sessionId);
          if (session === undefined) {
            close(LIVE_CLOSE.sessionEnded, 'session-ended');
            return;
          }
          const d = evaluatePolicy(viewerTarget(deps.config()), deps.sessions.identityOf(session), now());
          if (d.effect === 'step_up') close(LIVE_CLOSE.stepUpStale, 'step-up-expired');
          else if (d.effect !== 'allow') close(LIVE_CLOSE.notAllowed, 'not-allowed');
        } catch (err) {
          deps.logger.warn({ err }, 'audit viewer: the live feed could not re-check its session; closing it');
          close(1011, 'session-check-failed');
        } finally {
          checking = false;
        }
      })();
    }, RECHECK_MS);
    recheck.unref();
    // Liveness: a ping every 30 s; no pong by the next one ends the socket.
    const ping = setInterval(() => {
      if (!alive) {
        ws.terminate();
        return;
      }
      alive = false;
      ws.ping();
    }, 30_000);
    ping.unref();
    ws.on('pong', () => {
      alive = true;
    });
    ws.on('message', (data: RawData) => {
      counts.messagesIn += 1;
      counts.bytesIn += Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data instanceof ArrayBuffer ? data.byteLength : data.length;
    });
    ws.on('error', (err: Error) => {
      reason = `error: ${err.message}`;
    });
    return new Promise((resolve) => {
      ws.on('close', () => {
        clearInterval(recheck);
        clearInterval(ping);
        subscription.detach();
        pushes.delete(notice);
        stopPushesIfIdle();
        sockets.delete(ws);
        resolve({
          status: 101,
          decision: 'allow',
          reason: `live feed ${reason}`,
          bytesIn: counts.bytesIn,
          bytesOut: subscription.stats.bytes,
          websocket: { messagesIn: counts.messagesIn, messagesOut: subscription.stats.messages, bytesIn: counts.bytesIn, bytesOut: subscription.stats.bytes, openNs },
        });
      });
    });
  }

  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RequestContext): Promise<Extract<Verdict, { kind: 'respond' }> | EndpointOutcome | undefined> {
    if (ctx.segments[1] !== 'audit') return undefined;
    if (ctx.segments.length !== 3 || ctx.segments[2] !== LIVE_PATH) return refuse(notFound({ ...ctx, html: false }), 'not_found');
    const jsonCtx = { ...ctx, html: false };
    // Browsers always send Origin on a WebSocket handshake; only the viewer's own page may connect.
    if (req.headers.origin === undefined || !kit.sameOrigin(ctx, req)) {
      return refuse(errorResponse('GW_ERR_POLICY_DENIED', { html: false, requestId: ctx.id, message: 'The live feed accepts connections from the viewer page only (same origin).' }), 'deny');
    }
    const { decision } = await decide(ctx);
    if (decision.effect !== 'allow') return refuse(refusal(jsonCtx, decision, false), label(decision));
    const session = await kit.currentSession(req, ctx);
    if (session === undefined) {
      return refuse(errorResponse('GW_ERR_AUTH_REQUIRED', { html: false, requestId: ctx.id, message: 'The live feed needs a signed-in browser session.' }), 'unauthenticated');
    }
    const q = queryParams(ctx);
    const parsed = parseViewerFilter(q, now());
    const after = intParam(q, 'after');
    if (!parsed.ok || after === 'bad') return refuse(badRequest(ctx, parsed.ok ? ['after must be a seq'] : parsed.errors), 'error');
    if (closed) return refuse(errorResponse('GW_ERR_GATEWAY_INTERNAL', { html: false, requestId: ctx.id }), 'error');
    // `after` names a seq of this instance's log; from another one (a reconnect that reached
    // another gateway) it means nothing here.
    const resumeFrom = after !== undefined && (q.get('log') ?? deps.instance) === deps.instance ? after : undefined;
    touch();
    if (feed.subscribers >= feed.limits.maxSubscribers) {
      return refuse(json(503, { error: 'busy', message: `the live feed already serves ${feed.limits.maxSubscribers} viewers`, request_id: ctx.id }), 'error');
    }
    let accepted: WebSocket | undefined;
    wss.handleUpgrade(req, socket, head, (ws) => {
      accepted = ws;
    });
    const handshakeError = handshakeErrors.get(socket);
    if (accepted === undefined) {
      if (handshakeError !== undefined) return refuse(json(400, { error: 'GW_ERR_REQUEST_HEADERS', message: `Bad WebSocket handshake: ${handshakeError.message}.`, request_id: ctx.id }), 'error');
      return { status: 499, decision: 'error', reason: 'the browser went away during the handshake' };
    }
    try {
      return await serveLive(accepted, ctx, session.id, parsed.filter, resumeFrom);
    } catch (err) {
      if (!(err instanceof FeedFullError)) throw err;
      accepted.close(1013, 'busy');
      return { status: 101, decision: 'error', reason: 'live feed busy' };
    }
  }

  // --- dispatch -----------------------------------------------------------------------------------

  return {
    /** `/.portcullis/audit…` (HTTP). */
    async handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): Promise<EndpointOutcome> {
      const sub = ctx.segments.slice(2);
      const method = req.method ?? 'GET';
      const navigation = ctx.html && method === 'GET' && sub.length === 0;
      const { decision, identity } = await decide(ctx);
      if (decision.effect !== 'allow' || identity === undefined) {
        if (decision.effect === 'allow') return reply(res, ctx, errorResponse('GW_ERR_AUTH_REQUIRED', { html: ctx.html, requestId: ctx.id }), 'unauthenticated', decision.reason);
        return reply(res, ctx, refusal(ctx, decision, navigation), label(decision), decision.reason);
      }
      touch();
      const [first, second] = sub;
      const allowed = decision.reason;
      try {
        if (first === undefined && method === 'GET') return reply(res, ctx, await page(req, ctx, identity), 'allow', allowed);
        if (first === 'records' && method === 'GET' && sub.length <= 2) {
          if (second !== undefined) return reply(res, ctx, await oneRecord(ctx, second), 'allow', allowed);
          const parsed = parseViewerFilter(queryParams(ctx), now());
          if (!parsed.ok) return reply(res, ctx, badRequest(ctx, parsed.errors), 'error', 'bad-filter');
          return reply(res, ctx, await records(ctx, parsed.filter), 'allow', allowed);
        }
        if (first === 'health' && second === undefined && method === 'GET') return reply(res, ctx, json(200, await health()), 'allow', allowed);
        if (first === 'activity' && second === undefined && method === 'GET') return reply(res, ctx, json(200, activityJson()), 'allow', allowed);
        if (first === 'verify' && second === undefined && method === 'POST') {
          const r = await verify(req, ctx, identity);
          return reply(res, ctx, r.response, r.response.status === 200 ? 'allow' : 'deny', r.reason);
        }
        if (first === LIVE_PATH && second === undefined) {
          return reply(res, ctx, json(426, { error: 'GW_ERR_REQUEST_HEADERS', message: 'The live feed is a WebSocket: connect with Upgrade: websocket.', request_id: ctx.id }, { upgrade: 'websocket' }), 'error', 'not-a-websocket');
        }
      } catch (err) {
        deps.logger.warn({ err, reqId: ctx.id }, 'audit viewer: the sink could not be read');
        return reply(res, ctx, json(503, { error: 'GW_ERR_AUDIT_UNAVAILABLE', message: `The audit sink could not be read: ${err instanceof Error ? err.message : String(err)}`, request_id: ctx.id }), 'error', 'sink-unreadable');
      }
      return reply(res, ctx, notFound(ctx), 'not_found', 'no-such-endpoint');
    },

    /** `/.portcullis/audit/live` (WebSocket upgrades under the reserved prefix). */
    upgrade,

    /** `/.portcullis/assets/audit-viewer.js`. */
    asset(res: ServerResponse, ctx: RequestContext): void {
      asset ??= loadAsset('assets/audit-viewer.js');
      send(res, ctx, { status: 200, headers: SCRIPT_HEADERS, body: asset });
    },

    /** Closes live feeds, stops a running verification and releases the sink reader. */
    async close(): Promise<void> {
      closed = true;
      clearInterval(idle);
      if (pushTimer !== undefined) clearInterval(pushTimer);
      for (const ws of sockets) ws.terminate();
      feed.stop();
      await verification.close();
      await reader?.close().catch(() => undefined);
      reader = undefined;
    },

    /** The live feed (tests read its limits and subscribers). */
    feed,
  };
}

/** The viewer's endpoints. */
export type AuditViewer = ReturnType<typeof createAuditViewer>;
