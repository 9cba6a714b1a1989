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

/** A property name V8 enumerates before the others, in numeric order (an array index): no fast path for it. */
function indexLike(key: string): boolean {
  const c = key.charCodeAt(0);
  return c >= 48 && c <= 57 && /^(?:0|[1-9]\d*)$/.test(key) && Number(key) < 4294967295;
}

/** Marks a value the fast path cannot order (an index-like key somewhere): the reference serializer takes it. */
const SLOW = Symbol('slow');

/**
 * Checks a value as {@link check} does and returns it in RFC 8785 key order: the value itself when
 * every object in it already lists its keys sorted by UTF-16 code units and has no undefined
 * property (records built by the gateway mostly do), else a copy in that order. `SLOW` when an
 * object has an index-like key, whose place V8's enumeration would not keep.
 */
function ordered(value: unknown, path: string): unknown {
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'string' || typeof value === 'boolean' || value === null) return value;
    if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
    throw new NonCanonicalValueError(path);
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      const o = ordered(v, `${path}[${i}]`);
      if (o === SLOW) return SLOW;
      if (o !== v) copy ??= value.slice(0, i);
      if (copy !== undefined) copy.push(o);
    }
    return copy ?? value;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  let same = true;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    if (indexLike(k)) return SLOW;
    if (i > 0 && (keys[i - 1] as string) > k) same = false;
  }
  const out: Record<string, unknown> = {};
  if (!same) keys.sort();
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) {
      same = false;
      continue;
    }
    const o = ordered(v, `${path}.${k}`);
    if (o === SLOW) return SLOW;
    if (o !== v) same = false;
    out[k] = o;
  }
  return same ? value : out;
}

/**
 * The RFC 8785 canonical UTF-8 bytes of a record. Precondition: numbers are safe integers (SPEC §4:
 * no floats); object properties whose value is undefined are omitted.
 *
 * Fast path: with only safe integers for numbers, RFC 8785 is JSON.stringify of the value with every
 * object's keys in UTF-16 code unit order (its strings are ECMAScript's JSON strings), so the value
 * is put in that order (no copy when it already is) and V8's JSON.stringify prints it — about twice
 * as fast as the reference serializer, which takes the rare value with index-like keys. A property
 * test holds the two to the same bytes.
 * @throws NonCanonicalValueError for anything else.
 */
export function canonicalBytes(record: object): Buffer {
  const o = ordered(record, '$');
  if (o !== SLOW) return Buffer.from(JSON.stringify(o), 'utf8');
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

/**
 * The UTF-8 bytes of a record's canonical text and their leaf hash, both from one buffer holding
 * 0x00 ‖ bytes (the hash input): no second buffer, no copy ({@link leafHash} concatenates).
 */
export function hashedText(text: string): { bytes: Buffer; leaf: Buffer } {
  const input = Buffer.from(`\u0000${text}`, 'utf8');
  return { bytes: input.subarray(1), leaf: hash('sha256', input, 'buffer') };
}

/** The `prev` of the first record of a log: 64 zeros. */
export const GENESIS_PREV = '0'.repeat(64);
