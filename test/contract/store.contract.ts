/**
 * The contract every {@link Store} adapter passes (the Pomerium `storagetest.TestBackend` idea): one
 * suite, run against each adapter by test/contract/store.test.ts.
 *
 * Time: a harness with `advance` moves the adapter's clock and the suite never sleeps; without it the
 * suite waits in real time, so its TTLs are short (hundreds of ms) with margins of 100 ms or more.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/index.js';

/** One fresh, empty store for one test. */
export interface StoreHarness {
  readonly store: Store;
  /** Moves the store's clock forward by `ms`; absent when the store runs on real time. */
  readonly advance?: (ms: number) => void | Promise<void>;
  /** Releases the store (it may already be closed) and removes whatever the test left behind. */
  cleanup(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Defines the contract suite for one adapter; `make` is called before every test. */
export function storeContract(name: string, make: () => Promise<StoreHarness>): void {
  describe(`Store (${name})`, () => {
    let harness: StoreHarness;
    let store: Store;

    beforeEach(async () => {
      harness = await make();
      store = harness.store;
    });
    afterEach(async () => {
      await harness.cleanup();
    });

    /** Lets `ms` pass for the store: on its injected clock when it has one, else in real time. */
    const elapse = async (ms: number): Promise<void> => {
      if (harness.advance === undefined) await sleep(ms);
      else await harness.advance(ms);
    };

    describe('get / set', () => {
      it('returns undefined for a key that was never set', async () => {
        expect(await store.get('missing')).toBeUndefined();
      });

      it('returns what was set, including the empty string and non-ASCII text', async () => {
        await store.set('a', '{"user":"alice"}', 10_000);
        await store.set('empty', '', 10_000);
        await store.set('uni', 'Grüße — 🔐', 10_000);
        expect(await store.get('a')).toBe('{"user":"alice"}');
        expect(await store.get('empty')).toBe('');
        expect(await store.get('uni')).toBe('Grüße — 🔐');
      });

      it('replaces the value and the time to live on overwrite', async () => {
        await store.set('a', 'one', 150);
        await store.set('a', 'two', 10_000);
        await elapse(300);
        expect(await store.get('a')).toBe('two');
      });

      it('treats keys as opaque strings (glob characters are not patterns)', async () => {
        await store.set('k*', 'star', 10_000);
        await store.set('k?', 'question', 10_000);
        await store.set('k[1]', 'bracket', 10_000);
        expect(await store.get('k*')).toBe('star');
        expect(await store.get('k?')).toBe('question');
        expect(await store.get('k[1]')).toBe('bracket');
        expect(await store.get('k1')).toBeUndefined();
      });

      it('forgets a value once its time to live has passed', async () => {
        await store.set('a', 'v', 150);
        await elapse(50);
        expect(await store.get('a')).toBe('v');
        await elapse(200);
        expect(await store.get('a')).toBeUndefined();
      });

      it('rejects a time to live that is zero, negative or not finite', async () => {
        await expect(store.set('a', 'v', 0)).rejects.toThrow(RangeError);
        await expect(store.set('a', 'v', -5)).rejects.toThrow(RangeError);
        await expect(store.set('a', 'v', Number.NaN)).rejects.toThrow(RangeError);
        await expect(store.setIfAbsent('a', 'v', Number.POSITIVE_INFINITY)).rejects.toThrow(RangeError);
        await expect(store.expire('a', 0)).rejects.toThrow(RangeError);
        await expect(store.increment('a', -1)).rejects.toThrow(RangeError);
        await expect(store.addToSet('a', 'm', 0)).rejects.toThrow(RangeError);
        expect(await store.get('a')).toBeUndefined();
      });
    });

    describe('setIfAbsent', () => {
      it('sets an absent key and leaves a present one alone', async () => {
        expect(await store.setIfAbsent('a', 'first', 10_000)).toBe(true);
        expect(await store.setIfAbsent('a', 'second', 10_000)).toBe(false);
        expect(await store.get('a')).toBe('first');
      });

      it('sets a key again after it was deleted or expired', async () => {
        await store.set('deleted', 'old', 10_000);
        await store.delete('deleted');
        expect(await store.setIfAbsent('deleted', 'new', 10_000)).toBe(true);
        expect(await store.get('deleted')).toBe('new');

        await store.set('expired', 'old', 150);
        await elapse(300);
        expect(await store.setIfAbsent('expired', 'new', 10_000)).toBe(true);
        expect(await store.get('expired')).toBe('new');
      });

      it('gives the value a time to live', async () => {
        expect(await store.setIfAbsent('a', 'v', 150)).toBe(true);
        await elapse(300);
        expect(await store.get('a')).toBeUndefined();
      });

      it('lets exactly one of 20 concurrent callers win', async () => {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.setIfAbsent('race', `caller-${i}`, 10_000)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await store.get('race')).toBe(`caller-${results.indexOf(true)}`);
      });
    });

    describe('delete', () => {
      it('returns true when the key existed and false afterwards', async () => {
        await store.set('a', 'v', 10_000);
        expect(await store.delete('a')).toBe(true);
        expect(await store.get('a')).toBeUndefined();
        expect(await store.delete('a')).toBe(false);
      });

      it('returns false for a key that never existed or has expired', async () => {
        expect(await store.delete('missing')).toBe(false);
        await store.set('a', 'v', 150);
        await elapse(300);
        expect(await store.delete('a')).toBe(false);
      });

      it('deletes sets and counters too', async () => {
        await store.addToSet('s', 'm', 10_000);
        await store.increment('c', 10_000);
        expect(await store.delete('s')).toBe(true);
        expect(await store.delete('c')).toBe(true);
        expect(await store.members('s')).toEqual([]);
        expect(await store.increment('c', 10_000)).toBe(1);
      });
    });

    describe('take', () => {
      it('returns the value once and removes it', async () => {
        await store.set('code', 'v', 10_000);
        expect(await store.take('code')).toBe('v');
        expect(await store.take('code')).toBeUndefined();
        expect(await store.get('code')).toBeUndefined();
      });

      it('returns undefined for an absent or expired key', async () => {
        expect(await store.take('missing')).toBeUndefined();
        await store.set('a', 'v', 150);
        await elapse(300);
        expect(await store.take('a')).toBeUndefined();
      });

      it('is single-use under 50 concurrent takers: exactly one gets the value', async () => {
        await store.set('state', 'the-value', 10_000);
        const results = await Promise.all(Array.from({ length: 50 }, () => store.take('state')));
        expect(results.filter((r) => r !== undefined)).toEqual(['the-value']);
      });
    });

    describe('expire', () => {
      it('returns false for an absent or expired key', async () => {
        expect(await store.expire('missing', 10_000)).toBe(false);
        await store.set('a', 'v', 150);
        await elapse(300);
        expect(await store.expire('a', 10_000)).toBe(false);
        expect(await store.get('a')).toBeUndefined();
      });

      it('extends a time to live', async () => {
        await store.set('a', 'v', 150);
        expect(await store.expire('a', 10_000)).toBe(true);
        await elapse(300);
        expect(await store.get('a')).toBe('v');
      });

      it('shortens a time to live', async () => {
        await store.set('a', 'v', 10_000);
        expect(await store.expire('a', 150)).toBe(true);
        await elapse(300);
        expect(await store.get('a')).toBeUndefined();
      });

      it('applies to sets', async () => {
        await store.addToSet('s', 'm', 10_000);
        expect(await store.expire('s', 150)).toBe(true);
        await elapse(300);
        expect(await store.members('s')).toEqual([]);
      });
    });

    describe('increment', () => {
      it('counts from 1, separately per key', async () => {
        expect(await store.increment('a', 10_000)).toBe(1);
        expect(await store.increment('a', 10_000)).toBe(2);
        expect(await store.increment('a', 10_000)).toBe(3);
        expect(await store.increment('b', 10_000)).toBe(1);
      });

      it('starts over once the window has passed, and later increments do not extend the window', async () => {
        expect(await store.increment('w', 600)).toBe(1);
        await elapse(400);
        expect(await store.increment('w', 600)).toBe(2); // a sliding window would now end at 1000
        await elapse(350); // 750: past the fixed window (600)
        expect(await store.increment('w', 600)).toBe(1);
        expect(await store.increment('w', 600)).toBe(2);
      });

      it('counts every one of 50 concurrent increments', async () => {
        const results = await Promise.all(Array.from({ length: 50 }, () => store.increment('c', 10_000)));
        expect([...results].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      });

      it('rejects on a key holding something other than an integer', async () => {
        await store.set('text', 'abc', 10_000);
        await expect(store.increment('text', 10_000)).rejects.toThrow();
        await store.addToSet('set', 'm', 10_000);
        await expect(store.increment('set', 10_000)).rejects.toThrow();
      });
    });

    describe('sets', () => {
      it('lists no members for an absent set', async () => {
        expect(await store.members('none')).toEqual([]);
      });

      it('adds members once each and removes them', async () => {
        await store.addToSet('s', 'x', 10_000);
        await store.addToSet('s', 'y', 10_000);
        await store.addToSet('s', 'x', 10_000);
        expect((await store.members('s')).sort()).toEqual(['x', 'y']);
        await store.removeFromSet('s', 'x');
        await store.removeFromSet('s', 'not-a-member');
        await store.removeFromSet('absent-set', 'x');
        expect(await store.members('s')).toEqual(['y']);
        await store.removeFromSet('s', 'y');
        expect(await store.members('s')).toEqual([]);
        expect(await store.delete('s')).toBe(false); // an emptied set no longer exists
      });

      it('forgets the set after its time to live, and each add resets that time', async () => {
        await store.addToSet('s', 'x', 400);
        await elapse(250);
        await store.addToSet('s', 'y', 400); // now ends at 650
        await elapse(250); // 500: past the first add's expiry
        expect((await store.members('s')).sort()).toEqual(['x', 'y']);
        await elapse(300); // 800
        expect(await store.members('s')).toEqual([]);
      });

      it('rejects set operations on a string key and string reads of a set', async () => {
        await store.set('str', 'v', 10_000);
        await expect(store.addToSet('str', 'm', 10_000)).rejects.toThrow();
        await expect(store.members('str')).rejects.toThrow();
        await store.addToSet('set', 'm', 10_000);
        await expect(store.get('set')).rejects.toThrow();
        await expect(store.take('set')).rejects.toThrow();
        expect(await store.members('set')).toEqual(['m']);
      });

      it('lets set() replace a set with a string', async () => {
        await store.addToSet('k', 'm', 10_000);
        await store.set('k', 'v', 10_000);
        expect(await store.get('k')).toBe('v');
      });
    });

    describe('ping / close', () => {
      it('answers ping with true while open', async () => {
        expect(await store.ping()).toBe(true);
      });

      it('answers ping with false and rejects operations after close, and close is idempotent', async () => {
        await store.close();
        await store.close();
        expect(await store.ping()).toBe(false);
        await expect(store.get('a')).rejects.toThrow();
        await expect(store.set('a', 'v', 10_000)).rejects.toThrow();
      });
    });
  });
}
