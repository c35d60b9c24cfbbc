// Typing and presence: the hints this user sends while typing, the indicator of others
// typing, and online dots that follow presence events.

import { autosize } from './composer.js';
import { renderHeader, renderList } from './conversations.js';
import { $, api, displayName, enc, myId, state } from './page.js';

export function onTyping({ conversation_id: id, user_id: user, typing }) {
  if (user === myId()) return;
  clearTyping(id, user);
  if (typing) {
    const m = state.typing.get(id) || state.typing.set(id, new Map()).get(id);
    // Senders refresh every 3 s while typing; silence for 6 s means they stopped.
    m.set(user, setTimeout(() => clearTyping(id, user), 6000));
  }
  if (id === state.openId) renderTyping();
}

export function clearTyping(id, user) {
  const m = state.typing.get(id);
  if (!m?.has(user)) return;
  clearTimeout(m.get(user));
  m.delete(user);
  if (id === state.openId) renderTyping();
}

export function onPresence({ user_id: user, online }) {
  for (const c of state.convs.values()) for (const p of c.participants || []) if (p.id === user) p.online = online;
  renderList();
  renderHeader();
}

// Typing hints are throttled to one per 3 s and stop after 5 s of no keystrokes.
const typingOut = { conv: null, lastSent: 0, idle: 0 };

function postTyping(id, typing) {
  api('POST', `/v1/conversations/${enc(id)}/typing`, { typing }).catch(() => {}); // a lost hint is harmless
}

export function onComposerInput() {
  autosize();
  const id = state.openId;
  if (!id) return;
  if (!$('composer').value.trim()) return stopTyping();
  const now = Date.now();
  if (typingOut.conv !== id || now - typingOut.lastSent > 3000) {
    typingOut.conv = id;
    typingOut.lastSent = now;
    postTyping(id, true);
  }
  clearTimeout(typingOut.idle);
  typingOut.idle = setTimeout(stopTyping, 5000);
}

export function stopTyping() {
  clearTimeout(typingOut.idle);
  if (typingOut.conv && state.token) postTyping(typingOut.conv, false);
  typingOut.conv = null;
  typingOut.lastSent = 0;
}

export function renderTyping() {
  const m = state.typing.get(state.openId);
  const names = m ? [...m.keys()].map(displayName) : [];
  $('typing-indicator').textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
}
