/**
 * Counts WebSocket messages in a raw byte stream (RFC 6455 framing), without copying or altering it:
 * the relay splices sockets and only watches the bytes go by. A message is a data frame (text or
 * binary) or continuation frame with FIN set; control frames (close, ping, pong) are not messages.
 */

/** Parser state across chunk boundaries. */
export interface FrameCounter {
  /** Feeds the next chunk of the stream. */
  push(chunk: Buffer): void;
  /** Complete messages seen so far. */
  readonly messages: number;
  /** Whether the bytes so far end exactly at a frame boundary (a frame may be written next). */
  atBoundary(): boolean;
}

/** Creates a counter for one direction of a WebSocket connection. */
export function createFrameCounter(): FrameCounter {
  let messages = 0;
  let header = Buffer.alloc(0); // a partial frame header carried over
  let skip = 0; // payload bytes of the current frame still to pass

  function push(chunk: Buffer): void {
    let buf = chunk;
    for (;;) {
      if (skip > 0) {
        if (buf.length <= skip) {
          skip -= buf.length;
          return;
        }
        buf = buf.subarray(skip);
        skip = 0;
      }
      if (buf.length === 0) return;
      if (header.length > 0) {
        buf = Buffer.concat([header, buf]);
        header = Buffer.alloc(0);
      }
      if (buf.length < 2) {
        header = Buffer.from(buf);
        return;
      }
      const b0 = buf[0] ?? 0;
      const b1 = buf[1] ?? 0;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (buf.length < 4) {
          header = Buffer.from(buf);
          return;
        }
        len = buf.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (buf.length < 10) {
          header = Buffer.from(buf);
          return;
        }
        len = Number(buf.readBigUInt64BE(2));
        offset = 10;
      }
      if (masked) offset += 4;
      if (buf.length < offset) {
        header = Buffer.from(buf);
        return;
      }
      if (fin && (opcode === 0x0 || opcode === 0x1 || opcode === 0x2)) messages += 1;
      buf = buf.subarray(offset);
      skip = len;
    }
  }

  return {
    push,
    get messages() {
      return messages;
    },
    atBoundary: () => skip === 0 && header.length === 0,
  };
}
