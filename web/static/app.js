// chatd web client: the page around chatd.js, which does everything the protocol needs
// (transport, resume, tabs, the outbox); this file keeps the state shown and renders it. All
// user-supplied text reaches the page through textContent (see h()), never through innerHTML,
// so nobody can inject markup into someone else's page.

import { ApiError, ChatClient } from './chatd.js';
import { initSearch } from './search.js';
import { attachmentsNode, attachmentsSummary } from './attachments.js';
import { applyMember, initLeave, isClosed, isSystem, markClosed, renderDetails, systemNode } from './members.js';

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
// sessionStorage, not localStorage: each tab (or private window) can be a different user, and a
// token does not outlive the browsing session.
const store = sessionStorage;
const KEY = { token: 'chatd.token', me: 'chatd.me' };

// me is {id, name, dev}; client is the ChatClient of the signed-in user.
const state = { token: null, me: null, client: null, ...emptyData() };

// emptyData is everything that belongs to one signed-in user and is dropped on sign-out.
function emptyData() {
  return {
    convs: new Map(), // conversation id → conversation object
    names: new Map(), // user id → display name (from participants)
    history: new Map(), // conversation id → {byId: Map(id → message), oldest, hasMore, loading}
    reads: new Map(), // conversation id → Map(user id → seq), from other users' read events
    typing: new Map(), // conversation id → Map(user id → timer)
    queue: [], // events that arrived while a full reload was running
    openId: null, editing: null, loaded: false, loading: false, reloadAgain: false,
  };
}

const myId = () => state.me?.id;
const displayName = (id) => (id === myId() ? state.me.name : state.names.get(id) || id);

// h builds an element. `text` sets textContent; string children become text nodes.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children.filter((c) => c != null && c !== false));
  return el;
}

// ---- HTTP ------------------------------------------------------------------------------------

// api goes through the client once signed in (Bearer, one fresh token after a 401); before
// that only the dev sign-in is called.
async function api(method, path, body) {
  if (state.client) return state.client.request(method, path, body);
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  if (method !== 'GET') headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = data?.error || {};
    const retryAfter = Number(res.headers.get('Retry-After')) || 0;
    throw new ApiError(res.status, e.code, e.message || `request failed (${res.status})`, retryAfter);
  }
  return data;
}

function toast(text) {
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', text: '×' });
  const el = h('div', { class: 'toast', role: 'alert' }, h('span', { text }), close);
  close.addEventListener('click', () => el.remove());
  $('toasts').append(el);
  setTimeout(() => el.remove(), 8000);
}

// report shows an error; a 401 while signed in means the token expired, so back to sign-in.
function report(err) {
  if (err instanceof ApiError && err.status === 401 && state.token) {
    signOut();
    toast('Your session has expired. Please sign in again.');
  } else if (err instanceof ApiError) toast(err.message);
  else if (err instanceof TypeError) toast('Network error: the server could not be reached.');
  else toast(err?.message || String(err));
}

// ---- Sign-in -----------------------------------------------------------------------------------

const toId = (s) => s.trim().toLowerCase().replace(/\s+/g, '-');

function decodeJwt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

async function signIn(ev) {
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
async function enterApp(fresh) {
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

function signOut() {
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

// ---- Connection status -------------------------------------------------------------------------

const TRANSPORT = { sse: 'stream', poll: 'polling' };

// renderStatus shows the client's status and transport. Up but not yet loaded by REST on the
// first connect is still "connecting": "live" means up to date.
function renderStatus() {
  const c = state.client;
  let st = c ? c.status : 'offline';
  if ((st === 'live' || st === 'fallback') && !state.loaded) st = 'connecting';
  const el = $('status');
  el.dataset.state = st;
  el.dataset.transport = c?.transport || '';
  el.dataset.role = c?.role || '';
  const how = c?.transport && st !== 'offline' ? ` · ${TRANSPORT[c.transport]}` : '';
  el.textContent = (st === 'fallback' ? 'fallback' : st) + how;
  el.title = c?.role === 'follower' ? 'Shares the connection of another tab' : '';
  renderOutbox();
  if (state.openId) renderMessages(); // "sending…" or "waiting for connection…"
}

// renderOutbox counts the messages not yet accepted, in every conversation: after a reload
// while chatd is unreachable, no conversation can be shown, but what waits to be sent can.
function renderOutbox() {
  const items = state.client?.outbox() || [];
  const failed = items.filter((i) => i.state === 'failed').length;
  const el = $('outbox');
  el.hidden = !items.length;
  el.dataset.count = String(items.length);
  el.textContent = items.length ? `${items.length} unsent` + (failed ? ` (${failed} failed)` : '') : '';
}

// dispatch holds events back while a full REST reload runs, so the reload cannot overwrite them.
const dispatch = (type, data) => (state.loading ? state.queue.push([type, data]) : apply(type, data));

function apply(type, d) {
  if (type.startsWith('message')) onMessage(type, d);
  else if (type === 'read') onRead(d);
  else if (type === 'conversation') {
    upsertConv(d);
    renderList();
  } else if (type === 'member_added' || type === 'member_removed') onMember(type, d);
  else if (type === 'typing') onTyping(d);
  else if (type === 'presence') onPresence(d);
}

async function loadAll() {
  if (state.loading) return (state.reloadAgain = true); // one more pass once this one ends
  Object.assign(state, { loading: true, loaded: true });
  try {
    const convs = [];
    let cursor = null;
    for (let page = 0; page < 10; page++) {
      const r = await api('GET', '/v1/conversations?limit=50' + (cursor ? '&cursor=' + enc(cursor) : ''));
      convs.push(...r.conversations);
      cursor = r.next_cursor;
      if (!cursor) break;
    }
    const unread = await api('GET', '/v1/unread');
    const counts = new Map(unread.conversations.map((u) => [u.id, u.unread_count]));
    state.convs.clear();
    for (const c of convs) upsertConv({ ...c, unread_count: counts.get(c.id) || 0 });
    if (state.openId && !state.convs.has(state.openId)) closeConversation();
    if (state.openId) {
      state.history.delete(state.openId);
      await loadHistory(state.openId);
    }
  } catch (e) {
    state.loaded = false;
    report(e);
    setTimeout(() => state.token && !state.loaded && loadAll(), 5000); // try again shortly
  } finally {
    state.loading = false;
    if (state.reloadAgain) {
      state.reloadAgain = false;
      loadAll();
    } else {
      for (const [type, data] of state.queue.splice(0)) apply(type, data);
      renderAll();
      renderStatus();
    }
  }
}

// ---- State updates -----------------------------------------------------------------------------

function upsertConv(c) {
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
function onMessage(type, m) {
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
function forget(id) {
  for (const i of state.client?.outbox() || []) if (i.conversation_id === id) state.client.discard(i.client_id);
  state.convs.delete(id);
  state.history.delete(id);
  state.reads.delete(id);
  for (const t of state.typing.get(id)?.values() || []) clearTimeout(t);
  state.typing.delete(id);
  if (state.openId === id) closeConversation();
  else renderList();
}

function onTyping({ conversation_id: id, user_id: user, typing }) {
  if (user === myId()) return;
  clearTyping(id, user);
  if (typing) {
    const m = state.typing.get(id) || state.typing.set(id, new Map()).get(id);
    // Senders refresh every 3 s while typing; silence for 6 s means they stopped.
    m.set(user, setTimeout(() => clearTyping(id, user), 6000));
  }
  if (id === state.openId) renderTyping();
}

function clearTyping(id, user) {
  const m = state.typing.get(id);
  if (!m?.has(user)) return;
  clearTimeout(m.get(user));
  m.delete(user);
  if (id === state.openId) renderTyping();
}

function onPresence({ user_id: user, online }) {
  for (const c of state.convs.values()) for (const p of c.participants || []) if (p.id === user) p.online = online;
  renderList();
  renderHeader();
}

// ---- Conversations -----------------------------------------------------------------------------

const others = (c) => (c.participants || []).filter((p) => p.id !== myId());
const convTitle = (c) => c.title || others(c).map((p) => displayName(p.id)).join(', ') || 'Just you';
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

function newChat(ev) {
  const input = $('new-chat-input');
  const id = normId(input.value);
  if (!id) return ev.preventDefault();
  createConversation(ev, { participant_id: id }, input);
}

function newGroup(ev) {
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
async function openAt(id, seq) {
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

function closeConversation() {
  stopTyping();
  state.openId = null;
  document.body.classList.remove('conv-open');
  $('conversation-view').hidden = true;
  $('no-conversation').hidden = false;
  renderList();
}

// loadHistory fetches the latest window, or the one before the oldest loaded message. The window
// object exists while loading so that events arriving meanwhile are not lost.
async function loadHistory(id, older = false) {
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

async function loadOlder() {
  const sc = $('messages-scroll');
  const fromBottom = sc.scrollHeight - sc.scrollTop; // keep the reader's place as content grows above
  $('load-older').disabled = true;
  await loadHistory(state.openId, true);
  $('load-older').disabled = false;
  sc.scrollTop = sc.scrollHeight - fromBottom;
}

// markRead reports the newest loaded message as read while the user can actually see it.
function markRead() {
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

// ---- Sending, editing, typing ------------------------------------------------------------------

// send queues the message in the client's outbox, which keeps it (across reloads too) until
// chatd accepts it, sends in order, and retries with the same client_id, so a retry after a
// lost answer cannot post it twice.
function send(ev) {
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

function startEdit(m) {
  state.editing = { id: m.id, draft: m.body };
  renderMessages();
  const box = $('messages').querySelector('.edit-box');
  box?.focus();
  box?.setSelectionRange(box.value.length, box.value.length);
}

function cancelEdit() {
  state.editing = null;
  renderMessages();
  $('composer').focus();
}

async function saveEdit(m) {
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
async function deleteMessage(m) {
  try {
    const deleted = await api('DELETE', `/v1/conversations/${enc(m.conversation_id)}/messages/${enc(m.id)}`);
    onMessage('message_deleted', deleted);
  } catch (e) {
    report(e);
  }
}

// Typing hints are throttled to one per 3 s and stop after 5 s of no keystrokes.
const typingOut = { conv: null, lastSent: 0, idle: 0 };

function postTyping(id, typing) {
  api('POST', `/v1/conversations/${enc(id)}/typing`, { typing }).catch(() => {}); // a lost hint is harmless
}

function onComposerInput() {
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

function stopTyping() {
  clearTimeout(typingOut.idle);
  if (typingOut.conv && state.token) postTyping(typingOut.conv, false);
  typingOut.conv = null;
  typingOut.lastSent = 0;
}

function autosize() {
  const ta = $('composer');
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight, 160) + 'px';
}

// ---- Rendering ---------------------------------------------------------------------------------

function renderAll() {
  renderList();
  renderHeader();
  renderMessages();
  renderTyping();
}

const dot = (on) => h('span', { class: 'dot' + (on ? ' on' : ''), role: 'img', 'aria-label': on ? 'online' : 'offline' });

function renderList() {
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

function renderHeader() {
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

function renderTyping() {
  const m = state.typing.get(state.openId);
  const names = m ? [...m.keys()].map(displayName) : [];
  $('typing-indicator').textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
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
function renderMessages(toBottom = false) {
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

// pendingNode shows a message of the outbox: waiting to be sent, or refused with the reason
// and a way to retry or drop it.
function pendingNode(li, p) {
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

// ---- Wiring ------------------------------------------------------------------------------------

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
