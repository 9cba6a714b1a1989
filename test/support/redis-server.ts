/**
 * A private `redis-server` for tests that break Redis on purpose (kill it, freeze it, bring it back).
 * Each one runs Debian's `redis-server` from PATH on its own free loopback port and temporary
 * working directory; the shared Redis on 6379 is never touched. By default persistence is off (it
 * restarts empty, like a cache that lost its data); `durable: true` turns on the append-only file,
 * fsynced before every reply, so whatever it acknowledged survives `crash()` and `restart()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A running private Redis. */
export interface TestRedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Terminates the server (SIGTERM, then SIGKILL after 2 s) and removes its directory. */
  stop(): Promise<void>;
  /** Kills the server at once (SIGKILL), like a crash; `restart()` brings it back. */
  kill(): void;
  /** Like `kill()`, and resolves once the process is gone. */
  crash(): Promise<void>;
  /** Stops the process without closing its sockets (SIGSTOP): connections stay open, nothing answers. */
  freeze(): void;
  /** Lets a frozen server run again (SIGCONT). */
  thaw(): void;
  /** Starts the server again on the same port (killing it first if it still runs): empty, or with its data when durable. */
  restart(): Promise<void>;
}

const started = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Makes sure no test Redis outlives the test process, even when a test forgets `stop()`. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of started) child.kill('SIGKILL');
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

/** One raw `PING`; resolves true on `+PONG`. */
function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => {
      done(false);
    });
    socket.once('error', () => {
      done(false);
    });
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Starts a private `redis-server` and resolves once it answers PING (within 10 s).
 * @throws Error with the server's output when it exits or does not answer in time.
 */
export async function startRedisServer(opts: { durable?: boolean } = {}): Promise<TestRedisServer> {
  installExitHook();
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-redis-'));
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const proc = spawn(
      'redis-server',
      [
        ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--loglevel', 'warning'],
        ...(opts.durable === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
      ],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    started.add(proc);
    let output = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    let spawnError: Error | undefined;
    proc.once('error', (err) => (spawnError = err));
    proc.once('exit', () => started.delete(proc));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (spawnError !== undefined) throw new Error(`redis-server could not be started: ${spawnError.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`redis-server on port ${port} exited during start:\n${output}`);
      }
      if (await pingOnce(port)) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server on port ${port} did not answer PING within 10 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const signal = (sig: NodeJS.Signals): void => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill(sig);
  };

  const halt = async (): Promise<void> => {
    const proc = child;
    if (proc === undefined) return;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGCONT'); // a frozen server cannot act on SIGTERM
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 2000);
      await exited(proc);
      clearTimeout(timer);
    }
  };

  try {
    await launch();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      await halt();
      child = undefined;
      await rm(dir, { recursive: true, force: true });
    },
    kill() {
      signal('SIGKILL');
    },
    async crash() {
      const proc = child;
      signal('SIGKILL');
      if (proc !== undefined) await exited(proc);
    },
    freeze() {
      signal('SIGSTOP');
    },
    thaw() {
      signal('SIGCONT');
    },
    async restart() {
      const proc = child;
      if (proc !== undefined) {
        signal('SIGKILL');
        await exited(proc);
      }
      await launch();
    },
  };
}
