// replayd on-call dashboard: timeline, suggested replay windows, missing
// events, replays with live progress, compensation plans, one event's trace and the
// audit. Plain DOM and SVG; every byte is served by the daemon itself.
'use strict';

const $ = (id) => document.getElementById(id);
const num = (v) => Number(v || 0);
const ms = (ts) => (ts ? Date.parse(ts) : NaN);
let refreshes = 0;
let busy = false;
let lastTimeline = null;
let lastGaps = null;

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

function iso(t) {
  return new Date(t).toISOString().replace('.000Z', 'Z');
}

function clock(t, withSeconds) {
  const s = new Date(t).toISOString();
  return withSeconds ? s.slice(11, 19) : s.slice(11, 16);
}

function duration(seconds) {
  seconds = Math.round(seconds);
  if (seconds < 120) return seconds + ' s';
  if (seconds < 7200) return Math.round(seconds / 60) + ' min';
  if (seconds < 172800) return (seconds / 3600).toFixed(1) + ' h';
  return (seconds / 86400).toFixed(1) + ' d';
}

// A log younger than the page's default range would show as a few thin bars
// at the right edge: while the range is the default, it starts just before
// the log's first bucket instead, until the log is as old as the range.
let fittedFrom = null;  // ms; null = the range as entered
let defaultSpan = 0;    // ms, the default range's width

function defaultRange() {
  return $('from').value.trim() === $('from').defaultValue &&
         $('to').value.trim() === $('to').defaultValue;
}

// Moves the start of a default range up to the first bucket when the range
// opens with a quarter or more without events; true when it moved.
function fitRange(timeline) {
  if (!defaultRange()) return false;
  const from = ms(timeline.from);
  const to = ms(timeline.to);
  const starts = (timeline.buckets || []).map((b) => ms(b.start));
  if (!starts.length) return false;
  const first = Math.min(...starts);
  if (first - from < (to - from) / 4) return false;
  if (fittedFrom === null) defaultSpan = to - from;
  const margin = Math.max(num(timeline.bucket_seconds) * 1000, (to - first) / 10);
  fittedFrom = Math.floor((first - margin) / 1000) * 1000;
  return true;
}

function query() {
  const q = new URLSearchParams();
  for (const [id, name] of [['from', 'from'], ['to', 'to'], ['bucket', 'bucket_seconds'],
                            ['source', 'source']]) {
    const v = $(id).value.trim();
    if (v) q.set(name, v);
  }
  if (fittedFrom !== null && (!defaultRange() || Date.now() - fittedFrom >= defaultSpan)) {
    fittedFrom = null;
  }
  if (fittedFrom !== null) q.set('from', iso(fittedFrom));
  document.body.dataset.fitted = String(fittedFrom !== null);
  return q;
}

async function api(path, q) {
  const headers = {};
  const token = $('token').value.trim();
  if (token) headers.Authorization = 'Bearer ' + token;
  const res = await fetch(path + (q ? '?' + q.toString() : ''), { headers, cache: 'no-store' });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch (e) { body = { error: text }; }
  if (!res.ok) {
    const err = new Error(body.error || res.statusText);
    err.status = res.status;
    throw err;
  }
  return body;
}

function showError(message) {
  const el = $('error');
  el.hidden = !message;
  el.textContent = message || '';
}

// Sums the per-source rows of each bucket.
function byBucket(timeline) {
  const map = new Map();
  for (const b of timeline.buckets || []) {
    const start = ms(b.start);
    let e = map.get(start);
    if (!e) {
      e = { start, ok: 0, dup: 0, pend: 0, retry: 0, fail: 0, total: 0, missing: 0, sources: [] };
      map.set(start, e);
    }
    const c = b.counts || {};
    e.ok += num(c.succeeded); e.dup += num(c.already_processed); e.pend += num(c.pending);
    e.retry += num(c.retrying); e.fail += num(c.failed); e.total += num(c.total);
    e.missing += num(b.missing);
    e.sources.push(b.source);
  }
  return [...map.values()].sort((a, b) => a.start - b.start);
}

const SVG = 'http://www.w3.org/2000/svg';
const COLORS = { ok: '#3a9d5d', dup: '#2f7d8c', pend: '#e0a100', retry: '#e07b00', fail: '#d43c3c',
                 miss: '#7b3fb5', win: 'rgba(212, 60, 60, 0.13)' };

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function renderChart(timeline, gaps) {
  const host = $('chart');
  host.textContent = '';
  const width = Math.max(320, host.clientWidth || 900);
  const height = 220;
  const m = { l: 44, r: 10, t: 16, b: 26 };
  const from = ms(timeline.from);
  const to = ms(timeline.to);
  const bucketMs = num(timeline.bucket_seconds) * 1000;
  const buckets = byBucket(timeline);
  const maxTotal = Math.max(1, ...buckets.map((b) => b.total));
  const x = (t) => m.l + ((t - from) / (to - from)) * (width - m.l - m.r);
  const y = (v) => height - m.b - (v / maxTotal) * (height - m.t - m.b);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, height, role: 'img',
                            'aria-label': 'events per bucket by outcome' }, host);
  const clampX = (t) => Math.min(width - m.r, Math.max(m.l, x(t)));

  // Suggested windows behind the bars.
  for (const w of gaps.windows || []) {
    const x0 = clampX(ms(w.from));
    const x1 = clampX(ms(w.to));
    const band = svg('rect', { x: x0, y: m.t, width: Math.max(2, x1 - x0), height: height - m.t - m.b,
                               fill: COLORS.win, stroke: COLORS.fail, 'stroke-dasharray': '4 3',
                               'data-testid': 'window-band' }, root);
    svg('title', {}, band).textContent =
        `suggested window ${iso(ms(w.from))} – ${iso(ms(w.to))}`;
  }
  // Bars, stacked bottom-up: delivered, already processed, pending, retrying, failed.
  const barW = Math.max(1, x(from + bucketMs) - x(from) - 1);
  for (const b of buckets) {
    const g = svg('g', { 'data-start': iso(b.start) }, root);
    let base = 0;
    for (const [key, color] of [['ok', COLORS.ok], ['dup', COLORS.dup], ['pend', COLORS.pend],
                                ['retry', COLORS.retry], ['fail', COLORS.fail]]) {
      if (!b[key]) continue;
      const top = base + b[key];
      svg('rect', { x: clampX(b.start), y: y(top), width: barW, height: Math.max(1, y(base) - y(top)),
                    fill: color, class: 'bar-' + key }, g);
      base = top;
    }
    if (b.missing > 0) {
      const cx = clampX(b.start) + barW / 2;
      svg('path', { d: `M${cx - 5} ${m.t - 10} L${cx + 5} ${m.t - 10} L${cx} ${m.t - 2} Z`,
                    fill: COLORS.miss, class: 'missing-mark' }, g);
    }
    svg('title', {}, g).textContent =
        `${iso(b.start)}: ${b.total} events — delivered ${b.ok}, already processed ${b.dup}, ` +
        `pending ${b.pend}, retrying ${b.retry}, failed ${b.fail}, missing ${b.missing}`;
  }
  // Sequence gaps: a stripe over the time between the events either side.
  for (const s of gaps.sequence_gaps || []) {
    const x0 = clampX(ms(s.after_ingested_at));
    const x1 = clampX(ms(s.before_ingested_at));
    const r = svg('rect', { x: x0, y: height - m.b + 2, width: Math.max(3, x1 - x0), height: 5,
                            fill: COLORS.miss, 'data-testid': 'missing-band' }, root);
    svg('title', {}, r).textContent =
        `${s.source}: sequence ${s.first_missing}–${s.last_missing} missing`;
  }
  // Axes.
  svg('line', { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, stroke: '#99a' }, root);
  svg('text', { x: m.l - 6, y: m.t + 4, 'text-anchor': 'end' }, root).textContent = String(maxTotal);
  svg('text', { x: m.l - 6, y: height - m.b, 'text-anchor': 'end' }, root).textContent = '0';
  const ticks = Math.max(2, Math.floor((width - m.l - m.r) / 110));
  const withSeconds = (to - from) / ticks < 120000;
  for (let i = 0; i <= ticks; i++) {
    const t = from + ((to - from) * i) / ticks;
    svg('text', { x: x(t), y: height - 6, 'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle' },
        root).textContent = clock(t, withSeconds);
  }
  const tot = timeline.totals || {};
  $('summary').textContent =
      `${iso(from)} – ${iso(to)}, ${duration(num(timeline.bucket_seconds))} buckets: ` +
      `${num(tot.total)} events, ${num(tot.failed)} failed, ` +
      `${num(tot.pending) + num(tot.retrying)} pending, ${num(gaps.missing)} missing` +
      (fittedFrom !== null ? ' (the log is younger than the range: fitted to its events)' : '');
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    const area = document.createElement('textarea');
    area.value = text;
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}

function renderWindows(gaps) {
  const host = $('windows');
  const windows = gaps.windows || [];
  if (windows.length === 0) {
    host.innerHTML = '<p class="ok-text" data-testid="no-windows">No failed or pending events ' +
        'in this range: nothing to replay.</p>';
  } else {
    host.innerHTML = windows.map((w, i) => `
      <div class="window" data-testid="window" data-from="${esc(w.from)}" data-to="${esc(w.to)}">
        <div><b>Window ${i + 1}</b>: ${esc(iso(ms(w.from)))} → ${esc(iso(ms(w.to)))}
          (${duration((ms(w.to) - ms(w.from)) / 1000)}), sources ${esc((w.sources || []).join(', '))}</div>
        <div class="counts"><span class="fail-text">${num(w.failed)} failed</span>,
          ${num(w.pending)} pending, ${num(w.retrying)} retrying,
          <span class="miss-text">${num(w.missing)} missing</span></div>
        <div class="cmd"><code data-testid="command">${esc(w.dry_run_command)}</code>
          <button type="button" data-testid="copy" data-command="${esc(w.dry_run_command)}">Copy</button></div>
      </div>`).join('');
    for (const b of host.querySelectorAll('button[data-command]')) {
      b.addEventListener('click', async () => {
        const ok = await copyText(b.dataset.command);
        b.textContent = ok ? 'Copied' : 'Copy failed';
        document.body.dataset.copied = b.dataset.command;
        setTimeout(() => { b.textContent = 'Copy'; }, 2000);
      });
    }
  }
  const seq = gaps.sequence_gaps || [];
  $('seqgaps').innerHTML = seq.length === 0
    ? '<p class="muted" data-testid="no-sequence-gaps">No holes in upstream sequence numbers.</p>'
    : `<table><tr><th>source</th><th>missing sequence numbers</th><th>count</th><th>between</th></tr>
       ${seq.map((s) => `<tr data-testid="sequence-gap"><td>${esc(s.source)}</td>
         <td>${esc(s.first_missing)}–${esc(s.last_missing)}</td>
         <td>${num(s.last_missing) - num(s.first_missing) + 1}</td>
         <td>${esc(iso(ms(s.after_ingested_at)))} and ${esc(iso(ms(s.before_ingested_at)))}</td></tr>`).join('')}
       </table>
       <p class="muted">Missing events never reached replayd: a replay cannot resend them; ask the upstream.</p>`;
}

function stateName(s) {
  return String(s || '').replace(/^REPLAY_/, '');
}

function renderReplays(body) {
  const replays = body.replays || [];
  const host = $('replays');
  if (replays.length === 0) {
    host.innerHTML = '<p class="muted" data-testid="no-replays">No replays yet.</p>';
    return false;
  }
  let running = false;
  // Paused replays hold their window and send nothing until resumed: shown
  // above the table, with why.
  const paused = replays.filter((r) => stateName(r.state) === 'PAUSED');
  const banner = paused.length === 0 ? '' : `<div class="paused-banner" data-testid="paused-replays">
      ${paused.map((r) => `<p><strong>Replay ${esc(r.replay_id)} is PAUSED</strong>:
        ${esc(r.last_error || 'paused by an operator')}
        <br><span class="muted">replayctl resume ${esc(r.replay_id)} --reason TEXT</span></p>`).join('')}
    </div>`;
  host.innerHTML = banner + `<table><tr><th>replay</th><th>state</th><th>window</th><th>progress</th>
      <th>delivered / skipped / failed</th><th>rate</th><th>ETA</th></tr>
    ${replays.map((r) => {
      const st = stateName(r.state);
      if (st === 'RUNNING' || st === 'PENDING' || st === 'CANCELLING') running = true;
      const total = num(r.total);
      const done = num(r.processed);
      const pct = total > 0 ? Math.min(100, (100 * done) / total) : (st === 'COMPLETED' ? 100 : 0);
      const req = r.request || {};
      return `<tr data-testid="replay" data-state="${esc(st)}" data-replay-id="${esc(r.replay_id)}"${st === 'PAUSED' ? ' class="paused"' : ''}>
        <td title="${esc(r.replay_id)}">${esc(String(r.replay_id).slice(0, 12))}</td>
        <td class="state">${esc(st)}</td>
        <td>${esc(req.from ? iso(ms(req.from)) : '')} → ${esc(req.to ? iso(ms(req.to)) : '')}
          ${(req.sources || []).length ? '<br><span class="muted">' + esc(req.sources.join(', ')) + '</span>' : ''}</td>
        <td><div class="bar"><span style="width:${pct.toFixed(1)}%"></span></div>
          ${done} / ${total}</td>
        <td>${num(r.delivered)} / ${num(r.skipped)}${num(r.held_by_key) ? ' (' + num(r.held_by_key) + ' held by key)' : ''} / ${num(r.failed)}</td>
        <td>${num(r.current_rate).toFixed(1)}/s</td>
        <td>${st === 'RUNNING' ? duration(num(r.eta_seconds)) : ''}</td></tr>`;
    }).join('')}</table>`;
  return running;
}

function renderTrace(trace) {
  const s = trace.event || {};
  const e = s.event || {};
  let payload = e.payload || '';
  try { payload = JSON.stringify(JSON.parse(payload), null, 2); } catch (err) { /* as is */ }
  const attempts = trace.attempts || [];
  $('trace').innerHTML = `
    <table data-testid="trace-event">
      <tr><th>event</th><td>${esc(e.source)} / ${esc(e.event_id)}</td>
          <th>outcome</th><td data-testid="trace-outcome">${esc(s.outcome)}</td></tr>
      <tr><th>sequence</th><td>${esc(e.sequence ?? '')}</td><th>key</th><td>${esc(e.key)}</td></tr>
      <tr><th>ingested</th><td>${esc(s.ingested_at)}</td><th>processed</th><td>${esc(s.processed_at ?? '')}</td></tr>
      <tr><th>attempts</th><td>${num(s.attempts)}</td><th>record</th><td>${esc(s.target_record_id)}</td></tr>
      <tr><th>last error</th><td colspan="3">${esc(s.last_error)}</td></tr>
    </table>
    <pre class="payload">${esc(payload)}</pre>
    ${attempts.length === 0 ? '<p class="muted">No delivery attempts recorded.</p>' :
      `<table data-testid="trace-attempts"><tr><th>#</th><th>trigger</th><th>route</th><th>started</th>
        <th>ms</th><th>HTTP</th><th>outcome</th><th>record</th><th>error</th><th>worker</th></tr>
        ${attempts.map((a) => `<tr><td>${num(a.attempt)}</td><td>${esc(a.trigger)}</td><td>${esc(a.route)}</td>
          <td>${esc(a.started_at)}</td><td>${num(a.duration_ms).toFixed(1)}</td>
          <td>${num(a.http_status) || ''}</td><td>${esc(a.outcome)}</td><td>${esc(a.record_id)}</td>
          <td>${esc(a.error)}</td><td>${esc(a.worker)}</td></tr>`).join('')}</table>`}`;
}

async function refreshReplays() {
  try {
    renderReplays(await api('/api/replays'));
  } catch (e) {
    $('replays').innerHTML = `<p class="muted">Replays unavailable: ${esc(e.message)}</p>`;
  }
}

// The log's aggregates are re-read about four times a bucket (3 s to 60 s),
// so that a week-wide view does not scan a week every few seconds; replays
// are cheap and polled every 2 s for live progress.
let nextLogRefresh = 0;

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const load = (q) => Promise.all([api('/api/timeline', q), api('/api/gaps', q)]);
    let [timeline, gaps] = await load(query());
    // Each fit picks finer buckets, which may show more of the empty start.
    for (let i = 0; i < 3 && fitRange(timeline); i++) [timeline, gaps] = await load(query());
    lastTimeline = timeline;
    lastGaps = gaps;
    nextLogRefresh = Date.now() +
        Math.min(60000, Math.max(3000, num(timeline.bucket_seconds) * 250));
    renderChart(timeline, gaps);
    renderWindows(gaps);
    await refreshReplays();
    showError('');
  } catch (e) {
    showError(e.status === 401 || e.status === 403
      ? `${e.message} — enter a viewer token (top right)` : `Cannot load: ${e.message}`);
  } finally {
    busy = false;
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
  }
}

function init() {
  const params = new URLSearchParams(location.search);
  for (const [id, name] of [['from', 'from'], ['to', 'to'], ['bucket', 'bucket_seconds'],
                            ['source', 'source']]) {
    if (params.has(name)) $(id).value = params.get(name);
  }
  const saved = sessionStorage.getItem('replayd-token');
  if (saved) $('token').value = saved;
  $('token').addEventListener('change', () => sessionStorage.setItem('replayd-token', $('token').value));
  $('range').addEventListener('submit', (ev) => {
    ev.preventDefault();
    fittedFrom = null;
    history.replaceState(null, '', '?' + query().toString());
    refresh();
  });
  $('lookup').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams({ source: $('trace-source').value.trim(),
                                    event_id: $('trace-id').value.trim() });
    try {
      renderTrace(await api('/api/trace', q));
    } catch (e) {
      $('trace').innerHTML = `<p class="fail-text" data-testid="trace-error">${esc(e.message)}</p>`;
    }
  });
  window.addEventListener('resize', () => {
    if (lastTimeline && lastGaps) renderChart(lastTimeline, lastGaps);
  });
  setInterval(() => {
    if (!$('auto').checked) return;
    if (Date.now() >= nextLogRefresh) refresh(); else refreshReplays();
  }, 2000);
  refresh();
}

// Fills `host` with a table of `rows` under `headings` (one <tr> of each
// row from `row`), or with the `empty` paragraph when there are none.
function fillTable(host, rows, empty, headings, row) {
  host.innerHTML = rows.length === 0 ? empty
    : `<table><tr>${headings.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>
       ${rows.map(row).join('')}</table>`;
}

// The latest control actions, newest first; polled every 5 s.
function renderAudit(body) {
  fillTable($('audit'), body.entries || [],
    '<p class="muted" data-testid="no-audit">No control actions yet.</p>',
    ['at', 'who', 'action', 'replay', 'why', 'detail'],
    (a) => `<tr data-testid="audit-entry" data-action="${esc(a.action)}"
        data-replay-id="${esc(a.replay_id)}">
      <td>${esc(a.at ? iso(1000 * Math.floor(ms(a.at) / 1000)) : '')}</td><td>${esc(a.actor)}</td>
      <td>${esc(a.action)}</td><td title="${esc(a.replay_id)}">${esc(String(a.replay_id).slice(0, 12))}</td>
      <td>${esc(a.reason)}</td>
      <td class="muted">${a.detail_json && a.detail_json !== '{}' ? esc(a.detail_json) : ''}</td></tr>`);
}

async function refreshAudit() {
  try {
    renderAudit(await api('/api/audit', new URLSearchParams({ limit: '20' })));
  } catch (e) {
    $('audit').innerHTML = `<p class="muted">Audit unavailable: ${esc(e.message)}</p>`;
  }
}

// Compensation plans, newest first, with their counts by class; a click
// shows one plan's samples. Polled with the audit.
let shownPlan = '';

function classCounts(plan) {
  const by = {};
  for (const c of plan.counts || []) by[c.diff_class] = (by[c.diff_class] || 0) + num(c.count);
  if (num(plan.missing_upstream) > 0) by.missing_upstream = num(plan.missing_upstream);
  return Object.entries(by).map(([k, v]) => `${esc(k)} ${v}`).join(', ');
}

function renderCompensations(body) {
  const host = $('compensations');
  fillTable(host, body.plans || [],
    '<p class="muted" data-testid="no-compensations">No diffs yet.</p>',
    ['plan', 'state', 'window', 'entries by class', 'by'],
    (p) => `<tr data-testid="compensation-plan" data-plan-id="${esc(p.plan_id)}"
        data-state="${esc(p.state)}">
      <td><a href="#" data-plan="${esc(p.plan_id)}">${esc(p.plan_id)}</a></td>
      <td>${esc(p.expired ? 'expired' : p.state)}</td>
      <td>${esc(p.from)} – ${esc(p.to)}</td><td>${classCounts(p)}</td>
      <td>${esc(p.created_by)}</td></tr>`);
  for (const a of host.querySelectorAll('a[data-plan]')) {
    a.addEventListener('click', (ev) => {
      ev.preventDefault();
      shownPlan = a.dataset.plan;
      refreshCompensation();
    });
  }
}

function renderCompensation(plan) {
  const host = $('compensation');
  host.innerHTML = `<h3>Plan ${esc(plan.plan_id)}: ${esc(plan.state)}</h3>
    <p>${classCounts(plan)}</p><div></div>`;
  fillTable(host.lastElementChild, plan.samples || [], '<p class="muted">No samples.</p>',
    ['class', 'action', 'source', 'event', 'log', 'downstream record', 'detail'],
    (e) => `<tr data-testid="compensation-sample" data-class="${esc(e.diff_class)}">
      <td>${esc(e.diff_class)}</td><td>${esc(e.action)}</td><td>${esc(e.source)}</td>
      <td>${esc(e.event_id)}</td><td>${esc(String(e.log_outcome).toLowerCase())}</td>
      <td>${esc(e.record_id)}${e.record_version ? '@' + esc(e.record_version) : ''}</td>
      <td class="muted">${esc(e.detail)}</td></tr>`);
}

async function refreshCompensation() {
  if (!shownPlan) return;
  try {
    renderCompensation(await api('/api/compensation', new URLSearchParams({ plan: shownPlan })));
  } catch (e) {
    $('compensation').innerHTML = `<p class="muted">Plan unavailable: ${esc(e.message)}</p>`;
  }
}

async function refreshCompensations() {
  try {
    renderCompensations(await api('/api/compensations'));
    await refreshCompensation();
  } catch (e) {
    $('compensations').innerHTML = `<p class="muted">Compensation unavailable: ${esc(e.message)}</p>`;
  }
}

init();
setInterval(() => {
  if (!$('auto').checked) return;
  refreshAudit();
  refreshCompensations();
}, 5000);
refreshAudit();
refreshCompensations();
