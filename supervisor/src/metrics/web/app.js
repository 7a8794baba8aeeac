// The supervise dashboard. Everything a worker controls reaches the page as text
// (textContent), never as markup; the page's Content-Security-Policy runs this script only.
'use strict';

const $ = (sel) => document.querySelector(sel);
const HOUR = 3600;
const MAX_EVENTS = 200;
const MAX_LOG = 1000;

const st = {
  info: { actions: false },
  workers: [],
  supervisor: {},
  series: new Map(), // "prog/inst" -> { measure, limit, points: [[unix s, bytes]] }
  selected: null, // "prog/inst"
  events: [],
  stream: null,
  seen: 0, // status messages received
};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function keyOf(w) { return w.program + '/' + w.instance; }

function bytes(b) {
  if (b === null || b === undefined) return '-';
  const K = 1024;
  if (b >= K * K * K) return (b / (K * K * K)).toFixed(1) + 'G';
  if (b >= K * K) return (b / (K * K)).toFixed(1) + 'M';
  if (b >= K) return (b / K).toFixed(0) + 'K';
  return b.toFixed(0);
}

function duration(s) {
  if (s === null || s === undefined) return '-';
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
  return Math.floor(s / 86400) + 'd' + String(Math.floor(s % 86400 / 3600)).padStart(2, '0') + 'h';
}

function stateWord(w) { return w.ready && w.state === 'running' ? 'ready' : w.state; }

function memOf(w) {
  if (w.memory_measure === 'pss') return w.pss_bytes !== null && w.pss_bytes !== undefined ? w.pss_bytes : w.rss_bytes;
  return w.rss_bytes;
}

function findings(w) {
  const kinds = [];
  for (const k of (w.findings || []).slice().reverse()) if (!kinds.includes(k)) kinds.push(k);
  const by = w.findings_by_kind || {};
  for (const k of Object.keys(by)) if (!kinds.includes(k)) kinds.push(k);
  return kinds.map((k) => k + '\u00d7' + (by[k] || 1)).join(', ');
}

function restarts(w) {
  const by = Object.entries(w.restarts_by_reason || {}).filter(([, n]) => n > 0).map(([r, n]) => r + ' ' + n);
  return by.length ? w.restarts + ' (' + by.join(', ') + ')' : String(w.restarts);
}

// ---- the host header

function header() {
  const counts = {};
  for (const w of st.workers) { const s = stateWord(w); counts[s] = (counts[s] || 0) + 1; }
  $('#counts').textContent = st.workers.length + ' instances: ' +
    Object.entries(counts).map(([s, n]) => n + ' ' + s).join(', ');
  const h = st.supervisor.host;
  const host = $('#host');
  host.replaceChildren();
  if (!h) return;
  const chip = (t) => host.append(el('span', null, t));
  if (h.load) chip('load ' + h.load.map((x) => x.toFixed(2)).join(' '));
  if (h.mem_available_bytes !== null && h.mem_total_bytes) chip('mem avail ' + bytes(h.mem_available_bytes) + ' of ' + bytes(h.mem_total_bytes));
  if (h.swap_total_bytes === 0) chip('swap none');
  else if (h.swap_total_bytes) chip('swap used ' + bytes(h.swap_total_bytes - h.swap_free_bytes) + ' of ' + bytes(h.swap_total_bytes));
  const psi = [['mem', h.memory_pressure], ['cpu', h.cpu_pressure], ['io', h.io_pressure]]
    .filter(([, p]) => p).map(([n, p]) => n + ' ' + p.some_avg10.toFixed(1) + '/' + (p.full_avg10 === null || p.full_avg10 === undefined ? '-' : p.full_avg10.toFixed(1)));
  chip(psi.length ? 'psi some/full ' + psi.join(' ') : 'pressure: not in this kernel');
  const o = h.own || {};
  chip('supervise pid ' + o.pid + ' rss ' + bytes(o.rss_bytes) + (o.cpu_percent !== null && o.cpu_percent !== undefined ? ' cpu ' + o.cpu_percent.toFixed(1) + '%' : '') + ' ' + o.fds + ' fds');
}

// ---- charts

function addPoint(w, now) {
  const k = keyOf(w);
  let s = st.series.get(k);
  if (!s) { s = { points: [] }; st.series.set(k, s); }
  s.measure = w.memory_measure || 'rss';
  s.limit = w.memory_max_bytes;
  const m = memOf(w);
  if (m === null || m === undefined) return;
  const last = s.points[s.points.length - 1];
  if (last && now - last[0] < 5) last[1] = Math.max(last[1], m);
  else s.points.push([now, m]);
  while (s.points.length && s.points[0][0] < now - HOUR) s.points.shift();
}

// The least-squares slope (bytes/s) and ends of the points since the last gap.
function trend(points) {
  let start = 0;
  for (let i = 1; i < points.length; i++) if (points[i][0] - points[i - 1][0] > 25) start = i;
  const p = points.slice(start);
  if (p.length < 3) return null;
  const n = p.length;
  const mx = p.reduce((a, q) => a + q[0], 0) / n;
  const my = p.reduce((a, q) => a + q[1], 0) / n;
  let num = 0, den = 0;
  for (const q of p) { num += (q[0] - mx) * (q[1] - my); den += (q[0] - mx) ** 2; }
  if (den <= 0) return null;
  const slope = num / den;
  return { slope, a: [p[0][0], my + slope * (p[0][0] - mx)], b: [p[n - 1][0], my + slope * (p[n - 1][0] - mx)] };
}

function draw(canvas, s, opts) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  if (!s || !s.points.length) return;
  const css = getComputedStyle(document.documentElement);
  const now = Date.now() / 1000;
  // The hour, or less while less is known (never under five minutes, or one for a sparkline).
  const x0 = Math.max(now - HOUR, Math.min(s.points[0][0], now - (opts.big ? 300 : 60)));
  const top = Math.max(s.limit || 0, ...s.points.map((p) => p[1])) * 1.1 || 1;
  const pad = opts.big ? 44 : 0;
  const X = (t) => pad + (t - x0) / (now - x0) * (w - pad - 2);
  const Y = (v) => h - 2 - v / top * (h - 6);
  const line = (pts, color, dash) => {
    g.beginPath(); g.strokeStyle = color; g.setLineDash(dash || []); g.lineWidth = opts.big ? 1.5 : 1;
    pts.forEach((p, i) => { const x = X(p[0]), y = Y(p[1]); if (i === 0) g.moveTo(x, y); else g.lineTo(x, y); });
    g.stroke();
  };
  // A gap of more than two steps is a time without a process: the line breaks there.
  let run = [];
  for (const p of s.points) {
    if (run.length && p[0] - run[run.length - 1][0] > 25) { line(run, css.getPropertyValue('--accent')); run = []; }
    run.push(p);
  }
  line(run, css.getPropertyValue('--accent'));
  if (s.limit) line([[x0, s.limit], [now, s.limit]], css.getPropertyValue('--bad'), [4, 3]);
  if (opts.trend) {
    const t = trend(s.points);
    if (t) line([t.a, t.b], css.getPropertyValue('--warn'), [2, 2]);
  }
  if (opts.big) {
    g.fillStyle = css.getPropertyValue('--dim'); g.font = '11px monospace';
    g.fillText(bytes(top), 2, 12); g.fillText('0', 2, h - 4);
    g.fillText('-' + Math.round((now - x0) / 60) + 'm', pad, h - 4); g.fillText('now', w - 26, h - 4);
    g.fillText(s.measure + (s.limit ? ', limit ' + bytes(s.limit) : ''), pad + 40, 12);
  }
}

// ---- the table

function render() {
  header();
  const body = $('#workers tbody');
  const rows = [];
  let program = null;
  for (const w of st.workers) {
    const siblings = st.workers.filter((x) => x.program === w.program);
    if (w.program !== program && siblings.length > 1) {
      const tr = el('tr', 'program');
      const td = el('td', null, w.program + ' \u00d7' + siblings.length);
      td.colSpan = 11;
      tr.append(td);
      rows.push(tr);
    }
    program = w.program;
    rows.push(row(w));
  }
  body.replaceChildren(...rows);
  for (const c of body.querySelectorAll('canvas.spark')) draw(c, st.series.get(c.dataset.key), { big: false });
  detail();
}

function row(w) {
  const k = keyOf(w);
  const tr = el('tr', 'instance' + (k === st.selected ? ' selected' : ''));
  tr.dataset.key = k;
  tr.addEventListener('click', () => select(k));
  const td = (cls, text) => { const c = el('td', cls, text); tr.append(c); return c; };
  td('name', k);
  td('state ' + stateWord(w), stateWord(w));
  td('restarts num', restarts(w)).dataset.restarts = String(w.restarts);
  const mem = memOf(w);
  const m = td('mem', (mem === null || mem === undefined ? '-' : bytes(mem)) + (w.memory_measure === 'pss' ? ' pss' : '') +
    (w.memory_max_bytes ? ' / ' + bytes(w.memory_max_bytes) : ''));
  if (w.memory_max_bytes && mem) {
    const share = mem / w.memory_max_bytes;
    const bar = el('span', 'bar' + (share > 0.9 ? ' hot' : ''));
    const fill = el('i');
    fill.style.width = Math.min(100, share * 100).toFixed(0) + '%';
    bar.append(fill);
    m.append(bar);
  }
  const spark = el('canvas', 'spark');
  spark.dataset.key = k;
  td('chart').append(spark);
  td('cpu num', w.cpu_percent === null || w.cpu_percent === undefined ? '-' : w.cpu_percent.toFixed(1));
  td('num', w.threads === null || w.threads === undefined ? '-' : w.threads);
  td('num', w.fds === null || w.fds === undefined ? '-' : w.fds);
  td('num', w.net ? w.net.established : '-');
  td('num', w.net && w.net.sent_bytes_per_s !== null && w.net.sent_bytes_per_s !== undefined ? bytes(w.net.sent_bytes_per_s + (w.net.received_bytes_per_s || 0)) + '/s' : '-');
  td('findings', findings(w));
  return tr;
}

// ---- the selected instance

function select(k) {
  if (st.selected === k) return;
  st.selected = k;
  $('#log').replaceChildren();
  render();
  open();
}

function detail() {
  const w = st.workers.find((x) => keyOf(x) === st.selected);
  const box = $('#detail');
  box.hidden = !w;
  if (!w) return;
  $('#detail-title').textContent = keyOf(w) + '  ' + stateWord(w) + (w.pid ? '  pid ' + w.pid : '') + '  up ' + duration(w.uptime_s);
  const facts = ['restarts ' + restarts(w)];
  if (w.last_exit) facts.push('last exit ' + (w.last_exit.signal ? 'signal ' + w.last_exit.signal : 'code ' + w.last_exit.code) + ' at ' + w.last_exit.at);
  if (w.status_text) facts.push('status: ' + w.status_text);
  if (w.waiting_for) facts.push('waiting for ' + w.waiting_for);
  const f = findings(w);
  if (f) facts.push('findings ' + f);
  $('#detail-facts').textContent = facts.join('  \u00b7  ');
  $('#actions').hidden = !st.info.actions;
  const leak = (w.findings || []).includes('leak') || (w.findings_by_kind || {}).leak > 0;
  draw($('#chart'), st.series.get(keyOf(w)), { big: true, trend: leak });
  const members = $('#members tbody');
  members.replaceChildren(...(w.members || []).map((m) => {
    const tr = el('tr');
    tr.append(el('td', 'num', m.pid), el('td', 'num', bytes(m.rss_bytes)), el('td', 'num', '+' + bytes(m.growth_bytes)), el('td', null, m.command));
    return tr;
  }));
  if (!(w.members || []).length) members.append(el('tr', 'dim', (w.processes || (w.pid ? 1 : 0)) + ' process'));
  const n = w.net;
  $('#sockets').textContent = n
    ? (n.listen && n.listen.length ? 'listening ' + n.listen.join(' ') : n.listening + ' listening') + '; ' +
      n.established + ' established, ' + n.other + ' other, ' + n.udp + ' udp, ' + n.remotes + ' peers; out ' +
      bytes(n.sent_bytes_per_s || 0) + '/s in ' + bytes(n.received_bytes_per_s || 0) + '/s' +
      (n.rtt_ms !== null && n.rtt_ms !== undefined ? '; rtt ' + n.rtt_ms.toFixed(1) + 'ms (max ' + (n.rtt_max_ms || n.rtt_ms).toFixed(1) + 'ms)' : '')
    : 'none seen yet';
}

function logLine(l) {
  const box = $('#log');
  const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  const d = el('div', 'line' + (l.stream === 'stderr' ? ' err' : ''), l.text);
  box.append(d);
  while (box.childElementCount > MAX_LOG) box.firstElementChild.remove();
  if (stick) box.scrollTop = box.scrollHeight;
}

// ---- events

function eventItem(e) {
  const li = el('li');
  li.append(el('span', 't', (e.ts || '').slice(11, 19) + ' '), el('span', null, e.program + '/' + e.instance + ' '), el('span', 'k', e.event));
  const skip = new Set(['ts', 'event', 'program', 'instance', 'pid', 'command', 'report']);
  const rest = Object.entries(e).filter(([k, v]) => !skip.has(k) && v !== null && typeof v !== 'object')
    .map(([k, v]) => k === 'kind' || k === 'detail' || k === 'text' ? String(v) : k + '=' + v);
  if (rest.length) li.append(el('span', null, ' ' + rest.join(' ')));
  return li;
}

function addEvent(e) {
  st.events.push(e);
  if (st.events.length > MAX_EVENTS) st.events.shift();
  const list = $('#events');
  list.prepend(eventItem(e));
  while (list.childElementCount > MAX_EVENTS) list.lastElementChild.remove();
}

// ---- the live stream

function open() {
  if (st.stream) st.stream.close();
  const q = st.selected ? '?logs=' + encodeURIComponent(st.selected) : '';
  const es = new EventSource('/api/stream' + q);
  st.stream = es;
  const live = $('#live');
  es.onopen = () => { live.textContent = 'live'; live.className = 'live'; };
  es.onerror = () => { live.textContent = 'reconnecting'; live.className = 'live off'; };
  es.addEventListener('status', (m) => {
    const s = JSON.parse(m.data);
    st.workers = s.workers; st.supervisor = s.supervisor || {};
    const now = Date.now() / 1000;
    for (const w of st.workers) addPoint(w, now);
    st.seen++;
    document.body.dataset.updates = String(st.seen);
    render();
  });
  es.addEventListener('event', (m) => addEvent(JSON.parse(m.data)));
  es.addEventListener('log', (m) => logLine(JSON.parse(m.data)));
  es.addEventListener('logend', (m) => { $('#log-state').textContent = JSON.parse(m.data).message; });
  es.addEventListener('skipped', (m) => {
    const s = JSON.parse(m.data);
    if (s.lines) logLine({ stream: 'stdout', text: '\u2026 ' + s.lines + ' lines skipped' });
  });
}

async function load() {
  const get = async (path) => { const r = await fetch(path, { cache: 'no-store' }); return r.ok ? r.json() : null; };
  const [info, memory, events, state] = await Promise.all([get('/api/info'), get('/api/memory'), get('/api/events'), get('/api/state')]);
  if (info) st.info = info;
  $('#auth').hidden = !st.info.actions;
  if (memory) {
    for (const s of memory.series) st.series.set(s.program + '/' + s.instance, { measure: s.measure, limit: s.limit_bytes, points: s.points });
  }
  if (events) { $('#events').replaceChildren(); st.events = []; events.events.forEach(addEvent); }
  if (state) { st.workers = state.workers; st.supervisor = state.supervisor || {}; render(); }
  open();
}

// ---- actions

async function act(kind) {
  const w = st.workers.find((x) => keyOf(x) === st.selected);
  if (!w) return;
  const out = $('#action-result');
  let path, body;
  switch (kind) {
    case 'restart-one': path = 'restart'; body = { program: w.program, instance: w.instance }; break;
    case 'restart-all': path = 'restart'; body = { program: w.program }; break;
    case 'stop': path = 'stop'; body = { program: w.program }; break;
    case 'start': path = 'start'; body = { program: w.program }; break;
    default: path = 'signal'; body = { program: w.program, instance: w.instance, signal: $('#signal').value };
  }
  if ((kind === 'stop' || kind.startsWith('restart')) && !window.confirm(kind.replace('-', ' ') + ' ' + (body.instance === undefined ? w.program : keyOf(w)) + '?')) return;
  const r = await fetch('/api/' + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + (sessionStorage.getItem('supervise-token') || '') },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  let msg = text;
  try { msg = JSON.parse(text).message; } catch (_) { /* plain text */ }
  out.textContent = r.status + ': ' + msg;
}

document.addEventListener('DOMContentLoaded', () => {
  $('#token').value = sessionStorage.getItem('supervise-token') || '';
  $('#token-save').addEventListener('click', () => {
    sessionStorage.setItem('supervise-token', $('#token').value);
    $('#auth-state').textContent = 'kept for this tab';
  });
  for (const b of document.querySelectorAll('#actions button')) b.addEventListener('click', () => act(b.dataset.act));
  // A hidden tab holds no stream: it costs the supervisor nothing.
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) { if (st.stream) { st.stream.close(); st.stream = null; } } else load();
  });
  load();
});
