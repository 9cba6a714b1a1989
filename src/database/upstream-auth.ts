/**
 * The client side of PostgreSQL password authentication, for the gateway's own sign-in to the
 * upstream with the configured service credentials: SCRAM-SHA-256 (RFC 5802 / RFC 7677, without
 * channel binding) and md5. Randomness is passed in; the only I/O is node:crypto.
 */
import { createHash, createHmac, pbkdf2, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/** The md5 answer: `md5` + md5(md5(password + user) + salt), in hex. */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password, 'utf8').update(user, 'utf8').digest('hex');
  return `md5${createHash('md5').update(inner, 'utf8').update(salt).digest('hex')}`;
}

/** A SCRAM exchange that went wrong (malformed or dishonest server messages). */
export class ScramError extends Error {}

/**
 * Caches SaltedPassword per (password, salt, iterations): PBKDF2 with PostgreSQL's default 4096
 * iterations costs milliseconds of CPU, and the upstream's salt only changes with the password.
 */
export interface SaltedPasswordCache {
  get(key: string): Buffer | undefined;
  set(key: string, value: Buffer): void;
}

/** A small cache (the gateway signs in as one service user per database). */
export function createSaltedPasswordCache(max = 16): SaltedPasswordCache {
  const map = new Map<string, Buffer>();
  return {
    get: (k) => map.get(k),
    set(k, v) {
      if (map.size >= max) map.delete(map.keys().next().value ?? '');
      map.set(k, v);
    },
  };
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text, 'utf8').digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

function attributes(message: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) out.set(part.slice(0, 1), part.slice(2));
  }
  return out;
}

/**
 * One SCRAM-SHA-256 exchange. PostgreSQL ignores the SCRAM user name (it uses the startup
 * packet's), so the client-first message carries an empty one by default, as libpq does. Passwords are
 * prepared with Unicode NFKC normalisation (the core of SASLprep; ASCII passwords are unchanged).
 */
export function createScramClient(password: string, nonce: string, opts: { readonly cache?: SaltedPasswordCache; readonly user?: string } = {}) {
  if (!/^[\x21-\x2b\x2d-\x7e]+$/.test(nonce)) throw new ScramError('nonce must be printable ASCII without commas');
  const cache = opts.cache;
  const user = (opts.user ?? '').replaceAll('=', '=3D').replaceAll(',', '=2C');
  const clientFirstBare = `n=${user},r=${nonce}`;
  let serverSignature: Buffer | undefined;
  return {
    /** The mechanism's initial response. */
    clientFirst(): string {
      return `n,,${clientFirstBare}`;
    },
    /** Answers the server-first message with the client-final message (async: PBKDF2). */
    async clientFinal(serverFirst: string): Promise<string> {
      const a = attributes(serverFirst);
      const serverNonce = a.get('r');
      const salt = a.get('s');
      const iterations = Number(a.get('i'));
      if (serverNonce === undefined || !serverNonce.startsWith(nonce) || serverNonce.length === nonce.length) throw new ScramError('server nonce does not extend the client nonce');
      if (salt === undefined || salt === '') throw new ScramError('server sent no salt');
      if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 10_000_000) throw new ScramError('bad iteration count');
      const key = `${createHash('sha256').update(password, 'utf8').digest('hex')}:${salt}:${iterations}`;
      let salted = cache?.get(key);
      if (salted === undefined) {
        salted = await pbkdf2Async(password.normalize('NFKC'), Buffer.from(salt, 'base64'), iterations, 32, 'sha256');
        cache?.set(key, salted);
      }
      const clientKey = hmac(salted, 'Client Key');
      const storedKey = createHash('sha256').update(clientKey).digest();
      const withoutProof = `c=biws,r=${serverNonce}`;
      const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
      const proof = xor(clientKey, hmac(storedKey, authMessage));
      serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
      return `${withoutProof},p=${proof.toString('base64')}`;
    },
    /** Checks the server-final message: the server must prove it knows the password too. */
    verifyServerFinal(serverFinal: string): void {
      const a = attributes(serverFinal);
      const e = a.get('e');
      if (e !== undefined) throw new ScramError(`server refused: ${e}`);
      const v = Buffer.from(a.get('v') ?? '', 'base64');
      if (serverSignature === undefined || v.length !== serverSignature.length || !timingSafeEqual(v, serverSignature)) throw new ScramError('server signature does not match');
    },
  };
}
