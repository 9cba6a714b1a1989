import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatIssues, loadConfigFile, loadConfigText, type ConfigIssue, type LoadResult } from '../../../src/config/index.js';

const FIXTURES = join(import.meta.dirname, '../../../test/fixtures/config');

/** `line:col` of each issue, in the order reported. */
function positions(result: LoadResult): string[] {
  return result.ok ? [] : result.issues.map((i) => `${i.line}:${i.col}`);
}

function issuesOf(result: LoadResult): ConfigIssue[] {
  if (result.ok) throw new Error('expected the configuration to be invalid');
  return result.issues;
}

function configOf(result: LoadResult) {
  if (!result.ok) throw new Error(`expected a valid configuration:\n${formatIssues(result.issues)}`);
  return result.config;
}

describe('loadConfigFile', () => {
  it.each([
    { fixture: 'unknown-key-deep.yaml', at: ['11:11'], says: 'unknown key "maxage" in routes[0].rules[0].mfa' },
    { fixture: 'bad-duration.yaml', at: ['3:19', '6:18', '8:17'], says: 'identity.session.idle_timeout: expected a duration' },
    { fixture: 'bad-upstream.yaml', at: ['4:15', '7:15'], says: 'routes[0].upstream: expected an http:// or https:// URL for the upstream' },
    { fixture: 'yaml-syntax.yaml', at: ['6:25', '6:26'], says: 'invalid YAML: flow sequence in block collection' },
    { fixture: 'duplicate-route-id.yaml', at: ['8:10'], says: 'routes[2].id: route id "app" is already used by routes[0]' },
    { fixture: 'duplicate-yaml-key.yaml', at: ['3:3'], says: 'duplicate key "listen" in server' },
    { fixture: 'unset-env.yaml', at: ['7:22', '12:61'], says: 'identity.providers[0].client_secret: environment variable OIDC_SECRET is not set' },
    { fixture: 'public-with-allow.yaml', at: ['5:13'], says: 'routes[0].public: a public route cannot also have allow, mfa or rules' },
    { fixture: 'unmatchable-routes.yaml', at: ['2:21', '2:43', '5:11', '6:11', '11:11'], says: 'routes[0].path: path prefix segment "%2e%2e" can never match a request (dot-segment)' },
    { fixture: 'empty.yaml', at: ['1:1'], says: 'the configuration file is empty' },
    { fixture: 'missing-required.yaml', at: ['2:5', '9:7'], says: 'routes[0]: missing required key "host"' },
    {
      fixture: 'multiple-errors.yaml',
      at: ['2:11', '3:3', '5:9', '7:9', '10:21', '10:36', '14:13', '17:9', '20:5', '20:15', '23:11', '24:13', '25:32'],
      says: 'databases[0].upstream.port: must be at least 1',
    },
  ])('reports every problem in $fixture at its exact line:col', async ({ fixture, at, says }) => {
    const file = join(FIXTURES, 'invalid', fixture);
    const result = await loadConfigFile(file, {});
    expect(positions(result)).toEqual(at);
    const issues = issuesOf(result);
    expect(issues.every((i) => i.file === file)).toBe(true);
    expect(issues.some((i) => i.message.startsWith(says))).toBe(true);
  });

  it('loads the example from the spec, ${VAR} inside a flow map included', async () => {
    const env = { HOSTNAME: 'gw-0', PORTCULLIS_OIDC_SECRET: 'oidc-secret', PG_PASSWORD: 'pg secret, with: {yaml}' };
    const config = configOf(await loadConfigFile(join(FIXTURES, 'valid', 'spec-example.yaml'), env));
    expect(config.routes.map((r) => r.id)).toEqual(['grafana', 'status']);
    expect(config.databases[0]?.upstream.password).toBe('pg secret, with: {yaml}');
    expect(config.server.instance_id).toBe('gw-0');
  });

  it('substitutes ${VAR} in every kind of value, converting where a number or boolean is wanted', async () => {
    const env = { HOSTNAME: 'gw-1', PG_HOST: 'db.internal', PG_PORT: '6432', PG_PASSWORD: 'hunter2', UPSTREAM_HOST: '10.0.0.5', WEBSOCKET: 'true' };
    const config = configOf(await loadConfigFile(join(FIXTURES, 'env', 'env-everywhere.yaml'), env));
    expect(config.server.listen).toBe('127.0.0.1:8080');
    expect(config.server.instance_id).toBe('gw-1');
    expect(config.databases[0]?.upstream).toEqual({ host: 'db.internal', port: 6432, database: 'app', user: 'app_ro', password: 'hunter2', connect_timeout: 5000 });
    expect(config.routes[0]).toMatchObject({ upstream: 'http://10.0.0.5:3000', websocket: true });
  });

  it.each([
    { why: 'does not exist', file: (dir: string) => join(dir, 'nope.yaml'), says: 'it does not exist' },
    { why: 'is a directory', file: (dir: string) => { mkdirSync(join(dir, 'sub')); return join(dir, 'sub'); }, says: 'it is a directory' },
  ])('reports a file that $why as one issue at 1:1', async ({ file, says }) => {
    const path = file(mkdtempSync(join(tmpdir(), 'portcullis-config-')));
    const result = await loadConfigFile(path, {});
    expect(issuesOf(result)).toEqual([{ file: path, line: 1, col: 1, message: `cannot read the configuration file: ${says}` }]);
  });
});

describe('loadConfigText', () => {
  const route = 'routes:\n  - {id: app, host: app.localhost, upstream: http://127.0.0.1:3000';

  it('accepts an empty document as all defaults', () => {
    const config = configOf(loadConfigText('# nothing here\n', 'c.yaml', {}));
    expect(config.routes).toEqual([]);
    expect(config.server.listen).toBe('127.0.0.1:8080');
    expect(config.audit.seal.every).toBe(10_000);
  });

  it('returns the file it was given on success', () => {
    const result = loadConfigText('', 'some/where.yaml', {});
    expect(result.ok && result.file).toBe('some/where.yaml');
  });

  it.each([
    { text: 'server:\n  bogus: 1\n', at: '2:3', message: 'unknown key "bogus" in server' },
    { text: 'bogus: 1\n', at: '1:1', message: 'unknown key "bogus"' },
    { text: '- a\n', at: '1:1', message: 'expected a map, got a list' },
    { text: 'server:\n', at: '1:1', message: 'server: expected a map, got an empty value' },
    { text: 'server: {listen: }\n', at: '1:10', message: 'server.listen: expected a string, got an empty value' },
    { text: 'identity:\n  providers:\n    - {id: corp, type: oidc, issuer: https://x, client_id: 1234}\n', at: '3:60', message: 'identity.providers[0].client_id: expected a string, got an integer (quote it to make it a string)' },
    { text: 'identity:\n  providers:\n    - {id: x, type: ldap}\n', at: '3:21', message: 'identity.providers[0].type: expected one of "local", "oidc"' },
    { text: 'identity:\n  providers:\n    - {id: x}\n', at: '3:7', message: 'identity.providers[0]: missing required key "type" (one of "local", "oidc")' },
    { text: 'server:\n  limits: {max_body: true}\n', at: '2:22', message: 'server.limits.max_body: expected a number or a string, got true' },
    { text: 'server:\n  limits: {max_body: lots}\n', at: '2:22', message: 'server.limits.max_body: expected a size such as 16KiB, 10MB or 1GiB' },
    { text: `${route}, mfa: {factors: []}}\n`, at: '2:84', message: 'routes[0].mfa.factors: expected at least 1 item' },
    { text: `${route}, mfa: {factors: [webauthn]}}\n`, at: '2:74', message: 'routes[0].mfa: missing required key "max_age"' },
    { text: 'a: &x 1\nb: *y\n', at: '2:4', message: 'b: unknown anchor "y" (an anchor must be defined before its alias)' },
    { text: 'a: &x [*x]\n', at: '1:8', message: 'a[0]: alias *x refers to a node that contains it' },
    { text: '? [a]\n: 1\n', at: '1:3', message: 'map keys must be plain strings' },
    { text: 'a: !!foo bar\n', at: '1:4', message: 'YAML: unresolved tag: tag:yaml.org,2002:foo' },
    { text: 'a: 1\n---\nb: 2\n', at: '2:1', message: 'invalid YAML: source contains multiple documents; please use YAML.parseAllDocuments()' },
  ])('reports $message at $at', ({ text, at, message }) => {
    const issues = issuesOf(loadConfigText(text, 'c.yaml', {}));
    expect(issues.map((i) => `${i.line}:${i.col}`)).toContain(at);
    expect(issues.find((i) => `${i.line}:${i.col}` === at)?.message).toBe(message);
  });

  it('points at the parent map when a required key is missing', () => {
    const text = 'databases:\n  - id: pg\n    type: postgres\n    listen: 127.0.0.1:15432\n    upstream:\n      host: db\n      user: ro\n';
    expect(issuesOf(loadConfigText(text, 'c.yaml', {}))).toEqual([
      { file: 'c.yaml', line: 6, col: 7, message: 'databases[0].upstream: missing required key "database"' },
    ]);
  });

  it('reports each unknown key of one map at that key', () => {
    const text = 'server:\n  listen: 127.0.0.1:1\n  one: 1\n  two: 2\n';
    expect(positions(loadConfigText(text, 'c.yaml', {}))).toEqual(['3:3', '4:3']);
  });

  it('reports all issues sorted by line, then column', () => {
    const text = 'routes:\n  - {id: B, host: "-", upstream: x}\nserver: {listen: x, admin_listen: y}\n';
    expect(positions(loadConfigText(text, 'c.yaml', {}))).toEqual(['2:10', '2:19', '2:34', '3:18', '3:35']);
  });

  it('stops after a YAML syntax error instead of guessing at the rest', () => {
    const text = 'server: {listen: [}\nroutes: 5\n';
    const issues = issuesOf(loadConfigText(text, 'c.yaml', {}));
    expect(issues.every((i) => i.message.startsWith('invalid YAML: '))).toBe(true);
  });

  it('reports the position of a key in a document that expands aliases', () => {
    const text = 'defaults: &d {groups: [eng]}\n';
    expect(issuesOf(loadConfigText(text, 'c.yaml', {}))[0]).toMatchObject({ line: 1, col: 1, message: 'unknown key "defaults"' });
  });

  it('refuses an alias bomb without expanding it', () => {
    const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`);
    const issues = issuesOf(loadConfigText(`${lines.join('\n')}\n`, 'c.yaml', {}));
    expect(issues.some((i) => i.message.includes('expands to more than 100000 values'))).toBe(true);
  });

  it('treats a "__proto__" key as an unknown key', () => {
    const issues = issuesOf(loadConfigText('server:\n  __proto__: {listen: x}\n', 'c.yaml', {}));
    expect(issues.map((i) => i.message)).toEqual(['unknown key "__proto__" in server']);
  });

  describe('with ${VAR} substitution', () => {
    const env = { PORT: '6543', HOST: 'db.internal', SECRET: 'p@ss: {x}, [y] # z', EMPTY: '', YES: 'true', WORD: 'five' };
    const db = (upstream: string) =>
      `databases:\n  - id: pg\n    type: postgres\n    listen: 127.0.0.1:15432\n    upstream: {${upstream}}\n`;
    const upstreamOf = (text: string) => configOf(loadConfigText(text, 'c.yaml', env)).databases[0]?.upstream;

    it.each([
      { upstream: 'host: ${HOST}, database: d, user: u', field: 'host', value: 'db.internal' },
      { upstream: 'host: "${HOST}", database: d, user: u', field: 'host', value: 'db.internal' },
      { upstream: "host: '${HOST}', database: d, user: u", field: 'host', value: 'db.internal' },
      { upstream: 'host: h, database: d, user: u, password: ${SECRET}', field: 'password', value: 'p@ss: {x}, [y] # z' },
      { upstream: 'host: ${UNSET:-fallback.local}, database: d, user: u', field: 'host', value: 'fallback.local' },
      { upstream: 'host: ${EMPTY:-fallback.local}, database: d, user: u', field: 'host', value: 'fallback.local' },
      { upstream: 'host: ${HOST:-fallback.local}, database: d, user: u', field: 'host', value: 'db.internal' },
      { upstream: 'host: h, database: d, user: u, password: ${EMPTY}', field: 'password', value: '' },
      { upstream: 'host: h, database: d, user: u, password: "$${HOST}"', field: 'password', value: '${HOST}' },
      { upstream: 'host: h, database: d, user: u, password: a$${HOST}b${HOST}', field: 'password', value: 'a${HOST}bdb.internal' },
      { upstream: 'host: h, database: d, user: u, password: cost$5', field: 'password', value: 'cost$5' },
      { upstream: 'host: h, database: d, user: u, port: ${PORT}', field: 'port', value: 6543 },
      { upstream: 'host: h, database: d, user: u, port: "${PORT:-5432}"', field: 'port', value: 6543 },
    ])('substitutes $upstream', ({ upstream, field, value }) => {
      expect(upstreamOf(db(upstream))).toMatchObject({ [field]: value });
    });

    it('substitutes inside block scalars and keeps the rest of the text', () => {
      const text = 'routes:\n  - id: app\n    host: app.localhost\n    upstream: >-\n      http://${HOST:-x}:${PORT}\n';
      expect(configOf(loadConfigText(text, 'c.yaml', env)).routes[0]?.upstream).toBe('http://db.internal:6543');
    });

    it('turns a substituted "true" into a boolean where the schema wants one', () => {
      const text = 'routes:\n  - {id: app, host: a.localhost, upstream: http://h, websocket: ${YES}}\n';
      expect(configOf(loadConfigText(text, 'c.yaml', env)).routes[0]?.websocket).toBe(true);
    });

    it('does not substitute in keys', () => {
      expect(issuesOf(loadConfigText('server:\n  ${HOST}: 1\n', 'c.yaml', env))).toEqual([
        { file: 'c.yaml', line: 2, col: 3, message: 'unknown key "${HOST}" in server' },
      ]);
    });

    it.each([
      { upstream: 'host: ${NOPE}, database: d, user: u', at: '5:22', message: 'databases[0].upstream.host: environment variable NOPE is not set (write ${NOPE:-default} to give a default)' },
      { upstream: 'host: h, database: d, user: u, port: ${WORD}', at: '5:53', message: 'databases[0].upstream.port: expected a number, got a string' },
      { upstream: 'host: "${1BAD}", database: d, user: u', at: '5:22', message: 'databases[0].upstream.host: "${1BAD}" is not a valid reference; expected ${NAME} or ${NAME:-default}' },
      { upstream: 'host: "x${HOST", database: d, user: u', at: '5:22', message: 'databases[0].upstream.host: unterminated "${" (write "$${" for a literal "${")' },
    ])('reports $message at $at', ({ upstream, at, message }) => {
      const issues = issuesOf(loadConfigText(db(upstream), 'c.yaml', env));
      expect(issues.map((i) => `${i.line}:${i.col}: ${i.message}`)).toEqual([`${at}: ${message}`]);
    });

    it('reports every unset variable, and no second error for the same value', () => {
      const text = 'server:\n  public_url: ${A}\n  instance_id: ${B}-${C}\n';
      expect(issuesOf(loadConfigText(text, 'c.yaml', {})).map((i) => `${i.line}:${i.col}: ${i.message.split(':')[1]?.trim() ?? ''}`)).toEqual([
        '2:15: environment variable A is not set (write ${A',
        '3:16: environment variable B is not set (write ${B',
        '3:16: environment variable C is not set (write ${C',
      ]);
    });

    it('cannot change the document structure through a value', () => {
      const text = 'server:\n  instance_id: ${EVIL}\n';
      const issues = issuesOf(loadConfigText(text, 'c.yaml', { EVIL: 'x\nstore: {type: redis}' }));
      expect(issues.map((i) => i.message)).toEqual(["server.instance_id: expected an instance id: letters, digits, ., - and _"]);
    });
  });

  describe('durations', () => {
    const withSession = (idle: string) => `identity:\n  session: {idle_timeout: ${idle}}\n`;
    it.each([
      ['500ms', 500],
      ['90s', 90_000],
      ['10m', 600_000],
      ['12h', 43_200_000],
      ['7d', 604_800_000],
      ['0s', 0],
    ])('reads %s as %d ms', (text, ms) => {
      expect(configOf(loadConfigText(withSession(text), 'c.yaml', {})).identity.session.idle_timeout).toBe(ms);
    });

    it.each([
      ['1.5h', 'expected a duration such as 500ms, 90s, 10m, 12h or 7d'],
      ['10 m', 'expected a duration such as 500ms, 90s, 10m, 12h or 7d'],
      ['10M', 'expected a duration such as 500ms, 90s, 10m, 12h or 7d'],
      ['-5s', 'expected a duration such as 500ms, 90s, 10m, 12h or 7d'],
      ['600', 'expected a duration such as 500ms, 90s, 10m, 12h or 7d (a number needs a unit)'],
      ['99999999999999999d', 'duration 99999999999999999d is too large'],
    ])('rejects %s', (text, message) => {
      expect(issuesOf(loadConfigText(withSession(text), 'c.yaml', {}))).toEqual([
        { file: 'c.yaml', line: 2, col: 27, message: `identity.session.idle_timeout: ${message}` },
      ]);
    });
  });

  it('returns a deep-frozen configuration', () => {
    const text = `${route}, allow: {groups: [eng]}, rules: [{path: /admin, methods: [POST]}]}\n`;
    const config = configOf(loadConfigText(text, 'c.yaml', {}));
    const frozen: unknown[] = [
      config,
      config.server,
      config.server.timeouts,
      config.identity.providers,
      config.identity.providers[0],
      config.routes,
      config.routes[0],
      config.routes[0]?.allow?.groups,
      config.routes[0]?.rules[0]?.methods,
      config.audit.redact.headers,
    ];
    for (const value of frozen) expect(Object.isFrozen(value)).toBe(true);
    expect(() => {
      (config.routes[0]?.allow?.groups as string[]).push('everyone');
    }).toThrow(TypeError);
  });

  it('gives each load its own objects', () => {
    const a = configOf(loadConfigText('', 'a.yaml', {}));
    const b = configOf(loadConfigText('', 'b.yaml', {}));
    expect(a).toEqual(b);
    expect(a.audit.redact.headers).not.toBe(b.audit.redact.headers);
  });
});

describe('formatIssues', () => {
  it('prints one FILE:LINE:COL: message line per issue', () => {
    const issues: ConfigIssue[] = [
      { file: 'config/a.yaml', line: 3, col: 7, message: 'unknown key "x" in server' },
      { file: 'config/a.yaml', line: 10, col: 1, message: 'routes[0]: missing required key "host"' },
    ];
    expect(formatIssues(issues)).toBe('config/a.yaml:3:7: unknown key "x" in server\nconfig/a.yaml:10:1: routes[0]: missing required key "host"');
  });

  it('prints nothing for no issues', () => {
    expect(formatIssues([])).toBe('');
  });
});
