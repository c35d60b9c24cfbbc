// The page's shared ground for the web client's modules: the state shown (one signed-in
// user's conversations, history, reads and typing), the element builder, the HTTP call and
// the error toast. All user-supplied text reaches the page through textContent (see h()),
// never through innerHTML, so nobody can inject markup into someone else's page.

import { ApiError } from '../chatd.js';
import { signOut } from './session.js';

export const $ = (id) => document.getElementById(id);
export const enc = encodeURIComponent;
// sessionStorage, not localStorage: each tab (or private window) can be a different user, and a
// token does not outlive the browsing session.
export const store = sessionStorage;
export const KEY = { token: 'chatd.token', me: 'chatd.me' };

// me is {id, name, dev}; client is the ChatClient of the signed-in user.
export const state = { token: null, me: null, client: null, ...emptyData() };

// emptyData is everything that belongs to one signed-in user and is dropped on sign-out.
export function emptyData() {
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

export const myId = () => state.me?.id;
export const displayName = (id) => (id === myId() ? state.me.name : state.names.get(id) || id);

// h builds an element. `text` sets textContent; string children become text nodes.
export function h(tag, attrs = {}, ...children) {
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


// api goes through the client once signed in (Bearer, one fresh token after a 401); before
// that only the dev sign-in is called.
export async function api(method, path, body) {
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

export function toast(text) {
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', text: '×' });
  const el = h('div', { class: 'toast', role: 'alert' }, h('span', { text }), close);
  close.addEventListener('click', () => el.remove());
  $('toasts').append(el);
  setTimeout(() => el.remove(), 8000);
}

// report shows an error; a 401 while signed in means the token expired, so back to sign-in.
export function report(err) {
  if (err instanceof ApiError && err.status === 401 && state.token) {
    signOut();
    toast('Your session has expired. Please sign in again.');
  } else if (err instanceof ApiError) toast(err.message);
  else if (err instanceof TypeError) toast('Network error: the server could not be reached.');
  else toast(err?.message || String(err));
}
