/**
 * Runs the store contract against both adapters, plus what only Redis has: prefixes, sharing between
 * processes, and behaviour while the server is down or stuck.
 *
 * The Redis runs use the shared server (PORTCULLIS_TEST_REDIS_URL, default redis://127.0.0.1:6379)
 * with a random key prefix per test and delete their own keys with SCAN MATCH — never FLUSHDB. The
 * fault tests start a private redis-server (test/support/redis-server.ts).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryStore, createRedisStore, createStore, type Store } from '../../src/store/index.js';
import { startRedisServer, type TestRedisServer } from '../support/redis-server.js';
import { deleteKeys, timed, untilResolved } from '../support/redis-test-kit.js';
import { storeContract } from './store.contract.js';

const SHARED_REDIS_URL = process.env.PORTCULLIS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix no other test run uses; contains no glob characters, so SCAN MATCH `<prefix>*` is exact. */
const uniquePrefix = () => `portcullis-test:${randomUUID()}:`;




storeContract('memory', () => {
  let t = 0;
  const store = createMemoryStore({ now: () => t });
  return Promise.resolve({
    store,
    advance: (ms: number) => {
      t += ms;
    },
    cleanup: () => store.close(),
  });
});

describe('Redis store', () => {
  const admin = new Redis(SHARED_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const prefixes = new Set<string>();
  const stores = new Set<Store>();

  /** A store on the shared Redis, closed and cleaned up after the test. */
  const sharedStore = (keyPrefix: string): Store => {
    prefixes.add(keyPrefix);
    const store = createRedisStore({ url: SHARED_REDIS_URL, keyPrefix });
    stores.add(store);
    return store;
  };

  beforeAll(async () => {
    await admin.connect();
  });
  afterEach(async () => {
    await Promise.all([...stores].map((s) => s.close()));
    stores.clear();
    for (const prefix of prefixes) await deleteKeys(admin, prefix);
    prefixes.clear();
  });
  afterAll(async () => {
    await admin.quit();
  });

  storeContract('redis', () => Promise.resolve({ store: sharedStore(uniquePrefix()), cleanup: () => Promise.resolve() }));

  describe('createRedisStore', () => {
    it('puts every key under its prefix', async () => {
      const prefix = uniquePrefix();
      const store = sharedStore(prefix);
      await store.set('session:1', 'v', 10_000);
      await store.increment('rate:1', 10_000);
      await store.addToSet('user:alice', 'session:1', 10_000);
      const [, keys] = await admin.scan('0', 'MATCH', `${prefix}*`, 'COUNT', 1000);
      expect(keys.sort()).toEqual([`${prefix}rate:1`, `${prefix}session:1`, `${prefix}user:alice`]);
      expect(await admin.pttl(`${prefix}session:1`)).toBeGreaterThan(9_000);
    });

    it('keeps stores with different prefixes apart', async () => {
      const a = sharedStore(uniquePrefix());
      const b = sharedStore(uniquePrefix());
      await a.set('k', 'from-a', 10_000);
      await a.addToSet('s', 'm', 10_000);
      expect(await b.get('k')).toBeUndefined();
      expect(await b.members('s')).toEqual([]);
      expect(await b.setIfAbsent('k', 'from-b', 10_000)).toBe(true);
      expect(await a.get('k')).toBe('from-a');
      expect(await b.take('k')).toBe('from-b');
      expect(await a.get('k')).toBe('from-a');
    });

    it('shares values between two stores with the same prefix (several gateway processes)', async () => {
      const prefix = uniquePrefix();
      const one = sharedStore(prefix);
      const two = sharedStore(prefix);
      await one.set('session:abc', '{"user":"alice"}', 10_000);
      expect(await two.get('session:abc')).toBe('{"user":"alice"}');
      await one.set('code', 'single-use', 10_000);
      const taken = await Promise.all([one.take('code'), two.take('code')]);
      expect(taken.filter((v) => v !== undefined)).toEqual(['single-use']);
      expect(await one.increment('rate', 10_000)).toBe(1);
      expect(await two.increment('rate', 10_000)).toBe(2);
      await two.addToSet('user:alice', 's1', 10_000);
      expect(await one.members('user:alice')).toEqual(['s1']);
    });

    it('reports its kind as redis', () => {
      expect(sharedStore(uniquePrefix()).kind).toBe('redis');
    });
  });

  describe('createStore', () => {
    it('builds a memory store by default and a Redis store when configured', async () => {
      const memory = createStore({ type: 'memory' });
      expect(memory.kind).toBe('memory');
      await memory.close();
      const prefix = uniquePrefix();
      prefixes.add(prefix);
      const redis = createStore({ type: 'redis', redis: { url: SHARED_REDIS_URL, key_prefix: prefix } });
      stores.add(redis);
      expect(redis.kind).toBe('redis');
      await redis.set('k', 'v', 10_000);
      expect(await admin.get(`${prefix}k`)).toBe('v');
    });

    it('refuses a redis type without a redis block', () => {
      expect(() => createStore({ type: 'redis' })).toThrow(/store\.redis/);
    });
  });
});

describe('Redis store when Redis fails', () => {
  let server: TestRedisServer;
  let store: Store | undefined;

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

  it('fails fast while Redis is down and works again after it restarts, without being recreated', async () => {
    const logs: { level: number; msg: string; component?: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as (typeof logs)[number]) });
    store = createRedisStore({ url: server.url, keyPrefix: 'fault:', logger });
    await store.set('before', 'v', 60_000);
    expect(await store.ping()).toBe(true);

    server.kill();
    // Give the client a moment to notice the closed socket; operations must not wait for reconnects.
    await new Promise((r) => setTimeout(r, 100));
    for (const op of [store.get('before'), store.set('k', 'v', 60_000), store.take('k'), store.increment('n', 60_000)]) {
      const { ms, rejected } = await timed(op);
      expect(rejected).toBe(true);
      expect(ms).toBeLessThan(2000);
    }
    const ping = await timed(store.ping());
    expect(await store.ping()).toBe(false);
    expect(ping.ms).toBeLessThan(2000);

    await server.restart();
    const live = store;
    await untilResolved(() => live.set('after', 'v', 60_000), 5000);
    expect(await live.get('after')).toBe('v');
    expect(await live.get('before')).toBeUndefined(); // the restarted server is empty (no persistence)
    expect(await live.increment('n', 60_000)).toBe(1); // scripts are loaded again after the restart
    expect(await live.ping()).toBe(true);

    // One warning for the outage however many reconnects failed, one line when it is back.
    const warnings = logs.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.component).toBe('store');
    expect(logs.filter((l) => l.msg === 'redis store reconnected')).toHaveLength(1);
  });

  it('rejects within the command timeout when Redis stops answering but keeps the connection', async () => {
    store = createRedisStore({ url: server.url, keyPrefix: 'frozen:', commandTimeoutMs: 300 });
    await store.set('k', 'v', 60_000);
    server.freeze();
    try {
      const get = await timed(store.get('k'));
      expect(get.rejected).toBe(true);
      expect(get.ms).toBeLessThan(1000);
      const ping = await timed(store.ping());
      expect(await store.ping()).toBe(false);
      expect(ping.ms).toBeLessThan(1000);
    } finally {
      server.thaw();
    }
    const live = store;
    await untilResolved(() => live.get('k'), 5000);
    expect(await live.get('k')).toBe('v');
  });

  it('rejects within about the command timeout when Redis was never reachable', async () => {
    const port = server.port;
    await server.stop(); // nothing listens on this port now
    try {
      store = createRedisStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 'never:' });
      const get = await timed(store.get('k'));
      expect(get.rejected).toBe(true);
      expect(get.ms).toBeLessThan(2000);
      expect(await store.ping()).toBe(false);
    } finally {
      server = await startRedisServer();
    }
  });
});
