import { describe, expect, it } from 'vitest';
import { configSchema, type RouteConfig } from '../../../src/config/index.js';
import { isGatewayError } from '../../../src/errors/index.js';
import { compileRoutes, normalizeTarget, type RouteTable } from '../../../src/routing/index.js';

function routes(raw: readonly Record<string, unknown>[]): RouteConfig[] {
  return configSchema.parse({
    routes: raw.map((r, i) => ({ id: `r${i}`, upstream: 'http://127.0.0.1:3000', ...r })),
  }).routes;
}

/** Matches like the pipeline does: normalize the target, then look it up. */
function lookup(table: RouteTable, url: string, method = 'GET', scheme: 'http' | 'https' = 'http'): string | undefined {
  const schemeEnd = url.indexOf('://') + 3;
  const slash = url.indexOf('/', schemeEnd);
  const host = slash < 0 ? url.slice(schemeEnd) : url.slice(schemeEnd, slash);
  const target = slash < 0 ? '/' : url.slice(slash);
  const t = normalizeTarget(target, host, scheme);
  if (!t.ok) throw new Error(`${url}: ${t.reason}`);
  const m = table.match(t.host, t.segments, method);
  if (m === undefined) return undefined;
  const ruleIndex = m.rule === undefined ? -1 : m.route.rules.indexOf(m.rule);
  return ruleIndex < 0 ? m.route.id : `${m.route.id}#${ruleIndex}`;
}

interface Case {
  name: string;
  routes: readonly Record<string, unknown>[];
  url: string;
  method?: string;
  scheme?: 'http' | 'https';
  expected: string | undefined;
}

const cases: readonly Case[] = [
  // Hosts.
  { name: 'matches an exact host', routes: [{ host: 'app.localhost' }], url: 'http://app.localhost/', expected: 'r0' },
  { name: 'does not match another host', routes: [{ host: 'app.localhost' }], url: 'http://other.localhost/', expected: undefined },
  { name: 'compares hosts case-insensitively', routes: [{ host: 'App.LocalHost' }], url: 'http://APP.localhost/', expected: 'r0' },
  { name: 'ignores a trailing dot in the route host', routes: [{ host: 'app.localhost.' }], url: 'http://app.localhost/', expected: 'r0' },
  { name: 'ignores a trailing dot in the request host', routes: [{ host: 'app.localhost' }], url: 'http://app.localhost./', expected: 'r0' },
  { name: 'does not match a host that only ends with the route host', routes: [{ host: 'example.com' }], url: 'http://evilexample.com/', expected: undefined },
  { name: 'does not match a subdomain of an exact host', routes: [{ host: 'example.com' }], url: 'http://a.example.com/', expected: undefined },
  { name: 'matches an IPv4 host', routes: [{ host: '127.0.0.1' }], url: 'http://127.0.0.1:8080/', expected: 'r0' },
  // Wildcards.
  { name: 'matches one label under a wildcard', routes: [{ host: '*.example.com' }], url: 'http://a.example.com/', expected: 'r0' },
  { name: 'matches a wildcard case-insensitively', routes: [{ host: '*.Example.COM' }], url: 'http://A.example.com/', expected: 'r0' },
  { name: 'does not match the bare wildcard suffix', routes: [{ host: '*.example.com' }], url: 'http://example.com/', expected: undefined },
  { name: 'does not match two labels under a wildcard', routes: [{ host: '*.example.com' }], url: 'http://a.b.example.com/', expected: undefined },
  { name: 'does not match a look-alike suffix under a wildcard', routes: [{ host: '*.example.com' }], url: 'http://a.evilexample.com/', expected: undefined },
  { name: 'never matches an IPv4 address with a wildcard', routes: [{ host: '*.0.0.1' }], url: 'http://127.0.0.1/', expected: undefined },
  // Ports.
  { name: 'matches any port when the route has none', routes: [{ host: 'app.localhost' }], url: 'http://app.localhost:8080/', expected: 'r0' },
  { name: 'matches the route port', routes: [{ host: 'app.localhost:8080' }], url: 'http://app.localhost:8080/', expected: 'r0' },
  { name: 'does not match another port', routes: [{ host: 'app.localhost:8080' }], url: 'http://app.localhost:9090/', expected: undefined },
  { name: 'does not match a route port when the request has none', routes: [{ host: 'app.localhost:8080' }], url: 'http://app.localhost/', expected: undefined },
  { name: 'treats route port 80 as the http default', routes: [{ host: 'app.localhost:80' }], url: 'http://app.localhost:80/', expected: 'r0' },
  { name: 'treats route port 443 as the https default', routes: [{ host: 'app.localhost:443' }], url: 'https://app.localhost/', scheme: 'https', expected: 'r0' },
  { name: 'matches explicit port 443 on an http listener', routes: [{ host: 'app.localhost:443' }], url: 'http://app.localhost:443/', expected: 'r0' },
  { name: 'matches a port on a wildcard route', routes: [{ host: '*.localhost:8080' }], url: 'http://a.localhost:8080/', expected: 'r0' },
  { name: 'skips a wildcard route on another port', routes: [{ host: '*.localhost:8080' }], url: 'http://a.localhost:8081/', expected: undefined },
  // Path prefixes on segment boundaries.
  { name: 'matches everything under /', routes: [{ host: 'a.localhost', path: '/' }], url: 'http://a.localhost/x/y', expected: 'r0' },
  { name: 'matches the prefix itself', routes: [{ host: 'a.localhost', path: '/api' }], url: 'http://a.localhost/api', expected: 'r0' },
  { name: 'matches the prefix with a trailing slash', routes: [{ host: 'a.localhost', path: '/api' }], url: 'http://a.localhost/api/', expected: 'r0' },
  { name: 'matches below the prefix', routes: [{ host: 'a.localhost', path: '/api' }], url: 'http://a.localhost/api/x', expected: 'r0' },
  { name: 'does not match a longer segment', routes: [{ host: 'a.localhost', path: '/api' }], url: 'http://a.localhost/apix', expected: undefined },
  { name: 'does not match /publicity for /public', routes: [{ host: 'a.localhost', path: '/public' }], url: 'http://a.localhost/publicity', expected: undefined },
  { name: 'does not match the parent of the prefix', routes: [{ host: 'a.localhost', path: '/api/v1' }], url: 'http://a.localhost/api', expected: undefined },
  { name: 'ignores a trailing slash in the prefix', routes: [{ host: 'a.localhost', path: '/api/' }], url: 'http://a.localhost/api', expected: 'r0' },
  { name: 'compares paths case-sensitively', routes: [{ host: 'a.localhost', path: '/api' }], url: 'http://a.localhost/API', expected: undefined },
  { name: 'matches an encoded request against a plain prefix', routes: [{ host: 'a.localhost', path: '/api' }], url: 'http://a.localhost/%61%70%69/x', expected: 'r0' },
  { name: 'matches a prefix written with escapes', routes: [{ host: 'a.localhost', path: '/caf%c3%a9' }], url: 'http://a.localhost/caf%C3%A9/x', expected: 'r0' },
  { name: 'matches a prefix with an escaped space', routes: [{ host: 'a.localhost', path: '/a%20b' }], url: 'http://a.localhost/a%20b', expected: 'r0' },
  { name: 'does not match a zero-width look-alike', routes: [{ host: 'a.localhost', path: '/admin' }], url: 'http://a.localhost/admin%E2%80%8B', expected: undefined },
  // First match wins.
  {
    name: 'takes the first matching route in config order',
    routes: [{ host: 'a.localhost', path: '/' }, { host: 'a.localhost', path: '/api' }],
    url: 'http://a.localhost/api/x',
    expected: 'r0',
  },
  {
    name: 'falls through to a later route when the first does not match',
    routes: [{ host: 'a.localhost', path: '/api' }, { host: 'a.localhost', path: '/' }],
    url: 'http://a.localhost/web',
    expected: 'r1',
  },
  {
    name: 'prefers an earlier wildcard over a later exact host',
    routes: [{ host: '*.localhost' }, { host: 'a.localhost' }],
    url: 'http://a.localhost/',
    expected: 'r0',
  },
  {
    name: 'prefers an earlier exact host over a later wildcard',
    routes: [{ host: 'a.localhost' }, { host: '*.localhost' }],
    url: 'http://a.localhost/',
    expected: 'r0',
  },
  {
    name: 'interleaves exact and wildcard routes in config order',
    routes: [
      { host: 'a.localhost', path: '/x' },
      { host: '*.localhost', path: '/y' },
      { host: 'a.localhost', path: '/y' },
      { host: '*.localhost' },
    ],
    url: 'http://a.localhost/y',
    expected: 'r1',
  },
  {
    name: 'uses the wildcard when the exact host route path does not match',
    routes: [{ host: 'a.localhost', path: '/x' }, { host: '*.localhost' }],
    url: 'http://a.localhost/z',
    expected: 'r1',
  },
  {
    name: 'picks the route for the request port before a portless one',
    routes: [{ host: 'a.localhost:8443' }, { host: 'a.localhost' }],
    url: 'http://a.localhost:8080/',
    expected: 'r1',
  },
  // Route methods.
  { name: 'matches a listed method', routes: [{ host: 'a.localhost', methods: ['GET', 'HEAD'] }], url: 'http://a.localhost/', method: 'HEAD', expected: 'r0' },
  { name: 'skips a route whose methods do not include the request method', routes: [{ host: 'a.localhost', methods: ['GET'] }], url: 'http://a.localhost/', method: 'POST', expected: undefined },
  { name: 'does not imply HEAD from GET', routes: [{ host: 'a.localhost', methods: ['GET'] }], url: 'http://a.localhost/', method: 'HEAD', expected: undefined },
  {
    name: 'falls through to the next route when the method does not match',
    routes: [{ host: 'a.localhost', methods: ['GET'] }, { host: 'a.localhost' }],
    url: 'http://a.localhost/',
    method: 'DELETE',
    expected: 'r1',
  },
  // Rules.
  {
    name: 'returns no rule when none matches',
    routes: [{ host: 'a.localhost', rules: [{ path: '/admin' }] }],
    url: 'http://a.localhost/public',
    expected: 'r0',
  },
  {
    name: 'returns the matching rule',
    routes: [{ host: 'a.localhost', rules: [{ path: '/admin' }] }],
    url: 'http://a.localhost/admin/users',
    expected: 'r0#0',
  },
  {
    name: 'matches rules on segment boundaries',
    routes: [{ host: 'a.localhost', rules: [{ path: '/admin' }] }],
    url: 'http://a.localhost/administrator',
    expected: 'r0',
  },
  {
    name: 'takes the first matching rule',
    routes: [{ host: 'a.localhost', rules: [{ path: '/api' }, { path: '/api/admin' }] }],
    url: 'http://a.localhost/api/admin',
    expected: 'r0#0',
  },
  {
    name: 'matches a rule with the listed method',
    routes: [{ host: 'a.localhost', rules: [{ path: '/api/admin', methods: ['POST', 'DELETE'] }, { path: '/api' }] }],
    url: 'http://a.localhost/api/admin/x',
    method: 'DELETE',
    expected: 'r0#0',
  },
  {
    name: 'skips a rule whose methods do not match',
    routes: [{ host: 'a.localhost', rules: [{ path: '/api/admin', methods: ['POST', 'DELETE'] }, { path: '/api' }] }],
    url: 'http://a.localhost/api/admin/x',
    method: 'GET',
    expected: 'r0#1',
  },
  {
    name: 'returns no rule when only the method differs',
    routes: [{ host: 'a.localhost', rules: [{ path: '/api/admin', methods: ['POST'] }] }],
    url: 'http://a.localhost/api/admin',
    method: 'GET',
    expected: 'r0',
  },
  {
    name: 'matches a rule with a prefix of / for everything',
    routes: [{ host: 'a.localhost', rules: [{ path: '/', methods: ['PUT'] }] }],
    url: 'http://a.localhost/any/thing',
    method: 'PUT',
    expected: 'r0#0',
  },
  {
    name: 'matches rules against the decoded path',
    routes: [{ host: 'a.localhost', rules: [{ path: '/admin' }] }],
    url: 'http://a.localhost/%61dmin',
    expected: 'r0#0',
  },
  {
    name: 'matches rules inside the route prefix',
    routes: [{ host: 'a.localhost', path: '/app', rules: [{ path: '/app/admin' }] }],
    url: 'http://a.localhost/app/admin',
    expected: 'r0#0',
  },
  { name: 'matches nothing in an empty table', routes: [], url: 'http://a.localhost/', expected: undefined },
];

describe('compileRoutes', () => {
  it.each(cases)('$name', ({ routes: raw, url, method, scheme, expected }) => {
    expect(lookup(compileRoutes(routes(raw)), url, method, scheme)).toBe(expected);
  });

  it('returns the configured route and rule objects', () => {
    const config = routes([{ host: 'a.localhost', rules: [{ path: '/x' }] }]);
    const m = compileRoutes(config).match({ hostname: 'a.localhost', port: undefined }, ['x'], 'GET');
    expect(m?.route).toBe(config[0]);
    expect(m?.rule).toBe(config[0]?.rules[0]);
  });

  it.each([
    ['a route prefix with an encoded slash', { path: '/a%2Fb' }, undefined],
    ['a rule prefix with an encoded slash', {}, '/admin%2f'],
    ['a prefix with a malformed escape', { path: '/a%zz' }, undefined],
    ['a prefix with an encoded dot segment', { path: '/a/%2e%2e' }, undefined],
    ['a prefix with invalid UTF-8', { path: '/%C0%AE' }, undefined],
    ['a prefix with an encoded NUL', { path: '/a%00' }, undefined],
  ])('refuses %s, which could never match', (_name, override, rulePath) => {
    // The config schema already refuses these with a position; compileRoutes refuses them too when
    // handed a route that did not come through the schema.
    const raw = { host: 'a.localhost', ...override, ...(rulePath === undefined ? {} : { rules: [{ path: rulePath }] }) };
    expect(configSchema.safeParse({ routes: [{ id: 'r', upstream: 'http://127.0.0.1:3000', ...raw }] }).success).toBe(false);
    const [valid] = routes([{ host: 'a.localhost', rules: [{ path: '/ok' }] }]);
    if (valid === undefined) throw new Error('no route');
    const forged: RouteConfig = rulePath === undefined ? { ...valid, ...override } : { ...valid, rules: [{ ...valid.rules[0], path: rulePath }] };
    let thrown: unknown;
    try {
      compileRoutes([forged]);
    } catch (err) {
      thrown = err;
    }
    expect(isGatewayError(thrown, 'GW_ERR_CONFIG_INVALID')).toBe(true);
  });
});
