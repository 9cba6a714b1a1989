/**
 * The loopback redirect of RFC 8252 §7.3: a one-shot HTTP listener on 127.0.0.1 (random port) that
 * waits for the browser to come back to `/callback` with `code` and `state` (or `error`), checks the
 * `state`, answers with a small "you can close this tab" page and closes. Also PKCE (RFC 7636 S256).
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { listenOn } from './listen.js';

/** A PKCE verifier (43 base64url characters: 256 random bits) and its S256 challenge. */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier, 'ascii').digest('base64url') };
}

/** A random `state` (128 bits, base64url). */
export function newState(): string {
  return randomBytes(16).toString('base64url');
}

/** What came back to the callback. */
export type CallbackResult = { readonly kind: 'code'; readonly code: string } | { readonly kind: 'error'; readonly error: string; readonly description: string | undefined };

/** A listening callback server. */
export interface LoopbackServer {
  /** `http://127.0.0.1:<port>/callback` */
  readonly redirectUri: string;
  /** Resolves with the first callback that carries the right state; rejects after the timeout. */
  readonly result: Promise<CallbackResult>;
  close(): void;
}

const PAGE_STYLE = 'body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2328}h1{font-size:1.4rem}';

function page(title: string, text: string): string {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${PAGE_STYLE}</style></head><body><h1>${esc(title)}</h1><p>${esc(text)}</p></body></html>`;
}

/**
 * Listens on 127.0.0.1 (random port) for the redirect that carries `state`. Rejects (before
 * resolving the server) when it cannot listen.
 */
export async function startLoopback(state: string, timeoutMs: number): Promise<LoopbackServer> {
  let settle: ((r: CallbackResult) => void) | undefined;
  let fail: ((e: Error) => void) | undefined;
  const result = new Promise<CallbackResult>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  // A caller that stops waiting (Ctrl-C) must not leave an unhandled rejection behind.
  result.catch(() => undefined);
  let done = false;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const send = (status: number, title: string, text: string, then?: () => void) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'", 'referrer-policy': 'no-referrer', connection: 'close' });
      res.end(page(title, text), then);
    };
    if (req.method !== 'GET' || url.pathname !== '/callback') {
      send(404, 'Not found', 'This address only receives the sign-in redirect of portcullis login.');
      return;
    }
    if (done) {
      send(410, 'Already done', 'The command line has already received its answer. You can close this tab.');
      return;
    }
    if (url.searchParams.get('state') !== state) {
      // Not our browser's answer (a stale tab, or someone else's redirect): ignore it and keep waiting.
      send(400, 'Sign-in not accepted', 'This answer does not belong to the sign-in the command line is waiting for. Start again with portcullis login.');
      return;
    }
    const error = url.searchParams.get('error');
    const code = url.searchParams.get('code');
    done = true;
    if (error !== null) {
      const description = url.searchParams.get('error_description') ?? undefined;
      send(200, 'Sign-in cancelled', 'The command line was not signed in. You can close this tab.', () => settle?.({ kind: 'error', error, description }));
    } else if (code !== null && code !== '') {
      send(200, 'Signed in', 'The command line is signed in. You can close this tab and return to the terminal.', () => settle?.({ kind: 'code', code }));
    } else {
      send(400, 'Sign-in failed', 'The answer carried no code. Start again with portcullis login.', () => settle?.({ kind: 'error', error: 'invalid_request', description: 'no code in the redirect' }));
    }
  });
  const port = await listenOn(server, 0, '127.0.0.1');
  const timer = setTimeout(() => fail?.(new Error(`no answer from the browser within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
  const close = () => {
    clearTimeout(timer);
    server.close();
    server.closeAllConnections();
  };
  void result.then(close, close);
  return { redirectUri: `http://127.0.0.1:${port}/callback`, result, close };
}
