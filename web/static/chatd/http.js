// @ts-check
// HTTP with credentials: Bearer tokens from the app (one retry with a fresh token after a 401)
// or the session cookie, and REST answers turned into JSON or an ApiError.

import { ApiError } from './errors.js';

/** @typedef {import('./client.js').ChatClient} ChatClient */

/**
 * The URL of path on chatd, with q added unless path already has a query.
 * @param {ChatClient} c
 * @param {string} path
 * @param {URLSearchParams} [q]
 */
export function apiUrl(c, path, q) {
  const s = q ? String(q) : '';
  return c.opts.baseUrl + path + (s && !path.includes('?') ? '?' + s : '');
}

/**
 * The app's token (a fresh one when asked), or null when the cookie authenticates.
 * @param {ChatClient} c
 * @param {boolean} fresh
 */
export async function currentToken(c, fresh) {
  return c.opts.getToken ? await c.opts.getToken({ fresh }) : null;
}

/**
 * One request with credentials: Bearer when the app supplies tokens (a 401 gets one retry
 * with a fresh token), else the cookie.
 * @param {ChatClient} c
 * @param {string} method
 * @param {string} path
 * @param {any} [body]
 * @param {AbortSignal} [signal]
 * @returns {Promise<Response>}
 */
export async function authFetch(c, method, path, body, signal) {
  for (let attempt = 0; ; attempt++) {
    const token = await currentToken(c, attempt > 0);
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    else if (method !== 'GET' && method !== 'HEAD') headers['X-Chat-Request'] = '1'; // a cookie may write only with this
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await c.env.fetch(c.opts.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: token ? 'same-origin' : 'include',
      cache: 'no-store',
    });
    if (res.status !== 401 || attempt > 0 || !token) return res;
  }
}

/**
 * A REST call: JSON in, JSON out (null for 204); a non-2xx answer throws ApiError.
 * @param {ChatClient} c
 * @param {string} method
 * @param {string} path e.g. '/v1/conversations'
 * @param {any} [body]
 * @returns {Promise<any>}
 */
export async function apiRequest(c, method, path, body) {
  const res = await authFetch(c, method, path, body);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = data?.error || {};
    const err = new ApiError(res.status, e.code, e.message || `request failed (${res.status})`, Number(res.headers.get('Retry-After')) || 0);
    if (res.status === 401) c._emit('unauthorized', {});
    throw err;
  }
  return data;
}

/**
 * A single-use stream ticket, for EventSource across sites where the cookie cannot go.
 * @param {ChatClient} c
 */
export async function ticket(c) {
  const r = await c.request('POST', '/v1/tickets');
  return String(r.ticket);
}
