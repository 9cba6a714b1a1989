/**
 * Every Prometheus metric the gateway exposes, defined in one place on a registry owned by the app
 * (never prom-client's global default). Names are the SPEC §6 contract.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Creates the registry and every metric on it. */
export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const reg = [registry];
  /** Where scrape-time gauges read their values; the app fills these in once the parts exist. */
  const sources: { audit?: () => { queueDepth: number; spooled: number; treeSize: number; lastCheckpointSeconds: number } } = {};
  return {
    sources,
    registry,
    requestsTotal: new Counter({
      name: 'portcullis_requests_total',
      help: 'Requests handled, by route, method, status code and policy decision.',
      labelNames: ['route', 'method', 'code', 'decision'] as const,
      registers: reg,
    }),
    requestDuration: new Histogram({
      name: 'portcullis_request_duration_seconds',
      help: 'Time from request start to the end of the response, seconds.',
      labelNames: ['route'] as const,
      buckets: DURATION_BUCKETS,
      registers: reg,
    }),
    upstreamDuration: new Histogram({
      name: 'portcullis_upstream_duration_seconds',
      help: 'Time from forwarding to the upstream response headers, seconds.',
      labelNames: ['route'] as const,
      buckets: DURATION_BUCKETS,
      registers: reg,
    }),
    upstreamErrors: new Counter({
      name: 'portcullis_upstream_errors_total',
      help: 'Upstream failures by kind (connect, timeout, reset, protocol).',
      labelNames: ['route', 'kind'] as const,
      registers: reg,
    }),
    websocketsActive: new Gauge({
      name: 'portcullis_websockets_active',
      help: 'Open proxied WebSocket connections.',
      labelNames: ['route'] as const,
      registers: reg,
    }),
    authLogins: new Counter({
      name: 'portcullis_auth_logins_total',
      help: 'Sign-in attempts by provider and result.',
      labelNames: ['provider', 'result'] as const,
      registers: reg,
    }),
    mfaChallenges: new Counter({
      name: 'portcullis_mfa_challenges_total',
      help: 'Second-factor checks by factor and result.',
      labelNames: ['factor', 'result'] as const,
      registers: reg,
    }),
    mfaEnrollments: new Counter({
      name: 'portcullis_mfa_enrollments_total',
      help: 'Second factors enrolled and removed, by factor and action.',
      labelNames: ['factor', 'action'] as const,
      registers: reg,
    }),
    auditRecords: new Counter({
      name: 'portcullis_audit_records_total',
      help: 'Audit records by sink and result.',
      labelNames: ['sink', 'result'] as const,
      registers: reg,
    }),
    auditQueueDepth: new Gauge({
      name: 'portcullis_audit_queue_depth',
      help: 'Audit records written to the spool and not yet acknowledged by the sink.',
      registers: reg,
      collect() {
        const a = sources.audit?.();
        if (a !== undefined) this.set(a.queueDepth);
      },
    }),
    auditSpooled: new Gauge({
      name: 'portcullis_audit_spooled_records',
      help: 'Audit records held in the local spool while the sink is unavailable.',
      registers: reg,
      collect() {
        const a = sources.audit?.();
        if (a !== undefined) this.set(a.spooled);
      },
    }),
    auditTreeSize: new Gauge({
      name: 'portcullis_audit_tree_size',
      help: 'Records in this instance audit log.',
      registers: reg,
      collect() {
        const a = sources.audit?.();
        if (a !== undefined) this.set(a.treeSize);
      },
    }),
    auditLastCheckpoint: new Gauge({
      name: 'portcullis_audit_last_checkpoint_timestamp_seconds',
      help: 'Unix time of the newest signed checkpoint.',
      registers: reg,
      collect() {
        const a = sources.audit?.();
        if (a !== undefined) this.set(a.lastCheckpointSeconds);
      },
    }),
    configReloads: new Counter({
      name: 'portcullis_config_reloads_total',
      help: 'Configuration reloads by result.',
      labelNames: ['result'] as const,
      registers: reg,
    }),
    dbSessionsActive: new Gauge({
      name: 'portcullis_db_sessions_active',
      help: 'Open database client sessions.',
      labelNames: ['database'] as const,
      registers: reg,
    }),
    dbStatements: new Counter({
      name: 'portcullis_db_statements_total',
      help: 'Database statements by command.',
      labelNames: ['database', 'command'] as const,
      registers: reg,
    }),
  };
}

/** The app's metrics. */
export type Metrics = ReturnType<typeof createMetrics>;
