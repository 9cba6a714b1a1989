/**
 * Checks a time to live (or window) given to a store method and turns it into whole milliseconds.
 * Fractions round up, so a TTL never ends earlier than asked.
 *
 * @throws RangeError when `ms` is not a finite number greater than zero — nothing the gateway stores
 *   lives forever, and a zero or negative TTL is always a caller's bug.
 */
export function toTtlMs(ms: number, what = 'ttlMs'): number {
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new RangeError(`${what} must be a finite number of milliseconds greater than 0, got ${String(ms)}`);
  }
  return Math.ceil(ms);
}
