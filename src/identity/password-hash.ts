/**
 * Password hashing for local users: scrypt (node:crypto), encoded as a PHC-style string
 * `$scrypt$ln=<log2 N>,r=<block size>,p=<parallelism>$<salt>$<hash>` (standard base64 without padding).
 *
 * Cost: ln=14, r=8, p=1 (16 MiB) takes about 70–80 ms per hash on the 2-vCPU reference machine
 * (ln=15: 150 ms, ln=17: 620 ms). OWASP's floor is N=2^17; the cost lives in every hash, so it can be
 * raised later (new hashes use the new cost, old ones keep verifying with theirs).
 */
import { randomBytes, randomInt, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** The cost new hashes get (see the module comment for measurements). */
export const DEFAULT_SCRYPT_COST = { ln: 14, r: 8, p: 1 } as const;

/** scrypt parameters as written in an encoded hash. */
export interface ScryptCost {
  /** log2 of N, the CPU/memory cost. */
  readonly ln: number;
  /** Block size. */
  readonly r: number;
  /** Parallelism. */
  readonly p: number;
}

const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Longer inputs are refused: they are never real passwords, and they would only cost CPU. */
const MAX_PASSWORD_BYTES = 4096;
/** Bounds on parameters read from a hash; anything outside is refused rather than computed. */
const LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16], memoryBytes: 1024 ** 3, saltBytes: [8, 64], hashBytes: [16, 64] } as const;

const ENCODED_RE = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{11,86})\$([A-Za-z0-9+/]{22,86})$/;

interface Parsed {
  cost: ScryptCost;
  salt: Buffer;
  hash: Buffer;
}

/**
 * Hashes `password` with a fresh random salt.
 * @param cost defaults to {@link DEFAULT_SCRYPT_COST}; tests may pass a cheaper one.
 * @throws RangeError when the password is empty or longer than 4096 bytes in UTF-8.
 */
export async function hashPassword(password: string, cost: ScryptCost = DEFAULT_SCRYPT_COST): Promise<string> {
  const input = normalize(password);
  if (input.length === 0) throw new RangeError('the password is empty');
  if (input.length > MAX_PASSWORD_BYTES) throw new RangeError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  if (!withinLimits(cost)) throw new RangeError('scrypt parameters out of range');
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(input, salt, cost, HASH_BYTES);
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${b64(salt)}$${b64(hash)}`;
}

/**
 * Checks `password` against an encoded hash in constant time. Never throws: a malformed or
 * unknown encoding, or parameters outside sane bounds (which could make one check take minutes or
 * gigabytes), yields false.
 */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parsed = parseHash(encoded);
  const input = normalize(password);
  if (parsed === undefined || input.length > MAX_PASSWORD_BYTES) return false;
  try {
    const actual = await derive(input, parsed.salt, parsed.cost, parsed.hash.length);
    return timingSafeEqual(actual, parsed.hash);
  } catch {
    return false;
  }
}

/**
 * Costs what {@link verifyPassword} costs for a hash made with {@link DEFAULT_SCRYPT_COST}, and always
 * resolves false. Used for unknown user names, so that the time an answer takes does not tell
 * whether the user exists.
 */
export async function dummyVerify(password: string): Promise<false> {
  const input = normalize(password);
  try {
    const actual = await derive(input.subarray(0, MAX_PASSWORD_BYTES), randomBytes(SALT_BYTES), DEFAULT_SCRYPT_COST, HASH_BYTES);
    timingSafeEqual(actual, Buffer.alloc(HASH_BYTES));
  } catch {
    // Nothing to report: the answer is false either way.
  }
  return false;
}

/** True when `encoded` is a hash {@link verifyPassword} would compute (format and parameter bounds). */
export function isPasswordHash(encoded: string): boolean {
  return parseHash(encoded) !== undefined;
}

const PASSWORD_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/**
 * A random password of `length` characters from letters and digits without look-alikes (0/O, 1/l/I):
 * 24 characters carry about 139 bits.
 */
export function generatePassword(length = 24): string {
  let out = '';
  for (let i = 0; i < length; i++) out += PASSWORD_ALPHABET.charAt(randomInt(PASSWORD_ALPHABET.length));
  return out;
}

function parseHash(encoded: string): Parsed | undefined {
  const value: unknown = encoded; // JavaScript callers may pass anything
  if (typeof value !== 'string') return undefined;
  const m = ENCODED_RE.exec(encoded);
  if (m === null) return undefined;
  const cost: ScryptCost = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (!withinLimits(cost)) return undefined;
  const salt = fromB64(m[4] ?? '');
  const hash = fromB64(m[5] ?? '');
  if (salt === undefined || hash === undefined) return undefined;
  if (salt.length < LIMITS.saltBytes[0] || salt.length > LIMITS.saltBytes[1]) return undefined;
  if (hash.length < LIMITS.hashBytes[0] || hash.length > LIMITS.hashBytes[1]) return undefined;
  return { cost, salt, hash };
}

function withinLimits(cost: ScryptCost): boolean {
  const inRange = (v: number, [lo, hi]: readonly [number, number]) => Number.isInteger(v) && v >= lo && v <= hi;
  return inRange(cost.ln, LIMITS.ln) && inRange(cost.r, LIMITS.r) && inRange(cost.p, LIMITS.p) && memoryOf(cost) <= LIMITS.memoryBytes;
}

/** scrypt's memory use: 128·N·r for the large vector plus 128·r·p for the blocks. */
function memoryOf(cost: ScryptCost): number {
  return 128 * 2 ** cost.ln * cost.r + 128 * cost.r * cost.p;
}

function derive(password: Buffer, salt: Buffer, cost: ScryptCost, keylen: number): Promise<Buffer> {
  const options: ScryptOptions = { N: 2 ** cost.ln, r: cost.r, p: cost.p, maxmem: memoryOf(cost) + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, options, (err, key) => {
      if (err === null) resolve(key);
      else reject(err);
    });
  });
}

/** NFC, so that the same password typed on different systems hashes the same. */
function normalize(password: string): Buffer {
  const value: unknown = password; // JavaScript callers may pass anything
  return Buffer.from(typeof value === 'string' ? value.normalize('NFC') : '', 'utf8');
}

function b64(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '');
}

function fromB64(text: string): Buffer | undefined {
  // Canonical only: a length of 4k+1 characters cannot be base64, and the round trip must match.
  if (text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return b64(bytes) === text ? bytes : undefined;
}
