import { describe, expect, it } from 'vitest';
import { isGatewayError } from '../../../src/errors/index.js';
import { createClientAddressResolver, createTrustedProxyCheck } from '../../../src/proxy/trusted-proxies.js';

const TRUSTED = ['10.0.0.0/8', '192.168.1.1', 'fd00::/8', '::1'];

const cases: readonly (readonly [string, string, string | undefined, string])[] = [
  ['returns an untrusted peer and ignores its X-Forwarded-For', '203.0.113.9', '1.2.3.4', '203.0.113.9'],
  ['returns an untrusted peer without X-Forwarded-For', '203.0.113.9', undefined, '203.0.113.9'],
  ['normalizes an IPv4-mapped peer', '::ffff:203.0.113.9', undefined, '203.0.113.9'],
  ['normalizes an IPv4-mapped untrusted peer even with X-Forwarded-For', '::ffff:203.0.113.9', '1.2.3.4', '203.0.113.9'],
  ['trusts an IPv4-mapped peer inside a trusted IPv4 block', '::ffff:10.1.2.3', '198.51.100.7', '198.51.100.7'],
  ['returns a trusted peer without X-Forwarded-For', '10.0.0.1', undefined, '10.0.0.1'],
  ['returns a trusted peer with an empty X-Forwarded-For', '10.0.0.1', '', '10.0.0.1'],
  ['takes the client from a trusted peer', '10.0.0.1', '198.51.100.7', '198.51.100.7'],
  ['skips trusted hops from the right', '10.0.0.1', '198.51.100.7, 10.0.0.2, 192.168.1.1', '198.51.100.7'],
  ['takes the rightmost untrusted entry, not a spoofed leftmost one', '10.0.0.1', '6.6.6.6, 198.51.100.7, 10.0.0.2', '198.51.100.7'],
  ['returns the leftmost entry when every hop is trusted', '10.0.0.1', '10.9.9.9, 10.0.0.2', '10.9.9.9'],
  ['tolerates missing spaces and extra whitespace', '10.0.0.1', '198.51.100.7,10.0.0.2 ,  10.0.0.3', '198.51.100.7'],
  ['stops at an invalid rightmost entry and returns the peer', '10.0.0.1', '198.51.100.7, garbage', '10.0.0.1'],
  ['stops at an invalid entry and returns the last trusted hop', '10.0.0.1', '198.51.100.7, unknown, 10.0.0.2', '10.0.0.2'],
  ['stops at an empty entry', '10.0.0.1', '198.51.100.7,,10.0.0.2', '10.0.0.2'],
  ['treats an entry with a port as invalid', '10.0.0.1', '198.51.100.7:1234', '10.0.0.1'],
  ['treats a bracketed IPv6 entry as invalid', '10.0.0.1', '[2001:db8::1]', '10.0.0.1'],
  ['treats an IPv6 entry with a zone as invalid', '10.0.0.1', 'fe80::1%eth0', '10.0.0.1'],
  ['does not trust an address just outside a block', '192.168.1.1', '192.168.1.2', '192.168.1.2'],
  ['does not trust a neighbour of a single trusted address', '192.168.1.2', '198.51.100.7', '192.168.1.2'],
  ['trusts an IPv6 peer', 'fd12::1', '2001:db8::1', '2001:db8::1'],
  ['trusts the IPv6 loopback', '::1', '198.51.100.7', '198.51.100.7'],
  ['canonicalizes an IPv6 client', '::1', '2001:DB8:0:0::1', '2001:db8::1'],
  ['normalizes an IPv4-mapped entry', '::1', '::ffff:198.51.100.7', '198.51.100.7'],
  ['skips an IPv4-mapped trusted entry', '::1', '198.51.100.7, ::ffff:10.0.0.9', '198.51.100.7'],
  ['returns a non-IP peer unchanged', 'not-an-ip', '198.51.100.7', 'not-an-ip'],
];

describe('createClientAddressResolver', () => {
  const resolve = createClientAddressResolver(TRUSTED);

  it.each(cases)('%s', (_name, remote, xff, expected) => {
    expect(resolve(remote, xff)).toBe(expected);
  });

  it('reads several header lines as one list', () => {
    expect(resolve('10.0.0.1', ['6.6.6.6, 198.51.100.7', '10.0.0.2'])).toBe('198.51.100.7');
    expect(resolve('10.0.0.1', ['198.51.100.7', 'bogus'])).toBe('10.0.0.1');
    expect(resolve('10.0.0.1', [])).toBe('10.0.0.1');
  });

  it('trusts nobody by default', () => {
    const none = createClientAddressResolver([]);
    expect(none('10.0.0.1', '198.51.100.7')).toBe('10.0.0.1');
    expect(none('::ffff:127.0.0.1', '198.51.100.7')).toBe('127.0.0.1');
  });

  it('accepts IPv4-mapped IPv6 blocks as IPv4 blocks', () => {
    const mapped = createClientAddressResolver(['::ffff:10.0.0.0/104']);
    expect(mapped('10.1.2.3', '198.51.100.7')).toBe('198.51.100.7');
    expect(mapped('11.1.2.3', '198.51.100.7')).toBe('11.1.2.3');
  });

  it('trusts everything under 0.0.0.0/0 and ::/0 except what is not an address', () => {
    const all = createClientAddressResolver(['0.0.0.0/0', '::/0']);
    expect(all('203.0.113.9', '1.1.1.1, 2001:db8::1')).toBe('1.1.1.1');
    expect(all('203.0.113.9', 'bogus, 1.1.1.1')).toBe('1.1.1.1');
  });

  it.each(['10.0.0.0/33', '::/129', 'bogus', '10.0.0.0/', '10.0.0.0/x', '1.2.3/8', '::ffff:10.0.0.0/95'])(
    'refuses the invalid trusted block %j',
    (cidr) => {
      let thrown: unknown;
      try {
        createClientAddressResolver([cidr]);
      } catch (err) {
        thrown = err;
      }
      expect(isGatewayError(thrown, 'GW_ERR_CONFIG_INVALID')).toBe(true);
    },
  );
});

describe('createTrustedProxyCheck', () => {
  const isTrusted = createTrustedProxyCheck(TRUSTED);

  it.each([
    ['10.255.0.1', true],
    ['::ffff:10.0.0.1', true],
    ['192.168.1.1', true],
    ['192.168.1.2', false],
    ['fd00::1', true],
    ['::1', true],
    ['2001:db8::1', false],
    ['not-an-ip', false],
    ['', false],
  ] as const)('says %j is trusted: %s', (address, expected) => {
    expect(isTrusted(address)).toBe(expected);
  });

  it('trusts nothing when the list is empty', () => {
    expect(createTrustedProxyCheck([])('127.0.0.1')).toBe(false);
  });
});
