/**
 * The command line's client pieces without a gateway: curl argument reading (method and URL, and
 * every refusal), DPoP proofs (verified with jose as a resource server would), the credentials
 * store's permissions, the loopback callback's state check, the step-up challenge reader, and the
 * PostgreSQL tunnel's startup rewriting.
 */
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { browserCommand } from '../../src/cli/client/browser.js';
import { credentialsDir, CredentialsError, gatewayOrigin, loadCredentials, readStore, removeCredentials, resolveGateway, saveCredentials, type GatewayCredentials } from '../../src/cli/client/credentials.js';
import { CurlArgsError, parseCurlArgs } from '../../src/cli/client/curl-args.js';
import { athOf, dpopProof, generateDpopKey, htuOf, loadDpopKey } from '../../src/cli/client/dpop.js';
import { tunnelTargetPath } from '../../src/cli/client/http-tunnel.js';
import { newState, pkcePair, startLoopback } from '../../src/cli/client/loopback.js';
import { passwordMessage, readDatabaseLogin, rewriteStartup } from '../../src/cli/client/pg-tunnel.js';
import { mfaSatisfies, readStepUpChallenge, stepUpUrlForToken, stepUpUrlFromBody } from '../../src/cli/client/step-up.js';
import { lastResponseHead } from '../../src/cli/curl.js';
import { isLoopback, parseListen } from '../../src/cli/tunnel.js';
import { parseStartupPacket } from '../../src/database/protocol.js';

describe('curl arguments', () => {
  const cases: [string[], string, string][] = [
    [['https://gw.example/a?b=1'], 'GET', 'https://gw.example/a?b=1'],
    [['-s', '-S', 'http://gw.example/x'], 'GET', 'http://gw.example/x'],
    [['-sSL', '-o', '/dev/null', 'http://gw.example/x'], 'GET', 'http://gw.example/x'],
    [['-XDELETE', 'http://gw.example/x'], 'DELETE', 'http://gw.example/x'],
    [['--request', 'PATCH', '--url', 'http://gw.example/x'], 'PATCH', 'http://gw.example/x'],
    [['-I', 'http://gw.example/x'], 'HEAD', 'http://gw.example/x'],
    [['--head', 'http://gw.example/x'], 'HEAD', 'http://gw.example/x'],
    [['-d', 'a=1', 'http://gw.example/x'], 'POST', 'http://gw.example/x'],
    [['-sd@body.json', 'http://gw.example/x'], 'POST', 'http://gw.example/x'],
    [['--data-binary', '@f', 'http://gw.example/x'], 'POST', 'http://gw.example/x'],
    [['--json', '{"a":1}', 'http://gw.example/x'], 'POST', 'http://gw.example/x'],
    [['-F', 'f=@x', 'http://gw.example/x'], 'POST', 'http://gw.example/x'],
    [['-G', '-d', 'q=1', 'http://gw.example/x'], 'GET', 'http://gw.example/x'],
    [['-T', 'file', 'http://gw.example/x'], 'PUT', 'http://gw.example/x'],
    [['-d', 'x', '-X', 'PUT', 'http://gw.example/x'], 'PUT', 'http://gw.example/x'],
    [['-H', 'Accept: application/json', '-w', '%{http_code}', 'http://gw.example/x'], 'GET', 'http://gw.example/x'],
    [['-g', 'http://gw.example/x[1]'], 'GET', 'http://gw.example/x[1]'],
    [['--no-progress-meter', '--compressed', 'http://gw.example/x'], 'GET', 'http://gw.example/x'],
  ];
  it.each(cases)('%j → %s %s', (args, method, url) => {
    const r = parseCurlArgs(args);
    expect(r.method).toBe(method);
    expect(r.url.href).toBe(url);
  });

  it('reports -o, -D and -f', () => {
    expect(parseCurlArgs(['-fo', 'out.txt', '-D', 'h.txt', 'http://gw.example/'])).toMatchObject({ output: 'out.txt', dumpHeader: 'h.txt', fail: true });
  });

  const refused: [string[], RegExp][] = [
    [[], /no URL/],
    [['http://a.example/', 'http://b.example/'], /several URLs/],
    [['--frobnicate', 'http://gw.example/'], /unknown curl option --frobnicate/],
    [['-%', 'http://gw.example/'], /unknown curl option -%/],
    [['-K', 'cfg', 'http://gw.example/'], /config file/],
    [['http://gw.example/', '--next', 'http://gw.example/b'], /--next/],
    [['http://gw.example/{a,b}'], /globoff/],
    [['gw.example/x'], /full URL with its scheme/],
    [['-H', 'Authorization: Bearer x', 'http://gw.example/'], /sets the Authorization header itself/],
    [['-H', 'dpop: x', 'http://gw.example/'], /sets the dpop header itself/],
    [['--request-target', '/other', 'http://gw.example/'], /request-target/],
    [['--location-trusted', 'http://gw.example/'], /other hosts/],
    [['--request=GET', 'http://gw.example/'], /--request VALUE/],
    [['-X', 'GE T', 'http://gw.example/'], /not an HTTP method/],
    [['-X'], /needs a value/],
    [['http://user:pw@gw.example/'], /user name or password/],
  ];
  it.each(refused)('refuses %j', (args, why) => {
    expect(() => parseCurlArgs(args)).toThrow(CurlArgsError);
    expect(() => parseCurlArgs(args)).toThrow(why);
  });

  it('reads the last response head of a -D dump (redirects, 100-continue)', () => {
    const dump = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /b\r\n\r\nHTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="x"\r\nwww-authenticate: DPoP error="insufficient_user_authentication", max_age=600\r\n\r\n';
    expect(lastResponseHead(dump)).toEqual({ status: 401, wwwAuthenticate: ['Bearer realm="x"', 'DPoP error="insufficient_user_authentication", max_age=600'] });
    expect(lastResponseHead('')).toBeUndefined();
  });
});

describe('DPoP proofs', () => {
  it('carry typ, alg, the public jwk, htm, htu (no query), iat, jti and ath — and verify with the key in the header', async () => {
    const key = await generateDpopKey();
    const token = 'pct_' + 'A'.repeat(43);
    const proof = await dpopProof(key, 'POST', 'https://GW.example:443/api/x?y=1#frag', token);
    const header = decodeProtectedHeader(proof);
    expect(header).toMatchObject({ typ: 'dpop+jwt', alg: 'ES256' });
    const jwk = header.jwk as JWK;
    expect(jwk).toEqual({ kty: 'EC', crv: 'P-256', x: key.jwk.x, y: key.jwk.y });
    expect(JSON.stringify(header)).not.toContain('"d"');
    const { payload } = await jwtVerify(proof, await importJWK(jwk, 'ES256'), { typ: 'dpop+jwt', algorithms: ['ES256'] });
    expect(payload.htm).toBe('POST');
    expect(payload.htu).toBe('https://gw.example/api/x');
    expect(Math.abs((payload.iat ?? 0) - Date.now() / 1000)).toBeLessThan(5);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(payload.ath).toBe(athOf(token));
    expect(key.thumbprint).toBe(await calculateJwkThumbprint(jwk, 'sha256'));
    // Fresh jti each time; no ath on the token endpoint.
    const again = await dpopProof(key, 'POST', 'https://gw.example/.portcullis/cli/token');
    const p2 = (await jwtVerify(again, await importJWK(jwk, 'ES256'))).payload;
    expect(p2.jti).not.toBe(payload.jti);
    expect(p2.ath).toBeUndefined();
  });

  it('a stored key makes the same thumbprint and proofs another key cannot pass for', async () => {
    const key = await generateDpopKey();
    const reloaded = await loadDpopKey(key.jwk);
    expect(reloaded.thumbprint).toBe(key.thumbprint);
    const other = await generateDpopKey();
    const proof = await dpopProof(other, 'GET', 'http://gw.example/');
    await expect(jwtVerify(proof, await importJWK({ ...key.publicJwk }, 'ES256'))).rejects.toThrow();
  });

  it('ath is base64url SHA-256, and htu keeps non-default ports', () => {
    expect(athOf('abc')).toBe('ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
    expect(htuOf('http://localhost:8080/a/b?c')).toBe('http://localhost:8080/a/b');
    expect(htuOf('http://localhost:80/')).toBe('http://localhost/');
  });
});

function entry(gateway: string, extra: Partial<GatewayCredentials> = {}): GatewayCredentials {
  return { gateway, access_token: 'pct_x', refresh_token: 'pcr_y', token_type: 'Bearer', expires_at: new Date(Date.now() + 3600_000).toISOString(), user: 'alice', groups: ['eng'], name: 'laptop', obtained_at: new Date().toISOString(), key: undefined, ...extra };
}

describe('credentials store', () => {
  it('lives in $PORTCULLIS_HOME, else $XDG_CONFIG_HOME/portcullis, else ~/.config/portcullis', () => {
    expect(credentialsDir({ PORTCULLIS_HOME: '/p', XDG_CONFIG_HOME: '/x', HOME: '/h' })).toBe('/p');
    expect(credentialsDir({ XDG_CONFIG_HOME: '/x', HOME: '/h' })).toBe('/x/portcullis');
    expect(credentialsDir({ HOME: '/h' })).toBe('/h/.config/portcullis');
  });

  it('writes a 0700 directory and a 0600 file keyed by origin, and removes entries', async () => {
    const home = join(mkdtempSync(join(tmpdir(), 'pc-cred-')), 'nested');
    const env = { PORTCULLIS_HOME: home };
    const key = await generateDpopKey();
    await saveCredentials(env, entry('https://gw.example', { token_type: 'DPoP', key: key.jwk }));
    await saveCredentials(env, entry('http://localhost:8080'));
    expect(statSync(home).mode & 0o777).toBe(0o700);
    const file = join(home, 'credentials.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { version: number; gateways: Record<string, unknown> };
    expect(raw.version).toBe(1);
    expect(Object.keys(raw.gateways).sort()).toEqual(['http://localhost:8080', 'https://gw.example']);
    const loaded = await loadCredentials(env, 'https://gw.example');
    expect(loaded.key).toEqual(key.jwk);
    expect(loaded.token_type).toBe('DPoP');
    await expect(resolveGateway(undefined, env)).rejects.toThrow(/several gateways/);
    expect(await resolveGateway('https://GW.example:443/x', env)).toBe('https://gw.example');
    expect(await resolveGateway(undefined, { ...env, PORTCULLIS_GATEWAY: 'http://localhost:8080/' })).toBe('http://localhost:8080');
    expect(await removeCredentials(env, 'https://gw.example')).toBe(true);
    expect(await resolveGateway(undefined, env)).toBe('http://localhost:8080');
    expect(await removeCredentials(env, 'https://gw.example')).toBe(false);
    expect(await removeCredentials(env, 'http://localhost:8080')).toBe(true);
    await expect(resolveGateway(undefined, env)).rejects.toThrow(/not logged in/);
  });

  it('refuses a file that group or others can read, and says how to fix it', async () => {
    const home = mkdtempSync(join(tmpdir(), 'pc-cred-'));
    const env = { PORTCULLIS_HOME: home };
    await saveCredentials(env, entry('https://gw.example'));
    const file = join(home, 'credentials.json');
    for (const mode of [0o644, 0o640, 0o604]) {
      chmodSync(file, mode);
      await expect(readStore(env)).rejects.toThrow(CredentialsError);
      await expect(readStore(env)).rejects.toThrow(`chmod 600 ${file}`);
    }
    chmodSync(file, 0o600);
    expect(Object.keys(await readStore(env))).toEqual(['https://gw.example']);
  });

  it('refuses garbage, and bad gateway URLs', async () => {
    const home = mkdtempSync(join(tmpdir(), 'pc-cred-'));
    writeFileSync(join(home, 'credentials.json'), '{nope', { mode: 0o600 });
    await expect(readStore({ PORTCULLIS_HOME: home })).rejects.toThrow(/not valid JSON/);
    expect(() => gatewayOrigin('ftp://x')).toThrow(/http/);
    expect(() => gatewayOrigin('not a url')).toThrow(/not a URL/);
    expect(() => gatewayOrigin('https://u:p@x')).toThrow(/user name/);
  });
});

describe('loopback redirect and PKCE', () => {
  it('PKCE is S256 of a 43-character verifier', () => {
    const { verifier, challenge } = pkcePair();
    expect(verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(challenge).toBe(athOf(verifier));
  });

  it('listens on 127.0.0.1, ignores a wrong state, takes the right one once and closes', async () => {
    const state = newState();
    const lb = await startLoopback(state, 10_000);
    expect(lb.redirectUri).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    const wrong = await fetch(`${lb.redirectUri}?code=c1&state=other`);
    expect(wrong.status).toBe(400);
    expect(await fetch(lb.redirectUri.replace('/callback', '/elsewhere')).then((r) => r.status)).toBe(404);
    const right = await fetch(`${lb.redirectUri}?code=c2&state=${state}`);
    expect(right.status).toBe(200);
    expect(await right.text()).toContain('You can close this tab');
    expect(await lb.result).toEqual({ kind: 'code', code: 'c2' });
    await expect(fetch(lb.redirectUri)).rejects.toThrow();
  });

  it('reports a denial, and gives up after its timeout', async () => {
    const state = newState();
    const lb = await startLoopback(state, 10_000);
    await fetch(`${lb.redirectUri}?error=access_denied&state=${state}`);
    expect(await lb.result).toEqual({ kind: 'error', error: 'access_denied', description: undefined });
    const slow = await startLoopback(newState(), 50);
    await expect(slow.result).rejects.toThrow(/no answer from the browser/);
  });
});

describe('browser choice', () => {
  it('PORTCULLIS_BROWSER wins ("none": never), then BROWSER, then xdg-open with a display', () => {
    expect(browserCommand({ PORTCULLIS_BROWSER: 'none', BROWSER: 'firefox' }, 'linux')).toBeUndefined();
    expect(browserCommand({ PORTCULLIS_BROWSER: 'chromium --new-window' }, 'linux')).toEqual(['chromium', '--new-window']);
    expect(browserCommand({ BROWSER: 'firefox' }, 'linux')).toEqual(['firefox']);
    expect(browserCommand({ DISPLAY: ':0' }, 'linux')).toEqual(['xdg-open']);
    expect(browserCommand({}, 'linux')).toBeUndefined();
    expect(browserCommand({}, 'darwin')).toEqual(['open']);
  });
});

describe('RFC 9470 challenge', () => {
  const www = 'Bearer error="insufficient_user_authentication", error_description="A webauthn or totp check within 600s is required", max_age=600, acr_values="webauthn totp"';
  it('is read from a 401 only, in either scheme', () => {
    expect(readStepUpChallenge(401, ['Bearer realm="portcullis"', www])).toEqual({ maxAge: 600, factors: ['webauthn', 'totp'], description: 'A webauthn or totp check within 600s is required' });
    expect(readStepUpChallenge(401, [www.replace('Bearer', 'DPoP')])?.maxAge).toBe(600);
    expect(readStepUpChallenge(403, [www])).toBeUndefined();
    expect(readStepUpChallenge(401, ['Bearer realm="portcullis"'])).toBeUndefined();
    expect(readStepUpChallenge(401, ['DPoP error="invalid_token"'])).toBeUndefined();
  });

  it('a fresh enough check of an accepted factor satisfies it', () => {
    const c = { maxAge: 600, factors: ['totp'], description: undefined };
    expect(mfaSatisfies({ factor: 'totp', age_s: 3 }, c)).toBe(true);
    expect(mfaSatisfies({ factor: 'totp', age_s: 601 }, c)).toBe(false);
    expect(mfaSatisfies({ factor: 'webauthn', age_s: 3 }, c)).toBe(false);
    expect(mfaSatisfies(null, c)).toBe(false);
  });

  it('step_up_url comes from the body, else names the token by its SHA-256', () => {
    expect(stepUpUrlFromBody('{"error":"GW_ERR_MFA_REQUIRED","step_up_url":"http://gw/.portcullis/mfa?token=abc"}')).toBe('http://gw/.portcullis/mfa?token=abc');
    expect(stepUpUrlFromBody('<html>')).toBeUndefined();
    expect(stepUpUrlForToken('http://gw', 'abc', { maxAge: 1, factors: ['webauthn', 'totp'], description: undefined })).toBe('http://gw/.portcullis/mfa?token=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0&factors=webauthn,totp');
  });
});

describe('tunnels', () => {
  it('map local paths under the route prefix', () => {
    expect(tunnelTargetPath('/', '/x?y=1')).toBe('/x?y=1');
    expect(tunnelTargetPath('/api', '/x?y=1')).toBe('/api/x?y=1');
    expect(tunnelTargetPath('/api/', '/')).toBe('/api/');
    expect(tunnelTargetPath('/api', '/api/x')).toBe('/api/x');
    expect(tunnelTargetPath('/api', '/apix')).toBe('/api/apix');
  });

  it('listen only where told, loopback unless allowed', () => {
    expect(parseListen('127.0.0.1:5433')).toEqual({ host: '127.0.0.1', port: 5433 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen('5433')).toBeUndefined();
    expect(parseListen('127.0.0.1:70000')).toBeUndefined();
    expect(isLoopback('127.0.0.1') && isLoopback('::1') && isLoopback('localhost')).toBe(true);
    expect(isLoopback('0.0.0.0') || isLoopback('10.0.0.1')).toBe(false);
  });

  it('rewrite the StartupMessage: user is the token user; the database is filled in when left to libpq', () => {
    const startup = (params: Record<string, string>) => {
      const body = Buffer.from(Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0');
      const b = Buffer.alloc(8 + body.length);
      b.writeInt32BE(b.length, 0);
      b.writeInt32BE(3 << 16, 4);
      body.copy(b, 8);
      const p = parseStartupPacket(b);
      if (p.kind !== 'startup') throw new Error('not a startup packet');
      return p;
    };
    const login = { user: 'alice', database: 'appdb' };
    const out = (params: Record<string, string>) => {
      const p = parseStartupPacket(rewriteStartup(startup(params), login));
      return p.kind === 'startup' ? Object.fromEntries(p.params) : p;
    };
    expect(out({ user: 'root', database: 'test', application_name: 'psql' })).toEqual({ user: 'alice', database: 'test', application_name: 'psql' });
    expect(out({ user: 'root', database: 'root' })).toEqual({ user: 'alice', database: 'appdb' });
    expect(out({ user: 'root' })).toEqual({ user: 'alice', database: 'appdb' });
    expect(passwordMessage('pcdb_x')).toEqual(Buffer.from([0x70, 0, 0, 0, 11, ...Buffer.from('pcdb_x\0')]));
  });

  it('read the connect answer', () => {
    expect(readDatabaseLogin({ database: 'd', user: 'u', password: 'p', expires_at: '2030-01-01T00:00:00Z', host: 'h', port: 5, sslmode: 'require' })).toEqual({ database: 'd', user: 'u', password: 'p', expiresAt: Date.parse('2030-01-01T00:00:00Z'), host: 'h', port: 5, sslmode: 'require' });
    expect(readDatabaseLogin({ database: 'd', user: 'u', password: 'p', expires_at: 'x', host: 'h', port: 5 })).toBeUndefined();
    expect(readDatabaseLogin({ database: 'd', user: 'u', password: 'p', expires_at: '2030-01-01T00:00:00Z' })).toBeUndefined();
  });
});
