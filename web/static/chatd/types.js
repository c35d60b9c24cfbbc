// @ts-check
// The protocol's event types and the shapes the client deals in (JSDoc types, checked by tsc).

/** Durable event types: they carry an id (a cursor) and are delivered exactly once. */
export const DURABLE = ['message', 'message_updated', 'message_deleted', 'read', 'conversation', 'member_added', 'member_removed'];
/** Ephemeral event types: no id, delivered live only. */
export const EPHEMERAL = ['typing', 'presence'];

/**
 * @typedef {'connecting'|'live'|'fallback'|'reconnecting'|'offline'|'stopped'} Status
 *   live: on the event stream; fallback: on long polls; reconnecting: the last attempt
 *   failed and another is scheduled; offline: the browser says there is no network, or the
 *   credentials were refused.
 * @typedef {'sse'|'poll'|null} Transport
 * @typedef {'leader'|'follower'|null} Role
 * @typedef {{id?: string, type: string, data: any}} ChatEvent
 * @typedef {{status: number, code?: string, message: string}} SendError
 * @typedef {{url: string, name: string, content_type: string, size: number, width?: number, height?: number}} Attachment
 * @typedef {{client_id: string, conversation_id: string, body: string, attachments?: Attachment[],
 *   state: 'pending'|'failed', error?: SendError, created_at: number}} OutboxItem
 * @typedef {{getItem(k: string): string|null, setItem(k: string, v: string): void, removeItem(k: string): void}} KV
 * @typedef {{fresh: boolean}} TokenRequest
 */

/**
 * Everything the client touches in its surroundings; tests replace parts of it.
 * @typedef {object} Env
 * @property {any} [EventSource] the EventSource constructor (looked up on each connect)
 * @property {(url: string, init?: RequestInit) => Promise<Response>} fetch
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(id: any) => void} clearTimeout
 * @property {() => number} now
 * @property {() => number} random
 * @property {KV|null} storage
 * @property {any} locks navigator.locks, or null: every tab then connects on its own
 * @property {any} BroadcastChannel the constructor, or null
 * @property {() => boolean} online
 * @property {any} events where `online`, `offline` and `storage` are listened for (window)
 * @property {string|null} origin the page's origin, to tell same-site from cross-site
 */

/**
 * @typedef {object} Options
 * @property {string} [baseUrl] chatd's URL; '' (default) is the page's own origin
 * @property {string} [user] the signed-in user's id: tabs of one user share a connection
 * @property {((req: TokenRequest) => string|null|Promise<string|null>)|null} [getToken]
 *   returns the user's JWT; called with {fresh: true} once after a 401
 * @property {'cookie'|'ticket'} [auth] how the stream authenticates: the session cookie
 *   (default on the same origin) or a ticket from POST /v1/tickets (default cross-site)
 * @property {number} [readyTimeout] ms to wait for `ready` before falling back to polling
 * @property {number} [pollTimeout] seconds a long poll may wait (≤ 55)
 * @property {number} [backoffMin] ms, first reconnect delay after a failure
 * @property {number} [backoffMax] ms, longest reconnect delay
 * @property {number} [probeMin] ms, first stream probe while polling
 * @property {number} [probeMax] ms, longest gap between stream probes
 * @property {boolean} [shared] one connection for all tabs (default true)
 * @property {boolean} [resume] resume from the stored cursor after a reload (default true)
 * @property {Partial<Env>} [env]
 */
