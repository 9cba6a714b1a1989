/**
 * Watches the configuration file for changes, the way editors and Kubernetes actually change files:
 * editors write a temporary file and rename it over the original, and a ConfigMap volume swaps a
 * `..data` symlink in the same directory. So the file's directory is watched (not the file's inode),
 * events are debounced, and `onChange` fires only when the file's bytes really changed.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** Options for {@link watchConfigFile}. */
export interface WatchConfigOptions {
  /** Quiet period after the last event before the file is read again. Default 200 ms. */
  debounceMs?: number;
  /** How often to try again to watch the directory while it is missing. Default 1000 ms. */
  retryMs?: number;
}

/** A running watch; `close()` stops it (idempotent) and no `onChange` follows. */
export interface ConfigWatcher {
  close(): void;
}

/**
 * Calls `onChange` (without arguments) after `file`'s content changes; never for a touch or a rewrite
 * with identical bytes, nor while the file is missing. The directory disappearing is not an error:
 * watching resumes when it comes back. The watch does not keep the process alive.
 * Precondition: `onChange` does not throw (it runs from a timer).
 */
export function watchConfigFile(file: string, onChange: () => void, opts: WatchConfigOptions = {}): ConfigWatcher {
  const debounceMs = opts.debounceMs ?? 200;
  const retryMs = opts.retryMs ?? 1000;
  const path = resolve(file);
  const dir = dirname(path);

  let lastHash = hashFileSync(path);
  let watcher: FSWatcher | undefined;
  let watchedIno: number | undefined;
  let debounceTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  // Read through a function: the check loop awaits, and `close()` may run meanwhile.
  let closed = false;
  const isClosed = () => closed;
  let checking = false;
  let checkAgain = false;
  const wantsAnotherCheck = () => checkAgain;

  const stopWatching = () => {
    watcher?.close();
    watcher = undefined;
    watchedIno = undefined;
  };

  const schedule = () => {
    if (closed) return;
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(() => void check(), debounceMs);
    debounceTimer.unref();
  };

  const retryLater = () => {
    if (closed || retryTimer !== undefined) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      arm(true);
    }, retryMs);
    retryTimer.unref();
  };

  /** Starts watching the directory; after a gap (`resumed`), looks at the file once in case it changed. */
  const arm = (resumed: boolean) => {
    if (closed) return;
    stopWatching();
    try {
      watchedIno = statSync(dir).ino;
      const w = watch(dir, { persistent: false }, schedule);
      w.on('error', () => {
        if (watcher === w) stopWatching();
        retryLater();
        schedule();
      });
      watcher = w;
    } catch {
      stopWatching();
      retryLater();
      return;
    }
    if (resumed) schedule();
  };

  const check = async () => {
    if (checking) {
      checkAgain = true;
      return;
    }
    checking = true;
    try {
      do {
        checkAgain = false;
        const hash = await hashFile(path);
        if (isClosed()) return;
        if (hash !== undefined && hash !== lastHash) {
          lastHash = hash;
          onChange();
        }
        // A directory that vanished, or was replaced, leaves the watch on a dead inode: re-arm.
        const ino = await stat(dir).then((s) => s.ino, () => undefined);
        if (isClosed()) return;
        if (ino === undefined) {
          stopWatching();
          retryLater();
        } else if (ino !== watchedIno) {
          arm(true);
        }
      } while (wantsAnotherCheck() && !isClosed());
    } finally {
      checking = false;
    }
  };

  arm(false);
  if (watcher === undefined) retryLater();

  return {
    close() {
      closed = true;
      clearTimeout(debounceTimer);
      clearTimeout(retryTimer);
      stopWatching();
    },
  };
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function hashFileSync(path: string): string | undefined {
  try {
    return sha256(readFileSync(path));
  } catch {
    return undefined;
  }
}

async function hashFile(path: string): Promise<string | undefined> {
  try {
    return sha256(await readFile(path));
  } catch {
    return undefined;
  }
}
