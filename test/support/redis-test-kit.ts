/** Small helpers shared by the tests that use Redis directly. */
import type { Redis } from 'ioredis';

/** Deletes every key under `prefix`, and only those (never FLUSHDB on the shared Redis). */
export async function deleteKeys(admin: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    if (keys.length > 0) await admin.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** Resolves with `fn()` once it stops rejecting, polling every 50 ms for up to `timeoutMs`. */
export async function untilResolved<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** How long `promise` took to settle, whether it rejected, and why. */
export async function timed(promise: Promise<unknown>): Promise<{ ms: number; rejected: boolean; error: unknown }> {
  const start = performance.now();
  try {
    await promise;
    return { ms: performance.now() - start, rejected: false, error: undefined };
  } catch (err) {
    return { ms: performance.now() - start, rejected: true, error: err };
  }
}
