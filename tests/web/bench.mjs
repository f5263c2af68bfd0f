// The dashboard's budgets in headless Chromium (tests/bench_web.rs runs this and judges):
// - fleet: navigation → every island card rendered and the main thread idle, over ROUNDS loads;
// - echo: a keystroke typed into the browser terminal (xterm.js → websocket → tmux → back →
//   rendered in xterm's buffer), against the same round trip by a bare WebSocket in the same
//   page (no terminal), sample by sample.
// env: BASE, OWNER (token), ISLAND (one running island, agent a1 a shell), COUNT (islands),
// ROUNDS, SAMPLES. Prints one JSON line: {fleet_ms: [...], term_ms: [...], ws_ms: [...]}.
import { chromium } from 'playwright-core';

const { BASE, OWNER, ISLAND } = process.env;
const COUNT = Number(process.env.COUNT || 100);
const ROUNDS = Number(process.env.ROUNDS || 5);
const SAMPLES = Number(process.env.SAMPLES || 100);
const T = 60_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(BASE + '/');
  await page.fill('#login-token', OWNER);
  await page.click('#login-submit');
  await page.locator('#whoami').waitFor({ state: 'visible', timeout: T });

  // Fleet: a fresh navigation each round (assets revalidated, as a returning browser does).
  const fleet = [];
  for (let r = 0; r < ROUNDS; r++) {
    await page.goto('about:blank');
    await page.goto(BASE + '/#/');
    await page.waitForFunction((n) => document.querySelectorAll('[data-island]').length >= n, COUNT, { timeout: T });
    fleet.push(await page.evaluate(() => new Promise((resolve) =>
      requestAnimationFrame(() => setTimeout(() => resolve(performance.now()), 0)))));
  }

  // Echo: the terminal, then a bare websocket, alternating so drift hits both alike.
  await page.goto(`${BASE}/#/t/${ISLAND}/a1`);
  await page.waitForFunction(() => document.querySelector('#term-status')?.textContent?.trim() === 'live', null, { timeout: T });
  const out = await page.evaluate(async ({ island, samples }) => {
    const term = window.dejimaTerm;
    const enc = (s) => btoa(s);
    const dec = (b) => atob(b);
    // The terminal: input as if typed, done when xterm has parsed the echo into its buffer.
    const typed = (ch) => new Promise((resolve) => {
      const t0 = performance.now();
      const sub = term.onWriteParsed(() => {
        const b = term.buffer.active;
        const line = b.getLine(b.baseY + b.cursorY)?.translateToString(true) || '';
        if (line.endsWith(ch)) {
          sub.dispose();
          resolve(performance.now() - t0);
        }
      });
      term.input(ch, true);
    });
    const ws = new WebSocket(`ws://${location.host}/v1/islands/${island}/agents/a1/session?label=bench-ws`);
    await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
    ws.send(JSON.stringify({ type: 'resize', rows: term.rows, cols: term.cols }));
    let waiting = null;
    ws.onmessage = (m) => {
      const f = JSON.parse(m.data);
      if (f.type === 'data' && waiting && dec(f.b64).includes(waiting.ch)) {
        const w = waiting;
        waiting = null;
        w.resolve(performance.now() - w.t0);
      }
    };
    const bare = (ch) => new Promise((resolve) => {
      waiting = { ch, t0: performance.now(), resolve };
      ws.send(JSON.stringify({ type: 'data', b64: enc(ch) }));
    });
    const settle = () => new Promise((r) => setTimeout(r, 20));
    const termMs = [];
    const wsMs = [];
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    for (let i = 0; i < samples; i++) {
      if (i % 40 === 0) {
        term.input('\x15', true); // Ctrl-U: a fresh line now and then
        await settle();
        await settle();
      }
      termMs.push(await typed(letters[i % 26]));
      await settle();
      wsMs.push(await bare(letters[(i + 13) % 26].toUpperCase()));
      await settle();
    }
    ws.close();
    term.input('\x15', true);
    return { termMs, wsMs };
  }, { island: ISLAND, samples: SAMPLES });
  console.log(JSON.stringify({ fleet_ms: fleet, term_ms: out.termMs, ws_ms: out.wsMs }));
} finally {
  await browser.close();
}
