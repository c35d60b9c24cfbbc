// @ts-check
// Tab sharing: tabs of one user elect a leader with a Web Lock; only the leader connects, and
// it relays events, resets and status to the other tabs over a BroadcastChannel.

import { deliver, reset, setStatus } from './state.js';

/** @typedef {import('./client.js').ChatClient} ChatClient */

/**
 * Tells the other tabs of this user, if any share the connection.
 * @param {ChatClient} c
 * @param {any} msg
 */
export function post(c, msg) {
  try {
    c._chan?.postMessage(msg);
  } catch {
    // The channel closed with the page; nobody is listening.
  }
}

/**
 * A message from another tab: the leader answers a new tab, followers take what the leader
 * relays.
 * @param {ChatClient} c
 * @param {any} msg
 */
export function onChannel(c, msg) {
  if (!msg || c._stopped) return;
  if (msg.t === 'hello' && c.role === 'leader') post(c, { t: 'status', status: c.status, transport: c.transport, cursor: c.cursor });
  else if (msg.t === 'outbox') c._emit('outbox', c.outbox());
  if (c.role !== 'follower') return;
  if (msg.t === 'event') deliver(c, msg.e);
  else if (msg.t === 'reset') reset(c, msg.data);
  else if (msg.t === 'status') {
    if (msg.cursor && !c.cursor) c.cursor = msg.cursor;
    setStatus(c, msg.status, msg.transport);
  }
}

/**
 * Joins the other tabs of this user when the browser can share a connection (Web Locks and
 * BroadcastChannel): this tab follows until it holds the lock, then leads until it stops.
 * Returns false when sharing is off or impossible; the caller then leads on its own.
 * @param {ChatClient} c
 * @returns {boolean}
 */
export function joinTabs(c) {
  const { locks, BroadcastChannel: BC } = c.env;
  if (!c.opts.shared || !locks || !BC) return false;
  c.role = 'follower';
  c._chan = new BC(c.key);
  c._chan.onmessage = (/** @type {MessageEvent} */ m) => onChannel(c, m.data);
  c._lockAbort = new AbortController();
  locks
    .request(c.key, { signal: c._lockAbort.signal }, () => {
      if (c._stopped) return undefined;
      c.role = 'leader';
      c._lead();
      return new Promise((resolve) => (c._unlock = () => resolve(undefined)));
    })
    .catch(() => {}); // aborted by stop()
  post(c, { t: 'hello' });
  return true;
}
