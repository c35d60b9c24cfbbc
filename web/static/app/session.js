// Sign-in and the session: the dev sign-in or a pasted JWT, the token the client asks for,
// starting the ChatClient with its event handlers, and signing out.

import { ChatClient } from '../chatd.js';
import { markClosed } from '../members.js';
import { renderOutbox } from './composer.js';
import { loadAll, renderStatus } from './connection.js';
import { closeConversation, renderHeader } from './conversations.js';
import { dispatch, onMessage } from './events.js';
import { renderMessages } from './messages.js';
import { $, api, emptyData, KEY, report, state, store, toast } from './page.js';
import { stopTyping } from './presence.js';

export const toId = (s) => s.trim().toLowerCase().replace(/\s+/g, '-');

function decodeJwt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export async function signIn(ev) {
  ev.preventDefault();
  const name = $('signin-name').value.trim();
  const pasted = $('signin-token').value.trim();
  const button = $('signin-button');
  button.disabled = true;
  try {
    if (pasted) {
      const claims = decodeJwt(pasted);
      if (!claims?.sub) throw new Error('That does not look like a JWT with a "sub" claim.');
      state.me = { id: claims.sub, name: claims.name || name || claims.sub, dev: false };
      state.token = pasted;
    } else {
      if (!name) throw new Error('Please enter your name.');
      const sub = toId(name);
      let res;
      try {
        res = await api('POST', '/dev/token', { sub, name });
      } catch (e) {
        if (e.status !== 404) throw e;
        // No /dev/token: a production server. The user must bring a token from the real issuer.
        $('token-field').hidden = false;
        $('signin-token').focus();
        return;
      }
      state.me = { id: sub, name, dev: true };
      state.token = res.token;
    }
    await enterApp(true);
  } catch (e) {
    state.token = null;
    report(e);
  } finally {
    button.disabled = false;
  }
}

// getToken hands the client the token; asked for a fresh one after a 401, the dev mode mints
// one, and otherwise the same token goes back (refused again, the client reports it).
async function getToken({ fresh }) {
  if (fresh && state.me?.dev) {
    const r = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ sub: state.me.id, name: state.me.name }) }).catch(() => null);
    if (r?.ok) {
      state.token = (await r.json()).token;
      store.setItem(KEY.token, state.token);
    }
  }
  return state.token;
}

// enterApp starts the client: it sets the session cookie the stream needs (proving the token
// on a fresh sign-in), connects or joins the tab that holds the connection, and sends what
// the outbox kept.
export async function enterApp(fresh) {
  const client = new ChatClient({ user: state.me.id, getToken });
  state.client = client;
  try {
    await client.createSession();
  } catch (e) {
    // A fresh sign-in must prove the token works; after a reload, only a 401 is final, other
    // failures (a deploy in progress, offline) are left to the client's reconnect loop.
    if (fresh || e.status === 401) {
      state.client = null;
      throw e;
    }
  }
  store.setItem(KEY.token, state.token);
  store.setItem(KEY.me, JSON.stringify(state.me));
  client.on('status', renderStatus);
  client.on('connected', () => loadAll()); // subscribed first, then loaded: nothing falls between
  client.on('reset', () => {
    // Our cursor was unknown or too old: the connection continues from the head; reload by REST.
    state.history.clear();
    loadAll();
  });
  client.on('event', (e) => dispatch(e.type, e.data));
  client.on('outbox', (items) => {
    if (markClosed(state.convs, items, new Date().toISOString()).includes(state.openId)) renderHeader();
    renderOutbox();
    if (state.openId) renderMessages();
  });
  client.on('sent', ({ message }) => message && onMessage('message', message));
  client.on('unauthorized', () => {
    if (!state.token) return;
    signOut();
    toast('Your session has expired. Please sign in again.');
  });
  showApp(true);
  client.start();
  renderStatus();
  $('new-chat-input').focus();
}

export function signOut() {
  stopTyping();
  api('DELETE', '/v1/session').catch(() => {}); // best effort: the cookie is useless without a token anyway
  // The outbox stays: what this user wrote goes out when they sign in again.
  state.client?.stop();
  state.client = null;
  for (const k of Object.values(KEY)) store.removeItem(k);
  for (const m of state.typing.values()) for (const t of m.values()) clearTimeout(t);
  Object.assign(state, { token: null, me: null }, emptyData());
  renderStatus();
  showApp(false);
  $('conversation-list').replaceChildren();
  $('messages').replaceChildren();
  $('search-results').replaceChildren();
  $('search-results').hidden = $('search-more').hidden = true;
  closeConversation();
  $('signin-name').focus();
}

function showApp(on) {
  $('signin').hidden = on;
  $('app').hidden = !on;
  $('signout-button').hidden = !on;
  $('whoami').textContent = on ? `${state.me.name} (${state.me.id})` : '';
  $('my-id').textContent = on ? state.me.id : '';
}
