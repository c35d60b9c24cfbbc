// @ts-check
// The delivery state: every durable event once, in order, with the cursor moving only forward
// (persisted by the leading tab so a reload resumes), and the status the app sees.

import { post } from './tabs.js';

/** @typedef {import('./client.js').ChatClient} ChatClient */
/** @typedef {import('./types.js').Status} Status */
/** @typedef {import('./types.js').Transport} Transport */
/** @typedef {import('./types.js').ChatEvent} ChatEvent */

/** How many delivered ids are remembered for de-duplication. */
const SEEN = 4096;

/**
 * Sets and announces the status; the leader relays it to the other tabs, and the first `live` or
 * `fallback` emits `connected`.
 * @param {ChatClient} c
 * @param {Status} status
 * @param {Transport} transport
 */
export function setStatus(c, status, transport) {
  c.env.clearTimeout(c._statusTimer);
  const changed = status !== c.status || transport !== c.transport;
  c.status = status;
  c.transport = transport;
  if (c.role === 'leader') post(c, { t: 'status', status, transport, cursor: c.cursor });
  if (changed) c._emit('status', { status, transport, role: c.role });
  if ((status === 'live' || status === 'fallback') && !c._everUp) {
    c._everUp = true;
    c._emit('connected', {});
    c.flush();
  }
}

/**
 * Shows `reconnecting` only if the connection is not back within ms: a proxy that cuts the
 * stream every few seconds should not make the status blink.
 * @param {ChatClient} c
 * @param {number} ms
 */
export function reconnectingSoon(c, ms) {
  c.env.clearTimeout(c._statusTimer);
  c._statusTimer = c.env.setTimeout(() => setStatus(c, 'reconnecting', c.transport), ms);
}

/**
 * Delivers one event unless it was delivered before; durable ones move the cursor.
 * @param {ChatClient} c
 * @param {ChatEvent} e
 */
export function deliver(c, e) {
  if (e.id) {
    if (c._seen.has(e.id)) return;
    c._seen.add(e.id);
    if (c._seen.size > SEEN) c._seen.delete(c._seen.values().next().value || '');
    setCursor(c, e.id);
  }
  if (c.role === 'leader') post(c, { t: 'event', e });
  c._emit('event', e);
}

/**
 * Moves the cursor; the leader keeps it in storage so that a reload resumes from it.
 * @param {ChatClient} c
 * @param {string} cursor
 */
export function setCursor(c, cursor) {
  c.cursor = cursor;
  if (c.role === 'leader') c.kv.setItem(c.key + ':cursor', cursor);
}

/**
 * The cursor could not be resumed: forget delivered ids, take the new cursor, tell the app to
 * reload.
 * @param {ChatClient} c
 * @param {{reason?: string, cursor?: string}} data
 */
export function reset(c, data) {
  c._seen.clear();
  if (data?.cursor) setCursor(c, data.cursor);
  if (c.role === 'leader') post(c, { t: 'reset', data });
  c._emit('reset', data);
}
