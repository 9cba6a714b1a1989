import { createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureIo } from '../../support/capture-io.js';
import { runKeysGenerate } from '../../../src/cli/keys.js';
import { loadOrCreateSealKey, readPublicKey, SealKeyError } from '../../../src/audit/seal-key.js';
import { openNote, signerFromPrivateKey, signNote, verifierFromVkey } from '../../../src/audit/signed-note.js';
import { main } from '../../../src/main.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-keys-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An environment whose config file does not exist, so the default origin applies. */
const env = () => ({ PORTCULLIS_CONFIG: join(dir, 'absent.yaml') });

describe('keys generate', () => {
  it('writes a 0600 PKCS#8 key and prints a PEM public key and a vkey that verifies its notes', async () => {
    const file = join(dir, 'sub', 'seal.key');
    const { io, out } = captureIo(env());
    expect(await runKeysGenerate(['--out', file, '--name', 'audit.example/log'], io)).toBe(0);
    if (process.platform !== 'win32') expect((await stat(file)).mode & 0o777).toBe(0o600);
    const pem = await readFile(file, 'utf8');
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const lines = out.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('-----BEGIN PUBLIC KEY-----');
    const vkey = lines.at(-1) ?? '';
    expect(vkey).toMatch(/^audit\.example\/log\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$/);
    expect(out.stderr).toContain(file);

    const note = signNote('checkpoint text\n', [signerFromPrivateKey('audit.example/log', createPrivateKey(pem))]);
    expect(openNote(note, [verifierFromVkey(vkey)])).toMatchObject({ signatures: [{ known: true, verified: true }] });

    // The saved output is accepted as a public key file.
    const pub = join(dir, 'seal.pub');
    await writeFile(pub, out.stdout);
    const read = await readPublicKey(pub);
    expect(read.publicKey.export({ format: 'jwk' })).toEqual((await loadOrCreateSealKey(file, { create: false })).publicKey.export({ format: 'jwk' }));
  });

  it('refuses to overwrite an existing file (exit 1)', async () => {
    const file = join(dir, 'seal.key');
    await writeFile(file, 'precious\n');
    const { io, out } = captureIo(env());
    expect(await runKeysGenerate(['--out', file], io)).toBe(1);
    expect(out.stdout).toBe('');
    expect(out.stderr).toMatch(/already exists/);
    expect(await readFile(file, 'utf8')).toBe('precious\n');
  });

  it('exits 1 when the file cannot be written', async () => {
    const blocker = join(dir, 'file');
    await writeFile(blocker, '');
    const { io, out } = captureIo(env());
    expect(await runKeysGenerate(['--out', join(blocker, 'seal.key')], io)).toBe(1);
    expect(out.stderr).toMatch(/cannot write/);
  });

  it('uses audit.seal.origin from the configuration, else the default name', async () => {
    const config = join(dir, 'portcullis.yaml');
    await writeFile(config, 'audit:\n  seal:\n    origin: logs.corp.example/audit\n');
    const withConfig = captureIo({ PORTCULLIS_CONFIG: config });
    expect(await runKeysGenerate(['--out', join(dir, 'a.key')], withConfig.io)).toBe(0);
    expect(withConfig.out.stdout).toMatch(/\nlogs\.corp\.example\/audit\+[0-9a-f]{8}\+/);
    const plain = captureIo(env());
    expect(await runKeysGenerate(['--out', join(dir, 'b.key')], plain.io)).toBe(0);
    expect(plain.out.stdout).toMatch(/\nportcullis\.example\/audit\+[0-9a-f]{8}\+/);
    expect(plain.out.stderr).toMatch(/did not load/);
  });

  it.each([[[]], [['--out']], [['--out', 'x', 'extra']], [['--bogus']], [['--out', 'x', '--name', 'has space']]])('exits 2 on %j', async (args) => {
    const { io, out } = captureIo(env());
    expect(await runKeysGenerate(args, io)).toBe(2);
    expect(out.stderr).toMatch(/Usage: portcullis keys generate/);
  });

  it('prints usage for --help and is wired into main', async () => {
    const { io, out } = captureIo(env());
    expect(await main(['keys', 'generate', '--help'], io)).toBe(0);
    expect(out.stdout).toMatch(/^Usage: portcullis keys generate --out FILE/);
  });
});

describe('seal key files', () => {
  it('loadOrCreateSealKey creates once, then loads the same key; flags loose permissions', async () => {
    const file = join(dir, 'k', 'seal.key');
    const first = await loadOrCreateSealKey(file);
    expect(first.created).toBe(true);
    const second = await loadOrCreateSealKey(file);
    expect(second).toMatchObject({ created: false, insecurePermissions: false });
    expect(second.publicKey.equals(first.publicKey)).toBe(true);
    if (process.platform !== 'win32') {
      const { chmod } = await import('node:fs/promises');
      await chmod(file, 0o644);
      expect((await loadOrCreateSealKey(file)).insecurePermissions).toBe(true);
    }
  });

  it('refuses a missing file without create, and a non-Ed25519 key', async () => {
    await expect(loadOrCreateSealKey(join(dir, 'none.key'), { create: false })).rejects.toMatchObject({ code: 'missing' });
    const { generateKeyPairSync } = await import('node:crypto');
    const rsa = join(dir, 'rsa.key');
    await writeFile(rsa, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    await expect(loadOrCreateSealKey(rsa)).rejects.toBeInstanceOf(SealKeyError);
    await expect(readPublicKey(rsa)).rejects.toMatchObject({ code: 'invalid' });
  });

  it('readPublicKey accepts a private key PEM and a vkey line', async () => {
    const file = join(dir, 'seal.key');
    const { publicKey } = await loadOrCreateSealKey(file);
    expect((await readPublicKey(file)).publicKey.equals(publicKey)).toBe(true);
    const vkeyFile = join(dir, 'seal.vkey');
    await writeFile(vkeyFile, '# comment\nexample.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k\n');
    expect(await readPublicKey(vkeyFile)).toMatchObject({ name: 'example.com/foo' });
  });
});
