/**
 * The audit seal key: one Ed25519 key in a PKCS#8 PEM file (mode 0600) that signs checkpoints.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createFileExclusive, errorCode } from '../identity/atomic-file.js';
import { parseVkey } from './signed-note.js';

/** Why a seal key operation failed: `exists` (refusing to overwrite), `missing`, `invalid` (not an Ed25519 key). */
export class SealKeyError extends Error {
  constructor(
    message: string,
    readonly code: 'exists' | 'missing' | 'invalid',
  ) {
    super(message);
    this.name = 'SealKeyError';
  }
}

/** A loaded (or newly created) seal key. */
export interface LoadedSealKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The file did not exist and was created now. */
  created: boolean;
  /** The file is readable or writable by group or others (mode & 0o077); the caller should warn. */
  insecurePermissions: boolean;
}

/** A new Ed25519 key pair. */
export function generateSealKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ed25519');
}

/**
 * Writes `privateKey` to `file` as PKCS#8 PEM, mode 0600 (parent directories are created, 0700).
 * @throws SealKeyError `exists` when the file exists (it is never overwritten); file system errors as is.
 */
export async function writeSealKey(file: string, privateKey: KeyObject): Promise<void> {
  assertEd25519Private(privateKey, file);
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  if (!(await createFileExclusive(file, pem, 0o600))) {
    throw new SealKeyError(`${file} already exists; refusing to overwrite a signing key`, 'exists');
  }
}

/**
 * Loads the Ed25519 private key in `file`; creates it first when absent and `create` (default true).
 * A group/world-accessible file is loaded but flagged (`insecurePermissions`), since mounted secrets
 * (e.g. Kubernetes, default mode 0644) often are.
 * @throws SealKeyError `missing` (absent and not `create`) or `invalid` (not an Ed25519 PEM private key).
 */
export async function loadOrCreateSealKey(file: string, opts: { create?: boolean } = {}): Promise<LoadedSealKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
    if (opts.create === false) throw new SealKeyError(`${file} does not exist (create it with: portcullis keys generate --out ${file})`, 'missing');
    const { privateKey, publicKey } = generateSealKey();
    try {
      await writeSealKey(file, privateKey);
      return { privateKey, publicKey, created: true, insecurePermissions: false };
    } catch (writeErr) {
      // Another process created it first: use theirs.
      if (writeErr instanceof SealKeyError && writeErr.code === 'exists') return loadOrCreateSealKey(file, { create: false });
      throw writeErr;
    }
  }
  const privateKey = parsePrivateKey(text, file);
  const mode = (await stat(file)).mode;
  return {
    privateKey,
    publicKey: createPublicKey(privateKey),
    created: false,
    insecurePermissions: process.platform !== 'win32' && (mode & 0o077) !== 0,
  };
}

/**
 * Reads a public key for verification from `file`: a PEM public key, a PEM private key (its public
 * half), or a verifier key line `<name>+<hex>+<base64>` (then `name` is its key name). Text around a
 * PEM block is ignored, so the saved output of `keys generate` works too.
 * @throws SealKeyError `invalid` when none of these is found; file system errors as is.
 */
export async function readPublicKey(file: string): Promise<{ publicKey: KeyObject; name?: string }> {
  const text = await readFile(file, 'utf8');
  const pem = /-----BEGIN ([A-Z ]+)-----[\s\S]*?-----END \1-----/.exec(text);
  if (pem !== null) {
    let key: KeyObject;
    try {
      key = pem[1]?.includes('PRIVATE') === true ? createPublicKey(createPrivateKey(pem[0])) : createPublicKey(pem[0]);
    } catch (err) {
      throw new SealKeyError(`${file}: not a valid PEM key: ${err instanceof Error ? err.message : String(err)}`, 'invalid');
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new SealKeyError(`${file}: expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'unknown'}`, 'invalid');
    return { publicKey: key };
  }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length !== 1 || lines[0] === undefined) {
    throw new SealKeyError(`${file}: expected a PEM public or private key, or one verifier key line <name>+<hex>+<base64>`, 'invalid');
  }
  try {
    const { name, publicKey } = parseVkey(lines[0]);
    return { publicKey, name };
  } catch (err) {
    throw new SealKeyError(`${file}: ${err instanceof Error ? err.message : String(err)}`, 'invalid');
  }
}

function parsePrivateKey(text: string, file: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (err) {
    throw new SealKeyError(`${file}: not a PEM private key: ${err instanceof Error ? err.message : String(err)}`, 'invalid');
  }
  assertEd25519Private(key, file);
  return key;
}

function assertEd25519Private(key: KeyObject, file: string): void {
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') {
    throw new SealKeyError(`${file}: expected an Ed25519 private key, got ${key.type} ${key.asymmetricKeyType ?? ''}`.trimEnd(), 'invalid');
  }
}
