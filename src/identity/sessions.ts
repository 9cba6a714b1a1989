/**
 * Server-side sessions on top of the Store port. The browser holds only an opaque random id (256
 * bits); the store holds the record under the SHA-256 of that id, so a copy of the store does not
 * yield usable cookies. Idle and absolute timeouts are enforced here, whatever the cookie says.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Store } from '../store/store.js';
import type { Identity, MfaCheck } from './identity.js';

/** What a session remembers about its user. */
export interface SessionRecord {
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
  readonly provider: string;
  /** How the primary sign-in happened, for `amr` (e.g. `pwd`, `oidc`). */
  readonly method: 'pwd' | 'oidc';
  /** Epoch ms of the primary sign-in. */
  readonly authTime: number;
  /** Epoch ms the session was created (the absolute timeout counts from here). */
  readonly createdAt: number;
  /** Epoch ms of the last request seen (the idle timeout counts from here). */
  readonly lastSeen: number;
  /** The latest second-factor check. */
  readonly mfa: MfaCheck | undefined;
  /** Per-session secret for CSRF tokens on the gateway's own forms. */
  readonly csrf: string;
  /** OIDC refresh state, when the IdP offered it. */
  readonly oidc?: { readonly refreshToken: string | undefined; readonly expiresAt: number | undefined };
}

/** A live session: its id (the cookie value) and record. */
export interface Session {
  readonly id: string;
  readonly record: SessionRecord;
}

/** What a new session starts from. */
export type NewSession = Omit<SessionRecord, 'createdAt' | 'lastSeen' | 'csrf' | 'mfa'> & { readonly mfa?: MfaCheck };

/** Options for the session manager. */
export interface SessionManagerOptions {
  readonly store: Store;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeMs: number;
  readonly now?: () => number;
}

/** The SPEC §4 session reference: hex SHA-256 of the session id, first 16 characters. */
export function sessionReference(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 16);
}

function storageKey(id: string): string {
  return `session:${createHash('sha256').update(id).digest('base64url')}`;
}

function userIndexKey(user: string): string {
  return `user-sessions:${user}`;
}

const ID_RE = /^[A-Za-z0-9_-]{43}$/;
/** Writing lastSeen on every request would make every request a store write; 1/60 of the idle time is precise enough. */
const TOUCH_FRACTION = 60;

/** Creates the session manager. */
export function createSessionManager(opts: SessionManagerOptions) {
  const { store, idleTimeoutMs, maxLifetimeMs } = opts;
  const now = opts.now ?? Date.now;

  function ttlFor(record: SessionRecord, at: number): number {
    return Math.max(1, Math.min(record.lastSeen + idleTimeoutMs, record.createdAt + maxLifetimeMs) - at);
  }

  async function save(id: string, record: SessionRecord, at: number): Promise<void> {
    const ttl = ttlFor(record, at);
    await store.set(storageKey(id), JSON.stringify(record), ttl);
    await store.addToSet(userIndexKey(record.user), storageKey(id), maxLifetimeMs);
  }

  return {
    /** Starts a session with a fresh random id (always new: there is no way to choose the id). */
    async create(fields: NewSession): Promise<Session> {
      const at = now();
      const id = randomBytes(32).toString('base64url');
      const record: SessionRecord = { ...fields, mfa: fields.mfa, createdAt: at, lastSeen: at, csrf: randomBytes(24).toString('base64url') };
      await save(id, record, at);
      return { id, record };
    },

    /** The live session for a cookie value, or undefined (absent, malformed, idle or too old). */
    async get(id: string): Promise<Session | undefined> {
      if (!ID_RE.test(id)) return undefined;
      const raw = await store.get(storageKey(id));
      if (raw === undefined) return undefined;
      let record: SessionRecord;
      try {
        record = JSON.parse(raw) as SessionRecord;
      } catch {
        return undefined;
      }
      const at = now();
      if (at - record.lastSeen > idleTimeoutMs || at - record.createdAt > maxLifetimeMs) {
        await store.delete(storageKey(id));
        return undefined;
      }
      if (at - record.lastSeen > idleTimeoutMs / TOUCH_FRACTION) {
        record = { ...record, lastSeen: at };
        await save(id, record, at);
      }
      return { id, record };
    },

    /**
     * Replaces a session by a new id carrying `changes` (privilege changes: a new sign-in, a second
     * factor). The old id stops working at once, so a fixated or leaked id gains nothing.
     */
    async rotate(session: Session, changes: Partial<Pick<SessionRecord, 'mfa' | 'groups' | 'oidc' | 'authTime' | 'method' | 'provider'>>): Promise<Session> {
      const at = now();
      await store.delete(storageKey(session.id));
      await store.removeFromSet(userIndexKey(session.record.user), storageKey(session.id));
      const id = randomBytes(32).toString('base64url');
      const record: SessionRecord = { ...session.record, ...changes, lastSeen: at, csrf: randomBytes(24).toString('base64url') };
      await save(id, record, at);
      return { id, record };
    },

    /**
     * Updates a session in place, keeping its id: for facts that are refreshed (an OIDC refresh
     * re-reading the user's groups), and for a second-factor check. A step-up keeps the id on
     * purpose: ids are minted only at sign-in (never chosen by the client), the same id may be
     * serving other hosts through the hand-off, and the factor proved belongs to the session's own
     * user, so a new id would gain nothing and sign the user out elsewhere. Sign-ins use {@link rotate}
     * or a new session.
     */
    async update(session: Session, changes: Partial<Pick<SessionRecord, 'groups' | 'oidc' | 'email' | 'mfa'>>): Promise<Session> {
      const at = now();
      const record: SessionRecord = { ...session.record, ...changes, lastSeen: at };
      await save(session.id, record, at);
      return { id: session.id, record };
    },

    /** Ends one session server-side. */
    async revoke(session: Session): Promise<void> {
      await store.delete(storageKey(session.id));
      await store.removeFromSet(userIndexKey(session.record.user), storageKey(session.id));
    },

    /** Ends every session of a user (all gateway processes sharing the store); returns how many. */
    async revokeAllForUser(user: string): Promise<number> {
      const keys = await store.members(userIndexKey(user));
      let n = 0;
      for (const k of keys) if (await store.delete(k)) n += 1;
      await store.delete(userIndexKey(user));
      return n;
    },

    /**
     * An opaque handle naming a session in the store without its id (for bindings such as database
     * tokens): whoever holds the handle can ask whether the session is live, never use it as a cookie.
     */
    handleOf(session: Session): string {
      return storageKey(session.id);
    },

    /**
     * Whether the session behind a handle is live: present (not signed out or revoked), not idle and
     * not past its lifetime. Never touches it (a check does not keep a session alive).
     */
    async isLive(handle: string): Promise<boolean> {
      if (!handle.startsWith('session:')) return false;
      const raw = await store.get(handle);
      if (raw === undefined) return false;
      let record: SessionRecord;
      try {
        record = JSON.parse(raw) as SessionRecord;
      } catch {
        return false;
      }
      const at = now();
      return at - record.lastSeen <= idleTimeoutMs && at - record.createdAt <= maxLifetimeMs;
    },

    /** The identity a session stands for. */
    identityOf(session: Session): Identity {
      const r = session.record;
      return {
        user: r.user,
        email: r.email,
        groups: r.groups,
        provider: r.provider,
        auth: 'cookie',
        session: sessionReference(session.id),
        authTime: r.authTime,
        mfa: r.mfa,
        amr: [r.method],
      };
    },
  };
}

/** The session manager. */
export type SessionManager = ReturnType<typeof createSessionManager>;
