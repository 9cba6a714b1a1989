/**
 * The gateway's cookies. Over HTTPS they carry the `__Host-` prefix (Secure, Path=/, no Domain: the
 * browser refuses them from any other origin, which defeats cookie tossing from sibling hosts); on
 * plain-HTTP localhost, where browsers refuse `__Host-`, a clearly named variant is used.
 */
import { timingSafeEqual } from 'node:crypto';

/** Cookie names and attributes for one public URL. */
export interface CookiePolicy {
  /** The session id. */
  readonly session: string;
  /** The login form's CSRF token. */
  readonly csrf: string;
  /** Binds an OIDC sign-in to the browser that started it (on the public host). */
  readonly oidc: string;
  /** Binds a cross-host session hand-off to the browser that started it (on the app host). */
  readonly handoff: string;
  readonly secure: boolean;
}

/** The cookie policy for a gateway served at `publicUrl`. */
export function cookiePolicy(publicUrl: string): CookiePolicy {
  const secure = new URL(publicUrl).protocol === 'https:';
  return secure
    ? { session: '__Host-portcullis', csrf: '__Host-portcullis-csrf', oidc: '__Host-portcullis-oidc', handoff: '__Host-portcullis-handoff', secure }
    : { session: 'portcullis_session', csrf: 'portcullis_csrf', oidc: 'portcullis_oidc', handoff: 'portcullis_handoff', secure };
}

/**
 * Reads one cookie from a Cookie header. When the name appears more than once (a tossed cookie next
 * to the real one), the value is ambiguous and undefined is returned.
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let found: string | undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue;
    if (found !== undefined) return undefined;
    found = part.slice(eq + 1).trim();
  }
  return found;
}

/** Serializes a Set-Cookie value: always HttpOnly, SameSite=Lax, Path=/ (and Secure over HTTPS). */
export function setCookie(policy: CookiePolicy, name: string, value: string, maxAgeSeconds: number): string {
  const parts = [`${name}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Lax', `Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}`];
  if (policy.secure) parts.push('Secure');
  return parts.join('; ');
}

/** A Set-Cookie value that deletes the cookie. */
export function clearCookie(policy: CookiePolicy, name: string): string {
  return setCookie(policy, name, '', 0);
}

/** Constant-time string equality (false on length mismatch without leaking where they differ). */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

/**
 * True when a state-changing request comes from this origin, as far as the browser says: `Origin`
 * (when sent) must equal `origin`, and `Sec-Fetch-Site` (when sent) must be `same-origin`. Clients
 * that send neither (curl, scripts) are judged by the CSRF token alone.
 */
export function sameOriginRequest(headers: { origin?: string | undefined; 'sec-fetch-site'?: string | string[] | undefined }, origin: string): boolean {
  const o = headers.origin;
  if (o !== undefined && o !== origin) return false;
  const site = headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return false;
  return true;
}
