import { describe, expect, it } from 'vitest';
import { canonicalizeHost, formatHost, sameHost } from '../../../src/routing/index.js';

type Scheme = 'http' | 'https';

const accepted: readonly (readonly [string, Scheme, string, number | undefined])[] = [
  ['example.com', 'http', 'example.com', undefined],
  ['EXAMPLE.Com', 'http', 'example.com', undefined],
  ['example.com.', 'http', 'example.com', undefined],
  ['Example.COM.:8080', 'http', 'example.com', 8080],
  ['example.com:80', 'http', 'example.com', undefined],
  ['example.com:443', 'http', 'example.com', 443],
  ['example.com:443', 'https', 'example.com', undefined],
  ['example.com:80', 'https', 'example.com', 80],
  ['example.com:8443', 'https', 'example.com', 8443],
  ['example.com:1', 'http', 'example.com', 1],
  ['example.com:65535', 'http', 'example.com', 65535],
  ['localhost', 'http', 'localhost', undefined],
  ['grafana.localhost:8080', 'http', 'grafana.localhost', 8080],
  ['my_service', 'http', 'my_service', undefined],
  ['a-b.c-d.example', 'http', 'a-b.c-d.example', undefined],
  ['xn--bcher-kva.example', 'http', 'xn--bcher-kva.example', undefined],
  ['127.0.0.1', 'http', '127.0.0.1', undefined],
  ['127.0.0.1:8080', 'http', '127.0.0.1', 8080],
  ['0.0.0.0', 'http', '0.0.0.0', undefined],
  ['255.255.255.255', 'http', '255.255.255.255', undefined],
  ['1.2.3.4.', 'http', '1.2.3.4', undefined],
  ['[::1]', 'http', '[::1]', undefined],
  ['[::1]:8080', 'http', '[::1]', 8080],
  ['[::1]:443', 'https', '[::1]', undefined],
  ['[2001:DB8::1]', 'http', '[2001:db8::1]', undefined],
  ['[0:0:0:0:0:0:0:1]', 'http', '[::1]', undefined],
  ['[::ffff:1.2.3.4]', 'http', '[::ffff:102:304]', undefined],
  ['a'.repeat(63) + '.com', 'http', 'a'.repeat(63) + '.com', undefined],
];

const rejected: readonly (readonly [string, string])[] = [
  ['', 'empty'],
  ['.', 'only a dot'],
  ['example.com..', 'two trailing dots'],
  ['.example.com', 'a leading dot'],
  ['a..b', 'an empty label'],
  ['user@example.com', 'userinfo'],
  ['user:pw@example.com', 'userinfo with a password'],
  ['example.com@evil.com', 'an @ before another host'],
  ['exa mple.com', 'a space inside'],
  [' example.com', 'a leading space'],
  ['example.com ', 'a trailing space'],
  ['example.com\t', 'a tab'],
  ['exa\u0000mple.com', 'a NUL'],
  ['example.com\r\nx', 'CRLF'],
  ['example.com:', 'an empty port'],
  ['example.com:0', 'port 0'],
  ['example.com:65536', 'a port above 65535'],
  ['example.com:99999', 'a five-digit port above 65535'],
  ['example.com:123456', 'a six-digit port'],
  ['example.com:080', 'a port with a leading zero'],
  ['example.com:+80', 'a port with a sign'],
  ['example.com:8o', 'a port with a letter'],
  ['example.com: 80', 'a port with a space'],
  ['example.com:0x50', 'a hex port'],
  ['a:b:c', 'several colons'],
  ['example.com:80:80', 'two ports'],
  ['::1', 'an unbracketed IPv6 address'],
  ['[::1', 'an unclosed bracket'],
  ['[::1]x', 'junk after the bracket'],
  ['[::1]:', 'an empty port after a bracket'],
  ['[::1]:99999', 'a too large port after a bracket'],
  ['[fe80::1%25eth0]', 'an encoded zone id'],
  ['[fe80::1%eth0]', 'a zone id'],
  ['[1.2.3.4]', 'IPv4 in brackets'],
  ['[v1.x]', 'an IPvFuture literal'],
  ['[]', 'empty brackets'],
  ['[::1]]', 'a doubled bracket'],
  ['a.com,b.com', 'two hosts joined by a comma'],
  ['a.com, a.com', 'a duplicated host'],
  ['ex!ample.com', 'a sub-delimiter'],
  ['exa%41mple.com', 'a percent escape'],
  ['example.com/', 'a slash'],
  ['example.com\\', 'a backslash'],
  ['café.com', 'a non-ASCII letter'],
  ['1.2.3', 'a short numeric address'],
  ['127.1', 'a two-part numeric address'],
  ['0x7f.0.0.1', 'a hex octet'],
  ['010.0.0.1', 'an octal-looking octet'],
  ['256.0.0.1', 'an octet above 255'],
  ['1.2.3.4.5', 'five numeric labels'],
  ['example.0x10', 'a hex last label'],
  ['a'.repeat(64) + '.com', 'a label longer than 63'],
  ['a.'.repeat(130) + 'com', 'a name longer than 255'],
];

describe('canonicalizeHost', () => {
  it.each(accepted)('accepts %j (%s) as %s port %s', (value, scheme, hostname, port) => {
    expect(canonicalizeHost(value, scheme)).toEqual({ hostname, port });
  });

  it.each(rejected)('rejects %j (%s)', (value) => {
    expect(canonicalizeHost(value, 'http')).toBeUndefined();
    expect(canonicalizeHost(value, 'https')).toBeUndefined();
  });

  it('is idempotent through formatHost', () => {
    for (const [value, scheme] of accepted) {
      const once = canonicalizeHost(value, scheme);
      expect(once).toBeDefined();
      if (once === undefined) continue;
      expect(canonicalizeHost(formatHost(once), scheme)).toEqual(once);
    }
  });
});

describe('formatHost', () => {
  it('writes the port only when there is one', () => {
    expect(formatHost({ hostname: 'a.example', port: undefined })).toBe('a.example');
    expect(formatHost({ hostname: '[::1]', port: 8080 })).toBe('[::1]:8080');
  });
});

describe('sameHost', () => {
  it('compares name and port', () => {
    expect(sameHost({ hostname: 'a', port: undefined }, { hostname: 'a', port: undefined })).toBe(true);
    expect(sameHost({ hostname: 'a', port: 8080 }, { hostname: 'a', port: undefined })).toBe(false);
    expect(sameHost({ hostname: 'a', port: 1 }, { hostname: 'b', port: 1 })).toBe(false);
  });
});
