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

/** One browser profile on one gateway (Host `localhost:<port>`): its cookies and its session's CSRF token. */
export class GatewayAgent {
  readonly cookies = new Map<string, string>();
  csrf = '';
  private passkey: SoftAuthenticator | undefined;

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

  async request(method: string, path: string, opts: { accept?: string; body?: string; contentType?: string; headers?: readonly string[] } = {}): Promise<ClientResponse> {
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

  /** A same-origin form post, as the gateway's pages make it. */
  form(path: string, fields: Record<string, string>, accept = 'text/html'): Promise<ClientResponse> {
    return this.request('POST', path, { accept, body: new URLSearchParams(fields).toString(), contentType: 'application/x-www-form-urlencoded', headers: ['Origin', this.origin] });
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

  /** Enrols a passkey (a fresh software one unless given); registering is itself a WebAuthn step-up. */
  async enrolPasskey(auth: SoftAuthenticator = SoftAuthenticator.create({ origin: this.origin, algorithm: 'ES256' })): Promise<void> {
    this.passkey = auth;
    const options = await this.post('/.portcullis/mfa/webauthn/register/options', {});
    if (options.status !== 200) throw new Error(`register options: ${options.status} ${options.text()}`);
    const res = await this.post('/.portcullis/mfa/webauthn/register', { response: auth.register((options.json() as { options: PublicKeyCredentialCreationOptionsJSON }).options), name: 'soft key' });
    if (res.status !== 200) throw new Error(`register: ${res.status} ${res.text()}`);
  }

  /** Steps up with a passkey (the one enrolled last unless given); the session's second factor is then fresh. */
  async stepUp(auth: SoftAuthenticator | undefined = this.passkey): Promise<void> {
    if (auth === undefined) throw new Error('no passkey enrolled');
    const options = await this.post('/.portcullis/mfa/webauthn/authenticate/options', {});
    if (options.status !== 200) throw new Error(`authenticate options: ${options.status} ${options.text()}`);
    const res = await this.post('/.portcullis/mfa/webauthn/authenticate', { response: auth.authenticate((options.json() as { options: PublicKeyCredentialRequestOptionsJSON }).options) });
    if (res.status !== 200) throw new Error(`authenticate: ${res.status} ${res.text()}`);
  }
}

/** Signs `agent`'s user in with the password form and reads the session's CSRF token from the factors page. */
export async function signInAgent<A extends GatewayAgent>(agent: A, password: string): Promise<A> {
  const login = await agent.get('/.portcullis/login');
  const csrf = /<input type="hidden" name="csrf" value="([^"]*)"/.exec(login.text())?.[1];
  if (csrf === undefined) throw new Error('no csrf on the login page');
  const res = await agent.form('/.portcullis/login', { username: agent.user, password, csrf: unescapeAttribute(csrf), rd: '/' });
  if (res.status !== 303) throw new Error(`sign-in of ${agent.user} failed: ${res.status} ${res.text().slice(0, 300)}`);
  const page = await agent.get('/.portcullis/mfa/enroll');
  const m = /<main id="mfa"[^>]*\sdata-csrf="([^"]*)"/.exec(page.text());
  if (m?.[1] === undefined) throw new Error('no data-csrf on the factors page');
  agent.csrf = unescapeAttribute(m[1]);
  return agent;
}

/** Signs `user` in (see {@link signInAgent}). */
export function signIn(port: number, user: string, password: string): Promise<GatewayAgent> {
  return signInAgent(new GatewayAgent(port, user), password);
}
