// Terminal view: xterm.js attached to one agent's session websocket.

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { api, islandPath, enc } from './api.js';
import { $, h, toast, info } from './dom.js';
import { onIsland } from './fleet.js';
import { session } from './session.js';

const LABEL_KEY = 'dejima.label';
const PING_MS = 20000;
const RESIZE_DEBOUNCE_MS = 150;
const KEYS = { Esc: '\x1b', Tab: '\t', Left: '\x1b[D', Up: '\x1b[A', Down: '\x1b[B', Right: '\x1b[C', Enter: '\r' };

const randomLabel = `browser-${Array.from(crypto.getRandomValues(new Uint8Array(2)), (b) => b.toString(16).padStart(2, '0')).join('')}`;

/** The current attachment; null when the view is not shown. */
let cur = null;
let initialised = false;

// ---- base64 <-> bytes ----

const encoder = new TextEncoder();
function toB64(str) {
  const bytes = encoder.encode(str);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}
function fromB64(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
const decoder = new TextDecoder();

// ---- helpers ----

function label() {
  try {
    return localStorage.getItem(LABEL_KEY) || randomLabel;
  } catch {
    return randomLabel;
  }
}

function observing() {
  return !session.can('operator') || $('#observe').checked;
}

function setStatus(text) {
  const el = $('#term-status');
  el.textContent = text;
  el.dataset.state = text;
  $('#reattach').hidden = !(text === 'detached' || text === 'agent exited');
  $('#detach').hidden = text === 'detached' || text === 'agent exited';
}

function renderPresence(list) {
  $('#presence').replaceChildren(
    ...(list || []).map((p) => h('li', { class: p.read_only ? 'ro' : '' }, p.read_only ? `${p.label} (read-only)` : p.label)),
  );
}

function updateInputControls() {
  const ro = observing();
  $('#prompt-text').disabled = ro;
  $('#prompt-send').disabled = ro;
  $('#upload-input').disabled = ro;
  $('#keyrow').classList.toggle('disabled', ro);
  $('#term-view').classList.toggle('observing', ro);
}

function send(frame) {
  if (cur && cur.ws && cur.ws.readyState === WebSocket.OPEN) cur.ws.send(JSON.stringify(frame));
}

function sendInput(str) {
  if (!cur || observing() || !str) return;
  send({ type: 'data', b64: toB64(str) });
}

/** Apply the sticky Ctrl to one typed character: Ctrl+c -> \x03. */
function applyCtrl(data) {
  if (!cur.ctrl) return data;
  setCtrl(false);
  if (data.length !== 1) return data;
  const c = data;
  const code = c.toUpperCase().charCodeAt(0);
  if (code >= 64 && code <= 95) return String.fromCharCode(code - 64); // @ A-Z [ \ ] ^ _
  if (c === ' ') return '\x00';
  if (c === '?') return '\x7f';
  return data;
}

function setCtrl(on) {
  if (cur) cur.ctrl = on;
  const b = $('#keyrow [data-key="Ctrl"]');
  b.setAttribute('aria-pressed', on ? 'true' : 'false');
  b.classList.toggle('active', on);
}

function sendResize(force) {
  if (!cur || observing() || !cur.ws || cur.ws.readyState !== WebSocket.OPEN) return;
  const { rows, cols } = cur.term;
  if (!force && cur.lastSent && cur.lastSent.rows === rows && cur.lastSent.cols === cols) return;
  cur.lastSent = { rows, cols };
  send({ type: 'resize', rows, cols });
}

// ---- the websocket ----

function connect() {
  const c = cur;
  if (!c) return;
  clearTimeout(c.retryTimer);
  c.exited = false;
  const ro = observing();
  const q = new URLSearchParams({ label: label(), scrollback: '1000' });
  if (ro) q.set('mode', 'observe');
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${proto}://${location.host}${islandPath(c.island, c.agent)}/session?${q}`;
  setStatus(c.attempts ? 'reconnecting' : 'connecting');
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    toast(e.message);
    scheduleReconnect(c);
    return;
  }
  c.ws = ws;
  c.opened = false;
  ws.onopen = () => {
    if (c.ws !== ws) return;
    c.opened = true;
    c.attempts = 0;
    c.backoff = 500;
    c.term.reset(); // the daemon sends the history again: do not show it twice
    c.lastSent = null;
    setStatus(ro ? 'observing' : 'live');
    if (!ro) {
      c.fit.fit();
      sendResize(true);
    }
    clearInterval(c.pingTimer);
    c.pingTimer = setInterval(() => send({ type: 'ping' }), PING_MS);
  };
  ws.onmessage = (m) => {
    if (c.ws !== ws || typeof m.data !== 'string') return;
    let f;
    try {
      f = JSON.parse(m.data);
    } catch {
      return;
    }
    switch (f.type) {
      case 'hello':
        renderPresence(f.attached);
        break;
      case 'data':
        if (c.resetPending) {
          c.resetPending = false;
          c.term.reset();
        }
        c.term.write(fromB64(f.b64 || ''));
        break;
      case 'resync':
        c.resetPending = true;
        break;
      case 'error':
        toast(decoder.decode(fromB64(f.b64 || '')));
        break;
      case 'exit':
        c.exited = true;
        setStatus('agent exited');
        break;
      default: // pong and kinds newer than this page
        break;
    }
  };
  ws.onclose = () => {
    if (c.ws !== ws) return;
    clearInterval(c.pingTimer);
    c.ws = null;
    if (c.closing || c !== cur) return;
    if (c.exited) {
      setStatus('agent exited');
      return;
    }
    if (!c.opened) probe(c);
    scheduleReconnect(c);
  };
}

/** The upgrade was refused: ask the REST route why (the websocket cannot say). */
async function probe(c) {
  try {
    await api('GET', islandPath(c.island, c.agent));
  } catch (e) {
    if (c !== cur) return;
    toast(e.message);
    if (e.status === 401 || e.status === 403 || e.status === 404) stop(c, 'detached');
  }
}

function scheduleReconnect(c) {
  if (c.closing || c !== cur) return;
  c.attempts++;
  setStatus('reconnecting');
  const delay = c.backoff;
  c.backoff = Math.min(c.backoff * 2, 8000);
  clearTimeout(c.retryTimer);
  c.retryTimer = setTimeout(() => {
    if (!c.closing && c === cur) connect();
  }, delay);
}

function stop(c, status) {
  c.closing = true;
  clearTimeout(c.retryTimer);
  clearInterval(c.pingTimer);
  if (c.ws) {
    const ws = c.ws;
    c.ws = null;
    try {
      ws.close(1000, 'detached');
    } catch {
      /* already closed */
    }
  }
  if (status) setStatus(status);
}

function reconnectNow() {
  if (!cur) return;
  stop(cur);
  cur.closing = false;
  cur.attempts = 0;
  cur.backoff = 500;
  connect();
}

// ---- presence from the live event stream ----

/** Presence from the fleet stream: the island's agent, whole, whenever it changed. */
function onIslandUpdate(info) {
  const c = cur;
  if (!c || info.name !== c.island) return;
  const a = (info.agents || []).find((x) => x.id === c.agent);
  if (a) renderPresence(a.attached || []);
}

// ---- prompt and upload ----

async function sendPrompt(e) {
  if (e) e.preventDefault();
  if (!cur || observing()) return;
  const ta = $('#prompt-text');
  const text = ta.value;
  if (!text.trim()) return;
  const btn = $('#prompt-send');
  btn.disabled = true;
  try {
    const d = await api('POST', `${islandPath(cur.island, cur.agent)}/prompt`, { text, submit: true });
    info(d && d.submitted ? 'prompt delivered and submitted' : 'prompt delivered');
    ta.value = '';
  } catch (x) {
    toast(x.message);
  } finally {
    btn.disabled = observing();
  }
}

async function upload(file) {
  if (!cur || !file) return;
  const st = $('#upload-status');
  if (observing()) {
    toast('Uploading needs an interactive session (turn Observe off).');
    return;
  }
  if (file.size > 8 * 1024 * 1024) {
    toast(`${file.name} is larger than 8 MiB`);
    return;
  }
  st.textContent = `uploading ${file.name}…`;
  try {
    const r = await api('POST', `${islandPath(cur.island, cur.agent)}/upload?filename=${enc(file.name)}`, file);
    st.textContent = r.pasted ? `${r.path} (pasted as ${r.pasted_as})` : `${r.path}${r.paste_error ? ` (not pasted: ${r.paste_error})` : ''}`;
  } catch (x) {
    st.textContent = '';
    toast(x.message);
  }
}

// ---- view lifecycle ----

function initOnce() {
  if (initialised) return;
  initialised = true;
  const viewer = !session.can('operator');
  const obs = $('#observe');
  if (viewer) {
    obs.checked = true;
    obs.disabled = true;
  }
  obs.addEventListener('change', () => {
    updateInputControls();
    reconnectNow();
  });
  const lbl = $('#term-label');
  lbl.placeholder = randomLabel;
  try {
    lbl.value = localStorage.getItem(LABEL_KEY) || '';
  } catch {
    /* storage disabled */
  }
  lbl.addEventListener('change', () => {
    const v = lbl.value.trim();
    try {
      if (v) localStorage.setItem(LABEL_KEY, v);
      else localStorage.removeItem(LABEL_KEY);
    } catch {
      /* storage disabled */
    }
    info('the label applies from the next attach');
  });
  $('#detach').addEventListener('click', () => cur && stop(cur, 'detached'));
  $('#reattach').addEventListener('click', reconnectNow);
  $('#prompt-form').addEventListener('submit', sendPrompt);
  $('#prompt-text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) sendPrompt(e);
  });
  $('#upload-input').addEventListener('change', (e) => {
    upload(e.target.files[0]);
    e.target.value = '';
  });
  const drop = $('#terminal');
  drop.addEventListener('dragover', (e) => {
    if (e.dataTransfer && [...e.dataTransfer.types].includes('Files')) {
      e.preventDefault();
      drop.classList.add('dragging');
    }
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('dragging'));
  drop.addEventListener('drop', (e) => {
    drop.classList.remove('dragging');
    if (e.dataTransfer && e.dataTransfer.files.length) {
      e.preventDefault();
      upload(e.dataTransfer.files[0]);
    }
  });
  // The key row must not take the focus (that would close a phone's keyboard).
  const row = $('#keyrow');
  row.addEventListener('pointerdown', (e) => {
    if (e.target.closest('button')) e.preventDefault();
  });
  row.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-key]');
    if (!b || !cur || observing()) return;
    const k = b.dataset.key;
    if (k === 'Ctrl') setCtrl(!cur.ctrl);
    else {
      setCtrl(false);
      sendInput(KEYS[k]);
    }
  });
  onIsland(onIslandUpdate);
}

export function enterTerminal(island, agent) {
  initOnce();
  if (cur && cur.island === island && cur.agent === agent) return;
  leaveTerminal();
  $('#term-title').textContent = `${island} / ${agent}`;
  $('#upload-status').textContent = '';
  renderPresence([]);
  updateInputControls();

  const container = $('#terminal');
  container.replaceChildren();
  const term = new Terminal({
    scrollback: 5000,
    cursorBlink: true,
    convertEol: false,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace',
    fontSize: window.matchMedia('(max-width: 700px)').matches ? 12 : 14,
    theme: { background: '#0b0e14', foreground: '#d8dee9', cursor: '#e5c07b', selectionBackground: '#3b4252' },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(container);
  // The terminal's buffer, for scripts driving the page (the browser tests read its history).
  window.dejimaTerm = term;
  // tmux switches the outer terminal to its alternate screen on attach, and xterm.js keeps no
  // scrollback there: the history sent on attach (?scrollback) and everything that scrolls by
  // would be out of reach (no wheel or touch scrolling). tmux draws every program, full-screen
  // ones included, itself, so its own switch is the only one that ever arrives: ignore it.
  const altScreen = (params) => params.length === 1 && [47, 1047, 1049].includes(params[0]);
  term.parser.registerCsiHandler({ prefix: '?', final: 'h' }, altScreen);
  term.parser.registerCsiHandler({ prefix: '?', final: 'l' }, altScreen);
  try {
    fit.fit();
  } catch {
    /* not laid out yet */
  }
  cur = {
    island, agent, term, fit,
    ws: null, opened: false, closing: false, exited: false,
    attempts: 0, backoff: 500, retryTimer: null, pingTimer: null, presenceTimer: null,
    resetPending: false, lastSent: null, ctrl: false,
  };
  setCtrl(false);
  const c = cur;
  term.onData((data) => {
    if (c !== cur) return;
    sendInput(applyCtrl(data));
  });
  // Resize only when this page's own box changes size; never on focus, never on a timer.
  let t = null;
  c.resizeObserver = new ResizeObserver(() => {
    clearTimeout(t);
    t = setTimeout(() => {
      if (c !== cur) return;
      try {
        c.fit.fit();
      } catch {
        return;
      }
      sendResize(false);
    }, RESIZE_DEBOUNCE_MS);
  });
  c.resizeObserver.observe(container);
  connect();
  term.focus();
}

export function leaveTerminal() {
  if (!cur) return;
  const c = cur;
  stop(c);
  clearTimeout(c.presenceTimer);
  c.resizeObserver.disconnect();
  cur = null;
  c.term.dispose();
}
