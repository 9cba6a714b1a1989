/** A bearer-token issuer for tests: an ES256 key and a JWKS endpoint on loopback. */
import { KeyObject, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';

export interface BearerIssuer {
  /** `http://127.0.0.1:<port>`. */
  readonly issuer: string;
  readonly jwksUri: string;
  /** Signs a token for `audience` with the given claims (sub required), valid for `ttlS` seconds. */
  token(audience: string, claims: { sub: string; email?: string; groups?: string[] }, ttlS?: number): Promise<string>;
  /** The published key's id and public JWK. */
  readonly kid: string;
  readonly publicJwk: JWK;
  /** The signing key, for tokens jose itself would refuse to make. */
  readonly privateKey: KeyObject;
  /** Signs exactly this payload with the issuer's key (ES256); `header` is merged into the protected header. */
  sign(payload: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

export async function startBearerIssuer(): Promise<BearerIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const kid = `k-${randomBytes(4).toString('hex')}`;
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const server = http.createServer((req, res) => {
    if (req.url === '/jwks') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [publicJwk] }));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    kid,
    publicJwk,
    privateKey: KeyObject.from(privateKey),
    sign: (payload, header = {}) => new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT', ...header }).sign(privateKey),
    token: (audience, claims, ttlS = 300) =>
      new SignJWT({ ...claims })
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
        .setIssuer(issuer)
        .setAudience(audience)
        .setIssuedAt()
        .setExpirationTime(`${ttlS}s`)
        .sign(privateKey),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
