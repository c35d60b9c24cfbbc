// Conversations: the list in the sidebar, starting a chat or a group, opening and closing
// one, and its header (title and participants).

import { attachmentsSummary } from '../attachments.js';
import { renderDetails } from '../members.js';
import { upsertConv } from './events.js';
import { loadHistory, markRead, renderMessages } from './messages.js';
import { $, api, displayName, h, myId, report, state } from './page.js';
import { renderTyping, stopTyping } from './presence.js';
import { toId } from './session.js';

export const others = (c) => (c.participants || []).filter((p) => p.id !== myId());
export const convTitle = (c) => c.title || others(c).map((p) => displayName(p.id)).join(', ') || 'Just you';
const activity = (c) => Date.parse(c.last_message?.created_at || c.created_at) || 0;

// ids typed by users follow the dev sign-in rule ("Bob Smith" → "bob-smith"); real JWT subjects
// are opaque, so outside dev mode they are used exactly as typed.
const normId = (s) => (state.me?.dev ? toId(s) : s.trim());

async function createConversation(ev, body, input) {
  ev.preventDefault();
  try {
    const c = await api('POST', '/v1/conversations', body);
    input.value = '';
    upsertConv(c);
    openConversation(c.id);
  } catch (e) {
    report(e);
  }
}

export function newChat(ev) {
  const input = $('new-chat-input');
  const id = normId(input.value);
  if (!id) return ev.preventDefault();
  createConversation(ev, { participant_id: id }, input);
}

export function newGroup(ev) {
  const input = $('new-group-input');
  const ids = input.value.split(',').map(normId).filter(Boolean);
  if (!ids.length) return ev.preventDefault();
  const title = $('new-group-title').value.trim();
  createConversation(ev, { participant_ids: ids, ...(title ? { title } : {}) }, input);
  $('new-group-title').value = '';
}

async function openConversation(id) {
  if (state.openId !== id) {
    stopTyping();
    state.editing = null;
    $('composer').value = '';
    $('messages').replaceChildren();
  }
  state.openId = id;
  document.body.classList.add('conv-open');
  $('no-conversation').hidden = true;
  $('conversation-view').hidden = false;
  renderAll();
  $('composer').focus(); // now, not after the load: by then the user may be typing elsewhere
  if (!state.history.has(id)) await loadHistory(id);
  renderMessages(true);
  markRead();
}

// openAt opens a conversation at one message (a search result): older history is loaded
// until the message is in the window, then it is scrolled to and highlighted.
export async function openAt(id, seq) {
  await openConversation(id);
  for (let page = 0; page < 40; page++) {
    const hist = state.history.get(id);
    if (state.openId !== id || !hist || hist.oldest <= seq || !hist.hasMore) break;
    await loadHistory(id, true);
  }
  const li = $('messages').querySelector(`[data-seq="${Number(seq)}"]`);
  if (!li || state.openId !== id) return;
  li.scrollIntoView({ block: 'center' });
  li.classList.add('found');
  setTimeout(() => li.classList.remove('found'), 3000);
}

export function closeConversation() {
  stopTyping();
  state.openId = null;
  document.body.classList.remove('conv-open');
  $('conversation-view').hidden = true;
  $('no-conversation').hidden = false;
  renderList();
}

export function renderAll() {
  renderList();
  renderHeader();
  renderMessages();
  renderTyping();
}

const dot = (on) => h('span', { class: 'dot' + (on ? ' on' : ''), role: 'img', 'aria-label': on ? 'online' : 'offline' });

export function renderList() {
  const list = $('conversation-list');
  const focused = document.activeElement?.closest?.('[data-conversation-id]')?.dataset.conversationId;
  const convs = [...state.convs.values()].sort((a, b) => activity(b) - activity(a));
  let total = 0;
  list.replaceChildren(
    ...convs.map((c) => {
      total += c.unread_count;
      const last = c.last_message;
      const preview = !last
        ? 'No messages yet'
        : (last.sender_id === myId() ? 'You: ' : '') + (last.deleted_at ? 'message deleted' : last.body || attachmentsSummary(last.attachments));
      const active = c.id === state.openId;
      const button = h('button', { type: 'button', class: 'conv' + (active ? ' active' : ''),
        'aria-current': active ? 'true' : null, onclick: () => openConversation(c.id) },
      dot(others(c).some((p) => p.online)),
      h('span', { class: 'conv-main' },
        h('span', { class: 'conv-title', text: convTitle(c) }), h('span', { class: 'conv-preview', text: preview })),
      c.unread_count > 0 ? h('span', { class: 'badge', text: c.unread_count, 'aria-label': `${c.unread_count} unread` }) : null);
      return h('li', { 'data-conversation-id': c.id }, button);
    }),
  );
  if (focused) list.querySelector(`[data-conversation-id="${CSS.escape(focused)}"] button`)?.focus();
  $('empty-list').hidden = convs.length > 0;
  document.title = total ? `(${total}) chatd` : 'chatd';
}

export function renderHeader() {
  const c = state.convs.get(state.openId);
  if (!c) return;
  $('conv-title').textContent = convTitle(c);
  const people = [...others(c), ...c.participants.filter((p) => p.id === myId())]; // "You" last
  $('conv-participants').replaceChildren(...people.map((p) => {
    const name = p.id === myId() ? 'You' : displayName(p.id);
    return h('li', { 'data-user-id': p.id }, dot(p.online), name === p.id || p.id === myId() ? name : `${name} (${p.id})`);
  }));
  renderDetails(c);
}
