/**
 * A browser-less client for sign-in flows: remembers cookies (per host, honouring Max-Age=0 deletes),
 * sends `Accept: text/html` and an `Origin` on form posts like a browser does, and never follows
 * redirects by itself so tests can assert every hop.
 */
import { send, type ClientResponse } from './http-client.js';

export interface BrowserClient {
  /** Cookies currently held, `name=value` by name. */
  readonly cookies: Map<string, string>;
  get(path: string, extraHeaders?: string[]): Promise<ClientResponse>;
  /** Posts an urlencoded form, with the browser's Origin unless `origin` says otherwise (null = none). */
  post(path: string, form: Record<string, string>, opts?: { origin?: string | null; extraHeaders?: string[] }): Promise<ClientResponse>;
  /** The value of a hidden input in the last HTML page, e.g. `csrf`. */
  hidden(res: ClientResponse, name: string): string;
}

/** A client that talks to 127.0.0.1:`port` with `Host: host`. */
export function createBrowserClient(port: number, host: string): BrowserClient {
  const cookies = new Map<string, string>();
  const absorb = (res: ClientResponse) => {
    const set = res.headers['set-cookie'] ?? [];
    for (const line of set) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/;\s*Max-Age=0(;|$)/i.test(line) || value === '') cookies.delete(name);
      else cookies.set(name, value);
    }
    return res;
  };
  const cookieHeader = () => (cookies.size === 0 ? [] : ['Cookie', [...cookies].map(([k, v]) => `${k}=${v}`).join('; ')]);
  return {
    cookies,
    async get(path, extraHeaders = []) {
      return absorb(await send(port, { path, headers: ['Host', host, 'Accept', 'text/html', ...cookieHeader(), ...extraHeaders] }));
    },
    async post(path, form, opts = {}) {
      const body = new URLSearchParams(form).toString();
      const origin = opts.origin === undefined ? [`Origin`, `http://${host}`] : opts.origin === null ? [] : ['Origin', opts.origin];
      return absorb(
        await send(port, {
          method: 'POST',
          path,
          headers: ['Host', host, 'Accept', 'text/html', 'Content-Type', 'application/x-www-form-urlencoded', 'Content-Length', String(Buffer.byteLength(body)), ...origin, ...cookieHeader(), ...(opts.extraHeaders ?? [])],
          body,
        }),
      );
    },
    hidden(res, name) {
      const m = new RegExp(`<input type="hidden" name="${name}" value="([^"]*)"`).exec(res.text());
      if (m?.[1] === undefined) throw new Error(`no hidden input ${name} in:\n${res.text()}`);
      // As a browser would read the attribute.
      return m[1].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
    },
  };
}
