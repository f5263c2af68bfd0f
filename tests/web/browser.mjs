// What the browser scripts share: Debian's Chromium through playwright-core, and the verdict
// tests/web.rs reads ("ok" printed last; otherwise the error, and exit code 1).
import { chromium } from 'playwright-core';

export async function withBrowser(body) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    await body(browser);
    console.log('ok');
  } catch (e) {
    console.error(e.stack || String(e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
