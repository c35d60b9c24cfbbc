// Launches the system's Chromium for the browser tests: headless, no network of its own, a
// fresh profile. Never downloads a browser.
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [...args, `--user-data-dir=${mkdtempSync(join(tmpdir(), 'chatd-e2e-'))}`],
  }).catch(async (e) => {
    // Playwright manages its own fresh profile; some versions refuse the flag.
    if (!String(e).includes('user-data-dir')) throw e;
    return chromium.launch({ executablePath: '/usr/bin/chromium', args });
  });
}

// runScript runs a browser script's body and prints its verdict, the last PASS or FAIL line that
// api/browser_test.go reads, then closes the browser and exits.
export async function runScript(browser, body) {
  try {
    await body();
    console.log('PASS');
  } catch (e) {
    console.log('FAIL ' + (e && e.stack ? e.stack : e));
    process.exitCode = 1;
  } finally {
    await browser.close();
    process.exit();
  }
}
