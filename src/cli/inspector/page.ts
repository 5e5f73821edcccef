/**
 * The inspector's single page: HTML with inline CSS and JS, served as is by `server.ts`. It reads
 * only the server's JSON endpoints, builds every element with the DOM API (`textContent`, never
 * `innerHTML` with data, so an event payload cannot inject markup), and refreshes when the server
 * reports a change (server-sent events) and every two seconds (peers change without the log).
 *
 * The client code avoids template literals so this file can hold it in one.
 */

const STYLE = `
:root { --bg: #fbfbfa; --fg: #1d1d1f; --dim: #6b6b70; --line: #e2e2e0; --accent: #2457c5; --warn: #b25a00; --bad: #b3261e; --ok: #1f7a3a; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.45 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; gap: 16px; align-items: baseline; padding: 10px 16px; border-bottom: 1px solid var(--line); background: #fff; }
header h1 { font-size: 16px; margin: 0; }
#path { color: var(--dim); font-family: ui-monospace, monospace; }
#live { margin-left: auto; color: var(--dim); }
#live.on { color: var(--ok); }
.cards { display: flex; flex-wrap: wrap; gap: 8px; padding: 10px 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; min-width: 96px; }
.card b { display: block; font-size: 16px; }
.card span { color: var(--dim); font-size: 11px; }
main { display: grid; grid-template-columns: minmax(0, 1.2fr) minmax(0, 1fr); gap: 12px; padding: 0 16px 16px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; margin-bottom: 12px; }
h2 { font-size: 13px; margin: 0 0 6px; }
h2 small { color: var(--dim); font-weight: normal; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--dim); font-weight: 600; font-size: 11px; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f3f6fd; }
tr.selected { background: #e3ebfb !important; }
tr.gone td { color: var(--dim); text-decoration: line-through; }
.mono, .id { font-family: ui-monospace, monospace; font-size: 12px; }
.payload { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.mark { display: inline-block; border-radius: 3px; padding: 0 4px; font-size: 11px; margin-right: 3px; }
.mark.failed { background: #fbe4e2; color: var(--bad); }
.mark.pruned, .mark.removed { background: #eee; color: var(--dim); }
.mark.head { background: #e4f2e8; color: var(--ok); }
.tree details { margin-left: 14px; }
.tree summary { cursor: pointer; }
.tree .leaf { margin-left: 28px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tree .name { color: #7a3e9d; }
.tree .value { font-family: ui-monospace, monospace; }
.tree .type { color: var(--dim); font-size: 11px; margin-left: 4px; }
.tree .opaque { color: var(--warn); font-size: 11px; margin-left: 4px; }
a.writer { color: var(--accent); font-family: ui-monospace, monospace; font-size: 11px; margin-left: 6px; text-decoration: none; }
a.writer:hover { text-decoration: underline; }
.none { color: var(--dim); font-size: 11px; margin-left: 6px; }
#explain dl, #cutoff dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0; }
#explain dt, #cutoff dt { color: var(--dim); }
#explain dd, #cutoff dd { margin: 0; word-break: break-all; }
#cutoff { margin-top: 6px; }
#explain ul { margin: 4px 0 0 16px; padding: 0; }
.kept { color: var(--warn); }
.error { color: var(--bad); }
button { font: inherit; margin-top: 6px; }
`;

const SCRIPT = `
'use strict';
var state = { version: -1, selected: null, closed: {}, opened: {}, before: null };

function el(tag, attrs, children) {
  var node = document.createElement(tag);
  if (attrs) for (var k in attrs) {
    if (k === 'text') node.textContent = attrs[k];
    else if (k === 'className') node.className = attrs[k];
    else node.setAttribute(k, attrs[k]);
  }
  if (children) children.forEach(function (c) { if (c !== null && c !== undefined) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
  return node;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
function time(ms) { return new Date(ms).toISOString().replace('T', ' ').replace('Z', ''); }
function short(id) { return id.slice(0, 12) + '…' + id.slice(-4); }
function bytes(n) { return n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' : (n / 1048576).toFixed(1) + ' MiB'; }
function getJson(path) {
  return fetch(path, { cache: 'no-store' }).then(function (r) {
    return r.json().then(function (body) { if (!r.ok) throw new Error(body.error || r.statusText); return body; });
  });
}
function writerLink(id, label) {
  if (!id) return el('span', { className: 'none', text: label ? label + ' —' : '(no writer)' });
  var a = el('a', { className: 'writer', href: '#', 'data-writer': id, title: 'written by ' + id, text: (label ? label + ' ' : '← ') + short(id) });
  a.addEventListener('click', function (e) { e.preventDefault(); select(id); });
  return a;
}

function renderSummary(s) {
  document.getElementById('path').textContent = s.path;
  var st = s.stats;
  var cards = [
    ['stored', st.stored], ['pruned', st.pruned], ['failed applies', st.failedApplies], ['heads', st.heads],
    ['parked', st.parked], ['tombstones', st.tombstones], ['cutoff', st.cutoffTime ? time(st.cutoffTime) : 'none'],
    ['view', bytes(st.viewBytes)], ['undo', bytes(st.undoBytes)], ['log', bytes(st.logBytes)],
    ['re-applied', st.reapplied], ['rebuilds', st.rebuilds], ['opened by', st.openedBy]
  ];
  var box = clear(document.getElementById('stats'));
  cards.forEach(function (c) { box.appendChild(el('div', { className: 'card', 'data-stat': c[0] }, [el('b', { text: String(c[1]) }), el('span', { text: c[0] })])); });

  var heads = clear(document.getElementById('heads'));
  heads.appendChild(el('div', { text: s.heads.length + ' head' + (s.heads.length === 1 ? '' : 's') + ' (events no stored event names as parent)' }));
  s.heads.forEach(function (h) { heads.appendChild(el('div', null, [el('span', { className: 'mono', text: time(h.time) }), writerLink(h.id, 'head')])); });
  var c = s.cutoff;
  clear(document.getElementById('cutoff')).appendChild(el('dl', null, [
    el('dt', { text: 'cutoff time' }), el('dd', { text: c.time ? time(c.time) : 'none yet' }),
    el('dt', { text: 'cutoff hash' }), el('dd', { className: 'mono', text: c.hash }),
    el('dt', { text: 'previous' }), el('dd', { className: 'mono', text: (c.previousTime ? time(c.previousTime) : '—') + '  ' + c.previousHash }),
    el('dt', { text: 'stride' }), el('dd', { text: (c.strideMs / 60000) + ' min' })
  ]));

  var peers = clear(document.getElementById('peers'));
  if (!s.replicator) { peers.appendChild(el('div', { className: 'none', text: 'not replicating (no replicator given)' })); }
  else {
    peers.appendChild(el('div', { className: 'mono', text: 'this node: ' + s.replicator.peerId }));
    s.replicator.multiaddrs.forEach(function (m) { peers.appendChild(el('div', { className: 'mono', text: m })); });
    if (s.replicator.peers.length === 0) peers.appendChild(el('div', { className: 'none', text: 'no peers' }));
    else {
      var rows = s.replicator.peers.map(function (p) {
        return el('tr', { 'data-peer': p.peerId }, [
          el('td', { className: 'mono', text: short(p.peerId) }), el('td', { text: p.state + (p.reason ? ' (' + p.reason + ')' : '') }),
          el('td', { text: p.lastSeen ? time(p.lastSeen) : '—' }), el('td', { text: p.received + ' / ' + p.sent }),
          el('td', { text: p.sessions + ' (' + p.reconcileMessages + ' msgs, ' + bytes(p.reconcileBytes) + ')' })
        ]);
      });
      peers.appendChild(el('table', null, [
        el('thead', null, [el('tr', null, ['peer', 'state', 'last seen', 'recv / sent', 'sessions'].map(function (t) { return el('th', { text: t }); }))]),
        el('tbody', null, rows)
      ]));
    }
  }
}

function renderEvents(data) {
  var body = clear(document.querySelector('#events tbody'));
  data.events.forEach(function (e) {
    var marks = [];
    if (e.head) marks.push(el('span', { className: 'mark head', text: 'head' }));
    if (e.failed) marks.push(el('span', { className: 'mark failed', text: 'failed' }));
    var row = el('tr', { 'data-id': e.id, className: e.id === state.selected ? 'selected' : '' }, [
      el('td', { className: 'mono', text: time(e.time) }), el('td', { className: 'id', title: e.id, text: short(e.id) }),
      el('td', { className: 'payload', text: e.summary }), el('td', null, marks)
    ]);
    row.addEventListener('click', function () { select(e.id); });
    body.appendChild(row);
  });
  data.removed.forEach(function (r) {
    var row = el('tr', { 'data-id': r.id, className: 'gone' + (r.id === state.selected ? ' selected' : '') }, [
      el('td', { className: 'mono', text: time(r.time) }), el('td', { className: 'id', title: r.id, text: short(r.id) }),
      el('td', { text: r.reason + ' at ' + time(r.at) }), el('td', null, [el('span', { className: 'mark ' + r.reason, text: r.reason })])
    ]);
    row.addEventListener('click', function () { select(r.id); });
    body.appendChild(row);
  });
  document.getElementById('timeline-count').textContent = data.shown + ' of ' + data.total + ' stored, newest first' + (data.removed.length ? '; ' + data.removed.length + ' left the log while watching' : '');
  document.getElementById('more').style.display = data.more ? '' : 'none';
  document.getElementById('newest').style.display = state.before ? '' : 'none';
  state.oldest = data.events.length ? data.events[data.events.length - 1].id : null;
}

function valueText(v) { return typeof v === 'string' ? JSON.stringify(v) : String(v); }

function renderNode(name, node, path, depth) {
  if (node.kind === 'leaf') {
    return el('div', { className: 'leaf', 'data-path': path }, [
      el('span', { className: 'name', text: name }), ': ', el('span', { className: 'value', text: valueText(node.value) }),
      el('span', { className: 'type', text: node.type }), node.opaque ? el('span', { className: 'opaque', text: 'opaque' }) : null,
      writerLink(node.writer)
    ]);
  }
  var label = [el('span', { className: 'name', text: name })];
  var children = [];
  if (node.kind === 'object') {
    label.push(el('span', { className: 'type', text: 'object' }));
    node.fields.forEach(function (f) { children.push(renderNode(f.name, f.node, path ? path + '.' + f.name : f.name, depth + 1)); });
  } else if (node.kind === 'optional') {
    label.push(el('span', { className: 'type', text: node.type + (node.present ? '' : ' = null') }), writerLink(node.writer, 'set by'));
    if (node.present) children.push(renderNode('value', node.value, path + '?', depth + 1));
  } else if (node.kind === 'map') {
    label.push(el('span', { className: 'type', text: node.type + ', ' + node.size + ' entr' + (node.size === 1 ? 'y' : 'ies') }), writerLink(node.writer, 'keys by'));
    if (node.clearedBy) label.push(writerLink(node.clearedBy, 'cleared by'));
    node.entries.forEach(function (e) {
      var key = valueText(e.key);
      var child = renderNode(key, e.value, path + '[' + key + ']', depth + 1);
      // The key's inserter goes next to the name: in a value's summary line, or after a leaf's name.
      var host = child.tagName === 'DETAILS' ? child.firstChild : child;
      host.insertBefore(writerLink(e.keyWriter, 'key by'), host.firstChild.nextSibling);
      children.push(child);
    });
    if (node.truncated) children.push(el('div', { className: 'none', text: '… ' + node.truncated + ' more' }));
  } else {
    label.push(el('span', { className: 'type', text: node.type + ', length ' + node.length }));
    if (node.kind === 'list') label.push(writerLink(node.writer, 'length by'));
    if (node.clearedBy) label.push(writerLink(node.clearedBy, 'cleared by'));
    node.items.forEach(function (item, i) { children.push(renderNode('[' + i + ']', item, path + '[' + i + ']', depth + 1)); });
    if (node.truncated) children.push(el('div', { className: 'none', text: '… ' + node.truncated + ' more' }));
  }
  var details = el('details', { 'data-path': path }, [el('summary', null, label)].concat(children));
  details.open = state.opened[path] || (depth < 3 && !state.closed[path]);
  details.addEventListener('toggle', function () {
    if (details.open) { state.opened[path] = true; delete state.closed[path]; } else { state.closed[path] = true; delete state.opened[path]; }
  });
  return details;
}

function renderView(tree) {
  var box = clear(document.getElementById('view'));
  box.appendChild(renderNode('root', tree, '', 0));
}

function renderExplain(x) {
  var box = clear(document.getElementById('explain'));
  box.setAttribute('data-id', x.id);
  var list = function (ids) { return ids.length ? el('span', null, ids.map(function (id) { return writerLink(id, ''); })) : '—'; };
  var status = x.stored ? (x.keptBecause.length ? 'stored, kept' : 'stored; it can be pruned once the cutoff passes') : (x.removal ? x.removal.reason : 'not stored (pruned, removed, or never here)');
  box.appendChild(el('dl', null, [
    el('dt', { text: 'event' }), el('dd', { className: 'mono', text: x.id }),
    el('dt', { text: 'time' }), el('dd', { text: time(x.time) }),
    el('dt', { text: 'payload' }), el('dd', { className: 'payload', text: x.summary === null ? '—' : x.summary }),
    el('dt', { text: 'status' }), el('dd', { 'data-status': '', text: status }),
    el('dt', { text: 'owns' }), el('dd', { text: x.owns + ' current value' + (x.owns === 1 ? '' : 's') }),
    el('dt', { text: 'read by' }), el('dd', null, [list(x.readBy)]),
    el('dt', { text: 'read from' }), el('dd', null, [list(x.read)]),
    el('dt', { text: 'tombstone' }), el('dd', { text: x.tombstone ? 'yes, deleted data of ' + x.deletedDataOf.length + ' stored event(s)' : 'no' }),
    el('dt', { text: 'failed' }), el('dd', { className: x.failed ? 'error' : '', text: x.failed ? 'yes' : 'no' }),
    el('dt', { text: 'overwritten at' }), el('dd', { text: x.overwrittenAt === null ? 'still owns data' : time(x.overwrittenAt) }),
    el('dt', { text: 'parents' }), el('dd', null, [list(x.parents)])
  ]));
  if (x.keptBecause.length) {
    box.appendChild(el('div', { className: 'kept', text: 'Kept because:' }));
    box.appendChild(el('ul', { id: 'kept-because' }, x.keptBecause.map(function (k) { return el('li', { text: k }); })));
  }
}

function select(id) {
  state.selected = id;
  document.querySelectorAll('#events tr.selected').forEach(function (r) { r.classList.remove('selected'); });
  var row = document.querySelector('#events tr[data-id="' + id + '"]');
  if (row) { row.classList.add('selected'); row.scrollIntoView({ block: 'nearest' }); }
  return getJson('/api/explain?id=' + id).then(renderExplain).catch(showError);
}

function showError(e) { var box = document.getElementById('error'); box.textContent = e ? String(e.message || e) : ''; }

function refreshAll() {
  var q = state.before ? '&before=' + state.before : '';
  return Promise.all([getJson('/api/summary'), getJson('/api/events?limit=200' + q), getJson('/api/view?maxEntries=200')]).then(function (r) {
    state.version = r[0].version;
    renderSummary(r[0]); renderEvents(r[1]); renderView(r[2]);
    if (state.selected) return select(state.selected);
  }).then(function () { showError(null); document.body.setAttribute('data-loaded', String(state.version)); }).catch(showError);
}

function poll() {
  getJson('/api/summary').then(function (s) {
    if (s.version !== state.version) return refreshAll();
    renderSummary(s);
  }).catch(showError);
}

document.getElementById('more').addEventListener('click', function () { state.before = state.oldest; refreshAll(); });
document.getElementById('newest').addEventListener('click', function () { state.before = null; refreshAll(); });
refreshAll();
setInterval(poll, 2000);
if (window.EventSource) {
  var live = document.getElementById('live');
  var source = new EventSource('/api/changes');
  source.addEventListener('open', function () { live.textContent = 'live'; live.className = 'on'; });
  source.addEventListener('error', function () { live.textContent = 'reconnecting (polling)'; live.className = ''; });
  source.addEventListener('change', function (e) { if (Number(e.data) !== state.version) refreshAll(); });
}
`;

/** The whole page, as served at `/`. */
export const INSPECTOR_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Noatun inspector</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>Noatun inspector</h1><span id="path"></span><span id="live">polling</span></header>
<div id="error" class="error" role="alert"></div>
<div id="stats" class="cards"></div>
<main>
  <div>
    <section>
      <h2>Timeline <small id="timeline-count"></small></h2>
      <table id="events"><thead><tr><th>Time (UTC)</th><th>Id</th><th>Payload</th><th>Marks</th></tr></thead><tbody></tbody></table>
      <button id="more" type="button">Older events</button> <button id="newest" type="button">Newest</button>
    </section>
  </div>
  <div>
    <section><h2>Why is it kept? <small>click an event or a writer</small></h2><div id="explain" class="none">Nothing selected.</div></section>
    <section><h2>View <small>each value links the event that wrote it</small></h2><div id="view" class="tree"></div></section>
    <section><h2>Heads and cutoff</h2><div id="heads"></div><div id="cutoff"></div></section>
    <section><h2>Peers</h2><div id="peers"></div></section>
  </div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
