/**
 * Host canonicalization (pure). The same function reads the `Host` header and the authority of an
 * absolute-form request target, so the two can be compared exactly.
 */

/** A host as the gateway compares it: lower-case, no trailing dot, no default port. */
export interface CanonicalHost {
  /**
   * Lower-case name without a trailing dot (`app.example.com`), a dotted-quad IPv4 address
   * (`10.0.0.1`) or a bracketed, compressed IPv6 address (`[::1]`).
   */
  hostname: string;
  /** The explicit port, or `undefined` when it was absent or the scheme's default (80 / 443). */
  port: number | undefined;
}

const MAX_HOST_LENGTH = 255;
const MAX_LABEL_LENGTH = 63;
const DEFAULT_PORT = { http: 80, https: 443 } as const;

/** Letters, digits, `-` and `_` (seen in container and service-discovery names). */
const LABEL = /^[a-z0-9_-]+$/;
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;
const DECIMAL_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const PORT = /^[1-9][0-9]{0,4}$/;

/**
 * Canonicalizes a `Host` header value (or an absolute-form authority) for the given scheme.
 *
 * Accepts `name`, `name:port`, `a.b.c.d[:port]` and `[v6][:port]`. Lower-cases the name, strips one
 * trailing dot and drops the scheme's default port. Rejects (returns `undefined`) rather than
 * guesses: empty values, userinfo (`@`), whitespace and control characters, characters outside
 * letters, digits, `-`, `_` and `.`, empty labels, ports that are not 1-65535 written in plain
 * decimal without leading zeros, an empty port (`host:`), colons outside brackets, commas (two
 * Host headers joined), IPv6 zone ids, and names whose last label is numeric but that are not a
 * canonical dotted quad (`1.2.3`, `0x7f.1`, `010.0.0.1` — which URL parsers read as other addresses).
 */
export function canonicalizeHost(value: string, scheme: 'http' | 'https'): CanonicalHost | undefined {
  if (value.length === 0 || value.length > MAX_HOST_LENGTH) return undefined;

  let hostPart: string;
  let portPart: string | undefined;
  let hostname: string | undefined;

  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) return undefined;
    hostPart = value.slice(1, close);
    const rest = value.slice(close + 1);
    if (rest.length > 0) {
      if (!rest.startsWith(':')) return undefined;
      portPart = rest.slice(1);
    }
    hostname = canonicalIpv6(hostPart);
  } else {
    const colon = value.indexOf(':');
    if (colon >= 0) {
      hostPart = value.slice(0, colon);
      portPart = value.slice(colon + 1);
    } else {
      hostPart = value;
    }
    hostname = canonicalName(hostPart);
  }
  if (hostname === undefined) return undefined;

  let port: number | undefined;
  if (portPart !== undefined) {
    if (!PORT.test(portPart)) return undefined;
    port = Number(portPart);
    if (port > 65535) return undefined;
    if (port === DEFAULT_PORT[scheme]) port = undefined;
  }
  return { hostname, port };
}

/** Formats a canonical host back into `Host` header form (`name`, `name:port`, `[v6]:port`). */
export function formatHost(host: CanonicalHost): string {
  return host.port === undefined ? host.hostname : `${host.hostname}:${host.port}`;
}

/** True when two canonical hosts are the same. */
export function sameHost(a: CanonicalHost, b: CanonicalHost): boolean {
  return a.hostname === b.hostname && a.port === b.port;
}

/** True when a canonical hostname is a dotted-quad IPv4 address. */
export function isIpv4Hostname(hostname: string): boolean {
  const parts = hostname.split('.');
  return parts.length === 4 && parts.every((p) => DECIMAL_OCTET.test(p) && Number(p) <= 255);
}

function canonicalName(raw: string): string | undefined {
  let name = raw.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0) return undefined;
  const labels = name.split('.');
  for (const label of labels) {
    if (label.length === 0 || label.length > MAX_LABEL_LENGTH || !LABEL.test(label)) return undefined;
  }
  const last = labels[labels.length - 1] ?? '';
  if (NUMERIC_LABEL.test(last) && !isIpv4Hostname(name)) return undefined;
  return name;
}

const IPV6_CHARS = /^[0-9a-f:.]+$/;

function canonicalIpv6(raw: string): string | undefined {
  const lower = raw.toLowerCase();
  // Restricting the characters first rules out zone ids (`%25eth0`) and anything URL would repair.
  if (!IPV6_CHARS.test(lower) || !lower.includes(':')) return undefined;
  try {
    const parsed = new URL(`http://[${lower}]/`).hostname;
    return parsed.startsWith('[') && parsed.endsWith(']') ? parsed : undefined;
  } catch {
    return undefined;
  }
}
