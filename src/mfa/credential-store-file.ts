/**
 * The file credential store, the embedded default: every user's factors in one JSON file,
 *
 * ```json
 * {"version": 1, "users": {"alice": {"userHandle": "…", "webauthn": [ … ], "totp": [ … ], "recovery": [ … ]}}}
 * ```
 *
 * - The file is mode 0600 (it holds public keys, sealed TOTP secrets and recovery-code hashes); its
 *   directory is created 0700 when missing. When a process running as root rewrites it (a CLI run
 *   with sudo), the file keeps its owner.
 * - Every write replaces the whole file atomically (temp file, fsync, rename): a reader — this
 *   process or another — sees the old file or the new one, never half of one.
 * - `update` is an atomic read-modify-write: updates through one store object run one after another,
 *   and each holds `<file>.lock` (see atomic-file.ts) while it reads the file afresh, applies `change`
 *   and writes, so other store objects and other processes using the same file never lose an update.
 *   `change` runs exactly once. A lock still held after 5 s rejects the update (`ELOCKED`).
 * - `get` reads the file every time, so changes written by another process are seen at once (parsing
 *   is skipped when the text is unchanged).
 * - Users are the keys of `users`; any well-formed name works, `__proto__` included. One malformed user
 *   entry makes `get` and `update` of that user reject (`malformed`) and leaves the others usable, and
 *   an update of another user carries the malformed entry over unchanged. A file that is not JSON,
 *   has another `version` or other top-level keys makes every operation reject and is never
 *   overwritten. A missing file holds no users; an empty file is malformed.
 * - After `close()`, `get` and `update` reject; updates already accepted still finish, and `close()`
 *   waits for them.
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorCode, withFileLock, writeFileAtomic } from '../identity/atomic-file.js';
import {
  checkOpen,
  checkStoredFactors,
  checkUserName,
  createSerialQueue,
  CredentialStoreError,
  EMPTY_FACTORS,
  isEmptyFactors,
  toStorable,
} from './credential-store-codec.js';
import type { CredentialStore, UserFactors } from './factors.js';

/** The version this build reads and writes. */
const FILE_VERSION = 1;

/** One parsed version of the file. */
interface FileContent {
  /** The text it was parsed from ('' for a missing file). */
  readonly text: string;
  /** Each user's entry: as parsed from JSON (unchecked) or as written by this store. */
  readonly users: ReadonlyMap<string, unknown>;
  /** Entries already checked, per user. */
  readonly checked: Map<string, UserFactors>;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses the file's text (not the users' entries, which are checked when read).
 * @throws CredentialStoreError `malformed`.
 */
function parseFile(text: string, file: string): FileContent {
  const malformed = (why: string, cause?: unknown): CredentialStoreError =>
    new CredentialStoreError('malformed', `the MFA credential file ${file} is malformed: ${why}`, cause === undefined ? undefined : { cause });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw malformed(`not JSON (${err instanceof Error ? err.message : String(err)})`, err);
  }
  if (!isPlainObject(doc)) throw malformed('expected an object {"version": 1, "users": {…}}');
  const unknownKeys = Object.keys(doc).filter((k) => k !== 'version' && k !== 'users');
  if (unknownKeys.length > 0) throw malformed(`unknown top-level key ${JSON.stringify(unknownKeys[0])}`);
  if (doc.version !== FILE_VERSION) {
    throw malformed(doc.version === undefined ? `"version" is missing` : `unsupported version ${JSON.stringify(doc.version)}, expected ${FILE_VERSION}`);
  }
  const users = doc.users;
  if (!isPlainObject(users)) throw malformed('"users" must be an object of user name → factors');
  // Object.entries lists own keys only, including a "__proto__" key JSON.parse created as data.
  return { text, users: new Map(Object.entries(users)), checked: new Map() };
}

/** The file's text for `users`. Object.fromEntries defines keys as data, so `__proto__` is safe. */
function serializeFile(users: ReadonlyMap<string, unknown>): string {
  return `${JSON.stringify({ version: FILE_VERSION, users: Object.fromEntries(users) }, null, 2)}\n`;
}

/**
 * Creates a {@link CredentialStore} over `file` (created on the first update that stores something).
 * Nothing is read until the first call; a broken file is reported by the calls, not here.
 */
export function createFileCredentialStore(file: string): CredentialStore {
  const queue = createSerialQueue();
  let cache: FileContent | undefined;
  let closed = false;

  /** The file as it is now; parsing is skipped when the text did not change. */
  const load = async (): Promise<FileContent> => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return { text: '', users: new Map(), checked: new Map() };
      throw err;
    }
    if (cache !== undefined && cache.text === text) return cache;
    const parsed = parseFile(text, file);
    cache = parsed;
    return parsed;
  };

  const factorsOf = (content: FileContent, user: string): UserFactors => {
    const known = content.checked.get(user);
    if (known !== undefined) return known;
    if (!content.users.has(user)) return EMPTY_FACTORS;
    const factors = checkStoredFactors(content.users.get(user), `the MFA data of user ${JSON.stringify(user)} in ${file}`);
    content.checked.set(user, factors);
    return factors;
  };

  /** One update, holding the lock file. */
  const locked = async (user: string, change: (current: UserFactors) => UserFactors): Promise<UserFactors> => {
    const owner = await stat(file).then(
      (s) => ({ uid: s.uid, gid: s.gid }),
      (err: unknown) => {
        if (errorCode(err) === 'ENOENT') return undefined;
        throw err;
      },
    );
    const content = await load();
    const next = toStorable(change(factorsOf(content, user)), user);
    const remove = isEmptyFactors(next);
    if (remove && !content.users.has(user)) return EMPTY_FACTORS;
    const users = new Map(content.users);
    const checked = new Map(content.checked);
    if (remove) {
      users.delete(user);
      checked.delete(user);
    } else {
      users.set(user, next);
      checked.set(user, next);
    }
    const text = serializeFile(users);
    await writeFileAtomic(file, text, owner === undefined ? { mode: 0o600 } : { mode: 0o600, owner });
    cache = { text, users, checked };
    return remove ? EMPTY_FACTORS : next;
  };

  return {
    kind: 'file',

    async get(user) {
      checkUserName(user);
      checkOpen(closed, 'file');
      return factorsOf(await load(), user);
    },

    async update(user, change) {
      checkUserName(user);
      checkOpen(closed, 'file');
      return queue.run('file', async () => {
        await mkdir(dirname(file), { recursive: true, mode: 0o700 });
        return withFileLock(file, () => locked(user, change));
      });
    },

    async close() {
      closed = true;
      await queue.idle();
    },
  };
}
