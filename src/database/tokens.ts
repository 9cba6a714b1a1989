/**
 * Database tokens: the short-lived passwords `/.portcullis/connect/<id>` issues and the database
 * listeners accept. A token is 256 random bits (`pcdb_` + base64url, so secret scanners can spot a
 * leaked one); the store keeps only its SHA-256, under a TTL, with who it was issued to and for
 * which database. A token is bound to the web session that issued it: when that session ends (sign
 * out, revocation, idle or absolute timeout) the token stops working, and so do connections made
 * with it.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Identity, MfaCheck } from '../identity/index.js';
import type { Store } from '../store/store.js';

/** The longest a token may live (SPEC §7: at most 1 h). */
export const MAX_TOKEN_TTL_MS = 3_600_000;

const TOKEN_RE = /^pcdb_[A-Za-z0-9_-]{43}$/;

/** What the store keeps about a token (never the token itself). */
export interface DatabaseTokenRecord {
  readonly v: 1;
  readonly database: string;
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
  readonly provider: string;
  /** How the user was signed in when the token was issued. */
  readonly via: 'cookie' | 'bearer';
  /** SPEC §4 session reference of the issuing web session. */
  readonly session: string | undefined;
  /** The store handle of the issuing web session (liveness checks; not usable as a cookie). */
  readonly sessionHandle: string | undefined;
  readonly authTime: number;
  /** The second-factor check in force when the token was issued. */
  readonly mfa: MfaCheck | undefined;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

/** Why a token is not (or no longer) accepted. Reason codes go into audit records. */
export type TokenRefusal = 'token-malformed' | 'token-unknown' | 'token-expired' | 'token-wrong-database' | 'token-wrong-user' | 'session-ended';

/** The outcome of a token check. */
export type TokenCheck = { readonly ok: true; readonly hash: string; readonly record: DatabaseTokenRecord } | { readonly ok: false; readonly reason: TokenRefusal };

/** Tells whether the web session behind a handle is still live (never extends it). */
export interface SessionLiveness {
  isLive(handle: string): Promise<boolean>;
}

/** What the token service needs. */
export interface DatabaseTokenDeps {
  readonly store: Store;
  readonly sessions: SessionLiveness;
  readonly now: () => number;
}

function tokenKey(hash: string): string {
  return `db-token:${hash}`;
}

function indexKey(database: string, user: string): string {
  return `db-tokens:${database}:${user}`;
}

function hashOf(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The identity a token stands for (auth `token`), as policy and audit records see it. */
export function tokenIdentity(record: DatabaseTokenRecord): Identity {
  return {
    user: record.user,
    email: record.email,
    groups: record.groups,
    provider: record.provider,
    auth: 'token',
    session: record.session,
    authTime: record.authTime,
    mfa: record.mfa,
  };
}

/** Creates the token service over the store. */
export function createDatabaseTokens(deps: DatabaseTokenDeps) {
  const { store, now } = deps;

  async function load(hash: string): Promise<DatabaseTokenRecord | undefined> {
    const raw = await store.get(tokenKey(hash));
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw) as DatabaseTokenRecord;
    } catch {
      return undefined;
    }
  }

  /** Checks a stored token: present, not expired, its web session still live. */
  async function check(hash: string): Promise<TokenCheck> {
    const record = await load(hash);
    if (record === undefined) return { ok: false, reason: 'token-unknown' };
    if (now() >= record.expiresAt) return { ok: false, reason: 'token-expired' };
    if (record.sessionHandle !== undefined && !(await deps.sessions.isLive(record.sessionHandle))) return { ok: false, reason: 'session-ended' };
    return { ok: true, hash, record };
  }

  return {
    /**
     * Issues a token for `identity` on `database`, living `ttlMs` (capped at 1 h). The caller has
     * already checked the database's policy, second factor included.
     */
    async issue(
      database: string,
      identity: Identity,
      binding: { readonly via: 'cookie' | 'bearer'; readonly sessionHandle: string | undefined },
      ttlMs: number,
    ): Promise<{ token: string; record: DatabaseTokenRecord }> {
      const at = now();
      const ttl = Math.max(1000, Math.min(ttlMs, MAX_TOKEN_TTL_MS));
      const token = `pcdb_${randomBytes(32).toString('base64url')}`;
      const hash = hashOf(token);
      const record: DatabaseTokenRecord = {
        v: 1,
        database,
        user: identity.user,
        email: identity.email,
        groups: [...identity.groups],
        provider: identity.provider,
        via: binding.via,
        session: identity.session,
        sessionHandle: binding.sessionHandle,
        authTime: identity.authTime,
        mfa: identity.mfa,
        issuedAt: at,
        expiresAt: at + ttl,
      };
      await store.set(tokenKey(hash), JSON.stringify(record), ttl);
      await store.addToSet(indexKey(database, identity.user), hash, MAX_TOKEN_TTL_MS);
      return { token, record };
    },

    /** Checks a password a client presented for `database` as `user`. */
    async verify(token: string, database: string, user: string): Promise<TokenCheck> {
      if (!TOKEN_RE.test(token)) return { ok: false, reason: 'token-malformed' };
      const result = await check(hashOf(token));
      if (!result.ok) return result;
      if (result.record.database !== database) return { ok: false, reason: 'token-wrong-database' };
      if (result.record.user !== user) return { ok: false, reason: 'token-wrong-user' };
      return result;
    },

    /** Re-checks a token already accepted (long-lived connections). */
    check,

    /** Revokes every token `user` holds for `database`; returns how many were live. */
    async revokeAll(database: string, user: string): Promise<number> {
      const hashes = await store.members(indexKey(database, user));
      let n = 0;
      for (const h of hashes) if (await store.delete(tokenKey(h))) n += 1;
      await store.delete(indexKey(database, user));
      return n;
    },
  };
}

/** The token service. */
export type DatabaseTokens = ReturnType<typeof createDatabaseTokens>;
