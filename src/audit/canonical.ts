/**
 * Canonical bytes and hashes of audit records (pure). Records are serialized with RFC 8785 (JCS,
 * via the `canonicalize` package, pinned to the published vectors), so any implementation can
 * recompute the exact bytes that were hashed; leaf hashes are RFC 9162's SHA-256(0x00 ‖ bytes).
 */
import { hash } from 'node:crypto';
import { createRequire } from 'node:module';

// `canonicalize` is CommonJS (`module.exports = fn`) but its typings claim an ES default export.
const canonicalize = createRequire(import.meta.url)('canonicalize') as (input: unknown) => string | undefined;

/** Thrown for values an audit record may not contain (floats, non-finite numbers, undefined in arrays…). */
export class NonCanonicalValueError extends Error {
  constructor(readonly path: string) {
    super(`audit record value at ${path} cannot be stored: only strings, safe integers, booleans, null, arrays and objects`);
    this.name = 'NonCanonicalValueError';
  }
}

function check(value: unknown, path: string): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new NonCanonicalValueError(path);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      check(v, `${path}[${i}]`);
    });
    return;
  }
  if (typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) if (v !== undefined) check(v, `${path}.${k}`);
    return;
  }
  throw new NonCanonicalValueError(path);
}

/**
 * The RFC 8785 canonical UTF-8 bytes of a record. Precondition: numbers are safe integers (SPEC §4:
 * no floats); object properties whose value is undefined are omitted.
 * @throws NonCanonicalValueError for anything else.
 */
export function canonicalBytes(record: object): Buffer {
  check(record, '$');
  const text = canonicalize(record);
  if (text === undefined) throw new NonCanonicalValueError('$');
  return Buffer.from(text, 'utf8');
}

/** Canonical JSON of any JSON value, exactly as RFC 8785 prints it (floats included), for the vectors. */
export function canonicalJson(value: unknown): string | undefined {
  return canonicalize(value);
}

const ZERO = Buffer.of(0);

/** RFC 9162 leaf hash: SHA-256(0x00 ‖ bytes). */
export function leafHash(bytes: Uint8Array): Buffer {
  // One-shot hashing (crypto.hash) is markedly cheaper than a Hash object per leaf.
  return hash('sha256', Buffer.concat([ZERO, bytes]), 'buffer');
}

/** The `prev` of the first record of a log: 64 zeros. */
export const GENESIS_PREV = '0'.repeat(64);
