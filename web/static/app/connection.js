// The connection as the page shows it (status and transport), and the full REST reload that
// follows every (re)connect.

import { renderOutbox } from './composer.js';
import { closeConversation, renderAll } from './conversations.js';
import { apply, upsertConv } from './events.js';
import { loadHistory, renderMessages } from './messages.js';
import { $, api, enc, report, state } from './page.js';

const TRANSPORT = { sse: 'stream', poll: 'polling' };

// renderStatus shows the client's status and transport. Up but not yet loaded by REST on the
// first connect is still "connecting": "live" means up to date.
export function renderStatus() {
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

export async function loadAll() {
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
