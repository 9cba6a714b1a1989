/**
 * Runs the credential-store contract against the memory, file and Redis adapters (Redis twice: with
 * its own connection and on a shared one), plus what only one adapter has: the file's layout, mode,
 * lock and sharing with another process; the Redis key layout, conflict retries and behaviour while
 * the server is down or stuck.
 *
 * The Redis runs use the shared server (PORTCULLIS_TEST_REDIS_URL, default redis://127.0.0.1:6379)
 * with a random key prefix per test and delete their own keys with SCAN MATCH — never FLUSHDB. The
 * fault tests start a private redis-server (test/support/redis-server.ts).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createFileCredentialStore,
  createMemoryCredentialStore,
  createRedisCredentialStore,
  CredentialStoreError,
  parseUserFactors,
} from '../../src/mfa/credential-store.js';
import { NO_FACTORS, type CredentialStore, type UserFactors } from '../../src/mfa/factors.js';
import { REPO_ROOT } from '../support/process.js';
import { startRedisServer, type TestRedisServer } from '../support/redis-server.js';
import { deleteKeys, timed, untilResolved } from '../support/redis-test-kit.js';
import { credentialStoreContract, fullFactors, passkey } from './credential-store.contract.js';

const SHARED_REDIS_URL = process.env.PORTCULLIS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix no other test run uses; contains no glob characters, so SCAN MATCH `<prefix>*` is exact. */
const uniquePrefix = () => `portcullis-test:${randomUUID()}:`;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const withPasskey = (i: number | string) => (f: UserFactors): UserFactors => ({ ...f, webauthn: [...f.webauthn, passkey(i)] });

/** The error `promise` rejected with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

// ---------------------------------------------------------------------------------------------------
// Memory

credentialStoreContract(
  'memory',
  () => {
    const store = createMemoryCredentialStore();
    return Promise.resolve({ store, cleanup: () => store.close() });
  },
  { persistent: false },
);

describe('memory credential store', () => {
  it('reports its kind as memory and shares nothing between instances', async () => {
    const one = createMemoryCredentialStore();
    const two = createMemoryCredentialStore();
    expect(one.kind).toBe('memory');
    await one.update('alice', withPasskey(1));
    expect(await two.get('alice')).toStrictEqual(NO_FACTORS);
    await Promise.all([one.close(), two.close()]);
  });
});

// ---------------------------------------------------------------------------------------------------
// File

const tempDirs = new Set<string>();
afterAll(async () => {
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-mfa-'));
  tempDirs.add(dir);
  return dir;
}

interface FileDoc {
  version: unknown;
  users: Record<string, unknown>;
}

async function readDoc(file: string): Promise<FileDoc> {
  return JSON.parse(await readFile(file, 'utf8')) as FileDoc;
}

credentialStoreContract(
  'file',
  async () => {
    const file = join(await tempDir(), 'state', 'mfa.json');
    const stores: CredentialStore[] = [];
    const open = (): CredentialStore => {
      const store = createFileCredentialStore(file);
      stores.push(store);
      return store;
    };
    return {
      store: open(),
      reopen: open,
      readRaw: async (user) => {
        const doc = await readDoc(file).catch(() => undefined);
        return doc !== undefined && Object.hasOwn(doc.users, user) ? doc.users[user] : undefined;
      },
      writeRaw: async (user, value) => {
        const doc = await readDoc(file).catch((): FileDoc => ({ version: 1, users: {} }));
        Object.defineProperty(doc.users, user, { value, enumerable: true, writable: true, configurable: true });
        await mkdir(dirname(file), { recursive: true });
        await writeFile(file, JSON.stringify(doc));
      },
      cleanup: async () => {
        await Promise.all(stores.map((s) => s.close()));
        await rm(dirname(dirname(file)), { recursive: true, force: true });
      },
    };
  },
  { persistent: true },
);

describe('file credential store', () => {
  const stores = new Set<CredentialStore>();
  const open = (file: string): CredentialStore => {
    const store = createFileCredentialStore(file);
    stores.add(store);
    return store;
  };
  afterEach(async () => {
    await Promise.all([...stores].map((s) => s.close()));
    stores.clear();
  });

  it('reports its kind as file', () => {
    expect(open(join(tmpdir(), 'never-written.json')).kind).toBe('file');
  });

  it('creates the file with mode 0600 and missing directories with mode 0700, leaving no lock or temp file', async () => {
    const base = await tempDir();
    const file = join(base, 'a', 'b', 'mfa.json');
    const store = open(file);
    expect(await store.get('alice')).toStrictEqual(NO_FACTORS);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' }); // reading creates nothing
    await store.update('alice', () => fullFactors());
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(base, 'a'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(base, 'a', 'b'))).mode & 0o777).toBe(0o700);
    expect(await readdir(join(base, 'a', 'b'))).toEqual(['mfa.json']);
  });

  it('makes an existing file mode 0600 when it rewrites it', async () => {
    const file = join(await tempDir(), 'mfa.json');
    await writeFile(file, JSON.stringify({ version: 1, users: {} }), { mode: 0o644 });
    await open(file).update('alice', withPasskey(1));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('writes {version: 1, users: {…}} with one own key per user, __proto__ included', async () => {
    const file = join(await tempDir(), 'mfa.json');
    const store = open(file);
    await store.update('alice@example.com', () => fullFactors());
    await store.update('__proto__', withPasskey(1));
    await store.update('bob', withPasskey(2));
    await store.update('bob', () => NO_FACTORS);
    const doc = await readDoc(file);
    expect(doc.version).toBe(1);
    expect(Object.keys(doc)).toEqual(['version', 'users']);
    expect(Object.keys(doc.users)).toEqual(['alice@example.com', '__proto__']);
    expect(parseUserFactors(JSON.stringify(doc.users['alice@example.com']))).toStrictEqual(fullFactors());
    expect(Object.getPrototypeOf(doc.users)).toBe(Object.prototype);
    expect(await open(file).get('__proto__')).toStrictEqual({ ...NO_FACTORS, webauthn: [passkey(1)] });
  });

  it('does not create the file for an update that stores nothing', async () => {
    const file = join(await tempDir(), 'mfa.json');
    await open(file).update('alice', () => NO_FACTORS);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  const brokenFiles: Record<string, string> = {
    'not JSON': '{"version": 1, "users": {',
    empty: '',
    'another version': JSON.stringify({ version: 2, users: {} }),
    'no version': JSON.stringify({ users: {} }),
    'users as an array': JSON.stringify({ version: 1, users: [] }),
    'an unknown top-level key': JSON.stringify({ version: 1, users: {}, extra: true }),
    'an array': '[]',
  };
  for (const [what, text] of Object.entries(brokenFiles)) {
    it(`rejects every operation on a file that is ${what}, and never overwrites it`, async () => {
      const file = join(await tempDir(), 'mfa.json');
      await writeFile(file, text, { mode: 0o600 });
      const store = open(file);
      const error = await rejection(store.get('alice'));
      expect(error).toBeInstanceOf(CredentialStoreError);
      expect(error).toMatchObject({ reason: 'malformed' });
      expect((error as Error).message).toContain(file);
      await expect(store.update('alice', withPasskey(1))).rejects.toMatchObject({ reason: 'malformed' });
      await expect(store.update('bob', withPasskey(1))).rejects.toMatchObject({ reason: 'malformed' });
      expect(await readFile(file, 'utf8')).toBe(text);
    });
  }

  it('waits for the lock file another writer holds, then updates', async () => {
    const file = join(await tempDir(), 'mfa.json');
    const store = open(file);
    await store.update('alice', withPasskey(1));
    await writeFile(`${file}.lock`, '12345\n');
    let done = false;
    const pending = store.update('alice', withPasskey(2)).then((f) => {
      done = true;
      return f;
    });
    await sleep(300);
    expect(done).toBe(false);
    expect((await readDoc(file)).users.alice).toMatchObject({ webauthn: [{ id: 'cred-1' }] });
    await rm(`${file}.lock`);
    expect((await pending).webauthn.map((c) => c.id)).toEqual(['cred-1', 'cred-2']);
  });

  it('loses no update when another process updates the same file at the same time', async () => {
    const file = join(await tempDir(), 'mfa.json');
    // Both processes pause a little between updates, so that each gets the lock file while the other runs.
    const script = `
      import { createFileCredentialStore } from './src/mfa/credential-store.js';
      const store = createFileCredentialStore(process.env.MFA_FILE);
      for (let i = 0; i < 30; i++) {
        await store.update('alice', (f) => ({ ...f, webauthn: [...f.webauthn, {
          id: 'child-' + i, name: 'child', publicKey: 'AAAA', counter: 0, transports: [], backedUp: false, createdAt: 1, lastUsedAt: undefined,
        }] }));
        if (i === 0) console.log('started');
        await new Promise((r) => setTimeout(r, 10 + Math.random() * 40));
      }
      await store.close();`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      env: { ...process.env, MFA_FILE: file },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (c: string) => {
        if (c.includes('started')) resolve();
      });
      void exited.then(() => reject(new Error(`the child exited before it started: ${stderr}`)));
    });
    const store = open(file);
    for (let i = 0; i < 30; i++) {
      await store.update('alice', withPasskey(`parent-${i}`));
      await sleep(10 + Math.random() * 40);
    }
    expect(await exited).toBe(0);
    expect(stderr).toBe('');
    const ids = (await store.get('alice')).webauthn.map((c) => c.id);
    expect(ids).toHaveLength(60);
    expect(new Set(ids).size).toBe(60);
    // The writes really interleaved: the order switches between the processes more than once.
    const switches = ids.filter((id, i) => i > 0 && id.startsWith('child') !== ids[i - 1]?.startsWith('child')).length;
    expect(switches).toBeGreaterThan(1);
  });
});

// ---------------------------------------------------------------------------------------------------
// Redis (shared server)

describe('Redis credential store', () => {
  const admin = new Redis(SHARED_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const prefixes = new Set<string>();
  const stores = new Set<CredentialStore>();
  const connections = new Set<Redis>();

  /** A store with its own connection to the shared Redis, closed and cleaned up after the test. */
  const urlStore = (keyPrefix: string): CredentialStore => {
    prefixes.add(keyPrefix);
    const store = createRedisCredentialStore({ url: SHARED_REDIS_URL, keyPrefix });
    stores.add(store);
    return store;
  };
  /** A connection the test owns, quit after the test. */
  const connection = (): Redis => {
    const redis = new Redis(SHARED_REDIS_URL, { maxRetriesPerRequest: 1 });
    connections.add(redis);
    return redis;
  };
  /** A store on a connection the test owns. */
  const sharedStore = (redis: Redis, keyPrefix: string): CredentialStore => {
    prefixes.add(keyPrefix);
    const store = createRedisCredentialStore({ redis, keyPrefix });
    stores.add(store);
    return store;
  };
  const raw = (prefix: string) => ({
    readRaw: async (user: string): Promise<unknown> => {
      const value = await admin.get(`${prefix}mfa:${user}`);
      return value === null ? undefined : (JSON.parse(value) as unknown);
    },
    writeRaw: async (user: string, value: unknown): Promise<void> => {
      await admin.set(`${prefix}mfa:${user}`, JSON.stringify(value));
    },
  });

  beforeAll(async () => {
    await admin.connect();
  });
  afterEach(async () => {
    await Promise.all([...stores].map((s) => s.close()));
    stores.clear();
    await Promise.all([...connections].map((c) => c.quit()));
    connections.clear();
    for (const prefix of prefixes) await deleteKeys(admin, prefix);
    prefixes.clear();
  });
  afterAll(async () => {
    await admin.quit();
  });

  credentialStoreContract(
    'redis',
    () => {
      const prefix = uniquePrefix();
      return Promise.resolve({ store: urlStore(prefix), reopen: () => urlStore(prefix), ...raw(prefix), cleanup: () => Promise.resolve() });
    },
    { persistent: true },
  );

  credentialStoreContract(
    'redis on a shared connection',
    () => {
      const prefix = uniquePrefix();
      const open = () => sharedStore(connection(), prefix);
      return Promise.resolve({ store: open(), reopen: open, ...raw(prefix), cleanup: () => Promise.resolve() });
    },
    { persistent: true },
  );

  describe('createRedisCredentialStore', () => {
    it('reports its kind as redis', () => {
      expect(urlStore(uniquePrefix()).kind).toBe('redis');
    });

    it('keeps one key per user, <prefix>mfa:<user>, holding the JSON of the factors, without expiry', async () => {
      const prefix = uniquePrefix();
      const store = urlStore(prefix);
      await store.update('alice@example.com', () => fullFactors());
      await store.update('a*b?[c]', withPasskey(1));
      await store.update('__proto__', withPasskey(2));
      await store.update('gone', withPasskey(3));
      await store.update('gone', () => NO_FACTORS);
      const [, keys] = await admin.scan('0', 'MATCH', `${prefix}*`, 'COUNT', 1000);
      expect(keys.sort()).toEqual([`${prefix}mfa:__proto__`, `${prefix}mfa:a*b?[c]`, `${prefix}mfa:alice@example.com`].sort());
      expect(parseUserFactors(String(await admin.get(`${prefix}mfa:alice@example.com`)))).toStrictEqual(fullFactors());
      expect(await admin.pttl(`${prefix}mfa:alice@example.com`)).toBe(-1);
    });

    it('keeps stores with different prefixes apart', async () => {
      const a = urlStore(uniquePrefix());
      const b = urlStore(uniquePrefix());
      await a.update('alice', withPasskey(1));
      expect(await b.get('alice')).toStrictEqual(NO_FACTORS);
    });

    it('reports a value that is not JSON as malformed, and one of another type with the Redis error', async () => {
      const prefix = uniquePrefix();
      const store = urlStore(prefix);
      await admin.set(`${prefix}mfa:alice`, 'not json');
      await expect(store.get('alice')).rejects.toThrow(/malformed: not JSON/);
      await expect(store.update('alice', withPasskey(1))).rejects.toMatchObject({ reason: 'malformed' });
      expect(await admin.get(`${prefix}mfa:alice`)).toBe('not json');
      await admin.hset(`${prefix}mfa:bob`, 'f', 'v');
      await expect(store.get('bob')).rejects.toThrow(/WRONGTYPE/);
      await expect(store.update('bob', withPasskey(1))).rejects.toThrow(/WRONGTYPE/);
      expect(await admin.type(`${prefix}mfa:bob`)).toBe('hash');
    });

    it('starts over from the new value when another writer changed the user in between', async () => {
      const prefix = uniquePrefix();
      const redis = connection();
      const store = sharedStore(redis, prefix);
      await store.update('alice', withPasskey(0));
      let calls = 0;
      const interference: Promise<unknown>[] = [];
      const result = await store.update('alice', (f) => {
        calls += 1;
        // Sent on the store's own connection before its compare-and-set, so it always lands in between.
        if (calls <= 2) interference.push(redis.set(`${prefix}mfa:alice`, JSON.stringify({ ...f, webauthn: [...f.webauthn, passkey(`other-${calls}`)] })));
        return withPasskey('mine')(f);
      });
      await Promise.all(interference);
      expect(calls).toBe(3);
      const expected = ['cred-0', 'cred-other-1', 'cred-other-2', 'cred-mine'];
      expect(result.webauthn.map((c) => c.id)).toEqual(expected);
      expect((await store.get('alice')).webauthn.map((c) => c.id)).toEqual(expected);
    });

    it('gives up after a bounded number of conflicts, writing nothing', async () => {
      const prefix = uniquePrefix();
      const redis = connection();
      const store = sharedStore(redis, prefix);
      await store.update('alice', withPasskey(0));
      let calls = 0;
      const interference: Promise<unknown>[] = [];
      const started = performance.now();
      const error = await rejection(
        store.update('alice', (f) => {
          calls += 1;
          interference.push(redis.set(`${prefix}mfa:alice`, JSON.stringify({ ...NO_FACTORS, webauthn: [passkey(`other-${calls}`)] })));
          return withPasskey('mine')(f);
        }),
      );
      await Promise.all(interference);
      expect(error).toBeInstanceOf(CredentialStoreError);
      expect(error).toMatchObject({ reason: 'contention' });
      expect(calls).toBeGreaterThanOrEqual(3);
      expect(calls).toBeLessThanOrEqual(10);
      expect(performance.now() - started).toBeLessThan(2000);
      expect((await store.get('alice')).webauthn.map((c) => c.id)).toEqual([`cred-other-${calls}`]);
    });

    it('leaves a shared connection open when it closes', async () => {
      const redis = connection();
      const store = sharedStore(redis, uniquePrefix());
      await store.update('alice', withPasskey(1));
      await store.close();
      expect(redis.status).toBe('ready');
      expect(await redis.ping()).toBe('PONG');
      await expect(store.get('alice')).rejects.toMatchObject({ reason: 'closed' });
    });

    it('ends its own connection when it closes', async () => {
      const name = `portcullis-mfa`;
      const prefix = uniquePrefix();
      const store = urlStore(prefix);
      await store.get('alice');
      const countOurs = async () => {
        const list = await admin.client('LIST');
        return String(list)
          .split('\n')
          .filter((line) => line.includes(`name=${name} `)).length;
      };
      const before = await countOurs();
      expect(before).toBeGreaterThanOrEqual(1);
      await store.close();
      await untilResolved(async () => {
        if ((await countOurs()) !== before - 1) throw new Error('still connected');
      }, 2000);
    });
  });
});

// ---------------------------------------------------------------------------------------------------
// Redis failures (private server)

describe('Redis credential store when Redis fails', () => {
  let server: TestRedisServer;
  let store: CredentialStore | undefined;

  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });
  afterAll(async () => {
    await server.stop();
  });

  it('rejects fast while Redis is down and works again after it restarts, without being recreated', async () => {
    store = createRedisCredentialStore({ url: server.url, keyPrefix: 'fault:' });
    await store.update('alice', withPasskey(1));
    server.kill();
    await sleep(100); // the client notices the closed socket; operations must not wait for reconnects
    for (const op of [store.get('alice'), store.update('alice', withPasskey(2))]) {
      const { ms, rejected } = await timed(op);
      expect(rejected).toBe(true);
      expect(ms).toBeLessThan(2000);
    }
    await server.restart();
    const live = store;
    expect(await untilResolved(() => live.get('alice'), 5000)).toStrictEqual(NO_FACTORS); // restarted empty
    expect((await live.update('alice', withPasskey(3))).webauthn).toHaveLength(1); // the script is loaded again
  });

  it('rejects within the command timeout when Redis stops answering but keeps the connection', async () => {
    store = createRedisCredentialStore({ url: server.url, keyPrefix: 'frozen:', commandTimeoutMs: 300 });
    await store.update('alice', withPasskey(1));
    server.freeze();
    try {
      for (const op of [store.get('alice'), store.update('alice', withPasskey(2))]) {
        const { ms, rejected } = await timed(op);
        expect(rejected).toBe(true);
        expect(ms).toBeLessThan(1000);
      }
    } finally {
      server.thaw();
    }
    const live = store;
    await untilResolved(() => live.get('alice'), 5000);
    expect((await live.get('alice')).webauthn.map((c) => c.id)).toEqual(['cred-1']);
  });

  it('rejects within about the command timeout when Redis was never reachable', async () => {
    const port = server.port;
    await server.stop(); // nothing listens on this port now
    try {
      store = createRedisCredentialStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 'never:' });
      for (const op of [store.get('alice'), store.update('alice', withPasskey(1))]) {
        const { ms, rejected } = await timed(op);
        expect(rejected).toBe(true);
        expect(ms).toBeLessThan(2000);
      }
    } finally {
      server = await startRedisServer();
    }
  });
});
