// Fleet view: one card per island, built once and updated in place from the live stream.

import { api, islandPath, enc } from './api.js';
import { $, h, forbid, toast, info as notify, confirmAction, askInput, fmtBytes, presenceText } from './dom.js';
import { session } from './session.js';

const ACTIONS = ['hibernate', 'wake', 'reset', 'upgrade', 'clone', 'purge', 'add-agent'];
const FALLBACK_TYPES = ['claude-code', 'codex', 'custom', 'headless'];

/** name -> {el, refs, agents: Map(id -> {el, refs})} */
const cards = new Map();
let agentTypes = FALLBACK_TYPES;
let listEl;

// ---- rendering ----

function createCard(name) {
  const refs = {
    title: h('span', { class: 'island-title' }),
    state: h('span', { class: 'badge island-state' }),
    container: h('span', { class: 'badge island-container' }),
    repo: h('span', { class: 'island-repo muted' }),
    stats: h('span', { class: 'island-stats' }),
    attached: h('span', { class: 'island-attached' }),
    latest: h('span', { class: 'badge latest island-latest', hidden: true }),
    agents: h('ul', { class: 'agents' }),
  };
  const operator = session.can('operator');
  const actions = h('div', { class: 'actions' });
  for (const a of ACTIONS) {
    const b = h('button', { type: 'button', class: a === 'purge' ? 'danger' : '', dataset: { action: a } }, a.replace('-', ' '));
    forbid(b, !operator);
    actions.append(b);
  }
  const el = h(
    'article',
    { class: 'island card', dataset: { island: name } },
    h('header', { class: 'island-head' },
      h('h3', { class: 'island-name' }, name), refs.title, refs.state, refs.container, refs.latest),
    h('div', { class: 'island-meta' }, refs.repo, refs.stats, refs.attached),
    refs.agents,
    actions,
  );
  return { name, el, refs, agents: new Map() };
}

function createAgentRow(island, id) {
  const refs = {
    type: h('span', { class: 'agent-type' }),
    state: h('span', { class: 'badge agent-state' }),
    latest: h('span', { class: 'badge latest agent-latest', hidden: true }),
    attach: h('a', { class: 'attach', href: `#/t/${enc(island)}/${enc(id)}`, dataset: { attach: `${island}/${id}` } }, 'terminal'),
    remove: h('button', { type: 'button', class: 'small', dataset: { action: 'remove-agent', agentId: id } }, 'remove'),
  };
  forbid(refs.remove, !session.can('operator'));
  const el = h('li', { class: 'agent', dataset: { agent: id } },
    h('span', { class: 'agent-id' }, id), refs.type, refs.state, refs.latest, refs.attach, refs.remove);
  return { el, refs };
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function statsText(s) {
  if (!s) return 'no stats';
  const cpu = typeof s.cpu_percent === 'number' ? `${s.cpu_percent.toFixed(1)}% CPU` : '—';
  const lim = s.memory_limit_bytes ? ` / ${fmtBytes(s.memory_limit_bytes)}` : '';
  return `${cpu} · ${fmtBytes(s.memory_usage_bytes)}${lim}`;
}

function updateCard(card, info) {
  const { refs } = card;
  setText(refs.title, info.title || '');
  setText(refs.state, info.state || '?');
  refs.state.dataset.value = info.state || '';
  setText(refs.container, info.container || '?');
  refs.container.dataset.value = info.container || '';
  setText(refs.repo, info.repo || '(no repo)');
  setText(refs.stats, statsText(info.stats));
  const att = info.attached || [];
  setText(refs.attached, att.length ? `${att.length} attached: ${att.map(presenceText).join(', ')}` : 'nobody attached');
  const latest = info.agent_state && info.agent_state.latest;
  refs.latest.hidden = !latest;
  setText(refs.latest, latest || '');

  // agents, keyed by id, in the daemon's order (primary first)
  const seen = new Set();
  let prev = null;
  for (const a of info.agents || []) {
    seen.add(a.id);
    let row = card.agents.get(a.id);
    if (!row) {
      row = createAgentRow(card.name, a.id);
      card.agents.set(a.id, row);
    }
    const want = prev ? prev.nextSibling : card.refs.agents.firstChild;
    if (want !== row.el) card.refs.agents.insertBefore(row.el, want);
    prev = row.el;
    setText(row.refs.type, a.label ? `${a.type} · ${a.label}` : a.type);
    setText(row.refs.state, a.state);
    row.refs.state.dataset.value = a.state;
    const l = a.agent_state && a.agent_state.latest;
    row.refs.latest.hidden = !l;
    setText(row.refs.latest, l || '');
    row.refs.attach.hidden = a.attachable === false;
    const n = (a.attached || []).length;
    setText(row.refs.attach, n ? `terminal (${n})` : 'terminal');
  }
  for (const [id, row] of card.agents) {
    if (!seen.has(id)) {
      row.el.remove();
      card.agents.delete(id);
    }
  }
}

function insertSorted(card) {
  // islands are few enough per insert that a linear scan is fine; bulk loads append sorted
  for (const el of listEl.children) {
    if (el.dataset.island > card.name) {
      listEl.insertBefore(card.el, el);
      return;
    }
  }
  listEl.append(card.el);
}

function updateCount() {
  $('#fleet-count').textContent = String(cards.size);
  $('#fleet-empty').hidden = cards.size > 0;
}

function upsert(info, bulk) {
  let card = cards.get(info.name);
  if (!card) {
    card = createCard(info.name);
    cards.set(info.name, card);
    if (!bulk) insertSorted(card);
  }
  updateCard(card, info);
  return card;
}

function removeIsland(name) {
  const card = cards.get(name);
  if (!card) return;
  card.el.remove();
  cards.delete(name);
  updateCount();
}

/** Replace the whole list (the fleet stream's snapshot, first and after every reconnect). */
function replaceAll(list) {
  list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const names = new Set(list.map((i) => i.name));
  for (const name of [...cards.keys()]) if (!names.has(name)) removeIsland(name);
  const frag = document.createDocumentFragment();
  for (const info of list) {
    const card = upsert(info, true);
    frag.append(card.el); // (re)appending an existing card moves it into sorted order
  }
  listEl.append(frag);
  updateCount();
}

// ---- the fleet stream (GET /ui/fleet): the daemon pushes what changed; the page never polls ----

let fleetStream = null;
const islandListeners = new Set();

/** fn(info) whenever an island arrives or changes on the fleet stream (the terminal's presence). */
export function onIsland(fn) {
  islandListeners.add(fn);
  return () => islandListeners.delete(fn);
}

function announce(info) {
  for (const fn of islandListeners) {
    try {
      fn(info);
    } catch (e) {
      console.error(e);
    }
  }
}

/** The header's indicator: is the page live? */
function setLive(text) {
  const el = $('#live-status');
  if (!el) return;
  el.textContent = text;
  el.dataset.state = text;
}

/** Open the stream; resolves once the first snapshot is shown (or the stream failed). */
function openFleet() {
  if (fleetStream) fleetStream.close();
  return new Promise((resolve) => {
    const es = new EventSource('/ui/fleet');
    fleetStream = es;
    const parse = (ev) => {
      try {
        return JSON.parse(ev.data);
      } catch {
        return null;
      }
    };
    es.addEventListener('snapshot', (ev) => {
      const list = parse(ev);
      if (Array.isArray(list)) {
        replaceAll(list);
        list.forEach(announce);
      }
      setLive('live');
      resolve();
    });
    es.addEventListener('island', (ev) => {
      const info = parse(ev);
      if (info && info.name) {
        upsert(info);
        updateCount();
        announce(info);
      }
    });
    es.addEventListener('gone', (ev) => {
      const g = parse(ev);
      if (g && g.name) removeIsland(g.name);
    });
    es.onopen = () => setLive('live');
    es.addEventListener('revoked', () => {
      es.close();
      location.reload();
    });
    es.onerror = () => {
      setLive('reconnecting');
      // EventSource retries by itself unless the answer was not a stream (401, 403, daemon
      // gone): then try again a little later (a 401 shows the login on the next page load).
      if (es.readyState === EventSource.CLOSED && fleetStream === es) {
        setTimeout(() => {
          if (fleetStream === es) openFleet();
        }, 3000);
      }
      resolve();
    };
  });
}

// ---- per-island refetch, coalesced ----

const refetch = new Map(); // name -> {timer, inflight, again}

function scheduleRefetch(name) {
  let st = refetch.get(name);
  if (!st) {
    st = { timer: null, inflight: false, again: false };
    refetch.set(name, st);
  }
  if (st.inflight) {
    st.again = true;
    return;
  }
  if (st.timer) return;
  st.timer = setTimeout(() => runRefetch(name, st), 100);
}

async function runRefetch(name, st) {
  st.timer = null;
  st.inflight = true;
  try {
    const info = await api('GET', islandPath(name));
    upsert(info);
    updateCount();
  } catch (e) {
    if (e.status === 404) removeIsland(name);
  } finally {
    st.inflight = false;
    if (st.again) {
      st.again = false;
      scheduleRefetch(name);
    } else {
      refetch.delete(name);
    }
  }
}


// ---- actions ----

const isUnsaved = (e) => e.status === 409 && /unsaved|uncommitted|unpushed|not pushed|force=true/i.test(e.message);

async function doAction(action, name, btn) {
  const path = islandPath(name);
  const simple = async (verb) => {
    btn.disabled = true;
    try {
      const info = await api('POST', `${path}/${verb}`);
      if (info && info.name) upsert(info);
      notify(`${name}: ${verb} done`);
    } catch (e) {
      toast(e.message);
    } finally {
      btn.disabled = false;
    }
  };
  switch (action) {
    case 'hibernate':
    case 'wake':
    case 'upgrade':
      return simple(action);
    case 'reset':
      return confirmAction({
        title: `Reset ${name}?`,
        message: 'The island gets a new, empty home volume. The workspace is kept.',
        okLabel: 'Reset',
        run: async () => {
          const info = await api('POST', `${path}/reset`);
          if (info && info.name) upsert(info);
          notify(`${name}: reset`);
        },
      });
    case 'clone':
      return askInput({
        title: `Clone ${name}`,
        field: { label: 'New island name', value: `${name}-copy`, required: true },
        okLabel: 'Clone',
        run: async ({ value }) => {
          const info = await api('POST', `${path}/clone`, { new_name: value });
          if (info && info.name) {
            upsert(info);
            updateCount();
          }
          notify(`cloned ${name} to ${value}`);
        },
      });
    case 'purge':
      return confirmAction({
        title: `Purge ${name}?`,
        message: 'This removes the container, both volumes, the network and the records. It cannot be undone.',
        okLabel: 'Purge',
        run: async () => {
          await api('DELETE', path);
          removeIsland(name);
          notify(`${name} purged`);
        },
        force: {
          label: 'Purge anyway',
          match: isUnsaved,
          run: async () => {
            await api('DELETE', `${path}?force=true`);
            removeIsland(name);
            notify(`${name} purged`);
          },
        },
      });
    case 'add-agent':
      return askInput({
        title: `Add an agent to ${name}`,
        field: { label: 'Label (optional)', value: '' },
        select: { label: 'Type', options: [['', 'same as the primary'], ...agentTypes.map((t) => [t, t])], value: '' },
        okLabel: 'Add agent',
        run: async ({ value, choice }) => {
          const body = {};
          if (choice) body.type = choice;
          if (value) body.label = value;
          const a = await api('POST', `${path}/agents`, body);
          scheduleRefetch(name);
          notify(`${name}: agent ${a && a.id ? a.id : ''} added`);
        },
      });
    default:
      return undefined;
  }
}

function removeAgent(name, id) {
  return confirmAction({
    title: `Remove agent ${id} from ${name}?`,
    message: 'Its session is killed and its worktree pruned; its branch is kept.',
    okLabel: 'Remove',
    run: async () => {
      await api('DELETE', islandPath(name, id));
      scheduleRefetch(name);
      notify(`${name}: agent ${id} removed`);
    },
  });
}

// ---- create form ----

async function loadAgentTypes() {
  const sel = $('#create-agent-type');
  try {
    const list = await api('GET', '/v1/agent-types');
    const types = (list || []).map((t) => (typeof t === 'string' ? t : t.type)).filter(Boolean);
    if (types.length) agentTypes = types;
  } catch {
    /* keep the fallback list */
  }
  sel.replaceChildren(...agentTypes.map((t) => h('option', { value: t }, t)));
  updateCreateForm();
}

function updateCreateForm() {
  const empty = $('#create-empty').checked;
  $('#create-repo').disabled = empty;
  $('#create-name').required = empty;
  const t = $('#create-agent-type').value;
  $('#create-cmd-label').hidden = !(t === 'custom' || t === 'headless');
  $('#create-cmd').required = t === 'headless';
}

async function submitCreate(e) {
  e.preventDefault();
  const name = $('#create-name').value.trim();
  const repo = $('#create-repo').value.trim();
  const empty = $('#create-empty').checked;
  const agent = $('#create-agent-type').value;
  const cmd = $('#create-cmd').value.trim();
  const body = {};
  if (name) body.name = name;
  if (empty) body.no_repo = true;
  else if (repo) body.repo = repo;
  else {
    toast('Give a git repository, or tick “Empty workspace” and a name.');
    return;
  }
  if (agent) body.agent = agent;
  if (cmd && (agent === 'custom' || agent === 'headless')) body.cmd = cmd;
  const btn = $('#create-submit');
  btn.disabled = true;
  try {
    const info = await api('POST', '/v1/islands', body);
    if (info && info.name) {
      upsert(info);
      updateCount();
      notify(`island ${info.name} created`);
    }
    $('#create').reset();
    updateCreateForm();
  } catch (x) {
    toast(x.message);
  } finally {
    btn.disabled = false;
  }
}

// ---- setup ----

export function initFleet() {
  listEl = $('#island-list');
  const operator = session.can('operator');
  $('#create').hidden = !operator;
  if (operator) {
    $('#create').addEventListener('submit', submitCreate);
    $('#create-empty').addEventListener('change', updateCreateForm);
    $('#create-agent-type').addEventListener('change', updateCreateForm);
  }
  listEl.addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn || btn.disabled) return;
    const name = btn.closest('[data-island]').dataset.island;
    if (btn.dataset.action === 'remove-agent') removeAgent(name, btn.dataset.agentId);
    else doAction(btn.dataset.action, name, btn);
  });
  loadAgentTypes();
  return openFleet();
}
