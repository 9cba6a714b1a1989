/**
 * Worker thread entry of the verifier's digest pool (verify-pool.ts): digests each packed page it is
 * sent ({@link digestPage}) and sends the digest back with the page's buffers, all transferred, in
 * the order received.
 */
import { parentPort } from 'node:worker_threads';
import { digestPage } from './verify-digest.js';

/** A page as sent to the worker (buffers transferred): the first `length` bytes of `bytes` are the page's. */
export interface DigestRequest {
  readonly bytes: ArrayBuffer;
  readonly length: number;
  readonly offsets: ArrayBuffer;
}

/** The answer (buffers transferred): the digest, and the request's buffers back. */
export interface DigestAnswer {
  readonly digest: ArrayBuffer;
  readonly bytes: ArrayBuffer;
  readonly offsets: ArrayBuffer;
}

function isRequest(m: unknown): m is DigestRequest {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as Partial<Record<keyof DigestRequest, unknown>>;
  return r.bytes instanceof ArrayBuffer && r.offsets instanceof ArrayBuffer && typeof r.length === 'number';
}

const port = parentPort;
if (port !== null) {
  port.on('message', (m: unknown) => {
    if (!isRequest(m)) throw new TypeError('verify worker: unexpected message');
    const digest = digestPage({ bytes: new Uint8Array(m.bytes, 0, m.length), offsets: new Uint32Array(m.offsets) });
    const answer: DigestAnswer = { digest, bytes: m.bytes, offsets: m.offsets };
    port.postMessage(answer, [digest, m.bytes, m.offsets]);
  });
}
