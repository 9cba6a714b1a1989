/**
 * One-time recovery codes: 20 characters of Crockford base32 (100 bits), shown once as
 * `xxxxx-xxxxx-xxxxx-xxxxx` in lower case, and stored only as the hex SHA-256 of their normalized
 * form. 100 random bits make a slow password hash unnecessary.
 *
 * Normalization forgives what people get wrong when copying a code: case, spaces and dashes are
 * ignored, and the letters the alphabet leaves out because they look like digits are read as those
 * digits (`o` → `0`, `i` and `l` → `1`), as Crockford's base32 prescribes.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RecoveryCode } from './factors.js';

/** Crockford's base32 alphabet (no i, l, o, u), lower case. */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
/** Characters per code (5 bits each: 100 bits). */
export const RECOVERY_CODE_LENGTH = 20;
const GROUP = 5;
const MAX_CODES = 100;

/** The result of {@link useRecoveryCode}. */
export type RecoveryCodeUse =
  | {
      ok: true;
      /** All stored codes, the one just used now marked with `usedAt`: store this in place of the old list. */
      remaining: RecoveryCode[];
      /** How many codes of `remaining` are still unused. */
      unused: number;
    }
  | { ok: false; reason: 'malformed' | 'wrong-code' | 'already-used' };

/**
 * `n` new codes: `codes` to show the user once (lower case, grouped by dashes), `stored` to keep
 * (their hashes, in the same order, all unused).
 * @throws TypeError when `n` is not an integer from 1 to 100.
 */
export function newRecoveryCodes(n = 10): { codes: string[]; stored: RecoveryCode[] } {
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_CODES) throw new TypeError(`expected 1 to ${MAX_CODES} recovery codes, got ${n}`);
  const seen = new Set<string>();
  const codes: string[] = [];
  const stored: RecoveryCode[] = [];
  while (codes.length < n) {
    const raw = randomCode();
    if (seen.has(raw)) continue; // 2^-100: never, but duplicates would be harmless only in theory
    seen.add(raw);
    codes.push(formatCode(raw));
    stored.push({ hash: hashNormalized(raw), usedAt: undefined });
  }
  return { codes, stored };
}

/**
 * The normalized form of a code as typed (the string that is hashed): 20 lower-case Crockford base32
 * characters without separators. Case-insensitive; spaces and dashes are ignored; `o` reads as `0`,
 * `i` and `l` as `1`. Undefined when the input cannot be a recovery code.
 */
export function normalizeRecoveryCode(input: string): string | undefined {
  if (input.length > 200) return undefined;
  const compact = input
    .toLowerCase()
    .replace(/[\s-]+/g, '')
    .replace(/o/g, '0')
    .replace(/[il]/g, '1');
  if (compact.length !== RECOVERY_CODE_LENGTH) return undefined;
  for (const c of compact) if (!ALPHABET.includes(c)) return undefined;
  return compact;
}

/** The hash stored for a code (hex SHA-256 of its normalized form), or undefined when `input` is malformed. */
export function hashRecoveryCode(input: string): string | undefined {
  const normalized = normalizeRecoveryCode(input);
  return normalized === undefined ? undefined : hashNormalized(normalized);
}

/**
 * Uses the code `input` against `stored`. Every stored hash is compared in constant time, without
 * stopping at a match, so the time taken does not tell which code matched.
 * On success, `remaining` is `stored` with the matched code marked used at `now`; the caller stores it
 * (atomically with the check, e.g. inside `CredentialStore.update`, so two concurrent uses of one code
 * cannot both succeed).
 */
export function useRecoveryCode(stored: readonly RecoveryCode[], input: string, now: number): RecoveryCodeUse {
  const normalized = normalizeRecoveryCode(input);
  if (normalized === undefined) return { ok: false, reason: 'malformed' };
  const given = Buffer.from(hashNormalized(normalized), 'hex');

  let unusedMatch = -1;
  let usedMatch = -1;
  stored.forEach((code, i) => {
    const candidate = Buffer.from(code.hash, 'hex');
    // A corrupt stored hash (wrong length) matches nothing; compare against the input itself to keep the work the same.
    const equal = candidate.length === given.length ? timingSafeEqual(candidate, given) : !timingSafeEqual(given, given);
    const unused = code.usedAt === undefined;
    unusedMatch = equal && unused ? i : unusedMatch;
    usedMatch = equal && !unused ? i : usedMatch;
  });

  if (unusedMatch < 0) return { ok: false, reason: usedMatch < 0 ? 'wrong-code' : 'already-used' };
  const remaining = stored.map((code, i) => (i === unusedMatch ? { hash: code.hash, usedAt: now } : code));
  return { ok: true, remaining, unused: remaining.filter((c) => c.usedAt === undefined).length };
}

function randomCode(): string {
  // 256 is a multiple of 32: taking 5 bits of each random byte is uniform.
  const bytes = randomBytes(RECOVERY_CODE_LENGTH);
  let out = '';
  for (const b of bytes) out += ALPHABET.charAt(b & 31);
  return out;
}

function formatCode(raw: string): string {
  const groups: string[] = [];
  for (let i = 0; i < raw.length; i += GROUP) groups.push(raw.slice(i, i + GROUP));
  return groups.join('-');
}

function hashNormalized(normalized: string): string {
  return createHash('sha256').update(normalized, 'utf8').digest('hex');
}
