/**
 * Local users: a YAML file of names, e-mail addresses, groups and scrypt password hashes, the
 * `local` identity provider's directory. The file is re-read when it changes, so `portcullis users
 * add` takes effect without a restart.
 *
 * ```yaml
 * users:
 *   - {name: alice, email: alice@example.com, groups: [eng], password_hash: $scrypt$ln=14,r=8,p=1$…$…}
 * ```
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Document, LineCounter, YAMLMap, YAMLSeq, isMap, isSeq, parseDocument } from 'yaml';
import { z } from 'zod';
import type { ConfigIssue } from '../config/index.js';
import { findPair, nodesAlong, startOf, yamlToData } from '../config/yaml-to-data.js';
import { explainZodIssue, type ExplainedIssue } from '../config/zod-issues.js';
import { GatewayError } from '../errors/index.js';
import { createFileExclusive, errorCode, fileVersion, withFileLock, writeFileAtomic } from './atomic-file.js';
import { dummyVerify, generatePassword, hashPassword, isPasswordHash, verifyPassword } from './password-hash.js';

/** A local user as the rest of the gateway sees it (never the hash). */
export interface LocalUser {
  readonly name: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
}

/** What {@link createLocalUserDirectory} returns. */
export interface LocalUserDirectory {
  /**
   * The user whose name (exact, case-sensitive) or e-mail address (case-insensitive) is `username`,
   * if `password` is theirs; otherwise undefined, after the same amount of work whether or not the
   * user exists. Re-reads the file first when it has changed (checked at most once a second).
   */
  verify(username: string, password: string): Promise<LocalUser | undefined>;
  /** The user named exactly `name`, as of the last load. */
  get(name: string): LocalUser | undefined;
  /**
   * Re-reads the file now. On failure the previous users stay in force.
   * @throws UsersFileError when the file cannot be read or is invalid.
   */
  reload(): Promise<void>;
}

/** Options for {@link createLocalUserDirectory}. */
export interface LocalUserDirectoryOptions {
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number;
  /** How often `verify` looks at the file's modification (default 1000 ms). */
  checkIntervalMs?: number;
  /** Called when an automatic re-read fails; the previous users stay in force. */
  onReloadError?: (err: UsersFileError) => void;
}

/** Why a users file operation failed. */
export type UsersFileFailure = 'unreadable' | 'invalid' | 'duplicate' | 'invalid_user';

/**
 * A users file that cannot be read, is invalid (`issues` carry `FILE:LINE:COL`), or would not
 * accept a new user (`duplicate`, `invalid_user`).
 */
export class UsersFileError extends GatewayError {
  readonly reason: UsersFileFailure;
  readonly issues: readonly ConfigIssue[];

  constructor(reason: UsersFileFailure, issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    super(reason === 'unreadable' ? 'GW_ERR_CONFIG_READ' : 'GW_ERR_CONFIG_INVALID', issues.map(formatIssue).join('\n'), options);
    this.name = 'UsersFileError';
    this.reason = reason;
    this.issues = issues;
  }
}

/** A new user for {@link addUser}. */
export interface NewLocalUser {
  name: string;
  email?: string | undefined;
  groups: readonly string[];
  password: string;
}

const USER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const GROUP_RE = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

const userFields = {
  name: z
    .string()
    .regex(USER_NAME_RE, 'expected a user name: letters, digits, ., - and _, starting with a letter or digit, at most 64 characters'),
  email: z.email({ error: 'expected an e-mail address' }).optional(),
  groups: z.array(z.string().regex(GROUP_RE, 'expected a group name: letters, digits, ., -, _, : and /, no spaces or commas')).default([]),
};

const userEntry = z.strictObject({
  ...userFields,
  password_hash: z
    .string()
    .refine(isPasswordHash, 'expected a password hash as written by `portcullis users add` ($scrypt$ln=…,r=…,p=…$salt$hash)'),
});

const usersFileSchema = z
  .strictObject({ users: z.array(userEntry).default([]) })
  .superRefine(
    (file: unknown, ctx) => {
      const users = isRecord(file) && Array.isArray(file.users) ? (file.users as unknown[]) : [];
      const names = new Map<string, number>();
      const emails = new Map<string, number>();
      users.forEach((user, i) => {
        if (!isRecord(user)) return;
        if (typeof user.name === 'string') {
          const first = names.get(user.name);
          if (first === undefined) names.set(user.name, i);
          else ctx.addIssue({ code: 'custom', path: ['users', i, 'name'], message: `user name "${user.name}" is already used by users[${first}]` });
        }
        if (typeof user.email === 'string') {
          const key = user.email.toLowerCase();
          const first = emails.get(key);
          if (first === undefined) emails.set(key, i);
          else ctx.addIssue({ code: 'custom', path: ['users', i, 'email'], message: `e-mail address "${user.email}" is already used by users[${first}]` });
        }
      });
    },
    { when: (payload) => isRecord(payload.value) },
  );

interface StoredUser {
  user: LocalUser;
  hash: string;
}

interface Users {
  byName: ReadonlyMap<string, StoredUser>;
  byEmail: ReadonlyMap<string, StoredUser>;
}

/** A parsed users file: its users, or every problem found, at `FILE:LINE:COL`. */
export type UsersFileResult =
  | { ok: true; users: readonly (LocalUser & { readonly passwordHash: string })[] }
  | { ok: false; issues: ConfigIssue[] };

/**
 * Parses and validates users-file text. Pure. Names must be unique (exact) and e-mail addresses
 * unique (case-insensitive); unknown keys are errors. An empty file has no users.
 * @param file shown in issues; not read.
 */
export function loadUsersText(text: string, file: string): UsersFileResult {
  const parsed = parseUsersDocument(text, file);
  if (!parsed.ok) return parsed;
  return { ok: true, users: parsed.users };
}

/**
 * A directory over the users file, kept current. The file is read in the background right away;
 * `verify` waits for that first read. Call `reload()` at startup to fail fast on a broken file.
 * Until one read has succeeded, `verify` rejects with the {@link UsersFileError}; after that a
 * failed re-read leaves the previous users in force and is reported to `onReloadError`.
 */
export function createLocalUserDirectory(file: string, options: LocalUserDirectoryOptions = {}): LocalUserDirectory {
  const now = options.now ?? Date.now;
  const checkIntervalMs = options.checkIntervalMs ?? 1000;
  let users: Users | undefined;
  let version = '';
  let lastCheck = now();
  let pending: Promise<void> | undefined;

  const reload = async (): Promise<void> => {
    let text: string;
    let nextVersion: string;
    try {
      nextVersion = await fileVersion(file);
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsersFileError('unreadable', [{ file, line: 1, col: 1, message: describeReadError(err) }], { cause: err });
    }
    const result = loadUsersText(text, file);
    if (!result.ok) throw new UsersFileError('invalid', result.issues);
    const byName = new Map<string, StoredUser>();
    const byEmail = new Map<string, StoredUser>();
    for (const { passwordHash, ...user } of result.users) {
      const stored: StoredUser = { user: Object.freeze({ ...user, groups: Object.freeze([...user.groups]) }), hash: passwordHash };
      byName.set(user.name, stored);
      if (user.email !== undefined) byEmail.set(user.email.toLowerCase(), stored);
    }
    users = { byName, byEmail };
    version = nextVersion;
  };

  /** Re-reads when the file changed; a failure is thrown only while nothing was ever loaded. */
  const refresh = async (): Promise<void> => {
    try {
      if (users === undefined || (await fileVersion(file)) !== version) await reload();
    } catch (err) {
      const error = err instanceof UsersFileError ? err : new UsersFileError('unreadable', [{ file, line: 1, col: 1, message: describeReadError(err) }], { cause: err });
      if (users === undefined) throw error;
      options.onReloadError?.(error);
    }
  };

  const current = async (): Promise<Users> => {
    const t = now();
    if (pending === undefined && (users === undefined || t - lastCheck >= checkIntervalMs)) {
      lastCheck = t;
      pending = refresh().finally(() => {
        pending = undefined;
      });
    }
    if (pending !== undefined) await pending;
    if (users === undefined) throw new UsersFileError('unreadable', [{ file, line: 1, col: 1, message: 'cannot read the users file' }]);
    return users;
  };

  // The first read starts now; its failure is reported by the first `verify` (or `reload`).
  current().catch(() => undefined);

  return {
    async verify(username, password) {
      const { byName, byEmail } = await current();
      const stored = byName.get(username) ?? byEmail.get(username.toLowerCase());
      if (stored === undefined) {
        await dummyVerify(password);
        return undefined;
      }
      return (await verifyPassword(password, stored.hash)) ? stored.user : undefined;
    },
    get(name) {
      return users?.byName.get(name)?.user;
    },
    reload,
  };
}

/** What {@link ensureUsersFile} did. */
export interface EnsureUsersFileResult {
  created: boolean;
  /** The generated password of `admin`, only when the file was created; print it once. */
  adminPassword?: string;
}

/**
 * Creates the users file, mode 0600 (and its parent directories), with one user `admin` in groups
 * `admin` and `sre` and a random 24-character password, unless the file exists already; an existing
 * file is never touched.
 */
export async function ensureUsersFile(file: string): Promise<EnsureUsersFileResult> {
  if (await exists(file)) return { created: false };
  const adminPassword = generatePassword();
  const doc = new Document(new YAMLMap());
  doc.commentBefore =
    ' Portcullis local users (identity provider type "local").\n' +
    ' Add users with: portcullis users add NAME --groups a,b [--email E]\n' +
    ' Passwords are stored as scrypt hashes only; this file is re-read when it changes.';
  const seq = new YAMLSeq();
  doc.set('users', seq);
  seq.add(userNode({ name: 'admin', groups: ['admin', 'sre'] }, await hashPassword(adminPassword)));
  const created = await createFileExclusive(file, stringify(doc));
  return created ? { created, adminPassword } : { created };
}

/**
 * Appends a user to the users file, creating the file (mode 0600) when absent. The file is
 * re-validated first, replaced atomically (temp file + rename) under a lock file, and keeps its
 * mode, owner and comments.
 * @throws UsersFileError `duplicate` when the name or e-mail address is taken, `invalid_user` when the
 *   new user's fields are invalid, `invalid` / `unreadable` when the file is.
 */
export async function addUser(file: string, user: NewLocalUser): Promise<LocalUser> {
  const fields = z.strictObject(userFields).safeParse({ name: user.name, email: user.email, groups: [...user.groups] });
  if (!fields.success) {
    const issues = fields.error.issues.flatMap((i) => explainZodIssue(i)).map((i) => ({ file, line: 1, col: 1, message: i.message }));
    throw new UsersFileError('invalid_user', issues);
  }
  if (user.password === '') throw new UsersFileError('invalid_user', [{ file, line: 1, col: 1, message: 'the password is empty' }]);
  const entry: LocalUser = { name: fields.data.name, email: fields.data.email, groups: fields.data.groups };
  let passwordHash: string;
  try {
    passwordHash = await hashPassword(user.password);
  } catch (err) {
    throw new UsersFileError('invalid_user', [{ file, line: 1, col: 1, message: err instanceof Error ? err.message : String(err) }]);
  }

  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new UsersFileError('unreadable', [{ file, line: 1, col: 1, message: describeWriteError(err) }], { cause: err });
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    const written = await withFileLock(file, async () => {
      let text: string;
      let mode = 0o600;
      let owner: { uid: number; gid: number } | undefined;
      let isNew = false;
      try {
        const s = await stat(file);
        mode = s.mode & 0o777;
        owner = { uid: s.uid, gid: s.gid };
        text = await readFile(file, 'utf8');
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') {
          throw new UsersFileError('unreadable', [{ file, line: 1, col: 1, message: describeReadError(err) }], { cause: err });
        }
        text = '';
        isNew = true;
      }
      const parsed = parseUsersDocument(text, file);
      if (!parsed.ok) throw new UsersFileError('invalid', parsed.issues);
      const taken = conflict(parsed.users, entry);
      if (taken !== undefined) {
        const { line, col } = parsed.lineCounter.linePos(startOf(nodesAlong(parsed.doc, ['users', taken.index, taken.field]).at(-1)));
        throw new UsersFileError('duplicate', [{ file, line, col, message: taken.message }]);
      }

      const { doc } = parsed;
      const existing = doc.get('users', true);
      const node = userNode(entry, passwordHash);
      if (isSeq(existing)) {
        if (existing.items.length === 0) existing.flow = false;
        existing.add(node);
      } else {
        const seq = new YAMLSeq();
        seq.add(node);
        if (!isMap(doc.contents)) doc.contents = new YAMLMap();
        doc.set('users', seq);
      }
      const out = stringify(doc);
      if (isNew) return createFileExclusive(file, out);
      await writeFileAtomic(file, out, { mode, ...(owner === undefined ? {} : { owner }) });
      return true;
    }).catch((err: unknown) => {
      if (err instanceof UsersFileError) throw err;
      throw new UsersFileError('unreadable', [{ file, line: 1, col: 1, message: describeWriteError(err) }], { cause: err });
    });
    // Created meanwhile by someone not using the lock (ensureUsersFile): start over on the new file.
    if (written) return Object.freeze({ ...entry, groups: Object.freeze([...entry.groups]) });
  }
  throw new UsersFileError('unreadable', [{ file, line: 1, col: 1, message: 'the users file keeps changing; try again' }]);
}

type ParsedDocument =
  | { ok: true; doc: Document; lineCounter: LineCounter; users: (LocalUser & { readonly passwordHash: string })[] }
  | { ok: false; issues: ConfigIssue[] };

function parseUsersDocument(text: string, file: string): ParsedDocument {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const issues: ConfigIssue[] = [];
  const report = (offset: number, message: string) => {
    const { line, col } = lineCounter.linePos(offset);
    issues.push({ file, line, col, message });
  };
  for (const error of doc.errors) report(error.pos[0], `invalid YAML: ${lowerFirst(error.message)}`);
  for (const warning of doc.warnings) report(warning.pos[0], `YAML: ${lowerFirst(warning.message)}`);
  if (doc.errors.length > 0) return failed(issues);

  // No `${VAR}` substitution in this file: nothing in it is a secret from the environment.
  const tree = yamlToData(doc, {});
  for (const p of tree.problems) report(p.offset, p.message);
  const result = usersFileSchema.safeParse(tree.data, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      for (const explained of explainZodIssue(issue)) report(offsetOf(doc, explained), explained.message);
    }
  }
  if (issues.length > 0 || !result.success) return failed(issues);
  const users = result.data.users.map((u) => ({ name: u.name, email: u.email, groups: u.groups, passwordHash: u.password_hash }));
  return { ok: true, doc, lineCounter, users };

  function failed(list: ConfigIssue[]): { ok: false; issues: ConfigIssue[] } {
    list.sort((a, b) => a.line - b.line || a.col - b.col);
    return { ok: false, issues: list };
  }
}

/** The existing user that `entry` would clash with, and on which field. */
function conflict(users: readonly LocalUser[], entry: LocalUser): { index: number; field: 'name' | 'email'; message: string } | undefined {
  for (const [index, u] of users.entries()) {
    if (u.name === entry.name) return { index, field: 'name', message: `user "${entry.name}" already exists` };
    if (entry.email !== undefined && u.email?.toLowerCase() === entry.email.toLowerCase()) {
      return { index, field: 'email', message: `e-mail address "${entry.email}" is already used by user "${u.name}"` };
    }
  }
  return undefined;
}

function userNode(user: Pick<LocalUser, 'name' | 'groups'> & { email?: string | undefined }, passwordHash: string): YAMLMap {
  const map = new YAMLMap<string, unknown>();
  map.set('name', user.name);
  if (user.email !== undefined) map.set('email', user.email);
  const groups = new YAMLSeq<string>();
  groups.flow = true;
  for (const g of user.groups) groups.add(g);
  map.set('groups', groups);
  map.set('password_hash', passwordHash);
  return map;
}

function stringify(doc: Document): string {
  return doc.toString({ lineWidth: 0 });
}

function offsetOf(doc: Document, explained: ExplainedIssue): number {
  const { path, target } = explained;
  const chain = nodesAlong(doc, path);
  if (target.kind === 'key') {
    const map = chain[path.length];
    const pair = isMap(map) ? findPair(map, target.key) : undefined;
    return startOf(pair?.key ?? chain.at(-1));
  }
  if (target.kind === 'parent') return startOf(chain[Math.min(chain.length, path.length) - 1]);
  return startOf(chain.at(-1));
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw err;
  }
}

function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.col}: ${i.message}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

function describeReadError(err: unknown): string {
  switch (errorCode(err)) {
    case 'ENOENT':
      return 'cannot read the users file: it does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'cannot read the users file: permission denied';
    case 'EISDIR':
      return 'cannot read the users file: it is a directory';
    default:
      return `cannot read the users file: ${err instanceof Error ? err.message : String(err)}`;
  }
}

function describeWriteError(err: unknown): string {
  switch (errorCode(err)) {
    case 'EACCES':
    case 'EPERM':
      return 'cannot write the users file: permission denied';
    case 'EROFS':
      return 'cannot write the users file: the file system is read-only';
    default:
      return `cannot write the users file: ${err instanceof Error ? err.message : String(err)}`;
  }
}
