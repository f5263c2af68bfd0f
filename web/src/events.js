// Events view: its own EventSource (replay=200 then live) with island/type filters,
// and the webhook subscriptions table.

import { api } from './api.js';
import { $, h, toast, fmtTime } from './dom.js';

// Every frame is `event: <type>`, so each type needs its own listener.
const EVENT_TYPES = [
  'island.created', 'island.running', 'island.hibernated', 'island.woken', 'island.reset',
  'island.purged', 'container.crashed', 'client.attached', 'client.detached',
  'last-client.detached', 'agent.waiting-for-input', 'agent.task-complete', 'agent.error',
  'daemon.panic-engaged', 'daemon.panic-cleared',
];

const MAX_ITEMS = 500;
let es = null;
let seen = new Set();
let filterTimer = null;
let initialised = false;

function splitList(v) {
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

function filters() {
  return { islands: splitList($('#events-filter-island').value), types: splitList($('#events-filter-type').value) };
}

function detail(ev) {
  const parts = [];
  if (ev.agent) parts.push(`agent ${ev.agent}`);
  if (ev.payload && typeof ev.payload === 'object' && Object.keys(ev.payload).length) {
    let s = JSON.stringify(ev.payload);
    if (s.length > 140) s = `${s.slice(0, 139)}…`;
    parts.push(s);
  }
  return parts.join(' · ');
}

function addEvent(ev, f) {
  if (ev.id) {
    if (seen.has(ev.id)) return;
    seen.add(ev.id);
  }
  if (f.islands.length && !f.islands.includes(ev.island)) return;
  if (f.types.length && !f.types.includes(ev.type)) return;
  const list = $('#events-list');
  const li = h('li', { class: 'event', dataset: { eventType: ev.type || '' } },
    h('time', { datetime: ev.timestamp || '' }, fmtTime(ev.timestamp)),
    h('span', { class: 'event-type badge' }, ev.type || '?'),
    h('span', { class: 'event-island' }, ev.island || '—'),
    h('span', { class: 'event-detail muted' }, detail(ev)));
  list.prepend(li); // newest first
  while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
}

function open() {
  close();
  seen = new Set();
  $('#events-list').replaceChildren();
  const f = filters();
  const q = new URLSearchParams({ replay: '200' });
  if (f.islands.length) q.set('island', f.islands.join(','));
  if (f.types.length) q.set('type', f.types.join(','));
  const status = $('#events-status');
  status.textContent = 'connecting';
  const src = new EventSource(`/v1/events/stream?${q}`);
  es = src;
  const onEv = (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (!ev.type) ev.type = m.type;
    addEvent(ev, f);
  };
  for (const t of EVENT_TYPES) src.addEventListener(t, onEv);
  src.onmessage = onEv;
  src.onopen = () => {
    status.textContent = 'live';
  };
  src.onerror = () => {
    status.textContent = 'reconnecting';
    if (src.readyState === EventSource.CLOSED && es === src) {
      api('GET', '/ui/whoami').catch(() => {});
      setTimeout(() => {
        if (es === src) open();
      }, 3000);
    }
  };
  src.addEventListener('dropped', () => {
    if (es === src) open();
  });
}

function close() {
  if (es) es.close();
  es = null;
}

async function loadWebhooks() {
  const tbody = $('#webhooks tbody');
  try {
    const subs = await api('GET', '/v1/events/subscriptions');
    tbody.replaceChildren(
      ...(subs.length ? subs : []).map((s) =>
        h('tr', { dataset: { subscription: s.id } },
          h('td', { class: 'wrap' }, s.url),
          h('td', null, (s.events || []).join(', ') || 'all'),
          h('td', null, (s.islands || []).join(', ') || 'all'),
          h('td', null, String(s.pending ?? '')),
          h('td', null, String(s.attempts ?? '')),
          h('td', null, String(s.delivered ?? '')),
          h('td', null, String(s.failed ?? '')),
          h('td', { class: 'wrap' }, s.last_error || ''),
          h('td', null, s.next_attempt_at ? fmtTime(s.next_attempt_at) : ''))),
    );
    if (!subs.length) tbody.append(h('tr', null, h('td', { colspan: 9, class: 'muted' }, 'No webhooks.')));
  } catch (e) {
    if (e.status !== 401) toast(e.message);
  }
}

export function enterEvents() {
  if (!initialised) {
    initialised = true;
    const onFilter = () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(open, 300);
    };
    $('#events-filter-island').addEventListener('input', onFilter);
    $('#events-filter-type').addEventListener('input', onFilter);
  }
  open();
  loadWebhooks();
}

export function leaveEvents() {
  clearTimeout(filterTimer);
  close();
}
