// Drives the web client in headless Chromium while the application's backend acts through
// chatd's server API (api/browser_members_test.go): node members.mjs <alice's instance>
// <bob's instance> <service key> <screenshot directory>. Bob's page and the server API use the second instance, so
// every live update below crosses instances. It shows that system messages are rendered
// apart (live and from history), the conversation's metadata and closed state are shown,
// participants follow member_added / member_removed live, and leaving a group (or being
// removed) takes the conversation out of the list.
import { launch, verdict } from './browser.mjs';
import { join } from 'node:path';

const [baseA, baseB, serviceKey, artifacts] = process.argv.slice(2);
const run = Date.now().toString(36);
const log = (s) => console.error('e2e:', s);
const wait = { timeout: 15000 };
const browser = await launch();

// server calls the server API with the service key, as the application's backend does.
async function server(method, path, body) {
  const r = await fetch(`${baseB}/v1/server${path}`, {
    method,
    headers: { Authorization: 'Bearer ' + serviceKey, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.status === 204 ? null : r.json();
}

async function signIn(base, name) {
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => log(`${name}: page error: ${e.message}`));
  page.on('dialog', (d) => d.dismiss()); // a script injected through metadata would show here
  await page.goto(base + '/');
  await page.fill('[data-testid=signin-name]', name);
  await page.click('[data-testid=signin-button]');
  await page.waitForSelector('[data-testid=status][data-state=live]', wait);
  return page;
}

const item = (id) => `[data-testid=conversation-list] [data-conversation-id="${id}"]`;
const participant = (id) => `[data-testid=participants] [data-user-id="${id}"]`;
const system = '[data-testid=messages] li[data-kind=system]';

async function open(page, id) {
  await page.click(`${item(id)} button`, wait);
  await page.waitForSelector('#conversation-view:not([hidden])', wait);
}

// checkSystem: the system message is shown apart, as text, with no sender and no actions.
async function checkSystem(page, who) {
  const el = await page.waitForSelector(system, wait);
  const shown = await el.evaluate((li) => ({ text: li.querySelector('.body').textContent, html: li.innerHTML,
    sender: !!li.querySelector('.sender'), actions: !!li.querySelector('button'), align: getComputedStyle(li).alignSelf }));
  if (shown.text !== 'Booking confirmed for <b>Saturday</b>') throw new Error(`${who}: system message reads ${shown.text}`);
  if (shown.html.includes('<b>')) throw new Error(`${who}: the system message was rendered as HTML`);
  if (shown.sender || shown.actions) throw new Error(`${who}: a system message shows a sender or actions: ${shown.html}`);
  if (shown.align !== 'center') throw new Error(`${who}: a system message is not centred (${shown.align})`);
}

await verdict(browser, async () => {
  const alice = await signIn(baseA, `Alice ${run}`);
  const bob = await signIn(baseB, `Bob ${run}`);
  const carol = await signIn(baseB, `Carol ${run}`);
  const [aliceID, bobID, carolID] = ['alice', 'bob', 'carol'].map((n) => `${n}-${run}`);

  const conv = await server('POST', '/conversations', { participant_ids: [aliceID, bobID], kind: 'group', title: `Bike ${run}`,
    external_id: `listing:${run}`, metadata: { title: 'Bike, 3 gears', url: 'https://shop.example/l/1' } });
  await open(alice, conv.id); // its conversation event put it in the list, live
  const link = await alice.$eval('[data-testid=conv-meta] [data-testid=conv-link]', (a) => ({ href: a.href, text: a.textContent, rel: a.rel }));
  if (link.href !== 'https://shop.example/l/1' || link.text !== 'Bike, 3 gears' || !link.rel.includes('noopener')) throw new Error(`metadata link ${JSON.stringify(link)}`);
  await alice.waitForSelector('[data-testid=leave-button]:visible', wait);
  log('alice sees the listing title and link of a conversation the server opened');

  const posted = await server('POST', `/conversations/${conv.id}/messages`, { body: 'Booking confirmed for <b>Saturday</b>' });
  if (posted.kind !== 'system' || posted.sender_id !== null) throw new Error(`posted ${JSON.stringify(posted)}`);
  await checkSystem(alice, 'alice (live)');
  await open(bob, conv.id);
  await checkSystem(bob, 'bob (history)');
  log('the system message is shown apart, live and from history');

  await server('POST', `/conversations/${conv.id}/members`, { user_ids: [carolID] });
  await bob.waitForSelector(participant(carolID), wait);
  // The event has carol's id; her name follows.
  await alice.waitForSelector(`${participant(carolID)}:has-text("Carol ${run}")`, wait);
  await carol.waitForSelector(item(conv.id), wait);
  log('carol, added by the server API, appears in the participants lists live, and has the conversation');

  await bob.click('[data-testid=leave-button]');
  await bob.waitForSelector(item(conv.id), { state: 'detached', ...wait });
  await bob.waitForSelector('#conversation-view', { state: 'hidden', ...wait });
  await alice.waitForSelector(participant(bobID), { state: 'detached', ...wait });
  log('bob left the group: gone from his list, and from alice\'s participants live');

  await server('POST', `/conversations/${conv.id}/close`);
  await alice.fill('[data-testid=composer]', 'still there?');
  await alice.press('[data-testid=composer]', 'Enter');
  await alice.waitForSelector('[data-testid=messages] [data-pending=failed]', wait);
  await alice.waitForSelector('[data-testid=closed-notice]:visible', wait);
  await alice.waitForSelector('[data-testid=conv-closed]:visible', wait);
  if (!(await alice.$eval('[data-testid=composer]', (c) => c.disabled))) throw new Error('the composer of a closed conversation is enabled');
  if (await alice.$('[data-testid=messages] [data-pending=failed] [data-testid=retry-button]')) throw new Error('a send refused as closed offers a retry');
  log('a send to the closed conversation shows as refused, and the composer is disabled');
  await alice.screenshot({ path: join(artifacts, 'closed-conversation.png') });

  await server('DELETE', `/conversations/${conv.id}/members/${aliceID}`);
  await alice.waitForSelector(item(conv.id), { state: 'detached', ...wait });
  await alice.waitForSelector('#conversation-view', { state: 'hidden', ...wait });
  await alice.waitForSelector('[data-testid=outbox]', { state: 'hidden', ...wait }); // the refused send went with it
  log('alice, removed by the server API, loses the conversation live');

  const direct = await server('POST', '/conversations', { participant_ids: [aliceID, bobID], kind: 'direct',
    external_id: `booking:${run}`, metadata: { title: 'Evil <i>listing</i>', url: 'javascript:alert(1)' } });
  await open(alice, direct.id);
  const meta = await alice.$eval('[data-testid=conv-meta]', (p) => ({ text: p.textContent, links: p.querySelectorAll('a').length }));
  if (meta.text !== 'Evil <i>listing</i>' || meta.links) throw new Error(`a javascript: url became a link, or the title markup: ${JSON.stringify(meta)}`);
  if (await alice.isVisible('[data-testid=leave-button]')) throw new Error('a direct conversation offers to leave');
  log('a direct conversation: no leave button; a javascript: url is no link');
});
