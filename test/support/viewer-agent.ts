/**
 * A browser-less user of the audit viewer for tests: signs in with the password form, enrols a
 * passkey with the software authenticator (which is itself a WebAuthn step-up), calls the viewer's
 * JSON API and opens its live feed with a real WebSocket client, as the page's script does.
 */
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import WebSocket from 'ws';
import { send, type ClientResponse } from './http-client.js';
import { SoftAuthenticator } from './soft-authenticator.js';

function unescapeAttribute(v: string): string {
  return v.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** One browser profile on one gateway: its cookies and its session's CSRF token. */
export class ViewerAgent {
  readonly cookies = new Map<string, string>();
  csrf = '';

  constructor(
    readonly port: number,
    readonly user: string,
  ) {}

  get host(): string {
    return `localhost:${this.port}`;
  }

  get origin(): string {
    return `http://${this.host}`;
  }

  cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  async request(method: string, path: string, opts: { accept?: string; headers?: readonly string[]; body?: string; contentType?: string } = {}): Promise<ClientResponse> {
    const headers = ['Host', this.host, 'Accept', opts.accept ?? 'text/html'];
    if (this.cookies.size > 0) headers.push('Cookie', this.cookieHeader());
    if (opts.body !== undefined) headers.push('Content-Type', opts.contentType ?? 'application/octet-stream', 'Content-Length', String(Buffer.byteLength(opts.body)));
    headers.push(...(opts.headers ?? []));
    const res = await send(this.port, { method, path, headers, ...(opts.body === undefined ? {} : { body: opts.body }) });
    for (const line of res.headers['set-cookie'] ?? []) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/;\s*Max-Age=0(;|$)/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  get(path: string, accept = 'text/html'): Promise<ClientResponse> {
    return this.request('GET', path, { accept });
  }

  /** A GET of the viewer's JSON API, parsed (as `T`, unchecked, unless `parse` checks it). */
  async json<T>(path: string, parse: (body: unknown) => T = (body) => body as T): Promise<{ status: number; body: T; res: ClientResponse }> {
    const res = await this.get(path, 'application/json');
    return { status: res.status, body: parse(res.json()), res };
  }

  form(path: string, fields: Record<string, string>): Promise<ClientResponse> {
    return this.request('POST', path, { body: new URLSearchParams(fields).toString(), contentType: 'application/x-www-form-urlencoded', headers: ['Origin', this.origin] });
  }

  /** A JSON post as the pages' scripts make it (CSRF header, same Origin), each part removable. */
  post(path: string, body: unknown, opts: { csrf?: string | null; origin?: string | null } = {}): Promise<ClientResponse> {
    const csrf = opts.csrf === undefined ? this.csrf : opts.csrf;
    const origin = opts.origin === undefined ? this.origin : opts.origin;
    return this.request('POST', path, {
      accept: 'application/json',
      body: JSON.stringify(body),
      contentType: 'application/json',
      headers: [...(csrf === null ? [] : ['X-Portcullis-CSRF', csrf]), ...(origin === null ? [] : ['Origin', origin])],
    });
  }

  /** Signs out with the form (revokes the session server-side). */
  async signOut(): Promise<void> {
    const res = await this.form('/.portcullis/logout', { csrf: this.csrf });
    if (res.status !== 200) throw new Error(`sign-out answered ${res.status}`);
  }

  /**
   * Registers a passkey of the signed-in user (must be soon after sign-in); registering is itself a
   * WebAuthn step-up.
   */
  async enrolPasskey(auth: SoftAuthenticator): Promise<void> {
    const opts = await this.post('/.portcullis/mfa/webauthn/register/options', {});
    if (opts.status !== 200) throw new Error(`register options: ${opts.status} ${opts.text()}`);
    const { options } = opts.json() as { options: PublicKeyCredentialCreationOptionsJSON };
    const res = await this.post('/.portcullis/mfa/webauthn/register', { response: auth.register(options), name: 'soft key' });
    if (res.status !== 200) throw new Error(`register: ${res.status} ${res.text()}`);
  }

  /** A WebAuthn step-up with a passkey registered before. */
  async stepUpPasskey(auth: SoftAuthenticator): Promise<void> {
    const opts = await this.post('/.portcullis/mfa/webauthn/authenticate/options', {});
    if (opts.status !== 200) throw new Error(`authenticate options: ${opts.status} ${opts.text()}`);
    const { options } = opts.json() as { options: PublicKeyCredentialRequestOptionsJSON };
    const res = await this.post('/.portcullis/mfa/webauthn/authenticate', { response: auth.authenticate(options), rd: '/.portcullis/audit' });
    if (res.status !== 200) throw new Error(`authenticate: ${res.status} ${res.text()}`);
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
export async function signInViewer(port: number, user: string, password: string): Promise<ViewerAgent> {
  const a = new ViewerAgent(port, user);
  const login = await a.get('/.portcullis/login');
  const csrf = /<input type="hidden" name="csrf" value="([^"]*)"/.exec(login.text())?.[1];
  if (csrf === undefined) throw new Error('no csrf on the login page');
  const res = await a.form('/.portcullis/login', { username: user, password, csrf: unescapeAttribute(csrf), rd: '/' });
  if (res.status !== 303) throw new Error(`sign-in answered ${res.status}: ${res.text().slice(0, 200)}`);
  const page = await a.get('/.portcullis/mfa/enroll');
  const token = /<main id="mfa"[^>]*\sdata-csrf="([^"]*)"/.exec(page.text())?.[1];
  if (token === undefined) throw new Error('no data-csrf on the factors page');
  a.csrf = unescapeAttribute(token);
  return a;
}

export { SoftAuthenticator };
