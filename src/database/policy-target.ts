/**
 * Databases are judged by the same policy code as routes (src/policy): a database's `allow` and
 * `mfa` are presented as a route without rules. Nothing here decides anything by itself.
 */
import type { DatabaseConfig } from '../config/index.js';
import type { PolicyTarget } from '../policy/index.js';

const cache = new WeakMap<DatabaseConfig, { full: PolicyTarget; allowOnly: PolicyTarget }>();

function asRoute(db: DatabaseConfig, withMfa: boolean): PolicyTarget['route'] {
  return {
    public: false,
    ...(db.allow === undefined ? {} : { allow: db.allow }),
    ...(withMfa && db.mfa !== undefined ? { mfa: db.mfa } : {}),
  };
}

/**
 * The policy target of a database. `mfa: false` leaves the second-factor requirement out: it is
 * checked when a token is issued, while connections are judged on `allow` alone (the token carries
 * the step-up).
 */
export function databasePolicyTarget(db: DatabaseConfig, opts: { mfa: boolean }): PolicyTarget {
  let entry = cache.get(db);
  if (entry === undefined) {
    entry = { full: { route: asRoute(db, true), rule: undefined }, allowOnly: { route: asRoute(db, false), rule: undefined } };
    cache.set(db, entry);
  }
  return opts.mfa ? entry.full : entry.allowOnly;
}
