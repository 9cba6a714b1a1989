import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { leafHash } from '../../../src/audit/canonical.js';
import {
  CompactRange,
  consistencyProof,
  EMPTY_ROOT,
  inclusionProof,
  type MerkleCheck,
  nodeHash,
  rootOf,
  subtreeRoot,
  verifyConsistency,
  verifyInclusion,
} from '../../../src/audit/merkle.js';

interface InclusionVector {
  index: number;
  size: number;
  leaf_hash: string;
  root: string;
  path: string[];
}
interface ConsistencyVector {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[];
}
interface Rfc6962Vectors {
  hasher: { empty_tree: string; leaf_of_empty: string; leaf_L123456: string; node_N123_N456: string };
  tree8: { leaf_inputs_hex: string[]; leaf_hashes: string[]; roots_by_size: string[] };
  inclusion: InclusionVector[];
  consistency: ConsistencyVector[];
  must_fail: string[];
  rolling130: { how: string; sha256: string };
}

const vectors = JSON.parse(readFileSync(new URL('../../../../shared/vectors/rfc6962.json', import.meta.url), 'utf8')) as Rfc6962Vectors;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Buffer => Buffer.from(s, 'hex');
const unhexAll = (list: readonly string[]): Buffer[] => list.map(unhex);

function at<T>(list: readonly T[], i: number): T {
  const v = list[i];
  if (v === undefined) throw new RangeError(`no element ${i}`);
  return v;
}

const tree8 = unhexAll(vectors.tree8.leaf_hashes);
const leaf8 = (i: number): Buffer => at(tree8, i);

/** Copy of `list` with one bit flipped in element `i`. */
function flipBit(list: readonly Uint8Array[], i: number, byte: number, bit: number): Buffer[] {
  return list.map((e, j) => {
    const copy = Buffer.from(e);
    if (j === i) copy[byte] = (copy[byte] ?? 0) ^ (1 << bit);
    return copy;
  });
}

/** mulberry32: a small seeded PRNG, so the property tests are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function expectFailure(check: MerkleCheck, codes: readonly string[]): void {
  expect(check.ok).toBe(false);
  if (!check.ok) expect(codes).toContain(check.code);
}

describe('EMPTY_ROOT', () => {
  it('is the SHA-256 of nothing', () => {
    expect(hex(EMPTY_ROOT)).toBe(vectors.hasher.empty_tree);
  });
});

describe('nodeHash', () => {
  it('hashes 0x01 ‖ left ‖ right as in the hasher vector', () => {
    const left = Buffer.from('N123', 'utf8');
    const right = Buffer.from('N456', 'utf8');
    expect(hex(nodeHash(left, right))).toBe(vectors.hasher.node_N123_N456);
  });

  it('is domain-separated from leaf hashing', () => {
    expect(hex(leafHash(Buffer.alloc(0)))).toBe(vectors.hasher.leaf_of_empty);
    expect(hex(leafHash(Buffer.from('L123456', 'utf8')))).toBe(vectors.hasher.leaf_L123456);
    expect(hex(nodeHash(Buffer.from('L123'), Buffer.from('456')))).not.toBe(vectors.hasher.leaf_L123456);
  });
});

describe('rootOf', () => {
  it('reproduces the tree8 leaf hashes from their inputs', () => {
    expect(vectors.tree8.leaf_inputs_hex.map((h) => hex(leafHash(unhex(h))))).toEqual(vectors.tree8.leaf_hashes);
  });

  it('computes the published root at every size 0..8', () => {
    vectors.tree8.roots_by_size.forEach((root, size) => {
      expect(hex(rootOf(tree8.slice(0, size)))).toBe(root);
    });
  });
});

describe('subtreeRoot', () => {
  it('equals rootOf over the same slice', () => {
    for (let start = 0; start <= 8; start++) {
      for (let end = start; end <= 8; end++) {
        expect(hex(subtreeRoot(start, end, leaf8))).toBe(hex(rootOf(tree8.slice(start, end))));
      }
    }
  });

  it('throws RangeError for an inverted or negative range', () => {
    expect(() => subtreeRoot(3, 2, leaf8)).toThrow(RangeError);
    expect(() => subtreeRoot(-1, 2, leaf8)).toThrow(RangeError);
    expect(() => subtreeRoot(0.5, 2, leaf8)).toThrow(RangeError);
  });

  it('reproduces the rolling130 check value over every valid subtree', () => {
    const leaves = Array.from({ length: 130 }, (_, i) => leafHash(Buffer.of(i)));
    const leafAt = (i: number): Buffer => at(leaves, i);
    const bitCeil = (n: number): number => {
      let p = 1;
      while (p < n) p *= 2;
      return p;
    };
    const digest = createHash('sha256');
    let lines = 0;
    for (let end = 0; end <= 130; end++) {
      for (let start = 0; start <= end; start++) {
        if (start === 0 || start === end || start % bitCeil(end - start) === 0) {
          digest.update(`[${start}, ${end}) ${hex(subtreeRoot(start, end, leafAt))}\n`, 'ascii');
          lines++;
        }
      }
    }
    expect(lines).toBeGreaterThan(130);
    expect(digest.digest('hex')).toBe(vectors.rolling130.sha256);
  });
});

describe('CompactRange', () => {
  it('has the published root at every size 0..8', () => {
    const range = new CompactRange();
    expect(range.size).toBe(0);
    expect(hex(range.root())).toBe(at(vectors.tree8.roots_by_size, 0));
    tree8.forEach((leaf, i) => {
      range.append(leaf);
      expect(range.size).toBe(i + 1);
      expect(hex(range.root())).toBe(at(vectors.tree8.roots_by_size, i + 1));
    });
  });

  it('round-trips through toJSON and fromJSON at every size 0..8', () => {
    const range = new CompactRange();
    for (let size = 0; size <= 8; size++) {
      const json = range.toJSON();
      expect(json.size).toBe(size);
      const restored = CompactRange.fromJSON(JSON.parse(JSON.stringify(json)));
      expect(restored.toJSON()).toEqual(json);
      expect(hex(restored.root())).toBe(at(vectors.tree8.roots_by_size, size));
      if (size < 8) {
        // A restored range keeps growing exactly like the original.
        restored.append(leaf8(size));
        range.append(leaf8(size));
        expect(hex(restored.root())).toBe(hex(range.root()));
      }
    }
  });

  it('keeps one hash per set bit of the size', () => {
    const range = new CompactRange();
    for (let i = 0; i < 8; i++) range.append(leaf8(i));
    expect(range.toJSON().hashes).toEqual([vectors.tree8.roots_by_size[8]]);
  });

  it('rejects serialized state whose hash count does not match the size', () => {
    const h = 'ab'.repeat(32);
    expect(() => CompactRange.fromJSON({ size: 3, hashes: [h] })).toThrow(RangeError);
    expect(() => CompactRange.fromJSON({ size: 4, hashes: [h, h] })).toThrow(RangeError);
    expect(() => CompactRange.fromJSON({ size: 0, hashes: [h] })).toThrow(RangeError);
    expect(() => CompactRange.fromJSON({ size: 1, hashes: ['xyz'] })).toThrow(TypeError);
    expect(() => CompactRange.fromJSON({ size: 1, hashes: [h.toUpperCase()] })).toThrow(TypeError);
    expect(() => CompactRange.fromJSON({ size: -1, hashes: [] })).toThrow(TypeError);
    expect(() => CompactRange.fromJSON({ size: 1.5, hashes: [h] })).toThrow(TypeError);
    expect(() => CompactRange.fromJSON({ size: 1 })).toThrow(TypeError);
    expect(() => CompactRange.fromJSON(null)).toThrow(TypeError);
    expect(CompactRange.fromJSON({ size: 5, hashes: [h, h] }).size).toBe(5);
  });

  it('refuses a leaf hash that is not 32 bytes', () => {
    expect(() => {
      new CompactRange().append(Buffer.alloc(31));
    }).toThrow(RangeError);
  });

  it('clones into an independent copy', () => {
    const range = new CompactRange();
    for (let i = 0; i < 5; i++) range.append(leaf8(i));
    const copy = range.clone();
    copy.append(leaf8(5));
    expect(range.size).toBe(5);
    expect(hex(range.root())).toBe(vectors.tree8.roots_by_size[5]);
    expect(hex(copy.root())).toBe(vectors.tree8.roots_by_size[6]);
  });

  // Speed is measured by the verify benchmark (bench/verify.js), not by a timed unit test.
  it('keeps O(log n) state over 1,000,000 appends', () => {
    const range = new CompactRange();
    const leaf = leaf8(1);
    for (let i = 0; i < 1_000_000; i++) range.append(leaf);
    expect(range.size).toBe(1_000_000);
    expect(range.toJSON().hashes).toHaveLength(7); // popcount(1,000,000)
  });
});

describe('inclusionProof', () => {
  it.each(vectors.inclusion)('generates the published proof for leaf $index of $size', (v) => {
    const proof = inclusionProof(v.index, v.size, leaf8);
    expect(proof.map(hex)).toEqual(v.path);
    expect(verifyInclusion(v.index, v.size, leaf8(v.index), proof, unhex(v.root))).toEqual({ ok: true });
  });

  it('throws RangeError for an index outside the tree or a bad size', () => {
    expect(() => inclusionProof(8, 8, leaf8)).toThrow(RangeError);
    expect(() => inclusionProof(0, 0, leaf8)).toThrow(RangeError);
    expect(() => inclusionProof(-1, 8, leaf8)).toThrow(RangeError);
    expect(() => inclusionProof(1.5, 8, leaf8)).toThrow(RangeError);
  });
});

describe('consistencyProof', () => {
  it.each(vectors.consistency)('generates the published proof from $size1 to $size2', (v) => {
    const proof = consistencyProof(v.size1, v.size2, leaf8);
    expect(proof.map(hex)).toEqual(v.proof);
    expect(verifyConsistency(v.size1, v.size2, unhex(v.root1), unhex(v.root2), proof)).toEqual({ ok: true });
  });

  it('throws RangeError when size1 is 0 or exceeds size2', () => {
    expect(() => consistencyProof(0, 8, leaf8)).toThrow(RangeError);
    expect(() => consistencyProof(5, 4, leaf8)).toThrow(RangeError);
    expect(() => consistencyProof(1, Number.NaN, leaf8)).toThrow(RangeError);
  });
});

describe('verifyInclusion', () => {
  it.each(vectors.inclusion)('accepts the published proof for leaf $index of $size', (v) => {
    expect(verifyInclusion(v.index, v.size, unhex(v.leaf_hash), unhexAll(v.path), unhex(v.root))).toEqual({ ok: true });
  });

  it("rejects inclusion (0,8) of the leaf hash of 'WrongLeaf' with both roots in the failure", () => {
    const v = at(vectors.inclusion, 1);
    const wrong = leafHash(Buffer.from('WrongLeaf', 'utf8'));
    const check = verifyInclusion(v.index, v.size, wrong, unhexAll(v.path), unhex(v.root));
    expectFailure(check, ['root-mismatch']);
    if (!check.ok) {
      expect(check.expected).toBe(v.root);
      expect(check.actual).toMatch(/^[0-9a-f]{64}$/);
      expect(check.actual).not.toBe(v.root);
    }
  });

  it.each(vectors.inclusion)('rejects one bit flipped in any element, the leaf or the root for leaf $index of $size', (v) => {
    const path = unhexAll(v.path);
    for (let i = 0; i < path.length; i++) {
      for (const [byte, bit] of [
        [0, 0],
        [31, 7],
        [17, 3],
      ] as const) {
        expectFailure(verifyInclusion(v.index, v.size, unhex(v.leaf_hash), flipBit(path, i, byte, bit), unhex(v.root)), ['root-mismatch']);
      }
    }
    const [leaf] = flipBit([unhex(v.leaf_hash)], 0, 5, 1);
    expectFailure(verifyInclusion(v.index, v.size, leaf ?? Buffer.alloc(0), path, unhex(v.root)), ['root-mismatch']);
    const [root] = flipBit([unhex(v.root)], 0, 9, 6);
    expectFailure(verifyInclusion(v.index, v.size, unhex(v.leaf_hash), path, root ?? Buffer.alloc(0)), ['root-mismatch']);
  });

  it.each(vectors.inclusion)('rejects a truncated proof or an extra element at either end for leaf $index of $size', (v) => {
    const leaf = unhex(v.leaf_hash);
    const root = unhex(v.root);
    const path = unhexAll(v.path);
    const variants: Buffer[][] = [];
    if (path.length > 0) variants.push(path.slice(0, -1), path.slice(1));
    for (const extra of [Buffer.alloc(0), root, EMPTY_ROOT]) variants.push([extra, ...path], [...path, extra]);
    for (const p of variants) expectFailure(verifyInclusion(v.index, v.size, leaf, p, root), ['proof-length', 'root-mismatch']);
    // Dropping an element (or adding one) always changes the length the RFC walk needs.
    if (path.length > 0) expectFailure(verifyInclusion(v.index, v.size, leaf, path.slice(0, -1), root), ['proof-length']);
    expectFailure(verifyInclusion(v.index, v.size, leaf, [...path, root], root), ['proof-length']);
  });

  it('rejects inclusion (0,8) checked at tree size 16 or 4, or at index 1 or 2', () => {
    const v = at(vectors.inclusion, 1);
    const [leaf, path, root] = [unhex(v.leaf_hash), unhexAll(v.path), unhex(v.root)];
    expectFailure(verifyInclusion(0, 16, leaf, path, root), ['proof-length']);
    expectFailure(verifyInclusion(0, 4, leaf, path, root), ['proof-length']);
    expectFailure(verifyInclusion(1, 8, leaf, path, root), ['root-mismatch']);
    expectFailure(verifyInclusion(2, 8, leaf, path, root), ['root-mismatch']);
  });

  // As in transparency-dev/merkle's corruptInclusionProof. (size ± 1 is not among them: a proof only
  // binds the tree's shape, so e.g. the proof for leaf 0 of 5 also walks correctly as leaf 0 of 6.)
  it.each(vectors.inclusion)('rejects a wrong index or size for leaf $index of $size', (v) => {
    const [leaf, path, root] = [unhex(v.leaf_hash), unhexAll(v.path), unhex(v.root)];
    const variants = [
      [v.index - 1, v.size],
      [v.index + 1, v.size],
      [v.index ^ 2, v.size],
      [v.index, v.size * 2],
      [v.index, Math.floor(v.size / 2)],
    ] as const;
    for (const [index, size] of variants) {
      if (index === v.index && size === v.size) continue;
      expectFailure(verifyInclusion(index, size, leaf, path, root), ['bad-index', 'bad-size', 'proof-length', 'root-mismatch']);
    }
  });

  it('rejects a proof checked against the empty-tree root or a random root', () => {
    const random = prng(42);
    const randomRoot = Buffer.from(Array.from({ length: 32 }, () => Math.floor(random() * 256)));
    for (const v of vectors.inclusion) {
      for (const root of [EMPTY_ROOT, randomRoot]) {
        const check = verifyInclusion(v.index, v.size, unhex(v.leaf_hash), unhexAll(v.path), root);
        expectFailure(check, ['root-mismatch']);
        if (!check.ok) expect(check.expected).toBe(hex(root));
      }
    }
  });

  it('reports bad-index when index ≥ size and bad-size for an invalid size', () => {
    const leaf = leaf8(0);
    expectFailure(verifyInclusion(8, 8, leaf, [], leaf), ['bad-index']);
    expectFailure(verifyInclusion(0, 0, leaf, [], EMPTY_ROOT), ['bad-index']);
    expectFailure(verifyInclusion(-1, 8, leaf, [], leaf), ['bad-index']);
    expectFailure(verifyInclusion(0, -1, leaf, [], leaf), ['bad-size']);
    expectFailure(verifyInclusion(0, Number.NaN, leaf, [], leaf), ['bad-size']);
  });
});

describe('verifyConsistency', () => {
  it.each(vectors.consistency)('accepts the published proof from $size1 to $size2', (v) => {
    expect(verifyConsistency(v.size1, v.size2, unhex(v.root1), unhex(v.root2), unhexAll(v.proof))).toEqual({ ok: true });
  });

  it.each(vectors.consistency)('rejects one bit flipped in any element or root from $size1 to $size2', (v) => {
    const proof = unhexAll(v.proof);
    for (let i = 0; i < proof.length; i++) {
      for (const [byte, bit] of [
        [0, 0],
        [31, 7],
        [20, 4],
      ] as const) {
        expectFailure(verifyConsistency(v.size1, v.size2, unhex(v.root1), unhex(v.root2), flipBit(proof, i, byte, bit)), ['root-mismatch']);
      }
    }
    const [root1] = flipBit([unhex(v.root1)], 0, 3, 2);
    const [root2] = flipBit([unhex(v.root2)], 0, 30, 5);
    expectFailure(verifyConsistency(v.size1, v.size2, root1 ?? Buffer.alloc(0), unhex(v.root2), proof), ['root-mismatch']);
    expectFailure(verifyConsistency(v.size1, v.size2, unhex(v.root1), root2 ?? Buffer.alloc(0), proof), ['root-mismatch']);
  });

  it.each(vectors.consistency)('rejects a truncated proof or an extra element at either end from $size1 to $size2', (v) => {
    const [root1, root2, proof] = [unhex(v.root1), unhex(v.root2), unhexAll(v.proof)];
    const variants: Buffer[][] = [];
    if (proof.length > 0) variants.push(proof.slice(0, -1), proof.slice(1));
    for (const extra of [Buffer.alloc(0), root1, root2]) variants.push([extra, ...proof], [...proof, extra]);
    for (const p of variants) expectFailure(verifyConsistency(v.size1, v.size2, root1, root2, p), ['proof-length', 'root-mismatch']);
    if (proof.length > 0) expectFailure(verifyConsistency(v.size1, v.size2, root1, root2, proof.slice(0, -1)), ['proof-length']);
    expectFailure(verifyConsistency(v.size1, v.size2, root1, root2, [...proof, root2]), ['proof-length']);
  });

  it.each(vectors.consistency.filter((v) => v.root1 !== v.root2))('rejects root1 and root2 swapped from $size1 to $size2', (v) => {
    const check = verifyConsistency(v.size1, v.size2, unhex(v.root2), unhex(v.root1), unhexAll(v.proof));
    expectFailure(check, ['root-mismatch']);
    if (!check.ok) expect([v.root1, v.root2]).toContain(check.expected);
  });

  // As in transparency-dev/merkle's corruptConsistencyProof. (size2 ± 1 is not among them: a proof
  // only binds the tree's shape, so e.g. the 1 → 8 proof also walks correctly as 1 → 7; the signed
  // checkpoint, not the proof, pins the size.)
  it.each(vectors.consistency)('rejects wrong sizes from $size1 to $size2', (v) => {
    const [root1, root2, proof] = [unhex(v.root1), unhex(v.root2), unhexAll(v.proof)];
    const variants = [
      [v.size1 - 1, v.size2],
      [v.size1 + 1, v.size2],
      [v.size1 ^ 2, v.size2],
      [v.size1, v.size2 * 2],
      [v.size1, Math.floor(v.size2 / 2)],
    ] as const;
    for (const [size1, size2] of variants) {
      if (size1 === v.size1 && size2 === v.size2) continue;
      expectFailure(verifyConsistency(size1, size2, root1, root2, proof), ['bad-size', 'proof-length', 'root-mismatch']);
    }
  });

  it('rejects size1 > size2 and size1 = 0 as bad-size', () => {
    const roots = vectors.tree8.roots_by_size.map(unhex);
    expectFailure(verifyConsistency(8, 6, at(roots, 8), at(roots, 6), []), ['bad-size']);
    expectFailure(verifyConsistency(8, 6, at(roots, 8), at(roots, 6), consistencyProof(6, 8, leaf8)), ['bad-size']);
    expectFailure(verifyConsistency(0, 8, EMPTY_ROOT, at(roots, 8), []), ['bad-size']);
    expectFailure(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, []), ['bad-size']);
    expectFailure(verifyConsistency(-1, 8, EMPTY_ROOT, at(roots, 8), []), ['bad-size']);
  });

  it('requires an empty proof and equal roots when the sizes are equal', () => {
    const root = unhex(at(vectors.tree8.roots_by_size, 5));
    expect(verifyConsistency(5, 5, root, root, [])).toEqual({ ok: true });
    expectFailure(verifyConsistency(5, 5, root, root, [root]), ['proof-length']);
    const check = verifyConsistency(5, 5, root, EMPTY_ROOT, []);
    expectFailure(check, ['root-mismatch']);
    if (!check.ok) {
      expect(check.expected).toBe(hex(root));
      expect(check.actual).toBe(hex(EMPTY_ROOT));
    }
  });

  it('rejects an empty proof between different sizes', () => {
    const roots = vectors.tree8.roots_by_size.map(unhex);
    expectFailure(verifyConsistency(4, 8, at(roots, 4), at(roots, 8), []), ['proof-length']);
  });
});

describe('merkle properties', () => {
  it('verifies generated proofs and matches CompactRange with rootOf for random trees of 1..300 leaves', () => {
    const random = prng(0x9162);
    const randomLeafData = (): Buffer => Buffer.from(Array.from({ length: 1 + Math.floor(random() * 40) }, () => Math.floor(random() * 256)));
    const leaves = Array.from({ length: 300 }, () => leafHash(randomLeafData()));
    const leafAt = (i: number): Buffer => at(leaves, i);
    const pick = (n: number): number => Math.floor(random() * n);

    const range = new CompactRange();
    const roots: Buffer[] = [rootOf([])];
    for (let size = 1; size <= 300; size++) {
      range.append(leafAt(size - 1));
      const root = rootOf(leaves.slice(0, size));
      expect(hex(range.root())).toBe(hex(root));
      roots.push(root);
    }

    for (let size = 1; size <= 300; size++) {
      const root = at(roots, size);
      for (const index of new Set([0, size - 1, pick(size), pick(size)])) {
        const proof = inclusionProof(index, size, leafAt);
        expect(verifyInclusion(index, size, leafAt(index), proof, root)).toEqual({ ok: true });
        if (index + 1 < size) expectFailure(verifyInclusion(index + 1, size, leafAt(index), proof, root), ['proof-length', 'root-mismatch']);
      }
      for (const size1 of new Set([1, size, 1 + pick(size), 1 + pick(size)])) {
        const proof = consistencyProof(size1, size, leafAt);
        expect(verifyConsistency(size1, size, at(roots, size1), root, proof)).toEqual({ ok: true });
        if (proof.length > 0) expectFailure(verifyConsistency(size1, size, at(roots, size1), root, proof.slice(1)), ['proof-length', 'root-mismatch']);
      }
    }

    const restored = CompactRange.fromJSON(range.toJSON());
    expect(hex(restored.root())).toBe(hex(at(roots, 300)));
  });
});
