// Events and REST answers applied to the page's state: messages, reads, conversations and
// membership changes. Everything is keyed by id, so an event and an answer that carry the same
// change can both arrive.

import { applyMember } from '../members.js';
import { closeConversation, convTitle, renderHeader, renderList } from './conversations.js';
import { markRead, renderMessages } from './messages.js';
import { api, enc, myId, report, state, toast } from './page.js';
import { clearTyping, onPresence, onTyping } from './presence.js';

// dispatch holds events back while a full REST reload runs, so the reload cannot overwrite them.
export const dispatch = (type, data) => (state.loading ? state.queue.push([type, data]) : apply(type, data));

export function apply(type, d) {
  if (type.startsWith('message')) onMessage(type, d);
  else if (type === 'read') onRead(d);
  else if (type === 'conversation') {
    upsertConv(d);
    renderList();
  } else if (type === 'member_added' || type === 'member_removed') onMember(type, d);
  else if (type === 'typing') onTyping(d);
  else if (type === 'presence') onPresence(d);
}

export function upsertConv(c) {
  const old = state.convs.get(c.id);
  if (old) {
    // A `conversation` event may carry an older snapshot than the one we hold.
    if ((old.last_message?.seq ?? 0) > (c.last_message?.seq ?? 0)) c.last_message = old.last_message;
    c.unread_count = old.unread_count;
    c.last_read_seq = Math.max(old.last_read_seq || 0, c.last_read_seq || 0);
  }
  c.unread_count ??= 0;
  state.convs.set(c.id, c);
  for (const p of c.participants || []) if (p.name) state.names.set(p.id, p.name);
}

const fetching = new Set();
function fetchConv(id) {
  if (fetching.has(id)) return;
  fetching.add(id);
  api('GET', `/v1/conversations/${enc(id)}`)
    .then((c) => {
      upsertConv(c);
      renderList();
    })
    .catch(report)
    .finally(() => fetching.delete(id));
}

// onMessage applies a message from an event or a REST answer. Both can deliver the same message,
// so everything here is keyed by id and idempotent.
export function onMessage(type, m) {
  const conv = state.convs.get(m.conversation_id);
  if (!conv) return fetchConv(m.conversation_id); // its snapshot includes this message
  const mine = m.sender_id === myId();
  const fresh = m.seq > (conv.last_message?.seq ?? 0);
  if (fresh || conv.last_message?.id === m.id) conv.last_message = m;
  if (type === 'message' && fresh) {
    if (mine) conv.last_read_seq = Math.max(conv.last_read_seq || 0, m.seq); // replying marks read
    else if (!m.deleted_at) conv.unread_count++;
  }
  if (type === 'message_deleted' && !mine) refreshUnread(); // deleted messages stop counting

  const hist = state.history.get(conv.id);
  // Keep a loaded window gap-free: only messages inside it (or newer) belong there.
  if (hist && (hist.byId.has(m.id) || hist.loading || !hist.hasMore || m.seq >= hist.oldest)) hist.byId.set(m.id, m);
  clearTyping(conv.id, m.sender_id);
  renderList();
  if (conv.id === state.openId) {
    renderMessages(mine && type === 'message');
    markRead();
  }
}

function onRead({ conversation_id: id, user_id: user, seq }) {
  const conv = state.convs.get(id);
  if (!conv) return;
  if (user === myId()) {
    // Read in another tab or window: clear the badge here too.
    conv.last_read_seq = Math.max(conv.last_read_seq || 0, seq);
    if (seq >= (conv.last_message?.seq ?? 0)) conv.unread_count = 0;
    else refreshUnread();
    return renderList();
  }
  const reads = state.reads.get(id) || state.reads.set(id, new Map()).get(id);
  reads.set(user, Math.max(reads.get(user) || 0, seq));
  if (id === state.openId) renderMessages();
}

let unreadTimer = 0;
function refreshUnread() {
  clearTimeout(unreadTimer);
  unreadTimer = setTimeout(async () => {
    const r = await api('GET', '/v1/unread').catch(() => null); // a badge is a hint: a miss is harmless
    if (!r) return;
    const counts = new Map(r.conversations.map((u) => [u.id, u.unread_count]));
    for (const c of state.convs.values()) c.unread_count = counts.get(c.id) || 0;
    renderList();
  }, 300);
}

// onMember applies a membership change: the participants list follows it live, and a
// conversation the user was removed from (or left, in another tab) leaves the page.
function onMember(type, d) {
  const c = state.convs.get(d.conversation_id);
  const result = applyMember(state.convs, myId(), type, d);
  if (result === 'gone') {
    forget(c.id);
    toast(d.by === myId() ? `You left “${convTitle(c)}”.` : `You were removed from “${convTitle(c)}”.`);
    return;
  }
  if (result === 'added' && !state.names.has(d.user_id)) fetchNames(c.id);
  if (result) {
    renderList();
    if (c.id === state.openId) renderHeader();
  }
}

// fetchNames learns the names of a conversation's participants (member_added has only the
// id); the participants themselves stay as the events made them, which an answer read
// before a later change would not.
function fetchNames(id) {
  api('GET', `/v1/conversations/${enc(id)}`).then((c) => {
    for (const p of c.participants) if (p.name) state.names.set(p.id, p.name);
    renderList();
    if (id === state.openId) renderHeader();
  }).catch(() => {}); // a name is a nicety: until then the id stands for it
}

// forget drops what the page holds of a conversation the user is no longer in, its unsent
// messages included: they can never be sent, and the page has no place left to show them.
export function forget(id) {
  for (const i of state.client?.outbox() || []) if (i.conversation_id === id) state.client.discard(i.client_id);
  state.convs.delete(id);
  state.history.delete(id);
  state.reads.delete(id);
  for (const t of state.typing.get(id)?.values() || []) clearTimeout(t);
  state.typing.delete(id);
  if (state.openId === id) closeConversation();
  else renderList();
}
