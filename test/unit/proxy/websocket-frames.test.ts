import { describe, expect, it } from 'vitest';
import { createFrameCounter } from '../../../src/proxy/websocket-frames.js';

function frame(opcode: number, payload: Buffer, opts: { fin?: boolean; mask?: boolean } = {}): Buffer {
  const fin = opts.fin ?? true;
  const head: number[] = [(fin ? 0x80 : 0) | opcode];
  const maskBit = opts.mask === true ? 0x80 : 0;
  if (payload.length < 126) head.push(maskBit | payload.length);
  else if (payload.length < 65536) head.push(maskBit | 126, payload.length >> 8, payload.length & 0xff);
  else {
    head.push(maskBit | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(payload.length));
    head.push(...b);
  }
  const mask = opts.mask === true ? [1, 2, 3, 4] : [];
  return Buffer.concat([Buffer.from(head), Buffer.from(mask), payload]);
}

describe('createFrameCounter', () => {
  it('counts text and binary messages, not control frames, across any chunking', () => {
    const stream = Buffer.concat([
      frame(1, Buffer.from('hello'), { mask: true }),
      frame(9, Buffer.from('ping')),
      frame(2, Buffer.alloc(300)),
      frame(1, Buffer.from('par'), { fin: false }),
      frame(0, Buffer.from('tial'), { fin: true, mask: true }),
      frame(2, Buffer.alloc(70_000), { mask: true }),
      frame(8, Buffer.from([3, 232])),
    ]);
    for (const size of [1, 2, 3, 7, 64, 1000, stream.length]) {
      const c = createFrameCounter();
      for (let i = 0; i < stream.length; i += size) c.push(stream.subarray(i, i + size));
      expect(c.messages, `chunk size ${size}`).toBe(4);
    }
  });
});
