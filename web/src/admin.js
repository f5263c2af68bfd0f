// Admin view (owners): tokens, the panic switch, the audit ledger.

import { api, enc } from './api.js';
import { $, h, toast, info, confirmAction, fmtTime } from './dom.js';
import { session } from './session.js';

let initialised = false;

async function loadTokens() {
  const tbody = $('#tokens tbody');
  try {
    const list = await api('GET', '/v1/tokens');
    tbody.replaceChildren(
      ...list.map((t) =>
        h('tr', { dataset: { tokenId: t.id } },
          h('td', null, h('code', null, t.id)),
          h('td', null, t.role),
          h('td', null, t.label || ''),
          h('td', null, (t.islands || []).join(', ') || 'all'),
          h('td', null, fmtTime(t.created_at)),
          h('td', null, t.last_used_at ? fmtTime(t.last_used_at) : 'never'),
          h('td', null, h('button', { type: 'button', class: 'danger small', dataset: { action: 'revoke-token', tokenId: t.id } }, 'revoke')))),
    );
    if (!list.length) tbody.append(h('tr', null, h('td', { colspan: 7, class: 'muted' }, 'No tokens.')));
  } catch (e) {
    if (e.status !== 401) toast(e.message);
  }
}

async function createToken(e) {
  e.preventDefault();
  const body = { role: $('#token-role').value };
  const label = $('#token-label').value.trim();
  if (label) body.label = label;
  const btn = $('#token-create');
  btn.disabled = true;
  try {
    const t = await api('POST', '/v1/tokens', body);
    $('#token-secret').textContent = t.secret; // shown once, kept nowhere else
    $('#token-secret-box').hidden = false;
    $('#token-label').value = '';
    loadTokens();
  } catch (x) {
    toast(x.message);
  } finally {
    btn.disabled = false;
  }
}

function hideSecret() {
  $('#token-secret').textContent = '';
  $('#token-secret-box').hidden = true;
}

async function copySecret() {
  const text = $('#token-secret').textContent;
  try {
    await navigator.clipboard.writeText(text);
    info('copied');
  } catch {
    // no clipboard API (plain http): select it for a manual copy
    const r = document.createRange();
    r.selectNodeContents($('#token-secret'));
    const s = getSelection();
    s.removeAllRanges();
    s.addRange(r);
    info('selected: press Ctrl+C / ⌘C to copy');
  }
}

function revoke(id) {
  return confirmAction({
    title: `Revoke token ${id}?`,
    message: 'It stops working at once; its open sessions and event streams are closed.',
    okLabel: 'Revoke',
    run: async () => {
      await api('DELETE', `/v1/tokens/${enc(id)}`);
      info(`token ${id} revoked`);
      loadTokens();
    },
  });
}

function showPanic(p) {
  const st = $('#panic-status');
  if (p && p.panicked) {
    st.textContent = `Panic engaged${p.since ? ` since ${fmtTime(p.since)}` : ''}${p.reason ? `: ${p.reason}` : ''}${typeof p.stopped === 'number' ? ` (${p.stopped} islands stopped)` : ''}.`;
    st.className = 'error';
  } else {
    st.textContent = 'Panic switch is off.';
    st.className = 'muted';
  }
  $('#panic-clear').hidden = !(p && p.panicked);
}

async function loadPanic() {
  try {
    showPanic(await api('GET', '/v1/panic'));
  } catch (e) {
    if (e.status !== 401) toast(e.message);
  }
}

function panic() {
  return confirmAction({
    title: 'Engage the panic switch?',
    message: 'Every island is stopped and every session revoked; nothing starts again until the switch is cleared.',
    okLabel: 'Panic',
    run: async () => {
      const p = await api('POST', '/v1/panic', {});
      showPanic(p);
      info(`panic engaged: ${p.stopped ?? 0} islands stopped`);
    },
  });
}

function clearPanic() {
  return confirmAction({
    title: 'Clear the panic switch?',
    message: 'Islands whose desired state is running are woken.',
    okLabel: 'Clear',
    run: async () => {
      showPanic(await api('DELETE', '/v1/panic'));
      info('panic cleared');
    },
  });
}

async function loadAudit() {
  const tbody = $('#audit tbody');
  const verdict = $('#audit-verdict');
  try {
    const a = await api('GET', '/v1/audit?limit=50');
    const v = a.verify || {};
    verdict.textContent = v.ok ? `chain ok (${v.checked ?? 0} checked)` : `chain BROKEN at seq ${v.first_bad_seq ?? '?'}: ${v.problem || 'unknown problem'}`;
    verdict.className = v.ok ? 'ok' : 'error';
    const entries = (a.entries || []).slice(-50).reverse(); // newest first
    tbody.replaceChildren(
      ...entries.map((e) =>
        h('tr', { dataset: { seq: e.seq } },
          h('td', null, String(e.seq)),
          h('td', null, fmtTime(e.time)),
          h('td', null, e.type || ''),
          h('td', null, e.island ? `${e.island}${e.agent ? `/${e.agent}` : ''}` : ''),
          h('td', null, e.actor || ''),
          h('td', { class: e.decision === 'denied' ? 'error' : '' }, e.decision || ''),
          h('td', null, e.route ? `${e.method || ''} ${e.route}` : ''),
          h('td', null, e.status !== undefined ? String(e.status) : ''),
          h('td', { class: 'wrap' }, typeof e.detail === 'string' ? e.detail : e.detail ? JSON.stringify(e.detail) : ''))),
    );
  } catch (e) {
    verdict.textContent = '';
    if (e.status !== 401) toast(e.message);
  }
}

export function enterAdmin() {
  const owner = session.can('owner');
  $('#admin-forbidden').hidden = owner;
  $('#admin-body').hidden = !owner;
  if (!owner) return;
  if (!initialised) {
    initialised = true;
    $('#token-form').addEventListener('submit', createToken);
    $('#token-copy').addEventListener('click', copySecret);
    $('#token-secret-hide').addEventListener('click', hideSecret);
    $('#tokens').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-action="revoke-token"]');
      if (b) revoke(b.dataset.tokenId);
    });
    $('#panic').addEventListener('click', panic);
    $('#panic-clear').addEventListener('click', clearPanic);
  }
  loadTokens();
  loadPanic();
  loadAudit();
}

export function leaveAdmin() {
  hideSecret(); // the secret is never kept past the page it was shown on
}
