/**
 * Small, careful file writes for the users file and the assertion key ring: whole-file replacement
 * by rename (a reader never sees half a file), exclusive creation (never overwrites), and an
 * advisory lock file so that two writers (two CLI runs, two gateway replicas) do not lose each
 * other's changes.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, link, lstat, mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Options for {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** Permission bits of the new file (default 0600). */
  mode?: number;
  /** Keep this owner (when running as root, e.g. `sudo portcullis users add`). */
  owner?: { uid: number; gid: number };
}

/** Replaces `file` with `data` atomically: temp file in the same directory, fsync, rename. */
export async function writeFileAtomic(file: string, data: string, options: AtomicWriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o600;
  const tmp = await writeTemp(file, data, mode);
  try {
    if (options.owner !== undefined && process.getuid?.() === 0) await chown(tmp, options.owner.uid, options.owner.gid);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDirectory(dirname(file));
}

/**
 * Creates `file` with `data` (mode 0600 unless given; parent directories are created) only if it does
 * not exist. Atomic: the content is complete before the name appears. Resolves false, writing
 * nothing, when the file already exists.
 */
export async function createFileExclusive(file: string, data: string, mode = 0o600): Promise<boolean> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = await writeTemp(file, data, mode);
  try {
    await link(tmp, file);
    await syncDirectory(dirname(file));
    return true;
  } catch (err) {
    if (errorCode(err) === 'EEXIST') return false;
    // Some file systems cannot hard-link; an exclusive open is the next best thing.
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV'].includes(errorCode(err))) throw err;
    return await createWithExclusiveOpen(file, data, mode);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Options for {@link withFileLock}. */
export interface FileLockOptions {
  /** Give up after this long (default 5 s). */
  timeoutMs?: number;
  /** A lock file older than this is left over from a crashed writer and is removed (default 30 s). */
  staleMs?: number;
}

/**
 * Runs `fn` while holding `<file>.lock` (created exclusively, removed afterwards). Advisory: it only
 * excludes writers that use it too.
 * @throws Error with code `ELOCKED` when the lock is not acquired within the timeout.
 */
export async function withFileLock<T>(file: string, fn: () => Promise<T>, options: FileLockOptions = {}): Promise<T> {
  const lockFile = `${file}.lock`;
  const timeoutMs = options.timeoutMs ?? 5000;
  const staleMs = options.staleMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let handle: FileHandle | undefined;
  while (handle === undefined) {
    try {
      handle = await open(lockFile, 'wx', 0o600);
    } catch (err) {
      if (errorCode(err) !== 'EEXIST') throw err;
      const age = await lstat(lockFile).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > staleMs) {
        await rm(lockFile, { force: true });
        continue;
      }
      if (Date.now() >= deadline) {
        throw Object.assign(new Error(`${lockFile} is held by another writer (remove it if no other writer is running)`), { code: 'ELOCKED' });
      }
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.floor(Math.random() * 30)));
    }
  }
  try {
    await handle.writeFile(`${process.pid}\n`);
    await handle.close();
    return await fn();
  } finally {
    await rm(lockFile, { force: true });
  }
}

/** The `code` of a Node.js system error, or ''. */
export function errorCode(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : '';
}

/** Identity of a file's current version: changes on every write and on replacement by rename. */
export async function fileVersion(file: string): Promise<string> {
  const s = await stat(file, { bigint: true });
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`;
}

async function writeTemp(file: string, data: string, mode: number): Promise<string> {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', mode);
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  await chmod(tmp, mode); // the umask may have narrowed the mode given to open
  return tmp;
}

async function createWithExclusiveOpen(file: string, data: string, mode: number): Promise<boolean> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'wx', mode);
  } catch (err) {
    if (errorCode(err) === 'EEXIST') return false;
    throw err;
  }
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Not every platform can fsync a directory; the rename itself has happened.
  }
}
