// @ts-check
// The long-poll fallback: GET /v1/events/poll from the cursor while the stream cannot get
// through, adapting its wait to intermediaries that cut long responses, with stream probes
// scheduled with backoff to switch back.

import { authFetch } from './http.js';
import { deliver, reset, setCursor, setStatus } from './state.js';
import { dropStream, openStream } from './stream.js';
import { backoff, sleep } from './timing.js';

/** @typedef {import('./client.js').ChatClient} ChatClient */

/**
 * Switches to the long poll from the cursor, and schedules the first stream probe.
 * @param {ChatClient} c
 */
export function startPolling(c) {
  dropStream(c);
  stopPolling(c);
  c._mode = 'poll';
  const p = { ctl: new AbortController() };
  c._poll = p;
  pollLoop(c, p);
  scheduleProbe(c);
}

/** Aborts the long poll in flight, if any. @param {ChatClient} c */
export function stopPolling(c) {
  c._poll?.ctl.abort();
  c._poll = null;
}

/**
 * Tries the stream again after a jittered delay that grows with each failed probe.
 * @param {ChatClient} c
 */
export function scheduleProbe(c) {
  c.env.clearTimeout(c._probeTimer);
  const base = Math.min(c.opts.probeMax, c.opts.probeMin * 2 ** c._probeFails);
  const ms = base / 2 + (c.env.random() * base) / 2;
  c._probeTimer = c.env.setTimeout(() => {
    if (c._mode === 'poll' && !c._sse && !c._stopped) openStream(c);
  }, ms);
}

/**
 * Polls until another transport takes over (c._poll is replaced) or the client stops.
 * @param {ChatClient} c
 * @param {{ctl: AbortController}} p
 */
export async function pollLoop(c, p) {
  let fails = 0;
  let full = 0; // polls in a row that waited their whole timeout without being cut
  while (c._poll === p && !c._stopped) {
    const q = new URLSearchParams();
    if (c.cursor) {
      q.set('cursor', c.cursor);
      q.set('timeout', String(c._pollWait));
    }
    const started = c.env.now();
    /** @type {Response|null} */ let res = null;
    /** @type {any} */ let body = null;
    try {
      res = await authFetch(c, 'GET', '/v1/events/poll?' + q, undefined, p.ctl.signal);
      if (res.ok) body = await res.json();
    } catch (e) {
      if (c._poll !== p) return;
      const elapsed = c.env.now() - started;
      if (c.cursor && elapsed >= 1500 && elapsed < c._pollWait * 1000 - 500) {
        // Cut while waiting: an intermediary ends responses after a while. Ask for waits
        // well inside what it allows, and go again at once.
        c._pollWait = Math.max(1, Math.floor(elapsed / 2000));
        full = 0;
        await sleep(c, 50 + c.env.random() * 200);
        continue;
      }
      fails++;
      if (!c.env.online()) return c._offline();
      setStatus(c, 'reconnecting', 'poll');
      await sleep(c, backoff(c, fails));
      continue;
    }
    if (c._poll !== p) return;
    if (res.status === 401) return c._unauthorized();
    if (!res.ok || !body) {
      fails++;
      const retryAfter = Number(res.headers.get('Retry-After')) || 0;
      setStatus(c, 'reconnecting', 'poll');
      await sleep(c, retryAfter ? retryAfter * 1000 : backoff(c, fails));
      continue;
    }
    fails = 0;
    if (!c.cursor && body.cursor) setCursor(c, body.cursor);
    setStatus(c, 'fallback', 'poll');
    for (const e of body.events || []) {
      if (c._poll !== p) return; // a probe took over while this answer was read
      if (e.type === 'reset') reset(c, e.data);
      else deliver(c, e);
    }
    if (body.cursor && c._poll === p) setCursor(c, body.cursor);
    const waited = c.env.now() - started;
    if (c._pollWait < c.opts.pollTimeout && waited >= c._pollWait * 1000 - 200 && ++full >= 3) {
      // Three full waits in a row: the intermediary may allow longer ones again.
      c._pollWait = Math.min(c.opts.pollTimeout, c._pollWait * 2);
      full = 0;
    }
  }
}
