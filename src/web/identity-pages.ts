/**
 * HTML for the gateway's sign-in pages (pure). No scripts, no third-party assets; every value is
 * escaped.
 */
import { escapeHtml, renderPage } from './error-response.js';

/** A provider button on the login page. */
export interface ProviderChoice {
  readonly id: string;
  readonly type: 'local' | 'oidc';
}

/** What the login page shows. */
export interface LoginPageModel {
  readonly providers: readonly ProviderChoice[];
  readonly rd: string;
  readonly csrf: string;
  readonly error?: string;
  readonly username?: string;
}

/** The login page: a password form for local providers, a button per OIDC provider. */
export function loginPage(m: LoginPageModel): string {
  const rd = escapeHtml(m.rd);
  const error = m.error === undefined ? '' : `<p role="alert" style="color:#b42318">${escapeHtml(m.error)}</p>`;
  const local = m.providers.some((p) => p.type === 'local')
    ? `<form method="post" action="/.portcullis/login">
<input type="hidden" name="csrf" value="${escapeHtml(m.csrf)}"><input type="hidden" name="rd" value="${rd}">
<p><label>User name or e-mail<br><input name="username" autocomplete="username" required value="${escapeHtml(m.username ?? '')}"></label></p>
<p><label>Password<br><input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Sign in</button></p></form>`
    : '';
  const oidc = m.providers
    .filter((p) => p.type === 'oidc')
    .map((p) => `<p><a href="/.portcullis/login/oidc/${encodeURIComponent(p.id)}?rd=${encodeURIComponent(m.rd)}">Sign in with ${escapeHtml(p.id)}</a></p>`)
    .join('');
  const none = local === '' && oidc === '' ? '<p>No sign-in method is configured.</p>' : '';
  return renderPage('Sign in', `<h1>Sign in</h1>${error}${local}${oidc}${none}`);
}

/** The sign-out confirmation page (the state change is a POST with a CSRF token). */
export function logoutPage(csrf: string | undefined): string {
  if (csrf === undefined) return renderPage('Signed out', '<h1>Signed out</h1><p>You are not signed in.</p><p><a href="/.portcullis/login">Sign in</a></p>');
  return renderPage(
    'Sign out',
    `<h1>Sign out</h1><form method="post" action="/.portcullis/logout"><input type="hidden" name="csrf" value="${escapeHtml(csrf)}"><button type="submit">Sign out</button></form>`,
  );
}

/** After signing out. */
export function signedOutPage(): string {
  return renderPage('Signed out', '<h1>Signed out</h1><p>Your session has ended.</p><p><a href="/.portcullis/login">Sign in again</a></p>');
}
