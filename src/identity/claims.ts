/**
 * Claim → identity mapping shared by the OIDC login client and the bearer-token verifier. Claims come
 * from IdPs we do not control, so every reader checks the shape and ignores what does not fit.
 */

/** A JSON object of claims (ID token payload, userinfo response, JWT payload). */
export type Claims = Readonly<Record<string, unknown>>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The value of claim `name`: a top-level claim of that exact name first (namespaced claims such as
 * `https://example.com/groups` contain dots), else a dotted path into nested objects
 * (`realm_access.roles`).
 */
export function claimValue(claims: Claims, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  if (!name.includes('.')) return undefined;
  let cur: unknown = claims;
  for (const part of name.split('.')) {
    if (!isRecord(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = cur[part];
  }
  return cur;
}

/** Whether claim `name` is present (with any value other than null). */
export function hasClaim(claims: Claims, name: string): boolean {
  const v = claimValue(claims, name);
  return v !== undefined && v !== null;
}

/** A non-empty string claim, or undefined. */
export function stringClaim(claims: Claims, name: string): string | undefined {
  const v = claimValue(claims, name);
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** A list-of-strings claim: an array (non-strings and empty strings dropped, duplicates removed) or a single string. */
export function stringListClaim(claims: Claims, name: string): string[] {
  const v = claimValue(claims, name);
  if (typeof v === 'string') return v === '' ? [] : [v];
  if (!Array.isArray(v)) return [];
  const out = new Set<string>();
  for (const item of v as unknown[]) if (typeof item === 'string' && item !== '') out.add(item);
  return [...out];
}

/** A NumericDate claim (seconds since the epoch) as epoch milliseconds, or undefined. */
export function epochMsClaim(claims: Claims, name: string): number | undefined {
  const v = claimValue(claims, name);
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : undefined;
}
