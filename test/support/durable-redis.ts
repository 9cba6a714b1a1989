/**
 * A private `redis-server` that keeps its data across a crash: append-only file on, fsynced before
 * every reply (`appendfsync always`), so what Redis acknowledged survives `kill()` and `restart()`.
 * For tests that crash Redis under load and then check that nothing acknowledged was lost. (The
 * helper in redis-server.ts runs without persistence: it comes back empty.) Each one has its own
 * free loopback port and temporary directory; the shared Redis on 6379 is never touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from './process.js';

/** A running private Redis whose data survives its own crash. */
export interface DurableRedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Kills the server at once (SIGKILL), like a crash; resolves once it is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory: it reloads its append-only file. */
  restart(): Promise<void>;
  /** Terminates the server and removes its directory. */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
let exitHookInstalled = false;

/** One raw `PING`; resolves true on `+PONG` (false while Redis still loads its data: `-LOADING`). */
function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
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

/** Starts a durable private `redis-server`; resolves once it answers PING (within 10 s). */
export async function startDurableRedis(): Promise<DurableRedisServer> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of children) c.kill('SIGKILL');
    });
  }
  const [port = 0] = await freePorts(1);
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-redis-aof-'));
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--loglevel', 'warning'];
    const proc = spawn('redis-server', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    children.add(proc);
    proc.once('exit', () => children.delete(proc));
    let output = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    let spawnError: Error | undefined;
    proc.once('error', (err) => (spawnError = err));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (spawnError !== undefined) throw new Error(`redis-server could not be started: ${spawnError.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`redis-server on port ${port} exited during start:\n${output}`);
      if (await pingOnce(port)) return;
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server on port ${port} did not answer PING within 10 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    if (proc === undefined) return;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited(proc);
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
    kill,
    async restart() {
      await kill();
      await launch();
    },
    async stop() {
      await kill();
      child = undefined;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
