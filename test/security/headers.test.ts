/**
 * Header games: spoofed identity and forwarding headers, rewrite and method-override headers,
 * underscore and dotted look-alike names, duplicate Authorization, hop-by-hop abuse, health-check
 * user agents. The harness's invariants already refuse any client-sent X-Portcullis-* / X-Forwarded-*
 * (or look-alike) header, forwarding, rewrite and override headers, hop-by-hop headers and gateway
 * cookies at the upstream, and check X-Portcullis-User against the request's audit record.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, PEER, rawCase, signIn, startSecurityEnv, type SecurityEnv } from './harness.js';

let env: SecurityEnv;
let alice = '';

beforeAll(async () => {
  env = await startSecurityEnv('headers');
  alice = await signIn(env, 'alice');
});

afterAll(async () => {
  await env.stop();
});

function req(target: string, headers: readonly string[], opts: { asAlice?: boolean; method?: string; body?: string } = {}): string {
  const lines = [`${opts.method ?? 'GET'} ${target} HTTP/1.1`, `Host: ${HOST}`, ...(opts.asAlice === true ? [`Cookie: ${alice}`] : []), ...headers];
  if (opts.body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(opts.body)}`);
  return `${lines.join('\r\n')}\r\nConnection: close\r\n\r\n${opts.body ?? ''}`;
}

interface HeaderCase {
  readonly name: string;
  readonly headers: readonly string[];
  readonly target?: string;
  readonly asAlice?: boolean;
  readonly status?: number;
}

/** Anonymous to /public unless told: 200, forwarded, and the invariants check what arrived. */
const SPOOFS: readonly HeaderCase[] = [
  { name: 'X-Portcullis-User', headers: ['X-Portcullis-User: admin'] },
  { name: 'x-portcullis-user in the gateway’s own spelling', headers: ['x-portcullis-user: admin'] },
  // oauth2-proxy CVE-2025-64484, Traefik CVE-2026-33433: underscore variants normalised by CGI/WSGI.
  { name: 'X_Portcullis_User (underscores)', headers: ['X_Portcullis_User: admin'] },
  { name: 'X-Portcullis_User (mixed)', headers: ['X-Portcullis_User: admin'] },
  { name: 'X.Portcullis.User (dots)', headers: ['X.Portcullis.User: admin'] },
  { name: 'X~Portcullis~Groups (tildes)', headers: ['X~Portcullis~Groups: sre'] },
  { name: 'X-Portcullis-Groups', headers: ['X-Portcullis-Groups: sre,admin'] },
  { name: 'X-Portcullis-Email', headers: ['X-Portcullis-Email: boss@example.com'] },
  { name: 'X-Portcullis-MFA', headers: ['X-Portcullis-MFA: webauthn;age=1'] },
  { name: 'X-Portcullis-Assertion', headers: ['X-Portcullis-Assertion: eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.'] },
  { name: 'X-Portcullis-Request-Id', headers: ['X-Portcullis-Request-Id: 00000000-0000-0000-0000-000000000000'] },
  { name: 'X-Portcullis-User as alice', headers: ['X-Portcullis-User: bob', 'X-Portcullis-Groups: sre'], target: '/app/x', asAlice: true },
  { name: 'X-Forwarded-For from an untrusted peer', headers: ['X-Forwarded-For: 10.1.2.3'] },
  { name: 'X_Forwarded_For (underscores)', headers: ['X_Forwarded_For: 10.1.2.3'] },
  { name: 'X-Forwarded-Host', headers: ['X-Forwarded-Host: admin.evil.example'] },
  { name: 'X-Forwarded-Proto', headers: ['X-Forwarded-Proto: https'] },
  { name: 'X-Forwarded-Port', headers: ['X-Forwarded-Port: 443'] },
  { name: 'X-Forwarded-Prefix', headers: ['X-Forwarded-Prefix: /admin'] },
  // oauth2-proxy CVE-2026-40575: X-Forwarded-Uri believed from anyone.
  { name: 'X-Forwarded-Uri', headers: ['X-Forwarded-Uri: /public'] },
  { name: 'Forwarded', headers: ['Forwarded: for=10.1.2.3;host=evil.example;proto=https'] },
  { name: 'X-Real-IP', headers: ['X-Real-IP: 10.1.2.3'] },
  { name: 'True-Client-IP', headers: ['True-Client-IP: 10.1.2.3'] },
  { name: 'X-Client-IP', headers: ['X-Client-IP: 10.1.2.3'] },
  // IIS / Symfony / Laravel rewrite headers: the upstream would route by them.
  { name: 'X-Original-URL', headers: ['X-Original-URL: /admin'] },
  { name: 'X-Rewrite-URL', headers: ['X-Rewrite-URL: /admin'] },
  { name: 'X-Original-URI', headers: ['X-Original-URI: /admin'] },
  { name: 'X-Override-URL', headers: ['X-Override-URL: /admin'] },
  { name: 'Proxy-Authorization', headers: ['Proxy-Authorization: Basic YTpi'] },
  { name: 'Proxy-Connection and Keep-Alive', headers: ['Proxy-Connection: keep-alive', 'Keep-Alive: timeout=600'] },
  { name: 'TE: trailers', headers: ['TE: trailers'] },
  { name: 'Trailer', headers: ['Trailer: X-Portcullis-User'] },
  { name: 'HTTP2-Settings without an upgrade', headers: ['HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'] },
  { name: 'Upgrade: h2c without Connection: upgrade (h2c smuggling)', headers: ['Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'] },
  { name: 'a tossed session cookie next to an app cookie', headers: ['Cookie: app=1; portcullis_session=AAAA; __Host-portcullis=BBBB; portcullis_csrf=CCCC'] },
];

describe('spoofed identity, forwarding and rewrite headers never reach the upstream', () => {
  for (const c of SPOOFS) {
    it(c.name, async () => {
      const target = c.target ?? '/public/h';
      await rawCase(env, { name: c.name, send: req(target, c.headers, { asAlice: c.asAlice === true }), expect: c.status ?? 200, upstream: [target] });
    });
  }

  it('records the peer, not a spoofed X-Forwarded-For, as the client', async () => {
    await rawCase(env, {
      name: 'xff record',
      send: req('/public/xff', ['X-Forwarded-For: 10.9.9.9, 10.8.8.8']),
      expect: 200,
      upstream: ['/public/xff'],
      check: (_x, seen) => expect(seen.records[0]?.client?.ip).toBe(PEER),
    });
  });

  it('keeps an app cookie and drops only the gateway’s', async () => {
    await rawCase(env, {
      name: 'cookie filter',
      send: req('/public/c', ['Cookie: app=1; portcullis_session=x; theme=dark']),
      expect: 200,
      upstream: ['/public/c'],
      check: (_x, seen) => expect(seen.upstream[0]?.headers.cookie).toBe('app=1; theme=dark'),
    });
  });
});

describe('identity headers do not grant anything', () => {
  it('X-Portcullis-Groups: sre does not open /admin to alice', async () => {
    await rawCase(env, { name: 'groups header', send: req('/admin/users', ['X-Portcullis-Groups: sre', 'X-Portcullis-User: bob'], { asAlice: true }), expect: 403 });
  });

  it('X-Portcullis-User does not sign anyone in', async () => {
    await rawCase(env, { name: 'user header', send: req('/app/x', ['X-Portcullis-User: alice', 'Accept: application/json']), expect: 401 });
  });

  it('X-Portcullis-MFA does not satisfy a step-up', async () => {
    await rawCase(env, { name: 'mfa header', send: req('/stepup/x', ['X-Portcullis-MFA: totp;age=1', 'Accept: application/json'], { asAlice: true }), expect: 401 });
  });

  it('X-Forwarded-Uri naming a public path does not open /admin', async () => {
    await rawCase(env, { name: 'x-forwarded-uri', send: req('/admin/x', ['X-Forwarded-Uri: /public/x', 'X-Original-URL: /public/x']), expect: 401 });
  });
});

describe('method overrides', () => {
  // The /app/admin rule restricts POST, PUT and DELETE to sre; GET falls to the eng route.
  for (const h of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'X-Original-Method', 'X_HTTP_Method_Override']) {
    it(`${h}: DELETE on a GET is stripped (the upstream sees the GET that was judged)`, async () => {
      await rawCase(env, {
        name: h,
        send: req('/app/admin/thing', [`${h}: DELETE`], { asAlice: true }),
        expect: 200,
        upstream: ['/app/admin/thing'],
        check: (_x, seen) => expect(seen.upstream[0]?.method).toBe('GET'),
      });
    });
  }

  it('a POST the rule restricts is refused whatever the override says', async () => {
    await rawCase(env, { name: 'post override', send: req('/app/admin/thing', ['X-HTTP-Method-Override: GET'], { asAlice: true, method: 'POST', body: 'x=1' }), expect: 403 });
  });
});

describe('Authorization', () => {
  it('refuses two Authorization headers (which one would policy have judged?)', async () => {
    await rawCase(env, { name: 'dup authorization', send: req('/public/a', ['Authorization: Basic YTpi', 'Authorization: Bearer x.y.z']), expect: 400 });
  });

  it('refuses Authorization next to an underscore look-alike', async () => {
    await rawCase(env, { name: 'authorization look-alike', send: req('/public/a', ['Authorization: Basic YTpi', 'Authorization_: Bearer x.y.z']), expect: 200, upstream: ['/public/a'] });
  });

  it('forwards a Basic header for the upstream’s own login; the cookie decides', async () => {
    await rawCase(env, {
      name: 'basic + cookie',
      send: req('/app/basic', ['Authorization: Basic YTpi'], { asAlice: true }),
      expect: 200,
      upstream: ['/app/basic'],
      check: (_x, seen) => expect(seen.upstream[0]?.headers.authorization).toBe('Basic YTpi'),
    });
  });

  it('an invalid bearer token never falls back to the session cookie', async () => {
    await rawCase(env, { name: 'bad bearer + cookie', send: req('/app/x', ['Authorization: Bearer not.a.jwt', 'Accept: application/json'], { asAlice: true }), expect: 401 });
  });
});

describe('hop-by-hop abuse (Traefik CVE-2024-45410, Fabio CVE-2025-48865)', () => {
  const NAMED: readonly string[] = ['X-Portcullis-User', 'X-Portcullis-Groups, X-Portcullis-Assertion', 'X-Forwarded-For', 'X-Forwarded-Host, X-Forwarded-Proto', 'X-Portcullis-Request-Id', 'Host', 'Cookie'];
  for (const named of NAMED) {
    it(`Connection: ${named} cannot remove what the gateway adds`, async () => {
      await rawCase(env, {
        name: named,
        send: req('/app/hop', [`Connection: keep-alive, ${named}`], { asAlice: true }),
        expect: 200,
        upstream: ['/app/hop'],
        check: (_x, seen) => {
          const h = seen.upstream[0]?.headers;
          expect(h?.['x-portcullis-user']).toBe('alice');
          expect(h?.['x-portcullis-groups']).toBe('eng');
          expect(typeof h?.['x-portcullis-assertion']).toBe('string');
          expect(h?.['x-forwarded-for']).toBe(PEER);
          expect(h?.['x-forwarded-host']).toBe(HOST);
          expect(h?.['x-forwarded-proto']).toBe('http');
          expect(h?.host).toBe(new URL(env.upstream.url).host);
        },
      });
    });
  }

  it('Connection: Content-Length cannot strip the framing of a forwarded body', async () => {
    await rawCase(env, {
      name: 'connection content-length',
      send: req('/public/body', ['Connection: Content-Length', 'Content-Type: text/plain'], { method: 'POST', body: 'hello world' }),
      expect: 200,
      upstream: ['/public/body'],
      check: (_x, seen) => expect(seen.upstream[0]?.bodyBytes).toBe(11),
    });
  });

  it('a header named in Connection is dropped (the client’s own choice)', async () => {
    await rawCase(env, {
      name: 'connection names app header',
      send: req('/public/h2', ['Connection: X-App', 'X-App: 1', 'X-Kept: 2']),
      expect: 200,
      upstream: ['/public/h2'],
      check: (_x, seen) => {
        expect(seen.upstream[0]?.headers['x-app']).toBeUndefined();
        expect(seen.upstream[0]?.headers['x-kept']).toBe('2');
      },
    });
  });
});

describe('health-check user agents get no special treatment', () => {
  for (const ua of ['kube-probe/1.29', 'ELB-HealthChecker/2.0', 'GoogleHC/1.0', 'Consul Health Check', 'Blackbox Exporter/0.24.0']) {
    it(ua, async () => {
      await rawCase(env, { name: ua, send: req('/admin/health', [`User-Agent: ${ua}`, 'Accept: application/json']), expect: 401 });
    });
  }
});

describe('malformed header syntax', () => {
  // Node CVE-2021-22959 (llhttp): a space before the colon.
  it('space between a header name and the colon', async () => {
    await rawCase(env, { name: 'space before colon', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-Portcullis-User : admin\r\nConnection: close\r\n\r\n`, expect: 400 });
  });

  it('a header name with a space inside', async () => {
    await rawCase(env, { name: 'space in name', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX Portcullis User: admin\r\nConnection: close\r\n\r\n`, expect: 400 });
  });

  it('an empty header name', async () => {
    await rawCase(env, { name: 'empty name', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\n: admin\r\nConnection: close\r\n\r\n`, expect: 400 });
  });

  it('NUL in a header value (Envoy CVE-2019-9900)', async () => {
    await rawCase(env, { name: 'nul value', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\u0000b\r\nConnection: close\r\n\r\n`, expect: 400 });
  });

  it('a header line without a colon', async () => {
    await rawCase(env, { name: 'no colon', send: `GET /public/x HTTP/1.1\r\nHost: ${HOST}\r\nX-Portcullis-User admin\r\nConnection: close\r\n\r\n`, expect: 400 });
  });
});
