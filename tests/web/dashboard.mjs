// The dashboard in a real browser: Debian's Chromium driven by playwright-core, against the
// real dejimad (TCP, --require-token), engine and island image. tests/web.rs starts the daemon,
// makes the tokens and runs this; it prints "ok" last when every flow passed. Screenshots of
// each view go to $ARTIFACTS.
//
// env: BASE (http://127.0.0.1:PORT), OWNER, VIEWER (operator token secrets), PREFIX (island
// names), ARTIFACTS (a folder).
import { withBrowser } from './browser.mjs';
import { mkdirSync } from 'node:fs';
import { createServer as httpServer } from 'node:http';

const { BASE, OWNER, VIEWER, PREFIX, ARTIFACTS } = process.env;
const T = 30_000;
mkdirSync(ARTIFACTS, { recursive: true });
const step = (s) => console.log(`step: ${s}`);
function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

async function api(method, path, body, token = OWNER) {
  const r = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

const consoleErrors = [];
function watch(page, name) {
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`${name}: ${m.text()}`); });
  page.on('pageerror', (e) => consoleErrors.push(`${name}: ${e.message}`));
}

async function login(page, token) {
  await page.goto(BASE + '/');
  await page.locator('#login-token').waitFor({ timeout: T });
  await page.fill('#login-token', token);
  await page.click('#login-submit');
  await page.locator('#whoami').waitFor({ state: 'visible', timeout: T });
}

/** Text of the xterm screen (the DOM renderer's rows). */
async function screenText(page) {
  return page.evaluate(() => document.querySelector('#terminal .xterm-rows')?.innerText ?? '');
}
async function waitScreen(page, needle, what) {
  const deadline = Date.now() + T;
  for (;;) {
    const t = await screenText(page);
    if (t.includes(needle)) return t;
    if (Date.now() > deadline) throw new Error(`${what}: ${JSON.stringify(needle)} not on screen:\n${t}`);
    await page.waitForTimeout(50);
  }
}
async function status(page, want) {
  await page.waitForFunction((w) => document.querySelector('#term-status')?.textContent?.trim() === w,
    want, { timeout: T });
}
async function typeInTerminal(page, text) {
  await page.click('#terminal');
  await page.keyboard.type(text);
}

await withBrowser(async (browser) => {
  // 1. Login (a wrong token is refused and said so), then the fleet, live.
  const desk = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const a = await desk.newPage();
  watch(a, 'desktop');
  step('login page');
  await a.goto(BASE + '/');
  await a.locator('#login-token').waitFor({ timeout: T });
  await a.screenshot({ path: `${ARTIFACTS}/login.png` });
  await a.fill('#login-token', 'djo_' + '0'.repeat(64));
  await a.click('#login-submit');
  await a.waitForFunction(() => (document.querySelector('#login-error')?.textContent || '').trim().length > 0,
    null, { timeout: T });
  await a.fill('#login-token', OWNER);
  await a.click('#login-submit');
  await a.locator('#whoami').waitFor({ state: 'visible', timeout: T });
  check((await a.textContent('#whoami')).includes('owner'), 'whoami shows owner');
  // The cookie is HttpOnly: the page cannot read it.
  check(!(await a.evaluate(() => document.cookie)).includes('dejima_session'), 'cookie is HttpOnly');

  step('an island created through the API appears live');
  await a.locator('#fleet').waitFor({ timeout: T });
  const viaApi = `${PREFIX}-api`;
  const made = await api('POST', '/v1/islands', { name: viaApi, no_repo: true, agent: 'custom', cmd: 'bash' });
  check(made.status === 201, `create via API: ${made.status} ${made.text}`);
  await a.locator(`[data-island="${viaApi}"] .island-state`).filter({ hasText: 'running' })
    .waitFor({ timeout: T });
  // CPU and memory, and the agent's state, arrive pushed (no event announces them).
  await a.locator(`[data-island="${viaApi}"] .island-stats`).filter({ hasText: '% CPU' })
    .waitFor({ timeout: T });
  await a.locator(`[data-island="${viaApi}"] [data-agent="a1"]`).filter({ hasText: 'running' })
    .waitFor({ timeout: T });

  step('create an island from the UI');
  const viaUi = `${PREFIX}-ui`;
  await a.fill('#create-name', viaUi);
  await a.check('#create-empty');
  await a.selectOption('#create-agent-type', 'custom');
  await a.click('#create-submit');
  await a.locator(`[data-island="${viaUi}"] .island-state`).filter({ hasText: 'running' })
    .waitFor({ timeout: 90_000 });
  const got = await api('GET', `/v1/islands/${viaUi}`);
  check(got.status === 200 && got.json.state === 'running', `UI-created island: ${got.text}`);
  await a.screenshot({ path: `${ARTIFACTS}/fleet.png`, fullPage: true });

  step('attach and type');
  await a.click(`a[data-attach="${viaApi}/a1"]`);
  await status(a, 'live');
  await typeInTerminal(a, 'echo $((6*7))\n');
  await waitScreen(a, '42', 'the echo');

  step('a second browser sees the same screen, and presence shows both');
  const desk2 = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const b = await desk2.newPage();
  watch(b, 'second');
  await login(b, OWNER);
  await b.goto(`${BASE}/#/t/${viaApi}/a1`);
  await status(b, 'live');
  await waitScreen(b, '42', 'the second browser');
  await a.waitForFunction(() => document.querySelectorAll('#presence li').length >= 2, null, { timeout: T });
  await typeInTerminal(b, 'echo from-b-$((5*5))\n');
  await waitScreen(a, 'from-b-25', 'typed in the second, seen in the first');

  step('several tabs of one browser stay live (HTTP/1.1 allows 6 connections per host)');
  const tabs = [];
  for (const hash of ['#/', '#/events', `#/t/${viaApi}/a1`]) {
    const t = await desk.newPage();
    watch(t, `tab ${hash}`);
    await t.goto(`${BASE}/${hash}`);
    tabs.push(t);
  }
  await tabs[0].locator(`[data-island="${viaApi}"]`).waitFor({ timeout: T });
  await tabs[1].locator('#events-list [data-event-type]').first().waitFor({ timeout: T });
  await status(tabs[2], 'live');
  // ...and the first tab still gets through (a page that held two streams would now stall).
  await typeInTerminal(a, 'echo with-four-tabs-$((2*3))\n');
  await waitScreen(tabs[2], 'with-four-tabs-6', 'the fourth tab');
  for (const t of tabs) await t.close();

  step('observe mode cannot type');
  await b.check('#observe');
  await status(b, 'observing');
  await typeInTerminal(b, 'echo observer-$((3*3))\n');
  await typeInTerminal(a, 'echo writer-$((4*4))\n');
  await waitScreen(b, 'writer-16', 'the observer sees the writer');
  check(!(await screenText(a)).includes('observer-9'), 'the observer typed nothing');
  await a.waitForFunction(() => [...document.querySelectorAll('#presence li')].some((l) => l.textContent.includes('read-only')),
    null, { timeout: T });

  step('send a prompt from the prompt box');
  await a.fill('#prompt-text', 'echo prompted-$((7*6))');
  await a.click('#prompt-send');
  await waitScreen(a, 'prompted-42', 'the prompt');
  await a.screenshot({ path: `${ARTIFACTS}/terminal.png` });
  await desk2.close();

  step('upload a file');
  await a.setInputFiles('#upload-input', { name: 'notes from web.txt', mimeType: 'text/plain', buffer: Buffer.from('uploaded-through-the-dashboard\n') });
  await a.waitForFunction(() => /uploads\/notes_from_web\.txt/.test(document.querySelector('#upload-status')?.textContent || ''),
    null, { timeout: T });
  const cat = await api('POST', `/v1/islands/${viaApi}/exec`, { cmd: ['cat', '/home/agent/uploads/notes_from_web.txt'] });
  check(cat.json && cat.json.stdout === 'uploaded-through-the-dashboard\n', `the uploaded file: ${cat.text}`);

  step('drop a file on the terminal');
  const dt = await a.evaluateHandle(() => {
    const d = new DataTransfer();
    d.items.add(new File(['dropped-on-the-terminal\n'], 'dropped.txt', { type: 'text/plain' }));
    return d;
  });
  await a.dispatchEvent('#terminal', 'dragover', { dataTransfer: dt });
  await a.dispatchEvent('#terminal', 'drop', { dataTransfer: dt });
  await a.waitForFunction(() => /uploads\/dropped\.txt/.test(document.querySelector('#upload-status')?.textContent || ''),
    null, { timeout: T });
  const dropped = await api('POST', `/v1/islands/${viaApi}/exec`, { cmd: ['cat', '/home/agent/uploads/dropped.txt'] });
  check(dropped.json && dropped.json.stdout === 'dropped-on-the-terminal\n', `the dropped file: ${dropped.text}`);

  step('a reload reattaches with the history');
  await typeInTerminal(a, 'clear; seq 1 200 | sed s/^/line-/; echo end-of-seq\n');
  await waitScreen(a, 'end-of-seq', 'the long output');
  await a.reload();
  await status(a, 'live');
  await waitScreen(a, 'end-of-seq', 'the screen after the reload');
  const history = await a.evaluate(() => {
    const t = window.dejimaTerm;
    if (!t) return '';
    const b = t.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n');
  });
  check(history.includes('line-1\n') || history.split('\n').includes('line-1'),
    `the history holds what scrolled off before the reload (${history.length} chars)`);

  step('events and admin views');
  await a.goto(`${BASE}/#/events`);
  await a.locator('#events-list [data-event-type]').first().waitFor({ timeout: T });
  // A type filter leaves only that type, replayed.
  await a.fill('#events-filter-type', 'island.created');
  await a.waitForFunction(() => {
    const items = [...document.querySelectorAll('#events-list [data-event-type]')];
    return items.length >= 2 && items.every((i) => i.dataset.eventType === 'island.created');
  }, null, { timeout: T });
  await a.fill('#events-filter-type', '');
  await a.screenshot({ path: `${ARTIFACTS}/events.png`, fullPage: true });
  await a.goto(`${BASE}/#/admin`);
  await a.waitForFunction(() => /chain ok/.test(document.querySelector('#audit-verdict')?.textContent || ''),
    null, { timeout: T });
  await a.locator('#tokens').waitFor({ timeout: T });
  // A token made here is shown once and works; revoked here, it stops.
  await a.selectOption('#token-role', 'viewer');
  await a.fill('#token-label', 'from-the-dashboard');
  await a.click('#token-create');
  await a.waitForFunction(() => /^djo_[0-9a-f]{64}$/.test(document.querySelector('#token-secret')?.textContent || ''),
    null, { timeout: T });
  const secret = (await a.textContent('#token-secret')).trim();
  check((await api('GET', '/v1/islands', undefined, secret)).status === 200, 'the new token works');
  const tokens = await api('GET', '/v1/tokens');
  const mine = tokens.json.find((t) => t.label === 'from-the-dashboard');
  check(mine, `the new token is listed: ${tokens.text}`);
  await a.screenshot({ path: `${ARTIFACTS}/admin.png`, fullPage: true });
  await a.click(`button[data-action="revoke-token"][data-token-id="${mine.id}"]`);
  await a.click('#confirm-ok');
  await a.locator(`button[data-token-id="${mine.id}"]`).waitFor({ state: 'detached', timeout: T });
  check((await api('GET', '/v1/islands', undefined, secret)).status === 401, 'the revoked token stops');
  // The panic switch asks, stops every island, and clears.
  await a.click('#panic');
  await a.click('#confirm-ok');
  await a.waitForFunction(() => /Panic engaged/.test(document.querySelector('#panic-status')?.textContent || ''),
    null, { timeout: 90_000 });
  check((await api('GET', '/v1/panic')).json.panicked === true, 'panic engaged');
  await a.click('#panic-clear');
  await a.click('#confirm-ok');
  await a.waitForFunction(() => /off/.test(document.querySelector('#panic-status')?.textContent || ''),
    null, { timeout: 90_000 });
  check((await api('GET', '/v1/panic')).json.panicked === false, 'panic cleared');

  step('add an agent from the UI; purge asks first');
  await a.goto(`${BASE}/#/`);
  // Panic stopped the islands; clearing it wakes them.
  await a.locator(`[data-island="${viaUi}"] .island-container`).filter({ hasText: 'running' })
    .waitFor({ timeout: 90_000 });
  await a.click(`[data-island="${viaUi}"] button[data-action="add-agent"]`);
  await a.locator('#input-dialog').waitFor({ state: 'visible', timeout: T });
  await a.fill('#input-value', 'helper');
  await a.selectOption('#input-select', 'custom');
  await a.click('#input-ok');
  await a.locator(`[data-island="${viaUi}"] [data-agent="a2"]`).waitFor({ timeout: T });
  await a.click(`[data-island="${viaUi}"] button[data-action="purge"]`);
  await a.locator('#confirm-dialog').waitFor({ state: 'visible', timeout: T });
  await a.click('#confirm-ok');
  const forceOrGone = await Promise.race([
    a.locator('#confirm-force').waitFor({ state: 'visible', timeout: T }).then(() => 'force'),
    a.locator(`[data-island="${viaUi}"]`).waitFor({ state: 'detached', timeout: T }).then(() => 'gone'),
  ]);
  if (forceOrGone === 'force') {
    await a.click('#confirm-force');
    await a.locator(`[data-island="${viaUi}"]`).waitFor({ state: 'detached', timeout: T });
  }
  check((await api('GET', `/v1/islands/${viaUi}`)).status === 404, 'purged from the UI');

  step('a cross-origin page cannot drive the daemon through the logged-in browser');
  // Another port on this host is the same site (the SameSite=Strict cookie goes along), but
  // another origin: only the Origin check stands between it and the daemon.
  // A real server on loopback (a page from a routed fake would count as a public address,
  // and Chromium's local-network rules would stop its requests before the daemon saw them).
  const evil = httpServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>elsewhere</title><p>elsewhere</p>');
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  evil.unref(); // never what keeps this script alive
  const evilOrigin = `http://127.0.0.1:${evil.address().port}`;
  const target = `${PREFIX}-evil`;
  await a.goto(`${evilOrigin}/page.html`);
  // The browser sees the daemon's answer even where the page may not read it.
  const answered = a.waitForResponse((r) => r.url() === `${BASE}/v1/islands` && r.request().method() === 'POST',
    { timeout: 10_000 });
  const attempt = await a.evaluate(async ({ base, target, island }) => {
    const out = {};
    try {
      const r = await fetch(`${base}/v1/islands`, {
        method: 'POST', mode: 'no-cors', credentials: 'include',
        headers: { 'Content-Type': 'text/plain' },
        body: JSON.stringify({ name: target, no_repo: true }),
      });
      out.post = r.type;
    } catch (e) { out.post = `error ${e}`; }
    out.ws = await new Promise((resolve) => {
      const ws = new WebSocket(`${base.replace('http', 'ws')}/v1/islands/${island}/agents/a1/session`);
      ws.onopen = () => resolve('open');
      ws.onerror = () => resolve('refused');
      setTimeout(() => resolve('timeout'), 10000);
    });
    return out;
  }, { base: BASE, target, island: viaApi });
  check(attempt.ws === 'refused', `cross-origin websocket: ${JSON.stringify(attempt)}`);
  check((await api('GET', `/v1/islands/${target}`)).status === 404, 'the cross-origin POST created nothing');
  const refusal = await answered.catch((e) => { throw new Error(`no answer to the cross-origin POST (${JSON.stringify(attempt)}): ${e}`); });
  check(refusal.status() === 403, `the daemon answered the cross-origin POST with ${refusal.status()}`);
  evil.closeAllConnections();
  evil.close();
  await desk.close();

  step('phone');
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const p = await phone.newPage();
  watch(p, 'phone');
  await login(p, OWNER);
  await p.locator(`[data-island="${viaApi}"]`).waitFor({ timeout: T });
  const wide = await p.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `no horizontal scrolling on the fleet (scrollWidth ${wide})`);
  await p.screenshot({ path: `${ARTIFACTS}/phone-fleet.png`, fullPage: true });
  // Output that scrolls off before the phone attaches (the panic's restart emptied the pane).
  const pr = await api('POST', `/v1/islands/${viaApi}/agents/a1/prompt`, { text: 'seq 1 100 | sed s/^/ph-/', submit: true });
  check(pr.status === 200, `prompt via the API: ${pr.text}`);
  await p.locator(`a[data-attach="${viaApi}/a1"]`).tap();
  await status(p, 'live');
  await p.locator('#keyrow').waitFor({ state: 'visible', timeout: T });
  await p.fill('#prompt-text', 'echo phone-$((2*21))');
  await p.locator('#prompt-send').tap();
  await waitScreen(p, 'phone-42', 'the phone prompt');
  // The key row: Up recalls the last command, Enter runs it again.
  await p.locator('#keyrow [data-key="Up"]').tap();
  await p.locator('#keyrow [data-key="Enter"]').tap();
  await p.waitForFunction(() => (document.querySelector('#terminal .xterm-rows')?.innerText.match(/phone-42/g) || []).length >= 2,
    null, { timeout: T });
  // The history is in the terminal's own scrollback (what touch scrolling moves through): at
  // its top, what scrolled off before this phone attached.
  await p.evaluate(() => window.dejimaTerm.scrollToTop());
  await p.waitForFunction(() => /^ph-1$/m.test(document.querySelector('#terminal .xterm-rows')?.innerText || ''),
    null, { timeout: T }).catch(async () => {
    throw new Error(`the phone's history does not reach back:\n${await screenText(p)}`);
  });
  await p.evaluate(() => window.dejimaTerm.scrollToBottom());
  const wideT = await p.evaluate(() => document.documentElement.scrollWidth);
  check(wideT <= 390, `no horizontal scrolling on the terminal view (scrollWidth ${wideT})`);
  await p.screenshot({ path: `${ARTIFACTS}/phone-terminal.png` });
  await phone.close();

  step('a viewer only watches; logout ends the login');
  const vctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const v = await vctx.newPage();
  watch(v, 'viewer');
  await login(v, VIEWER);
  check((await v.textContent('#whoami')).includes('viewer'), 'whoami shows viewer');
  await v.goto(`${BASE}/#/t/${viaApi}/a1`);
  await status(v, 'observing');
  check(await v.isChecked('#observe') && await v.isDisabled('#observe'), 'a viewer is always an observer');
  await v.click('#logout');
  await v.locator('#login-token').waitFor({ timeout: T });
  const after = await v.evaluate(async () => (await fetch('/ui/whoami')).status);
  check(after === 401, `after logout whoami is ${after}`);
  await vctx.close();

  const real = consoleErrors.filter((e) => !/Failed to load resource|WebSocket connection|401|403/.test(e));
  check(real.length === 0, `console errors: ${real.join('\n')}`);
});
