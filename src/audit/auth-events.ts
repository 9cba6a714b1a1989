/**
 * The audit hook for identity events (SPEC §4 `kind: "auth"`): sign-ins, failed sign-ins, sign-outs
 * and session revocations. The identity module emits through this port; the audit log (its own
 * issue) makes the records durable and chained. Until then the app keeps them in memory and logs them.
 */

/** One identity event. */
export interface AuthEvent {
  readonly kind: 'auth';
  readonly action: 'login' | 'login_failure' | 'logout' | 'session_revoked' | 'login_rate_limited';
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
}

/** Where identity events go. */
export interface AuthEventSink {
  emit(event: AuthEvent): void;
}

/** A bounded in-memory sink (newest kept), for the embedded default and for tests. */
export function createMemoryAuthEventSink(limit = 10_000): AuthEventSink & { recent(): readonly AuthEvent[] } {
  const events: AuthEvent[] = [];
  return {
    emit(event) {
      events.push(event);
      if (events.length > limit) events.splice(0, events.length - limit);
    },
    recent: () => events,
  };
}
