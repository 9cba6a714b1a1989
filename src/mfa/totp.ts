/**
 * The TOTP factor (RFC 6238): HMAC-SHA1, 6 digits, 30-second steps, the profile every authenticator
 * app supports. The HOTP/TOTP arithmetic, base32 and the `otpauth://` URI come from `otpauth`; the
 * verification loop is ours, so that it compares in constant time, never stops early, and refuses
 * replays.
 */
import { timingSafeEqual, randomBytes } from 'node:crypto';
import { HOTP, Secret, TOTP } from 'otpauth';
import { toString as qrToString } from 'qrcode';

/** Seconds per time step. */
export const TOTP_PERIOD_SECONDS = 30;
/** Digits per code. */
export const TOTP_DIGITS = 6;
/** Bytes of a new shared secret (160 bits, the RFC 4226 recommendation; 32 base32 characters). */
export const TOTP_SECRET_BYTES = 20;
/** Shorter secrets are refused (RFC 4226: at least 128 bits). */
const MIN_SECRET_BYTES = 16;
/** The largest accepted `window` (steps each side). */
const MAX_WINDOW = 10;
const ALGORITHM = 'SHA1';

/** The result of {@link checkTotp}. */
export type TotpCheck =
  | { ok: true; step: number }
  | {
      ok: false;
      /** `malformed`: not 6 digits; `wrong-code`: no step in the window matches; `replayed`: the code matches only steps at or before `lastStep`. */
      reason: 'malformed' | 'wrong-code' | 'replayed';
    };

/** A new random shared secret: 160 bits, base32 (RFC 4648, upper case, no padding). */
export function newTotpSecret(): string {
  return new Secret({ buffer: bufferOf(randomBytes(TOTP_SECRET_BYTES)) }).base32;
}

/** The time step (floor(unix seconds / 30)) of `now` (epoch ms). */
export function totpStep(now: number): number {
  if (!Number.isFinite(now)) throw new TypeError(`expected a finite time in ms, got ${now}`);
  return Math.floor(now / 1000 / TOTP_PERIOD_SECONDS);
}

/**
 * The code for time step `step` (default 6 digits; `digits` exists for the RFC 6238 test vectors).
 * @throws TypeError when `secret` is not base32 or shorter than 128 bits.
 */
export function totpCodeForStep(secret: string, step: number, digits: number = TOTP_DIGITS): string {
  if (!Number.isSafeInteger(step) || step < 0) throw new TypeError(`expected a non-negative integer time step, got ${step}`);
  return HOTP.generate({ secret: parseSecret(secret), algorithm: ALGORITHM, digits, counter: step });
}

/**
 * The Key URI an authenticator app scans: `otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
 * @throws TypeError when `issuer` or `account` is empty, `issuer` contains a colon, or `secret` is not a valid secret.
 */
export function totpUri({ issuer, account, secret }: { issuer: string; account: string; secret: string }): string {
  if (issuer === '' || account === '') throw new TypeError('a TOTP URI needs a non-empty issuer and account');
  if (issuer.includes(':')) throw new TypeError(`a TOTP issuer must not contain a colon: ${JSON.stringify(issuer)}`);
  return new TOTP({
    issuer,
    label: account,
    issuerInLabel: true,
    secret: parseSecret(secret),
    algorithm: ALGORITHM,
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
  }).toString();
}

/**
 * A QR code of `uri` as an `<svg>` element (no XML declaration, no scripts), to be placed inline in an
 * HTML page; 240 px square by default (its `width`/`height` attributes; CSS may resize it, it has a
 * `viewBox`). The image holds the shared secret: serve it only to its user, with `Cache-Control: no-store`.
 */
export async function totpQrSvg(uri: string): Promise<string> {
  const svg = await qrToString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 4, width: 240 });
  return svg.trim();
}

/**
 * Checks `code` against the steps `step(now) - window … step(now) + window`.
 *
 * The code is normalized (white space removed) and must then be exactly 6 ASCII digits. Every step of
 * the window is computed and compared in constant time, without stopping at a match. When several
 * steps match (a 1-in-a-million coincidence), the latest counts. A match whose step is at or before
 * `lastStep` is refused as `replayed`: a code accepted once (the caller stores the returned `step` as
 * the new `lastStep`) is never accepted again, nor is any code older than it.
 * @throws TypeError on an invalid `secret`, `now`, `lastStep` or `window` (programming errors, not user input).
 */
export function checkTotp({
  secret,
  code,
  now,
  lastStep,
  window = 1,
}: {
  /** The plain base32 secret (opened from the secret box). */
  secret: string;
  /** What the user typed. */
  code: string;
  /** Epoch ms. */
  now: number;
  /** The credential's `lastStep` (0 or less when no code was accepted yet). */
  lastStep: number;
  /** Steps accepted on each side of the current one (clock drift); default 1, i.e. ±30 s. */
  window?: number;
}): TotpCheck {
  const key = parseSecret(secret);
  const current = totpStep(now);
  if (!Number.isSafeInteger(lastStep)) throw new TypeError(`expected an integer lastStep, got ${lastStep}`);
  if (!Number.isSafeInteger(window) || window < 0 || window > MAX_WINDOW) throw new TypeError(`expected a window of 0 to ${MAX_WINDOW} steps, got ${window}`);

  const normalized = code.replace(/\s+/g, '');
  if (!/^[0-9]{6}$/.test(normalized)) return { ok: false, reason: 'malformed' };
  const given = Buffer.from(normalized, 'ascii');

  let matched = -1;
  for (let step = current - window; step <= current + window; step++) {
    if (step < 0) continue;
    const expected = Buffer.from(HOTP.generate({ secret: key, algorithm: ALGORITHM, digits: TOTP_DIGITS, counter: step }), 'ascii');
    // Both are 6 ASCII bytes; no early exit, so the time taken does not depend on which step matched.
    const equal = timingSafeEqual(expected, given);
    matched = equal ? step : matched;
  }
  if (matched < 0) return { ok: false, reason: 'wrong-code' };
  if (matched <= lastStep) return { ok: false, reason: 'replayed' };
  return { ok: true, step: matched };
}

function parseSecret(secret: string): Secret {
  if (!/^[A-Z2-7]+=*$/i.test(secret)) throw new TypeError('a TOTP secret must be base32');
  const parsed = Secret.fromBase32(secret);
  if (parsed.bytes.length < MIN_SECRET_BYTES) throw new TypeError(`a TOTP secret must have at least ${MIN_SECRET_BYTES * 8} bits`);
  return parsed;
}

/** An ArrayBuffer holding exactly the bytes of `bytes` (a Buffer may be a view into a larger pool). */
function bufferOf(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy.buffer;
}
