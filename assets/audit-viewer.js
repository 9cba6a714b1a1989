// Portcullis audit viewer: fills in /.portcullis/audit — history from the JSON API, the live tail over
// a WebSocket (/.portcullis/audit/live, resumed from the last seq seen after any reconnect), log
// health, a "verify now" button and SVG charts. Served from /.portcullis/assets/audit-viewer.js; no
// inline script, no third-party code.
(() => {
  'use strict';
  const root = document.getElementById('audit');
  if (root === null) return;
  const csrf = root.dataset.csrf ?? '';
  const instance = root.dataset.instance ?? '';
  const MAX_ROWS = 2000;
  const PAGE = 100;
  const SVG = 'http://www.w3.org/2000/svg';
  const FIELDS = ['user', 'route', 'decision', 'status', 'kind', 'since', 'until', 'q', 'instance'];

  const $ = (id) => document.getElementById(id);
  const tbody = $('records').querySelector('tbody');
  const state = {
    /** Rows shown, newest first: {seq, log, record, tr}. */
    rows: [],
    /** seqs shown (of the log being viewed). */
    seen: new Set(),
    /** The log the table shows. */
    log: instance,
    /** Exclusive upper bound of the next older page; null at the start of the log. */
    next: null,
    /** The newest seq of this gateway's log already accounted for (live resumes after it). */
    lastSeq: undefined,
    paused: false,
    held: [],
    ws: null,
    wsGeneration: 0,
    retryMs: 1000,
    retryTimer: undefined,
    stopped: false,
    arrivals: [],
    selected: null,
    lastHealth: null,
  };

  // ---- helpers ---------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs ?? {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== undefined && c !== null) e.append(c);
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs ?? {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function params() {
    const form = $('filters');
    const p = new URLSearchParams();
    for (const name of FIELDS) {
      const input = form.elements.namedItem(name);
      const v = input === null ? '' : String(input.value).trim();
      if (v !== '') p.set(name, v);
    }
    return p;
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min ago`;
  }

  function pad(n, w = 2) {
    return String(n).padStart(w, '0');
  }

  function clock(ts) {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return '—';
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function number(n) {
    return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
  }

  function showError(text) {
    const p = $('filter-error');
    p.textContent = text ?? '';
    p.hidden = text === undefined || text === '';
  }

  /** Fetches JSON from the viewer's API; a lapsed session or step-up goes through sign-in / step-up and back. */
  async function api(path, init) {
    const res = await fetch(path, { credentials: 'same-origin', ...init, headers: { accept: 'application/json', ...(init?.headers ?? {}) } });
    let body = {};
    try {
      body = await res.json();
    } catch {
      body = {};
    }
    const back = `${location.pathname}${location.search}`;
    if (res.status === 401 && body.error === 'GW_ERR_MFA_REQUIRED') {
      location.assign(`/.portcullis/mfa?rd=${encodeURIComponent(back)}`);
      throw new Error('A fresh step-up is needed.');
    }
    if (res.status === 401) {
      location.assign(`/.portcullis/login?rd=${encodeURIComponent(back)}`);
      throw new Error('Please sign in again.');
    }
    if (!res.ok) throw new Error(typeof body.message === 'string' ? body.message : `request failed (${res.status})`);
    return body;
  }

  // ---- the table -------------------------------------------------------------------------------

  function describe(r) {
    const req = r.request ?? {};
    const id = r.identity ?? {};
    const ev = r.event ?? {};
    const mfa = id.mfa ? `${id.mfa.factor} ${id.mfa.age_s < 60 ? `${id.mfa.age_s}s` : `${Math.floor(id.mfa.age_s / 60)}m`}` : '';
    const path = req.path !== undefined ? `${req.path}${req.query ? `?${req.query}` : ''}` : `${r.kind}${ev.action ? `: ${ev.action}` : ''}`;
    return {
      user: id.user ?? '—',
      route: r.route ?? '—',
      method: req.method ?? '',
      path,
      decision: r.decision ?? '',
      status: r.response?.status,
      duration: typeof r.duration_us === 'number' ? `${(r.duration_us / 1000).toFixed(1)} ms` : '',
      mfa,
    };
  }

  function rowFor(item, fresh) {
    const d = describe(item.record);
    const status = d.status === undefined ? '' : String(d.status);
    const tr = el(
      'tr',
      { 'data-seq': String(item.seq), class: fresh ? 'new' : undefined, tabindex: '0' },
      el('td', { text: clock(item.record.ts), title: item.record.ts }),
      el('td', { text: d.user }),
      el('td', { text: d.route }),
      el('td', { text: d.method }),
      el('td', { class: 'path', text: d.path, title: d.path }),
      el('td', {}, d.decision === '' ? null : el('span', { class: `chip d-${d.decision}`, text: d.decision.replace('_', ' ') })),
      el('td', { class: `num s-${status.charAt(0)}`, text: status }),
      el('td', { class: 'num', text: d.duration }),
      el('td', { text: d.mfa }),
    );
    tr.addEventListener('click', () => select(item));
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') select(item);
    });
    item.tr = tr;
    return tr;
  }

  function clearRows() {
    state.rows = [];
    state.seen = new Set();
    tbody.replaceChildren();
    closeDetail();
  }

  /** Adds records at the top (live, newest last in `items`). */
  function prepend(items) {
    const fresh = items.filter((i) => !state.seen.has(i.seq));
    if (fresh.length === 0) return;
    const frag = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i--) {
      const item = fresh[i];
      state.seen.add(item.seq);
      frag.append(rowFor(item, true));
    }
    tbody.prepend(frag);
    state.rows.unshift(...fresh.reverse());
    trim();
  }

  /** Adds older records at the bottom (history, newest first in `items`). */
  function append(items) {
    const frag = document.createDocumentFragment();
    for (const item of items) {
      if (state.seen.has(item.seq)) continue;
      state.seen.add(item.seq);
      state.rows.push(item);
      frag.append(rowFor(item, false));
    }
    tbody.append(frag);
  }

  function trim() {
    if (state.rows.length <= MAX_ROWS) return;
    const cut = state.rows.splice(MAX_ROWS);
    for (const item of cut) {
      item.tr?.remove();
      state.seen.delete(item.seq);
      if (state.selected === item) closeDetail();
    }
    const bottom = state.rows.at(-1);
    if (bottom !== undefined) state.next = bottom.seq;
    $('older').hidden = state.next === null;
  }

  function gapRow(g) {
    const count = g.dropped === null ? 'Records' : `${number(g.dropped)} records`;
    const tr = el('tr', { class: 'gap' }, el('td', { colspan: '9', text: `${count} between seq ${g.from} and ${g.to} are not shown: this page fell behind the live feed. Use the filters or “Older records” to see them.` }));
    tbody.prepend(tr);
  }

  // ---- detail pane -----------------------------------------------------------------------------

  function select(item) {
    if (state.selected?.tr) state.selected.tr.classList.remove('selected');
    state.selected = item;
    item.tr?.classList.add('selected');
    $('detail').hidden = false;
    $('layout').classList.add('with-detail');
    $('detail-seq').textContent = `#${item.seq}`;
    $('detail-log').textContent = `log ${item.record.log ?? state.log} · seq ${item.seq} · id ${item.record.id ?? '—'}`;
    $('detail-json').textContent = JSON.stringify(item.record, null, 2);
  }

  function closeDetail() {
    if (state.selected?.tr) state.selected.tr.classList.remove('selected');
    state.selected = null;
    $('detail').hidden = true;
    $('layout').classList.remove('with-detail');
  }

  $('detail-close').addEventListener('click', closeDetail);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeDetail();
  });

  // ---- history ---------------------------------------------------------------------------------

  async function loadHistory(reset) {
    const p = params();
    p.set('limit', String(PAGE));
    if (!reset && state.next !== null) p.set('before', String(state.next));
    $('older').disabled = true;
    $('older-state').textContent = 'Loading…';
    try {
      const page = await api(`/.portcullis/audit/records?${p}`);
      showError();
      if (reset) {
        clearRows();
        state.log = page.log;
        // Everything below the log's size at this moment is history; the live tail goes on after it.
        state.lastSeq = page.log === instance ? page.size - 1 : undefined;
      }
      append(page.records);
      state.next = page.next;
      $('older').hidden = page.next === null;
      $('older-state').textContent =
        page.records.length === 0 && page.next !== null
          ? `No match in the ${number(page.scanned)} records searched; “Older records” searches further back.`
          : page.next === null
            ? `Start of log ${page.log}.`
            : '';
      return true;
    } catch (err) {
      showError(err.message);
      $('older-state').textContent = '';
      return false;
    } finally {
      $('older').disabled = false;
    }
  }

  $('older').addEventListener('click', () => void loadHistory(false));

  // ---- live tail -------------------------------------------------------------------------------

  function setLive(text, on) {
    $('live-state').textContent = text;
    $('live-dot').className = `dot ${on === true ? 'on' : on === false ? 'off' : ''}`;
  }

  function counts() {
    const now = Date.now();
    state.arrivals = state.arrivals.filter((a) => now - a.at < 5000);
    const n = state.arrivals.reduce((s, a) => s + a.n, 0);
    $('live-counts').textContent = `${(n / 5).toFixed(1)} records/s · ${number(state.rows.length)} shown${state.paused ? ` · ${number(state.held.length)} held while paused` : ''}`;
  }
  setInterval(counts, 1000);

  function onRecords(list) {
    const items = [];
    for (const r of list) {
      if (state.lastSeq !== undefined && r.seq <= state.lastSeq) continue;
      state.lastSeq = r.seq;
      items.push({ seq: r.seq, record: r.record });
    }
    if (items.length === 0) return;
    state.arrivals.push({ at: Date.now(), n: items.length });
    if (state.paused) {
      state.held.push(...items);
      if (state.held.length > MAX_ROWS) state.held.splice(0, state.held.length - MAX_ROWS);
      return;
    }
    prepend(items);
  }

  function connect() {
    clearTimeout(state.retryTimer);
    const generation = ++state.wsGeneration;
    const p = params();
    if (state.lastSeq !== undefined) {
      p.set('after', String(state.lastSeq));
      p.set('log', instance);
    }
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/.portcullis/audit/live?${p}`);
    state.ws = ws;
    let greeted = false;
    setLive('Connecting…');
    ws.addEventListener('open', () => {
      if (generation !== state.wsGeneration) return;
      state.retryMs = 1000;
    });
    ws.addEventListener('message', (event) => {
      if (generation !== state.wsGeneration) return;
      let m;
      try {
        m = JSON.parse(event.data);
      } catch {
        return;
      }
      switch (m.type) {
        case 'hello':
          greeted = true;
          setLive(m.live ? `Live: following ${m.instance}` : `Live tail follows ${m.instance} only; showing history of ${state.log}`, m.live);
          break;
        case 'records':
          onRecords(m.records);
          break;
        case 'gap':
          gapRow(m);
          break;
        case 'health':
          renderHealth(m);
          break;
        case 'activity':
          renderCharts(m);
          break;
        default:
          break;
      }
    });
    ws.addEventListener('close', (event) => {
      if (generation !== state.wsGeneration || state.stopped) return;
      state.ws = null;
      const back = encodeURIComponent(`${location.pathname}${location.search}`);
      if (event.code === 4428) {
        setLive('Stopped: your step-up has expired.', false);
        showLink(`/.portcullis/mfa?rd=${back}`, 'Confirm it’s you to go on');
        return;
      }
      if (event.code === 4401) {
        setLive('Stopped: your session has ended.', false);
        showLink(`/.portcullis/login?rd=${back}`, 'Sign in again');
        return;
      }
      if (event.code === 4403) {
        setLive('Stopped: you are no longer allowed to view the audit log.', false);
        return;
      }
      if (!greeted && state.lastHealth === null) {
        api('/.portcullis/audit/health').then(renderHealth, () => undefined);
        api('/.portcullis/audit/activity').then(renderCharts, () => undefined);
      }
      const wait = state.retryMs;
      state.retryMs = Math.min(state.retryMs * 2, 15000);
      setLive(`Disconnected; reconnecting in ${Math.round(wait / 1000)} s (resuming after seq ${state.lastSeq ?? '—'})…`, false);
      state.retryTimer = setTimeout(connect, wait);
    });
  }

  function showLink(href, text) {
    const bar = $('live-bar');
    bar.querySelector('a.relink')?.remove();
    bar.append(el('a', { class: 'relink', href, text }));
  }

  function reconnect() {
    state.wsGeneration += 1;
    if (state.ws !== null) state.ws.close(1000, 'filters changed');
    state.ws = null;
    $('live-bar').querySelector('a.relink')?.remove();
    connect();
  }

  $('pause').addEventListener('click', () => {
    state.paused = !state.paused;
    $('pause').textContent = state.paused ? 'Resume' : 'Pause';
    if (!state.paused && state.held.length > 0) {
      const held = state.held;
      state.held = [];
      prepend(held);
    }
    counts();
  });

  // ---- filters ---------------------------------------------------------------------------------

  async function apply() {
    const p = params();
    history.replaceState(null, '', `${location.pathname}${p.size > 0 ? `?${p}` : ''}`);
    state.held = [];
    if (await loadHistory(true)) reconnect();
  }

  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    void apply();
  });
  $('clear').addEventListener('click', () => {
    for (const name of FIELDS) {
      const input = $('filters').elements.namedItem(name);
      if (input !== null) input.value = '';
    }
    void apply();
  });

  // ---- health and verification -------------------------------------------------------------------

  function renderHealth(h) {
    state.lastHealth = h;
    const last = h.verification?.last ?? null;
    const running = h.verification?.running ?? null;
    const body = $('health').querySelector('tbody');
    const rows = h.logs.map((l) => {
      const v = last?.logs?.find((x) => x.log === l.instance);
      const verdict =
        running !== null && (running.log === l.instance || running.log === null)
          ? el('span', { class: 'muted', text: `verifying… ${number(running.records)} records` })
          : v === undefined
            ? el('span', { class: 'muted', text: last === null ? 'not run yet' : last.result === 'error' ? 'could not run' : '—' })
            : el('span', { class: v.tampered > 0 ? 'bad' : 'ok', text: `${v.tampered > 0 ? `TAMPERED (${v.tampered})` : 'intact'} · ${ago(Math.floor((Date.now() - last.finishedAt) / 1000))}` });
      const cp = l.checkpoint;
      const old = cp !== null && cp.age_s > 120;
      return el(
        'tr',
        { 'data-instance': l.instance },
        el('td', {}, el('strong', { text: l.instance }), l.self ? el('span', { class: 'muted', text: ' (this gateway)' }) : null),
        el('td', { class: 'num', text: number(l.records) }),
        el('td', { class: 'num', text: number(l.tree_size) }),
        el('td', { class: old ? 'warn' : undefined, text: cp === null ? 'none yet' : `#${cp.number} · ${ago(cp.age_s)}` }),
        el('td', { class: `num ${l.spooled > 0 ? 'warn' : ''}`, text: number(l.spooled) }),
        el('td', { class: l.sink_healthy === false ? 'bad' : l.sink_healthy ? 'ok' : 'muted', text: l.sink_healthy === null ? '—' : l.sink_healthy ? 'ok' : 'unreachable' }),
        el('td', {}, verdict),
      );
    });
    body.replaceChildren(...rows);
    const logs = $('log-ids');
    logs.replaceChildren(...h.logs.map((l) => el('option', { value: l.instance })));
    if (running !== null) $('verify-state').textContent = `Verifying${running.log ? ` ${running.log}` : ''}: ${number(running.records)} records read…`;
  }

  function renderVerification(run) {
    const out = $('verify-result');
    const head =
      run.result === 'error'
        ? el('p', { class: 'bad', id: 'verify-summary', text: `Verification could not run: ${run.error ?? 'unknown error'}` })
        : el('p', { class: run.result === 'intact' ? 'ok' : 'bad', id: 'verify-summary', text: `${run.result === 'intact' ? 'Intact' : 'TAMPERED'} — ${run.summary} (${((run.finishedAt - run.startedAt) / 1000).toFixed(1)} s)` });
    const findings = run.logs.flatMap((l) => l.findings.map((f) => ({ ...f, log: l.log })));
    const more = run.logs.reduce((n, l) => n + l.unlisted, 0);
    const list = el(
      'ul',
      { id: 'findings' },
      ...findings.map((f) =>
        el('li', { class: f.severity === 'tampered' ? 'bad' : 'muted', text: `${f.severity === 'tampered' ? 'TAMPERED' : 'notice'} ${f.code} log=${f.log}${f.seq === undefined ? '' : ` seq=${f.seq}`}${f.checkpoint === undefined ? '' : ` checkpoint=${f.checkpoint}`}: ${f.message}` }),
      ),
    );
    out.replaceChildren(head, ...(findings.length > 0 ? [list] : []), ...(more > 0 ? [el('p', { class: 'muted', text: `${number(more)} more findings not listed (run portcullis audit verify).` })] : []));
  }

  $('verify').addEventListener('click', async () => {
    const button = $('verify');
    button.disabled = true;
    $('verify-state').textContent = 'Verifying every log…';
    try {
      const run = await api('/.portcullis/audit/verify', { method: 'POST', headers: { 'content-type': 'application/json', 'x-portcullis-csrf': csrf }, body: '{}' });
      $('verify-state').textContent = '';
      renderVerification(run);
      if (state.ws === null) renderHealth(await api('/.portcullis/audit/health'));
    } catch (err) {
      $('verify-state').textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });

  // ---- charts ----------------------------------------------------------------------------------

  function hhmm(iso) {
    const d = new Date(iso);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function renderMinutes(a) {
    const box = $('chart-minutes');
    const W = 600;
    const H = 160;
    const left = 36;
    const bottom = 18;
    const top = 8;
    const n = a.minutes.length || 60;
    const max = Math.max(1, ...a.minutes.map((m) => m.requests));
    const bw = (W - left - 4) / n;
    const y = (v) => H - bottom - ((H - bottom - top) * v) / max;
    const parts = [];
    if (a.covered_from !== null && a.from !== null && Date.parse(a.covered_from) > Date.parse(a.from)) {
      const i = Math.min(n, (Date.parse(a.covered_from) - Date.parse(a.from)) / 60000);
      parts.push(svg('rect', { x: left, y: top, width: Math.max(0, i * bw), height: H - bottom - top, fill: '#f6f8fa' }, undefined));
    }
    parts.push(svg('line', { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: '#d0d7de' }));
    parts.push(svg('text', { x: left - 4, y: top + 8, 'text-anchor': 'end' }, number(max)));
    parts.push(svg('text', { x: left - 4, y: H - bottom, 'text-anchor': 'end' }, '0'));
    a.minutes.forEach((m, i) => {
      const x = left + i * bw;
      if (m.requests > 0) {
        const r = svg('rect', { x: x + 0.5, y: y(m.requests), width: Math.max(1, bw - 1), height: H - bottom - y(m.requests), fill: '#54aeff', class: 'bar-requests' });
        r.append(svg('title', {}, `${hhmm(m.at)}: ${m.requests} requests, ${m.denials} denied, ${m.step_ups} step-ups`));
        parts.push(r);
      }
      if (m.denials > 0) parts.push(svg('rect', { x: x + 0.5, y: y(m.denials), width: Math.max(1, bw - 1), height: H - bottom - y(m.denials), fill: '#cf222e', class: 'bar-denials' }));
      if (i % 15 === 0) parts.push(svg('text', { x, y: H - 4 }, hhmm(m.at)));
    });
    parts.push(svg('rect', { x: left + 8, y: top, width: 8, height: 8, fill: '#54aeff' }));
    parts.push(svg('text', { x: left + 20, y: top + 8 }, 'requests'));
    parts.push(svg('rect', { x: left + 76, y: top, width: 8, height: 8, fill: '#cf222e' }));
    parts.push(svg('text', { x: left + 88, y: top + 8 }, 'denied'));
    box.replaceChildren(...parts);
  }

  function renderBars(id, rows, color, empty) {
    const box = $(id);
    const W = 300;
    const rowH = 18;
    const labelW = 110;
    const list = rows.slice(0, 8);
    if (list.length === 0) {
      box.replaceChildren(svg('text', { x: 4, y: 20 }, empty));
      return;
    }
    const max = Math.max(1, ...list.map((r) => r.count));
    const parts = [];
    list.forEach((r, i) => {
      const y0 = 4 + i * rowH;
      const w = ((W - labelW - 40) * r.count) / max;
      const name = r.label.length > 16 ? `${r.label.slice(0, 15)}…` : r.label;
      parts.push(svg('text', { x: labelW - 4, y: y0 + 12, 'text-anchor': 'end' }, name));
      const bar = svg('rect', { x: labelW, y: y0 + 2, width: Math.max(1, w), height: rowH - 5, fill: color });
      bar.append(svg('title', {}, `${r.label}: ${r.count}`));
      parts.push(bar);
      parts.push(svg('text', { x: labelW + w + 4, y: y0 + 12 }, number(r.count)));
    });
    box.replaceChildren(...parts);
  }

  function renderCharts(a) {
    if (a.minutes.length === 0) return;
    renderMinutes(a);
    renderBars('chart-stepups', a.step_ups_by_route.map((r) => ({ label: r.route, count: r.count })), '#d4a72c', 'no step-ups in the last hour');
    renderBars('chart-users', a.top_users.map((r) => ({ label: r.user, count: r.count })), '#8250df', 'no signed-in users in the last hour');
    const from = a.covered_from === null ? null : Date.parse(a.covered_from);
    $('charts-note').textContent = from !== null && from > Date.parse(a.from) ? `(counted since ${hhmm(a.covered_from)})` : '';
  }

  // ---- start -----------------------------------------------------------------------------------

  window.addEventListener('pagehide', () => {
    state.stopped = true;
    state.ws?.close(1000, 'page closed');
  });

  // Health and charts arrive over the live feed (at once, then every few seconds); only when the
  // feed cannot be opened are they asked for over HTTP.
  void (async () => {
    if (await loadHistory(true)) connect();
    else setLive('Not connected: fix the filters above.', false);
  })();
})();
