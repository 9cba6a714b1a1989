/**
 * A browser-less client for sign-in flows that cross hosts (OIDC, the session hand-off, several
 * gateways): requests are addressed by absolute URL (`http://app.localhost:8080/x`), sent to
 * 127.0.0.1 on the URL's port with `Host` = the URL's host, and cookies are kept per host name, as a
 * browser does (cookies are not isolated by port). An `https://` URL is sent as plain HTTP as well,
 * the way a TLS-terminating proxy in front of the gateway would pass it on. Redirects are never
 * followed, so every hop can be asserted.
 */
import { send, type ClientResponse } from './http-client.js';

/** Cookies by host name, then by cookie name (paths and expiry dates are ignored; Max-Age=0 deletes). */
export class CookieJar {
  private readonly hosts = new Map<string, Map<string, string>>();

  private forHost(hostname: string): Map<string, string> {
    let m = this.hosts.get(hostname);
    if (m === undefined) {
      m = new Map();
      this.hosts.set(hostname, m);
    }
    return m;
  }

  /** Takes the Set-Cookie lines of a response from `hostname`. */
  store(hostname: string, setCookie: readonly string[] | undefined): void {
    const jar = this.forHost(hostname);
    for (const line of setCookie ?? []) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/;\s*Max-Age=0\s*(;|$)/i.test(line) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
  }

  get(hostname: string, name: string): string | undefined {
    return this.hosts.get(hostname)?.get(name);
  }

  set(hostname: string, name: string, value: string): void {
    this.forHost(hostname).set(name, value);
  }

  delete(hostname: string, name: string): void {
    this.hosts.get(hostname)?.delete(name);
  }

  /** The Cookie header value for `hostname`, or undefined when it holds none. */
  header(hostname: string): string | undefined {
    const jar = this.hosts.get(hostname);
    if (jar === undefined || jar.size === 0) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

export interface BrowserRequestOptions {
  /** The Accept header; default `text/html` (a browser navigation). */
  accept?: string;
  /** More headers, flat `[name, value, …]`. */
  headers?: string[];
  /** Send the jar's cookies (default true). */
  cookies?: boolean;
}

/** A client with one cookie jar across every host and port. */
export class Browser {
  readonly jar = new CookieJar();

  private async request(method: string, url: string | URL, opts: BrowserRequestOptions, body?: { type: string; text: string; origin: string | null }): Promise<ClientResponse> {
    const u = new URL(url);
    // An https:// URL is sent as plain HTTP to its port too, as a TLS-terminating proxy in front would.
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.port === '') throw new Error(`Browser: expected an http(s):// URL with a port, got ${u.href}`);
    const headers = ['Host', u.host, 'Accept', opts.accept ?? 'text/html'];
    const cookie = opts.cookies === false ? undefined : this.jar.header(u.hostname);
    if (cookie !== undefined) headers.push('Cookie', cookie);
    if (body !== undefined) {
      headers.push('Content-Type', body.type, 'Content-Length', String(Buffer.byteLength(body.text)));
      if (body.origin !== null) headers.push('Origin', body.origin);
    }
    headers.push(...(opts.headers ?? []));
    const res = await send(Number(u.port), { method, path: `${u.pathname}${u.search}`, headers, ...(body === undefined ? {} : { body: body.text }) });
    this.jar.store(u.hostname, res.headers['set-cookie']);
    return res;
  }

  get(url: string | URL, opts: BrowserRequestOptions = {}): Promise<ClientResponse> {
    return this.request('GET', url, opts);
  }

  /** Posts an urlencoded form with the page's Origin (unless `origin` says otherwise; null sends none). */
  post(url: string | URL, form: Record<string, string>, opts: BrowserRequestOptions & { origin?: string | null } = {}): Promise<ClientResponse> {
    const origin = opts.origin === undefined ? new URL(url).origin : opts.origin;
    return this.request('POST', url, opts, { type: 'application/x-www-form-urlencoded', text: new URLSearchParams(form).toString(), origin });
  }
}

/** The value of a hidden input in an HTML page, e.g. `csrf`. */
export function hiddenField(res: ClientResponse, name: string): string {
  const m = new RegExp(`<input type="hidden" name="${name}" value="([^"]*)"`).exec(res.text());
  if (m?.[1] === undefined) throw new Error(`no hidden input ${name} in:\n${res.text()}`);
  return m[1].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** The Location header of a redirect, resolved against the request URL. */
export function locationOf(res: ClientResponse, base: string | URL): URL {
  const loc = res.headers.location;
  if (loc === undefined) throw new Error(`expected a redirect, got ${res.status}: ${res.text().slice(0, 300)}`);
  return new URL(loc, base);
}
