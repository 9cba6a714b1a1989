/**
 * HTML for `/.portcullis/connect/<id>` (pure): the database password just issued, a ready-to-paste
 * `psql` command, the separate fields for GUI clients, and a form that revokes the user's passwords
 * for the database. No scripts; every value is escaped.
 */
import { escapeHtml } from './error-response.js';

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:2rem}code{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}
pre{background:#0d1117;color:#e6edf3;padding:.9rem 1rem;border-radius:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font:.9rem/1.5 ui-monospace,monospace}
.muted{color:#59636e;font-size:.875rem}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eaeef2;vertical-align:top}
td code{word-break:break-all}button{font:inherit;padding:.45rem .9rem;border-radius:6px;border:1px solid #b42318;background:#fff;color:#b42318;cursor:pointer}
.ok{color:#1a7f37}`;

function connectPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Portcullis</title><style>${STYLE}</style>
</head><body><main id="connect">${body}</main></body></html>
`;
}

/** What the connect page shows. */
export interface ConnectPageModel {
  readonly database: string;
  readonly user: string;
  readonly password: string;
  readonly host: string;
  readonly port: number;
  readonly sslmode: 'require' | undefined;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
  readonly psql: string;
  /** The session's CSRF token, for the revoke form (absent for bearer clients). */
  readonly csrf: string | undefined;
  /** Whether the database asked for a second factor (and which one was used). */
  readonly mfa: string | undefined;
}

function utc(ms: number): string {
  return `${new Date(ms).toISOString().replace('T', ' ').slice(0, 19)} UTC`;
}

/** The page with a freshly issued password. */
export function connectPageHtml(m: ConnectPageModel): string {
  const fields: [string, string][] = [
    ['Host', m.host],
    ['Port', String(m.port)],
    ['Database', m.database],
    ['User', m.user],
    ['Password', m.password],
    ['SSL mode', m.sslmode ?? 'prefer'],
  ];
  const noTls = m.sslmode === undefined ? '<p class="muted">The gateway offers no TLS for this database: connect from the gateway’s own machine, or ask its operators for a certificate.</p>' : '';
  const rows = fields.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td><code id="field-${escapeHtml(k.toLowerCase().replace(' ', '-'))}">${escapeHtml(v)}</code></td></tr>`).join('');
  const revoke =
    m.csrf === undefined
      ? ''
      : `<h2>Revoke</h2><form method="post" action="/.portcullis/connect/${encodeURIComponent(m.database)}/revoke"><input type="hidden" name="csrf" value="${escapeHtml(m.csrf)}"><p>Revoking ends every password you hold for <code>${escapeHtml(m.database)}</code> and closes the connections made with them.</p><button type="submit">Revoke my passwords for ${escapeHtml(m.database)}</button></form>`;
  const mfa = m.mfa === undefined ? '' : ` Second factor: ${escapeHtml(m.mfa)}.`;
  return connectPage(
    `Connect to ${m.database}`,
    `<h1>Connect to <code>${escapeHtml(m.database)}</code></h1>
<p>A password for <strong>${escapeHtml(m.user)}</strong>, valid until <strong>${escapeHtml(utc(m.expiresAt))}</strong> or until you sign out.${mfa} Every statement you run is recorded with your name.</p>
<h2>psql</h2><pre id="psql">${escapeHtml(m.psql)}</pre>
<h2>Any other client</h2><table>${rows}</table>${noTls}
<p class="muted">The password is shown once; open this page again for a new one. Treat it like a password: it is one.</p>${revoke}`,
  );
}

/** After a revocation. */
export function revokedPageHtml(database: string, count: number, recheckSeconds: number): string {
  return connectPage(
    `Revoked · ${database}`,
    `<h1>Passwords revoked</h1><p class="ok">${count === 1 ? '1 password' : `${count} passwords`} for <code>${escapeHtml(database)}</code> revoked.</p><p>Connections made with ${count === 1 ? 'it' : 'them'} are closed within ${recheckSeconds} s.</p><p><a href="/.portcullis/connect/${encodeURIComponent(database)}">Get a new password</a></p>`,
  );
}
