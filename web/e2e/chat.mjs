// Drives the web client in headless Chromium as two users, through a load balancer that
// api/browser_test.go controls: node chat.mjs <base url>. When the script prints "DROP" the
// test cuts every connection through the balancer and answers "OK" on stdin, so the
// client's reconnection and resume by cursor (chatd.js) are exercised for real.
import { launch, runScript } from './browser.mjs';
import { createInterface } from 'node:readline';

const base = process.argv[2];
const run = Date.now().toString(36);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const log = (s) => console.error('e2e:', s);

// Record every durable message event and every reset the page's EventSources receive, so
// the test can check the stream itself: the UI would hide a duplicate, and a reset makes
// the page reload over REST, which would hide an event the stream lost.
function recordStream() {
  const Native = window.EventSource;
  window.__seen = [];
  window.__resets = [];
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => window.__seen.push({ id: e.lastEventId, seq: JSON.parse(e.data).seq }));
      this.addEventListener('reset', (e) => window.__resets.push(e.data));
    }
  };
}

const browser = await launch();

async function signIn(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(recordStream);
  page.on('pageerror', (e) => log(`${name}: page error: ${e.message}`));
  await page.goto(base + '/');
  await page.fill('[data-testid=signin-name]', name);
  await page.click('[data-testid=signin-button]');
  await page.waitForSelector('[data-testid=status][data-state=live]', { timeout: 15000 });
  return page;
}

const seqsShown = (page) => page.$$eval('[data-testid=messages] [data-seq]', (els) => els.map((e) => Number(e.dataset.seq)));

await runScript(browser, async () => {
  const alice = await signIn(`Alice ${run}`);
  const bob = await signIn(`Bob ${run}`);
  const bobID = `bob-${run}`;
  log('both signed in');

  await alice.fill('[data-testid=new-chat-input]', bobID);
  await alice.click('[data-testid=new-chat-button]');
  await alice.waitForSelector('[data-testid=conversation-list] [data-conversation-id]');
  await alice.fill('[data-testid=composer]', 'hello <b>bob</b>');
  await alice.press('[data-testid=composer]', 'Enter');
  await alice.waitForSelector('[data-testid=messages] [data-seq="1"]');
  log('alice sent seq 1');

  await bob.click('[data-testid=conversation-list] [data-conversation-id] button', { timeout: 15000 });
  await bob.waitForSelector('[data-testid=messages] [data-seq="1"]');
  const html = await bob.$eval('[data-testid=messages] [data-seq="1"]', (e) => e.innerHTML);
  if (html.includes('<b>')) throw new Error('message text was rendered as HTML');
  log('bob sees it, escaped');

  await bob.fill('[data-testid=composer]', 'typing');
  await bob.type('[data-testid=composer]', '…');
  await alice.waitForFunction(() => document.querySelector('[data-testid=typing-indicator]').textContent.includes('typing'), null, { timeout: 15000 });
  log('alice sees bob typing');

  // Cut every connection, then send ten messages while bob's EventSource reconnects.
  console.log('DROP');
  const answer = await lines.next();
  if (answer.value !== 'OK') throw new Error('the test did not drop the connections');
  const token = await alice.evaluate(() => sessionStorage.getItem('chatd.token'));
  const conv = await alice.$eval('[data-conversation-id]', (e) => e.dataset.conversationId);
  for (let i = 2; i <= 11; i++) {
    const r = await fetch(`${base}/v1/conversations/${conv}/messages`, {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ body: `while away ${i}`, client_id: `away-${run}-${i}` }),
    });
    if (r.status !== 201) throw new Error(`send ${i}: ${r.status}`);
  }
  await bob.waitForSelector('[data-testid=messages] [data-seq="11"]', { timeout: 20000 });
  // The page may show seq 11 from a REST reload; give the stream itself the same time to
  // deliver it (a failure to is reported below, with what it did deliver).
  await bob.waitForFunction(() => window.__seen.some((e) => e.seq === 11), null, { timeout: 20000 }).catch(() => {});
  const shown = await seqsShown(bob);
  if (JSON.stringify(shown) !== JSON.stringify([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])) throw new Error(`bob shows ${shown}`);
  const seen = await bob.evaluate(() => window.__seen);
  const ids = seen.map((e) => e.id);
  if (new Set(ids).size !== ids.length) throw new Error(`a message event arrived twice: ${JSON.stringify(seen)}`);
  const seqs = seen.map((e) => e.seq);
  const resets = await bob.evaluate(() => window.__resets);
  if (resets.length) throw new Error(`the resume was reset (the page reloaded over REST): ${resets}`);
  // Every message exactly once, in order, from the stream alone.
  if (JSON.stringify(seqs) !== JSON.stringify([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])) throw new Error(`the stream delivered ${seqs}, not 1..11`);
  log(`bob resumed after the drop: events ${seqs}`);
  await bob.waitForSelector('[data-testid=status][data-state=live]');
});
