// orchest dashboard: keeps a server-rendered page current from its server-sent events.
// Everything inserted as HTML was rendered and escaped by the server; cluster text from the log and the
// step titles is set with textContent only.
(function () {
  'use strict';

  const liveDot = document.getElementById('live');

  function fragment(html, tag) {
    const holder = document.createElement(tag);
    holder.innerHTML = html;
    return holder.firstElementChild;
  }

  function rowsByKey(tbody, attribute) {
    const rows = new Map();
    for (const row of tbody.children) rows.set(row.getAttribute(attribute), row);
    return rows;
  }

  function toggleEmpty(tbody) {
    const empty = document.getElementById(tbody.id + '-empty');
    if (empty) empty.hidden = tbody.children.length > 0;
  }

  // --- lists (runs, jobs) ----------------------------------------------------------------------------
  function applyRows(message) {
    const tbody = document.getElementById(message.table);
    if (!tbody) return;
    const rows = rowsByKey(tbody, 'data-key');
    for (const [key, html] of Object.entries(message.rows || {})) {
      const row = fragment(html, 'tbody');
      const old = rows.get(key);
      if (old) old.replaceWith(row); else tbody.prepend(row);
      rows.set(key, row);
    }
    for (const key of message.removed || []) {
      const old = rows.get(key);
      if (old) old.remove();
      rows.delete(key);
    }
    if (message.order) {
      for (const key of message.order) {
        const row = rows.get(key);
        if (row) tbody.appendChild(row);
      }
    }
    toggleEmpty(tbody);
    applyFilter();
    tick();
  }

  // --- a run ----------------------------------------------------------------------------------------
  const nodes = new Map();
  for (const node of document.querySelectorAll('svg.dag g.step')) nodes.set(node.getAttribute('data-step'), node);

  function applyRun(message) {
    if (message.reload) { window.location.reload(); return; }
    if (message.summary !== undefined) {
      const summary = document.getElementById('summary');
      if (summary) summary.innerHTML = message.summary;
    }
    const tbody = document.getElementById('steps');
    const rows = tbody ? rowsByKey(tbody, 'data-step') : new Map();
    for (const [name, change] of Object.entries(message.steps || {})) {
      const node = nodes.get(name);
      const row = rows.get(name);
      if (!node || !row) { window.location.reload(); return; }
      node.setAttribute('class', 'step ' + change.cls);
      node.setAttribute('data-phase', change.phase);
      const rect = node.querySelector('rect');
      rect.setAttribute('fill', change.fill);
      rect.setAttribute('stroke', change.stroke);
      node.querySelector('title').textContent = change.title;
      node.querySelector('.phase-label').textContent = change.phase;
      const fresh = fragment(change.row, 'tbody');
      if (row.classList.contains('selected')) fresh.classList.add('selected');
      row.replaceWith(fresh);
    }
    tick();
  }

  // --- a step's log ---------------------------------------------------------------------------------
  let logSource = null;

  function openLog(step) {
    const panel = document.getElementById('log-panel');
    if (!panel || !document.body.dataset.events) return;
    if (logSource) logSource.close();
    for (const row of document.querySelectorAll('#steps tr.selected')) row.classList.remove('selected');
    const row = document.getElementById('step-' + step);
    if (row) row.classList.add('selected');
    panel.hidden = false;
    document.getElementById('log-step').textContent = step;
    const info = document.getElementById('log-info');
    const pre = document.getElementById('log');
    info.textContent = 'Loading…';
    pre.textContent = '';
    const base = window.location.pathname.replace(/\/$/, '');
    logSource = new EventSource(base + '/steps/' + encodeURIComponent(step) + '/log');
    logSource.addEventListener('info', (event) => { info.textContent = JSON.parse(event.data); });
    logSource.addEventListener('text', (event) => {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(JSON.parse(event.data)));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    });
    logSource.addEventListener('end', () => { logSource.close(); });
    logSource.onerror = () => { if (logSource.readyState === EventSource.CLOSED) info.textContent += ' (disconnected)'; };
  }

  function fromHash() {
    const match = /^#step-(.+)$/.exec(window.location.hash);
    if (match) openLog(decodeURIComponent(match[1]));
  }

  // --- parts re-rendered whole, and sortable tables --------------------------------------------------
  const sortedBy = new Map();  // tbody id -> [column, direction]: kept when a section is re-rendered

  function applySections(message) {
    for (const [id, html] of Object.entries(message.sections || {})) {
      const element = document.getElementById(id);
      if (element) element.innerHTML = html;
    }
    for (const table of document.querySelectorAll('table.sortable')) {
      const state = sortedBy.get(table.tBodies[0].id);
      if (!state) continue;
      [table.dataset.sorted, table.dataset.direction] = state;
      sortTable(table);
    }
    tick();
  }

  function cellValue(row, column) {
    const cell = row.children[column];
    if (!cell) return '';
    const value = cell.hasAttribute('data-value') ? cell.getAttribute('data-value') : cell.textContent;
    const number = Number(value);
    return value !== '' && !Number.isNaN(number) ? number : value;
  }

  function sortTable(table) {
    const column = Number(table.dataset.sorted);
    const direction = table.dataset.direction === 'desc' ? -1 : 1;
    const tbody = table.tBodies[0];
    const rows = Array.from(tbody.rows);
    rows.sort((a, b) => {
      const x = cellValue(a, column);
      const y = cellValue(b, column);
      if (typeof x === 'number' && typeof y === 'number') return (x - y) * direction;
      return String(x).localeCompare(String(y)) * direction;
    });
    for (const row of rows) tbody.appendChild(row);
    for (const [i, th] of Array.from(table.tHead.rows[0].cells).entries()) {
      th.setAttribute('aria-sort', i === column ? (direction > 0 ? 'ascending' : 'descending') : 'none');
    }
  }

  document.addEventListener('click', (event) => {
    const button = event.target.closest('table.sortable th button.sort');
    if (!button) return;
    const table = button.closest('table');
    const column = button.parentElement.cellIndex;
    const same = table.dataset.sorted === String(column);
    table.dataset.direction = same && table.dataset.direction !== 'desc' ? 'desc' : 'asc';
    table.dataset.sorted = String(column);
    sortedBy.set(table.tBodies[0].id, [table.dataset.sorted, table.dataset.direction]);
    sortTable(table);
  });

  // --- the list filter ------------------------------------------------------------------------------
  const filter = document.getElementById('filter');

  function applyFilter() {
    if (!filter) return;
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const tbody = document.getElementById(filter.dataset.table);
    for (const row of tbody.rows) {
      const text = row.textContent.toLowerCase();
      row.hidden = !words.every((word) => text.includes(word));
    }
  }
  if (filter) filter.addEventListener('input', applyFilter);

  // --- durations of what is still running -----------------------------------------------------------
  function format(seconds) {
    const whole = Math.floor(seconds);
    if (whole < 60) return seconds < 10 ? seconds.toFixed(1) + 's' : whole + 's';
    const minutes = Math.floor(whole / 60);
    if (minutes < 60) return minutes + 'm ' + String(whole % 60).padStart(2, '0') + 's';
    return Math.floor(minutes / 60) + 'h ' + String(minutes % 60).padStart(2, '0') + 'm';
  }

  function tick() {
    const now = Date.now();
    for (const cell of document.querySelectorAll('.duration[data-since]')) {
      const since = Date.parse(cell.getAttribute('data-since'));
      if (!Number.isNaN(since)) cell.textContent = format(Math.max(now - since, 0) / 1000);
    }
  }

  // --- the event stream -----------------------------------------------------------------------------
  const url = document.body.dataset.events;
  if (url) {
    const source = new EventSource(url);
    source.onopen = () => { liveDot.className = 'live on'; liveDot.title = 'live'; };
    source.onerror = () => { liveDot.className = 'live off'; liveDot.title = 'reconnecting…'; };
    source.addEventListener('rows', (event) => applyRows(JSON.parse(event.data)));
    source.addEventListener('sections', (event) => applySections(JSON.parse(event.data)));
    source.addEventListener('run', (event) => applyRun(JSON.parse(event.data)));
    source.addEventListener('gone', () => {
      const banner = document.getElementById('gone-banner');
      if (banner) banner.hidden = false;
      source.close();
      liveDot.className = 'live off';
    });
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
  tick();
  setInterval(tick, 1000);
})();
