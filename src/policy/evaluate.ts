/**
 * Policy evaluation (pure): given the matched route and rule, the verified identity (if any) and the
 * current time, decide. Decisions are values with reason codes that go straight into audit records.
 *
 * Semantics: a `public` route allows everyone. Otherwise the effective `allow` and `mfa` are the
 * matched rule's, falling back to the route's for whichever the rule does not set. No identity →
 * `unauthenticated`. No `allow` anywhere → `deny` (closed by default). Identity not listed → `deny`.
 * Listed, but the route demands a second factor that is missing, of a factor not allowed, or older
 * than `max_age` → `step_up`.
 */
import type { AllowConfig, MfaRequirementConfig, RouteConfig, RuleConfig } from '../config/index.js';
import type { Identity } from '../identity/index.js';

/** The outcome of policy evaluation. `reason` is a stable code; `detail` is human-readable context. */
export type Decision =
  | { readonly effect: 'allow'; readonly reason: string; readonly detail: string }
  | { readonly effect: 'deny'; readonly reason: string; readonly detail: string }
  | { readonly effect: 'unauthenticated'; readonly reason: string; readonly detail: string }
  | {
      readonly effect: 'step_up';
      readonly reason: string;
      readonly detail: string;
      /** The requirement that was not met, so the client can be told what to do. */
      readonly requirement: MfaRequirementConfig;
    };

/**
 * Which route and rule a request matched: only the parts policy reads, so that other things with an
 * `allow` and `mfa` (databases, the audit viewer) are judged by the same code.
 */
export interface PolicyTarget {
  readonly route: Pick<RouteConfig, 'public' | 'allow' | 'mfa'>;
  readonly rule: Pick<RuleConfig, 'allow' | 'mfa'> | undefined;
}

function grant(allow: AllowConfig, identity: Identity): string | undefined {
  const email = identity.email?.toLowerCase();
  for (const u of allow.users) {
    if (u === identity.user || (email !== undefined && u.toLowerCase() === email)) return `user ${u}`;
  }
  for (const g of allow.groups) if (identity.groups.includes(g)) return `group ${g}`;
  if (email !== undefined) {
    for (const e of allow.emails) if (e.toLowerCase() === email) return `email ${e}`;
    const at = email.lastIndexOf('@');
    const domain = at === -1 ? undefined : email.slice(at + 1);
    for (const d of allow.email_domains) if (domain === d.toLowerCase()) return `email-domain ${d}`;
  }
  return undefined;
}

/** Evaluates the policy for one request. `now` is epoch milliseconds. */
export function evaluatePolicy(target: PolicyTarget, identity: Identity | undefined, now: number): Decision {
  const { route, rule } = target;
  if (route.public) return { effect: 'allow', reason: 'public-route', detail: 'public route' };
  if (identity === undefined) {
    return { effect: 'unauthenticated', reason: 'user-unauthenticated', detail: 'no signed-in identity' };
  }
  const allow = rule?.allow ?? route.allow;
  if (allow === undefined) return { effect: 'deny', reason: 'no-allow-list', detail: 'the route allows nobody' };
  const granted = grant(allow, identity);
  if (granted === undefined) {
    return { effect: 'deny', reason: 'not-in-allow-list', detail: 'neither user nor groups are allowed' };
  }
  const mfa = rule?.mfa ?? route.mfa;
  if (mfa !== undefined) {
    const check = identity.mfa;
    if (check === undefined) {
      return { effect: 'step_up', reason: 'mfa-missing', detail: 'no second factor in this session', requirement: mfa };
    }
    if (check.factor === 'recovery' || !mfa.factors.includes(check.factor)) {
      return { effect: 'step_up', reason: 'mfa-factor-not-allowed', detail: `factor ${check.factor} not accepted here`, requirement: mfa };
    }
    const age = now - check.at;
    if (age > mfa.max_age || age < -60_000) {
      return { effect: 'step_up', reason: 'mfa-stale', detail: `second factor is ${Math.floor(age / 1000)}s old`, requirement: mfa };
    }
  }
  return { effect: 'allow', reason: `${granted.slice(0, granted.indexOf(' '))}-ok`, detail: granted };
}
