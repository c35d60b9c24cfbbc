// @ts-check
// The outbox: messages kept in storage with their client_id until chatd accepts them, sent
// in order by one tab at a time, so a message written offline survives a reload and is sent once.

import { uid } from './env.js';
import { authFetch } from './http.js';
import { post } from './tabs.js';
import { backoff } from './timing.js';

/** @typedef {import('./client.js').ChatClient} ChatClient */
/** @typedef {import('./types.js').OutboxItem} OutboxItem */
/** @typedef {import('./types.js').Attachment} Attachment */

/** The storage key of this user's outbox, shared by the user's tabs. @param {ChatClient} c */
export function outboxKey(c) {
  return c.key + ':outbox';
}

/**
 * The messages not yet accepted by chatd, oldest first (all tabs of this user). @returns
 * {OutboxItem[]}
 * @param {ChatClient} c
 */
export function readOutbox(c) {
  try {
    const v = JSON.parse(c.kv.getItem(outboxKey(c)) || '[]');
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

/**
 * Rewrites the stored outbox with fn and tells this tab and the others.
 * @param {ChatClient} c
 * @param {(items: OutboxItem[]) => OutboxItem[]} fn
 */
export function editOutbox(c, fn) {
  const items = fn(c.outbox());
  if (items.length) c.kv.setItem(outboxKey(c), JSON.stringify(items));
  else c.kv.removeItem(outboxKey(c));
  post(c, { t: 'outbox' });
  c._emit('outbox', items);
}

/**
 * Queues a message and sends it as soon as it can, after the ones queued before it. The
 * client_id makes every retry of it harmless.
 * @param {ChatClient} c
 * @param {string} conversationId
 * @param {string} body
 * @param {{clientId?: string, attachments?: Attachment[]}} [opt]
 * @returns {OutboxItem}
 */
export function enqueue(c, conversationId, body, opt = {}) {
  /** @type {OutboxItem} */
  const item = { client_id: opt.clientId || uid(), conversation_id: conversationId, body, state: 'pending', created_at: c.env.now() };
  if (opt.attachments?.length) item.attachments = opt.attachments;
  editOutbox(c, (items) => [...items, item]);
  c.flush(true);
  return item;
}

/** Queues a failed message again, at the end. @param {ChatClient} c @param {string} clientId */
export function requeue(c, clientId) {
  editOutbox(c, (items) => {
    const it = items.find((i) => i.client_id === clientId);
    if (!it) return items;
    const again = { ...it, state: /** @type {const} */ ('pending'), error: undefined };
    return [...items.filter((i) => i !== it), again];
  });
  c.flush(true);
}

/**
 * Removes a message from the outbox (the user gave up on it).
 * @param {ChatClient} c
 * @param {string} clientId
 */
export function discardItem(c, clientId) {
  editOutbox(c, (items) => items.filter((i) => i.client_id !== clientId));
}

/**
 * Sends the outbox in order. One tab at a time does it (a Web Lock), re-reading the stored
 * outbox under the lock, so two tabs never race on the same message.
 * @param {ChatClient} c
 * @param {boolean} [now] ignore the retry backoff
 */
export async function flushOutbox(c, now = false) {
  if (c._stopped) return;
  if (now) {
    c._flushFails = 0;
    c.env.clearTimeout(c._flushTimer);
  }
  if (c._flushing) {
    c._flushAgain = true;
    return;
  }
  c._flushing = true;
  try {
    const locks = c.opts.shared ? c.env.locks : null;
    if (locks) await locks.request(outboxKey(c), () => flushLocked(c));
    else await flushLocked(c);
  } finally {
    c._flushing = false;
    if (c._flushAgain) {
      c._flushAgain = false;
      c.flush();
    }
  }
}

/**
 * Sends pending messages oldest first until one cannot go; runs under the outbox lock.
 * @param {ChatClient} c
 */
export async function flushLocked(c) {
  for (;;) {
    if (c._stopped) return;
    const item = c.outbox().find((i) => i.state === 'pending');
    if (!item) return;
    /** @type {Response} */ let res;
    /** @type {any} */ let data = null;
    try {
      res = await authFetch(c, 'POST', `/v1/conversations/${encodeURIComponent(item.conversation_id)}/messages`, { body: item.body, client_id: item.client_id, ...(item.attachments ? { attachments: item.attachments } : {}) });
      data = await res.json().catch(() => null);
    } catch {
      return flushLater(c, 0); // unreachable: keep it, and everything after it, in order
    }
    if (res.ok) {
      c._flushFails = 0;
      editOutbox(c, (items) => items.filter((i) => i.client_id !== item.client_id));
      c._emit('sent', { item, message: data });
      continue;
    }
    if (res.status === 401) {
      c._emit('unauthorized', {});
      return; // kept: it goes out once the user signs in again
    }
    if (res.status === 408 || res.status === 429 || res.status >= 500) {
      return flushLater(c, Number(res.headers.get('Retry-After')) || 0);
    }
    // Refused for good (a 4xx): keep it, shown as failed, for the user to retry or discard.
    const e = data?.error || {};
    editOutbox(c, (items) => items.map((i) => (i.client_id === item.client_id
      ? { ...i, state: 'failed', error: { status: res.status, code: e.code, message: e.message || `refused (${res.status})` } } : i)));
  }
}

/**
 * Schedules the next flush after Retry-After, or after a backoff.
 * @param {ChatClient} c
 * @param {number} retryAfter seconds
 */
export function flushLater(c, retryAfter) {
  c._flushFails++;
  c.env.clearTimeout(c._flushTimer);
  c._flushTimer = c.env.setTimeout(() => c.flush(), retryAfter ? retryAfter * 1000 : backoff(c, c._flushFails));
}
