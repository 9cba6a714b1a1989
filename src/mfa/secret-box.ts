/**
 * Encryption at rest of small secrets (TOTP shared secrets): AES-256-GCM under one 32-byte key kept
 * in a key file (mode 0600, created on first start, like the audit seal key).
 *
 * Sealed form: `v1.<key id>.<iv>.<ciphertext+tag>`, every part base64url without padding. The key id
 * is the first 8 bytes of SHA-256(key), so a value sealed under another key is reported as such
 * instead of as tampering. The caller's `context` (e.g. {@link secretContext}`('totp', user, id)`) is
 * bound as additional authenticated data: a sealed value copied to another user or credential does
 * not open.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import { createFileExclusive, errorCode } from '../identity/atomic-file.js';

/** The key length in bytes (AES-256). */
export const SECRET_KEY_BYTES = 32;

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_BYTES = 8;
const AAD_PREFIX = 'portcullis/secret-box/v1\n';
/** A key file is one short line; anything much longer is not one. */
const MAX_KEY_FILE_BYTES = 1024;
const B64URL_RE = /^[A-Za-z0-9_-]*$/;

/**
 * Why a sealed value did not open:
 * - `malformed`: not a `v1.<kid>.<iv>.<ct>` string (truncated, not base64url, wrong lengths);
 * - `unsupported-version`: a format version this build does not know;
 * - `wrong-key`: sealed under another key (the key ids differ);
 * - `tampered`: authentication failed: the ciphertext was altered or the context differs.
 */
export class SecretBoxError extends Error {
  constructor(
    message: string,
    readonly code: 'malformed' | 'unsupported-version' | 'wrong-key' | 'tampered',
  ) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

/** Why a key file was refused: `invalid` (not a file holding one 32-byte key) or `insecure` (group/world-accessible). */
export class SecretKeyError extends Error {
  constructor(
    message: string,
    readonly code: 'invalid' | 'insecure',
  ) {
    super(message);
    this.name = 'SecretKeyError';
  }
}

/** Seals and opens small secrets under one key. */
export interface SecretBox {
  /** The key id written into every sealed value (base64url of the first 8 bytes of SHA-256(key)). */
  readonly keyId: string;
  /** Encrypts `plaintext` (UTF-8) bound to `context`; a fresh random IV each time. */
  seal(plaintext: string, context: string): string;
  /**
   * Decrypts a value made by {@link SecretBox.seal} with the same key and context.
   * @throws SecretBoxError (`malformed`, `unsupported-version`, `wrong-key`, `tampered`).
   */
  open(sealed: string, context: string): string;
}

/**
 * An unambiguous context string from its parts (JSON array), so that `('totp', 'ab', 'c')` and
 * `('totp', 'a', 'bc')` differ. E.g. `secretContext('totp', user, credentialId)`.
 */
export function secretContext(...parts: readonly string[]): string {
  return JSON.stringify(parts);
}

/** A box over `key` (32 bytes; copied). @throws TypeError on another length. */
export function createSecretBox(key: Uint8Array): SecretBox {
  if (key.length !== SECRET_KEY_BYTES) throw new TypeError(`a secret box key is ${SECRET_KEY_BYTES} bytes, got ${key.length}`);
  const k = Buffer.from(key);
  const keyId = createHash('sha256').update(k).digest().subarray(0, KEY_ID_BYTES).toString('base64url');
  const aad = (context: string): Buffer => Buffer.from(AAD_PREFIX + context, 'utf8');

  return {
    keyId,
    seal(plaintext, context) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', k, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(aad(context));
      const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
      return `${VERSION}.${keyId}.${iv.toString('base64url')}.${ct.toString('base64url')}`;
    },
    open(sealed, context) {
      const parts = sealed.split('.');
      if (parts.length !== 4) throw new SecretBoxError('not a sealed secret (expected v1.<key id>.<iv>.<ciphertext>)', 'malformed');
      const [version = '', kid = '', ivText = '', ctText = ''] = parts;
      if (version !== VERSION) throw new SecretBoxError(`sealed secret has an unsupported format version ${JSON.stringify(version.slice(0, 16))}`, 'unsupported-version');
      const kidBytes = decodeB64url(kid);
      const iv = decodeB64url(ivText);
      const ct = decodeB64url(ctText);
      if (kidBytes?.length !== KEY_ID_BYTES || iv?.length !== IV_BYTES || ct === undefined || ct.length < TAG_BYTES) {
        throw new SecretBoxError('not a sealed secret (bad key id, iv or ciphertext encoding or length)', 'malformed');
      }
      if (kid !== keyId) {
        throw new SecretBoxError(`secret was encrypted with another key (key id ${kid}; the configured key is ${keyId})`, 'wrong-key');
      }
      const decipher = createDecipheriv('aes-256-gcm', k, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(context));
      decipher.setAuthTag(ct.subarray(ct.length - TAG_BYTES));
      try {
        return Buffer.concat([decipher.update(ct.subarray(0, ct.length - TAG_BYTES)), decipher.final()]).toString('utf8');
      } catch {
        throw new SecretBoxError('sealed secret failed authentication: it was altered or belongs to another user or credential', 'tampered');
      }
    },
  };
}

/**
 * The box over the key in `file`, creating the file first when absent: 32 random bytes written as one
 * line of base64url, mode 0600, parent directories created with mode 0700, exclusively (when two
 * processes start at once, both end up using the key that was written first).
 *
 * An existing file must be a regular file, not accessible by group or others (mode & 0o077 === 0,
 * except on Windows), holding one 32-byte key in base64url or base64 (e.g. `openssl rand -base64 32`);
 * surrounding whitespace is ignored.
 * @throws SecretKeyError `invalid` or `insecure` (the message names the file); file system errors as is.
 */
export async function loadOrCreateSecretKey(file: string): Promise<SecretBox> {
  const existing = await readKeyFile(file);
  if (existing !== undefined) return createSecretBox(existing);
  const key = randomBytes(SECRET_KEY_BYTES);
  if (await createFileExclusive(file, `${key.toString('base64url')}\n`, 0o600)) return createSecretBox(key);
  // Another process created it between our read and our write: use theirs.
  const theirs = await readKeyFile(file);
  if (theirs === undefined) throw new SecretKeyError(`${file}: the key file disappeared while it was being created`, 'invalid');
  return createSecretBox(theirs);
}

/** The key in `file`, or undefined when there is no such file. */
async function readKeyFile(file: string): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await openFile(file, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  let text: string;
  try {
    // Checks and read go through the same handle: what was checked is what is read.
    const st = await handle.stat();
    if (!st.isFile()) throw new SecretKeyError(`${file}: the secret key file is not a regular file`, 'invalid');
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw new SecretKeyError(
        `${file}: the secret key file is accessible by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 600 ${file}`,
        'insecure',
      );
    }
    if (st.size > MAX_KEY_FILE_BYTES) throw new SecretKeyError(`${file}: not a secret key file (${st.size} bytes; expected one line holding a 32-byte key)`, 'invalid');
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  const key = parseKey(text.trim());
  if (key === undefined) {
    throw new SecretKeyError(`${file}: not a secret key file (expected one line holding a ${SECRET_KEY_BYTES}-byte key in base64url or base64)`, 'invalid');
  }
  return key;
}

/** 32 bytes from canonical base64url (43 characters) or base64 (43 characters, with or without one `=`). */
function parseKey(text: string): Buffer | undefined {
  let url: string;
  if (/^[A-Za-z0-9_-]{43}$/.test(text)) url = text;
  else if (/^[A-Za-z0-9+/]{43}=?$/.test(text)) url = text.replace(/=$/, '').replaceAll('+', '-').replaceAll('/', '_');
  else return undefined;
  const bytes = decodeB64url(url);
  return bytes?.length === SECRET_KEY_BYTES ? bytes : undefined;
}

/** Strict base64url (no padding, canonical trailing bits), or undefined. */
function decodeB64url(text: string): Buffer | undefined {
  if (!B64URL_RE.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}
