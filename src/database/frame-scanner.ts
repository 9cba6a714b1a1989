/**
 * A streaming scanner for PostgreSQL protocol frames (`type byte + int32 length + body`) that reads
 * without holding the stream: chunks go on to the other side exactly as they came, and the scanner
 * only keeps track of where frames start and end, capturing the first bytes of the bodies the caller
 * asked for (statement text, command tags, error fields). A 100 MB result passes through with no
 * more memory than one chunk.
 */

/** A frame that ended inside a pushed chunk and whose type the caller asked to see. */
export interface Frame {
  readonly type: number;
  /** Body length (the int32 length minus its own 4 bytes). */
  readonly length: number;
  /**
   * The first `capture(type)` bytes of the body (all of it when shorter). It may share memory with
   * the pushed chunk: read it before the next push and do not keep it.
   */
  readonly head: Buffer;
  /** True when the body was longer than the capture. */
  readonly truncated: boolean;
  /** Frames of the counted type (`countType`) that ended since the previous reported frame. */
  readonly countedBefore: number;
}

/** A stream that is not PostgreSQL protocol (a length below 4 or above the limit). */
export class FrameError extends Error {}

/** Options for {@link createFrameScanner}. */
export interface FrameScannerOptions {
  /** How many body bytes to capture for a frame type; a negative number: do not report the frame. */
  capture(type: number): number;
  /** Frames of this type are never reported, only counted (DataRow for row counts). */
  readonly countType?: number;
  /** The largest body accepted, in bytes. */
  readonly maxLength: number;
}

const EMPTY = Buffer.alloc(0);

/** The scanner's state between chunks. */
export interface FrameScanner {
  /** Scans a chunk; returns the reported frames that ended in it, in order. @throws FrameError */
  push(chunk: Buffer): Frame[];
  /** True when the bytes pushed so far end exactly at a frame boundary. */
  atBoundary(): boolean;
  /**
   * Where in `chunk` (if it were pushed next) the current frame ends: 0 at a boundary, undefined when
   * the frame goes on beyond the chunk. Does not change the state.
   */
  boundaryIn(chunk: Buffer): number | undefined;
  /** Frames of the counted type since the last reported frame (and resets the count). */
  takeCounted(): number;
}

/** Creates a scanner for one direction of one connection. */
export function createFrameScanner(opts: FrameScannerOptions): FrameScanner {
  const header = Buffer.alloc(5);
  /** Bytes of the current frame's header seen (5 once in the body). */
  let headerFill = 0;
  let type = 0;
  let bodyLength = 0;
  let bodyLeft = 0;
  let report = false;
  let head: Buffer = EMPTY;
  let headFill = 0;
  let headCap = 0;
  let counted = 0;

  function begin(t: number, length: number): void {
    if (length < 4 || length - 4 > opts.maxLength) throw new FrameError(`frame of type ${String.fromCharCode(t)} has an invalid length ${length}`);
    type = t;
    bodyLength = length - 4;
    bodyLeft = bodyLength;
    headerFill = 5;
    const cap = t === opts.countType ? -1 : opts.capture(t);
    report = cap >= 0;
    headCap = report ? Math.min(cap, bodyLength) : 0;
    head = EMPTY;
    headFill = 0;
  }

  function end(out: Frame[]): void {
    headerFill = 0;
    if (report) {
      out.push({ type, length: bodyLength, head, truncated: bodyLength > headCap, countedBefore: counted });
      counted = 0;
    } else if (type === opts.countType) {
      counted += 1;
    }
    head = EMPTY;
  }

  return {
    push(chunk) {
      const out: Frame[] = [];
      const n = chunk.length;
      let i = 0;
      while (i < n || (headerFill === 5 && bodyLeft === 0)) {
        if (headerFill < 5) {
          if (headerFill === 0 && i + 5 <= n) {
            begin(chunk[i] ?? 0, chunk.readInt32BE(i + 1));
            i += 5;
          } else {
            const take = Math.min(5 - headerFill, n - i);
            chunk.copy(header, headerFill, i, i + take);
            headerFill += take;
            i += take;
            if (headerFill < 5) break;
            begin(header[0] ?? 0, header.readInt32BE(1));
          }
        }
        const take = Math.min(bodyLeft, n - i);
        if (headFill < headCap) {
          const want = Math.min(take, headCap - headFill);
          if (headFill === 0 && want === headCap) {
            head = chunk.subarray(i, i + want); // whole capture inside this chunk: no copy
          } else {
            if (headFill === 0) head = Buffer.allocUnsafe(headCap);
            chunk.copy(head, headFill, i, i + want);
          }
          headFill += want;
        }
        i += take;
        bodyLeft -= take;
        if (bodyLeft === 0) end(out);
      }
      return out;
    },
    atBoundary: () => headerFill === 0,
    boundaryIn(chunk) {
      if (headerFill === 0) return 0;
      if (headerFill === 5) return bodyLeft <= chunk.length ? bodyLeft : undefined;
      const need = 5 - headerFill;
      if (chunk.length < need) return undefined;
      const bytes = Buffer.concat([header.subarray(0, headerFill), chunk.subarray(0, need)]);
      const total = need + bytes.readInt32BE(1) - 4;
      return total <= chunk.length ? total : undefined;
    },
    takeCounted() {
      const c = counted;
      counted = 0;
      return c;
    },
  };
}
