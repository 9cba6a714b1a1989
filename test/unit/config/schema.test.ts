import { describe, expect, it } from 'vitest';
import { configSchema, parseDuration } from '../../../src/config/index.js';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['90s', 90_000],
    ['10m', 600_000],
    ['12h', 43_200_000],
    ['7d', 604_800_000],
    ['0s', 0],
  ])('parses %s as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '10', '1.5h', '10 m', '-1s', '1w', 'h', '99999999999999999d'])('returns undefined for "%s"', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('configSchema', () => {
  it('fills every default from an empty object', () => {
    const config = configSchema.parse({});
    expect(config.server.timeouts).toEqual({
      upstream_connect: 5_000,
      upstream_response: 60_000,
      request_headers: 30_000,
      request_body: 30_000,
      keep_alive: 5_000,
      shutdown_grace: 30_000,
      drain_delay: 0,
    });
    expect(config.server.limits).toEqual({ max_body: 100 * 1024 ** 2, max_header: 16 * 1024 });
    expect(config.identity.session).toEqual({ idle_timeout: 3_600_000, max_lifetime: 43_200_000, recheck_every: 10_000 });
    expect(config.identity.providers).toEqual([{ id: 'local', type: 'local', users_file: 'config/users.yaml' }]);
    expect(config.audit.sink).toEqual({ type: 'file', dir: 'data/audit' });
  });

  it.each([
    ['127.0.0.1:8080', true],
    ['[::1]:8080', true],
    [':8080', true],
    ['localhost', false],
    ['127.0.0.1:65536', false],
  ])('judges listen address %s valid: %s', (listen, valid) => {
    expect(configSchema.safeParse({ server: { listen } }).success).toBe(valid);
  });

  it('reports cross-field problems together with field errors', () => {
    const result = configSchema.safeParse({
      server: { listen: 5 },
      routes: [
        { id: 'a', host: 'a.localhost', upstream: 'http://a' },
        { id: 'a', host: 'b.localhost', upstream: 'http://b', public: true, allow: { groups: ['x'] }, bogus: 1 },
      ],
    });
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((i) => `${i.code} ${i.path.join('.')}`).sort()).toEqual([
      'custom routes.1.id',
      'custom routes.1.public',
      'invalid_type server.listen',
      'unrecognized_keys routes.1',
    ]);
  });
});
