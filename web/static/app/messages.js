// The message view of the open conversation: loading its history window, marking it read,
// and rendering the messages (reconciled by key, so an open edit box keeps its caret).

import { attachmentsNode } from '../attachments.js';
import { isSystem, systemNode } from '../members.js';
import { cancelEdit, deleteMessage, pendingNode, saveEdit, startEdit } from './composer.js';
import { others, renderList } from './conversations.js';
import { $, api, displayName, enc, h, myId, report, state } from './page.js';

// loadHistory fetches the latest window, or the one before the oldest loaded message. The window
// object exists while loading so that events arriving meanwhile are not lost.
export async function loadHistory(id, older = false) {
  let hist = state.history.get(id);
  if (!hist || !older) {
    hist = { byId: new Map(), oldest: Infinity, hasMore: false, loading: true };
    state.history.set(id, hist);
  }
  const q = older ? `?limit=50&before_seq=${hist.oldest}` : '?limit=50';
  try {
    const r = await api('GET', `/v1/conversations/${enc(id)}/messages${q}`);
    for (const m of r.messages) if (!hist.byId.has(m.id)) hist.byId.set(m.id, m);
    hist.hasMore = r.has_more;
    if (r.messages.length) hist.oldest = Math.min(hist.oldest, r.messages[0].seq);
    // An edit event for an older message may have slipped in while loading: drop it so the
    // window stays gap-free and "Load older" continues from the right place.
    if (hist.hasMore) for (const [k, m] of hist.byId) if (m.seq < hist.oldest) hist.byId.delete(k);
  } catch (e) {
    if (!older) state.history.delete(id);
    report(e);
  } finally {
    hist.loading = false;
  }
  if (id === state.openId) renderMessages();
}

export async function loadOlder() {
  const sc = $('messages-scroll');
  const fromBottom = sc.scrollHeight - sc.scrollTop; // keep the reader's place as content grows above
  $('load-older').disabled = true;
  await loadHistory(state.openId, true);
  $('load-older').disabled = false;
  sc.scrollTop = sc.scrollHeight - fromBottom;
}

// markRead reports the newest loaded message as read while the user can actually see it.
export function markRead() {
  const conv = state.convs.get(state.openId);
  const hist = state.history.get(state.openId);
  if (!conv || !hist || document.hidden || !document.hasFocus()) return;
  let last = 0;
  for (const m of hist.byId.values()) last = Math.max(last, m.seq);
  conv.unread_count = 0; // the open window always shows the newest messages
  renderList();
  if (last <= (conv.last_read_seq || 0)) return;
  conv.last_read_seq = last;
  api('POST', `/v1/conversations/${enc(conv.id)}/read`, { seq: last }).catch(report);
}

function fmtTime(iso) {
  const d = new Date(iso);
  const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === new Date().toDateString() ? t : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${t}`;
}

// seenLine: which of my messages gets the "Seen" marker, from other users' read events.
function seenLine(c, msgs) {
  const mine = msgs.filter((m) => m.sender_id === myId() && !m.deleted_at).at(-1);
  const reads = state.reads.get(c.id);
  if (!mine || !reads) return {};
  const who = others(c).filter((p) => (reads.get(p.id) || 0) >= mine.seq);
  if (!who.length) return {};
  return { seq: mine.seq, text: c.kind === 'direct' ? 'Seen' : 'Seen by ' + who.map((p) => displayName(p.id)).join(', ') };
}

// renderMessages reconciles the list by key and rebuilds only changed bubbles, so an open edit
// box keeps its focus and caret while other messages arrive.
export function renderMessages(toBottom = false) {
  const c = state.convs.get(state.openId);
  const ol = $('messages');
  if (!c) return;
  const hist = state.history.get(c.id);
  const sc = $('messages-scroll');
  const stick = toBottom || sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  const msgs = hist ? [...hist.byId.values()].sort((a, b) => a.seq - b.seq) : [];
  const seen = seenLine(c, msgs);
  const old = new Map([...ol.children].map((li) => [li.dataset.key, li]));
  const nodes = msgs.map((m) => messageNode(old.get(m.id), m, seen.seq === m.seq ? seen.text : ''));
  const shown = new Set(msgs.map((m) => m.client_id).filter(Boolean));
  for (const p of state.client?.outbox() || []) {
    // Accepted but not yet removed from the outbox (another tab sent it): show it once.
    if (p.conversation_id === c.id && !shown.has(p.client_id)) nodes.push(pendingNode(old.get('p:' + p.client_id), p));
  }
  nodes.forEach((n, i) => {
    if (ol.children[i] !== n) ol.insertBefore(n, ol.children[i] || null);
  });
  while (ol.children.length > nodes.length) ol.lastElementChild.remove();
  $('load-older').hidden = !(hist && hist.hasMore && !hist.loading);
  if (stick) sc.scrollTop = sc.scrollHeight;
}

function messageNode(li, m, seenText) {
  if (isSystem(m)) return systemNode(li, m, fmtTime);
  const mine = m.sender_id === myId();
  const editing = state.editing?.id === m.id;
  const sig = JSON.stringify([m.body, m.edited_at, m.deleted_at, m.attachments?.length, editing, seenText, displayName(m.sender_id)]);
  if (li && li.dataset.sig === sig) return li;
  li ||= h('li', { 'data-key': m.id });
  li.dataset.sig = sig;
  li.dataset.seq = m.seq;
  li.className = 'msg' + (mine ? ' mine' : '') + (m.deleted_at ? ' deleted' : '');
  const meta = h('div', { class: 'meta' },
    h('span', { class: 'sender', text: mine ? 'You' : displayName(m.sender_id) }),
    h('time', { datetime: m.created_at, text: fmtTime(m.created_at) }),
    m.edited_at && !m.deleted_at ? h('span', { class: 'edited', text: '(edited)' }) : null);
  let body;
  if (m.deleted_at) body = h('p', { class: 'body', text: 'message deleted' });
  else if (editing) body = editBox(m);
  else body = m.body || !m.attachments?.length ? h('p', { class: 'body', text: m.body }) : null;
  const files = !m.deleted_at && attachmentsNode(m.attachments);
  const actions = mine && !m.deleted_at && !editing && h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'link', 'data-testid': 'edit-button', text: 'Edit', onclick: () => startEdit(m) }),
    h('button', { type: 'button', class: 'link', 'data-testid': 'delete-button', text: 'Delete', onclick: () => deleteMessage(m) }));
  const seen = seenText ? h('div', { class: 'seen', 'data-testid': 'seen', text: seenText }) : null;
  li.replaceChildren(...[meta, body, files, actions, seen].filter(Boolean));
  return li;
}

function editBox(m) {
  const ta = h('textarea', { class: 'edit-box', 'data-testid': 'edit-input', rows: 2, 'aria-label': 'Edit message',
    oninput: () => (state.editing.draft = ta.value) });
  ta.value = state.editing.draft;
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      saveEdit(m);
    } else if (e.key === 'Escape') cancelEdit();
  });
  return h('div', { class: 'edit' }, ta, h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'link', 'data-testid': 'edit-save', text: 'Save', onclick: () => saveEdit(m) }),
    h('button', { type: 'button', class: 'link', text: 'Cancel', onclick: cancelEdit })));
}
