// Small DOM helpers: element builder, toast, in-page dialogs, formatting.

export const $ = (sel, root = document) => root.querySelector(sel);

/** h('div', {class: 'x', dataset: {a: 1}, onclick: fn}, child, 'text', ...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Hide and disable an element (for what the role cannot do). */
export function forbid(el, forbidden) {
  if (!el) return;
  el.hidden = forbidden;
  if ('disabled' in el) el.disabled = forbidden;
}

// ---- toast: the latest message, kept ~6 s ----
let toastTimer = null;
export function toast(message, kind = 'error') {
  const el = $('#toast');
  if (!el) return;
  el.textContent = String(message);
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.hidden = true;
  }, 6000);
}
export const info = (message) => toast(message, 'info');

// ---- confirm dialog (#confirm-dialog) ----

/**
 * Ask, then run `run()` while the dialog stays open; its error is shown in the dialog.
 * `force`: {label, match(err), run()} offers a second button (#confirm-force) when the
 * first attempt fails with an error `match` accepts. Resolves true once an action succeeded.
 */
export function confirmAction({ title, message, okLabel = 'OK', run, force }) {
  const dlg = $('#confirm-dialog');
  const ok = $('#confirm-ok');
  const cancel = $('#confirm-cancel');
  const forceBtn = $('#confirm-force');
  const err = $('#confirm-error');
  $('#confirm-title').textContent = title;
  $('#confirm-message').textContent = message;
  ok.textContent = okLabel;
  ok.hidden = false;
  err.hidden = true;
  err.textContent = '';
  forceBtn.hidden = true;
  if (force) forceBtn.textContent = force.label;

  return new Promise((resolve) => {
    let done = false;
    const busy = (b) => {
      ok.disabled = b;
      forceBtn.disabled = b;
    };
    const attempt = async (fn, canForce) => {
      busy(true);
      try {
        await fn();
        done = true;
        dlg.close();
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
        if (canForce && force && force.match(e)) {
          forceBtn.hidden = false;
          ok.hidden = true;
        }
      } finally {
        busy(false);
      }
    };
    const onOk = () => attempt(run, true);
    const onForce = () => attempt(force.run, false);
    const onCancel = () => dlg.close();
    const onClose = () => {
      ok.removeEventListener('click', onOk);
      forceBtn.removeEventListener('click', onForce);
      cancel.removeEventListener('click', onCancel);
      dlg.removeEventListener('close', onClose);
      resolve(done);
    };
    ok.addEventListener('click', onOk);
    forceBtn.addEventListener('click', onForce);
    cancel.addEventListener('click', onCancel);
    dlg.addEventListener('close', onClose);
    dlg.showModal();
    cancel.focus();
  });
}

// ---- input dialog (#input-dialog): a text field and an optional select ----

/**
 * `field`: {label, value, placeholder, pattern, required}; `select`: {label, options:
 * [[value, text]], value} or undefined. `run({value, choice})` runs while the dialog is
 * open; its error shows in the dialog. Resolves true once it succeeded.
 */
export function askInput({ title, field, select, okLabel = 'OK', run }) {
  const dlg = $('#input-dialog');
  const form = $('#input-form');
  const input = $('#input-value');
  const sel = $('#input-select');
  const err = $('#input-error');
  const ok = $('#input-ok');
  $('#input-title').textContent = title;
  $('#input-value-label-text').textContent = field.label;
  input.value = field.value || '';
  input.placeholder = field.placeholder || '';
  if (field.pattern) input.setAttribute('pattern', field.pattern);
  else input.removeAttribute('pattern');
  input.required = !!field.required;
  $('#input-select-label').hidden = !select;
  sel.replaceChildren();
  if (select) {
    $('#input-select-label-text').textContent = select.label;
    for (const [v, t] of select.options) sel.append(h('option', { value: v }, t));
    if (select.value !== undefined) sel.value = select.value;
  }
  ok.textContent = okLabel;
  err.hidden = true;

  return new Promise((resolve) => {
    let done = false;
    const onSubmit = async (e) => {
      e.preventDefault();
      ok.disabled = true;
      try {
        await run({ value: input.value.trim(), choice: select ? sel.value : undefined });
        done = true;
        dlg.close();
      } catch (x) {
        err.textContent = x.message;
        err.hidden = false;
      } finally {
        ok.disabled = false;
      }
    };
    const onCancel = () => dlg.close();
    const onClose = () => {
      form.removeEventListener('submit', onSubmit);
      $('#input-cancel').removeEventListener('click', onCancel);
      dlg.removeEventListener('close', onClose);
      resolve(done);
    };
    form.addEventListener('submit', onSubmit);
    $('#input-cancel').addEventListener('click', onCancel);
    dlg.addEventListener('close', onClose);
    dlg.showModal();
    input.focus();
  });
}

// ---- formatting ----

export function fmtBytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString();
}

export function presenceText(p) {
  return p.read_only ? `${p.label} (read-only)` : p.label;
}
