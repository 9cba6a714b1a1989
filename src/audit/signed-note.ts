/**
 * C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 keys, as used for audit checkpoints.
 *
 * A note is its text (UTF-8, ending in a newline, no control characters other than newline), a blank
 * line, then one or more signature lines `— <name> <base64(key id ‖ signature)>\n`. The signature is
 * Ed25519 over the text bytes exactly (including its final newline). The key id is the first 4 bytes
 * of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key); a verifier key ("vkey") is written
 * `<name>+<8 hex key id>+<base64(0x01 ‖ public key)>`.
 *
 * Opening a note never throws: a malformed note is an `{ error }` value, and every signature line is
 * reported (known or not, verified or not) so that the caller decides what is enough. A note signed
 * by two keys (old and new) is how a key rotation is sealed; either key set then verifies it.
 */
import { createHash, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';

/** Signs notes under one key name. */
export interface NoteSigner {
  /** The key name (for a checkpoint, usually the log origin). */
  name: string;
  /** The 4-byte key id. */
  keyId: Buffer;
  /** The raw Ed25519 signature (64 bytes) of `msg`. */
  sign(msg: Buffer): Buffer;
}

/** Verifies signatures by one key name and key id. */
export interface NoteVerifier {
  name: string;
  /** The 4-byte key id. */
  keyId: Buffer;
  verify(msg: Buffer, sig: Buffer): boolean;
}

/** One signature line of an opened note. */
export interface NoteSignature {
  name: string;
  /** The key id, 8 lowercase hex digits. */
  keyId: string;
  /** A verifier with this name and key id was given. */
  known: boolean;
  /** Known and the signature is valid for the text. */
  verified: boolean;
}

/** An opened note: its text and every signature line, in order. */
export interface OpenedNote {
  /** The signed text, ending in a newline. */
  text: string;
  signatures: NoteSignature[];
}

/** Signature type byte for Ed25519 in key ids and vkeys. */
const ALG_ED25519 = 0x01;
const SIG_PREFIX = '\u2014 ';
/** More signature lines than this make a note malformed (as in Go's golang.org/x/mod/sumdb/note). */
const MAX_SIGNATURES = 100;
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * Whether `name` is a valid key name: non-empty, well-formed, without white space or '+'.
 */
export function isValidKeyName(name: string): boolean {
  return name !== '' && name.isWellFormed() && !/[\p{White_Space}+]/u.test(name) && !hasControl(name);
}

/** The 4-byte key id of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ raw public key)[:4]. */
export function keyIdOf(name: string, rawPublicKey: Buffer): Buffer {
  if (rawPublicKey.length !== 32) throw new RangeError(`an Ed25519 public key is 32 bytes, got ${rawPublicKey.length}`);
  return createHash('sha256')
    .update(Buffer.from(name, 'utf8'))
    .update(Buffer.from([0x0a, ALG_ED25519]))
    .update(rawPublicKey)
    .digest()
    .subarray(0, 4);
}

/** The raw 32-byte public key of an Ed25519 KeyObject (public or private). */
export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== 'ed25519') throw new TypeError(`expected an Ed25519 key, got ${pub.asymmetricKeyType ?? key.type}`);
  const der = pub.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

/** An Ed25519 public KeyObject from its raw 32 bytes. */
export function publicKeyFromRaw(raw: Buffer): KeyObject {
  if (raw.length !== 32) throw new RangeError(`an Ed25519 public key is 32 bytes, got ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** The verifier key string `<name>+<hex key id>+<base64(0x01 ‖ public key)>` of `publicKey` (or of a private key's public half). */
export function vkeyOf(name: string, publicKey: KeyObject): string {
  assertName(name);
  const raw = rawPublicKey(publicKey);
  return `${name}+${keyIdOf(name, raw).toString('hex')}+${Buffer.concat([Buffer.from([ALG_ED25519]), raw]).toString('base64')}`;
}

/** A signer for `name` with an Ed25519 private key. */
export function signerFromPrivateKey(name: string, key: KeyObject): NoteSigner {
  assertName(name);
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') throw new TypeError('expected an Ed25519 private key');
  return { name, keyId: keyIdOf(name, rawPublicKey(key)), sign: (msg) => cryptoSign(null, msg, key) };
}

/** A verifier for `name` with an Ed25519 public key. */
export function verifierFromPublicKey(name: string, publicKey: KeyObject): NoteVerifier {
  assertName(name);
  const pub = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  const keyId = keyIdOf(name, rawPublicKey(pub));
  return { name, keyId, verify: (msg, sig) => sig.length === 64 && cryptoVerify(null, msg, pub, sig) };
}

/**
 * Parses a verifier key string `<name>+<8 hex>+<base64(0x01 ‖ 32-byte key)>`.
 * @throws Error when it is malformed, not Ed25519, or its key id does not match its name and key.
 */
export function parseVkey(vkey: string): { name: string; keyId: Buffer; publicKey: KeyObject } {
  const parts = vkey.trim().split('+');
  // The base64 part may itself contain '+': name and key id are the first two fields.
  const [name, hash] = parts;
  const b64 = parts.slice(2).join('+');
  if (name === undefined || hash === undefined || parts.length < 3) throw new Error('malformed verifier key: expected <name>+<key id>+<key>');
  if (!isValidKeyName(name)) throw new Error(`malformed verifier key: invalid name ${JSON.stringify(name)}`);
  if (!/^[0-9a-f]{8}$/.test(hash)) throw new Error('malformed verifier key: the key id must be 8 lowercase hex digits');
  const key = decodeBase64Strict(b64);
  if (key === undefined) throw new Error('malformed verifier key: the key is not valid base64');
  if (key.length !== 33 || key[0] !== ALG_ED25519) throw new Error('unsupported verifier key: only Ed25519 (type 0x01, 32 bytes) is supported');
  const raw = key.subarray(1);
  const keyId = keyIdOf(name, raw);
  if (keyId.toString('hex') !== hash) throw new Error('invalid verifier key: the key id does not match the name and key');
  return { name, keyId, publicKey: publicKeyFromRaw(raw) };
}

/**
 * A verifier from a verifier key string (see {@link parseVkey}).
 * @throws Error when the string is not a valid Ed25519 verifier key.
 */
export function verifierFromVkey(vkey: string): NoteVerifier {
  const { name, publicKey } = parseVkey(vkey);
  return verifierFromPublicKey(name, publicKey);
}

/**
 * Signs `text` with every signer: returns the note (text, blank line, one signature line per signer).
 * @throws Error when the text is not a valid note text (empty, no final newline, control characters,
 *   ill-formed Unicode) or there is no signer.
 */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  const problem = textProblem(text);
  if (problem !== undefined) throw new Error(`cannot sign: ${problem}`);
  if (signers.length === 0) throw new Error('cannot sign: no signer');
  if (signers.length > MAX_SIGNATURES) throw new Error(`cannot sign: more than ${MAX_SIGNATURES} signers`);
  const msg = Buffer.from(text, 'utf8');
  let lines = '';
  for (const s of signers) {
    assertName(s.name);
    if (s.keyId.length !== 4) throw new Error('cannot sign: a key id is 4 bytes');
    lines += `${SIG_PREFIX}${s.name} ${Buffer.concat([s.keyId, s.sign(msg)]).toString('base64')}\n`;
  }
  return `${text}\n${lines}`;
}

/**
 * Parses `note` and checks its signatures against `verifiers` (matched by name and key id). Never
 * throws: a malformed note is `{ error }`. Signatures by keys not among the verifiers are reported
 * with `known: false`; a known key's bad signature with `verified: false`. The caller decides what
 * suffices (typically: at least one `verified`).
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote | { error: string } {
  if (!note.isWellFormed()) return { error: 'note is not valid UTF-8' };
  if (hasControl(note)) return { error: 'note contains control characters other than newline' };
  const split = note.lastIndexOf('\n\n');
  if (split < 0) return { error: 'note has no blank line before its signatures' };
  const text = note.slice(0, split + 1);
  const sigText = note.slice(split + 2);
  if (sigText === '' || !sigText.endsWith('\n')) return { error: 'note has no signature lines, or they do not end in a newline' };
  const lines = sigText.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) return { error: `note has more than ${MAX_SIGNATURES} signatures` };
  const msg = Buffer.from(text, 'utf8');
  const signatures: NoteSignature[] = [];
  for (const [i, line] of lines.entries()) {
    const where = `signature line ${i + 1}`;
    if (!line.startsWith(SIG_PREFIX)) return { error: `${where} does not start with "— "` };
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(' ');
    const name = space < 0 ? '' : rest.slice(0, space);
    if (space < 0 || !isValidKeyName(name)) return { error: `${where} has no valid key name` };
    const bytes = decodeBase64Strict(rest.slice(space + 1));
    if (bytes === undefined || bytes.length < 5) return { error: `${where} has an invalid signature encoding` };
    const keyId = bytes.subarray(0, 4);
    const sig = bytes.subarray(4);
    const verifier = verifiers.find((v) => v.name === name && v.keyId.equals(keyId));
    const verified = verifier !== undefined && safeVerify(verifier, msg, sig);
    signatures.push({ name, keyId: keyId.toString('hex'), known: verifier !== undefined, verified });
  }
  return { text, signatures };
}

/**
 * Decodes canonical, padded standard base64; undefined for anything else (Node's own decoder
 * silently skips invalid characters, which a signature format must not).
 */
export function decodeBase64Strict(s: string): Buffer | undefined {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return undefined;
  const buf = Buffer.from(s, 'base64');
  return buf.toString('base64') === s ? buf : undefined;
}

function safeVerify(v: NoteVerifier, msg: Buffer, sig: Buffer): boolean {
  try {
    return v.verify(msg, sig);
  } catch {
    return false;
  }
}

/** Why `text` cannot be a note's text, or undefined. */
function textProblem(text: string): string | undefined {
  if (!text.endsWith('\n')) return 'the text must end with a newline';
  if (!text.isWellFormed()) return 'the text is not valid Unicode';
  if (hasControl(text)) return 'the text contains control characters other than newline';
  return undefined;
}

function hasControl(s: string): boolean {
  // eslint-disable-next-line no-control-regex -- that is the point
  return /[\u0000-\u0009\u000b-\u001f]/.test(s);
}

function assertName(name: string): void {
  if (!isValidKeyName(name)) throw new Error(`invalid key name ${JSON.stringify(name)}: it must be non-empty, without spaces or '+'`);
}
