/**
 * A real OpenID Provider (oidc-provider 9) on a loopback port for tests: users alice@example.com
 * (groups eng, sre) and bob@example.com (group ops), one confidential client that must use PKCE,
 * refresh tokens, and `loginViaProvider`, which walks the provider's own login and consent pages with
 * plain HTTP requests and a small cookie jar (no browser).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
// @ts-expect-error -- oidc-provider ships no type declarations (and @types/oidc-provider is not installed)
import ProviderModule from 'oidc-provider';

/** The small part of the oidc-provider API used here. */
interface OidcProviderInstance {
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}
type OidcProviderClass = new (issuer: string, configuration: Record<string, unknown>) => OidcProviderInstance;
const Provider = ProviderModule as OidcProviderClass;

export type TestUser = 'alice' | 'bob';

export interface StartOidcProviderOptions {
  /**
   * false (default): every granted claim (email, groups, …) is in the ID token. true: the ID token
   * carries only `sub` and protocol claims, so a client must read the rest from userinfo.
   */
  conformIdTokenClaims?: boolean;
  /** Redirect URIs registered for the client at start; `setRedirectUris` replaces them. */
  redirectUris?: string[];
  accessTokenTtlSeconds?: number;
}

export interface TestOidcProvider {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** The provider's signing keys, private parts included. */
  readonly jwksPrivate: { keys: JWK[] };
  setRedirectUris(uris: string[]): void;
  /** Changes a user's groups (claims served from then on, e.g. to a refresh). */
  setGroups(user: TestUser, groups: string[]): void;
  /**
   * Opens the authorization URL and signs in as `user` on the provider's own pages, granting consent,
   * following redirects until the client's redirect_uri is reached; returns that URL (with code, state
   * and iss, or error), which is not requested.
   */
  loginViaProvider(authorizationUrl: string, user: TestUser): Promise<URL>;
  stop(): Promise<void>;
}

interface StoredItem {
  payload: Record<string, unknown>;
  expiresAt: number;
}

/** oidc-provider storage adapter: in memory, one per provider; the client is served from live metadata. */
class TestAdapter {
  constructor(
    private readonly model: string,
    private readonly store: Map<string, StoredItem>,
    private readonly client: () => Record<string, unknown>,
  ) {}

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  private live(key: string): Record<string, unknown> | undefined {
    const item = this.store.get(key);
    if (item === undefined) return undefined;
    if (item.expiresAt <= Date.now()) {
      this.store.delete(key);
      return undefined;
    }
    return item.payload;
  }

  private findWhere(field: string, value: unknown): Promise<Record<string, unknown> | undefined> {
    for (const key of this.store.keys()) {
      if (!key.startsWith(`${this.model}:`)) continue;
      const payload = this.live(key);
      if (payload?.[field] === value) return Promise.resolve(payload);
    }
    return Promise.resolve(undefined);
  }

  upsert(id: string, payload: Record<string, unknown>, expiresIn: number | undefined): Promise<void> {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.set(this.key(id), { payload, expiresAt });
    return Promise.resolve();
  }

  find(id: string): Promise<Record<string, unknown> | undefined> {
    if (this.model === 'Client') {
      const client = this.client();
      return Promise.resolve(client.client_id === id ? client : undefined);
    }
    return Promise.resolve(this.live(this.key(id)));
  }

  findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
    return this.findWhere('uid', uid);
  }

  findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined> {
    return this.findWhere('userCode', userCode);
  }

  consume(id: string): Promise<void> {
    const payload = this.live(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    return Promise.resolve();
  }

  destroy(id: string): Promise<void> {
    this.store.delete(this.key(id));
    return Promise.resolve();
  }

  revokeByGrantId(grantId: string): Promise<void> {
    for (const [key, item] of this.store) if (item.payload.grantId === grantId) this.store.delete(key);
    return Promise.resolve();
  }
}

const USERS: Record<TestUser, { email: string; name: string; groups: string[] }> = {
  alice: { email: 'alice@example.com', name: 'Alice', groups: ['eng', 'sre'] },
  bob: { email: 'bob@example.com', name: 'Bob', groups: ['ops'] },
};

function isTestUser(id: string): id is TestUser {
  return Object.hasOwn(USERS, id);
}

export async function startOidcProvider(opts: StartOidcProviderOptions = {}): Promise<TestOidcProvider> {
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;

  const clientId = 'portcullis-test';
  const clientSecret = randomBytes(24).toString('base64url');
  let redirectUris = opts.redirectUris ?? ['http://127.0.0.1/callback'];
  const users = structuredClone(USERS);

  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(privateKey)), kid: `test-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };
  const jwksPrivate = { keys: [jwk] };

  const store = new Map<string, StoredItem>();
  const clientMetadata = (): Record<string, unknown> => ({
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    // oidc-provider puts auth_time in ID tokens only on request (max_age, claims) or with this.
    require_auth_time: true,
  });

  const provider = new Provider(issuer, {
    adapter: (model: string) => new TestAdapter(model, store, clientMetadata),
    jwks: jwksPrivate,
    cookies: { keys: [randomBytes(16).toString('hex')] },
    findAccount: (_ctx: unknown, accountId: string) => {
      if (!isTestUser(accountId)) return undefined;
      return {
        accountId,
        claims: () => {
          const u = users[accountId];
          return { sub: accountId, email: u.email, email_verified: true, name: u.name, groups: [...u.groups] };
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    conformIdTokenClaims: opts.conformIdTokenClaims ?? false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    // Refresh tokens without offline_access (which oidc-provider honours only with prompt=consent).
    issueRefreshToken: (_ctx: unknown, client: { grantTypeAllowed(type: string): boolean }) =>
      client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: opts.accessTokenTtlSeconds ?? 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 86_400,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  });
  server.on('request', provider.callback());

  return {
    issuer,
    clientId,
    clientSecret,
    jwksPrivate,
    setRedirectUris(uris) {
      redirectUris = [...uris];
    },
    setGroups(user, groups) {
      users[user].groups = [...groups];
    },
    loginViaProvider: (authorizationUrl, user) => loginViaProvider(authorizationUrl, user, () => redirectUris),
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => {
          if (err) reject(err);
          else resolve();
        });
        server.closeAllConnections();
      }),
  };
}

/** Cookies by name; paths are ignored (every cookie goes to the one provider origin). */
class CookieJar {
  private readonly cookies = new Map<string, string>();

  store(setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k = '', v = ''] = a.split('=').map((s) => s.trim());
        if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
        if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
        return false;
      });
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

function decodeHtmlAttr(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

async function loginViaProvider(authorizationUrl: string, user: TestUser, redirectUris: () => string[]): Promise<URL> {
  const jar = new CookieJar();
  const isCallback = (u: URL) => redirectUris().some((r) => {
    const ru = new URL(r);
    return ru.origin === u.origin && ru.pathname === u.pathname;
  });
  let url = new URL(authorizationUrl);
  let body: URLSearchParams | undefined;
  for (let step = 0; step < 20; step++) {
    if (isCallback(url)) return url;
    const headers: Record<string, string> = { cookie: jar.header() };
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, { method: body ? 'POST' : 'GET', headers, redirect: 'manual', ...(body ? { body } : {}) });
    jar.store(res.headers.getSetCookie());
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location !== null) {
      await res.body?.cancel();
      url = new URL(location, url);
      body = undefined;
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`oidc test provider: ${res.status} at ${url.href}: ${html.slice(0, 500)}`);
    const prompt = /name="prompt" value="([a-z]+)"/.exec(html)?.[1];
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    if (action === undefined || (prompt !== 'login' && prompt !== 'consent')) {
      throw new Error(`oidc test provider: unexpected page at ${url.href}: ${html.slice(0, 500)}`);
    }
    url = new URL(decodeHtmlAttr(action), url);
    body = new URLSearchParams(prompt === 'login' ? { prompt, login: user, password: 'any' } : { prompt });
  }
  throw new Error('oidc test provider: too many steps before reaching the redirect_uri');
}
