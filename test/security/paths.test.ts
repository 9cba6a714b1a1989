/**
 * Path tricks against prefix rules, and Host games. Every case goes through the raw-socket harness:
 * its status, then the invariants (gateway up, the upstream got exactly the path the policy judged,
 * one record per answered request).
 *
 * Policy under attack (harness.standardRoutes): `/public` is public; `/admin` is for group sre; every
 * other path on app.localhost is for group eng. alice is in eng only, so reaching `/admin` as alice,
 * or anything but `/public` anonymously, is a bypass.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, rawCase, signIn, startSecurityEnv, type RawCase, type SecurityEnv } from './harness.js';

let env: SecurityEnv;
let alice = '';

beforeAll(async () => {
  env = await startSecurityEnv('paths');
  alice = await signIn(env, 'alice');
});

afterAll(async () => {
  await env.stop();
});

interface PathCase {
  readonly name: string;
  readonly target: string;
  readonly status: number;
  /** What the upstream must receive (the canonical target), when the request passes. */
  readonly upstream?: string;
  /** Sent with alice's session cookie (group eng, not sre). */
  readonly asAlice?: boolean;
  readonly host?: string;
  readonly version?: string;
}

function toRaw(c: PathCase): RawCase {
  const cookie = c.asAlice === true ? `Cookie: ${alice}\r\n` : '';
  const send = `GET ${c.target} ${c.version ?? 'HTTP/1.1'}\r\nHost: ${c.host ?? HOST}\r\n${cookie}Connection: close\r\n\r\n`;
  return { name: c.name, send: Buffer.from(send, 'latin1'), expect: c.status, upstream: c.upstream === undefined ? [] : [c.upstream] };
}

/** Traversal, encodings and delimiters. Anonymous unless `asAlice`. */
const PATHS: readonly PathCase[] = [
  // Envoy CVE-2019-9901 / Istio ISTIO-SECURITY-2019-003: dot segments judged un-normalized.
  { name: 'raw dot-dot out of the public prefix', target: '/public/../admin', status: 400 },
  { name: 'raw dot segment', target: '/public/./x', status: 400 },
  { name: 'encoded dot-dot (lower case)', target: '/public/%2e%2e/admin', status: 400 },
  { name: 'encoded dot-dot (mixed case)', target: '/public/%2E%2e/admin', status: 400 },
  { name: 'half-encoded dot-dot', target: '/public/.%2e/admin', status: 400 },
  { name: 'dot-dot as alice towards admin', target: '/app/../admin/users', status: 400, asAlice: true },
  { name: 'trailing dot-dot', target: '/public/x/..', status: 400 },
  // Double and deeper encoding: a second decoder (WAF, framework, upstream) must not find a dot segment.
  { name: 'double-encoded dot-dot', target: '/public/%252e%252e/admin', status: 400 },
  { name: 'triple-encoded dot-dot', target: '/public/%25252e%25252e/admin', status: 400 },
  { name: 'double-encoded slash', target: '/public%252F..%252Fadmin', status: 400 },
  { name: 'double-encoded semicolon (Tomcat path parameter a decoder away)', target: '/admin%253bjsessionid=1', status: 400 },
  // Apache CVE-2021-42013: an encoded percent sign spelling an escape (`%%32%65`).
  { name: 'percent-encoded percent sign before hex digits', target: '/public/%%32%65%%32%65/admin', status: 400 },
  { name: 'escape spelled with encoded hex digits', target: '/public/%25%32%65%25%32%65/admin', status: 400 },
  // Istio CVE-2021-31920 / Envoy CVE-2021-29492: escaped slashes and backslashes.
  { name: 'encoded slash joining segments', target: '/public%2F..%2Fadmin', status: 400 },
  { name: 'encoded slash, lower case', target: '/public%2fadmin', status: 400 },
  { name: 'encoded backslash', target: '/public%5C..%5Cadmin', status: 400 },
  { name: 'raw backslash', target: '/public\\..\\admin', status: 400 },
  // Apache Shiro CVE-2020-1957, Tomcat/Spring `;` path parameters.
  { name: 'path parameter after the prefix', target: '/admin;/x', status: 400 },
  { name: 'dot-dot-semicolon', target: '/public/..;/admin', status: 400 },
  { name: 'encoded semicolon', target: '/admin%3bx', status: 400 },
  // Istio CVE-2021-39156: a fragment the policy cut but the upstream did not.
  { name: 'fragment after the public prefix', target: '/public#/../admin', status: 400 },
  { name: 'fragment alone', target: '/admin#x', status: 400 },
  // Istio CVE-2021-31920: empty segments merged by some upstreams.
  { name: 'leading double slash', target: '//admin', status: 400 },
  { name: 'empty segment inside', target: '/public//admin', status: 400 },
  { name: 'triple slash', target: '///admin', status: 400 },
  // Segment boundaries: /public is a whole segment, never a string prefix.
  { name: 'prefix as a string prefix (/publicity)', target: '/publicity', status: 401 },
  { name: 'prefix with a suffix (/public-x)', target: '/public-x/y', status: 401 },
  { name: 'prefix with a trailing slash', target: '/public/', status: 200, upstream: '/public/' },
  { name: 'prefix exactly', target: '/public', status: 200, upstream: '/public' },
  // Letter case: paths are case-sensitive (RFC 3986); what is judged is what is sent.
  { name: 'upper-case public prefix is not public', target: '/PUBLIC/x', status: 401 },
  { name: 'upper-case admin as alice: judged by the eng route and sent as is', target: '/Admin/x', status: 200, upstream: '/Admin/x', asAlice: true },
  { name: 'encoded letter spelling admin as alice is admin', target: '/%61dmin/users', status: 403, asAlice: true },
  { name: 'encoded letter spelling public is public, sent canonical', target: '/%70ublic/x', status: 200, upstream: '/public/x' },
  // IIS CVE-2000-0884 style overlong UTF-8 and invalid sequences.
  { name: 'overlong slash', target: '/public%C0%AFadmin', status: 400 },
  { name: 'overlong dots', target: '/public/%C0%AE%C0%AE/admin', status: 400 },
  { name: 'three-byte overlong dot', target: '/public/%E0%80%AE%E0%80%AE/admin', status: 400 },
  { name: 'UTF-16 surrogate encoded in UTF-8', target: '/public/%ED%A0%80', status: 400 },
  { name: 'lone 0xFF byte', target: '/public/%FF', status: 400 },
  { name: 'truncated multi-byte sequence', target: '/public/%E2%82', status: 400 },
  { name: 'malformed escape', target: '/public/%zz', status: 400 },
  { name: 'escape cut short', target: '/public/%2', status: 400 },
  // Look-alikes are literal characters: judged as what they are, forwarded exactly so.
  { name: 'fullwidth solidus is not a slash', target: '/public%EF%BC%8F..%EF%BC%8Fadmin', status: 401 },
  { name: 'fullwidth dots stay a literal segment under public', target: '/public/%EF%BC%8E%EF%BC%8E/admin', status: 200, upstream: '/public/%EF%BC%8E%EF%BC%8E/admin' },
  { name: 'zero-width space after admin is another segment (alice, eng route)', target: '/admin%E2%80%8B', status: 200, upstream: '/admin%E2%80%8B', asAlice: true },
  { name: 'raw non-ASCII byte', target: '/public/caf\u00e9', status: 400 },
  // nginx CVE-2013-4547 and Authelia CVE-2021-32637 (malformed URIs judged differently): NUL, control characters, whitespace.
  { name: 'encoded NUL', target: '/public%00/../admin', status: 400 },
  { name: 'encoded NUL before an extension', target: '/admin%00.css', status: 400 },
  { name: 'encoded newline', target: '/public/%0a/admin', status: 400 },
  { name: 'encoded DEL', target: '/public/%7f', status: 400 },
  { name: 'raw NUL', target: '/public/a\u0000b', status: 400 },
  { name: 'raw tab', target: '/public/a\tb', status: 400 },
  { name: 'raw space splitting the target', target: '/public /admin', status: 400 },
  // oauth2-proxy's skip-auth regexes matched against the whole URI, query included. Only the path is judged.
  { name: 'query that looks like a traversal', target: '/public?/../admin', status: 200, upstream: '/public?/../admin' },
  { name: 'query naming the public prefix', target: '/admin?x=/public', status: 401 },
  { name: 'query right after the protected prefix', target: '/admin?/public/', status: 401 },
  { name: 'encoded question mark is part of the path', target: '/admin%3F/public', status: 401 },
  // Absolute-form request targets.
  { name: 'absolute-form for this host', target: 'http://app.localhost/public/x?y=1', status: 200, upstream: '/public/x?y=1' },
  { name: 'absolute-form for another host', target: 'http://other.localhost/admin', status: 400 },
  { name: 'absolute-form with userinfo', target: 'http://user@app.localhost/public', status: 400 },
  { name: 'absolute-form with another scheme', target: 'https://app.localhost/public', status: 400 },
  { name: 'absolute-form with the default port', target: 'http://app.localhost:80/public/p', status: 200, upstream: '/public/p' },
  { name: 'absolute-form with a dot-dot', target: 'http://app.localhost/public/../admin', status: 400 },
  { name: 'asterisk-form', target: '*', status: 400 },
  { name: 'relative target', target: 'public/x', status: 400 },
];

describe('path tricks against prefix rules', () => {
  for (const c of PATHS) {
    it(c.name, async () => {
      await rawCase(env, toRaw(c));
    });
  }
});

describe('protocol versions and Host games', () => {
  const HOSTS: readonly PathCase[] = [
    { name: 'HTTP/1.0 with a Host', target: '/public/v10', status: 200, upstream: '/public/v10', version: 'HTTP/1.0' },
    { name: 'Host in upper case', target: '/public/h', status: 200, upstream: '/public/h', host: 'APP.LOCALHOST' },
    { name: 'Host with a trailing dot', target: '/public/h', status: 200, upstream: '/public/h', host: 'app.localhost.' },
    { name: 'Host with the default port', target: '/public/h', status: 200, upstream: '/public/h', host: 'app.localhost:80' },
    { name: 'Host with two trailing dots', target: '/public/h', status: 400, host: 'app.localhost..' },
    { name: 'Host with userinfo', target: '/public/h', status: 400, host: 'admin@app.localhost' },
    { name: 'Host with a bad port', target: '/public/h', status: 400, host: 'app.localhost:0' },
    { name: 'Host with an empty port', target: '/public/h', status: 400, host: 'app.localhost:' },
    { name: 'two hosts joined by a comma', target: '/public/h', status: 400, host: 'app.localhost,evil.localhost' },
    { name: 'Host percent-encoded', target: '/public/h', status: 400, host: 'app%2elocalhost' },
    { name: 'Host with a path', target: '/public/h', status: 400, host: 'app.localhost/admin' },
    { name: 'unknown Host', target: '/public/h', status: 404, host: 'evil.localhost' },
    { name: 'wildcard host two labels deep', target: '/x', status: 404, host: 'a.b.wild.localhost' },
    { name: 'wildcard host one label deep', target: '/x', status: 200, upstream: '/x', host: 'a.wild.localhost' },
    { name: 'IPv6 literal Host', target: '/x', status: 404, host: '[::1]' },
    { name: 'octal-looking IPv4 Host', target: '/x', status: 400, host: '0177.0.0.1' },
  ];
  for (const c of HOSTS) {
    it(c.name, async () => {
      await rawCase(env, toRaw(c));
    });
  }

  it('HTTP/0.9 simple request', async () => {
    await rawCase(env, { name: 'HTTP/0.9', send: 'GET /public/x\r\n\r\n', expect: 400 });
  });

  it('HTTP/1.0 without Host', async () => {
    await rawCase(env, { name: 'HTTP/1.0 without Host', send: 'GET /public/x HTTP/1.0\r\n\r\n', expect: 400 });
  });

  it('HTTP/1.1 without Host', async () => {
    await rawCase(env, { name: 'HTTP/1.1 without Host', send: 'GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n', expect: 400 });
  });

  it('duplicate Host headers (same value)', async () => {
    await rawCase(env, { name: 'dup Host', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, expect: 400 });
  });

  it('duplicate Host headers (different values)', async () => {
    await rawCase(env, { name: 'dup Host', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nHost: evil.localhost\r\nConnection: close\r\n\r\n`, expect: 400 });
  });

  it('a second Host hidden after 2000 other headers is still seen', async () => {
    // Node stops reporting headers after maxHeadersCount (2000 by default) unless told otherwise.
    const many = Array.from({ length: 2001 }, (_, i) => `X-${i}: a\r\n`).join('');
    await rawCase(env, { name: 'Host after 2000 headers', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\n${many}Host: evil.localhost\r\nConnection: close\r\n\r\n`, expect: 400 });
  });

  it('an empty Host header', async () => {
    await rawCase(env, { name: 'empty Host', send: 'GET /public/x HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n', expect: 400 });
  });

  it('sends the canonical Host upstream with preserve_host, and as X-Forwarded-Host', async () => {
    await rawCase(env, {
      name: 'preserve_host canonical',
      send: 'GET /p HTTP/1.1\r\nHost: PRESERVE.Localhost.:80\r\nConnection: close\r\n\r\n',
      expect: 200,
      upstream: ['/p'],
      check: (_x, seen) => {
        expect(seen.upstream[0]?.headers.host).toBe('preserve.localhost');
        expect(seen.upstream[0]?.headers['x-forwarded-host']).toBe('preserve.localhost');
      },
    });
  });

  it('sends the canonical host as X-Forwarded-Host without preserve_host', async () => {
    await rawCase(env, {
      name: 'X-Forwarded-Host canonical',
      send: 'GET /public/xfh HTTP/1.1\r\nHost: App.Localhost.\r\nConnection: close\r\n\r\n',
      expect: 200,
      upstream: ['/public/xfh'],
      check: (_x, seen) => {
        expect(seen.upstream[0]?.headers['x-forwarded-host']).toBe('app.localhost');
        expect(seen.upstream[0]?.headers.host).toBe(new URL(env.upstream.url).host);
      },
    });
  });
});
