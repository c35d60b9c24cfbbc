// The state machine of web/static/chatd.js against a scripted chatd (fakes.mjs): transport
// selection and switching, de-duplication, backoff, auth and the outbox. Run: node --test
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatClient } from '../static/chatd.js';
import { Clock, FakeServer, KV, Locks, Win, fakeBroadcastChannel, fakeEventSource, settle } from './fakes.mjs';

const msg = (seq) => ({ id: 'm' + seq, conversation_id: 'c1', seq, body: 'b' + seq });
const ev = (seq) => ({ id: 'cur' + seq, type: 'message', data: msg(seq) });

/**
 * A client wired to fakes. route answers fetches (default: polls are held, sessions and
 * tickets succeed, messages are accepted).
 */
function setup({ route, options = {}, shared = null, kv = new KV(), win = new Win(), random = () => 0.5 } = {}) {
  const clock = shared?.clock || new Clock();
  const ES = shared?.ES || fakeEventSource();
  let n = 0;
  const server = shared?.server || new FakeServer((req) => {
    const r = route?.(req);
    if (r !== undefined) return r;
    if (req.path === '/v1/session') return { status: 204 };
    if (req.path === '/v1/tickets') return { status: 201, body: { ticket: 't' + ++n, expires_in: 30 } };
    if (req.path.endsWith('/messages')) return { status: 201, body: { ...msg(100 + ++n), client_id: req.body.client_id, body: req.body.body } };
    return undefined; // polls wait for the test
  });
  const tokens = [];
  const client = new ChatClient({
    user: 'alice',
    getToken: ({ fresh }) => {
      tokens.push(fresh);
      return fresh ? 'fresh-jwt' : 'jwt';
    },
    readyTimeout: 4000,
    ...options,
    env: {
      EventSource: ES,
      fetch: server.fetch,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      now: clock.now,
      random,
      storage: kv,
      locks: shared?.locks || null,
      BroadcastChannel: shared?.BC || null,
      online: () => win.onLine,
      events: win,
      origin: 'http://chatd.test',
      ...(options.env || {}),
    },
  });
  const events = [];
  const statuses = [];
  client.on('event', (e) => events.push(e));
  client.on('status', (s) => statuses.push(`${s.status}/${s.transport}`));
  return { client, clock, ES, server, events, statuses, tokens, kv, win };
}

const seqs = (events) => events.filter((e) => e.type === 'message').map((e) => e.data.seq);

test('the stream comes first: ready makes it live, events arrive in order, the cursor follows them', async () => {
  const { client, clock, ES, events } = setup();
  let connected = 0;
  client.on('connected', () => connected++);
  client.start();
  await clock.advance(0);
  assert.equal(ES.all.length, 1);
  assert.equal(ES.last().query.get('last_event_id'), null);
  ES.last().emit('ready', { cursor: 'cur0' });
  assert.equal(client.status, 'live');
  assert.equal(client.transport, 'sse');
  assert.equal(connected, 1);
  ES.last().emit('message', msg(1), 'cur1');
  ES.last().emit('typing', { conversation_id: 'c1', user_id: 'bob', typing: true });
  ES.last().emit('message', msg(2), 'cur2');
  assert.deepEqual(seqs(events), [1, 2]);
  assert.equal(events[1].type, 'typing');
  assert.equal(client.cursor, 'cur2');
  client.stop();
});

test('no ready within the timeout: long polls from the same cursor, status fallback', async () => {
  const { client, clock, ES, server, events, statuses } = setup({ kv: Object.assign(new KV(), {}) });
  client.cursor = null;
  client.start();
  await clock.advance(0);
  const first = ES.last();
  first.emit('ready', { cursor: 'cur0' });
  first.emit('message', msg(1), 'cur1');
  first.fail(); // cut after 0 ms: not healthy, so a backoff applies
  while (ES.all.length === 1) await clock.advance(10);
  const held = ES.last();
  assert.equal(held.query.get('last_event_id'), 'cur1');
  // A proxy holds this one back: no ready.
  await clock.advance(3999);
  assert.equal(server.of('/v1/events/poll').length, 0, 'switched before the timeout');
  await clock.advance(1);
  assert.ok(held.closed, 'the held stream was not closed');
  const [poll] = server.held('/v1/events/poll');
  assert.ok(poll, 'no poll after the timeout');
  assert.equal(poll.query.get('cursor'), 'cur1');
  assert.equal(poll.query.get('timeout'), '25');
  assert.equal(poll.headers.Authorization, 'Bearer jwt');
  poll.answer(200, { events: [ev(2), ev(3)], cursor: 'cur3' });
  await clock.advance(0);
  assert.equal(client.status, 'fallback');
  assert.equal(client.transport, 'poll');
  assert.ok(statuses.includes('fallback/poll'));
  assert.deepEqual(seqs(events), [1, 2, 3]);
  const [next] = server.held('/v1/events/poll');
  assert.equal(next.query.get('cursor'), 'cur3');
  client.stop();
});

test('a probe that gets ready switches back to the stream; nothing is shown twice', async () => {
  const { client, clock, ES, server, events } = setup();
  client.start();
  await clock.advance(4000); // the first stream never gets ready
  const [p1] = server.held('/v1/events/poll');
  p1.answer(200, { events: [], cursor: 'cur0' });
  await clock.advance(0);
  const [p2] = server.held('/v1/events/poll');
  p2.answer(200, { events: [ev(1), ev(2)], cursor: 'cur2' });
  await clock.advance(0);
  assert.equal(client.status, 'fallback');
  const before = ES.all.length;
  // The first probe comes after probeMin (5 s) with jitter: between 2.5 and 5 s.
  await clock.advance(5000);
  assert.equal(ES.all.length, before + 1, 'no probe');
  const probe = ES.last();
  assert.equal(probe.query.get('last_event_id'), 'cur2');
  probe.emit('ready', { cursor: 'cur2' });
  assert.equal(client.status, 'live');
  assert.equal(client.transport, 'sse');
  assert.ok(server.requests.filter((r) => r.path === '/v1/events/poll').every((r) => r.done), 'the poll was not stopped');
  // A replay of what the poll delivered is skipped; the cursor never goes back.
  probe.emit('message', msg(2), 'cur2');
  probe.emit('message', msg(3), 'cur3');
  assert.deepEqual(seqs(events), [1, 2, 3]);
  assert.equal(client.cursor, 'cur3');
  client.stop();
});

test('probes that fail back off with jitter, and the poll goes on meanwhile', async () => {
  const { client, clock, ES, server } = setup({ random: () => 1 });
  client.start();
  await clock.advance(4000);
  server.held('/v1/events/poll')[0].answer(200, { events: [], cursor: 'cur0' });
  const opened = [];
  const t0 = clock.now();
  let count = ES.all.length;
  for (let i = 0; i < 4; i++) {
    // Step until the next probe opens, then let it time out.
    while (ES.all.length === count) await clock.advance(250);
    count = ES.all.length;
    opened.push(clock.now() - t0);
    await clock.advance(4000);
    assert.ok(ES.last().closed, 'a probe without ready stays open');
  }
  const gaps = opened.map((t, i) => t - (i ? opened[i - 1] + 4000 : 0));
  // With random() = 1 each gap is the full backoff: 5, 10, 20, 40 s.
  assert.deepEqual(gaps, [5000, 10000, 20000, 40000]);
  assert.equal(client.status, 'fallback');
  assert.equal(server.held('/v1/events/poll').length, 1, 'the poll stopped during probes');
  client.stop();
});

test('a stream cut by a proxy every few seconds resumes by cursor at once, without a storm', async () => {
  const { client, clock, ES, events, statuses } = setup({ random: () => 0.5 });
  client.start();
  await clock.advance(0);
  let seq = 0;
  for (let i = 0; i < 10; i++) {
    const es = ES.last();
    es.emit('ready', { cursor: 'cur' + seq });
    await clock.advance(1500);
    seq++;
    es.emit('message', msg(seq), 'cur' + seq);
    await clock.advance(1500);
    es.fail(); // the proxy ends the response after 3 s
    await clock.advance(1000);
    assert.equal(ES.last().query.get('last_event_id'), 'cur' + seq);
  }
  assert.equal(ES.all.length, 11);
  assert.deepEqual(seqs(events), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.ok(!statuses.includes('reconnecting/sse'), `the status blinked: ${statuses}`);

  // A stream that dies right after ready is not healthy: each retry waits longer.
  const times = [];
  for (let i = 0; i < 5; i++) {
    const es = ES.last();
    es.emit('ready', { cursor: 'cur10' });
    es.fail();
    const n = ES.all.length;
    const t = clock.now();
    while (ES.all.length === n) await clock.advance(100);
    times.push(clock.now() - t);
  }
  for (let i = 1; i < times.length; i++) assert.ok(times[i] > times[i - 1], `no backoff: ${times}`);
  assert.equal(client.status, 'reconnecting');
  client.stop();
});

test('a long poll cut by an intermediary asks for shorter waits', async () => {
  const { client, clock, server, events } = setup();
  client.start();
  await clock.advance(4000);
  server.held('/v1/events/poll')[0].answer(200, { events: [], cursor: 'cur0' });
  await clock.advance(0);
  let p = server.held('/v1/events/poll')[0];
  assert.equal(p.query.get('timeout'), '25');
  await clock.advance(3000);
  p.fail(); // ended by the proxy after 3 s
  await clock.advance(300);
  p = server.held('/v1/events/poll')[0];
  assert.equal(p.query.get('timeout'), '1');
  assert.equal(p.query.get('cursor'), 'cur0');
  p.answer(200, { events: [ev(1)], cursor: 'cur1' });
  await clock.advance(0);
  assert.deepEqual(seqs(events), [1]);
  assert.equal(client.status, 'fallback');
  client.stop();
});

test('401: one fresh token, then on; refused again: unauthorized, no more requests', async () => {
  let refuse = 1;
  const { client, clock, server, tokens } = setup({
    route: (req) => (req.path === '/v1/events/poll' && refuse-- > 0 ? { status: 401, body: { error: { code: 'unauthorized' } } } : undefined),
  });
  let unauthorized = 0;
  client.on('unauthorized', () => unauthorized++);
  client.start();
  await clock.advance(4000);
  const polls = server.of('/v1/events/poll');
  assert.equal(polls.length, 2);
  assert.equal(polls[0].headers.Authorization, 'Bearer jwt');
  assert.equal(polls[1].headers.Authorization, 'Bearer fresh-jwt');
  assert.deepEqual(tokens.slice(-2), [false, true]);
  assert.equal(unauthorized, 0);
  client.stop();

  const s = setup({ route: (req) => (req.path === '/v1/events/poll' ? { status: 401, body: {} } : undefined) });
  let gone = 0;
  s.client.on('unauthorized', () => gone++);
  s.client.start();
  await s.clock.advance(4000);
  await s.clock.advance(120000);
  assert.equal(gone, 1);
  assert.equal(s.server.of('/v1/events/poll').length, 2);
  assert.equal(s.client.status, 'offline');
  s.client.stop();
});

test('cookie mode: the session cookie is set before the stream; ticket mode: a new ticket for every connect, never a JWT in a URL', async () => {
  const c = setup({ options: { auth: 'cookie' } });
  c.client.start();
  await c.clock.advance(0);
  assert.equal(c.server.of('/v1/session').length, 1);
  assert.equal(c.ES.last().query.get('ticket'), null);
  c.client.stop();

  const { client, clock, ES, server } = setup({ options: { auth: 'ticket' } });
  client.start();
  await clock.advance(0);
  ES.last().emit('ready', { cursor: 'cur0' });
  await clock.advance(2000);
  ES.last().fail();
  await clock.advance(1000);
  ES.last().emit('ready', { cursor: 'cur0' });
  assert.equal(ES.all.length, 2);
  assert.deepEqual(ES.all.map((e) => e.query.get('ticket')), ['t1', 't2']);
  assert.equal(server.of('/v1/tickets').length, 2);
  for (const e of ES.all) assert.ok(!e.url.includes('jwt'), e.url);
  for (const r of server.requests) assert.ok(!r.url.includes('jwt'), r.url);
  client.stop();
});

test('reset: the cursor jumps to the head and the app is told to reload', async () => {
  const { client, clock, ES } = setup();
  const resets = [];
  client.on('reset', (d) => resets.push(d));
  client.start();
  await clock.advance(0);
  ES.last().emit('ready', { cursor: 'old' });
  ES.last().emit('reset', { reason: 'expired', cursor: 'head' });
  assert.deepEqual(resets, [{ reason: 'expired', cursor: 'head' }]);
  assert.equal(client.cursor, 'head');
  client.stop();
});

test('offline: no connection attempts, status offline; online again: reconnects at once', async () => {
  const { client, clock, ES, win } = setup();
  client.start();
  await clock.advance(0);
  ES.last().emit('ready', { cursor: 'c0' });
  win.go(false);
  assert.equal(client.status, 'offline');
  assert.ok(ES.last().closed);
  const n = ES.all.length;
  await clock.advance(60000);
  assert.equal(ES.all.length, n);
  win.go(true);
  await clock.advance(0);
  assert.equal(ES.all.length, n + 1);
  assert.equal(ES.last().query.get('last_event_id'), 'c0');
  client.stop();
});

test('outbox: kept while unreachable, survives a reload, sent once each in order, 4xx fails with retry', async () => {
  let reachable = false;
  let refuse = new Set();
  const posted = [];
  const route = (req) => {
    if (!req.path.endsWith('/messages')) return undefined;
    if (!reachable) return 'fail';
    posted.push(req.body.body);
    if (refuse.has(req.body.body)) return { status: 422, body: { error: { code: 'body_too_long', message: 'too long' } } };
    return undefined;
  };
  const kv = new KV();
  const a = setup({ route, kv });
  a.client.start();
  a.client.send('c1', 'one');
  a.client.send('c1', 'two');
  a.client.send('c1', 'three');
  await a.clock.advance(5000);
  assert.deepEqual(a.client.outbox().map((i) => [i.body, i.state]), [['one', 'pending'], ['two', 'pending'], ['three', 'pending']]);
  const ids = a.client.outbox().map((i) => i.client_id);
  assert.equal(new Set(ids).size, 3);
  a.client.stop(); // the page is reloaded

  reachable = true;
  refuse = new Set(['two']);
  const b = setup({ route, kv });
  const sent = [];
  b.client.on('sent', ({ item, message }) => sent.push([item.body, message.client_id]));
  assert.equal(b.client.outbox().length, 3, 'the outbox did not survive the reload');
  b.client.start();
  await b.clock.advance(0);
  assert.deepEqual(posted, ['one', 'two', 'three']);
  assert.deepEqual(sent, [['one', ids[0]], ['three', ids[2]]]);
  const left = b.client.outbox();
  assert.deepEqual(left.map((i) => [i.body, i.state, i.error?.status]), [['two', 'failed', 422]]);
  refuse = new Set();
  b.client.retry(left[0].client_id);
  await b.clock.advance(0);
  assert.deepEqual(sent.at(-1), ['two', ids[1]]);
  assert.equal(b.client.outbox().length, 0);
  b.client.stop();
});

test('outbox: a transient failure keeps the order and retries with backoff', async () => {
  let failures = 3;
  const posted = [];
  const route = (req) => {
    if (!req.path.endsWith('/messages')) return undefined;
    posted.push(req.body.body);
    if (req.body.body === 'one' && failures-- > 0) return { status: 503, body: { error: { code: 'unavailable' } } };
    return undefined;
  };
  const { client, clock } = setup({ route });
  client.send('c1', 'one');
  client.send('c1', 'two');
  await clock.advance(0);
  assert.ok(!posted.includes('two'), 'a later message overtook a failed one');
  const t0 = posted.length;
  await clock.advance(400);
  assert.equal(posted.length, t0, 'retried without a backoff');
  await clock.advance(5000);
  assert.deepEqual(posted, ['one', 'one', 'one', 'one', 'two']);
  assert.equal(client.outbox().length, 0);
  client.stop();
});

test('tabs: one leader connects and relays; when it closes another takes over from the shared cursor', async () => {
  const shared = { clock: new Clock(), ES: fakeEventSource(), locks: new Locks(), BC: fakeBroadcastChannel() };
  shared.server = new FakeServer((req) => (req.path === '/v1/session' ? { status: 204 } : undefined));
  const kv = new KV();
  const tabs = [0, 1, 2].map(() => setup({ shared, kv }));
  for (const t of tabs) t.client.start();
  await shared.clock.advance(0);
  assert.deepEqual(tabs.map((t) => t.client.role), ['leader', 'follower', 'follower']);
  assert.equal(shared.ES.all.length, 1, 'more than one connection');
  const es = shared.ES.last();
  es.emit('ready', { cursor: 'cur0' });
  es.emit('message', msg(1), 'cur1');
  es.emit('message', msg(2), 'cur2');
  await settle();
  for (const t of tabs) {
    assert.deepEqual(seqs(t.events), [1, 2]);
    assert.equal(t.client.status, 'live');
    assert.equal(t.client.transport, 'sse');
  }
  tabs[0].client.stop(); // the leader tab closes
  await shared.clock.advance(0);
  assert.equal(tabs[1].client.role, 'leader');
  assert.equal(shared.ES.open().length, 1);
  const next = shared.ES.last();
  assert.equal(next.query.get('last_event_id'), 'cur2');
  next.emit('ready', { cursor: 'cur2' });
  next.emit('message', msg(3), 'cur3');
  await settle();
  for (const t of tabs.slice(1)) assert.deepEqual(seqs(t.events), [1, 2, 3]);
  for (const t of tabs.slice(1)) t.client.stop();
});

test('cookie auth (no getToken, e.g. an Auth.js session on the same site): writes carry X-Chat-Request: 1', async () => {
  const route = (req) => (req.path === '/v1/unread' ? { status: 200, body: { total: 0, conversations: [] } } : undefined);
  const { client, server } = setup({ route, options: { getToken: null } });
  await client.request('POST', '/v1/conversations/c1/messages', { body: 'hi' });
  await client.request('GET', '/v1/unread');
  const [post] = server.of('/v1/conversations/c1/messages');
  assert.equal(post.headers['X-Chat-Request'], '1', 'chatd lets a cookie write only with the header');
  assert.equal(post.headers.Authorization, undefined);
  assert.equal(post.credentials, 'include');
  assert.equal(server.of('/v1/unread')[0].headers['X-Chat-Request'], undefined, 'reads need no marker');

  const bearer = setup({ route });
  await bearer.client.request('POST', '/v1/conversations/c1/messages', { body: 'hi' });
  const [p] = bearer.server.of('/v1/conversations/c1/messages');
  assert.equal(p.headers.Authorization, 'Bearer jwt');
  assert.equal(p.headers['X-Chat-Request'], undefined, 'a Bearer token needs no marker');
});
