// The state side of web/static/members.js: membership events applied to the conversations a
// page holds, and what of a conversation's metadata may become a link. Run: node --test
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyMember, httpUrl, isClosed, isSystem, listing, markClosed } from '../static/members.js';

/** A page's conversations: one group of alice and bob, one direct with carol. */
function held() {
  return new Map([
    ['g', { id: 'g', kind: 'group', participants: [{ id: 'alice', name: 'Alice', online: true }, { id: 'bob', name: 'Bob', online: false }] }],
    ['d', { id: 'd', kind: 'direct', participants: [{ id: 'alice', name: 'Alice', online: true }, { id: 'carol', name: null, online: false }] }],
  ]);
}
const change = (conv, user, by = null) => ({ conversation_id: conv, user_id: user, by });
const ids = (convs, id) => convs.get(id).participants.map((p) => p.id);

test('a member added joins the participants once, listed by id until its name is known', () => {
  const convs = held();
  assert.equal(applyMember(convs, 'alice', 'member_added', change('g', 'dave')), 'added');
  assert.deepEqual(ids(convs, 'g'), ['alice', 'bob', 'dave']);
  assert.deepEqual(convs.get('g').participants[2], { id: 'dave', name: null, online: false });
  // The same event again (another tab relayed it, a reload replayed it) changes nothing.
  assert.equal(applyMember(convs, 'alice', 'member_added', change('g', 'dave')), null);
  assert.deepEqual(ids(convs, 'g'), ['alice', 'bob', 'dave']);
});

test('another member removed leaves the participants; the conversation stays', () => {
  const convs = held();
  assert.equal(applyMember(convs, 'alice', 'member_removed', change('g', 'bob', 'bob')), 'removed');
  assert.deepEqual(ids(convs, 'g'), ['alice']);
  assert.ok(convs.has('g'));
  assert.equal(applyMember(convs, 'alice', 'member_removed', change('g', 'bob', 'bob')), null);
});

test('its own member_removed takes the conversation out of the list, whoever removed it', () => {
  const convs = held();
  assert.equal(applyMember(convs, 'bob', 'member_removed', change('g', 'bob')), 'gone');
  assert.ok(!convs.has('g'));
  assert.ok(convs.has('d'), 'only that conversation goes');
  // Left from this page already (the leave button forgot it): the event that follows is a no-op.
  assert.equal(applyMember(convs, 'bob', 'member_removed', change('g', 'bob', 'bob')), null);
});

test('events of conversations not held, and malformed ones, change nothing', () => {
  const convs = held();
  assert.equal(applyMember(convs, 'alice', 'member_added', change('x', 'dave')), null);
  assert.equal(applyMember(convs, 'alice', 'member_removed', change('x', 'alice')), null);
  assert.equal(applyMember(convs, 'alice', 'member_added', null), null);
  assert.equal(applyMember(convs, 'alice', 'typing', change('g', 'dave')), null);
  assert.deepEqual(ids(convs, 'g'), ['alice', 'bob']);
  assert.equal(convs.size, 2);
});

test('a conversation without a participants list gets one from member_added', () => {
  const convs = new Map([['g', { id: 'g', kind: 'group' }]]);
  assert.equal(applyMember(convs, 'alice', 'member_added', change('g', 'dave')), 'added');
  assert.deepEqual(ids(convs, 'g'), ['dave']);
});

test('only absolute http(s) URLs may become links', () => {
  assert.equal(httpUrl('https://shop.example/listing/123?x=1'), 'https://shop.example/listing/123?x=1');
  assert.equal(httpUrl('http://shop.example'), 'http://shop.example/');
  for (const bad of ['javascript:alert(1)', 'JavaScript:alert(1)', ' javascript:alert(1)', 'data:text/html,<b>x</b>',
    'vbscript:x', '/listing/123', '//evil.example/x', 'ftp://shop.example/', '', 42, null, undefined, {}, ['https://a.example']]) {
    assert.equal(httpUrl(bad), null, String(bad));
  }
});

test('listing shows a string title and an http(s) url of the metadata, nothing else', () => {
  assert.deepEqual(listing({ title: ' Bike, 3 gears ', url: 'https://shop.example/l/1', price: 30 }),
    { title: 'Bike, 3 gears', url: 'https://shop.example/l/1' });
  assert.deepEqual(listing({ title: '<img src=x onerror=alert(1)>', url: 'javascript:alert(1)' }),
    { title: '<img src=x onerror=alert(1)>', url: null }, 'a title is text (shown by textContent), a bad url no link');
  assert.deepEqual(listing({ title: { nested: true }, url: 7 }), { title: null, url: null });
  assert.equal(listing({ title: 'x'.repeat(1000) }).title.length, 200);
  for (const none of [{}, null, undefined, [], 'title', 3]) assert.deepEqual(listing(none), { title: null, url: null });
});

test('closed conversations and system messages are told apart by their fields', () => {
  assert.equal(isClosed({ id: 'g', kind: 'group', closed_at: '2026-11-30T23:00:00.000Z' }), true);
  assert.equal(isClosed({ id: 'g', kind: 'group', closed_at: null }), false);
  assert.equal(isClosed(undefined), false);
  assert.equal(isSystem({ id: 'm', seq: 1, kind: 'system', sender_id: null, body: 'Booking confirmed', created_at: '' }), true);
  assert.equal(isSystem({ id: 'm', seq: 1, kind: 'user', sender_id: 'bob', body: 'hi', created_at: '' }), false);
});

test('a send refused as closed marks its conversation closed, once; other refusals do not', () => {
  const convs = held();
  const at = '2026-11-30T23:40:00.000Z';
  const failed = (conv, code) => ({ conversation_id: conv, state: 'failed', error: { status: code === 'conversation_closed' ? 409 : 404, code } });
  const outbox = [{ conversation_id: 'd', state: 'pending' }, failed('d', 'not_found'), failed('x', 'conversation_closed'), failed('g', 'conversation_closed')];
  assert.deepEqual(markClosed(convs, outbox, at), ['g']);
  assert.equal(convs.get('g').closed_at, at);
  assert.equal(isClosed(convs.get('d')), false, 'a pending send or another refusal closes nothing');
  assert.deepEqual(markClosed(convs, outbox, 'later'), [], 'already closed: the noted time stays');
  assert.equal(convs.get('g').closed_at, at);
});
