import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkpointHash, formatCheckpoint, GENESIS_PREV, parseCheckpoint, type Checkpoint } from '../../../src/audit/checkpoint.js';
import { openNote, signerFromPrivateKey, signNote, verifierFromPublicKey } from '../../../src/audit/signed-note.js';

const root = createHash('sha256').update('root').digest();
const base: Checkpoint = { origin: 'portcullis.example/audit/gw-1', size: 42, root, number: 0, prevHash: GENESIS_PREV, time: '2025-01-02T03:04:05.678Z' };
const body = `portcullis.example/audit/gw-1\n42\n${root.toString('base64')}\ncheckpoint 0\nprev ${GENESIS_PREV}\ntime 2025-01-02T03:04:05.678Z\n`;

describe('formatCheckpoint / parseCheckpoint', () => {
  it('formats the tlog-checkpoint body with extension lines', () => {
    expect(formatCheckpoint(base)).toBe(body);
  });

  it('round-trips, with and without further extensions', () => {
    expect(parseCheckpoint(body)).toEqual(base);
    const c: Checkpoint = { ...base, number: 7, prevHash: 'ab'.repeat(32), size: 0, time: '2025-02-28T23:59:60+01:00', extensions: ['note hello world'] };
    expect(parseCheckpoint(formatCheckpoint(c))).toEqual(c);
  });

  it.each([
    ['missing final newline', body.slice(0, -1)],
    ['missing time line', body.replace(/time .*\n$/, '')],
    ['only three lines', body.split('\n').slice(0, 3).join('\n') + '\n'],
    ['leading zero in size', body.replace('\n42\n', '\n042\n')],
    ['sign in size', body.replace('\n42\n', '\n+42\n')],
    ['size beyond 2^53', body.replace('\n42\n', '\n9007199254740993\n')],
    ['leading zero in number', body.replace('checkpoint 0', 'checkpoint 00')],
    ['short root', body.replace(root.toString('base64'), Buffer.alloc(31).toString('base64'))],
    ['unpadded root', body.replace(root.toString('base64'), root.toString('base64').replace(/=$/, ''))],
    ['base64url root', body.replace(root.toString('base64'), root.toString('base64url') + '=')],
    ['uppercase prev', body.replace(GENESIS_PREV, 'AB'.repeat(32)).replace('checkpoint 0', 'checkpoint 1')],
    ['short prev', body.replace(GENESIS_PREV, '0'.repeat(63))],
    ['nonzero prev on checkpoint 0', body.replace(GENESIS_PREV, 'ab'.repeat(32))],
    ['bad time', body.replace('2025-01-02T03:04:05.678Z', '2025-02-30T03:04:05Z')],
    ['time without zone', body.replace('2025-01-02T03:04:05.678Z', '2025-01-02T03:04:05')],
    ['lines out of order', body.replace(/(prev .*\n)(time .*\n)/, '$2$1')],
    ['empty extension line', `${body}\n`],
    ['repeated reserved line', `${body}prev ${GENESIS_PREV}\n`],
    ['empty origin', body.replace(/^[^\n]*/, '')],
  ])('rejects %s', (_label, text) => {
    expect(parseCheckpoint(text)).toHaveProperty('error');
  });

  it('refuses to format an invalid checkpoint', () => {
    expect(() => formatCheckpoint({ ...base, size: -1 })).toThrow(RangeError);
    expect(() => formatCheckpoint({ ...base, root: Buffer.alloc(16) })).toThrow(/32 bytes/);
    expect(() => formatCheckpoint({ ...base, origin: 'a\nb' })).toThrow(/origin/);
  });
});

describe('signed checkpoints and the prev chain', () => {
  it('signs, opens, parses and links by the hash of the whole note', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const name = base.origin;
    const note0 = signNote(formatCheckpoint(base), [signerFromPrivateKey(name, privateKey)]);
    const c1: Checkpoint = { ...base, number: 1, size: 50, prevHash: checkpointHash(note0), time: '2025-01-02T03:04:15Z' };
    const note1 = signNote(formatCheckpoint(c1), [signerFromPrivateKey(name, privateKey)]);
    const opened = openNote(note1, [verifierFromPublicKey(name, publicKey)]);
    if ('error' in opened) throw new Error(opened.error);
    expect(opened.signatures[0]?.verified).toBe(true);
    const parsed = parseCheckpoint(opened.text);
    expect(parsed).toEqual(c1);
    expect(checkpointHash(note0)).toBe(createHash('sha256').update(Buffer.from(note0, 'utf8')).digest('hex'));
    expect(checkpointHash(note0)).not.toBe(createHash('sha256').update(formatCheckpoint(base)).digest('hex'));
  });
});
