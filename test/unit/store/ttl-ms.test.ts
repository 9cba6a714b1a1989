import { describe, expect, it } from 'vitest';
import { toTtlMs } from '../../../src/store/ttl-ms.js';

describe('toTtlMs', () => {
  it.each([
    [1, 1],
    [150, 150],
    [0.2, 1],
    [1500.5, 1501],
  ])('turns %s into %s whole milliseconds', (input, expected) => {
    expect(toTtlMs(input)).toBe(expected);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])('refuses %s', (input) => {
    expect(() => toTtlMs(input, 'windowMs')).toThrow(RangeError);
    expect(() => toTtlMs(input, 'windowMs')).toThrow(/windowMs/);
  });
});
