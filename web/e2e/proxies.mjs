// Drives the page (chatd.js) in headless Chromium behind the proxies api/browser_test.go
// (TestBrowserBehindProxies) sets up: node proxies.mjs '<json config>'. The config lists the
// proxy setups ({name, url, expect}) and where screenshots go. Prints STREAMS to ask the Go
// test how many streams chatd has open (it answers a number on stdin), then PASS or FAIL.
import { close, launch } from './browser.mjs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const run = Date.now().toString(36);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const log = (s) => console.error('e2e:', s);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await launch();

/** Asks the Go test for chatd_streams_open summed over both instances. */
async function streamsOpen() {
  console.log('STREAMS');
  const answer = await lines.next();
  return Number(answer.value);
}

/** Waits until fn() is true, polling; throws what() on timeout. */
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${typeof what === 'function' ? await what() : what}`);
    await sleep(100);
  }
}

/** A user that is not a browser: REST through the same proxy with a dev token. */
async function restUser(base, name) {
  const id = name.toLowerCase().replace(/\s+/g, '-');
  const r = await fetch(`${base}/dev/token`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sub: id, name }) });
  if (!r.ok) throw new Error(`dev token for ${name}: ${r.status}`);
  const { token } = await r.json();
  const call = async (method, path, body) => {
    const res = await fetch(base + path, { method, headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body) });
    const data = res.status === 204 ? null : await res.json();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
    return data;
  };
  return { id, call };
}

const newContext = () => browser.newContext({ viewport: { width: 1000, height: 700 } });

/** Opens the page in context and signs in as name; resolves when connected and loaded. */
async function signIn(context, base, name) {
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`${name}: page error: ${e.message}`));
  await page.goto(base + '/');
  await page.fill('[data-testid=signin-name]', name);
  await page.click('[data-testid=signin-button]');
  await page.waitForSelector('[data-testid=status]:is([data-state=live], [data-state=fallback])', { timeout: 20000 });
  return page;
}

const status = (page) => page.$eval('[data-testid=status]', (e) => ({ state: e.dataset.state, transport: e.dataset.transport, role: e.dataset.role, text: e.textContent }));

// ---- each proxy setup: a message both ways, the transport shown ------------------------------

async function acrossProxy(setup) {
  const { name, url, expect } = setup;
  const context = await newContext();
  try {
    const me = `Carol ${name} ${run}`;
    const page = await signIn(context, url, me);
    const dave = await restUser(url, `Dave ${name} ${run}`);
    const conv = await dave.call('POST', '/v1/conversations', { participant_id: me.toLowerCase().replace(/\s+/g, '-') });

    let t0 = Date.now();
    await dave.call('POST', `/v1/conversations/${conv.id}/messages`, { body: `from dave via ${name}`, client_id: `d-${run}-${name}` });
    await page.click(`[data-conversation-id="${conv.id}"] button`, { timeout: 10000 });
    await page.waitForSelector(`[data-testid=messages] li:has-text("from dave via ${name}")`, { timeout: 10000 });
    // A second one while the conversation is open: this one can only come live.
    t0 = Date.now();
    await dave.call('POST', `/v1/conversations/${conv.id}/messages`, { body: `live from dave via ${name}`, client_id: `d2-${run}-${name}` });
    await page.waitForSelector(`[data-testid=messages] li:has-text("live from dave via ${name}")`, { timeout: 8000 });
    const inMs = Date.now() - t0;

    t0 = Date.now();
    await page.fill('[data-testid=composer]', `from carol via ${name}`);
    await page.press('[data-testid=composer]', 'Enter');
    await until(async () => (await dave.call('GET', `/v1/conversations/${conv.id}/messages`)).messages.some((m) => m.body === `from carol via ${name}`),
      8000, `dave did not get carol's message via ${name}`);
    const outMs = Date.now() - t0;

    const st = await status(page);
    if (!st.transport || !st.text.includes(st.transport === 'sse' ? 'stream' : 'polling')) throw new Error(`${name}: the page does not show its transport: ${JSON.stringify(st)}`);
    if (expect && st.transport !== expect) throw new Error(`${name}: expected transport ${expect}, the page is on ${JSON.stringify(st)}`);
    if (st.transport === 'poll') {
      if (st.state !== 'fallback') throw new Error(`${name}: polling but status ${st.state}`);
      const shot = join(cfg.artifacts, `fallback-${name}.png`);
      await page.screenshot({ path: shot });
      log(`screenshot of the fallback mode: ${shot}`);
    }
    log(`${name}: page on ${st.transport} (${st.text}); dave → page ${inMs} ms, page → dave ${outMs} ms`);
  } finally {
    await context.close();
  }
}

// ---- offline: three messages, a reload, back online -------------------------------------------

async function offline(base) {
  const context = await newContext();
  try {
    const me = `Erin ${run}`;
    const page = await signIn(context, base, me);
    const frank = await restUser(base, `Frank ${run}`);
    const conv = await frank.call('POST', '/v1/conversations', { participant_id: me.toLowerCase().replace(/\s+/g, '-') });
    await page.click(`[data-conversation-id="${conv.id}"] button`, { timeout: 10000 });

    await context.setOffline(true);
    await page.waitForSelector('[data-testid=status][data-state=offline]', { timeout: 5000 });
    for (let i = 1; i <= 3; i++) {
      await page.fill('[data-testid=composer]', `offline ${i} ${run}`);
      await page.press('[data-testid=composer]', 'Enter');
    }
    await until(async () => (await page.$$('[data-testid=messages] li[data-pending=pending]')).length === 3, 5000, 'three pending messages are not shown');
    log('offline: three messages shown as pending');

    // The reload happens while chatd is still unreachable (the browser itself cannot load a
    // page offline): the outbox must come back from storage, not from the server.
    await context.route('**/v1/**', (route) => route.abort('internetdisconnected'));
    await context.setOffline(false);
    await page.reload();
    await page.waitForSelector('[data-testid=outbox][data-count="3"]', { timeout: 10000 });
    log('reloaded while chatd is unreachable: the outbox still holds three');
    const t0 = Date.now();
    await context.unroute('**/v1/**');

    const bodies = [1, 2, 3].map((i) => `offline ${i} ${run}`);
    const got = await until(async () => {
      const ms = (await frank.call('GET', `/v1/conversations/${conv.id}/messages`)).messages.filter((m) => m.body.startsWith('offline '));
      return ms.length >= 3 && ms;
    }, 20000, 'the three messages did not all arrive');
    await sleep(1500); // a duplicate would come now, from a second sender or a retry
    const final = (await frank.call('GET', `/v1/conversations/${conv.id}/messages`)).messages.filter((m) => m.body.startsWith('offline '));
    if (JSON.stringify(final.map((m) => m.body)) !== JSON.stringify(bodies)) throw new Error(`frank got ${JSON.stringify(final.map((m) => [m.seq, m.body]))}`);
    await page.waitForSelector('[data-testid=outbox]:not([data-count="1"]):not([data-count="2"]):not([data-count="3"])', { state: 'attached', timeout: 10000 });
    log(`back online: ${got.length} arrived once each, in order, ${Date.now() - t0} ms after chatd was reachable again`);
  } finally {
    await context.close();
  }
}

// ---- eight tabs of one user: one stream; the leader closes, the others go on ------------------

async function eightTabs(base) {
  const context = await newContext();
  try {
    const me = `Gina ${run}`;
    const pages = [];
    for (let i = 0; i < 8; i++) pages.push(await signIn(context, base, me));
    const roles = await Promise.all(pages.map(async (p) => (await status(p)).role));
    if (roles.filter((r) => r === 'leader').length !== 1) throw new Error(`roles: ${roles}`);
    let n = 0;
    await until(async () => (n = await streamsOpen()) === 1, 10000, () => `chatd has ${n} streams open for eight tabs, not 1`);
    log('eight tabs: chatd sees one stream');

    const hank = await restUser(base, `Hank ${run}`);
    const conv = await hank.call('POST', '/v1/conversations', { participant_id: me.toLowerCase().replace(/\s+/g, '-') });
    const send = (i) => hank.call('POST', `/v1/conversations/${conv.id}/messages`, { body: `tabs ${i}`, client_id: `h-${run}-${i}` });
    await send(1);
    // Each tab counts the messages it was given live in the conversation's unread badge: one
    // lost event leaves the count short, one given twice is not counted twice (by seq).
    const badge = (p) => p.$eval(`[data-conversation-id="${conv.id}"]`, (li) => li.querySelector('.badge')?.textContent || '0').catch(() => 'none');
    const allShow = async (ps, count, what) => {
      await until(async () => (await Promise.all(ps.map(badge))).every((b) => b === String(count)), 10000,
        async () => `${what}: badges ${await Promise.all(ps.map(badge))}`);
    };
    await allShow(pages, 1, 'the first message');
    log('all eight tabs show the new message');

    const leader = pages[roles.indexOf('leader')];
    const rest = pages.filter((p) => p !== leader);
    const t0 = Date.now();
    await leader.close();
    // Sent during the takeover: the next leader must resume from the shared cursor.
    for (let i = 2; i <= 4; i++) await send(i);
    await allShow(rest, 4, 'after the leader closed');
    const took = Date.now() - t0;
    const after = await Promise.all(rest.map(async (p) => (await status(p)).role));
    if (after.filter((r) => r === 'leader').length !== 1) throw new Error(`roles after the leader closed: ${after}`);
    await until(async () => (n = await streamsOpen()) === 1, 10000, () => `after the takeover chatd has ${n} streams open, not 1`);
    log(`leader closed: the other seven got all three messages sent meanwhile within ${took} ms, still one stream`);
    if (took > 10000) throw new Error(`the takeover took ${took} ms`);
  } finally {
    await context.close();
  }
}

try {
  for (const setup of cfg.setups) await acrossProxy(setup);
  const defaults = cfg.setups[0].url;
  await offline(defaults);
  await eightTabs(defaults);
  console.log('PASS');
} catch (e) {
  console.log('FAIL ' + (e && e.stack ? e.stack : e).toString().replace(/\n/g, ' | '));
  process.exitCode = 1;
} finally {
  await close(browser);
  process.exit();
}
