// `dejima ui` in a real browser: the printed one-time URL opens the dashboard of a daemon on
// the socket (no login page: the browser is the socket's owner through it), a terminal works
// through the pass-through, and the URL does not open a second browser. tests/web.rs starts
// `dejima ui --no-open` and runs this with URL and ISLAND; "ok" last when it passed.
import { withBrowser } from './browser.mjs';

const { URL: url, ISLAND, ARTIFACTS } = process.env;
const T = 30_000;
await withBrowser(async (browser) => {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(url);
  await page.locator(`[data-island="${ISLAND}"]`).waitFor({ timeout: T });
  const who = await page.textContent('#whoami');
  if (!who.includes('owner')) throw new Error(`whoami through dejima ui: ${who}`);
  if (new URL(page.url()).search !== '') throw new Error(`the token stays in the address bar: ${page.url()}`);
  await page.click(`a[data-attach="${ISLAND}/a1"]`);
  await page.waitForFunction(() => document.querySelector('#term-status')?.textContent?.trim() === 'live', null, { timeout: T });
  await page.click('#terminal');
  await page.keyboard.type('echo through-ui-$((6*7))\n');
  await page.waitForFunction(() => (document.querySelector('#terminal .xterm-rows')?.innerText || '').includes('through-ui-42'),
    null, { timeout: T });
  if (ARTIFACTS) await page.screenshot({ path: `${ARTIFACTS}/dejima-ui.png` });
  // The link was for one browser: another one gets nothing.
  const other = await browser.newContext();
  const p2 = await other.newPage();
  const r = await p2.goto(url);
  if (r.status() !== 403) throw new Error(`a second browser with the same link got ${r.status()}`);
});
