import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSecretBox, loadOrCreateSecretKey, SecretBoxError, secretContext, SecretKeyError } from '../../src/mfa/secret-box.js';

const execFileAsync = promisify(execFile);
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CTX = secretContext('totp', 'alice', 'cred-1');
const SEALED_RE = /^v1\.[A-Za-z0-9_-]{11}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/;

/** The error `fn` throws, asserted to be a SecretBoxError. */
function boxError(fn: () => unknown): SecretBoxError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretBoxError);
    return err as SecretBoxError;
  }
  throw new Error('expected a SecretBoxError, nothing was thrown');
}

/** `sealed` with one bit of part `index` (1 key id, 2 iv, 3 ciphertext) flipped at byte `at` (negative: from the end). */
function flipBit(sealed: string, index: number, at: number): string {
  const parts = sealed.split('.');
  const bytes = Buffer.from(parts[index] ?? '', 'base64url');
  const i = at < 0 ? bytes.length + at : at;
  bytes[i] = (bytes[i] ?? 0) ^ 0x01;
  parts[index] = bytes.toString('base64url');
  return parts.join('.');
}

describe('createSecretBox', () => {
  const box = createSecretBox(randomBytes(32));

  it('round-trips, binding the context', () => {
    for (const plaintext of ['JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', '', 'ünïcödé ✓ 🔑', 'x'.repeat(10_000)]) {
      const sealed = box.seal(plaintext, CTX);
      expect(sealed).toMatch(SEALED_RE);
      expect(sealed).not.toContain(plaintext === '' ? '\0' : plaintext);
      expect(box.open(sealed, CTX)).toBe(plaintext);
    }
  });

  it('uses a fresh IV for every seal', () => {
    const a = box.seal('same', CTX);
    const b = box.seal('same', CTX);
    expect(a).not.toBe(b);
    expect(a.split('.')[2]).not.toBe(b.split('.')[2]);
  });

  it('names its key by the first 8 bytes of SHA-256(key)', () => {
    const key = randomBytes(32);
    const kid = createHash('sha256').update(key).digest().subarray(0, 8).toString('base64url');
    const b = createSecretBox(key);
    expect(b.keyId).toBe(kid);
    expect(b.seal('s', CTX).split('.')[1]).toBe(kid);
  });

  it('refuses a ciphertext moved to another user or credential', () => {
    const sealed = box.seal('secret', secretContext('totp', 'alice', 'cred-1'));
    for (const other of [secretContext('totp', 'bob', 'cred-1'), secretContext('totp', 'alice', 'cred-2'), secretContext('webauthn', 'alice', 'cred-1'), '']) {
      const err = boxError(() => box.open(sealed, other));
      expect(err.code).toBe('tampered');
      expect(err.message).not.toMatch(/alice|bob|cred-/); // the context is not echoed
    }
  });

  it('keeps context parts apart', () => {
    expect(secretContext('totp', 'ab', 'c')).not.toBe(secretContext('totp', 'a', 'bc'));
    const sealed = box.seal('secret', secretContext('totp', 'ab', 'c'));
    expect(boxError(() => box.open(sealed, secretContext('totp', 'a', 'bc'))).code).toBe('tampered');
  });

  it('detects tampering with the ciphertext, the tag and the IV', () => {
    const sealed = box.seal('JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', CTX);
    for (const tampered of [flipBit(sealed, 3, 0), flipBit(sealed, 3, 10), flipBit(sealed, 3, -1), flipBit(sealed, 2, 0), flipBit(sealed, 2, -1)]) {
      expect(tampered).not.toBe(sealed);
      expect(boxError(() => box.open(tampered, CTX)).code).toBe('tampered');
    }
  });

  it('detects a truncated or extended ciphertext', () => {
    const sealed = box.seal('JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', CTX);
    const parts = sealed.split('.');
    const ct = Buffer.from(parts[3] ?? '', 'base64url');
    const withCt = (bytes: Buffer): string => [...parts.slice(0, 3), bytes.toString('base64url')].join('.');
    expect(boxError(() => box.open(withCt(ct.subarray(1)), CTX)).code).toBe('tampered');
    expect(boxError(() => box.open(withCt(Buffer.concat([ct, Buffer.from([0])])), CTX)).code).toBe('tampered');
    expect(boxError(() => box.open(withCt(ct.subarray(0, 15)), CTX)).code).toBe('malformed');
  });

  it('reports a value sealed under another key as such', () => {
    const other = createSecretBox(randomBytes(32));
    const sealed = other.seal('secret', CTX);
    const err = boxError(() => box.open(sealed, CTX));
    expect(err.code).toBe('wrong-key');
    expect(err.message).toMatch(/encrypted with another key/);
    expect(err.message).toContain(other.keyId);
    expect(err.message).toContain(box.keyId);
  });

  it('still fails authentication when the key id is forged to match', () => {
    const other = createSecretBox(randomBytes(32));
    const parts = other.seal('secret', CTX).split('.');
    parts[1] = box.keyId;
    expect(boxError(() => box.open(parts.join('.'), CTX)).code).toBe('tampered');
  });

  it('reports a changed key id as another key', () => {
    const sealed = box.seal('secret', CTX);
    expect(boxError(() => box.open(flipBit(sealed, 1, 0), CTX)).code).toBe('wrong-key');
  });

  it('refuses malformed values', () => {
    const sealed = box.seal('secret', CTX);
    const [, kid = '', iv = '', ct = ''] = sealed.split('.');
    const cases = [
      '',
      'secret',
      'v1',
      `v1.${kid}.${iv}`,
      `v1.${kid}.${iv}.${ct}.x`,
      `v1.${kid}.${iv}.${ct}=`, // padding
      `v1.${kid}.${iv}.${ct.slice(0, -1)}+`, // not base64url
      `v1.${kid}.${iv.slice(0, -2)}.${ct}`, // short IV
      `v1.${kid.slice(0, -1)}.${iv}.${ct}`, // short key id
      `v1.${kid}.${iv}.`,
    ];
    for (const value of cases) expect(boxError(() => box.open(value, CTX)).code, value).toBe('malformed');
    expect(boxError(() => box.open(`v2.${kid}.${iv}.${ct}`, CTX)).code).toBe('unsupported-version');
  });

  it('refuses a key of the wrong length, and copies the key it is given', () => {
    expect(() => createSecretBox(randomBytes(31))).toThrow(TypeError);
    expect(() => createSecretBox(randomBytes(33))).toThrow(TypeError);
    expect(() => createSecretBox(Buffer.alloc(0))).toThrow(TypeError);
    const key = randomBytes(32);
    const b = createSecretBox(key);
    const sealed = b.seal('secret', CTX);
    key.fill(0);
    expect(b.open(sealed, CTX)).toBe('secret');
  });
});

describe('loadOrCreateSecretKey', () => {
  let dir: string;
  let keyFile: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-secret-box-'));
    keyFile = join(dir, 'data', 'keys', 'secret.key');
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function expectKeyError(code: 'invalid' | 'insecure', file = keyFile): Promise<SecretKeyError> {
    const err: unknown = await loadOrCreateSecretKey(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SecretKeyError);
    const keyErr = err as SecretKeyError;
    expect(keyErr.code).toBe(code);
    expect(keyErr.message).toContain(file);
    return keyErr;
  }

  it('creates the key file with mode 0600 in a 0700 directory', async () => {
    const box = await loadOrCreateSecretKey(keyFile);
    const st = await stat(keyFile);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'data', 'keys'))).mode & 0o777).toBe(0o700);
    const text = await readFile(keyFile, 'utf8');
    expect(text).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    const key = Buffer.from(text.trim(), 'base64url');
    expect(key).toHaveLength(32);
    expect(box.keyId).toBe(createSecretBox(key).keyId);
  });

  it('reuses the key file on the next start', async () => {
    const first = await loadOrCreateSecretKey(keyFile);
    const sealed = first.seal('JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', CTX);
    const before = await readFile(keyFile, 'utf8');
    const second = await loadOrCreateSecretKey(keyFile);
    expect(second.keyId).toBe(first.keyId);
    expect(second.open(sealed, CTX)).toBe('JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP');
    expect(await readFile(keyFile, 'utf8')).toBe(before);
  });

  it('ends up with one key when several processes start at once', async () => {
    for (let round = 0; round < 5; round++) {
      const file = join(dir, `race-${round}`, 'secret.key');
      const boxes = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateSecretKey(file)));
      const key = Buffer.from((await readFile(file, 'utf8')).trim(), 'base64url');
      const keyId = createSecretBox(key).keyId;
      for (const b of boxes) expect(b.keyId).toBe(keyId);
      const sealed = boxes[0]?.seal('s', CTX) ?? '';
      for (const b of boxes) expect(b.open(sealed, CTX)).toBe('s');
    }
  });

  it('ends up with one key when separate processes start at once', async () => {
    const file = join(dir, 'procs', 'secret.key');
    const moduleUrl = new URL('../../src/mfa/secret-box.ts', import.meta.url).href;
    const script = `const { loadOrCreateSecretKey } = await import(${JSON.stringify(moduleUrl)}); process.stdout.write((await loadOrCreateSecretKey(process.argv[1])).keyId);`;
    const outputs = await Promise.all(
      Array.from({ length: 4 }, () => execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, file], { cwd: REPO_ROOT })),
    );
    const key = Buffer.from((await readFile(file, 'utf8')).trim(), 'base64url');
    for (const { stdout } of outputs) expect(stdout).toBe(createSecretBox(key).keyId);
  });

  it('loads a key written by an operator in base64 or base64url, ignoring surrounding white space', async () => {
    await mkdir(join(dir, 'data', 'keys'), { recursive: true });
    const key = randomBytes(32);
    for (const text of [`${key.toString('base64')}\n`, key.toString('base64').slice(0, 43), `  ${key.toString('base64url')}  \r\n`, key.toString('base64url')]) {
      await writeFile(keyFile, text, { mode: 0o600 });
      await chmod(keyFile, 0o600);
      expect((await loadOrCreateSecretKey(keyFile)).keyId).toBe(createSecretBox(key).keyId);
    }
  });

  it('refuses a group- or world-accessible key file, naming it', async () => {
    await mkdir(join(dir, 'data', 'keys'), { recursive: true });
    await writeFile(keyFile, `${randomBytes(32).toString('base64url')}\n`);
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await chmod(keyFile, mode);
      const err = await expectKeyError('insecure');
      expect(err.message).toContain(mode.toString(8));
      expect(err.message).toContain('chmod 600');
    }
    await chmod(keyFile, 0o400);
    await expect(loadOrCreateSecretKey(keyFile)).resolves.toBeDefined();
  });

  it('refuses a key of the wrong size or format, naming the file', async () => {
    await mkdir(join(dir, 'data', 'keys'), { recursive: true });
    const b64url = randomBytes(32).toString('base64url');
    const cases = [
      '',
      '\n',
      randomBytes(31).toString('base64url'),
      randomBytes(33).toString('base64url'),
      randomBytes(32).toString('hex'),
      `${b64url}\n${b64url}\n`,
      `${b64url.slice(0, 42)}!`,
      nonCanonical(b64url), // decodes to the same 32 bytes, but the unused low bits are set
      `${b64url}==`,
      'x'.repeat(5000),
    ];
    expect(Buffer.from(nonCanonical(b64url), 'base64url')).toEqual(Buffer.from(b64url, 'base64url'));
    for (const text of cases) {
      await writeFile(keyFile, text);
      await chmod(keyFile, 0o600);
      await expectKeyError('invalid');
    }
    // Raw binary bytes are not a key file either, and the file is left as it was.
    const raw = randomBytes(32);
    await writeFile(keyFile, raw);
    await chmod(keyFile, 0o600);
    await expectKeyError('invalid');
    expect(await readFile(keyFile)).toEqual(raw);
  });

  it('refuses a directory in place of the key file', async () => {
    await mkdir(keyFile, { recursive: true, mode: 0o700 });
    await expectKeyError('invalid');
  });

  it('keys are independent: a box from one key file cannot open another one’s values', async () => {
    const a = await loadOrCreateSecretKey(keyFile);
    const b = await loadOrCreateSecretKey(join(dir, 'other', 'secret.key'));
    expect(a.keyId).not.toBe(b.keyId);
    const err = boxError(() => b.open(a.seal('s', CTX), CTX));
    expect(err.code).toBe('wrong-key');
  });
});

/** A 43-character base64url text of 32 bytes with one of the 2 unused trailing bits set. */
function nonCanonical(b64url: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(b64url.slice(-1));
  return b64url.slice(0, -1) + alphabet.charAt(last ^ 1);
}
