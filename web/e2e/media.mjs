// Attachments and search in the web client, in headless Chromium: node media.mjs <base url>
// <word>. The script signs in, starts a chat and prints "SEND <token> <conversation>";
// api/browser_media_test.go then posts a message with attachments (an image on a listed
// host, an image on a host the page does not list, a PDF) and sixty more after it, and
// answers "OK". The page must find the message by <word>, open the conversation there
// (older than the history it loaded) and show the listed image, loaded and sized, and the
// rest as links. The test itself checks that the unlisted host was never contacted.
import { launch, verdict } from './browser.mjs';
import { createInterface } from 'node:readline';

const [base, word] = process.argv.slice(2);
const run = Date.now().toString(36);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const log = (s) => console.error('e2e:', s);

// The image hosts are httptest TLS servers with their own certificates.
const browser = await launch(['--ignore-certificate-errors']);

await verdict(browser, async () => {
    const page = await (await browser.newContext()).newPage();
    page.on('pageerror', (e) => log(`page error: ${e.message}`));
    page.on('console', (m) => log(`console: ${m.text()}`));
    await page.goto(base + '/');
    await page.fill('[data-testid=signin-name]', `Alice ${run}`);
    await page.click('[data-testid=signin-button]');
    await page.waitForSelector('[data-testid=status][data-state=live]', { timeout: 15000 });
    await page.fill('[data-testid=new-chat-input]', `bob-${run}`);
    await page.click('[data-testid=new-chat-button]');
    await page.waitForSelector('[data-testid=conversation-list] [data-conversation-id]');
    const token = await page.evaluate(() => sessionStorage.getItem('chatd.token'));
    const conv = await page.$eval('[data-conversation-id]', (e) => e.dataset.conversationId);

    console.log(`SEND ${token} ${conv}`);
    if ((await lines.next()).value !== 'OK') throw new Error('the test did not send the messages');
    await page.waitForSelector('[data-testid=messages] [data-seq="61"]', { timeout: 20000 });
    // A fresh page loads the latest 50 when the conversation is opened: seq 1 is older.
    await page.reload();
    await page.waitForSelector('[data-testid=status][data-state=live]', { timeout: 15000 });
    await page.click('[data-testid=conversation-list] [data-conversation-id] button');
    await page.waitForSelector('[data-testid=messages] [data-seq="61"]', { timeout: 20000 });
    if (await page.$('[data-testid=messages] [data-seq="1"]')) throw new Error('seq 1 is already loaded: the search would prove nothing');
    log('61 messages arrived; the first is not loaded');

    await page.fill('[data-testid=search-input]', word);
    await page.click('[data-testid=search-button]');
    const hit = await page.waitForSelector('[data-testid=search-hit]', { timeout: 15000 });
    const snippet = await hit.$eval('.search-snippet', (e) => e.innerHTML);
    if (!snippet.includes(`<mark>${word}</mark>`)) throw new Error(`snippet without the marked word: ${snippet}`);
    if ((await page.$$('[data-testid=search-hit]')).length !== 1) throw new Error('one message matches');
    await hit.click();
    log('search found the message; opening it');

    const shown = '[data-testid=messages] [data-seq="1"]';
    await page.waitForSelector(`${shown} [data-testid=attachment-image]`, { timeout: 20000 });
    await page.waitForFunction((sel) => {
      const img = document.querySelector(`${sel} [data-testid=attachment-image]`);
      return img && img.complete && img.naturalWidth === 40 && img.naturalHeight === 30;
    }, shown, { timeout: 20000 });
    const img = await page.$eval(`${shown} [data-testid=attachment-image]`, (e) => ({
      loading: e.getAttribute('loading'), width: e.getAttribute('width'), height: e.getAttribute('height'), alt: e.alt,
    }));
    if (img.loading !== 'lazy' || img.width !== '40' || img.height !== '30' || img.alt !== 'scratch.png') {
      throw new Error(`image attributes: ${JSON.stringify(img)}`);
    }
    if ((await page.$$(`${shown} img`)).length !== 1) throw new Error('only the listed host is shown as an image');
    const links = await page.$$eval(`${shown} [data-testid=attachment-link]`, (els) => els.map((e) => e.textContent));
    if (links.length !== 2 || !links[0].includes('elsewhere.png') || !links[1].includes('receipt.pdf')) {
      throw new Error(`links: ${JSON.stringify(links)}`);
    }
    const inView = await page.$eval(shown, (e) => {
      const r = e.getBoundingClientRect();
      const box = document.getElementById('messages-scroll').getBoundingClientRect();
      return r.bottom > box.top && r.top < box.bottom;
    });
    if (!inView) throw new Error('the found message is not scrolled into view');
    log(`image shown ${JSON.stringify(img)}; links ${JSON.stringify(links)}`);
});
