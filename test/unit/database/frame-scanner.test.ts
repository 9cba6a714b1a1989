import { describe, expect, it } from 'vitest';
import { createFrameScanner, FrameError, type Frame } from '../../../src/database/frame-scanner.js';

function frame(type: string, body: string | Buffer): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** A backend stream: a result of three rows, then CommandComplete and ReadyForQuery. */
const STREAM = Buffer.concat([frame('T', 'rowdesc'), frame('D', 'row-1'), frame('D', 'row-2'), frame('D', Buffer.alloc(3000, 7)), frame('C', 'SELECT 3\0'), frame('Z', 'I')]);
const CAPTURE: Record<string, number> = { C: 64, Z: 1, T: 0 };

function scanner() {
  return createFrameScanner({ capture: (t) => CAPTURE[String.fromCharCode(t)] ?? -1, countType: 'D'.charCodeAt(0), maxLength: 1 << 20 });
}

function view(frames: readonly Frame[]): { type: string; head: string; truncated: boolean; countedBefore: number }[] {
  return frames.map((f) => ({ type: String.fromCharCode(f.type), head: f.head.toString('latin1'), truncated: f.truncated, countedBefore: f.countedBefore }));
}

const EXPECTED = [
  { type: 'T', head: '', truncated: true, countedBefore: 0 },
  { type: 'C', head: 'SELECT 3\0', truncated: false, countedBefore: 3 },
  { type: 'Z', head: 'I', truncated: false, countedBefore: 0 },
];

describe('createFrameScanner', () => {
  it('reports the frames asked for, counts DataRows, and skips the rest', () => {
    const s = scanner();
    expect(view(s.push(STREAM))).toEqual(EXPECTED);
    expect(s.atBoundary()).toBe(true);
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 13, 64, 1000])('gives the same frames when the stream arrives in %i-byte chunks', (size) => {
    const s = scanner();
    const frames: ReturnType<typeof view> = [];
    // view() reads each captured head at once: heads may share memory with the chunk.
    for (let i = 0; i < STREAM.length; i += size) frames.push(...view(s.push(STREAM.subarray(i, i + size))));
    expect(frames).toEqual(EXPECTED);
  });

  it('caps the capture and says the body was longer', () => {
    const s = createFrameScanner({ capture: () => 4, maxLength: 1 << 20 });
    expect(view(s.push(frame('Q', 'select 1\0')))).toEqual([{ type: 'Q', head: 'sele', truncated: true, countedBefore: 0 }]);
  });

  it('reports frames with an empty body', () => {
    const s = createFrameScanner({ capture: () => 0, maxLength: 1 << 20 });
    expect(view(s.push(Buffer.concat([frame('S', ''), frame('H', '')]))).map((f) => f.type)).toEqual(['S', 'H']);
  });

  it.each([
    ['a length below 4', Buffer.from([0x51, 0, 0, 0, 3])],
    ['a length beyond the limit', Buffer.from([0x51, 0x7f, 0, 0, 0])],
  ])('refuses %s', (_name, bytes) => {
    expect(() => scanner().push(bytes)).toThrow(FrameError);
  });

  describe('boundaryIn', () => {
    it('is 0 at a boundary', () => {
      expect(scanner().boundaryIn(STREAM)).toBe(0);
    });

    it('finds the end of the current frame in the next chunk, without changing the state', () => {
      const s = scanner();
      const data = frame('D', 'abcdef');
      s.push(data.subarray(0, 7));
      expect(s.boundaryIn(data.subarray(7))).toBe(4);
      expect(s.boundaryIn(data.subarray(7, 9))).toBeUndefined();
      expect(s.atBoundary()).toBe(false);
      s.push(data.subarray(7));
      expect(s.atBoundary()).toBe(true);
    });

    it('reads a length split across chunks', () => {
      const s = scanner();
      const data = frame('D', 'abcdef');
      s.push(data.subarray(0, 2));
      expect(s.boundaryIn(data.subarray(2))).toBe(data.length - 2);
      expect(s.boundaryIn(data.subarray(2, 4))).toBeUndefined();
    });
  });
});
