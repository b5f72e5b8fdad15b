// Flint's web console: a single page over Flint's own HTTP API (Lambda's
// API, /flint/v1/..., /metrics) — nothing here sees data the API does not
// serve. Pages: #/ functions, #/fn/NAME one function, #/queues async
// queue and dead-letter queues, #/cluster hosts and sandboxes, #/login.
'use strict';

const API = '/2015-03-31/functions';
const HOUR = 3600 * 1000;
const BINS = 60; // each plot has 60 bins over the chosen window
const WINDOWS = { '1h': 60, '15m': 15, '5m': 5 }; // minutes

// ---- helpers ---------------------------------------------------------------

const $ = (sel, el = document) => el.querySelector(sel);

// el builds an element: attrs (on* are listeners, class, dataset...) and
// children (strings become text nodes, so nothing is parsed as HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

const fmtMs = (v) => (v == null ? '–' : v >= 1000 ? (v / 1000).toFixed(2) + ' s' : v.toFixed(v < 10 ? 2 : 1) + ' ms');
const fmtTime = (t) => (t ? new Date(t).toLocaleTimeString() : '–');
const fmtAgo = (t) => {
  if (!t) return 'never';
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  return s < 60 ? Math.round(s) + 's ago' : s < 3600 ? Math.round(s / 60) + 'm ago' : Math.round(s / 3600) + 'h ago';
};
const fmtBytes = (b) => (b >= 1 << 30 ? (b / (1 << 30)).toFixed(1) + ' GiB' : b >= 1 << 20 ? (b / (1 << 20)).toFixed(1) + ' MiB' : b >= 1024 ? (b / 1024).toFixed(1) + ' KiB' : b + ' B');
const enc = encodeURIComponent;

function setStatus(msg, isError) {
  const f = $('#status');
  f.textContent = msg || '';
  f.className = isError ? 'error' : '';
}

// ---- API access (with optional SigV4) ------------------------------------------

const auth = {
  get creds() {
    try { return JSON.parse(sessionStorage.getItem('flint.creds') || 'null'); } catch (e) { return null; }
  },
  set creds(c) {
    if (c) sessionStorage.setItem('flint.creds', JSON.stringify(c)); else sessionStorage.removeItem('flint.creds');
  },
};

class ApiError extends Error {
  constructor(status, type, message) {
    super(message || type || 'HTTP ' + status);
    this.status = status;
    this.type = type;
  }
}

// request sends one API request, signed when the user signed in, and
// returns the Response. Errors in Lambda's shape become ApiError.
async function request(method, path, { body, headers, signal } = {}) {
  let hdrs = Object.assign({}, headers);
  const creds = auth.creds;
  if (creds) hdrs = await sigv4.sign(method, new URL(path, location.href).href, hdrs, body, creds);
  const r = await fetch(path, { method, headers: hdrs, body, signal });
  if (!r.ok) {
    let type = r.headers.get('X-Amzn-ErrorType') || '', msg = '';
    try {
      const j = JSON.parse(await r.text());
      msg = j.message || j.Message || '';
    } catch (e) { /* not JSON */ }
    if ((r.status === 401 || r.status === 403) && !location.hash.startsWith('#/login')) {
      setStatus('This server wants signed requests: sign in with an access key.', true);
    }
    throw new ApiError(r.status, type, (type ? type + ': ' : '') + (msg || r.statusText));
  }
  return r;
}

async function api(method, path, opts) {
  const r = await request(method, path, opts);
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

const get = (path) => api('GET', path);

// ---- invocation records -> per-minute series ----------------------------------

async function records(name, since) {
  const r = await get('/flint/v1/functions/' + enc(name) + '/invocations?limit=10000&since=' + since);
  return r.invocations || [];
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

// series bins records into BINS bins of binMs ending at end.
function series(recs, end, binMs) {
  const start = end - BINS * binMs;
  const bin = (t) => Math.floor((t - start) / binMs);
  const inv = new Array(BINS).fill(0), errs = new Array(BINS).fill(0), cold = new Array(BINS).fill(0);
  const durs = Array.from({ length: BINS }, () => []);
  const events = [];
  for (const r of recs) {
    const t = new Date(r.start).getTime();
    const b = bin(t);
    events.push([t, 1], [t + r.durationMs, -1]);
    if (b < 0 || b >= BINS) continue;
    inv[b]++;
    if (r.outcome !== 'success') errs[b]++;
    if (r.coldStart) cold[b]++;
    durs[b].push(r.durationMs);
  }
  // Concurrency: the most invocations running at once in each minute.
  const conc = new Array(BINS).fill(0);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cur = 0, last = -1;
  for (const [t, d] of events) {
    const b = Math.min(bin(t), BINS - 1);
    for (let i = Math.max(last + 1, 0); i < b && cur > 0; i++) conc[i] = Math.max(conc[i], cur);
    cur += d;
    if (b >= 0) conc[b] = Math.max(conc[b], cur);
    last = Math.max(last, b);
  }
  const p50 = durs.map((d) => pct(d.sort((a, b) => a - b), 50));
  const p99 = durs.map((d) => pct(d, 99));
  return { inv, errs, cold, p50, p99, conc };
}

// ---- pages -----------------------------------------------------------------

let cleanup = [];
let generation = 0; // of the page shown; a late answer for an old page is dropped
function onLeave(f) { cleanup.push(f); }
function every(ms, f) {
  const id = setInterval(f, ms);
  onLeave(() => clearInterval(id));
}
function pageAlive() {
  const g = generation;
  return () => g === generation;
}

async function pageFunctions(app) {
  app.append(el('h1', null, 'Functions'));
  const body = el('tbody');
  const card = el('div', { class: 'card' },
    el('table', { id: 'functions' },
      el('thead', null, el('tr', null, el('th', null, 'Name'), el('th', null, 'State'), el('th', null, 'Runtime'),
        el('th', { class: 'num' }, 'Memory'), el('th', { class: 'num' }, 'Invocations (1h)'), el('th', { class: 'num' }, 'Errors (1h)'),
        el('th', { class: 'num' }, 'p50'), el('th', null, 'Last invocation'))),
      body));
  app.append(card);
  const alive = pageAlive();
  const refresh = async () => {
    const list = await get(API + '/?MaxItems=50');
    const fns = list.Functions || [];
    const since = Date.now() - HOUR;
    const stats = await Promise.all(fns.map((f) => records(f.FunctionName, since).catch(() => [])));
    if (!alive()) return;
    body.textContent = '';
    if (!fns.length) body.append(el('tr', null, el('td', { colspan: 8, class: 'muted' }, 'No functions yet: deploy one with `flint deploy` or the AWS CLI.')));
    fns.forEach((f, i) => {
      const recs = stats[i];
      const errs = recs.filter((r) => r.outcome !== 'success').length;
      const durs = recs.map((r) => r.durationMs).sort((a, b) => a - b);
      const lastRec = recs[recs.length - 1];
      body.append(el('tr', { dataset: { fn: f.FunctionName } },
        el('td', null, el('a', { href: '#/fn/' + enc(f.FunctionName) }, f.FunctionName)),
        el('td', null, el('span', { class: 'badge ' + (f.State === 'Active' ? 'ok' : 'warn') }, f.State || 'Active')),
        el('td', null, f.Runtime),
        el('td', { class: 'num' }, f.MemorySize + ' MB'),
        el('td', { class: 'num', dataset: { k: 'invocations' } }, recs.length),
        el('td', { class: 'num' }, errs ? el('span', { class: 'badge err' }, errs) : '0'),
        el('td', { class: 'num' }, fmtMs(pct(durs, 50))),
        el('td', null, lastRec ? fmtAgo(lastRec.start) : 'never')));
    });
    setStatus('Updated ' + new Date().toLocaleTimeString());
  };
  await refresh();
  every(5000, () => refresh().catch((e) => setStatus(e.message, true)));
}

const PLOTS = [
  { id: 'plot-invocations', title: 'Invocations and errors', series: (s) => [
    { label: 'invocations', color: '#1c7ed6', values: s.inv, bars: true },
    { label: 'errors', color: '#c92a2a', values: s.errs, bars: true }] },
  { id: 'plot-duration', title: 'Duration p50 / p99 (ms)', series: (s) => [
    { label: 'p50', color: '#2b8a3e', values: s.p50 },
    { label: 'p99', color: '#e67700', values: s.p99 }] },
  { id: 'plot-cold', title: 'Cold starts', series: (s) => [
    { label: 'cold starts', color: '#7048e8', values: s.cold, bars: true }] },
  { id: 'plot-concurrency', title: 'Concurrency (most running at once)', series: (s) => [
    { label: 'concurrent executions', color: '#d9480f', values: s.conc }] },
];

const STEP_COLORS = { placement: '#adb5bd', codeFetch: '#74c0fc', sandboxCreate: '#7048e8', runtimeInit: '#f783ac' };

function stepsBar(steps) {
  if (!steps) return '';
  const total = Object.values(steps).reduce((a, b) => a + b, 0) || 1;
  const title = Object.entries(steps).map(([k, v]) => k + ' ' + fmtMs(v)).join(', ');
  return el('span', { class: 'steps', title },
    Object.entries(steps).map(([k, v]) => el('span', { style: 'width:' + (100 * v / total).toFixed(1) + '%;background:' + STEP_COLORS[k] })));
}

async function pageFunction(app, name) {
  const fn = await get(API + '/' + enc(name));
  const c = fn.Configuration;
  app.append(el('h1', null, el('a', { href: '#/' }, 'Functions'), ' / ', name));
  app.append(el('div', { class: 'grid' },
    el('div', { class: 'card' }, el('h2', null, 'Configuration'),
      el('dl', { class: 'kv' },
        el('dt', null, 'State'), el('dd', null, el('span', { class: 'badge ' + (c.State === 'Active' ? 'ok' : 'warn') }, c.State)),
        el('dt', null, 'Runtime'), el('dd', null, c.Runtime + (c.Handler ? ' · ' + c.Handler : '')),
        el('dt', null, 'Memory'), el('dd', null, c.MemorySize + ' MB'),
        el('dt', null, 'Timeout'), el('dd', null, c.Timeout + ' s'),
        el('dt', null, 'Code'), el('dd', { class: 'mono' }, fmtBytes(c.CodeSize) + ' · ' + (c.CodeSha256 || '').slice(0, 16) + '…'),
        el('dt', null, 'Last modified'), el('dd', null, c.LastModified),
        el('dt', null, 'Dead-letter queue'), el('dd', null, c.DeadLetterConfig && c.DeadLetterConfig.TargetArn ? c.DeadLetterConfig.TargetArn : '–'))),
    invokeCard(name),
    versionsCard(name)));

  let win = localStorage.getItem('flint.window') || '1h';
  if (!WINDOWS[win]) win = '1h';
  const picker = el('select', { id: 'window' }, Object.keys(WINDOWS).map((w) => el('option', { value: w, selected: w === win }, 'last ' + w)));
  app.append(el('div', { class: 'row', style: 'margin-top:16px' }, el('h2', { style: 'margin:0' }, 'Activity'), picker,
    el('span', { class: 'muted', id: 'window-note' }, '')));
  const plotsGrid = el('div', { class: 'grid plots' });
  for (const p of PLOTS) {
    plotsGrid.append(el('div', { class: 'card' }, el('h2', null, p.title),
      el('canvas', { class: 'plot', id: p.id }), el('div', { class: 'legend', id: p.id + '-legend' })));
  }
  app.append(plotsGrid);

  const recentBody = el('tbody');
  app.append(el('div', { class: 'card', style: 'margin-top:16px' }, el('h2', null, 'Recent invocations'),
    el('table', { id: 'recent' }, el('thead', null, el('tr', null,
      el('th', null, 'Start'), el('th', null, 'Request id'), el('th', null, 'Outcome'), el('th', { class: 'num' }, 'Duration'),
      el('th', { class: 'num' }, 'Billed'), el('th', { class: 'num' }, 'Memory'), el('th', null, 'Cold start'), el('th', null, 'Host'))),
    recentBody)));

  const tail = el('pre', { id: 'logtail' }, '');
  app.append(el('div', { class: 'card' }, el('h2', null, 'Live log ', el('span', { class: 'muted', id: 'logstate' }, '(connecting…)')), tail));
  followLogs(name, tail);

  const alive = pageAlive();
  const refresh = async () => {
    const now = Date.now();
    const span = WINDOWS[win] * 60000;
    const recs = await records(name, now - Math.max(span, HOUR));
    if (!alive()) return;
    const s = series(recs.filter((r) => new Date(r.start).getTime() >= now - span), now, span / BINS);
    $('#window-note').textContent = 'per ' + (span / BINS >= 60000 ? span / BINS / 60000 + ' min' : span / BINS / 1000 + ' s') +
      ', from the invocation records (GET /flint/v1/functions/' + name + '/invocations)';
    for (const p of PLOTS) {
      const sr = p.series(s);
      plot.draw($('#' + p.id), { bins: BINS, binSeconds: span / BINS / 1000, series: sr, unit: p.unit });
      plot.legend($('#' + p.id + '-legend'), sr);
    }
    recentBody.textContent = '';
    for (const r of recs.slice(-15).reverse()) {
      recentBody.append(el('tr', { dataset: { request: r.requestId } },
        el('td', null, fmtTime(r.start)),
        el('td', { class: 'mono' }, r.requestId),
        el('td', null, el('span', { class: 'badge ' + (r.outcome === 'success' ? 'ok' : 'err') }, r.outcome + (r.errorType ? ' · ' + r.errorType : ''))),
        el('td', { class: 'num' }, fmtMs(r.durationMs)),
        el('td', { class: 'num' }, r.billedDurationMs + ' ms'),
        el('td', { class: 'num' }, r.memoryUsedMB + ' / ' + r.memorySizeMB + ' MB'),
        el('td', null, r.coldStart ? el('span', null, el('span', { class: 'badge cold' }, 'init ' + fmtMs(r.initDurationMs)), ' ', stepsBar(r.steps)) : ''),
        el('td', { class: 'mono' }, (r.host || '') + (r.version && r.version !== '$LATEST' ? ' · v' + r.version : ''))));
    }
    setStatus('Updated ' + new Date().toLocaleTimeString() + ' · ' + recs.length + ' invocations in the last hour');
  };
  picker.addEventListener('change', () => {
    win = picker.value;
    localStorage.setItem('flint.window', win);
    refresh().catch((e) => setStatus(e.message, true));
  });
  await refresh();
  every(3000, () => refresh().catch((e) => setStatus(e.message, true)));
  const onResize = () => refresh().catch(() => {});
  window.addEventListener('resize', onResize);
  onLeave(() => window.removeEventListener('resize', onResize));
}

function invokeCard(name) {
  const payload = el('textarea', { id: 'payload' }, '{}');
  const qualifier = el('input', { id: 'qualifier', placeholder: '$LATEST or version or alias', size: 22 });
  const out = el('div', { id: 'invoke-result' });
  const button = el('button', { id: 'invoke' }, 'Invoke');
  button.addEventListener('click', async () => {
    button.disabled = true;
    out.textContent = '';
    try {
      const q = qualifier.value.trim() ? '?Qualifier=' + enc(qualifier.value.trim()) : '';
      const t0 = performance.now();
      const r = await request('POST', API + '/' + enc(name) + '/invocations' + q, {
        body: payload.value, headers: { 'X-Amz-Log-Type': 'Tail', 'Content-Type': 'application/json' } });
      const ms = performance.now() - t0;
      const fnErr = r.headers.get('X-Amz-Function-Error');
      const log = r.headers.get('X-Amz-Log-Result');
      const text = await r.text();
      out.append(el('div', { class: 'row' },
        el('span', { class: 'badge ' + (fnErr ? 'err' : 'ok'), id: 'invoke-status' }, fnErr ? 'Function error: ' + fnErr : 'Succeeded'),
        el('span', { class: 'muted' }, 'version ' + r.headers.get('X-Amz-Executed-Version') + ' · ' + fmtMs(ms) + ' round trip')),
        el('pre', { id: 'invoke-payload' }, text));
      if (log) out.append(el('pre', { id: 'invoke-log', style: 'margin-top:6px' }, decodeBase64(log)));
    } catch (e) {
      out.append(el('span', { class: 'badge err', id: 'invoke-status' }, e.message));
    } finally {
      button.disabled = false;
    }
  });
  return el('div', { class: 'card' }, el('h2', null, 'Invoke'), payload,
    el('div', { class: 'row' }, button, qualifier), out);
}

function decodeBase64(s) {
  const bin = atob(s);
  return new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)));
}

function versionsCard(name) {
  const body = el('tbody');
  const card = el('div', { class: 'card' }, el('h2', null, 'Versions and aliases'),
    el('table', { id: 'versions' }, el('thead', null, el('tr', null, el('th', null, 'Version / alias'), el('th', null, 'Points to'), el('th', null, 'Description'))), body));
  (async () => {
    const [vs, as] = await Promise.all([get(API + '/' + enc(name) + '/versions'), get(API + '/' + enc(name) + '/aliases')]);
    for (const v of vs.Versions || []) {
      body.append(el('tr', null, el('td', null, el('span', { class: 'badge' }, v.Version)), el('td', { class: 'muted' }, v.LastModified), el('td', null, v.Description || '')));
    }
    for (const a of as.Aliases || []) {
      const weights = (a.RoutingConfig && a.RoutingConfig.AdditionalVersionWeights) || {};
      const extra = Object.values(weights).reduce((x, y) => x + y, 0);
      const parts = [a.FunctionVersion + ' (' + Math.round((1 - extra) * 100) + '%)'];
      for (const [v, w] of Object.entries(weights)) parts.push(v + ' (' + Math.round(w * 100) + '%)');
      body.append(el('tr', { dataset: { alias: a.Name } }, el('td', null, el('span', { class: 'badge cold' }, a.Name)), el('td', null, parts.join(' + ')), el('td', null, a.Description || '')));
    }
  })().catch((e) => setStatus(e.message, true));
  return card;
}

// followLogs streams GET .../logs?follow=true into pre, keeping the last
// 400 lines, and reconnects if the stream ends while the page is open.
function followLogs(name, pre) {
  const ctl = new AbortController();
  onLeave(() => ctl.abort());
  const state = $('#logstate');
  let lines = [];
  const run = async () => {
    while (!ctl.signal.aborted) {
      try {
        const r = await request('GET', '/flint/v1/functions/' + enc(name) + '/logs?follow=true&tail=30', { signal: ctl.signal });
        state.textContent = '(following)';
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let partial = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          partial += dec.decode(value, { stream: true });
          const parts = partial.split('\n');
          partial = parts.pop();
          lines = lines.concat(parts).slice(-400);
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent = lines.join('\n');
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        state.textContent = '(disconnected: ' + e.message + ')';
      }
      await new Promise((res) => setTimeout(res, 2000));
    }
  };
  run();
}

// ---- queues ------------------------------------------------------------------

// metricsText reads a few series from /metrics (Prometheus text format).
async function metricsText() {
  const r = await request('GET', '/metrics');
  const out = {};
  for (const line of (await r.text()).split('\n')) {
    if (!line || line[0] === '#') continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

const queueName = (arn) => (arn && arn.startsWith('arn:aws:sqs:') ? arn.split(':')[5] : null);

async function pageQueues(app) {
  app.append(el('h1', null, 'Queues'));
  const asyncCard = el('div', { class: 'card', id: 'async-queue' }, el('h2', null, 'Asynchronous invocations'), el('p', { class: 'muted' }, 'Loading…'));
  app.append(asyncCard);
  const dlqs = el('div', { id: 'dlqs' });
  app.append(dlqs);
  const open = el('input', { placeholder: 'queue name', id: 'queue-open' });
  app.append(el('div', { class: 'row' }, open, el('button', { class: 'secondary', onclick: () => { if (open.value.trim()) showQueue(dlqs, open.value.trim(), []); } }, 'Open queue')));

  const alive = pageAlive();
  const refreshAsync = async () => {
    let m;
    try {
      m = await metricsText();
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 403) throw e;
      m = {}; // /metrics is for the root key when signatures are required
    }
    if (!alive()) return;
    asyncCard.replaceChildren(el('h2', null, 'Asynchronous invocations'), el('dl', { class: 'kv' },
      el('dt', null, 'Queued or running'), el('dd', { id: 'queue-depth' }, String(m['flint_async_queue_depth'] ?? '–')),
      el('dt', null, 'Oldest event'), el('dd', null, m['flint_async_oldest_event_age_seconds'] ? Math.round(m['flint_async_oldest_event_age_seconds']) + ' s old' : '–')));
  };
  // The queues worth showing: every function's dead-letter queue and
  // the Flint queues its destinations name.
  const list = await get(API + '/?MaxItems=50');
  const users = {};
  for (const f of list.Functions || []) {
    const add = (arn) => { const q = queueName(arn); if (q) (users[q] = users[q] || []).includes(f.FunctionName) || users[q].push(f.FunctionName); };
    if (f.DeadLetterConfig) add(f.DeadLetterConfig.TargetArn);
    try {
      const cfgs = await get('/2019-09-25/functions/' + enc(f.FunctionName) + '/event-invoke-config/list');
      for (const c of cfgs.FunctionEventInvokeConfigs || []) {
        const d = c.DestinationConfig || {};
        for (const k of ['OnFailure', 'OnSuccess']) if (d[k] && d[k].Destination) add(d[k].Destination);
      }
    } catch (e) { /* no configs */ }
  }
  if (!Object.keys(users).length) dlqs.append(el('p', { class: 'muted' }, 'No function names a Flint queue as its dead-letter queue or destination.'));
  for (const [q, fns] of Object.entries(users)) await showQueue(dlqs, q, fns);
  await refreshAsync();
  every(3000, () => refreshAsync().catch((e) => setStatus(e.message, true)));
}

// showQueue draws (or redraws) a queue's card; note is shown beside its
// buttons (the outcome of the last action).
async function showQueue(parent, name, fns, note) {
  const id = 'queue-' + name.replace(/[^A-Za-z0-9_-]/g, '_');
  let card = document.getElementById(id);
  if (!card) { card = el('div', { class: 'card', id }); parent.append(card); }
  const msgs = (await get('/flint/v1/queues/' + enc(name) + '/messages?max=20')).messages || [];
  const target = el('select', null, fns.concat(fns.length ? [] : ['']).map((f) => el('option', { value: f }, f || '(function name)')));
  const custom = el('input', { placeholder: 'function', size: 14 });
  const redrive = el('button', { class: 'redrive' }, 'Redrive all to ');
  const purge = el('button', { class: 'secondary' }, 'Purge');
  const result = el('span', { class: 'muted result' }, note || '');
  redrive.addEventListener('click', async () => {
    const fn = custom.value.trim() || target.value;
    if (!fn) { result.textContent = 'name a function'; return; }
    redrive.disabled = true;
    try {
      const r = await api('POST', '/flint/v1/queues/' + enc(name) + '/redrive?max=100&function=' + enc(fn));
      await showQueue(parent, name, fns, 'redriven ' + r.redriven + ' event(s) to ' + fn);
    } catch (e) { result.textContent = e.message; } finally { redrive.disabled = false; }
  });
  purge.addEventListener('click', async () => {
    if (!confirm('Delete every message of ' + name + '?')) return;
    await request('DELETE', '/flint/v1/queues/' + enc(name));
    await showQueue(parent, name, fns);
  });
  const rows = msgs.map((m) => el('tr', null,
    el('td', null, fmtTime(m.sentTimestamp)),
    el('td', { class: 'mono' }, (m.attributes && m.attributes.RequestID) || m.messageId),
    el('td', null, m.attributes && m.attributes.ErrorMessage ? el('span', { class: 'badge err' }, m.attributes.ErrorMessage) : ''),
    el('td', { class: 'mono' }, m.body.length > 200 ? m.body.slice(0, 200) + '…' : m.body)));
  card.replaceChildren(
    el('h2', null, 'Queue ', el('span', { class: 'mono' }, name), ' ', el('span', { class: 'badge', dataset: { count: msgs.length } }, msgs.length + (msgs.length === 20 ? '+' : '') + ' messages'),
      fns.length ? el('span', { class: 'muted' }, ' · used by ' + fns.join(', ')) : ''),
    msgs.length ? el('table', null, el('thead', null, el('tr', null, el('th', null, 'Sent'), el('th', null, 'Request id'), el('th', null, 'Error'), el('th', null, 'Body'))), el('tbody', null, rows))
      : el('p', { class: 'muted' }, 'Empty.'),
    el('div', { class: 'row' }, redrive, target, custom, purge, result));
}

// ---- cluster -------------------------------------------------------------------

function objectTable(rows, id) {
  const cols = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k) && typeof r[k] !== 'object') cols.push(k);
  return el('table', { id }, el('thead', null, el('tr', null, cols.map((c) => el('th', null, c)))),
    el('tbody', null, rows.map((r) => el('tr', null, cols.map((c) => el('td', null, r[c] == null ? '' : String(r[c])))))));
}

async function pageCluster(app) {
  app.append(el('h1', null, 'Cluster'));
  const body = el('div');
  app.append(body);
  const alive = pageAlive();
  const refresh = async () => {
    // GET /flint/v1/cluster: every node and the backbone (servers that
    // have it); /flint/v1/stats: this node's sandboxes and, without the
    // cluster view, its hosts.
    let cluster = null, note = null;
    try {
      cluster = await get('/flint/v1/cluster');
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) throw e;
      note = 'This server has no GET /flint/v1/cluster: hosts come from /flint/v1/stats.';
    }
    const stats = await get('/flint/v1/stats');
    if (!alive()) return;
    const hosts = cluster ? cluster.hosts || [] : stats.hosts || [];
    const kids = [];
    if (note) kids.push(el('div', { class: 'note', id: 'cluster-note' }, note));
    kids.push(el('div', { class: 'card' }, el('h2', null, 'Hosts'), hosts.length ? objectTable(hosts.map(hostRow), 'hosts') : el('p', { class: 'muted' }, 'No hosts.')));
    const pools = Object.entries((stats.sandboxes && stats.sandboxes.Pools) || {}).map(([key, p]) => Object.assign({ 'function (sandbox key)': key }, p));
    kids.push(el('div', { class: 'card' }, el('h2', null, 'Sandboxes (this node\'s worker manager)'),
      pools.length ? objectTable(pools, 'sandboxes') : el('p', { class: 'muted' }, 'No sandboxes.')));
    if (cluster && cluster.backbone) {
      const bb = cluster.backbone;
      kids.push(el('div', { class: 'card' }, el('h2', null, 'Backbone'), el('dl', { class: 'kv' },
        Object.entries(bb).flatMap(([k, v]) => [el('dt', null, k), el('dd', null, Array.isArray(v) ? v.join(', ') : String(v))]))));
    }
    kids.push(el('div', { class: 'card' }, el('h2', null, 'This node'), el('dl', { class: 'kv' },
      el('dt', null, 'Driver'), el('dd', null, stats.driver), el('dt', null, 'Runtimes'), el('dd', null, (stats.runtimes || []).join(', ')),
      el('dt', null, 'Goroutines'), el('dd', null, stats.goroutines), el('dt', null, 'Heap in use'), el('dd', null, fmtBytes(stats.heapInuseBytes)),
      el('dt', null, 'Invocations / cold starts'), el('dd', null, stats.sandboxes.Invocations + ' / ' + stats.sandboxes.ColdStarts))));
    body.replaceChildren(...kids);
    setStatus('Updated ' + new Date().toLocaleTimeString());
  };
  await refresh();
  every(3000, () => refresh().catch((e) => setStatus(e.message, true)));
}

function hostRow(h) {
  const r = {};
  for (const [k, v] of Object.entries(h)) {
    if (k === 'cachedCode') r['cached code'] = (v || []).length + ' packages';
    else if (k === 'LastSeen' || k === 'lastSeen' || k === 'lastHeartbeat') r['last seen'] = fmtAgo(v);
    else if (Array.isArray(v)) r[k] = v.join(', ');
    else r[k] = v;
  }
  return r;
}

// ---- sign in -------------------------------------------------------------------

function pageLogin(app) {
  const c = auth.creds || {};
  const ak = el('input', { id: 'ak', value: c.accessKeyId || '', size: 28, autocomplete: 'username' });
  const sk = el('input', { id: 'sk', type: 'password', value: c.secretAccessKey || '', size: 40, autocomplete: 'current-password' });
  const st = el('input', { id: 'st', value: c.sessionToken || '', size: 40 });
  const region = el('input', { id: 'region', value: c.region || 'us-east-1', size: 14 });
  const msg = el('p', { class: 'muted' });
  app.append(el('h1', null, 'Sign in'), el('div', { class: 'card', style: 'max-width:640px' },
    el('p', { class: 'muted' }, 'A server started with --auth dev (the default on loopback) needs nothing. With --auth required, ' +
      'the console signs every request with AWS Signature Version 4 in your browser, like the AWS CLI would. The keys stay in this tab (sessionStorage).'),
    el('dl', { class: 'kv' }, el('dt', null, 'Access key id'), el('dd', null, ak), el('dt', null, 'Secret access key'), el('dd', null, sk),
      el('dt', null, 'Session token'), el('dd', null, st), el('dt', null, 'Region'), el('dd', null, region)),
    el('div', { class: 'row' },
      el('button', { id: 'login-submit', onclick: async () => {
        auth.creds = { accessKeyId: ak.value.trim(), secretAccessKey: sk.value, sessionToken: st.value.trim(), region: region.value.trim() || 'us-east-1' };
        try { await get(API + '/?MaxItems=1'); location.hash = '#/'; } catch (e) { msg.textContent = 'The server refused these keys: ' + e.message; }
      } }, 'Sign in'),
      el('button', { class: 'secondary', onclick: () => { auth.creds = null; location.hash = '#/'; } }, 'Sign out')),
    msg));
}

// ---- router --------------------------------------------------------------------

async function route() {
  for (const f of cleanup) f();
  cleanup = [];
  generation++;
  setStatus('');
  const app = $('#app');
  app.textContent = '';
  const hash = location.hash || '#/';
  const creds = auth.creds;
  $('#who').textContent = creds ? 'signed in as ' + creds.accessKeyId : '';
  $('#login-link').textContent = creds ? 'Keys' : 'Sign in';
  let nav = 'functions';
  try {
    if (hash.startsWith('#/fn/')) await pageFunction(app, decodeURIComponent(hash.slice(5)));
    else if (hash === '#/queues') { nav = 'queues'; await pageQueues(app); }
    else if (hash === '#/cluster') { nav = 'cluster'; await pageCluster(app); }
    else if (hash === '#/login') { nav = 'login'; pageLogin(app); }
    else await pageFunctions(app);
  } catch (e) {
    app.append(el('div', { class: 'card' }, el('span', { class: 'badge err' }, 'Error'), ' ', e.message));
    setStatus(e.message, true);
  }
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.nav === nav);
  document.body.dataset.page = nav;
  document.body.dataset.ready = String(Date.now());
}

window.addEventListener('hashchange', route);
route();
