/**
 * Signs `X-Portcullis-Assertion`: a short-lived JWT (exp = iat + 60 s) that tells an upstream who is
 * asking, verifiable with the public keys at `/.portcullis/jwks.json`.
 *
 * Keys live in a key ring file (JSON, mode 0600) of private JWKs, each with `kid` = its RFC 7638
 * thumbprint and `createdAt`. Replicas share it by mounting the same file (a writable shared volume,
 * so that any of them can rotate; a read-only mount works too but then never rotates): every
 * replica re-reads the file when it changes, so all publish the same keys and each verifies the
 * others' tokens. Writers take `<file>.lock`, re-read, then replace the file atomically.
 *
 * Rotation: when the newest key is older than `rotateAfterMs` (checked at start and then at most
 * every `refreshIntervalMs` while signing), a new key is added. It is published at once but signs
 * only after `publishAheadMs`, so that every replica and every upstream JWKS cache has seen it
 * first; the previous key keeps signing meanwhile. A key is removed one hour after it stopped
 * signing (tokens live 60 s). Signing itself is synchronous node:crypto on a cached KeyObject.
 */
import { createPrivateKey, generateKeyPair, randomBytes, sign as cryptoSign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { z } from 'zod';
import { createFileExclusive, errorCode, fileVersion, withFileLock, writeFileAtomic } from './atomic-file.js';
import type { Identity } from './identity.js';

/** Signing algorithms for the assertion: ECDSA P-256 or Ed25519. */
export type AssertionAlgorithm = 'ES256' | 'EdDSA';

/** Signs assertions and publishes the public keys. */
export interface AssertionSigner {
  /**
   * A JWT for `identity`, for the route `audience`; expires 60 s after it is issued. The same token
   * is handed out again for the same identity, route and key for {@link ASSERTION_REUSE_MS}.
   */
  sign(identity: Identity, audience: string): Promise<string>;
  /** The public keys (JWKS): every key that signs, will sign soon, or signed within the last hour. */
  jwks(): { keys: JWK[] };
  /**
   * Adds a new key now (it signs after `publishAheadMs`) and removes long-retired ones.
   * @throws when the key file cannot be written.
   */
  rotate(): Promise<void>;
  /** Re-reads the key file now (keys added by another replica), rotating if due. */
  refresh(): Promise<void>;
}

/** Options for {@link createAssertionSigner}. */
export interface AssertionSignerOptions {
  keyFile: string;
  algorithm: AssertionAlgorithm;
  /** Age after which the newest key is replaced. */
  rotateAfterMs: number;
  /** `iss` of every token: the gateway's public URL. */
  issuer: string;
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number;
  /** Providers whose sign-in is a password (`amr: ["pwd"]`); others get `["oidc"]`. Default `["local"]`. */
  localProviders?: readonly string[];
  /** How often signing looks for changes to the key file (default 10 s). */
  refreshIntervalMs?: number;
  /** How long a new key is published before it signs (default 10 min; JWKS responses are cached 5 min). */
  publishAheadMs?: number;
  /** Background refresh problems (a read-only key file that is due for rotation, a corrupt file). */
  onError?: (err: Error) => void;
}

/** Tokens live this long. */
export const ASSERTION_LIFETIME_S = 60;
/**
 * An assertion is reused for the same identity, route and key while it has at least this long left
 * to live (it is issued for {@link ASSERTION_LIFETIME_S}): signing is the costliest step of a
 * proxied request (an ECDSA signature is ~40 µs), and a token's claims do not change within it.
 */
export const ASSERTION_REUSE_MS = 30_000;
/** Assertions kept for reuse at most; the cache starts over when full. */
const REUSE_CACHE_MAX = 10_000;
/** A retired key stays published this long. */
const RETIRED_KEEP_MS = 3_600_000;

const privateJwk = z.looseObject({
  kty: z.enum(['EC', 'OKP']),
  crv: z.enum(['P-256', 'Ed25519']),
  x: z.string().min(1),
  y: z.string().min(1).optional(),
  d: z.string().min(1),
  kid: z.string().min(1),
  alg: z.enum(['ES256', 'EdDSA']),
});

const ringSchema = z.strictObject({
  version: z.literal(1),
  keys: z.array(z.strictObject({ createdAt: z.iso.datetime(), jwk: privateJwk })),
});

type RingFile = z.infer<typeof ringSchema>;

interface RingKey {
  kid: string;
  alg: AssertionAlgorithm;
  createdAt: number;
  privateKey: KeyObject;
  publicJwk: JWK;
  /** base64url of the JOSE header, computed once. */
  header: string;
}

/**
 * Creates the signer: reads the key ring (creating it, with parent directories, when absent),
 * rotating and pruning as due.
 * @throws when the key file is unreadable or corrupt (it is never overwritten then), or when it is
 *   absent and cannot be created.
 */
export async function createAssertionSigner(opts: AssertionSignerOptions): Promise<AssertionSigner> {
  const now = opts.now ?? Date.now;
  const refreshIntervalMs = opts.refreshIntervalMs ?? 10_000;
  const publishAheadMs = opts.publishAheadMs ?? 600_000;
  const localProviders = new Set(opts.localProviders ?? ['local']);
  const imported = new Map<string, RingKey>();
  let ring: RingKey[] = [];
  let active: RingKey | undefined;
  let published: { keys: JWK[] } = { keys: [] };
  let version = '';
  let lastRefresh = 0;
  let pending: Promise<void> | undefined;
  let lastReported = '';

  /** Reads the file (undefined when absent) and imports its keys. */
  async function read(): Promise<RingKey[] | undefined> {
    let text: string;
    let nextVersion: string;
    try {
      nextVersion = await fileVersion(opts.keyFile);
      text = await readFile(opts.keyFile, 'utf8');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw new Error(`cannot read the assertion key file ${opts.keyFile}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const keys = await parseRing(text);
    version = nextVersion;
    return keys;
  }

  async function parseRing(text: string): Promise<RingKey[]> {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw corrupt(`not JSON (${err instanceof Error ? err.message : String(err)})`);
    }
    const parsed = ringSchema.safeParse(data);
    if (!parsed.success) throw corrupt(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    const keys: RingKey[] = [];
    for (const entry of parsed.data.keys) keys.push(await importKey(entry.jwk, Date.parse(entry.createdAt)));
    return keys.sort((a, b) => a.createdAt - b.createdAt);
  }

  async function importKey(jwk: RingFile['keys'][number]['jwk'], createdAt: number): Promise<RingKey> {
    const cached = imported.get(jwk.kid);
    if (cached?.createdAt === createdAt) return cached;
    const pub = publicMembers(jwk);
    const kid = await calculateJwkThumbprint(pub, 'sha256');
    if (kid !== jwk.kid) throw corrupt(`key ${jwk.kid}: kid is not the key's RFC 7638 thumbprint`);
    if ((jwk.alg === 'ES256') !== (jwk.kty === 'EC' && jwk.crv === 'P-256' && jwk.y !== undefined)) {
      throw corrupt(`key ${jwk.kid}: alg ${jwk.alg} does not match the key type`);
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
    } catch (err) {
      throw corrupt(`key ${jwk.kid}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const key: RingKey = {
      kid,
      alg: jwk.alg,
      createdAt,
      privateKey,
      publicJwk: Object.freeze({ ...pub, kid, alg: jwk.alg, use: 'sig' }),
      header: b64url(JSON.stringify({ alg: jwk.alg, kid, typ: 'JWT' })),
    };
    imported.set(kid, key);
    return key;
  }

  function corrupt(detail: string): Error {
    return new Error(`the assertion key file ${opts.keyFile} is invalid (${detail}); fix or remove it — it is never overwritten`);
  }

  /** Keys kept at time `t`: all but those that stopped signing more than an hour ago. */
  function kept(keys: readonly RingKey[], t: number): RingKey[] {
    // `keys` is in creation order; a key retires when a later one of the configured algorithm starts signing.
    return keys.filter((_k, i) => {
      const successor = keys.slice(i + 1).find((n) => n.alg === opts.algorithm && n.createdAt + publishAheadMs <= t);
      return successor === undefined || successor.createdAt + publishAheadMs + RETIRED_KEEP_MS > t;
    });
  }

  function rotationDue(keys: readonly RingKey[], t: number): boolean {
    const newest = keys.filter((k) => k.alg === opts.algorithm).at(-1);
    return newest === undefined || t - newest.createdAt >= opts.rotateAfterMs;
  }

  function install(keys: RingKey[], t: number): void {
    ring = kept(keys, t);
    const usable = ring.filter((k) => k.alg === opts.algorithm);
    // The newest key published long enough, else the one published longest (a fresh ring's only key).
    active = usable.filter((k) => k.createdAt + publishAheadMs <= t).at(-1) ?? usable[0] ?? ring.at(-1);
    published = { keys: ring.map((k) => k.publicJwk) };
    for (const kid of imported.keys()) if (!ring.some((k) => k.kid === kid)) imported.delete(kid);
  }

  /** Under the lock: re-reads, adds a key if `force` or due, prunes, writes. */
  async function write(force: boolean): Promise<void> {
    await mkdir(dirname(opts.keyFile), { recursive: true, mode: 0o700 });
    await withFileLock(opts.keyFile, async () => {
      const t = now();
      const existing = await read();
      // A deleted file is written again with the keys in use, so that tokens out there stay verifiable.
      let keys = existing ?? ring;
      if (force || rotationDue(keys, t)) keys = [...keys, await generateKey(t)];
      keys = kept(keys, t);
      const text = serialize(keys);
      if (existing === undefined) {
        if (!(await createFileExclusive(opts.keyFile, text))) throw new Error(`${opts.keyFile} appeared while it was being created`);
      } else {
        await writeFileAtomic(opts.keyFile, text, { mode: 0o600 });
      }
      version = await fileVersion(opts.keyFile);
      install(keys, t);
    });
  }

  async function generateKey(t: number): Promise<RingKey> {
    const pair = await new Promise<KeyObject>((resolve, reject) => {
      const done = (err: Error | null, _pub: KeyObject, priv: KeyObject) => {
        if (err === null) resolve(priv);
        else reject(err);
      };
      if (opts.algorithm === 'ES256') generateKeyPair('ec', { namedCurve: 'P-256' }, done);
      else generateKeyPair('ed25519', undefined, done);
    });
    const jwk = pair.export({ format: 'jwk' });
    const kid = await calculateJwkThumbprint(publicMembers(jwk), 'sha256');
    return importKey(privateJwk.parse({ ...jwk, kid, alg: opts.algorithm }), t);
  }

  function serialize(keys: readonly RingKey[]): string {
    const file: RingFile = {
      version: 1,
      keys: keys.map((k) => ({
        createdAt: new Date(k.createdAt).toISOString(),
        jwk: privateJwk.parse({ ...k.privateKey.export({ format: 'jwk' }), kid: k.kid, alg: k.alg }),
      })),
    };
    return `${JSON.stringify(file, null, 2)}\n`;
  }

  async function refresh(): Promise<void> {
    const t = now();
    lastRefresh = t;
    let current = ring;
    let missing = false;
    const changed = version === '' || (await fileVersion(opts.keyFile).catch(() => '')) !== version;
    if (changed) {
      const keys = await read();
      if (keys === undefined) missing = true;
      else {
        install(keys, t);
        current = keys;
      }
    }
    const needsWrite = missing || current.length === 0 || rotationDue(current, t) || kept(current, t).length < current.length;
    if (!needsWrite) {
      install(current, t);
      return;
    }
    try {
      await write(false);
    } catch (err) {
      // A read-only shared mount: keep signing with what the file has.
      if (ring.length === 0) throw err instanceof Error ? err : new Error(String(err));
      install(current, t);
      report(new Error(`cannot update the assertion key file ${opts.keyFile} (rotation or pruning is due): ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
    }
  }

  function report(err: Error): void {
    if (err.message === lastReported) return;
    lastReported = err.message;
    opts.onError?.(err);
  }

  function refreshOnce(): Promise<void> {
    pending ??= refresh().finally(() => {
      pending = undefined;
    });
    return pending;
  }

  await refreshOnce();

  function amrOf(identity: Identity): string[] {
    const base = identity.amr !== undefined && identity.amr.length > 0 ? [...identity.amr] : [localProviders.has(identity.provider) ? 'pwd' : 'oidc'];
    if (identity.mfa !== undefined && identity.mfa.factor !== 'recovery') base.push('mfa', identity.mfa.factor === 'webauthn' ? 'hwk' : 'otp');
    return [...new Set(base)];
  }

  /** Recent assertions by everything their claims depend on (see {@link ASSERTION_REUSE_MS}). */
  const recent = new Map<string, { token: string; at: number }>();

  return {
    sign(identity, audience) {
      const t = now();
      if (t - lastRefresh >= refreshIntervalMs && pending === undefined) {
        refreshOnce().catch((err: unknown) => {
          report(err instanceof Error ? err : new Error(String(err)));
        });
      }
      const key = active;
      if (key === undefined) return Promise.reject(new Error('no assertion signing key'));
      const amr = amrOf(identity);
      const reuseKey = `${key.kid}\0${audience}\0${identity.user}\0${identity.email ?? '\u0001'}\0${identity.groups.join('\u0001')}\0${amr.join(',')}\0${identity.authTime}`;
      const cached = recent.get(reuseKey);
      if (cached !== undefined && t >= cached.at && t - cached.at < ASSERTION_REUSE_MS) return Promise.resolve(cached.token);
      const iat = Math.floor(t / 1000);
      const claims = {
        iss: opts.issuer,
        sub: identity.user,
        aud: audience,
        ...(identity.email === undefined ? {} : { email: identity.email }),
        groups: identity.groups,
        amr,
        auth_time: Math.floor(identity.authTime / 1000),
        iat,
        exp: iat + ASSERTION_LIFETIME_S,
        jti: randomBytes(16).toString('base64url'),
      };
      const input = `${key.header}.${b64url(JSON.stringify(claims))}`;
      const data = Buffer.from(input);
      const signature =
        key.alg === 'ES256' ? cryptoSign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' }) : cryptoSign(null, data, key.privateKey);
      const token = `${input}.${signature.toString('base64url')}`;
      if (recent.size >= REUSE_CACHE_MAX) recent.clear();
      recent.set(reuseKey, { token, at: t });
      return Promise.resolve(token);
    },
    jwks() {
      return { keys: [...published.keys] };
    },
    rotate() {
      return write(true);
    },
    refresh: refreshOnce,
  };
}

/** The RFC 7638 required members of a public key (no `d`). */
function publicMembers(jwk: { kty?: string | undefined; crv?: string | undefined; x?: string | undefined; y?: string | undefined }): JWK {
  const { kty = '', crv = '', x = '', y = '' } = jwk;
  return kty === 'EC' ? { kty, crv, x, y } : { kty, crv, x };
}

function b64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}
