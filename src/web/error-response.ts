/**
 * What the gateway answers by itself (SPEC §3): an HTML page for browsers, JSON for API and CLI
 * clients. Pure builders; the caller writes the result.
 */
import { ERRORS, type ErrorCode } from '../errors/index.js';

/** A complete response the gateway sends without an upstream. */
export interface GatewayResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** True when the client prefers an HTML page (a browser navigation). */
export function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && accept.includes('text/html');
}

const HTML_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element and attribute content. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

const TITLES: Readonly<Record<number, string>> = {
  400: 'Bad request',
  401: 'Sign-in required',
  403: 'Access denied',
  404: 'Not found',
  405: 'Method not allowed',
  408: 'Request timed out',
  413: 'Request too large',
  421: 'Misdirected request',
  431: 'Request headers too large',
  500: 'Gateway error',
  502: 'Upstream unavailable',
  503: 'Service unavailable',
  504: 'Upstream timed out',
};

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

/** Renders the gateway's own minimal HTML page (no scripts, no third-party assets). */
export function renderPage(title: string, bodyHtml: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Portcullis</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.5rem}code{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}.muted{color:#59636e;font-size:.875rem}</style>
</head><body>${bodyHtml}</body></html>
`;
}

/** Options for an error response. */
export interface ErrorResponseOptions {
  readonly html: boolean;
  readonly requestId: string;
  /** Overrides the catalog's message (shown only for codes marked `expose`). */
  readonly message?: string;
  /** The route the request matched, named on 403 pages (never the rule). */
  readonly routeId?: string;
  readonly extraHeaders?: Readonly<Record<string, string>>;
}

/** Builds the response for a catalogued error code. */
export function errorResponse(code: ErrorCode, opts: ErrorResponseOptions): GatewayResponse {
  const entry = ERRORS[code];
  const message = entry.expose ? (opts.message ?? entry.message) : entry.message;
  const status = entry.status;
  if (opts.html) {
    const title = TITLES[status] ?? 'Error';
    const route = opts.routeId === undefined ? '' : `<p>Route: <code>${escapeHtml(opts.routeId)}</code></p>`;
    const body = `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>${route}<p class="muted">Error <code>${code}</code> · request <code>${escapeHtml(opts.requestId)}</code></p>`;
    return {
      status,
      headers: { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'", ...opts.extraHeaders },
      body: renderPage(title, body),
    };
  }
  const json: Record<string, string> = { error: code, message, request_id: opts.requestId };
  if (opts.routeId !== undefined) json.route = opts.routeId;
  return {
    status,
    headers: { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', ...opts.extraHeaders },
    body: `${JSON.stringify(json)}\n`,
  };
}

/** A 302 to a same-origin path on the gateway (the caller guarantees `location` starts with a single `/`). */
export function redirectResponse(location: string): GatewayResponse {
  return { status: 302, headers: { ...SECURITY_HEADERS, location, 'content-type': 'text/plain; charset=utf-8' }, body: '' };
}
