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
