/**
 * A browser-less user of the audit viewer for tests: signs in with the password form, enrols a
 * passkey with the software authenticator (which is itself a WebAuthn step-up), calls the viewer's
 * JSON API and opens its live feed with a real WebSocket client, as the page's script does.
 */
import WebSocket from 'ws';
import { GatewayAgent, signInAgent } from './gateway-agent.js';
import type { ClientResponse } from './http-client.js';
import { SoftAuthenticator } from './soft-authenticator.js';

/** A {@link GatewayAgent} that also reads the viewer's JSON API and opens its live feed. */
export class ViewerAgent extends GatewayAgent {
  /** A GET of the viewer's JSON API, parsed (as `T`, unchecked, unless `parse` checks it). */
  async json<T>(path: string, parse: (body: unknown) => T = (body) => body as T): Promise<{ status: number; body: T; res: ClientResponse }> {
    const res = await this.get(path, 'application/json');
    return { status: res.status, body: parse(res.json()), res };
  }

  /** Opens the live feed; `origin: null` sends none. */
  live(query = '', opts: { origin?: string | null } = {}): LiveClient {
    const origin = opts.origin === undefined ? this.origin : opts.origin;
    return new LiveClient(`ws://127.0.0.1:${this.port}/.portcullis/audit/live${query === '' ? '' : `?${query}`}`, {
      Host: this.host,
      ...(this.cookies.size > 0 ? { Cookie: this.cookieHeader() } : {}),
      ...(origin === null ? {} : { Origin: origin }),
    });
  }
}

/** A message from the live feed. */
export interface LiveMessage {
  readonly type: string;
  readonly [key: string]: unknown;
}

/** A live-feed WebSocket with everything it received, and waits on it. */
export class LiveClient {
  readonly ws: WebSocket;
  readonly messages: LiveMessage[] = [];
  /** The refused handshake's status, or the close code once closed. */
  refusedStatus: number | undefined;
  closeCode: number | undefined;
  closeReason = '';
  readonly opened: Promise<boolean>;
  readonly closed: Promise<number>;
  private waiters = new Set<() => void>();

  constructor(url: string, headers: Record<string, string>) {
    this.ws = new WebSocket(url, { headers });
    this.opened = new Promise((resolve) => {
      this.ws.once('open', () => resolve(true));
      this.ws.once('unexpected-response', (_req, res) => {
        this.refusedStatus = res.statusCode;
        res.resume();
        resolve(false);
      });
      this.ws.once('error', () => resolve(false));
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString('utf8');
        resolve(code);
        this.notify();
      });
    });
    this.ws.on('error', () => undefined);
    this.ws.on('message', (data) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      this.messages.push(JSON.parse(bytes.toString('utf8')) as LiveMessage);
      this.notify();
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Records received so far: seq and record. */
  records(): { seq: number; record: Record<string, unknown> }[] {
    return this.messages.filter((m) => m.type === 'records').flatMap((m) => m.records as { seq: number; record: Record<string, unknown> }[]);
  }

  /** Resolves once `test()` holds (checked on every message), or rejects after `timeoutMs`. */
  until(test: () => boolean, timeoutMs = 3000, what = 'a condition'): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!test()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`live feed: timed out waiting for ${what}; got ${JSON.stringify(this.messages.map((m) => m.type))}`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  close(): Promise<number> {
    this.ws.close(1000, 'test done');
    return this.closed;
  }
}

/** Signs `user` in with the password form; reads the session's CSRF token from the factors page. */
export function signInViewer(port: number, user: string, password: string): Promise<ViewerAgent> {
  return signInAgent(new ViewerAgent(port, user), password);
}

export { SoftAuthenticator };
