// @ts-check
// Retry timing shared by the stream, the long poll and the outbox: exponential backoff with
// jitter, and a sleep on the injected clock.

/** @typedef {import('./client.js').ChatClient} ChatClient */

/**
 * The delay before retry number `fails`, doubling up to backoffMax.
 * @param {ChatClient} c
 * @param {number} fails
 */
export function backoff(c, fails) {
  const base = Math.min(c.opts.backoffMax, c.opts.backoffMin * 2 ** Math.max(0, fails - 1));
  return base / 2 + (c.env.random() * base) / 2; // jitter: clients do not return in lockstep
}

/**
 * Resolves after ms on the client's clock (tests move it by hand).
 * @param {ChatClient} c
 * @param {number} ms
 */
export function sleep(c, ms) {
  return new Promise((resolve) => c.env.setTimeout(() => resolve(undefined), ms));
}
