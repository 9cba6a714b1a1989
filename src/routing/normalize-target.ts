/**
 * Request-target normalization (pure): the first step of the pipeline. It turns Node's raw
 * `req.url` plus the `Host` header into the one canonical path that policy matching judges and that
 * the upstream receives, or rejects the request. Ambiguous input is rejected, never repaired.
 */
import { canonicalizeHost, sameHost, type CanonicalHost } from './host.js';

/** Why a target was rejected: a stable kebab-case id, suitable for audit records and logs. */
export type TargetRejectReason =
  | 'empty-target'
  | 'asterisk-form'
  | 'authority-form'
  | 'not-origin-form'
  | 'absolute-form-scheme'
  | 'absolute-form-authority-invalid'
  | 'absolute-form-authority-mismatch'
  | 'fragment'
  | 'control-character'
  | 'space'
  | 'non-ascii'
  | 'backslash'
  | 'path-parameter'
  | 'empty-segment'
  | 'malformed-percent-encoding'
  | 'encoded-slash'
  | 'encoded-backslash'
  | 'encoded-semicolon'
  | 'encoded-nul'
  | 'encoded-control-character'
  | 'invalid-utf8'
  | 'dot-segment'
  | 'double-encoding';

/** Why a Host was rejected. */
export type HostRejectReason = 'missing-host' | 'invalid-host';

/** The outcome of {@link normalizeTarget}. */
export type TargetResult =
  | {
      ok: true;
      host: CanonicalHost;
      /** Canonical path, exactly what is forwarded upstream. */
      path: string;
      /** Fully percent-decoded non-empty segments of `path`, used for matching (`/` → `[]`). */
      segments: readonly string[];
      /** Raw query after `?`, unchanged; `undefined` when there is no `?`. */
      query: string | undefined;
    }
  | { ok: false; code: 'GW_ERR_REQUEST_TARGET'; reason: TargetRejectReason }
  | { ok: false; code: 'GW_ERR_REQUEST_HOST'; reason: HostRejectReason };

/** A successful {@link TargetResult}. */
export type NormalizedTarget = Extract<TargetResult, { ok: true }>;

/** The outcome of {@link normalizePathSegment}. */
export type SegmentResult =
  | { ok: true; canonical: string; decoded: string }
  | { ok: false; reason: TargetRejectReason };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const ABSOLUTE_FORM = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const AUTHORITY_FORM = /^[^/?]*:[0-9]*$/;
const HEX = '0123456789ABCDEF';
/**
 * After one decode these still spell a character refused at the first layer (`.`, `/`, `\`, `;`, NUL
 * and the other control characters): a second decoder would be fooled.
 */
const DOUBLE_ENCODED = /%(?:2e|2f|5c|3b|[01][0-9a-f]|7f)/i;
/** Layers of `%25` unwrapped when looking for a dangerous escape (`%25252e` is `.` three decodes away). */
const MAX_ENCODING_LAYERS = 4;

/**
 * Validates and canonicalizes a request target.
 *
 * `rawTarget` is Node's `req.url`: the target's bytes as latin1 characters (Node's parser already
 * refuses most raw non-ASCII and control bytes; they are checked again here). `hostHeader` is the
 * single `Host` header value (the caller rejects repeated headers). `scheme` is the listener's.
 *
 * Accepted forms: origin-form (`/path?query`), and absolute-form (`http://host/path`) only when its
 * scheme equals `scheme` and its authority equals the Host header after canonicalization (an empty
 * absolute path becomes `/`). Rejected: `*`, authority-form, anything else; `#` anywhere; raw
 * control characters, spaces or non-ASCII anywhere; in the path a raw `\` or `;`; malformed
 * escapes; escapes decoding to `/`, `\`, `;`, NUL or control characters; decoded bytes that are not
 * well-formed UTF-8 (overlong forms included); `.` and `..` segments raw or encoded; segments that
 * still contain `%2e`, `%2f`, `%5c`, `%3b` or a control escape after one decode, or after peeling
 * further `%25` layers (double and deeper encoding); empty segments
 * (`//`), except for a single trailing slash.
 *
 * Canonical path: escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded, every other
 * escape gets upper-case hex, and other raw characters are kept as they are. The query is passed
 * through byte for byte.
 *
 * Look-alike characters (fullwidth `／` U+FF0F, `．` U+FF0E, zero-width U+200B …) are not folded
 * or rejected: they are ordinary characters, matched literally, so `/admin%E2%80%8B` is not
 * `/admin`. An upstream that folds them (NFKC) would see a path the policy did not judge; that is an
 * upstream bug this layer does not guess around.
 *
 * Deterministic: the same input always gives the same result.
 */
export function normalizeTarget(rawTarget: string, hostHeader: string | undefined, scheme: 'http' | 'https'): TargetResult {
  if (rawTarget.length === 0) return targetError('empty-target');
  if (rawTarget === '*') return targetError('asterisk-form');

  const charError = checkTargetCharacters(rawTarget);
  if (charError !== undefined) return targetError(charError);

  let pathAndQuery: string;
  let authority: string | undefined;
  if (rawTarget.startsWith('/')) {
    pathAndQuery = rawTarget;
  } else {
    const absolute = ABSOLUTE_FORM.exec(rawTarget);
    if (absolute === null) {
      return targetError(AUTHORITY_FORM.test(rawTarget) ? 'authority-form' : 'not-origin-form');
    }
    if ((absolute[1] ?? '').toLowerCase() !== scheme) return targetError('absolute-form-scheme');
    const rest = rawTarget.slice(absolute[0].length);
    const end = rest.search(/[/?]/);
    authority = end < 0 ? rest : rest.slice(0, end);
    const tail = end < 0 ? '' : rest.slice(end);
    pathAndQuery = tail.startsWith('/') ? tail : `/${tail}`;
  }

  if (hostHeader === undefined) return hostError('missing-host');
  const host = canonicalizeHost(hostHeader, scheme);
  if (host === undefined) return hostError('invalid-host');
  if (authority !== undefined) {
    const targetHost = canonicalizeHost(authority, scheme);
    if (targetHost === undefined) return targetError('absolute-form-authority-invalid');
    if (!sameHost(targetHost, host)) return targetError('absolute-form-authority-mismatch');
  }

  const q = pathAndQuery.indexOf('?');
  const rawPath = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q < 0 ? undefined : pathAndQuery.slice(q + 1);

  const parts = rawPath.slice(1).split('/');
  // A single trailing slash is allowed (`/a/`); `/` itself is one empty part.
  const trailingSlash = parts.length > 1 && parts[parts.length - 1] === '';
  if (trailingSlash || rawPath === '/') parts.pop();

  const canonical: string[] = [];
  const segments: string[] = [];
  for (const part of parts) {
    const seg = normalizePathSegment(part);
    if (!seg.ok) return targetError(seg.reason);
    canonical.push(seg.canonical);
    segments.push(seg.decoded);
  }
  const path = `/${canonical.join('/')}${trailingSlash ? '/' : ''}`;
  return { ok: true, host, path, segments, query };
}

/**
 * Validates and canonicalizes one raw path segment (the text between two `/`), with the same
 * rules {@link normalizeTarget} applies. Also used to read configured path prefixes, so a prefix
 * and a request path are decoded identically.
 */
export function normalizePathSegment(raw: string): SegmentResult {
  if (raw.length === 0) return { ok: false, reason: 'empty-segment' };
  let canonical = '';
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hi = hexValue(raw.charCodeAt(i + 1));
      const lo = hexValue(raw.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return { ok: false, reason: 'malformed-percent-encoding' };
      const b = hi * 16 + lo;
      i += 2;
      if (b === 0x2f) return { ok: false, reason: 'encoded-slash' };
      if (b === 0x5c) return { ok: false, reason: 'encoded-backslash' };
      if (b === 0x3b) return { ok: false, reason: 'encoded-semicolon' };
      if (b === 0x00) return { ok: false, reason: 'encoded-nul' };
      if (b < 0x20 || b === 0x7f) return { ok: false, reason: 'encoded-control-character' };
      bytes.push(b);
      canonical += isUnreserved(b) ? String.fromCharCode(b) : `%${HEX[hi] ?? ''}${HEX[lo] ?? ''}`;
      continue;
    }
    const reason = rawPathCharError(c);
    if (reason !== undefined) return { ok: false, reason };
    bytes.push(c);
    canonical += raw.charAt(i);
  }
  let decoded = raw; // all-ASCII without escapes: nothing to decode
  if (bytes.length !== raw.length) {
    try {
      decoded = utf8.decode(Uint8Array.from(bytes));
    } catch {
      return { ok: false, reason: 'invalid-utf8' };
    }
  }
  if (decoded === '.' || decoded === '..') return { ok: false, reason: 'dot-segment' };
  // Peel `%25` layers too: an upstream that decodes until nothing changes must not find a `..` either.
  let layered = decoded;
  for (let layer = 0; layer < MAX_ENCODING_LAYERS; layer++) {
    if (DOUBLE_ENCODED.test(layered)) return { ok: false, reason: 'double-encoding' };
    const next = layered.replace(/%25/gi, '%');
    if (next === layered) break;
    layered = next;
  }
  return { ok: true, canonical, decoded };
}

/** Checks every character of the whole target (path and query). */
function checkTargetCharacters(target: string): TargetRejectReason | undefined {
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x23 /* # */) return 'fragment';
    if (c < 0x20 || c === 0x7f) return 'control-character';
    if (c === 0x20) return 'space';
    if (c > 0x7e) return 'non-ascii';
  }
  return undefined;
}

/** Raw characters the path may not contain beyond those {@link checkTargetCharacters} refuses. */
function rawPathCharError(c: number): TargetRejectReason | undefined {
  if (c === 0x5c /* \ */) return 'backslash';
  if (c === 0x3b /* ; */) return 'path-parameter';
  if (c === 0x23) return 'fragment';
  if (c < 0x20 || c === 0x7f) return 'control-character';
  if (c === 0x20) return 'space';
  if (c > 0x7e) return 'non-ascii';
  return undefined;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1; // also NaN past the end of the string
}

function isUnreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x2e || // .
    b === 0x5f || // _
    b === 0x7e // ~
  );
}

function targetError(reason: TargetRejectReason): TargetResult {
  return { ok: false, code: 'GW_ERR_REQUEST_TARGET', reason };
}

function hostError(reason: HostRejectReason): TargetResult {
  return { ok: false, code: 'GW_ERR_REQUEST_HOST', reason };
}
