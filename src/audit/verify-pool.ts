/**
 * Where the verifier's pages are digested: in-thread, or by a pool of worker threads
 * (verify-worker.ts) so that hashing and reading the records run on other cores while the calling
 * thread checks the chain and builds the tree. Both give the same bytes: the workers run the same
 * {@link digestPage}.
 *
 * The worker entry is `verify-worker.js` next to this module (the build in `dist/`). When only the
 * TypeScript sources exist (vitest runs `src/` directly) the `.ts` entry is loaded through tsx's
 * loader (a devDependency), so tests run the real worker path.
 */
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { digestPage, type PackedPage } from './verify-digest.js';
import type { DigestAnswer, DigestRequest } from './verify-worker.js';

/** A page and its digest ({@link digestPage}). */
export interface Digested {
  /** The page digested (after a worker: the same bytes, transferred back). */
  readonly page: PackedPage;
  readonly digest: ArrayBuffer;
}

/** Digests packed pages. */
export interface PageDigester {
  /** Worker threads (0: in the calling thread). */
  readonly workers: number;
  /** Digests a page. Its buffers may be transferred: use the page in the result, not this one. */
  digest(page: PackedPage): Promise<Digested>;
  /** Stops the workers (pending digests reject). */
  close(): Promise<void>;
}

/** Digests in the calling thread. */
export const inThreadDigester: PageDigester = {
  workers: 0,
  digest: (page) => Promise.resolve({ page, digest: digestPage(page) }),
  close: () => Promise.resolve(),
};

function newWorker(): Worker {
  const js = new URL('./verify-worker.js', import.meta.url);
  if (existsSync(js)) return new Worker(js);
  const ts = new URL('./verify-worker.ts', import.meta.url);
  if (!existsSync(ts)) throw new Error(`the verify worker is missing (${js.pathname})`);
  // Running from the TypeScript sources (vitest, tsx): register tsx's loader in the worker first.
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(ts.href)}); });`;
  return new Worker(boot, { eval: true });
}

/**
 * The whole ArrayBuffer of `view` when the view spans all of it (then it is transferred), else a copy
 * (never `slice()`: on a Buffer that is a view, not a copy).
 */
function ownBuffer(view: Uint8Array | Uint32Array): ArrayBuffer {
  if (view.buffer instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === view.buffer.byteLength) return view.buffer;
  return (view instanceof Uint32Array ? new Uint32Array(view) : new Uint8Array(view)).buffer;
}

interface Waiting {
  /** The length of the bytes sent. */
  readonly length: number;
  resolve(done: Digested): void;
  reject(err: Error): void;
}

function isAnswer(m: unknown): m is DigestAnswer {
  if (typeof m !== 'object' || m === null) return false;
  const a = m as Partial<Record<keyof DigestAnswer, unknown>>;
  return a.digest instanceof ArrayBuffer && a.bytes instanceof ArrayBuffer && a.offsets instanceof ArrayBuffer;
}

interface Slot {
  readonly worker: Worker;
  /** Pages sent and not answered yet, oldest first (a worker answers in order). */
  readonly waiting: Waiting[];
  failed: Error | undefined;
}

/**
 * Starts `size` worker threads (≥ 1) and hands pages to them in turn.
 * @throws Error when the worker entry cannot be found.
 */
export function startDigestPool(size: number): PageDigester {
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`invalid worker count ${size}`);
  let closing = false;
  const fail = (slot: Slot, err: Error): void => {
    slot.failed ??= err;
    for (const w of slot.waiting.splice(0)) w.reject(slot.failed);
  };
  const slots: Slot[] = [];
  for (let i = 0; i < size; i++) {
    const slot: Slot = { worker: newWorker(), waiting: [], failed: undefined };
    slot.worker.on('message', (m: unknown) => {
      const w = slot.waiting.shift();
      if (w === undefined) return;
      if (isAnswer(m)) w.resolve({ page: { bytes: new Uint8Array(m.bytes, 0, w.length), offsets: new Uint32Array(m.offsets) }, digest: m.digest });
      else w.reject(new Error('verify worker: unexpected answer'));
    });
    slot.worker.on('error', (err: Error) => {
      fail(slot, new Error(`verify worker failed: ${err.message}`, { cause: err }));
    });
    slot.worker.on('exit', (code: number) => {
      fail(slot, new Error(closing ? 'verify worker stopped' : `verify worker exited (code ${code})`));
    });
    slots.push(slot);
  }
  let next = 0;
  return {
    workers: size,
    digest(page) {
      const slot = slots[next] as Slot;
      next = (next + 1) % slots.length;
      if (slot.failed !== undefined) return Promise.reject(slot.failed);
      const request: DigestRequest = { bytes: ownBuffer(page.bytes), length: page.bytes.byteLength, offsets: ownBuffer(page.offsets) };
      return new Promise<Digested>((resolve, reject) => {
        slot.waiting.push({ length: request.length, resolve, reject });
        slot.worker.postMessage(request, [request.bytes, request.offsets]);
      });
    },
    async close() {
      closing = true;
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
