import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  decodeBase64Strict,
  keyIdOf,
  openNote,
  parseVkey,
  rawPublicKey,
  signerFromPrivateKey,
  signNote,
  verifierFromPublicKey,
  verifierFromVkey,
  vkeyOf,
} from '../../../src/audit/signed-note.js';

interface Vectors {
  signed_note_example: { vkey: string; text: string; signature_line: string };
  ed25519_rfc8032_test1: { secret: string; public: string; message_hex: string; signature: string };
}
const vectors = JSON.parse(readFileSync('/work/shared/vectors/signatures-and-jcs.json', 'utf8')) as Vectors;
const ex = vectors.signed_note_example;
const exampleNote = `${ex.text}\n${ex.signature_line}\n`;

function keyPair() {
  return generateKeyPairSync('ed25519');
}

describe('C2SP signed-note example', () => {
  it('verifies with the example vkey', () => {
    const v = verifierFromVkey(ex.vkey);
    expect(v.name).toBe('example.com/foo');
    expect(v.keyId.toString('hex')).toBe('530d903a');
    expect(openNote(exampleNote, [v])).toEqual({
      text: 'This is an example message.\n',
      signatures: [{ name: 'example.com/foo', keyId: '530d903a', known: true, verified: true }],
    });
  });

  it('round-trips the vkey and recomputes the key id', () => {
    const { name, publicKey, keyId } = parseVkey(ex.vkey);
    expect(vkeyOf(name, publicKey)).toBe(ex.vkey);
    expect(keyIdOf(name, rawPublicKey(publicKey))).toEqual(keyId);
  });

  it('rejects a vkey whose key id does not match', () => {
    expect(() => verifierFromVkey(ex.vkey.replace('+530d903a+', '+530d903b+'))).toThrow(/key id does not match/);
    expect(() => verifierFromVkey(ex.vkey.replace('example.com/foo', 'example.com/bar'))).toThrow(/key id does not match/);
    expect(() => verifierFromVkey('example.com/foo+530d903a')).toThrow(/malformed/);
    expect(() => verifierFromVkey(ex.vkey.replace('+Aeky', '+Aiky'))).toThrow();
  });

  it('fails verification when the text is tampered with', () => {
    const opened = openNote(exampleNote.replace('example', 'exemplary'), [verifierFromVkey(ex.vkey)]);
    expect(opened).toMatchObject({ signatures: [{ known: true, verified: false }] });
  });

  it('reports the signature as unknown without the key', () => {
    const other = verifierFromPublicKey('example.com/foo', keyPair().publicKey);
    expect(openNote(exampleNote, [other])).toMatchObject({ signatures: [{ name: 'example.com/foo', keyId: '530d903a', known: false, verified: false }] });
    expect(openNote(exampleNote, [])).toMatchObject({ signatures: [{ known: false, verified: false }] });
  });
});

describe('Ed25519 (RFC 8032 test 1) via node:crypto', () => {
  const t = vectors.ed25519_rfc8032_test1;
  const b64u = (hex: string) => Buffer.from(hex, 'hex').toString('base64url');
  const priv = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: b64u(t.secret), x: b64u(t.public) }, format: 'jwk' });
  const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64u(t.public) }, format: 'jwk' });

  it('produces and verifies the test signature', () => {
    const msg = Buffer.from(t.message_hex, 'hex');
    expect(sign(null, msg, priv).toString('hex')).toBe(t.signature);
    expect(verify(null, msg, pub, Buffer.from(t.signature, 'hex'))).toBe(true);
    expect(rawPublicKey(priv).toString('hex')).toBe(t.public);
  });

  it('signs a note with a deterministic signature line', () => {
    const signer = signerFromPrivateKey('rfc8032', priv);
    const note = signNote('hello\n', [signer]);
    expect(note).toBe(signNote('hello\n', [signer]));
    expect(openNote(note, [verifierFromPublicKey('rfc8032', pub)])).toMatchObject({ signatures: [{ verified: true }] });
  });
});

describe('signNote / openNote', () => {
  const a = keyPair();
  const b = keyPair();
  const signerA = signerFromPrivateKey('log.example/a', a.privateKey);
  const signerB = signerFromPrivateKey('log.example/a', b.privateKey);
  const verifierA = verifierFromVkey(vkeyOf('log.example/a', a.publicKey));
  const verifierB = verifierFromPublicKey('log.example/a', b.publicKey);

  it('formats text, blank line, signature lines', () => {
    const note = signNote('line one\nline two\n', [signerA]);
    expect(note).toMatch(/^line one\nline two\n\n— log\.example\/a [A-Za-z0-9+/]{91}=\n$/);
    expect(decodeBase64Strict(note.split(' ').at(-1)?.trim() ?? '')?.subarray(0, 4)).toEqual(signerA.keyId);
  });

  it('a note signed by two keys (rotation) verifies with either key set', () => {
    const note = signNote('rotate\n', [signerA, signerB]);
    const withA = openNote(note, [verifierA]);
    expect(withA).toMatchObject({ text: 'rotate\n', signatures: [{ known: true, verified: true }, { known: false, verified: false }] });
    const withB = openNote(note, [verifierB]);
    expect(withB).toMatchObject({ signatures: [{ known: false, verified: false }, { known: true, verified: true }] });
    const withBoth = openNote(note, [verifierB, verifierA]);
    expect(withBoth).toMatchObject({ signatures: [{ verified: true }, { verified: true }] });
  });

  it('keeps blank lines inside the text (the last blank line separates)', () => {
    const note = signNote('a\n\nb\n\n', [signerA]);
    expect(openNote(note, [verifierA])).toMatchObject({ text: 'a\n\nb\n\n', signatures: [{ verified: true }] });
  });

  it('a signature that does not verify is reported, not fatal', () => {
    const note = signNote('x\n', [signerA]);
    const forged = note.replace(/ (\S+)\n$/, (_m, sig: string) => {
      const bytes = Buffer.from(sig, 'base64');
      bytes[10] = (bytes[10] ?? 0) ^ 1;
      return ` ${bytes.toString('base64')}\n`;
    });
    expect(openNote(forged, [verifierA])).toMatchObject({ signatures: [{ known: true, verified: false }] });
  });

  it.each([
    ['no blank line', 'text\n— log.example/a AAAA\n'],
    ['no signature lines', 'text\n\n'],
    ['no final newline', signNote('t\n', [signerA]).slice(0, -1)],
    ['a line without the em dash', 'text\n\n- log.example/a AAAAAAAA\n'],
    ['bad base64', 'text\n\n— log.example/a AAA*AAAA\n'],
    ['non-canonical base64', 'text\n\n— log.example/a AAAAAB==\n'],
    ['too short a signature', 'text\n\n— log.example/a AAAA\n'],
    ['a control character', 'te\u0001xt\n\n— log.example/a AAAAAAAA\n'],
    ['a name with a plus', 'text\n\n— log+a AAAAAAAA\n'],
  ])('returns an error for %s', (_label, note) => {
    expect(openNote(note, [verifierA])).toHaveProperty('error');
  });

  it('refuses to sign invalid text or names', () => {
    expect(() => signNote('no newline', [signerA])).toThrow(/newline/);
    expect(() => signNote('tab\there\n', [signerA])).toThrow(/control/);
    expect(() => signNote('ok\n', [])).toThrow(/no signer/);
    expect(() => signerFromPrivateKey('bad name', a.privateKey)).toThrow(/invalid key name/);
    expect(() => vkeyOf('a+b', a.publicKey)).toThrow(/invalid key name/);
  });
});
