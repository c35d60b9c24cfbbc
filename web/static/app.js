// chatd web client: the page around chatd.js, which does everything the protocol needs
// (transport, resume, tabs, the outbox). This file is the page's entry: it wires the page's
// elements to the modules in app/, one concern each, and starts. All user-supplied text
// reaches the page through textContent (see h() in app/page.js), never through innerHTML, so
// nobody can inject markup into someone else's page.

import { initSearch } from './search.js';
import { initLeave } from './members.js';
import { send } from './app/composer.js';
import { closeConversation, convTitle, newChat, newGroup, openAt } from './app/conversations.js';
import { forget } from './app/events.js';
import { loadOlder, markRead } from './app/messages.js';
import { $, api, displayName, KEY, myId, report, state, store } from './app/page.js';
import { onComposerInput } from './app/presence.js';
import { enterApp, signIn, signOut } from './app/session.js';

function boot() {
  $('signin-form').addEventListener('submit', signIn);
  $('signout-button').addEventListener('click', signOut);
  $('new-chat-form').addEventListener('submit', newChat);
  $('new-group-form').addEventListener('submit', newGroup);
  $('back-button').addEventListener('click', closeConversation);
  $('load-older').addEventListener('click', loadOlder);
  $('composer-form').addEventListener('submit', send);
  $('composer').addEventListener('input', onComposerInput);
  $('composer').addEventListener('keydown', (e) => {
    // Enter sends, Shift+Enter adds a line; never send in the middle of an IME composition.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) send(e);
  });
  initSearch({
    api, report,
    title: (id) => (state.convs.has(id) ? convTitle(state.convs.get(id)) : 'Conversation'),
    sender: (id) => (id == null ? 'System' : id === myId() ? 'You' : displayName(id)),
    open: (id, seq) => openAt(id, seq).catch(report),
  });
  initLeave({ api, report, openId: () => state.openId, left: forget });
  window.addEventListener('focus', markRead);
  document.addEventListener('visibilitychange', markRead);

  const token = store.getItem(KEY.token);
  const me = JSON.parse(store.getItem(KEY.me) || 'null');
  if (token && me) {
    state.token = token;
    state.me = me;
    $('signin').hidden = true; // no flash of the sign-in form on reload
    enterApp(false).catch((e) => report(e));
  } else {
    $('signin-name').focus();
  }
}

boot();
