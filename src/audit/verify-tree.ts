/**
 * The verifier's Merkle tree: the RFC 9162 compact range of {@link CompactRange} (merkle.ts) — the
 * roots of the perfect subtrees, largest first, merged as leaves are appended, folded right to left
 * for the root — with the same hashes, but built for a million appends: the subtree roots live in one
 * buffer, every interior node is hashed from one scratch buffer (0x01 ‖ left ‖ right), and
 * `crypto.hash` returns a latin1 ('binary') string, which costs a fraction of allocating a Buffer per hash.
 */
import { hash } from 'node:crypto';
import { EMPTY_ROOT, type CompactRange } from './merkle.js';

/** A compact range has one subtree per set bit of its size (≤ 53 for a safe integer). */
const MAX_SUBTREES = 64;

/** Copies 32 bytes (a loop: cheaper than Buffer#copy for so few). */
function copy32(src: Uint8Array, from: number, dst: Uint8Array, to: number): void {
  for (let k = 0; k < 32; k++) dst[to + k] = src[from + k] ?? 0;
}

export class LeafTree {
  #size = 0;
  /** Subtrees in use; subtree k's root is bytes 32·k … 32·k+31 of #roots. */
  #count = 0;
  readonly #roots = Buffer.alloc(32 * MAX_SUBTREES);
  /** 0x01 ‖ left ‖ right: the input of an interior node hash. */
  readonly #scratch = Buffer.alloc(65);

  constructor() {
    this.#scratch[0] = 1;
  }

  /** The same tree state as `range` (an independent copy). */
  static from(range: CompactRange): LeafTree {
    const tree = new LeafTree();
    const { size, hashes } = range.toJSON();
    if (hashes.length > MAX_SUBTREES) throw new RangeError('compact range too large');
    hashes.forEach((h, k) => tree.#roots.write(h, 32 * k, 32, 'hex'));
    tree.#size = size;
    tree.#count = hashes.length;
    return tree;
  }

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /**
   * Appends the 32-byte leaf hash at `leaves[at]` (copied).
   * @throws RangeError when the tree would exceed Number.MAX_SAFE_INTEGER leaves or `at` is out of range.
   */
  append(leaves: Uint8Array, at: number): void {
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new RangeError('tree is full');
    if (at < 0 || at + 32 > leaves.length) throw new RangeError(`no leaf hash at ${at}`);
    let s = this.#size;
    this.#size = s + 1;
    if (s % 2 === 0) {
      copy32(leaves, at, this.#roots, 32 * this.#count);
      this.#count += 1;
      return;
    }
    // Each trailing 1 bit of the old size is a subtree of the size of the one being merged.
    const scratch = this.#scratch;
    copy32(leaves, at, scratch, 33);
    for (;;) {
      this.#count -= 1;
      copy32(this.#roots, 32 * this.#count, scratch, 1);
      const merged = hash('sha256', scratch, 'binary');
      s = Math.floor(s / 2);
      if (s % 2 === 1) {
        scratch.write(merged, 33, 32, 'latin1');
        continue;
      }
      this.#roots.write(merged, 32 * this.#count, 32, 'latin1');
      this.#count += 1;
      return;
    }
  }

  /** Root hash of the whole tree so far (EMPTY_ROOT at size 0). */
  root(): Buffer {
    if (this.#count === 0) return Buffer.from(EMPTY_ROOT);
    const scratch = this.#scratch;
    const last = 32 * (this.#count - 1);
    const acc = Buffer.from(this.#roots.subarray(last, last + 32));
    for (let k = this.#count - 2; k >= 0; k--) {
      this.#roots.copy(scratch, 1, 32 * k, 32 * k + 32);
      acc.copy(scratch, 33);
      scratch.write(hash('sha256', scratch, 'binary'), 33, 32, 'latin1');
      scratch.copy(acc, 0, 33, 65);
    }
    return acc;
  }
}
