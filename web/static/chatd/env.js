// @ts-check
// The client's surroundings (timers, fetch, storage, locks, channels), gathered in one place so
// tests can replace them, and the client_id generator.

/** @typedef {import('./types.js').Env} Env */

/** @returns {Env} */
export function browserEnv() {
  const g = /** @type {any} */ (globalThis);
  let storage = null;
  try {
    storage = g.localStorage || null;
  } catch {
    storage = null; // storage disabled by the user: the outbox then lives as long as the page
  }
  return {
    EventSource: undefined,
    fetch: (url, init) => g.fetch(url, init),
    setTimeout: (fn, ms) => g.setTimeout(fn, ms),
    clearTimeout: (id) => g.clearTimeout(id),
    now: () => Date.now(),
    random: () => Math.random(),
    storage,
    locks: g.navigator?.locks || null, // only in secure contexts (https, localhost)
    BroadcastChannel: g.BroadcastChannel || null,
    online: () => g.navigator?.onLine !== false,
    events: typeof g.addEventListener === 'function' ? g : null,
    origin: g.location?.origin || null,
  };
}

/** In-memory storage for when there is none: the outbox then lasts as long as the page. */
export function memoryKV() {
  const m = new Map();
  return {
    /** @param {string} k */ getItem: (k) => (m.has(k) ? m.get(k) : null),
    /** @param {string} k @param {string} v */ setItem: (k, v) => void m.set(k, v),
    /** @param {string} k */ removeItem: (k) => void m.delete(k),
  };
}

/**
 * A random client_id. crypto.randomUUID exists only in secure contexts; getRandomValues
 * everywhere.
 */
export function uid() {
  const c = /** @type {any} */ (globalThis).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  return Array.from(b, (/** @type {number} */ x) => x.toString(16).padStart(2, '0')).join('');
}
