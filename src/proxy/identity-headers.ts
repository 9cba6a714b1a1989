/**
 * The identity headers the gateway sends upstream (SPEC §3), built from a verified identity (pure).
 * Values are made header-safe: anything outside visible ASCII is percent-encoded, so an IdP claim can
 * never inject a header line or a second value.
 */
import type { Identity } from '../identity/index.js';

function headerSafe(value: string): string {
  // Visible ASCII and space, minus `%` (which we use as the escape) and `,` (the list separator).
  return value.replace(/[^\x20-\x24\x26-\x2b\x2d-\x7e]/gu, (c) => encodeURIComponent(c).replace(/,/g, '%2C'));
}

/** `[name, value]` pairs for X-Portcullis-User/-Email/-Groups/-MFA. `now` is epoch milliseconds. */
export function identityHeaders(identity: Identity, now: number): (readonly [string, string])[] {
  const out: (readonly [string, string])[] = [['x-portcullis-user', headerSafe(identity.user)]];
  if (identity.email !== undefined) out.push(['x-portcullis-email', headerSafe(identity.email)]);
  out.push(['x-portcullis-groups', identity.groups.map(headerSafe).join(',')]);
  if (identity.mfa !== undefined) {
    const age = Math.max(0, Math.floor((now - identity.mfa.at) / 1000));
    out.push(['x-portcullis-mfa', `${identity.mfa.factor};age=${age}`]);
  }
  return out;
}
