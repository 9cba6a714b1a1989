/**
 * Header rules for what crosses the gateway (pure). Requests: hop-by-hop headers, headers named in
 * `Connection`, every client-sent `X-Portcullis-*`, `X-Forwarded-*`/`Forwarded`/`X-Real-IP`,
 * method-override and URL-rewrite headers, and the gateway's own session cookie are removed whatever
 * the client sends; the gateway then adds its own. Responses: hop-by-hop headers are removed.
 *
 * Header names are compared after lower-casing and reading every character other than a letter or a
 * digit as `-`, because many upstream stacks (CGI, nginx with underscores_in_headers, WSGI, PHP) treat
 * `X_Portcullis_User` — and some `X.Portcullis.User` — as `X-Portcullis-User` (oauth2-proxy
 * CVE-2025-64484; Traefik CVE-2026-33433).
 */

/** RFC 9110 §7.6.1 hop-by-hop headers, plus the non-standard ones seen in the field. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'http2-settings',
]);

/** Headers the gateway owns or that change how an upstream routes or authorizes a request. */
const GATEWAY_OWNED = new Set([
  'host',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-override-url',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-method',
  'expect',
  'content-length',
]);

const OWNED_PREFIXES = ['x-portcullis-', 'x-forwarded-'];

/**
 * Whether a cookie is the gateway's own (session, CSRF, sign-in binding …): `__Host-portcullis`,
 * `__Host-portcullis-*` and `portcullis_*`. These are never forwarded to an upstream.
 */
export function isGatewayCookie(name: string): boolean {
  return name === '__Host-portcullis' || name.startsWith('__Host-portcullis-') || name.startsWith('portcullis_');
}

/** Canonical comparison form of a header name: lower case, every character but a letter or digit read as `-`. */
export function headerKey(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '-');
}

function isOwnedOrHopByHop(key: string, connectionTokens: ReadonlySet<string>): boolean {
  if (HOP_BY_HOP.has(key) || GATEWAY_OWNED.has(key) || connectionTokens.has(key)) return true;
  for (const p of OWNED_PREFIXES) if (key.startsWith(p)) return true;
  return false;
}

/** Lower-cased tokens of every `Connection` header (each names a header to drop). */
export function connectionTokens(rawHeaders: readonly string[]): Set<string> {
  const tokens = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name === undefined || headerKey(name) !== 'connection') continue;
    for (const t of (rawHeaders[i + 1] ?? '').split(',')) {
      const tok = headerKey(t.trim());
      if (tok !== '') tokens.add(tok);
    }
  }
  return tokens;
}

/** Removes the gateway's session cookies from a Cookie header value; undefined when nothing is left. */
export function stripSessionCookies(value: string): string | undefined {
  const kept = value
    .split(';')
    .map((c) => c.trim())
    .filter((c) => {
      if (c === '') return false;
      const eq = c.indexOf('=');
      const name = (eq === -1 ? c : c.slice(0, eq)).trim();
      return !isGatewayCookie(name);
    });
  return kept.length === 0 ? undefined : kept.join('; ');
}

/** What the gateway knows about the hop it received the request on. */
export interface ForwardingFacts {
  /** The immediate peer's address. */
  readonly remoteAddress: string;
  /** Whether that peer is a trusted proxy (then its X-Forwarded-* are kept and extended). */
  readonly peerTrusted: boolean;
  /** The scheme the client used to reach the gateway. */
  readonly proto: 'http' | 'https';
  /** The Host header as the client sent it. */
  readonly host: string;
  /** The Host header to send upstream. */
  readonly upstreamHost: string;
  /** The gateway's request id. */
  readonly requestId: string;
  /** Identity headers built by the gateway (`X-Portcullis-User` …), added after stripping. */
  readonly identityHeaders?: readonly (readonly [string, string])[];
  /** Keep `Upgrade`/`Connection: upgrade` (WebSocket handshakes). */
  readonly keepUpgrade?: boolean;
  /** Drop `Authorization` (it carried the bearer token the gateway itself consumed). */
  readonly dropAuthorization?: boolean;
  /** The request's Content-Length, when it has one, re-emitted once. */
  readonly contentLength?: string | undefined;
}

/**
 * Builds the flat `[name, value, …]` header list sent upstream from the client's raw headers.
 * Precondition: `rawHeaders` is Node's `req.rawHeaders` (names and values alternating).
 */
export function buildUpstreamHeaders(rawHeaders: readonly string[], facts: ForwardingFacts): string[] {
  const dropNamed = connectionTokens(rawHeaders);
  const out: string[] = [];
  let incomingXff: string | undefined;
  let incomingProto: string | undefined;
  let incomingHost: string | undefined;
  const cookies: string[] = [];

  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    const value = rawHeaders[i + 1];
    if (name === undefined || value === undefined) continue;
    const key = headerKey(name);
    if (key === 'cookie') {
      cookies.push(value);
      continue;
    }
    if (key === 'authorization' && facts.dropAuthorization === true) continue;
    if (isOwnedOrHopByHop(key, dropNamed)) {
      if (facts.peerTrusted && key === name.toLowerCase()) {
        if (key === 'x-forwarded-for') incomingXff = incomingXff === undefined ? value : `${incomingXff}, ${value}`;
        else if (key === 'x-forwarded-proto' && incomingProto === undefined) incomingProto = value;
        else if (key === 'x-forwarded-host' && incomingHost === undefined) incomingHost = value;
      }
      continue;
    }
    out.push(name, value);
  }

  if (cookies.length > 0) {
    const kept = stripSessionCookies(cookies.join('; '));
    if (kept !== undefined) out.push('cookie', kept);
  }

  // The gateway's own headers go first: an upstream that stops reading after N header lines (Node:
  // 2000) must not lose them behind the client's.
  const own: string[] = [
    'host',
    facts.upstreamHost,
    'x-forwarded-for',
    incomingXff === undefined ? facts.remoteAddress : `${incomingXff}, ${facts.remoteAddress}`,
    'x-forwarded-proto',
    incomingProto ?? facts.proto,
    'x-forwarded-host',
    incomingHost ?? facts.host,
    'x-portcullis-request-id',
    facts.requestId,
  ];
  if (facts.identityHeaders) for (const [n, v] of facts.identityHeaders) own.push(n, v);
  if (facts.contentLength !== undefined) own.push('content-length', facts.contentLength);
  if (facts.keepUpgrade === true) own.push('connection', 'upgrade', 'upgrade', 'websocket');
  return own.concat(out);
}

/**
 * Filters an upstream response's headers for the client: drops hop-by-hop headers and those named
 * in the response's `Connection`. Returns a flat `[name, value, …]` list for `res.writeHead`.
 */
export function buildClientResponseHeaders(headers: Readonly<Record<string, string | string[] | undefined>>, requestId: string): string[] {
  const dropNamed = new Set<string>();
  const conn = headers.connection;
  for (const c of Array.isArray(conn) ? conn : conn === undefined ? [] : [conn]) {
    for (const t of c.split(',')) dropNamed.add(headerKey(t.trim()));
  }
  const out: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    const key = headerKey(name);
    if (HOP_BY_HOP.has(key) || dropNamed.has(key) || key === 'x-portcullis-request-id') continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, value);
  }
  out.push('x-portcullis-request-id', requestId);
  return out;
}
