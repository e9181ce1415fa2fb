// The dashboard page: one EventSource of snapshots (/api/events) redrawn into plain tables and
// two SVG charts drawn here (no chart library, nothing fetched from elsewhere), a log stream
// per chosen node, actor search, and the actions when the server allows them.
'use strict';

const $ = (s) => document.querySelector(s);
const TOKEN_KEY = 'troupe-dashboard-token';
const COLORS = ['#4a7bd0', '#d0664a', '#1b9e77', '#a15cd0', '#c9a100', '#0f8fa8', '#d04a8a', '#5c6b00'];
let token = null;
let config = null;
let latest = null;
let logSource = null;

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
const short = (h) => (h || '').slice(0, 12);
const clock = (ms) => new Date(ms).toLocaleTimeString();
function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}
const bytes = (b) => (b === null || b === undefined) ? '–' : (b / 1048576).toFixed(1) + ' MiB';
const micros = (us) => (us === null || us === undefined) ? '–' : (us >= 1000 ? (us / 1000).toFixed(1) + ' ms' : us + ' µs');

function withToken(url) {
  return token ? url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : url;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers['x-troupe-token'] = token;
  const r = await fetch(path, Object.assign({}, options, { headers }));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

// ---- start: token, config, streams ----------------------------------------------------------

async function start() {
  const params = new URLSearchParams(location.search);
  if (params.get('token')) {
    sessionStorage.setItem(TOKEN_KEY, params.get('token'));
    history.replaceState(null, '', location.pathname);
  }
  token = sessionStorage.getItem(TOKEN_KEY);
  config = await (await fetch('/api/config')).json();
  $('#entry').textContent = config.entry;
  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('#token-input').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $('#token-ask').hidden = true;
    open();
  });
  if (config.token_required && !token) return askToken('');
  open();
}

function askToken(why) {
  $('#main').hidden = true;
  $('#token-ask').hidden = false;
  $('#token-error').textContent = why;
  $('#conn').textContent = 'needs a token';
}

let events = null;
function open() {
  $('#main').hidden = false;
  if (config.actions) setUpActions();
  if (events) events.close();
  events = new EventSource(withToken('/api/events'));
  events.addEventListener('snapshot', (e) => {
    $('#conn').textContent = 'live';
    $('#conn').className = 'conn live';
    render(JSON.parse(e.data));
  });
  events.onerror = async () => {
    $('#conn').textContent = 'reconnecting…';
    $('#conn').className = 'conn down';
    const r = await fetch(withToken('/api/actors?q=%00')).catch(() => null);
    if (r && r.status === 401) {
      events.close();
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
      askToken('that token is not this dashboard\'s');
    }
  };
  $('#actor-search').addEventListener('input', debounce(search, 250));
  $('#log-node').addEventListener('change', () => followLog($('#log-node').value));
  search();
}

function debounce(f, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(f, ms); };
}

// ---- rendering ----------------------------------------------------------------------------

function render(v) {
  latest = v;
  $('#leader').textContent = v.leader || '(none)';
  $('#updated').textContent = clock(v.t_ms);
  $('#updated').dataset.t = v.t_ms;
  renderNodes(v);
  renderVersions(v);
  const span = [v.t_ms - 300000, v.t_ms];
  drawChart($('#rate-chart'), v.series, 1, span);
  drawChart($('#depth-chart'), v.series, 2, span);
  renderLegend(v.series);
  renderLong(v);
  renderUpgrades(v.upgrades);
  renderEvents(v.events);
  fillSelects(v);
  // The actor list follows the convention too (a search costs the server one scan, no node).
  search();
}

function renderNodes(v) {
  const body = $('#nodes tbody');
  body.replaceChildren(...v.nodes.map((n) => {
    const state = n.lost ? 'lost since ' + clock(n.lost.since_ms) + ': ' + n.lost.why
      : n.left ? 'left at ' + clock(n.left.since_ms) + ' (stopped gracefully)' : 'up';
    const key = n.lost ? 'lost' : n.left ? 'left' : 'up';
    return el('tr', { 'data-node': n.addr, 'data-role': n.role, 'data-state': key, class: key },
      el('td', { text: n.addr }), el('td', { text: n.role }), el('td', { class: 'state', text: state }),
      el('td', { text: n.caps.join(', ') }), el('td', { text: n.incarnation }),
      el('td', { text: duration(n.uptime_ms) }), el('td', { text: micros(n.rtt_us) }),
      el('td', { text: bytes(n.rss_bytes) }), el('td', { text: n.threads ?? '–' }),
      el('td', { text: n.actors }));
  }));
}

function renderVersions(v) {
  const rows = [];
  for (const n of v.nodes) {
    for (const x of n.versions) {
      const types = Object.entries(x.types).map(([t, c]) => t + ': ' + c).join(', ');
      const th = x.threads;
      rows.push(el('tr', { 'data-node': n.addr, 'data-hash': x.hash, 'data-state': x.state, 'data-live': x.live_actors },
        el('td', { text: n.addr }), el('td', { class: 'hash', title: x.hash, text: short(x.hash) }),
        el('td', { text: x.package }), el('td', { class: 'state', text: x.state }),
        el('td', { text: x.generation }), el('td', { text: types + ' (' + x.live_actors + ' live)' }),
        el('td', { text: th.busy + ' / ' + th.idle + ' / ' + th.limit }),
        el('td', { text: x.queue_depth }), el('td', { text: x.groups.join(', ') })));
    }
  }
  $('#versions tbody').replaceChildren(...rows);
}

// One polyline per version; y scaled to the largest value shown, x to the last five minutes.
function drawChart(svg, series, field, [t0, t1]) {
  const W = 600, H = 180, PAD = 20;
  const NS = 'http://www.w3.org/2000/svg';
  const max = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[field])));
  const kids = [];
  for (const frac of [0, 0.5, 1]) {
    const y = H - PAD - frac * (H - 2 * PAD);
    const line = document.createElementNS(NS, 'line');
    Object.entries({ x1: 0, x2: W, y1: y, y2: y, stroke: '#eef0f3' }).forEach(([k, x]) => line.setAttribute(k, x));
    const label = document.createElementNS(NS, 'text');
    label.setAttribute('x', 2);
    label.setAttribute('y', y - 2);
    label.textContent = (max * frac).toFixed(max * frac < 10 ? 1 : 0);
    kids.push(line, label);
  }
  series.forEach((s, i) => {
    const pts = s.points.map((p) => {
      const x = ((p[0] - t0) / Math.max(1, t1 - t0)) * W;
      const y = H - PAD - (p[field] / max) * (H - 2 * PAD);
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', pts.join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', COLORS[i % COLORS.length]);
    line.setAttribute('stroke-width', '1.5');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    line.setAttribute('data-hash', s.hash);
    line.setAttribute('data-points', s.points.length);
    line.setAttribute('data-max', Math.max(0, ...s.points.map((p) => p[field])));
    kids.push(line);
  });
  svg.replaceChildren(...kids);
}

function renderLegend(series) {
  $('#legend').replaceChildren(...series.map((s, i) => {
    const last = s.points[s.points.length - 1] || [0, 0, 0];
    const e = el('span', { text: s.package + ' ' + short(s.hash) + ': ' + last[1].toFixed(1) + ' msg/s, depth ' + last[2] });
    e.style.setProperty('--c', COLORS[i % COLORS.length]);
    return e;
  }));
}

function renderLong(v) {
  const rows = v.nodes.flatMap((n) => n.long_handlers.map((l) =>
    el('tr', {}, el('td', { text: n.addr }), el('td', { text: l.actor }), el('td', { text: l.type_name }),
      el('td', { text: duration(l.running_ms) }))));
  $('#long tbody').replaceChildren(...rows);
}

// Every live upgrade the nodes report, whoever started it: counts so far, a bar, each node's
// share, and the pause histogram (power-of-two buckets of microseconds).
function renderUpgrades(ups) {
  if (!ups.length) {
    $('#upgrades').replaceChildren(el('p', { class: 'muted', text: 'none under way or lately ended' }));
    return;
  }
  $('#upgrades').replaceChildren(...ups.map((u) => {
    const pct = u.total ? Math.min(100, (100 * (u.moved + u.stayed + u.failed)) / u.total) : 100;
    const bar = el('div', { class: 'bar' }, el('div'));
    bar.firstChild.style.width = pct + '%';
    const head = (u.running ? 'running: ' : 'ended: ') + short(u.from) + ' → ' + short(u.to) +
      (u.origin ? ' (run by ' + u.origin + ', since ' + clock(u.started_ms) + ')' : ' (since ' + clock(u.started_ms) + ')');
    const counts = el('p', {},
      'moved ', el('b', { class: 'moved', text: u.moved }), ' of ', el('b', { class: 'total', text: u.total }),
      ', stayed ', el('b', { class: 'stayed', text: u.stayed }), ', failed ', el('b', { class: 'failed', text: u.failed }),
      u.rolled_back ? ' (rolled back)' : '');
    const shares = el('table', { class: 'pauses' }, el('tr', {}, ...['node', 'moved', 'of', 'stayed', 'failed', ''].map((h) => el('th', { text: h }))),
      ...u.nodes.map((p) => el('tr', { 'data-node': p.node }, el('td', { text: p.node }), el('td', { text: p.moved }),
        el('td', { text: p.total }), el('td', { text: p.stayed }), el('td', { text: p.failed }),
        el('td', { text: p.running ? 'running' : 'ended' }))));
    return el('div', { class: 'upgrade', 'data-id': u.id, 'data-from': u.from, 'data-to': u.to, 'data-running': u.running,
      'data-moved': u.moved, 'data-total': u.total, 'data-origin': u.origin },
      el('b', { text: head }), bar, counts, shares, histogram(u.pause_histogram));
  }));
}

// Bucket i holds pauses of [2^i, 2^(i+1)) µs; only the span from the first to the last
// non-empty bucket is drawn.
function histogram(buckets) {
  const used = buckets.map((n, i) => [n, i]).filter(([n]) => n > 0).map(([, i]) => i);
  const box = el('div', { class: 'histogram', 'data-pauses': buckets.reduce((a, n) => a + n, 0) });
  if (!used.length) { box.append(el('span', { class: 'muted', text: 'no pauses measured yet' })); return box; }
  const max = Math.max(...buckets);
  for (let i = Math.min(...used); i <= Math.max(...used); i++) {
    const bar = el('span', { class: 'hbar' });
    bar.style.width = (160 * buckets[i] / max).toFixed(0) + 'px';
    box.append(el('div', { class: 'hrow', 'data-bucket': i, 'data-count': buckets[i] },
      el('span', { class: 'hlabel', text: '< ' + micros(2 ** (i + 1)) }), bar, el('span', { text: ' ' + buckets[i] })));
  }
  return box;
}

function renderEvents(evs) {
  $('#events').replaceChildren(...evs.slice(-60).reverse().map((e) =>
    el('li', { 'data-kind': e.kind, text: clock(e.t_ms) + '  ' + e.text })));
}

function setOptions(select, options) {
  const keep = select.value;
  select.replaceChildren(...options.map(([value, label]) => el('option', { value, text: label })));
  if (options.some(([v]) => v === keep)) select.value = keep;
}

function fillSelects(v) {
  const nodes = v.nodes.filter((n) => !n.lost).map((n) => [n.addr, n.addr + ' (' + n.role + ')']);
  const logNode = $('#log-node');
  const hadNode = logNode.value;
  setOptions(logNode, nodes);
  if (!hadNode && logNode.value) followLog(logNode.value);
  const versions = new Map();
  for (const n of v.nodes) for (const x of n.versions) versions.set(x.hash, x.package + ' ' + short(x.hash));
  document.querySelectorAll('.node-select').forEach((s) => setOptions(s, nodes));
  document.querySelectorAll('.version-select').forEach((s) => setOptions(s, [...versions]));
}

// ---- log, actors --------------------------------------------------------------------------

function followLog(node) {
  if (logSource) logSource.close();
  const pre = $('#log');
  pre.textContent = '';
  pre.dataset.node = node;
  logSource = new EventSource(withToken('/api/logs?node=' + encodeURIComponent(node)));
  logSource.addEventListener('log', (e) => {
    if (!e.data) return;
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = (pre.textContent + e.data + '\n').slice(-200000);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  });
  logSource.addEventListener('logerror', (e) => { pre.textContent += '[' + e.data + ']\n'; });
}

async function search() {
  const q = $('#actor-search').value;
  let found = [];
  try { found = await api('/api/actors?q=' + encodeURIComponent(q)); } catch (e) { return; }
  $('#actors tbody').replaceChildren(...found.map((a) => {
    const link = el('a', { class: 'addr', 'data-addr': a.address, text: a.address });
    link.addEventListener('click', () => actorStatus(a.address));
    return el('tr', { 'data-addr': a.address }, el('td', {}, link), el('td', { text: a.type_name }),
      el('td', { class: 'hash', text: short(a.hash) }), el('td', { text: a.global_name || '' }), el('td', { text: a.parent || '' }));
  }));
}

async function actorStatus(addr) {
  const out = $('#actor-status');
  out.textContent = 'asking ' + addr + '…';
  try {
    const s = await api('/api/actor?addr=' + encodeURIComponent(addr));
    const rows = [['address', s.address], ['type', s.type_name], ['handled', s.handled], ['mailbox', s.mailbox], ['age', duration(s.age_ms)], ...s.extra];
    out.textContent = rows.map(([k, v]) => k.padEnd(10) + ' ' + v).join('\n');
    out.className = '';
  } catch (e) {
    out.textContent = e.message;
    out.className = 'error';
  }
}

// ---- actions (only when the server allows them) -------------------------------------------

function setUpActions() {
  if ($('#actions')) return;
  $('#actions-slot').replaceChildren($('#actions-template').content.cloneNode(true));
  if (!token) {
    const input = el('input', { id: 'action-token', type: 'password', placeholder: 'token for actions' });
    input.addEventListener('change', () => { token = input.value.trim(); sessionStorage.setItem(TOKEN_KEY, token); });
    $('#action-token-slot').replaceChildren(input);
  }
  const q = (o) => Object.entries(o).filter(([, v]) => v !== '' && v !== null && v !== undefined)
    .map(([k, v]) => k + '=' + encodeURIComponent(v)).join('&');
  const file = () => $('#zip-file').files[0];
  const upload = (name, extra) => {
    const f = file();
    if (!f) throw new Error('choose a zip to upload');
    return api('/api/action/' + name + '?' + q(Object.assign({ node: $('#act-node').value, file: f.name }, extra)), { method: 'POST', body: f });
  };
  bind('#load-btn', () => upload('load', {}));
  bind('#deploy-btn', () => upload('deploy', { group: $('#deploy-group').value, keep: $('#deploy-keep').value, migrate: $('#deploy-migrate').checked }));
  bind('#upgrade-btn', () => api('/api/action/upgrade?' + q({ from: $('#upgrade-from').value, to: $('#upgrade-to').value, all_or_nothing: $('#upgrade-aon').checked }), { method: 'POST' }));
  bind('#rollback-btn', () => api('/api/action/rollback?' + q({ group: $('#rollback-group').value }), { method: 'POST' }));
  bind('#unload-btn', () => api('/api/action/unload?' + q({ hash: $('#unload-hash').value }), { method: 'POST' }));
  bind('#cap-btn', () => api('/api/action/chgcap?' + q({ node: $('#cap-node').value, op: $('#cap-op').value, cap: $('#cap-name').value }), { method: 'POST' }));
  if (latest) fillSelects(latest);
}

function bind(sel, run) {
  $(sel).addEventListener('click', async () => {
    const out = $('#action-result');
    out.textContent = 'working…';
    out.className = 'muted';
    try {
      out.textContent = JSON.stringify(await run());
      out.className = 'ok';
    } catch (e) {
      out.textContent = e.message;
      out.className = 'error';
    }
  });
}

start().catch((e) => { $('#conn').textContent = 'error: ' + e.message; });
