// Dejima dashboard: boot (who am I?), login, header, hash routes.
import '@xterm/xterm/css/xterm.css';
import './style.css';

import { api, setUnauthorizedHandler } from './api.js';
import { $, toast } from './dom.js';
import { session } from './session.js';
import { initFleet } from './fleet.js';
import { enterTerminal, leaveTerminal } from './terminal.js';
import { enterEvents, leaveEvents } from './events.js';
import { enterAdmin, leaveAdmin } from './admin.js';

const VIEWS = { fleet: '#fleet-view', term: '#term-view', events: '#events-view', admin: '#admin-view' };
let current = null;
let started = false;

// ---- login ----

function showLogin(message) {
  if (current === 'term') leaveTerminal();
  if (current === 'events') leaveEvents();
  if (current === 'admin') leaveAdmin();
  current = null;
  $('#boot').hidden = true;
  $('#app').hidden = true;
  $('#login-view').hidden = false;
  $('#login-error').textContent = message || '';
  $('#login-token').focus();
}

async function submitLogin(e) {
  e.preventDefault();
  const input = $('#login-token');
  const token = input.value.trim();
  if (!token) return;
  const btn = $('#login-submit');
  btn.disabled = true;
  $('#login-error').textContent = '';
  try {
    await api('POST', '/ui/login', { token }, { quiet401: true });
    input.value = '';
    location.reload(); // start clean with the new role
  } catch (x) {
    $('#login-error').textContent = x.message;
    input.select();
  } finally {
    btn.disabled = false;
  }
}

async function logout() {
  try {
    await api('POST', '/ui/logout', undefined, { quiet401: true });
  } catch (e) {
    toast(e.message);
    return;
  }
  location.reload();
}

// ---- routing ----

function parseRoute() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts[0] === 't' && parts.length >= 3) return { view: 'term', island: parts[1], agent: parts[2] };
  if (parts[0] === 'events') return { view: 'events' };
  if (parts[0] === 'admin') return { view: 'admin' };
  return { view: 'fleet' };
}

function route() {
  const r = parseRoute();
  if (current !== r.view) {
    if (current === 'term') leaveTerminal();
    if (current === 'events') leaveEvents();
    if (current === 'admin') leaveAdmin();
    for (const [name, sel] of Object.entries(VIEWS)) $(sel).hidden = name !== r.view;
    for (const a of document.querySelectorAll('nav [data-nav]')) {
      if (a.dataset.nav === r.view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    current = r.view;
    if (r.view === 'events') enterEvents();
    if (r.view === 'admin') enterAdmin();
  }
  if (r.view === 'term') enterTerminal(r.island, r.agent);
  document.title = r.view === 'term' ? `${r.island}/${r.agent} · Dejima` : 'Dejima';
}

// ---- start ----

function startApp(who) {
  if (started) return;
  started = true;
  session.role = who.role;
  session.islands = who.islands || [];
  session.auth = who.auth || 'cookie';
  $('#boot').hidden = true;
  $('#login-view').hidden = true;
  $('#app').hidden = false;
  const scope = session.islands.length ? ` · ${session.islands.length} island${session.islands.length > 1 ? 's' : ''}` : '';
  $('#whoami').textContent = `${session.role}${scope}`;
  $('#whoami').title = `signed in as ${session.role} (${session.auth})`;
  $('#logout').addEventListener('click', logout);
  $('nav [data-nav="admin"]').hidden = !session.can('owner');
  document.body.dataset.role = session.role;

  initFleet();
  window.addEventListener('hashchange', route);
  route();
}

async function boot() {
  try {
    const who = await api('GET', '/ui/whoami', undefined, { quiet401: true });
    startApp(who);
  } catch (e) {
    if (e.status === 401) showLogin('');
    else {
      $('#boot').textContent = `Cannot reach the daemon: ${e.message}`;
      setTimeout(boot, 3000);
    }
  }
}

function main() {
  $('#login').addEventListener('submit', submitLogin);
  // A 401 anywhere: the login is gone (expired, revoked, logged out elsewhere).
  setUnauthorizedHandler(() => showLogin('Your session ended; sign in again.'));
  boot();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
else main();
