import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditLog } from './audit-log.js';
import { CAPS, clean, type RecordBody } from './record.js';

/**
 * The audit hook for identity events (SPEC §4 `kind: "auth"`): sign-ins, failed sign-ins, sign-outs
 * and session revocations. The identity module emits through this port; the audit log (its own
 * issue) makes the records durable and chained. Until then the app keeps them in memory and logs them.
 */

/** One identity event. */
export interface AuthEvent {
  readonly kind: 'auth';
  readonly action:
    | 'login'
    | 'login_failure'
    | 'logout'
    | 'session_revoked'
    | 'login_rate_limited'
    | 'mfa_success'
    | 'mfa_failure'
    | 'mfa_rate_limited'
    | 'mfa_enroll'
    | 'mfa_remove'
    | 'mfa_recovery_codes'
    | 'db_token_issue'
    | 'db_token_revoke'
    | 'cli_token_issue'
    | 'cli_token_refresh'
    | 'cli_token_revoke'
    | 'cli_token_refused';
  readonly provider: string;
  /** The user, when known (a failed login records what was typed, capped). */
  readonly user: string | undefined;
  readonly reason: string;
  readonly requestId: string;
  readonly client: { readonly ip: string; readonly userAgent: string | undefined };
  /** The session reference (SPEC §4), when one exists. */
  readonly session: string | undefined;
  /** Epoch ms. */
  readonly at: number;
  /** For `mfa_*` actions: the factor, and the credential id (never a secret). */
  readonly factor?: 'webauthn' | 'totp' | 'recovery';
  readonly credential?: string;
  /** For `db_token_*` actions: the database id. */
  readonly database?: string;
  /** For `cli_token_*` actions: the token's reference (SHA-256, never the token), label and binding. */
  readonly cliToken?: { readonly ref: string | undefined; readonly label: string | undefined; readonly bound: boolean };
}

/** Actions that record something the user did successfully (`decision: allow`); the rest are refusals. */
const ALLOWED_ACTIONS: ReadonlySet<AuthEvent['action']> = new Set(['login', 'logout', 'mfa_success', 'mfa_enroll', 'mfa_remove', 'mfa_recovery_codes', 'db_token_issue', 'db_token_revoke', 'cli_token_issue', 'cli_token_refresh', 'cli_token_revoke']);

/** Where identity events go. */
export interface AuthEventSink {
  emit(event: AuthEvent): void;
}


/**
 * Sends identity events to the audit log as `auth` records (and to `also`, when given). Spooling
 * failures are logged; the event itself never blocks the sign-in that caused it.
 */
export function createAuditAuthEventSink(log: AuditLog, logger: Logger, also?: AuthEventSink): AuthEventSink {
  return {
    emit(event) {
      also?.emit(event);
      const body: RecordBody = {
        v: 1,
        id: event.requestId === '' ? randomUUID() : event.requestId,
        ts: new Date(event.at).toISOString(),
        kind: 'auth',
        decision: ALLOWED_ACTIONS.has(event.action) ? 'allow' : 'deny',
        reason: clean(event.reason, CAPS.reason),
        ...(event.user === undefined ? {} : { identity: { user: clean(event.user, CAPS.user), groups: [], provider: event.provider, auth: 'sign-in', ...(event.session === undefined ? {} : { session: event.session }) } }),
        client: { ip: event.client.ip, ...(event.client.userAgent === undefined ? {} : { user_agent: clean(event.client.userAgent, CAPS.userAgent) }) },
        event: {
          action: event.action,
          provider: event.provider,
          ...(event.factor === undefined ? {} : { factor: event.factor }),
          ...(event.credential === undefined ? {} : { credential: clean(event.credential, CAPS.reason) }),
          ...(event.database === undefined ? {} : { database: event.database }),
          ...(event.cliToken === undefined
            ? {}
            : {
                ...(event.cliToken.ref === undefined ? {} : { token: event.cliToken.ref }),
                ...(event.cliToken.label === undefined ? {} : { label: clean(event.cliToken.label, CAPS.reason) }),
                bound: event.cliToken.bound,
              }),
        },
      };
      if (log.admission() === 'unanchored') {
        logger.warn({ event: { ...event, client: undefined } }, 'auth event not recorded: the audit log is not anchored yet');
        return;
      }
      log.append(body, false).catch((err: unknown) => logger.error({ err }, 'auth audit record could not be spooled'));
    },
  };
}
