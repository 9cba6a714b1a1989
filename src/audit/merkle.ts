/**
 * RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification (pure).
 * Hashing is domain-separated: leaves are SHA-256(0x00 ‖ bytes) (see `leafHash` in canonical.ts),
 * interior nodes SHA-256(0x01 ‖ left ‖ right). Verification never throws on bad input: it returns a
 * typed {@link MerkleCheck} carrying the expected and the computed hash (as transparency-dev/merkle's
 * `RootMismatchError` does). Tree sizes and indices are safe non-negative integers; all bit
 * arithmetic is done with `%`/division so sizes above 2^32 work.
 */
import { hash } from 'node:crypto';

/** The root of the empty tree: SHA-256 of nothing. */
export const EMPTY_ROOT: Buffer = hash('sha256', Buffer.alloc(0), 'buffer');

/** RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right). Inputs are normally 32-byte hashes. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  const input = Buffer.allocUnsafe(1 + left.length + right.length);
  input[0] = 1;
  input.set(left, 1);
  input.set(right, 1 + left.length);
  return hash('sha256', input, 'buffer');
}

/** Outcome of a proof verification; `expected`/`actual` are hex hashes (trusted vs computed). */
export type MerkleCheck =
  | { ok: true }
  | {
      ok: false;
      code: 'root-mismatch' | 'proof-length' | 'bad-index' | 'bad-size';
      expected?: string;
      actual?: string;
      message: string;
    };

/** The serialized form of a {@link CompactRange}: tree size and the hex roots of its perfect subtrees. */
export interface CompactRangeJSON {
  size: number;
  hashes: string[];
}

const HASH_HEX = /^[0-9a-f]{64}$/;

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isOdd(n: number): boolean {
  return n % 2 === 1;
}

function half(n: number): number {
  return Math.floor(n / 2);
}

function popcount(n: number): number {
  let count = 0;
  for (let v = n; v > 0; v = half(v)) if (isOdd(v)) count++;
  return count;
}

/** Largest power of two strictly less than n. Precondition: n ≥ 2. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && popcount(n) === 1;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function fail(code: 'proof-length' | 'bad-index' | 'bad-size', message: string): MerkleCheck {
  return { ok: false, code, message };
}

function mismatch(which: string, expected: Uint8Array, actual: Uint8Array): MerkleCheck {
  return {
    ok: false,
    code: 'root-mismatch',
    expected: hex(expected),
    actual: hex(actual),
    message: `${which}: expected ${hex(expected)}, computed ${hex(actual)}`,
  };
}

/**
 * MTH(D[start:end]) computed from leaf hashes (RFC 9162 §2.1.1); EMPTY_ROOT for an empty range.
 * Preconditions: 0 ≤ start ≤ end, safe integers; `leafAt(i)` returns the leaf hash of leaf i for every
 * i in [start, end). Work is O(end − start) hashes, recursion depth O(log(end − start)).
 * @throws RangeError for an invalid range.
 */
export function subtreeRoot(start: number, end: number, leafAt: (i: number) => Uint8Array): Buffer {
  if (!isCount(start) || !isCount(end) || start > end) throw new RangeError(`invalid leaf range [${start}, ${end})`);
  return mth(start, end, leafAt);
}

function mth(start: number, end: number, leafAt: (i: number) => Uint8Array): Buffer {
  const n = end - start;
  if (n === 0) return Buffer.from(EMPTY_ROOT);
  if (n === 1) return Buffer.from(leafAt(start));
  const k = splitPoint(n);
  return nodeHash(mth(start, start + k, leafAt), mth(start + k, end, leafAt));
}

/** RFC 9162 MTH over a list of leaf hashes (any length; EMPTY_ROOT for none). */
export function rootOf(leafHashes: readonly Uint8Array[]): Buffer {
  return mth(0, leafHashes.length, (i) => {
    const leaf = leafHashes[i];
    if (leaf === undefined) throw new RangeError(`no leaf hash at ${i}`);
    return leaf;
  });
}

/**
 * The O(log n) state of a Merkle tree growing from size 0: the roots of its perfect subtrees, largest
 * (left-most) first, one per set bit of the size. Appending merges equal-sized right-most subtrees
 * (O(1) amortized hashes); `root()` folds them right to left (O(log n)).
 */
export class CompactRange {
  #size = 0;
  #hashes: Buffer[] = [];

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /**
   * Appends one leaf. Precondition: `leafHash` is a 32-byte RFC 9162 leaf hash (it is copied).
   * @throws RangeError if it is not 32 bytes or the tree would exceed Number.MAX_SAFE_INTEGER leaves.
   */
  append(leafHash: Uint8Array): void {
    if (leafHash.length !== 32) throw new RangeError(`a leaf hash is 32 bytes, got ${leafHash.length}`);
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new RangeError('tree is full');
    let merged: Buffer = Buffer.from(leafHash);
    // Each trailing 1 bit of the old size is a perfect subtree of the same size as `merged`.
    for (let s = this.#size; isOdd(s); s = half(s)) {
      const left = this.#hashes.pop();
      if (left === undefined) throw new Error('CompactRange invariant broken');
      merged = nodeHash(left, merged);
    }
    this.#hashes.push(merged);
    this.#size++;
  }

  /** Root hash of the whole tree so far (EMPTY_ROOT at size 0). */
  root(): Buffer {
    let acc: Buffer | undefined;
    for (let i = this.#hashes.length - 1; i >= 0; i--) {
      const h = this.#hashes[i];
      if (h === undefined) continue;
      acc = acc === undefined ? h : nodeHash(h, acc);
    }
    return Buffer.from(acc ?? EMPTY_ROOT);
  }

  /** Serializable state: size and lower-case hex subtree roots, largest first. */
  toJSON(): CompactRangeJSON {
    return { size: this.#size, hashes: this.#hashes.map((h) => h.toString('hex')) };
  }

  /**
   * Rebuilds a range from {@link CompactRange.toJSON} output.
   * Preconditions: `size` is a safe non-negative integer, `hashes` are 64-digit lower-case hex strings,
   * and `hashes.length === popcount(size)`.
   * @throws TypeError for a malformed value, RangeError when the hash count does not match the size.
   */
  static fromJSON(j: unknown): CompactRange {
    if (typeof j !== 'object' || j === null) throw new TypeError('compact range: expected an object');
    const { size, hashes } = j as { size?: unknown; hashes?: unknown };
    if (typeof size !== 'number' || !isCount(size)) throw new TypeError('compact range: size must be a safe non-negative integer');
    if (!Array.isArray(hashes)) throw new TypeError('compact range: hashes must be an array');
    const parsed = hashes.map((h: unknown, i) => {
      if (typeof h !== 'string' || !HASH_HEX.test(h)) throw new TypeError(`compact range: hashes[${i}] is not a 64-digit lower-case hex hash`);
      return Buffer.from(h, 'hex');
    });
    const want = popcount(size);
    if (parsed.length !== want) throw new RangeError(`compact range: size ${size} needs ${want} hashes, got ${parsed.length}`);
    const range = new CompactRange();
    range.#size = size;
    range.#hashes = parsed;
    return range;
  }

  /** An independent copy (appending to one does not affect the other). */
  clone(): CompactRange {
    const copy = new CompactRange();
    copy.#size = this.#size;
    copy.#hashes = [...this.#hashes];
    return copy;
  }
}

/**
 * RFC 9162 §2.1.3.1 PATH(index, D[0:size]): the inclusion proof of leaf `index` in the tree of the
 * first `size` leaves, leaf-side first. Preconditions: 0 ≤ index < size (safe integers); `leafAt`
 * returns the leaf hash of every leaf below `size`. Work is O(size) hashes.
 * @throws RangeError when index or size is out of range.
 */
export function inclusionProof(index: number, size: number, leafAt: (i: number) => Uint8Array): Buffer[] {
  if (!isCount(size) || size === 0) throw new RangeError(`invalid tree size ${size}`);
  if (!isCount(index) || index >= size) throw new RangeError(`leaf index ${index} is outside a tree of size ${size}`);
  const proof: Buffer[] = [];
  path(index, 0, size, leafAt, proof);
  return proof;
}

function path(m: number, start: number, end: number, leafAt: (i: number) => Uint8Array, out: Buffer[]): void {
  const n = end - start;
  if (n <= 1) return;
  const k = splitPoint(n);
  if (m < k) {
    path(m, start, start + k, leafAt, out);
    out.push(mth(start + k, end, leafAt));
  } else {
    path(m - k, start + k, end, leafAt, out);
    out.push(mth(start, start + k, leafAt));
  }
}

/**
 * RFC 9162 §2.1.4.1 PROOF(size1, D[0:size2]): the consistency proof that the tree of the first
 * `size1` leaves is a prefix of the tree of the first `size2`. Preconditions: 0 < size1 ≤ size2
 * (safe integers; the proof for size1 = size2 is empty); `leafAt` returns the leaf hash of every leaf
 * below `size2`. Work is O(size2) hashes.
 * @throws RangeError when the sizes are out of range.
 */
export function consistencyProof(size1: number, size2: number, leafAt: (i: number) => Uint8Array): Buffer[] {
  if (!isCount(size1) || !isCount(size2) || size1 === 0 || size1 > size2) {
    throw new RangeError(`invalid consistency sizes ${size1} → ${size2} (need 0 < size1 ≤ size2)`);
  }
  const proof: Buffer[] = [];
  subproof(size1, 0, size2, true, leafAt, proof);
  return proof;
}

function subproof(m: number, start: number, end: number, b: boolean, leafAt: (i: number) => Uint8Array, out: Buffer[]): void {
  const n = end - start;
  if (m === n) {
    if (!b) out.push(mth(start, end, leafAt));
    return;
  }
  const k = splitPoint(n);
  if (m <= k) {
    subproof(m, start, start + k, b, leafAt, out);
    out.push(mth(start + k, end, leafAt));
  } else {
    subproof(m - k, start + k, end, false, leafAt, out);
    out.push(mth(start, start + k, leafAt));
  }
}

/**
 * Verifies an inclusion proof exactly as RFC 9162 §2.1.3.2 does. Preconditions: none (bad input is a
 * failure, never an exception). Fails with `bad-index` when index ≥ size or index is not a safe
 * non-negative integer, `bad-size` for a size that is not one, `proof-length` when the proof has too
 * many or too few elements for (index, size), `root-mismatch` (expected = `root`, actual = computed)
 * otherwise.
 */
export function verifyInclusion(
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): MerkleCheck {
  if (!isCount(size)) return fail('bad-size', `invalid tree size ${size}`);
  if (!isCount(index) || index >= size) return fail('bad-index', `leaf index ${index} is outside a tree of size ${size}`);
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leafHash;
  for (const p of proof) {
    if (sn === 0) return fail('proof-length', `inclusion proof for leaf ${index} of ${size} has too many elements (${proof.length})`);
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) return fail('proof-length', `inclusion proof for leaf ${index} of ${size} has too few elements (${proof.length})`);
  if (!equalBytes(r, root)) return mismatch(`inclusion of leaf ${index} in tree of size ${size}`, root, r);
  return { ok: true };
}

/**
 * Verifies a consistency proof exactly as RFC 9162 §2.1.4.2 does, for 0 < size1 ≤ size2.
 * Preconditions: none (bad input is a failure, never an exception). Fails with `bad-size` when
 * size1 > size2, size1 = 0 (the RFC defines no proof from the empty tree: callers accept it, having
 * nothing to check) or a size is not a safe non-negative integer; when size1 = size2 the proof must
 * be empty (`proof-length`) and the roots equal (`root-mismatch`, expected = root1); otherwise
 * `proof-length` when the proof is empty, too long or too short, and `root-mismatch` when the
 * reconstructed first root (expected = root1) or second root (expected = root2) differs.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): MerkleCheck {
  if (!isCount(size1) || !isCount(size2)) return fail('bad-size', `invalid tree sizes ${size1} → ${size2}`);
  if (size1 > size2) return fail('bad-size', `tree shrank from ${size1} to ${size2}`);
  if (size1 === 0) return fail('bad-size', 'no consistency proof exists from the empty tree');
  if (size1 === size2) {
    if (proof.length !== 0) return fail('proof-length', `consistency proof between equal sizes ${size1} must be empty, has ${proof.length} elements`);
    if (!equalBytes(root1, root2)) return mismatch(`roots of two trees of size ${size1}`, root1, root2);
    return { ok: true };
  }
  if (proof.length === 0) return fail('proof-length', `consistency proof ${size1} → ${size2} is empty`);
  const path: readonly Uint8Array[] = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  const [first, ...rest] = path;
  if (first === undefined) return fail('proof-length', `consistency proof ${size1} → ${size2} is empty`);
  let fr: Uint8Array = first;
  let sr: Uint8Array = first;
  for (const c of rest) {
    if (sn === 0) return fail('proof-length', `consistency proof ${size1} → ${size2} has too many elements (${proof.length})`);
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) return fail('proof-length', `consistency proof ${size1} → ${size2} has too few elements (${proof.length})`);
  if (!equalBytes(fr, root1)) return mismatch(`first root (size ${size1})`, root1, fr);
  if (!equalBytes(sr, root2)) return mismatch(`second root (size ${size2})`, root2, sr);
  return { ok: true };
}
