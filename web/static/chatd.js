// @ts-check
// chatd.js: the browser side of chatd's protocol, dependency-free ES modules entered here,
// which any front end can import (the page at / does). It keeps one live connection per
// browser and user, on whatever transport the network in between allows:
//
//   - EventSource first. If `ready` does not arrive within readyTimeout, something between the
//     browser and chatd is holding the response back (a buffering or compressing proxy), so
//     the client switches to GET /v1/events/poll from the same cursor and keeps probing the
//     stream with backoff, switching back when a probe gets `ready` in time.
//   - Every durable event is delivered once: the cursor moves only forward and ids already
//     delivered are skipped, so switching transports, tabs or instances shows nothing twice.
//   - Tabs elect a leader (Web Locks); only the leader connects and relays events and status
//     to the others over a BroadcastChannel. When it closes, the next tab takes over from the
//     cursor it was relayed.
//   - Messages are sent through an outbox kept in localStorage with their client_id, so a
//     message written offline survives a reload and is sent once, in order.
//
// Tokens never go into a URL: REST and polls carry `Authorization: Bearer`, the stream uses
// the session cookie (same site) or a single-use ticket (cross site). Without getToken the
// cookie alone authenticates (chat_session, or an Auth.js session on the app's own domain),
// and writes carry `X-Chat-Request: 1`, without which chatd lets no cookie write.
//
// This file is the public entry point; the work is done by the modules under chatd/, one
// concern each: the stream (stream.js), the long-poll fallback (poll.js), the delivery state
// and cursor (state.js), tab sharing (tabs.js), the outbox (outbox.js), HTTP with
// credentials (http.js) and the ChatClient facade (client.js). They are served next to it
// (/web/chatd/...) and imported relative to it, so a copy must keep the directory alongside.

export { ChatClient } from './chatd/client.js';
export { ApiError } from './chatd/errors.js';
export { uid } from './chatd/env.js';
export { DURABLE, EPHEMERAL } from './chatd/types.js';

/**
 * @typedef {import('./chatd/types.js').Status} Status
 * @typedef {import('./chatd/types.js').Transport} Transport
 * @typedef {import('./chatd/types.js').Role} Role
 * @typedef {import('./chatd/types.js').ChatEvent} ChatEvent
 * @typedef {import('./chatd/types.js').SendError} SendError
 * @typedef {import('./chatd/types.js').Attachment} Attachment
 * @typedef {import('./chatd/types.js').OutboxItem} OutboxItem
 * @typedef {import('./chatd/types.js').KV} KV
 * @typedef {import('./chatd/types.js').TokenRequest} TokenRequest
 * @typedef {import('./chatd/types.js').Env} Env
 * @typedef {import('./chatd/types.js').Options} Options
 */
