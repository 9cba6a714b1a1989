/**
 * The gateway core publishes what happened on `node:diagnostics_channel` channels; the metrics module
 * subscribes. The core never imports prom-client, and a channel with no subscriber costs nothing.
 */
import diagnostics from 'node:diagnostics_channel';
import type { Metrics } from './metrics.js';

/** Published once per HTTP request when its response ends (or the client goes away). */
export interface RequestEndEvent {
  readonly route: string;
  readonly method: string;
  readonly status: number;
  readonly decision: string;
  readonly durationSeconds: number;
  readonly upstreamSeconds: number | undefined;
}
/** Published when an upstream fails. */
export interface UpstreamErrorEvent {
  readonly route: string;
  readonly kind: 'connect' | 'timeout' | 'reset' | 'protocol';
}
/** Published when a proxied WebSocket opens (+1) or closes (-1). */
export interface WebSocketEvent {
  readonly route: string;
  readonly delta: 1 | -1;
}
/** Published after each sign-in attempt. */
export interface AuthLoginEvent {
  readonly provider: string;
  readonly result: 'success' | 'failure' | 'rate_limited';
}
/** Published after each second-factor check (`result`: success, failure, rate_limited). */
export interface MfaChallengeEvent {
  readonly factor: 'webauthn' | 'totp' | 'recovery';
  readonly result: 'success' | 'failure' | 'rate_limited';
}
/** Published after each enrolment or removal of a factor. */
export interface MfaEnrollmentEvent {
  readonly factor: 'webauthn' | 'totp' | 'recovery';
  readonly action: 'enroll' | 'remove';
}
/** Published when a database client session opens (+1, after authentication) or closes (-1). */
export interface DbSessionEvent {
  readonly database: string;
  readonly delta: 1 | -1;
}
/** Published when a database statement ends; `command` is a bounded label (command tag, ERROR, OTHER). */
export interface DbStatementEvent {
  readonly database: string;
  readonly command: string;
}
/** Published after each config reload attempt. */
export interface ConfigReloadEvent {
  readonly result: 'success' | 'failure';
}

/** The channels, created once per app so that separate apps in one process do not cross-talk. */
export function createChannels(appId: string) {
  return {
    requestEnd: diagnostics.channel(`portcullis:${appId}:request:end`),
    upstreamError: diagnostics.channel(`portcullis:${appId}:upstream:error`),
    websocket: diagnostics.channel(`portcullis:${appId}:websocket`),
    configReload: diagnostics.channel(`portcullis:${appId}:config:reload`),
    authLogin: diagnostics.channel(`portcullis:${appId}:auth:login`),
    mfaChallenge: diagnostics.channel(`portcullis:${appId}:mfa:challenge`),
    mfaEnrollment: diagnostics.channel(`portcullis:${appId}:mfa:enrollment`),
    dbSession: diagnostics.channel(`portcullis:${appId}:db:session`),
    dbStatement: diagnostics.channel(`portcullis:${appId}:db:statement`),
  };
}
/** The app's channels. */
export type Channels = ReturnType<typeof createChannels>;

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE']);

/** Turns channel events into metric updates; returns a function that unsubscribes. */
export function subscribeMetrics(channels: Channels, metrics: Metrics): () => void {
  const onRequestEnd = (msg: unknown) => {
    const e = msg as RequestEndEvent;
    const method = KNOWN_METHODS.has(e.method) ? e.method : 'OTHER';
    metrics.requestsTotal.labels(e.route, method, String(e.status), e.decision).inc();
    metrics.requestDuration.labels(e.route).observe(e.durationSeconds);
    if (e.upstreamSeconds !== undefined) metrics.upstreamDuration.labels(e.route).observe(e.upstreamSeconds);
  };
  const onUpstreamError = (msg: unknown) => {
    const e = msg as UpstreamErrorEvent;
    metrics.upstreamErrors.labels(e.route, e.kind).inc();
  };
  const onWebSocket = (msg: unknown) => {
    const e = msg as WebSocketEvent;
    metrics.websocketsActive.labels(e.route).inc(e.delta);
  };
  const onConfigReload = (msg: unknown) => {
    const e = msg as ConfigReloadEvent;
    metrics.configReloads.labels(e.result).inc();
  };
  const onAuthLogin = (msg: unknown) => {
    const e = msg as AuthLoginEvent;
    metrics.authLogins.labels(e.provider, e.result).inc();
  };
  const onMfaChallenge = (msg: unknown) => {
    const e = msg as MfaChallengeEvent;
    metrics.mfaChallenges.labels(e.factor, e.result).inc();
  };
  const onMfaEnrollment = (msg: unknown) => {
    const e = msg as MfaEnrollmentEvent;
    metrics.mfaEnrollments.labels(e.factor, e.action).inc();
  };
  const onDbSession = (msg: unknown) => {
    const e = msg as DbSessionEvent;
    metrics.dbSessionsActive.labels(e.database).inc(e.delta);
  };
  const onDbStatement = (msg: unknown) => {
    const e = msg as DbStatementEvent;
    metrics.dbStatements.labels(e.database, e.command).inc();
  };
  const subscriptions: [diagnostics.Channel, (msg: unknown) => void][] = [
    [channels.authLogin, onAuthLogin],
    [channels.mfaChallenge, onMfaChallenge],
    [channels.mfaEnrollment, onMfaEnrollment],
    [channels.requestEnd, onRequestEnd],
    [channels.upstreamError, onUpstreamError],
    [channels.websocket, onWebSocket],
    [channels.configReload, onConfigReload],
    [channels.dbSession, onDbSession],
    [channels.dbStatement, onDbStatement],
  ];
  for (const [ch, fn] of subscriptions) diagnostics.subscribe(ch.name, fn);
  return () => {
    for (const [ch, fn] of subscriptions) diagnostics.unsubscribe(ch.name, fn);
  };
}
