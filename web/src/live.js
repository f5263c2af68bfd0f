// The one shared EventSource on /v1/events/stream (fleet updates, terminal presence).
// EventSource reconnects by itself; after a break the subscribers' onReconnect runs once.

import { api } from './api.js';
import { $ } from './dom.js';

// Every frame is `event: <type>`, so each type needs its own listener.
export const EVENT_TYPES = [
  'island.created', 'island.running', 'island.hibernated', 'island.woken', 'island.reset',
  'island.purged', 'container.crashed', 'client.attached', 'client.detached',
  'last-client.detached', 'agent.waiting-for-input', 'agent.task-complete', 'agent.error',
  'daemon.panic-engaged', 'daemon.panic-cleared',
];

const listeners = new Set();
const reconnectListeners = new Set();
let es = null;
let broken = false;
let retryTimer = null;

function setStatus(text) {
  const el = $('#live-status');
  if (!el) return;
  el.textContent = text;
  el.dataset.state = text;
}

/** fn(event) for each event (the event's JSON, `type` filled in). Returns an unsubscribe. */
export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** fn() after the stream came back from a break (reload what may have been missed). */
export function onReconnect(fn) {
  reconnectListeners.add(fn);
  return () => reconnectListeners.delete(fn);
}

function dispatch(ev) {
  let data;
  try {
    data = JSON.parse(ev.data);
  } catch {
    return;
  }
  if (!data || typeof data !== 'object') return;
  if (!data.type) data.type = ev.type;
  for (const fn of listeners) {
    try {
      fn(data);
    } catch (e) {
      console.error(e);
    }
  }
}

function reopenLater(ms) {
  if (es) es.close();
  es = null;
  broken = true;
  setStatus('reconnecting');
  clearTimeout(retryTimer);
  retryTimer = setTimeout(open, ms);
}

function open() {
  es = new EventSource('/v1/events/stream');
  es.onopen = () => {
    setStatus('live');
    if (broken) {
      broken = false;
      for (const fn of reconnectListeners) fn();
    }
  };
  es.onerror = () => {
    broken = true;
    setStatus('reconnecting');
    if (es && es.readyState === EventSource.CLOSED) {
      // Not an event stream (401, 403, daemon gone): EventSource gives up, so retry by
      // hand, and find out whether the login is gone (a 401 shows the login view).
      api('GET', '/ui/whoami').catch(() => {});
      reopenLater(3000);
    }
  };
  for (const t of EVENT_TYPES) es.addEventListener(t, dispatch);
  es.onmessage = dispatch;
  es.addEventListener('dropped', () => reopenLater(500));
  es.addEventListener('revoked', () => {
    if (es) es.close();
    es = null;
    setStatus('revoked');
    api('GET', '/ui/whoami').catch(() => {});
  });
}

export function startLive() {
  if (!es) {
    setStatus('connecting');
    open();
  }
}
