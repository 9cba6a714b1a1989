/**
 * A browser-less user of a test gateway: signs in with the password form, keeps cookies and the
 * session's CSRF token, enrols a passkey (the software authenticator) and steps up with it through
 * the same JSON API the pages' script uses.
 */
import type { PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { send, type ClientResponse } from './http-client.js';
import { SoftAuthenticator } from './soft-authenticator.js';

function unescapeAttribute(v: string): string {
  return v.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** One browser profile on one gateway (Host `localhost:<port>`). */
export class GatewayAgent {
  readonly cookies = new Map<string, string>();
  csrf = '';
  private passkey: SoftAuthenticator | undefined;

  constructor(
    readonly port: number,
    readonly user: string,
  ) {}

  get origin(): string {
    return `http://localhost:${this.port}`;
  }

  async request(method: string, path: string, opts: { accept?: string; body?: string; contentType?: string; headers?: readonly string[] } = {}): Promise<ClientResponse> {
    const headers = ['Host', `localhost:${this.port}`, 'Accept', opts.accept ?? 'text/html'];
    if (this.cookies.size > 0) headers.push('Cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
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

  /** A same-origin form post, as the gateway's pages make it. */
  form(path: string, fields: Record<string, string>, accept = 'text/html'): Promise<ClientResponse> {
    return this.request('POST', path, { accept, body: new URLSearchParams(fields).toString(), contentType: 'application/x-www-form-urlencoded', headers: ['Origin', this.origin] });
  }

  /** A JSON post to the MFA API with the session's CSRF header. */
  api(path: string, body: unknown): Promise<ClientResponse> {
    return this.request('POST', `/.portcullis/mfa/${path}`, { accept: 'application/json', body: JSON.stringify(body), contentType: 'application/json', headers: ['X-Portcullis-CSRF', this.csrf, 'Origin', this.origin] });
  }

  /** Enrols a software passkey (first factor: allowed right after sign-in). */
  async enrolPasskey(): Promise<void> {
    this.passkey = SoftAuthenticator.create({ origin: this.origin, algorithm: 'ES256' });
    const options = await this.api('webauthn/register/options', {});
    if (options.status !== 200) throw new Error(`register options: ${options.status} ${options.text()}`);
    const res = await this.api('webauthn/register', { response: this.passkey.register((options.json() as { options: PublicKeyCredentialCreationOptionsJSON }).options), name: 'soft key' });
    if (res.status !== 200) throw new Error(`register: ${res.status} ${res.text()}`);
  }

  /** Steps up with the enrolled passkey; the session's second factor is then fresh. */
  async stepUp(): Promise<void> {
    if (this.passkey === undefined) throw new Error('no passkey enrolled');
    const options = await this.api('webauthn/authenticate/options', {});
    if (options.status !== 200) throw new Error(`authenticate options: ${options.status} ${options.text()}`);
    const res = await this.api('webauthn/authenticate', { response: this.passkey.authenticate((options.json() as { options: PublicKeyCredentialRequestOptionsJSON }).options) });
    if (res.status !== 200) throw new Error(`authenticate: ${res.status} ${res.text()}`);
  }
}

/** Signs `user` in with the password form and reads the session's CSRF token from the factors page. */
export async function signIn(port: number, user: string, password: string): Promise<GatewayAgent> {
  const a = new GatewayAgent(port, user);
  const login = await a.get('/.portcullis/login');
  const csrf = /<input type="hidden" name="csrf" value="([^"]*)"/.exec(login.text())?.[1];
  if (csrf === undefined) throw new Error('no csrf on the login page');
  const res = await a.form('/.portcullis/login', { username: user, password, csrf: unescapeAttribute(csrf), rd: '/' });
  if (res.status !== 303) throw new Error(`sign-in of ${user} failed: ${res.status} ${res.text().slice(0, 300)}`);
  const page = await a.get('/.portcullis/mfa/enroll');
  const m = /<main id="mfa"[^>]*\sdata-csrf="([^"]*)"/.exec(page.text());
  if (m?.[1] === undefined) throw new Error('no data-csrf on the factors page');
  a.csrf = unescapeAttribute(m[1]);
  return a;
}
