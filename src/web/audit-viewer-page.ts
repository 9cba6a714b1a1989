/**
 * The audit viewer's page (pure): the skeleton that `/.portcullis/assets/audit-viewer.js` fills in —
 * log health, charts, filters, the records table and the detail pane. Every value is escaped; the
 * only script is the gateway's own, and the charts are SVG drawn by it (no third-party code).
 */
import { DECISIONS, RECORD_KINDS } from '../audit/record-filter.js';
import { escapeHtml } from './error-response.js';

/** What the page shows before its script runs. */
export interface AuditViewerModel {
  readonly user: string;
  readonly csrf: string;
  /** This gateway's instance id (its log is the one the live tail follows). */
  readonly instance: string;
  /** Route ids from the configuration (suggested in the route filter). */
  readonly routes: readonly string[];
  /** The filter fields as given in the page's URL. */
  readonly filters: Readonly<Record<string, string>>;
  /** The viewer's second-factor requirement, in seconds (shown; the live tail ends when it lapses). */
  readonly mfaMaxAge: number | undefined;
}

const STYLE = `:root{color-scheme:light}body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{display:flex;gap:1rem;align-items:baseline;padding:.75rem 1.25rem;background:#fff;border-bottom:1px solid #d0d7de}
header h1{font-size:1.2rem;margin:0}header .who{margin-left:auto;color:#59636e}main{padding:1rem 1.25rem;max-width:1600px;margin:0 auto}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:.75rem 1rem;margin-bottom:1rem}section h2{font-size:1rem;margin:0 0 .5rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eaeef2;white-space:nowrap}
th{font-weight:600;color:#59636e;font-size:.8rem;text-transform:uppercase;letter-spacing:.02em}
td.path{max-width:28rem;overflow:hidden;text-overflow:ellipsis}td.num{text-align:right;font-variant-numeric:tabular-nums}
button{font:inherit;padding:.3rem .8rem;border-radius:6px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f2328;border-color:#d0d7de}button:disabled{opacity:.6;cursor:default}
input,select{font:inherit;padding:.25rem .4rem;border:1px solid #d0d7de;border-radius:6px;background:#fff}
#filters{display:flex;flex-wrap:wrap;gap:.5rem .75rem;align-items:end}#filters label{display:flex;flex-direction:column;font-size:.8rem;color:#59636e}
.chip{display:inline-block;padding:0 .45rem;border-radius:999px;font-size:.8rem;font-weight:600;border:1px solid transparent}
.d-allow{background:#dafbe1;color:#116329}.d-deny{background:#ffebe9;color:#a40e26}.d-step_up{background:#fff8c5;color:#7d4e00}
.d-unauthenticated{background:#ddf4ff;color:#0550ae}.d-not_found{background:#eaeef2;color:#424a53}.d-error{background:#a40e26;color:#fff}
.s-2{color:#116329}.s-3{color:#0550ae}.s-4{color:#9a6700}.s-5{color:#a40e26;font-weight:600}
#records tbody tr{cursor:pointer}#records tbody tr:hover{background:#f6f8fa}#records tbody tr.selected{background:#ddf4ff}
#records tbody tr.new{animation:flash 1.2s ease-out}@keyframes flash{from{background:#fff8c5}to{background:transparent}}
tr.gap td{color:#9a6700;background:#fff8c5;text-align:center;cursor:default}
.layout{display:grid;grid-template-columns:minmax(0,1fr);gap:1rem}.table-wrap{overflow-x:auto}.layout.with-detail{grid-template-columns:minmax(0,1fr) 30rem}
#detail{position:sticky;top:1rem;align-self:start;max-height:calc(100vh - 2rem);overflow:auto}
#detail pre{font:12px/1.4 ui-monospace,monospace;white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:.5rem;border-radius:6px}
.muted{color:#59636e}.ok{color:#116329}.bad{color:#a40e26;font-weight:600}.warn{color:#9a6700}
.charts{display:grid;grid-template-columns:2fr 1fr 1fr;gap:1rem}figure{margin:0}figcaption{font-weight:600;margin-bottom:.25rem}
svg text{font:11px system-ui,sans-serif;fill:#59636e}#live-bar{display:flex;gap:1rem;align-items:center;margin:.5rem 0}
.dot{display:inline-block;width:.6rem;height:.6rem;border-radius:50%;background:#8c959f;margin-right:.3rem}.dot.on{background:#1a7f37}.dot.off{background:#cf222e}
#findings li{font:12px/1.5 ui-monospace,monospace}`;

function input(name: string, label: string, value: string | undefined, attrs = ''): string {
  return `<label>${escapeHtml(label)}<input name="${name}" id="f-${name}" value="${escapeHtml(value ?? '')}"${attrs}></label>`;
}

function select(name: string, label: string, options: readonly (readonly [string, string])[], value: string | undefined): string {
  const opts = options.map(([v, text]) => `<option value="${escapeHtml(v)}"${v === (value ?? '') ? ' selected' : ''}>${escapeHtml(text)}</option>`).join('');
  return `<label>${escapeHtml(label)}<select name="${name}" id="f-${name}">${opts}</select></label>`;
}

function age(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** The viewer page. */
export function auditViewerPage(m: AuditViewerModel): string {
  const f = m.filters;
  const routes = m.routes.map((r) => `<option value="${escapeHtml(r)}"></option>`).join('');
  const filters = [
    input('user', 'User', f.user, ' size="14" placeholder="name or e-mail"'),
    input('route', 'Route', f.route, ' size="12" list="route-ids"'),
    select('decision', 'Decision', [['', 'any'], ...DECISIONS.map((d) => [d, d] as const)], f.decision),
    select('status', 'Status', [['', 'any'], ['2xx', '2xx'], ['3xx', '3xx'], ['4xx', '4xx'], ['5xx', '5xx']], f.status),
    select('kind', 'Kind', [['', 'any'], ...RECORD_KINDS.map((k) => [k, k] as const)], f.kind),
    input('since', 'Since', f.since, ' size="16" placeholder="15m or 2026-11-26T10:00Z"'),
    input('until', 'Until', f.until, ' size="16" placeholder="RFC 3339 or 5m"'),
    input('q', 'Text', f.q, ' size="18" placeholder="anywhere in the record"'),
    input('instance', 'Log', f.instance, ` size="10" placeholder="${escapeHtml(m.instance)}" list="log-ids"`),
  ].join('');
  const stepUp = m.mfaMaxAge === undefined ? '' : ` · the live tail closes when your step-up is older than ${age(m.mfaMaxAge)}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit log · Portcullis</title><style>${STYLE}</style>
</head><body>
<header><h1>Audit log</h1><span class="muted">gateway <code>${escapeHtml(m.instance)}</code></span><span class="who">Signed in as <strong>${escapeHtml(m.user)}</strong>${escapeHtml(stepUp)} · <a href="/.portcullis/logout">Sign out</a></span></header>
<main id="audit" data-csrf="${escapeHtml(m.csrf)}" data-instance="${escapeHtml(m.instance)}">
<section id="health-panel" aria-labelledby="health-h"><h2 id="health-h">Log health</h2>
<table id="health"><thead><tr><th>Log (instance)</th><th class="num">Records</th><th class="num">Tree size</th><th>Newest checkpoint</th><th class="num">Waiting in spool</th><th>Sink</th><th>Last verification</th></tr></thead><tbody><tr><td colspan="7" class="muted">Loading…</td></tr></tbody></table>
<p><button type="button" id="verify">Verify now</button> <span id="verify-state" class="muted" role="status" aria-live="polite"></span></p>
<div id="verify-result"></div>
</section>
<section id="charts-panel" aria-labelledby="charts-h"><h2 id="charts-h">Activity on <code>${escapeHtml(m.instance)}</code>, last hour <span id="charts-note" class="muted"></span></h2>
<div class="charts">
<figure><figcaption>Requests and denials per minute</figcaption><svg id="chart-minutes" role="img" aria-label="Requests and denials per minute" viewBox="0 0 600 160" width="100%" height="160"></svg></figure>
<figure><figcaption>Step-ups per route</figcaption><svg id="chart-stepups" role="img" aria-label="Step-ups per route" viewBox="0 0 300 160" width="100%" height="160"></svg></figure>
<figure><figcaption>Top users</figcaption><svg id="chart-users" role="img" aria-label="Top users" viewBox="0 0 300 160" width="100%" height="160"></svg></figure>
</div></section>
<section aria-labelledby="records-h"><h2 id="records-h">Records <span class="muted">newest first</span></h2>
<form id="filters" method="get" action="/.portcullis/audit">${filters}<button type="submit">Apply</button><button type="button" class="secondary" id="clear">Clear</button></form>
<datalist id="route-ids">${routes}</datalist><datalist id="log-ids"></datalist>
<p id="filter-error" role="alert" class="bad" hidden></p>
<div id="live-bar"><span><span class="dot" id="live-dot"></span><span id="live-state">Connecting…</span></span><button type="button" class="secondary" id="pause">Pause</button><span id="live-counts" class="muted"></span></div>
<div class="layout" id="layout"><div class="table-wrap"><table id="records"><thead><tr><th>Time</th><th>User</th><th>Route</th><th>Method</th><th>Path</th><th>Decision</th><th class="num">Status</th><th class="num">Duration</th><th>MFA</th></tr></thead><tbody></tbody></table>
<p><button type="button" class="secondary" id="older" hidden>Older records</button> <span id="older-state" class="muted"></span></p></div>
<aside id="detail" hidden aria-labelledby="detail-h"><section><h2 id="detail-h">Record <span id="detail-seq"></span></h2><p class="muted" id="detail-log"></p>
<pre id="detail-json"></pre><p><button type="button" class="secondary" id="detail-close">Close</button></p></section></aside></div>
</section>
</main>
<script src="/.portcullis/assets/audit-viewer.js"></script>
</body></html>
`;
}
