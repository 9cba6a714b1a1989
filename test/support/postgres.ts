/**
 * Real PostgreSQL for tests: the machine's server (127.0.0.1:5432, trust, database `test`, superuser
 * `postgres`), a private cluster of its own for tests that need password authentication upstream
 * (the machine's server trusts everyone, so it never asks for SCRAM or md5), `psql` as a child
 * process, and a counting TCP relay that tells how many connections reached the server.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePorts } from './process.js';

/** The machine's PostgreSQL (started before the session; `scripts/ensure-deps.sh` starts it if not). */
export const LOCAL_PG = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' } as const;

/** Runs SQL on a server directly (not through the gateway), as its superuser. */
export async function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = [], target: { host: string; port: number; user: string; database: string } = LOCAL_PG): Promise<R[]> {
  const client = new pg.Client({ ...target, password: '' });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** A finished psql run. */
export interface PsqlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * A psql child process (`-X`: no ~/.psqlrc; `-v ON_ERROR_STOP=1`), fed `input` on stdin when given.
 * With `stream: true` its stdout is left to the caller (nothing is collected).
 */
export function startPsql(uri: string, args: readonly string[], input?: string, opts: { stream?: boolean } = {}): { child: ChildProcess; done: Promise<PsqlResult> } {
  const child = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...args, uri], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
  let stdout = '';
  let stderr = '';
  if (opts.stream !== true) child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdin.end(input ?? '');
  const done = new Promise<PsqlResult>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

/** Runs psql to completion (killed after `timeoutMs`). */
export async function psql(uri: string, args: readonly string[], input?: string, timeoutMs = 20_000): Promise<PsqlResult> {
  const { child, done } = startPsql(uri, args, input);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const result = await done;
  clearTimeout(timer);
  return result;
}

/** A TCP relay in front of a server that counts the connections it passed on. */
export interface CountingRelay {
  readonly port: number;
  connections(): number;
  close(): Promise<void>;
}

/** Starts a counting relay to `target` on a free loopback port. */
export async function startCountingRelay(target: { host: string; port: number }): Promise<CountingRelay> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    count += 1;
    const outbound = net.connect(target.port, target.host);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A role of a private cluster, and how the server makes it authenticate over TCP. */
export interface ClusterRole {
  readonly name: string;
  readonly password: string;
  readonly auth: 'scram-sha-256' | 'md5';
}

/** A private PostgreSQL cluster (own data directory, port and pg_hba.conf). */
export interface PrivateCluster {
  readonly port: number;
  stop(): Promise<void>;
}

function serverBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  const v = versions[0];
  if (v === undefined) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install -y postgresql');
  return join(root, v, 'bin');
}

/**
 * Starts a private cluster on a free port: `initdb` (as the `postgres` OS user when running as root,
 * since the server refuses to run as root), an hba file that demands each role's method over TCP
 * and trusts everyone else, and the roles created with the matching `password_encryption`.
 */
export async function startPrivateCluster(roles: readonly ClusterRole[]): Promise<PrivateCluster> {
  const bin = serverBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pg-'));
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }) : undefined;
  const ownerGroup = asRoot ? spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }) : undefined;
  if (asRoot) {
    chownSync(dir, Number(owner?.stdout.trim()), Number(ownerGroup?.stdout.trim()));
    chmodSync(dir, 0o700);
  }
  const run = (cmd: string, args: readonly string[]) => (asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]) as [string, string[]];
  const data = join(dir, 'data');
  const [initCmd, initArgs] = run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
  const init = spawnSync(initCmd, initArgs, { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const hba = ['local all all trust', ...roles.map((r) => `host all ${r.name} 127.0.0.1/32 ${r.auth}`), 'host all all 127.0.0.1/32 trust'].join('\n');
  writeFileSync(join(data, 'pg_hba.conf'), `${hba}\n`);
  if (asRoot) chownSync(join(data, 'pg_hba.conf'), Number(owner?.stdout.trim()), Number(ownerGroup?.stdout.trim()));
  const [port = 0] = await freePorts(1);
  const [cmd, args] = run(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'shared_buffers=16MB', '-c', 'max_connections=20']);
  const server = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const exited = new Promise<void>((resolve) => server.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`private PostgreSQL did not start:\n${log}`)), 20_000);
    const onData = (c: Buffer) => {
      log += c.toString('utf8');
      if (log.includes('ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    };
    server.stdout.on('data', onData);
    server.stderr.on('data', onData);
    server.once('close', () => reject(new Error(`private PostgreSQL exited:\n${log}`)));
  });
  const admin = { host: '127.0.0.1', port, user: 'postgres', database: 'postgres' };
  for (const r of roles) {
    const client = new pg.Client({ ...admin, password: '' });
    await client.connect();
    try {
      await client.query(`SET password_encryption = '${r.auth}'`);
      await client.query(`CREATE ROLE ${r.name} LOGIN PASSWORD '${r.password.replaceAll("'", "''")}'`);
    } finally {
      await client.end();
    }
  }
  return {
    port,
    async stop() {
      // runuser does not pass SIGINT on: signal the postmaster itself (fast shutdown).
      const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (Number.isSafeInteger(pid) && pid > 0) process.kill(pid, 'SIGINT');
      else server.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A self-signed certificate for 127.0.0.1 / localhost (openssl), in a temp directory. */
export function selfSignedCertificate(): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cert-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { cert, key };
}
