/**
 * Same-origin redirect targets (`rd`). Only a path on this host is ever accepted; everything that a
 * browser could read as another origin — `//host`, `/\host`, schemes, control characters, and their
 * percent-encoded forms — falls back to `/`.
 */

const SAFE_FALLBACK = '/';

function hasControlOrBackslash(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x5c) return true;
  }
  return false;
}

/** Returns `rd` when it is a safe same-origin path (with optional query), else `/`. Pure. */
export function safeReturnPath(rd: string | null | undefined): string {
  if (rd === null || rd === undefined || rd === '') return SAFE_FALLBACK;
  if (rd.length > 2048) return SAFE_FALLBACK;
  // Must be an absolute path: exactly one leading slash, and no backslash anywhere (browsers treat
  // `\` as `/` in special URLs).
  if (!rd.startsWith('/') || rd.startsWith('//') || rd.includes('\\')) return SAFE_FALLBACK;
  // No control characters or whitespace (browsers strip tab/newline inside URLs: `/\t/evil.com`).
  for (let i = 0; i < rd.length; i++) {
    const c = rd.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return SAFE_FALLBACK;
  }
  // Encoded variants: reject if any decoding layer starts a second slash or a backslash.
  let decoded = rd;
  for (let i = 0; i < 3; i++) {
    let next: string;
    try {
      next = decodeURIComponent(decoded);
    } catch {
      return SAFE_FALLBACK;
    }
    if (next.startsWith('//') || next.startsWith('/\\') || hasControlOrBackslash(next.slice(0, 3))) return SAFE_FALLBACK;
    if (next === decoded) break;
    decoded = next;
  }
  // Finally, a URL parser must agree that it stays on this origin.
  let parsed: URL;
  try {
    parsed = new URL(rd, 'http://portcullis.invalid');
  } catch {
    return SAFE_FALLBACK;
  }
  if (parsed.origin !== 'http://portcullis.invalid') return SAFE_FALLBACK;
  // Never send a user back into the gateway's own sign-in endpoints.
  if (parsed.pathname.startsWith('/.portcullis/login') || parsed.pathname.startsWith('/.portcullis/callback') || parsed.pathname.startsWith('/.portcullis/logout')) {
    return SAFE_FALLBACK;
  }
  // A Location header carries ASCII only (anything else made the response itself fail): other
  // characters are sent percent-encoded, as the browser's own URL parser would.
  return /^[\x21-\x7e]*$/.test(rd) ? rd : parsed.pathname + parsed.search + parsed.hash;
}
