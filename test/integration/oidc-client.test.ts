import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createOidcClient,
  OidcLoginError,
  type OidcClient,
  type OidcLoginErrorReason,
  type OidcProviderConfig,
} from '../../src/identity/oidc-client.js';
import { startOidcProvider, type TestOidcProvider } from '../support/oidc-provider.js';

const REDIRECT_URI = 'http://127.0.0.1:18080/.portcullis/oidc/callback';

function providerConfig(idp: TestOidcProvider, overrides: Partial<OidcProviderConfig> = {}): OidcProviderConfig {
  return {
    id: 'corp',
    type: 'oidc',
    issuer: idp.issuer,
    client_id: idp.clientId,
    client_secret: idp.clientSecret,
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: { user: 'email', groups: 'groups' },
    ...overrides,
  };
}

async function expectReason(p: Promise<unknown>, reason: OidcLoginErrorReason): Promise<OidcLoginError> {
  const err: unknown = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OidcLoginError);
  expect((err as OidcLoginError).reason).toBe(reason);
  return err as OidcLoginError;
}

describe('OIDC client against a real provider', () => {
  let idp: TestOidcProvider;
  let client: OidcClient;

  beforeAll(async () => {
    idp = await startOidcProvider({ redirectUris: [REDIRECT_URI] });
    client = await createOidcClient(providerConfig(idp), { redirectUri: REDIRECT_URI, allowInsecureRequests: true });
  });
  afterAll(async () => {
    await idp.stop();
  });

  it('signs alice in with her e-mail and groups, PKCE, state and nonce', async () => {
    const { url, pending } = await client.beginLogin();
    const auth = new URL(url);
    expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
    expect(auth.searchParams.get('state')).toBe(pending.state);
    expect(auth.searchParams.get('nonce')).toBe(pending.nonce);
    expect(auth.searchParams.get('scope')).toBe('openid email profile groups');
    expect(JSON.parse(JSON.stringify(pending))).toEqual(pending);

    const callback = await idp.loginViaProvider(url, 'alice');
    expect(callback.searchParams.get('code')).toBeTruthy();
    const result = await client.completeLogin(callback, pending);
    expect(result.user).toBe('alice@example.com');
    expect(result.email).toBe('alice@example.com');
    expect(result.groups).toEqual(['eng', 'sre']);
    expect(result.subject).toBe('alice');
    expect(result.refreshToken).toEqual(expect.any(String));
    expect(result.expiresAt).toBeGreaterThan(Date.now());
    expect(result.authTime).toBeLessThanOrEqual(Date.now());
    expect(result.authTime).toBeGreaterThan(Date.now() - 60_000);
  });

  it('signs bob in with his own groups', async () => {
    const { url, pending } = await client.beginLogin();
    const result = await client.completeLogin(await idp.loginViaProvider(url, 'bob'), pending);
    expect(result.user).toBe('bob@example.com');
    expect(result.groups).toEqual(['ops']);
  });

  it('refuses a tampered state', async () => {
    const { url, pending } = await client.beginLogin();
    const callback = await idp.loginViaProvider(url, 'alice');
    const tampered = new URL(callback);
    tampered.searchParams.set('state', `${pending.state}x`);
    await expectReason(client.completeLogin(tampered, pending), 'state-mismatch');
    const missing = new URL(callback);
    missing.searchParams.delete('state');
    await expectReason(client.completeLogin(missing, pending), 'state-mismatch');
    // …and the callback of another login attempt.
    const other = await client.beginLogin();
    await expectReason(client.completeLogin(callback, other.pending), 'state-mismatch');
  });

  it('refuses a code used twice', async () => {
    const { url, pending } = await client.beginLogin();
    const callback = await idp.loginViaProvider(url, 'alice');
    await client.completeLogin(callback, pending);
    const err = await expectReason(client.completeLogin(callback, pending), 'code-invalid');
    expect(err.idpError).toBe('invalid_grant');
  });

  it('refuses an ID token whose nonce is not the pending one', async () => {
    const { url, pending } = await client.beginLogin();
    const callback = await idp.loginViaProvider(url, 'alice');
    const other = await client.beginLogin();
    await expectReason(client.completeLogin(callback, { ...pending, nonce: other.pending.nonce }), 'nonce-mismatch');
  });

  it('refuses the wrong PKCE verifier', async () => {
    const { url, pending } = await client.beginLogin();
    const callback = await idp.loginViaProvider(url, 'alice');
    const other = await client.beginLogin();
    await expectReason(client.completeLogin(callback, { ...pending, codeVerifier: other.pending.codeVerifier }), 'code-invalid');
  });

  it('reports an error the IdP sends to the callback', async () => {
    const { pending } = await client.beginLogin();
    const callback = new URL(REDIRECT_URI);
    callback.searchParams.set('error', 'access_denied');
    callback.searchParams.set('state', pending.state);
    callback.searchParams.set('iss', idp.issuer);
    const err = await expectReason(client.completeLogin(callback, pending), 'idp-error');
    expect(err.idpError).toBe('access_denied');
  });

  it('refreshes with fresh claims and a rotated refresh token', async () => {
    const { url, pending } = await client.beginLogin();
    const first = await client.completeLogin(await idp.loginViaProvider(url, 'alice'), pending);
    if (first.refreshToken === undefined) throw new Error('no refresh token');
    idp.setGroups('alice', ['eng']);
    try {
      const refreshed = await client.refresh(first.refreshToken);
      expect(refreshed.user).toBe('alice@example.com');
      expect(refreshed.subject).toBe('alice');
      expect(refreshed.groups).toEqual(['eng']);
      expect(refreshed.refreshToken).toEqual(expect.any(String));
      expect(refreshed.refreshToken).not.toBe(first.refreshToken);
      expect(refreshed.expiresAt).toBeGreaterThan(Date.now());
      // The rotated-out token is spent.
      const err = await expectReason(client.refresh(first.refreshToken), 'idp-error');
      expect(err.idpError).toBe('invalid_grant');
    } finally {
      idp.setGroups('alice', ['eng', 'sre']);
    }
  });

  it('refuses a login without the configured user claim', async () => {
    const strict = await createOidcClient(providerConfig(idp, { claims: { user: 'upn', groups: 'groups' } }), {
      redirectUri: REDIRECT_URI,
      allowInsecureRequests: true,
    });
    const { url, pending } = await strict.beginLogin();
    const err = await expectReason(strict.completeLogin(await idp.loginViaProvider(url, 'alice'), pending), 'missing-claim');
    expect(err.message).toContain('"upn"');
  });

  it('fails discovery with a clear reason', async () => {
    await expectReason(
      createOidcClient(providerConfig(idp, { issuer: 'http://127.0.0.1:9/' }), {
        redirectUri: REDIRECT_URI,
        allowInsecureRequests: true,
        timeoutMs: 2000,
      }),
      'discovery-failed',
    );
    // Without the test-only switch an http issuer is refused.
    await expectReason(createOidcClient(providerConfig(idp), { redirectUri: REDIRECT_URI }), 'discovery-failed');
  });
});

describe('OIDC client with claims only in userinfo', () => {
  let idp: TestOidcProvider;

  beforeAll(async () => {
    idp = await startOidcProvider({ conformIdTokenClaims: true });
    idp.setRedirectUris([REDIRECT_URI]);
  });
  afterAll(async () => {
    await idp.stop();
  });

  it('reads user and groups from userinfo when the ID token lacks them', async () => {
    const client = await createOidcClient(providerConfig(idp), { redirectUri: REDIRECT_URI, allowInsecureRequests: true });
    const { url, pending } = await client.beginLogin();
    const result = await client.completeLogin(await idp.loginViaProvider(url, 'bob'), pending);
    expect(result.user).toBe('bob@example.com');
    expect(result.email).toBe('bob@example.com');
    expect(result.groups).toEqual(['ops']);
    expect(result.subject).toBe('bob');
  });
});
