/**
 * HTML for the step-up and factor-management pages (pure). Every value is escaped; the only script is
 * the gateway's own `/.portcullis/assets/mfa.js` (plus the bundled WebAuthn helper), no third-party
 * assets. Forms work without JavaScript except the passkey ceremonies, which need the browser's
 * WebAuthn API anyway.
 */
import type { UserFactors } from '../mfa/factors.js';
import type { EnrollGate, TotpEnrollment } from '../mfa/service.js';
import { escapeHtml } from './error-response.js';

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}code,kbd{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}
.muted{color:#59636e;font-size:.875rem}.card{border:1px solid #d0d7de;border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}
button{font:inherit;padding:.45rem .9rem;border-radius:6px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f2328;border-color:#d0d7de}button.danger{background:#fff;color:#b42318;border-color:#b42318}
input{font:inherit;padding:.35rem .5rem;border:1px solid #d0d7de;border-radius:6px}
[role=alert]{color:#b42318}.ok{color:#1a7f37}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eaeef2}
ol.codes{font:1.05rem/1.8 ui-monospace,monospace;columns:2}.card h2{margin-top:0}svg{max-width:220px;height:auto}`;

/** A page of the MFA family: the gateway's style, and the scripts when the page runs a ceremony. */
function mfaPage(title: string, body: string, opts: { scripts: boolean; data?: Readonly<Record<string, string>> }): string {
  const data = Object.entries(opts.data ?? {})
    .map(([k, v]) => ` data-${k}="${escapeHtml(v)}"`)
    .join('');
  const scripts = opts.scripts ? '<script src="/.portcullis/assets/simplewebauthn.js"></script><script src="/.portcullis/assets/mfa.js"></script>' : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Portcullis</title><style>${STYLE}</style>
</head><body><main id="mfa"${data}>${body}</main>${scripts}</body></html>
`;
}

function alert(error: string | undefined): string {
  return error === undefined ? '' : `<p role="alert" id="error">${escapeHtml(error)}</p>`;
}

function hidden(name: string, value: string | undefined): string {
  return value === undefined ? '' : `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`;
}

function factorLabel(f: 'webauthn' | 'totp'): string {
  return f === 'webauthn' ? 'a passkey or security key' : 'a code from an authenticator app';
}

function when(ms: number | undefined): string {
  return ms === undefined ? 'never' : new Date(ms).toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

/** What the step-up page shows. */
export interface StepUpModel {
  readonly user: string;
  readonly csrf: string;
  /** Where to go afterwards (a same-origin path). */
  readonly rd: string;
  /** When confirming for an API token: its reference. */
  readonly token: string | undefined;
  /** Factors the destination accepts. */
  readonly allowed: readonly ('webauthn' | 'totp')[];
  readonly factors: UserFactors;
  /** The destination's max age, in seconds, when known. */
  readonly maxAgeSeconds: number | undefined;
  readonly error?: string;
}

/** The step-up page: confirm with a passkey, an authenticator code or a recovery code. */
export function stepUpPage(m: StepUpModel): string {
  const hasPasskey = m.factors.webauthn.length > 0;
  const hasTotp = m.factors.totp.length > 0;
  const usable = m.allowed.filter((f) => (f === 'webauthn' ? hasPasskey : hasTotp));
  const recoveryLeft = m.factors.recovery.filter((c) => c.usedAt === undefined).length;
  const enrollUrl = `/.portcullis/mfa/enroll?rd=${encodeURIComponent(m.rd)}`;
  const intro =
    m.token === undefined
      ? `<p>The page you asked for needs ${m.allowed.map(factorLabel).join(' or ')}${m.maxAgeSeconds === undefined ? '' : ` used in the last ${formatAge(m.maxAgeSeconds)}`}.</p>`
      : `<p>A command-line or API client is asking to act as <strong>${escapeHtml(m.user)}</strong> on routes that need a second factor. Confirm only if you started it.</p>`;
  const parts: string[] = [`<h1>Confirm it’s you</h1>`, `<p class="muted">Signed in as <strong>${escapeHtml(m.user)}</strong></p>`, intro, alert(m.error)];
  if (usable.includes('webauthn')) {
    parts.push(`<div class="card"><h2>Passkey</h2><p>Use the passkey or security key you registered.</p><p><button type="button" id="use-passkey">Use passkey</button></p><p class="muted" id="passkey-status" aria-live="polite"></p></div>`);
  }
  if (usable.includes('totp')) {
    parts.push(`<div class="card"><h2>Authenticator app</h2><form method="post" action="/.portcullis/mfa/totp">${hidden('csrf', m.csrf)}${hidden('rd', m.rd)}${hidden('token', m.token)}
<p><label>6-digit code<br><input name="code" id="totp-code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7" required autofocus></label></p>
<p><button type="submit">Verify code</button></p></form></div>`);
  }
  if (usable.length === 0 && (hasPasskey || hasTotp)) {
    const other = hasPasskey ? 'webauthn' : 'totp';
    parts.push(`<div class="card"><p>You have not set up ${m.allowed.map(factorLabel).join(' or ')} yet. Confirm with ${factorLabel(other)} first, then add one on the next page.</p>
<p><a href="/.portcullis/mfa?rd=${encodeURIComponent(enrollUrl)}&amp;factors=${other}">Continue</a></p></div>`);
  }
  if (!hasPasskey && !hasTotp) {
    parts.push(`<div class="card"><p>You have no second factor yet.</p><p><a href="${escapeHtml(enrollUrl)}">Set one up now</a></p></div>`);
  }
  if (recoveryLeft > 0) {
    parts.push(`<details class="card"><summary>Lost your device? Use a recovery code</summary>
<form method="post" action="/.portcullis/mfa/recovery">${hidden('csrf', m.csrf)}${hidden('rd', enrollUrl)}
<p class="muted">A recovery code lets you manage your factors (for example, register a new passkey); it does not open protected pages by itself. ${recoveryLeft} left.</p>
<p><label>Recovery code<br><input name="code" autocomplete="off" spellcheck="false" required></label></p><p><button type="submit" class="secondary">Use recovery code</button></p></form></details>`);
  }
  parts.push(`<p class="muted"><a href="${escapeHtml(enrollUrl)}">Manage your factors</a> · <a href="/.portcullis/logout">Sign out</a></p>`);
  return mfaPage('Confirm it’s you', parts.join('\n'), { scripts: usable.includes('webauthn'), data: { csrf: m.csrf, rd: m.rd, ...(m.token === undefined ? {} : { token: m.token }) } });
}

function formatAge(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} hour${seconds === 3600 ? '' : 's'}`;
  if (seconds % 60 === 0) return `${seconds / 60} minute${seconds === 60 ? '' : 's'}`;
  return `${seconds} seconds`;
}

/** What the factor-management page shows. */
export interface EnrollModel {
  readonly user: string;
  readonly csrf: string;
  readonly rd: string;
  readonly gate: EnrollGate;
  readonly factors: UserFactors;
  /** A TOTP set-up in progress (QR code and confirmation form). */
  readonly totp?: TotpEnrollment;
  readonly error?: string;
  readonly notice?: string;
}

/** The page where a user adds, lists and removes factors. */
export function enrollPage(m: EnrollModel): string {
  const open = m.gate === 'ok';
  const back = m.rd === '/' ? '' : `<p><a href="${escapeHtml(m.rd)}" id="continue">Continue to ${escapeHtml(m.rd.length > 60 ? `${m.rd.slice(0, 59)}…` : m.rd)}</a></p>`;
  const parts: string[] = [`<h1>Your second factors</h1>`, `<p class="muted">Signed in as <strong>${escapeHtml(m.user)}</strong></p>`, alert(m.error)];
  if (m.notice !== undefined) parts.push(`<p class="ok" role="status">${escapeHtml(m.notice)}</p>`);
  parts.push(back);
  if (m.gate === 'sign-in-too-old') {
    parts.push(`<div class="card"><p>For your safety, a first factor can be added only right after signing in.</p><form method="post" action="/.portcullis/logout">${hidden('csrf', m.csrf)}<button type="submit" class="secondary">Sign out, then sign in again</button></form></div>`);
  } else if (m.gate === 'step-up-required') {
    parts.push(`<div class="card"><p>To add or remove factors, confirm it’s you first.</p><p><a href="/.portcullis/mfa?rd=${encodeURIComponent(`/.portcullis/mfa/enroll?rd=${encodeURIComponent(m.rd)}`)}">Confirm it’s you</a></p></div>`);
  }
  const rows: string[] = [];
  for (const c of m.factors.webauthn) rows.push(factorRow(m, 'webauthn', c.id, c.name, 'Passkey', c.createdAt, c.lastUsedAt, open));
  for (const c of m.factors.totp) rows.push(factorRow(m, 'totp', c.id, c.name, 'Authenticator app', c.createdAt, c.lastUsedAt, open));
  parts.push(
    rows.length === 0
      ? '<p>No second factor yet.</p>'
      : `<table><thead><tr><th>Name</th><th>Kind</th><th>Added</th><th>Last used</th><th></th></tr></thead><tbody>${rows.join('')}</tbody></table>`,
  );
  if (open) {
    parts.push(`<div class="card"><h2>Add a passkey</h2><form id="add-passkey"><p><label>Name<br><input name="name" id="passkey-name" maxlength="64" placeholder="e.g. laptop, YubiKey"></label></p>
<p><button type="submit">Add passkey</button></p><p class="muted" id="passkey-status" aria-live="polite"></p></form><section id="recovery-codes" hidden></section></div>`);
    if (m.totp === undefined) {
      parts.push(`<div class="card"><h2>Add an authenticator app</h2><form method="post" action="/.portcullis/mfa/totp/enroll">${hidden('csrf', m.csrf)}${hidden('rd', m.rd)}<p><button type="submit" class="secondary">Set up an authenticator app</button></p></form></div>`);
    } else {
      parts.push(`<div class="card" id="totp-setup"><h2>Add an authenticator app</h2><p>Scan this code with your authenticator app, or enter the key by hand.</p>
<figure aria-label="QR code for the authenticator app">${m.totp.qrSvg}</figure>
<p>Key: <code id="totp-secret">${escapeHtml(m.totp.secret.replace(/(.{4})/g, '$1 ').trim())}</code></p>
<form method="post" action="/.portcullis/mfa/totp/confirm">${hidden('csrf', m.csrf)}${hidden('rd', m.rd)}
<p><label>Name<br><input name="name" maxlength="64" placeholder="e.g. phone"></label></p>
<p><label>The 6-digit code it shows<br><input name="code" id="totp-confirm-code" inputmode="numeric" autocomplete="one-time-code" maxlength="7" required></label></p>
<p><button type="submit">Confirm</button></p></form></div>`);
    }
    if (m.factors.webauthn.length + m.factors.totp.length > 0) {
      const left = m.factors.recovery.filter((c) => c.usedAt === undefined).length;
      parts.push(`<div class="card"><h2>Recovery codes</h2><p>${left} unused. Each works once, to get back in when you lose a device.</p>
<form method="post" action="/.portcullis/mfa/recovery/regenerate">${hidden('csrf', m.csrf)}${hidden('rd', m.rd)}<button type="submit" class="secondary">Make new recovery codes</button></form></div>`);
    }
  }
  parts.push(`<p class="muted"><a href="/.portcullis/logout">Sign out</a></p>`);
  return mfaPage('Your second factors', parts.join('\n'), { scripts: open, data: { csrf: m.csrf, rd: m.rd } });
}

function factorRow(m: EnrollModel, kind: 'webauthn' | 'totp', id: string, name: string, label: string, created: number, lastUsed: number | undefined, open: boolean): string {
  const remove = open
    ? `<form method="post" action="/.portcullis/mfa/remove">${hidden('csrf', m.csrf)}${hidden('rd', m.rd)}${hidden('kind', kind)}${hidden('id', id)}<button type="submit" class="danger" aria-label="Remove ${escapeHtml(name)}">Remove</button></form>`
    : '';
  return `<tr><td>${escapeHtml(name)}</td><td>${label}</td><td>${when(created)}</td><td>${when(lastUsed)}</td><td>${remove}</td></tr>`;
}

/** Recovery codes, shown once. */
export function recoveryCodesPage(codes: readonly string[], continueTo: string, intro: string): string {
  return mfaPage(
    'Recovery codes',
    `<h1>Save your recovery codes</h1><p>${escapeHtml(intro)}</p><p>Each code works once. Keep them somewhere safe, away from your devices: they are shown only now.</p>
<ol class="codes" id="codes">${codes.map((c) => `<li><code>${escapeHtml(c)}</code></li>`).join('')}</ol>
<p><a href="${escapeHtml(continueTo)}" id="continue">I saved them — continue</a></p>`,
    { scripts: false },
  );
}

/** After a step-up for an API token. */
export function tokenConfirmedPage(user: string): string {
  return mfaPage(
    'Confirmed',
    `<h1>Confirmed</h1><p class="ok">Your command-line or API client can go on as <strong>${escapeHtml(user)}</strong>. You can close this page and return to your terminal.</p>`,
    { scripts: false },
  );
}
