// What the user writes: the composer, editing and deleting their messages, and what waits in
// the outbox (the count in the top bar, and each unsent message in the view).

import { isClosed } from '../members.js';
import { onMessage } from './events.js';
import { renderMessages } from './messages.js';
import { $, api, enc, h, report, state } from './page.js';
import { stopTyping } from './presence.js';

// renderOutbox counts the messages not yet accepted, in every conversation: after a reload
// while chatd is unreachable, no conversation can be shown, but what waits to be sent can.
export function renderOutbox() {
  const items = state.client?.outbox() || [];
  const failed = items.filter((i) => i.state === 'failed').length;
  const el = $('outbox');
  el.hidden = !items.length;
  el.dataset.count = String(items.length);
  el.textContent = items.length ? `${items.length} unsent` + (failed ? ` (${failed} failed)` : '') : '';
}

// send queues the message in the client's outbox, which keeps it (across reloads too) until
// chatd accepts it, sends in order, and retries with the same client_id, so a retry after a
// lost answer cannot post it twice.
export function send(ev) {
  ev?.preventDefault();
  const ta = $('composer');
  const id = state.openId;
  const body = ta.value;
  if (!id || !body.trim() || !state.client || isClosed(state.convs.get(id))) return;
  ta.value = '';
  autosize();
  stopTyping();
  state.client.send(id, body);
  renderMessages(true);
}

export function startEdit(m) {
  state.editing = { id: m.id, draft: m.body };
  renderMessages();
  const box = $('messages').querySelector('.edit-box');
  box?.focus();
  box?.setSelectionRange(box.value.length, box.value.length);
}

export function cancelEdit() {
  state.editing = null;
  renderMessages();
  $('composer').focus();
}

export async function saveEdit(m) {
  const body = state.editing?.draft ?? '';
  if (body === m.body) return cancelEdit();
  try {
    const updated = await api('PATCH', `/v1/conversations/${enc(m.conversation_id)}/messages/${enc(m.id)}`, { body });
    state.editing = null;
    onMessage('message_updated', updated);
    $('composer').focus();
  } catch (e) {
    report(e); // stay in edit mode so the text is not lost
  }
}

// No confirm(): the delete is soft and shows as "message deleted", and a modal dialog would
// also block browser tests.
export async function deleteMessage(m) {
  try {
    const deleted = await api('DELETE', `/v1/conversations/${enc(m.conversation_id)}/messages/${enc(m.id)}`);
    onMessage('message_deleted', deleted);
  } catch (e) {
    report(e);
  }
}

export function autosize() {
  const ta = $('composer');
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, 160) + 'px';
}

// pendingNode shows a message of the outbox: waiting to be sent, or refused with the reason
// and a way to retry or drop it.
export function pendingNode(li, p) {
  const online = state.client && (state.client.status === 'live' || state.client.status === 'fallback');
  const note = p.state === 'failed' ? `not sent: ${p.error?.message || 'refused'}` : online ? 'sending…' : 'waiting for connection…';
  const sig = JSON.stringify([p.state, note]);
  if (li && li.dataset.sig === sig) return li;
  li ||= h('li', { 'data-key': 'p:' + p.client_id });
  li.className = 'msg mine pending' + (p.state === 'failed' ? ' failed' : '');
  li.dataset.sig = sig;
  li.dataset.pending = p.state;
  li.dataset.clientId = p.client_id;
  const actions = p.state === 'failed' && h('div', { class: 'actions' },
    p.error?.code !== 'conversation_closed' && h('button', { type: 'button', class: 'link', 'data-testid': 'retry-button', text: 'Retry', onclick: () => state.client?.retry(p.client_id) }),
    h('button', { type: 'button', class: 'link', 'data-testid': 'discard-button', text: 'Discard', onclick: () => state.client?.discard(p.client_id) }));
  li.replaceChildren(...[h('div', { class: 'meta' }, h('span', { class: 'sender', text: 'You' }), h('span', { text: note })),
    h('p', { class: 'body', text: p.body }), actions].filter(Boolean));
  return li;
}
