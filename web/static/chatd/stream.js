// @ts-check
// The event stream (EventSource), the main transport. If `ready` does not arrive within
// readyTimeout something in between holds the response back, and the client falls back to
// the long poll (poll.js), probing the stream again from there.

import { ApiError } from './errors.js';
import { apiUrl, ticket } from './http.js';
import { scheduleProbe, startPolling, stopPolling } from './poll.js';
import { deliver, reconnectingSoon, reset, setCursor, setStatus } from './state.js';
import { backoff } from './timing.js';
import { DURABLE, EPHEMERAL } from './types.js';

/** @typedef {import('./client.js').ChatClient} ChatClient */

/** A stream that lived at least this long after `ready` was cut, not refused: resume at once. */
const HEALTHY_MS = 1000;

/** Opens an EventSource: the main transport, or a probe while polling. @param {ChatClient} c */
export async function openStream(c) {
  if (c._stopped || c.role !== 'leader') return;
  dropStream(c);
  const a = { es: /** @type {any} */ (null), timer: /** @type {any} */ (null), ready: false, readyAt: 0 };
  c._sse = a;
  const q = new URLSearchParams();
  if (c.cursor) q.set('last_event_id', c.cursor);
  try {
    if (c.auth === 'ticket') q.set('ticket', await ticket(c));
    else if (c._needSession) {
      await c.createSession();
    }
  } catch (e) {
    if (c._sse !== a) return;
    if (e instanceof ApiError && e.status === 401) return c._unauthorized();
    return streamFailed(c, a);
  }
  if (c._sse !== a || c._stopped) return;
  const ES = c.env.EventSource || /** @type {any} */ (globalThis).EventSource;
  const url = apiUrl(c, '/v1/events', q);
  const es = c.auth === 'cookie' && c.crossSite ? new ES(url, { withCredentials: true }) : new ES(url);
  a.es = es;
  a.timer = c.env.setTimeout(() => stuck(c, a), c.opts.readyTimeout);
  es.addEventListener('ready', (/** @type {MessageEvent} */ ev) => onReady(c, a, ev));
  es.addEventListener('reset', (/** @type {MessageEvent} */ ev) => a === c._sse && a.ready && reset(c, parse(ev.data)));
  for (const type of DURABLE) {
    es.addEventListener(type, (/** @type {MessageEvent} */ ev) => {
      if (a === c._sse && a.ready) deliver(c, { id: ev.lastEventId, type, data: parse(ev.data) });
    });
  }
  for (const type of EPHEMERAL) {
    es.addEventListener(type, (/** @type {MessageEvent} */ ev) => a === c._sse && a.ready && deliver(c, { type, data: parse(ev.data) }));
  }
  es.onerror = () => streamFailed(c, a);
}

/**
 * `ready` arrived: the stream is live; a probe that got it ends the long poll.
 * @param {ChatClient} c
 * @param {any} a
 * @param {MessageEvent} ev
 */
export function onReady(c, a, ev) {
  if (a !== c._sse) return;
  c.env.clearTimeout(a.timer);
  a.ready = true;
  a.readyAt = c.env.now();
  const data = parse(ev.data);
  // A probe resumes from an older cursor than the poll may have reached: never go back.
  if (!c.cursor && data?.cursor) setCursor(c, data.cursor);
  if (c._mode === 'poll') {
    stopPolling(c);
    c.env.clearTimeout(c._probeTimer);
    c._mode = 'stream';
  }
  c._probeFails = 0;
  setStatus(c, 'live', 'sse');
}

/**
 * `ready` did not come in time: something holds the response back.
 * @param {ChatClient} c
 * @param {any} a
 */
export function stuck(c, a) {
  if (a !== c._sse) return;
  dropStream(c);
  if (c._mode === 'poll') {
    c._probeFails++;
    scheduleProbe(c);
  } else {
    startPolling(c);
  }
}

/** The EventSource failed or ended. @param {ChatClient} c @param {any} a */
export function streamFailed(c, a) {
  if (a !== c._sse || c._stopped) return;
  dropStream(c);
  if (c._mode === 'poll') {
    c._probeFails++;
    return scheduleProbe(c);
  }
  if (a.ready && c.env.now() - a.readyAt >= HEALTHY_MS) {
    // Cut after a healthy while (a proxy's timeout, a deploy): resume by cursor at once,
    // with a little jitter so that a proxy's restart does not bring every client back in
    // the same millisecond.
    c._fails = 0;
    reconnectingSoon(c, 2000);
    return retryStream(c, 100 + c.env.random() * 400);
  }
  c._fails++;
  if (c.auth === 'cookie' && c.opts.getToken && !a.ready) c._needSession = true; // it may have been a 401
  if (!c.env.online()) return c._offline();
  if (!a.ready && c._fails >= 2) {
    // Refused twice before `ready` (an intermediary that rejects streams, or the service
    // is down): the long poll finds out which, and delivers meanwhile if it can.
    return startPolling(c);
  }
  setStatus(c, 'reconnecting', c.transport);
  retryStream(c, backoff(c, c._fails));
}

/**
 * Opens the stream again after ms, if this tab still leads and the browser is online.
 * @param {ChatClient} c
 * @param {number} ms
 */
export function retryStream(c, ms) {
  c.env.clearTimeout(c._retryTimer);
  c._retryTimer = c.env.setTimeout(() => {
    if (c._stopped || c.role !== 'leader') return;
    if (!c.env.online()) return c._offline();
    c._mode = 'stream';
    openStream(c);
  }, ms);
}

/** Closes the current EventSource, if any, and its `ready` timer. @param {ChatClient} c */
export function dropStream(c) {
  const a = c._sse;
  c._sse = null;
  if (!a) return;
  c.env.clearTimeout(a.timer);
  a.es?.close();
}

/** @param {string} s */
function parse(s) {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}
