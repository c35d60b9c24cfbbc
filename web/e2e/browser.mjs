// Launches the system's Chromium for the browser tests: headless, no network of its own, a
// fresh profile. Never downloads a browser.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// profiles are the profile directories launch made; close removes them.
const profiles = [];

// launch starts Chromium with the common flags and any extra ones a test needs.
export async function launch(extra = []) {
  const profile = mkdtempSync(join(tmpdir(), 'chatd-e2e-'));
  profiles.push(profile);
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [...args, ...extra, `--user-data-dir=${profile}`],
  }).catch(async (e) => {
    // Playwright manages its own fresh profile (and removes it); some versions refuse the flag.
    if (!String(e).includes('user-data-dir')) throw e;
    return chromium.launch({ executablePath: '/usr/bin/chromium', args: [...args, ...extra] });
  });
}

// verdict runs a script's steps and prints its verdict for api/browser_test.go: PASS, or
// FAIL with the error; then the browser closes and the process ends.
export async function verdict(browser, steps) {
  try {
    await steps();
    console.log('PASS');
  } catch (e) {
    console.log('FAIL ' + (e && e.stack ? e.stack : e));
    process.exitCode = 1;
  } finally {
    await close(browser);
    process.exit();
  }
}

// close closes the browser and removes the profile directories launch made.
export async function close(browser) {
  await browser.close();
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
}
