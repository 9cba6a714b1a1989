/**
 * The in-process store adapter: one `Map`, for a single gateway process (the embedded default).
 * Nothing is shared between processes and nothing survives a restart.
 */
import type { Store } from './store.js';
import { toTtlMs } from './ttl-ms.js';

/** Options for {@link createMemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * The clock, in milliseconds; expiry is judged against it. Defaults to `performance.now()`
   * (monotonic, so a wall-clock jump neither expires nor revives anything). Tests inject their own.
   */
  readonly now?: () => number;
  /** How often expired entries nobody reads again are swept out, in ms. Default 60 000. */
  readonly sweepIntervalMs?: number;
}

/** The memory adapter: a {@link Store} that can also say how many entries it holds. */
export interface MemoryStore extends Store {
  /** Entries held, counting expired ones the sweep has not removed yet (for tests and metrics). */
  entryCount(): number;
}

type Entry =
  | { readonly type: 'string'; value: string; expiresAt: number }
  | { readonly type: 'set'; readonly members: Set<string>; expiresAt: number };

/** Runs `fn` now and settles a promise with its result, so every throw becomes a rejection. */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => {
    resolve(fn());
  });
}

/** The same words Redis uses, so both adapters fail alike. */
const WRONG_TYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value';
const NOT_AN_INTEGER = 'ERR value is not an integer or out of range';
const INTEGER_RE = /^-?(0|[1-9]\d*)$/;

/**
 * Creates a Map-backed {@link Store}. Expired entries disappear when touched (lazy expiry) and a
 * periodic sweep removes the rest, so memory does not grow with keys nobody reads again. The sweep
 * timer is unref'd (it never keeps the process alive) and `close()` stops it; after `close()` every
 * method except `ping` (false) and `close` rejects.
 *
 * An entry expires when the clock reaches `set time + ttlMs`.
 */
export function createMemoryStore(opts: MemoryStoreOptions = {}): MemoryStore {
  const now = opts.now ?? (() => performance.now());
  const entries = new Map<string, Entry>();
  let closed = false;

  const sweep = (): void => {
    const t = now();
    for (const [key, entry] of entries) if (entry.expiresAt <= t) entries.delete(key);
  };
  const timer = setInterval(sweep, opts.sweepIntervalMs ?? 60_000);
  timer.unref();

  const open = (): void => {
    if (closed) throw new Error('the memory store is closed');
  };
  /** The live entry under `key`, dropping it first when it has expired. */
  const live = (key: string): Entry | undefined => {
    open();
    const entry = entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  };
  const stringValue = (entry: Entry | undefined): string | undefined => {
    if (entry === undefined) return undefined;
    if (entry.type !== 'string') throw new Error(WRONG_TYPE);
    return entry.value;
  };
  const setMembers = (entry: Entry | undefined): Set<string> | undefined => {
    if (entry === undefined) return undefined;
    if (entry.type !== 'set') throw new Error(WRONG_TYPE);
    return entry.members;
  };

  return {
    kind: 'memory',

    get(key) {
      return settle(() => stringValue(live(key)));
    },

    set(key, value, ttlMs) {
      return settle(() => {
        const ttl = toTtlMs(ttlMs);
        open();
        entries.set(key, { type: 'string', value, expiresAt: now() + ttl });
      });
    },

    setIfAbsent(key, value, ttlMs) {
      return settle(() => {
        const ttl = toTtlMs(ttlMs);
        if (live(key) !== undefined) return false;
        entries.set(key, { type: 'string', value, expiresAt: now() + ttl });
        return true;
      });
    },

    delete(key) {
      return settle(() => {
        if (live(key) === undefined) return false;
        entries.delete(key);
        return true;
      });
    },

    take(key) {
      return settle(() => {
        const value = stringValue(live(key));
        if (value !== undefined) entries.delete(key);
        return value;
      });
    },

    expire(key, ttlMs) {
      return settle(() => {
        const ttl = toTtlMs(ttlMs);
        const entry = live(key);
        if (entry === undefined) return false;
        entry.expiresAt = now() + ttl;
        return true;
      });
    },

    increment(key, windowMs) {
      return settle(() => {
        const window = toTtlMs(windowMs, 'windowMs');
        const entry = live(key);
        if (entry === undefined) {
          entries.set(key, { type: 'string', value: '1', expiresAt: now() + window });
          return 1;
        }
        if (entry.type !== 'string') throw new Error(WRONG_TYPE);
        const next = INTEGER_RE.test(entry.value) ? Number(entry.value) + 1 : Number.NaN;
        if (!Number.isSafeInteger(next)) throw new Error(NOT_AN_INTEGER);
        entry.value = String(next); // the window's end stays where the first increment put it
        return next;
      });
    },

    addToSet(key, member, ttlMs) {
      return settle(() => {
        const ttl = toTtlMs(ttlMs);
        const entry = live(key);
        if (entry === undefined) {
          entries.set(key, { type: 'set', members: new Set([member]), expiresAt: now() + ttl });
          return;
        }
        if (entry.type !== 'set') throw new Error(WRONG_TYPE);
        entry.members.add(member);
        entry.expiresAt = now() + ttl;
      });
    },

    removeFromSet(key, member) {
      return settle(() => {
        const members = setMembers(live(key));
        if (members === undefined) return;
        members.delete(member);
        if (members.size === 0) entries.delete(key); // like Redis: an empty set does not exist
      });
    },

    members(key) {
      return settle(() => [...(setMembers(live(key)) ?? [])]);
    },

    ping() {
      return Promise.resolve(!closed);
    },

    entryCount() {
      return entries.size;
    },

    close() {
      return settle(() => {
        closed = true;
        clearInterval(timer);
        entries.clear();
      });
    },
  };
}
