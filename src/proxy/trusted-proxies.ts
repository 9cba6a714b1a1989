/**
 * Client address resolution behind trusted reverse proxies (pure: no I/O, only node:net's
 * in-memory BlockList).
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { GatewayError } from '../errors/index.js';

/**
 * Returns the client IP for a connection's peer address and its `X-Forwarded-For` header (several
 * header lines, as an array, are read as one comma-joined list in order).
 */
export type ClientAddressResolver = (remoteAddress: string, xForwardedFor: string | readonly string[] | undefined) => string;

/**
 * Builds a predicate telling whether an address (IPv4, IPv6 or IPv4-mapped IPv6) is inside
 * `trustedCidrs`. Anything that is not an IP address is untrusted.
 *
 * @throws GatewayError `GW_ERR_CONFIG_INVALID` as {@link createClientAddressResolver}.
 */
export function createTrustedProxyCheck(trustedCidrs: readonly string[]): (address: string) => boolean {
  const trusted = new BlockList();
  for (const cidr of trustedCidrs) addTrusted(trusted, cidr);
  return (address) => {
    const ip = normalizeIp(address);
    return ip !== undefined && trustedCidrs.length > 0 && trusted.check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6');
  };
}

/**
 * Builds a resolver that believes `X-Forwarded-For` only from peers inside `trustedCidrs`
 * (`10.0.0.0/8`, `fd00::/8`, or a bare address meaning /32 or /128).
 *
 * - Untrusted peer: the peer address itself; `X-Forwarded-For` is ignored.
 * - Trusted peer: walks `X-Forwarded-For` right to left, skipping trusted addresses, and returns
 *   the first untrusted one; if every entry is trusted, the leftmost. An entry that is not a plain
 *   IP address (empty, `unknown`, with a port, garbage) stops the walk: the answer is then the last
 *   trusted hop, the nearest one whose word can still be taken.
 *
 * Addresses come back normalized: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as IPv4, IPv6 lower-case and
 * compressed. A `remoteAddress` that is not an IP is returned unchanged and is never trusted.
 *
 * @throws GatewayError `GW_ERR_CONFIG_INVALID` when an entry of `trustedCidrs` is not an address or
 *   CIDR.
 */
export function createClientAddressResolver(trustedCidrs: readonly string[]): ClientAddressResolver {
  const isTrusted = createTrustedProxyCheck(trustedCidrs);

  return (remoteAddress, xForwardedFor) => {
    const peer = normalizeIp(remoteAddress);
    if (peer === undefined) return remoteAddress;
    if (!isTrusted(peer) || xForwardedFor === undefined) return peer;
    let lastTrusted = peer;
    const joined = typeof xForwardedFor === 'string' ? xForwardedFor : xForwardedFor.join(',');
    if (joined.trim() === '') return peer;
    const entries = joined.split(',');
    for (let i = entries.length - 1; i >= 0; i--) {
      const ip = normalizeIp((entries[i] ?? '').trim());
      if (ip === undefined) return lastTrusted;
      if (!isTrusted(ip)) return ip;
      lastTrusted = ip;
    }
    return lastTrusted;
  };
}

/** Normalizes an IP address, or `undefined` when `value` is not one. */
function normalizeIp(value: string): string | undefined {
  if (isIPv4(value)) return value;
  if (!isIPv6(value) || value.includes('%')) return undefined;
  const canonical = new URL(`http://[${value}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped !== null) {
    const hi = parseInt(mapped[1] ?? '0', 16);
    const lo = parseInt(mapped[2] ?? '0', 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return canonical;
}

function addTrusted(list: BlockList, cidr: string): void {
  const invalid = new GatewayError('GW_ERR_CONFIG_INVALID', `trusted proxy "${cidr}" is not an IP address or CIDR`);
  const slash = cidr.indexOf('/');
  const written = slash < 0 ? cidr : cidr.slice(0, slash);
  const address = normalizeIp(written);
  if (address === undefined) throw invalid;
  const family = isIPv4(address) ? 'ipv4' : 'ipv6';
  const writtenMax = isIPv4(written) ? 32 : 128;
  let prefix = writtenMax;
  if (slash >= 0) {
    const p = cidr.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p)) throw invalid;
    prefix = Number(p);
    if (prefix > writtenMax) throw invalid;
  }
  // An IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) is stored as the IPv4 block it maps.
  if (family === 'ipv4' && writtenMax === 128) {
    if (prefix < 96) throw invalid;
    prefix -= 96;
  }
  list.addSubnet(address, prefix, family);
}
