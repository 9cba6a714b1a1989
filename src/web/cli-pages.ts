/**
 * HTML for the command line's pages (pure): the authorize confirmation, the device-code entry and
 * confirmation, and the user's CLI tokens. No scripts; every value is escaped.
 */
import { escapeHtml, renderPage } from './error-response.js';

function when(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

function hidden(name: string, value: string): string {
  return `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`;
}

/** "Allow the command line on <name> to act as <user> until <time>?" with Allow / Deny. */
export function authorizePageHtml(m: { user: string; name: string; expiresAt: number; bound: boolean; csrf: string; fields: Readonly<Record<string, string>> }): string {
  const fields = Object.entries(m.fields)
    .map(([k, v]) => hidden(k, v))
    .join('');
  const label = m.name === '' ? 'the command line' : `the command line on <strong>${escapeHtml(m.name)}</strong>`;
  return renderPage(
    'Allow the command line?',
    `<h1>Allow the command line?</h1>
<p>Allow ${label} to act as <strong>${escapeHtml(m.user)}</strong> until ${escapeHtml(when(m.expiresAt))}?</p>
<p class="muted">${m.bound ? 'The token will be bound to a key held by that command line (a copied token is useless without it).' : 'The token will be a plain bearer token: anyone who copies it can use it until it expires.'} Only approve if you just ran <code>portcullis login</code> yourself.</p>
<form method="post" action="/.portcullis/cli/authorize">${hidden('csrf', m.csrf)}${fields}
<p><button type="submit" name="decision" value="approve">Allow</button> <button type="submit" name="decision" value="deny">Deny</button></p></form>`,
  );
}

/** A refusal that does not redirect anywhere (bad redirect_uri, bad parameters). */
export function cliErrorPageHtml(title: string, message: string): string {
  return renderPage(title, `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>`);
}

/** The device page: enter the code the command line printed. */
export function deviceEntryPageHtml(m: { csrf: string; userCode: string; error?: string }): string {
  const error = m.error === undefined ? '' : `<p role="alert" style="color:#b42318">${escapeHtml(m.error)}</p>`;
  return renderPage(
    'Connect a command line',
    `<h1>Connect a command line</h1>${error}<p>Enter the code shown by <code>portcullis login</code>.</p>
<form method="post" action="/.portcullis/cli/device">${hidden('csrf', m.csrf)}
<p><label>Code<br><input name="user_code" autocomplete="off" autocapitalize="characters" spellcheck="false" required value="${escapeHtml(m.userCode)}"></label></p>
<p><button type="submit">Continue</button></p></form>`,
  );
}

/** The device confirmation: which command line, as whom, until when. */
export function deviceConfirmPageHtml(m: { csrf: string; userCode: string; name: string; user: string; expiresAt: number; bound: boolean }): string {
  const label = m.name === '' ? 'the command line' : `the command line on <strong>${escapeHtml(m.name)}</strong>`;
  return renderPage(
    'Allow the command line?',
    `<h1>Allow the command line?</h1>
<p>Code <code>${escapeHtml(m.userCode)}</code>: allow ${label} to act as <strong>${escapeHtml(m.user)}</strong> until ${escapeHtml(when(m.expiresAt))}?</p>
<p class="muted">${m.bound ? 'The token will be bound to a key held by that command line.' : 'The token will be a plain bearer token.'} Only approve a code you started yourself.</p>
<form method="post" action="/.portcullis/cli/device">${hidden('csrf', m.csrf)}${hidden('user_code', m.userCode)}
<p><button type="submit" name="decision" value="approve">Allow</button> <button type="submit" name="decision" value="deny">Deny</button></p></form>`,
  );
}

/** After a device decision. */
export function deviceDonePageHtml(approved: boolean): string {
  return approved
    ? renderPage('Command line connected', '<h1>Command line connected</h1><p>You can close this page and return to your terminal.</p>')
    : renderPage('Request denied', '<h1>Request denied</h1><p>The command line was not given access.</p>');
}

/** One row of the tokens page. */
export interface TokenRow {
  readonly id: string;
  readonly name: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly bound: boolean;
  readonly mfa: string | undefined;
}

/** The user's CLI tokens, each with a revoke button. */
export function tokensPageHtml(m: { user: string; csrf: string; tokens: readonly TokenRow[]; notice?: string }): string {
  const notice = m.notice === undefined ? '' : `<p role="status">${escapeHtml(m.notice)}</p>`;
  const rows = m.tokens
    .map(
      (t) => `<tr><td>${escapeHtml(t.name === '' ? '(unnamed)' : t.name)}</td><td>${escapeHtml(when(t.createdAt))}</td><td>${escapeHtml(when(t.expiresAt))}</td><td>${t.bound ? 'key-bound' : 'bearer'}</td><td>${escapeHtml(t.mfa ?? '—')}</td>
<td><form method="post" action="/.portcullis/tokens/revoke">${hidden('csrf', m.csrf)}${hidden('id', t.id)}<button type="submit">Revoke</button></form></td></tr>`,
    )
    .join('\n');
  const table =
    m.tokens.length === 0
      ? '<p>No command-line tokens.</p>'
      : `<table><thead><tr><th>Name</th><th>Created</th><th>Expires</th><th>Kind</th><th>Second factor</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
  return renderPage('Command-line tokens', `<h1>Command-line tokens of ${escapeHtml(m.user)}</h1>${notice}${table}`);
}
