/**
 * The in-process credential store: a `Map` of deep-frozen values, for tests and single-process
 * experiments. Nothing survives a restart and nothing is shared between processes.
 *
 * `update` runs its read, `change` and write without an await in between, so on JavaScript's single
 * thread nothing can interleave with it: concurrent updates are serialized by construction and
 * `change` runs exactly once. The value `change` returns is checked and copied like the other
 * adapters do, so the memory store refuses what they refuse.
 */
import { checkOpen, checkUserName, EMPTY_FACTORS, isEmptyFactors, toStorable } from './credential-store-codec.js';
import type { CredentialStore, UserFactors } from './factors.js';

/** Runs `fn` now and settles a promise with its result, so every throw becomes a rejection. */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => {
    resolve(fn());
  });
}

/** Creates an empty in-memory {@link CredentialStore}. After `close()`, `get` and `update` reject. */
export function createMemoryCredentialStore(): CredentialStore {
  const users = new Map<string, UserFactors>();
  let closed = false;

  return {
    kind: 'memory',

    get(user) {
      return settle(() => {
        checkUserName(user);
        checkOpen(closed, 'memory');
        return users.get(user) ?? EMPTY_FACTORS;
      });
    },

    update(user, change) {
      return settle(() => {
        checkUserName(user);
        checkOpen(closed, 'memory');
        const next = toStorable(change(users.get(user) ?? EMPTY_FACTORS), user);
        if (isEmptyFactors(next)) {
          users.delete(user);
          return EMPTY_FACTORS;
        }
        users.set(user, next);
        return next;
      });
    },

    close() {
      closed = true;
      users.clear();
      return Promise.resolve();
    },
  };
}
