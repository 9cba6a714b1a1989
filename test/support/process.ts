/**
 * Runs the real command line (`node bin/portcullis.js …`, the compiled build) as a child process for
 * tests: captures its output, waits for lines, signals it, and makes sure none outlives the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (commands run from here, like `npx portcullis` would). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The package's command; it imports `dist/`, so `npm run build` must have run. */
export const CLI = fileURLToPath(new URL('../../bin/portcullis.js', import.meta.url));

/** How a child process ended. */
export interface Exit {
  /** The exit code, or null when a signal killed it. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** `performance.now()` when it ended. */
  readonly at: number;
}

/** A running `portcullis` process. */
export interface CliProcess {
  readonly child: ChildProcess;
  /** Everything written to stdout / stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once the process has exited. */
  readonly exited: Promise<Exit>;
  /** Resolves with the first match of `re` in stdout (+ stderr), waiting up to `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Sends a signal (no-op once exited). */
  signal(sig: NodeJS.Signals): void;
}

const running = new Set<CliProcess>();

/** Starts `node bin/portcullis.js ...args`. Its environment is the test's plus `env`. */
export function startCli(args: readonly string[], env: Readonly<Record<string, string>> = {}): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of [...listeners]) l();
  };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (c: string) => {
    out += c;
    notify();
  });
  child.stderr.on('data', (c: string) => {
    err += c;
    notify();
  });
  let hasExited = false;
  const exited = new Promise<Exit>((resolve) => {
    child.once('close', (code, signal) => {
      hasExited = true;
      running.delete(proc);
      notify();
      resolve({ code, signal, at: performance.now() });
    });
  });
  const proc: CliProcess = {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out) ?? re.exec(err);
          if (m !== null) {
            done();
            resolve(m);
          } else if (hasExited) {
            done();
            reject(new Error(`process exited before printing ${String(re)}\nstdout:\n${out}\nstderr:\n${err}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${String(re)}\nstdout:\n${out}\nstderr:\n${err}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    signal(sig) {
      if (!hasExited) child.kill(sig);
    },
  };
  running.add(proc);
  return proc;
}

/** The result of a command run to completion. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (killed after `timeoutMs`). */
export async function runCli(args: readonly string[], timeoutMs = 10_000): Promise<CliResult> {
  const p = startCli(args);
  const timer = setTimeout(() => p.signal('SIGKILL'), timeoutMs);
  const exit = await p.exited;
  clearTimeout(timer);
  return { code: exit.code, stdout: p.stdout(), stderr: p.stderr() };
}

/** SIGKILLs every process started by {@link startCli} that is still running, and waits for them. */
export async function killAllCli(): Promise<void> {
  const all = [...running];
  for (const p of all) p.signal('SIGKILL');
  await Promise.all(all.map((p) => p.exited));
}

/**
 * `n` distinct loopback ports that were free a moment ago: all are bound to port 0 at once (so the
 * kernel hands out different ones), then released for the test to write into a config.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => net.createServer());
  try {
    await Promise.all(
      servers.map(
        (srv) =>
          new Promise<void>((resolve, reject) => {
            srv.once('error', reject);
            srv.listen(0, '127.0.0.1', resolve);
          }),
      ),
    );
    return servers.map((srv) => (srv.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
  }
}

/** Resolves with the connect error code (e.g. ECONNREFUSED), or 'connected' when something listens. */
export function tryConnect(port: number, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

/** Polls `fn` until it returns true; a throw counts as "not yet". Fails after `timeoutMs`. */
export async function eventually(fn: () => Promise<boolean>, timeoutMs = 5000, everyMs = 50): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      const why = last instanceof Error ? `; last error: ${last.message}` : '';
      throw new Error(`condition not met within ${timeoutMs} ms${why}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
