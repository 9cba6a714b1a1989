/**
 * deploy/redis/ as shipped: a private redis-server started with deploy/redis/redis.conf and the users
 * of deploy/redis/users.acl (passwords filled in, as the README describes). The audit user can do
 * everything the Redis audit sink needs and nothing that could rewrite history; the store user can
 * run the store (Lua scripts included) but cannot reach the audit streams, not even from a script.
 */
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisSink } from '../../src/audit/redis-sink.js';
import type { AuditSink } from '../../src/audit/sink.js';
import { createRedisStore } from '../../src/store/index.js';
import { createRedisCredentialStore } from '../../src/mfa/credential-store.js';
import { NO_FACTORS } from '../../src/mfa/factors.js';

const DEPLOY = join(import.meta.dirname, '..', '..', 'deploy', 'redis');
const STREAM = 'portcullis:audit';
const STORE_PREFIX = 'portcullis:store:';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

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

/** Runs redis-server with deploy/redis/redis.conf, overriding only where it listens and keeps files. */
function launch(dir: string, port: number, aclFile: string): { proc: ChildProcessByStdio<null, Readable, Readable>; output: () => string } {
  const proc = spawn(
    'redis-server',
    [join(DEPLOY, 'redis.conf'), '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--aclfile', aclFile, '--save', ''],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
  return { proc, output: () => output };
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

const passwords = { store: randomBytes(16).toString('hex'), audit: randomBytes(16).toString('hex'), ops: randomBytes(16).toString('hex') };
let dir: string;
let port: number;
let server: ChildProcess;
let ops: Redis;
let audit: Redis;
let store: Redis;

const url = (user: string, password: string): string => `redis://${user}:${password}@127.0.0.1:${port}`;

/** A plain client logged in as `user`. */
async function client(user: string, password: string): Promise<Redis> {
  const redis = new Redis(url(user, password), { maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true });
  redis.on('error', () => undefined); // connect() rejects with the same error
  await redis.connect();
  return redis;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-redis-acl-'));
  port = await freePort();
  const template = await readFile(join(DEPLOY, 'users.acl'), 'utf8');
  const rendered = template
    .replace('STORE_PASSWORD_SHA256', sha256(passwords.store))
    .replace('AUDIT_PASSWORD_SHA256', sha256(passwords.audit))
    .replace('OPS_PASSWORD_SHA256', sha256(passwords.ops));
  await writeFile(join(dir, 'users.acl'), rendered, { mode: 0o600 });
  const started = launch(dir, port, join(dir, 'users.acl'));
  server = started.proc;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      ops = await client('ops', passwords.ops);
      await ops.ping();
      break;
    } catch (err) {
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start: ${String(err)}\n${started.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  [audit, store] = await Promise.all([client('portcullis-audit', passwords.audit), client('portcullis-store', passwords.store)]);
});

afterAll(async () => {
  for (const c of [audit, store, ops]) c.disconnect();
  if (server.exitCode === null) {
    server.kill('SIGTERM');
    await exited(server);
  }
  await rm(dir, { recursive: true, force: true });
});

describe('deploy/redis', () => {
  it('starts with redis.conf: append-only file on, noeviction, the ACL file loaded', async () => {
    const config = (await ops.config('GET', '*')) as string[];
    const get = (name: string) => config[config.indexOf(name) + 1];
    expect(get('appendonly')).toBe('yes');
    expect(get('appendfsync')).toBe('everysec');
    expect(get('maxmemory-policy')).toBe('noeviction');
  });

  it('turns the default user off', async () => {
    const anonymous = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true, enableReadyCheck: false });
    try {
      await anonymous.connect();
      await expect(anonymous.get('portcullis:store:x')).rejects.toThrow(/NOAUTH/);
    } finally {
      anonymous.disconnect();
    }
  });

  it('refuses to start while the password placeholders are not filled in', async () => {
    const { proc, output } = launch(dir, await freePort(), join(DEPLOY, 'users.acl'));
    expect(await exited(proc)).not.toBe(0);
    expect(output()).toMatch(/password hash/);
  });

  describe('portcullis-audit', () => {
    it('runs the Redis audit sink: append, re-append, head, read, logs, checkpoints, ping', async () => {
      const sink: AuditSink = createRedisSink({ url: url('portcullis-audit', passwords.audit), stream: STREAM });
      try {
        const batch = Array.from({ length: 50 }, (_, seq) => ({ seq, bytes: Buffer.from(`{"seq":${seq},"v":1}`) }));
        await sink.append('gw-0', batch);
        await sink.append('gw-0', batch.slice(40)); // a re-send: verified with XRANGE, not stored twice
        await Promise.all(Array.from({ length: 20 }, (_, i) => sink.append('gw-0', [{ seq: 50 + i, bytes: Buffer.from(`{"seq":${50 + i}}`) }])));
        const head = await sink.head('gw-0');
        expect(head.size).toBe(70);
        expect((await sink.read('gw-0', 45, 10)).map((r) => r.seq)).toEqual([45, 46, 47, 48, 49, 50, 51, 52, 53, 54]);
        await sink.appendCheckpoint('gw-0', 'portcullis.example/audit/gw-0\n70\nabc=\n\n— k sig\n');
        expect(await sink.readCheckpoints('gw-0')).toEqual(['portcullis.example/audit/gw-0\n70\nabc=\n\n— k sig\n']);
        expect(await sink.logs()).toEqual(['gw-0']);
        expect(await sink.ping()).toBe(true);
        expect(await ops.xlen(`${STREAM}:{gw-0}:records`)).toBe(70);
      } finally {
        await sink.close();
      }
    });

    it('still appends, as MULTI/EXEC batches with one warning, for an audit user from before the append script', async () => {
      const password = randomBytes(16).toString('hex');
      await ops.call('acl', 'setuser', 'portcullis-audit-v1', 'on', `#${sha256(password)}`, 'resetkeys', `~${STREAM}:*`, 'resetchannels', '-@all',
        '+ping', '+info', '+client|setname', '+select', '+quit', '+multi', '+exec', '+xadd', '+xrange', '+xrevrange', '+scan');
      const warnings: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
      const sink = createRedisSink({ url: url('portcullis-audit-v1', password), stream: STREAM, logger });
      try {
        const batch = Array.from({ length: 30 }, (_, seq) => ({ seq, bytes: Buffer.from(`{"seq":${seq},"v":1}`) }));
        await sink.append('gw-v1', batch.slice(0, 20));
        await sink.append('gw-v1', batch.slice(10)); // a re-send overlapping what is stored
        expect((await sink.head('gw-v1')).size).toBe(30);
        expect((await sink.read('gw-v1', 0, 100)).map((r) => r.bytes.toString())).toEqual(batch.map((r) => r.bytes.toString()));
        expect(warnings.filter((w) => w.includes('MULTI/EXEC'))).toHaveLength(1);
      } finally {
        await sink.close();
        await ops.call('acl', 'deluser', 'portcullis-audit-v1');
      }
    });

    it('does not take a refusal of its keys for a refusal of scripts: the append fails and nothing falls back', async () => {
      // May run the script and read the streams (so the head is read), but not write them.
      const password = randomBytes(16).toString('hex');
      await ops.call('acl', 'setuser', 'portcullis-audit-ro', 'on', `#${sha256(password)}`, 'resetkeys', `%R~${STREAM}:*`, 'resetchannels', '-@all',
        '+ping', '+info', '+client|setname', '+select', '+quit', '+evalsha', '+eval', '+xadd', '+xrange', '+xrevrange', '+scan');
      const warnings: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
      const sink = createRedisSink({ url: url('portcullis-audit-ro', password), stream: STREAM, logger });
      try {
        expect((await sink.head('gw-ro')).size).toBe(0);
        await expect(sink.append('gw-ro', [{ seq: 0, bytes: Buffer.from('{"v":1}') }])).rejects.toThrow(/NOPERM|permission/i);
        expect(warnings.filter((w) => w.includes('MULTI/EXEC'))).toEqual([]);
        expect(await ops.exists(`${STREAM}:{gw-ro}:records`)).toBe(0);
      } finally {
        await sink.close();
        await ops.call('acl', 'deluser', 'portcullis-audit-ro');
      }
    });

    it('cannot delete, trim, rename or overwrite anything, directly or from a script, nor reach other keys or the server config', async () => {
      const key = `${STREAM}:{gw-0}:records`;
      await ops.xadd(key, '*', 'r', '{}').catch(() => undefined); // make sure the stream exists
      const refused: [string, ...(string | number)[]][] = [
        ['xdel', key, '0-1'],
        ['xtrim', key, 'MAXLEN', 0],
        ['xsetid', key, '0-1'],
        ['del', key],
        ['unlink', key],
        ['rename', key, `${STREAM}:{gw-0}:moved`],
        ['set', key, 'x'],
        ['function', 'flush'],
        ['flushall'],
        ['flushdb'],
        ['config', 'get', '*'],
        ['config', 'set', 'appendonly', 'no'],
        ['keys', '*'],
        ['acl', 'list'],
        ['get', `${STORE_PREFIX}session:1`],
        ['xadd', `${STORE_PREFIX}x`, '*', 'r', '{}'],
      ];
      for (const [command, ...args] of refused) {
        await expect(audit.call(command, ...args), command).rejects.toThrow(/NOPERM/);
      }
      // It may run scripts (the sink's append script), but a script runs with its caller's ACL.
      const scripted: [string, RegExp][] = [
        ["return redis.call('DEL', KEYS[1])", /can't run this command/],
        ["return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)", /can't run this command/],
        ["return redis.call('XDEL', KEYS[1], '0-1')", /can't run this command/],
        ["return redis.call('XSETID', KEYS[1], '0-1')", /can't run this command/],
        ["return redis.call('CONFIG', 'SET', 'appendonly', 'no')", /can't run this command|not allowed from script/],
        ["return redis.call('SCRIPT', 'FLUSH')", /can't run this command|not allowed from script/],
      ];
      for (const [lua, error] of scripted) {
        await expect(audit.call('eval', lua, 1, key), lua).rejects.toThrow(error);
      }
      await expect(audit.call('eval', "return redis.call('XADD', KEYS[1], '*', 'r', '{}')", 1, `${STORE_PREFIX}x`)).rejects.toThrow(/NOPERM/);
      await expect(audit.call('eval', "return redis.call('GET', KEYS[1])", 1, `${STORE_PREFIX}session:1`)).rejects.toThrow(/NOPERM/);
      expect(await ops.exists(key)).toBe(1);
    });
  });

  describe('portcullis-store', () => {
    it('runs the Redis store, Lua scripts included', async () => {
      const s = createRedisStore({ url: url('portcullis-store', passwords.store), keyPrefix: STORE_PREFIX });
      try {
        await s.set('session:1', 'v', 60_000);
        expect(await s.get('session:1')).toBe('v');
        expect(await s.setIfAbsent('session:1', 'w', 60_000)).toBe(false);
        expect(await s.expire('session:1', 30_000)).toBe(true);
        expect(await s.take('session:1')).toBe('v');
        expect(await s.increment('rate:alice', 60_000)).toBe(1);
        expect(await s.increment('rate:alice', 60_000)).toBe(2);
        await s.addToSet('user:alice', 'session:2', 60_000);
        expect(await s.members('user:alice')).toEqual(['session:2']);
        await s.removeFromSet('user:alice', 'session:2');
        await s.set('k', 'v', 60_000);
        expect(await s.delete('k')).toBe(true);
        expect(await s.ping()).toBe(true);
      } finally {
        await s.close();
      }
    });

    it('runs the MFA credential store (compare-and-set script) under the same prefix', async () => {
      const c = createRedisCredentialStore({ url: url('portcullis-store', passwords.store), keyPrefix: STORE_PREFIX });
      try {
        const handle = randomBytes(32).toString('base64url');
        await c.update('alice@example.com', (f) => ({ ...f, userHandle: handle }));
        expect((await c.get('alice@example.com')).userHandle).toBe(handle);
        await c.update('alice@example.com', () => NO_FACTORS);
        expect((await c.get('alice@example.com')).userHandle).toBeUndefined();
      } finally {
        await c.close();
      }
    });

    it('cannot reach the audit streams, not even from a Lua script', async () => {
      const key = `${STREAM}:{gw-0}:records`;
      for (const [command, ...args] of [
        ['xrange', key, '-', '+'],
        ['xadd', key, '*', 'r', '{}'],
        ['del', key],
        ['flushall'],
        ['config', 'get', '*'],
      ] as [string, ...string[]][]) {
        await expect(store.call(command, ...args), command).rejects.toThrow(/NOPERM/);
      }
      // A script runs with its caller's permissions: declared or not, the audit key is out of reach.
      await expect(store.eval("return redis.call('DEL', KEYS[1])", 1, key)).rejects.toThrow(/NOPERM|can't access/);
      await expect(store.eval(`return redis.call('DEL', '${key}')`, 0)).rejects.toThrow(/NOPERM|can't access/);
      expect(await ops.exists(key)).toBe(1);
    });
  });
});
