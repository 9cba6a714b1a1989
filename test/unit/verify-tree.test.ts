/**
 * The verifier's tree (src/audit/verify-tree.ts) gives the roots of CompactRange and rootOf (pinned
 * to the RFC 9162 vectors in test/unit/audit/merkle.test.ts) at every size, from empty or from a
 * compact range's state.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CompactRange, EMPTY_ROOT, rootOf } from '../../src/audit/merkle.js';
import { LeafTree } from '../../src/audit/verify-tree.js';

/** n deterministic 32-byte leaf hashes, packed. */
function leaves(n: number): Buffer {
  return Buffer.concat(Array.from({ length: n }, (_, i) => createHash('sha256').update(`leaf ${i}`).digest()));
}

describe('LeafTree', () => {
  it('has the root of CompactRange and rootOf at every size up to 300', () => {
    const all = leaves(300);
    const tree = new LeafTree();
    const range = new CompactRange();
    expect(tree.root().equals(EMPTY_ROOT)).toBe(true);
    for (let i = 0; i < 300; i++) {
      tree.append(all, 32 * i);
      range.append(all.subarray(32 * i, 32 * i + 32));
      expect(tree.size).toBe(i + 1);
      expect(tree.root().toString('hex'), `size ${i + 1}`).toBe(range.root().toString('hex'));
    }
    const list = Array.from({ length: 300 }, (_, i) => all.subarray(32 * i, 32 * i + 32));
    expect(tree.root().equals(rootOf(list))).toBe(true);
  });

  it('goes on from a compact range state, leaving the range alone', () => {
    const all = leaves(1100);
    for (const start of [0, 1, 2, 3, 7, 8, 64, 255, 256, 257, 1000]) {
      const range = new CompactRange();
      for (let i = 0; i < start; i++) range.append(all.subarray(32 * i, 32 * i + 32));
      const before = JSON.stringify(range.toJSON());
      const tree = LeafTree.from(range);
      expect(tree.size).toBe(start);
      expect(tree.root().equals(range.root())).toBe(true);
      for (let i = start; i < start + 100; i++) {
        tree.append(all, 32 * i);
        range.append(all.subarray(32 * i, 32 * i + 32));
        if (i % 9 === 0 || i === start + 99) expect(tree.root().toString('hex'), `start ${start}, size ${i + 1}`).toBe(range.root().toString('hex'));
      }
      expect(JSON.stringify(CompactRange.fromJSON(JSON.parse(before)).toJSON())).toBe(before);
    }
  });

  it('matches over a long run, and root() does not change the state', () => {
    const all = leaves(5000);
    const tree = new LeafTree();
    const range = new CompactRange();
    for (let i = 0; i < 5000; i++) {
      tree.append(all, 32 * i);
      range.append(all.subarray(32 * i, 32 * i + 32));
      if ((i & (i + 1)) === 0 || i % 613 === 0) {
        const root = tree.root();
        expect(tree.root().equals(root)).toBe(true);
        expect(root.equals(range.root())).toBe(true);
      }
    }
    expect(tree.root().equals(range.root())).toBe(true);
  });

  it('refuses a leaf outside the buffer', () => {
    const tree = new LeafTree();
    expect(() => tree.append(leaves(1), 1)).toThrow(RangeError);
    expect(() => tree.append(leaves(1), -1)).toThrow(RangeError);
    expect(tree.size).toBe(0);
  });
});
