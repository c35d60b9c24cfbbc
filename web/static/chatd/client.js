// @ts-check
// ChatClient: the facade apps use. It holds the state the other modules work on, the
// handlers, and the lifecycle (start, stop, online, offline); the protocol work is done in
// the modules it imports.

import { browserEnv, memoryKV } from './env.js';
import { apiRequest } from './http.js';
import { discardItem, enqueue, flushOutbox, outboxKey, readOutbox, requeue } from './outbox.js';
import { stopPolling } from './poll.js';
import { setStatus } from './state.js';
import { dropStream, openStream } from './stream.js';
import { joinTabs } from './tabs.js';

/** @typedef {import('./types.js').Status} Status */
/** @typedef {import('./types.js').Transport} Transport */
/** @typedef {import('./types.js').Role} Role */
/** @typedef {import('./types.js').OutboxItem} OutboxItem */
/** @typedef {import('./types.js').Attachment} Attachment */
/** @typedef {import('./types.js').Env} Env */
/** @typedef {import('./types.js').Options} Options */

/** The one client: a connection per browser and user, REST with auth, and the outbox. */
export class ChatClient {
  /** @param {Options} [options] */
  constructor(options = {}) {
    const o = options;
    /** @type {Required<Omit<Options, 'env'|'auth'|'getToken'>> & {getToken: Options['getToken']}} */
    this.opts = {
      baseUrl: (o.baseUrl || '').replace(/\/+$/, ''),
      user: o.user || 'default',
      getToken: o.getToken || null,
      readyTimeout: o.readyTimeout ?? 4000,
      pollTimeout: Math.min(o.pollTimeout ?? 25, 55),
      backoffMin: o.backoffMin ?? 1000,
      backoffMax: o.backoffMax ?? 30000,
      probeMin: o.probeMin ?? 5000,
      probeMax: o.probeMax ?? 120000,
      shared: o.shared ?? true,
      resume: o.resume ?? true,
    };
    /** @type {Env} */
    this.env = { ...browserEnv(), ...(o.env || {}) };
    this.kv = this.env.storage || memoryKV();
    const sameSite = !this.opts.baseUrl || (this.env.origin != null && new URL(this.opts.baseUrl, this.env.origin).origin === this.env.origin);
    /** @type {'cookie'|'ticket'} */
    this.auth = o.auth || (sameSite || !this.opts.getToken ? 'cookie' : 'ticket');
    this.crossSite = !sameSite;
    this.key = `chatd:${this.opts.baseUrl || this.env.origin || ''}:${this.opts.user}`;

    /** @type {Status} */ this.status = 'connecting';
    /** @type {Transport} */ this.transport = null;
    /** @type {Role} */ this.role = null;
    /** @type {string|null} the position after which everything has been delivered */
    this.cursor = null;

    /** @type {Map<string, Set<Function>>} */ this._handlers = new Map();
    /** @type {Set<string>} */ this._seen = new Set();
    this._started = false;
    this._stopped = false;
    this._everUp = false;
    /** @type {'stream'|'poll'} */ this._mode = 'stream';
    /** @type {null|{es: any, timer: any, ready: boolean, readyAt: number}} */ this._sse = null;
    /** @type {null|{ctl: AbortController}} */ this._poll = null;
    this._pollWait = this.opts.pollTimeout;
    this._fails = 0; // consecutive failed stream attempts
    this._probeFails = 0; // consecutive failed probes while polling
    this._needSession = this.auth === 'cookie' && !!this.opts.getToken;
    /** @type {any} */ this._retryTimer = null;
    /** @type {any} */ this._probeTimer = null;
    /** @type {any} */ this._statusTimer = null;
    /** @type {any} */ this._flushTimer = null;
    this._flushFails = 0;
    this._flushing = false;
    this._flushAgain = false;
    /** @type {any} */ this._chan = null;
    /** @type {null|(() => void)} */ this._unlock = null;
    /** @type {AbortController|null} */ this._lockAbort = null;
    /** @type {Array<[string, any]>} */ this._listeners = [];
  }

  /**
   * Subscribes to the client's notifications; returns the unsubscribe function.
   *   event:        a ChatEvent from chatd (durable ones once each, in order)
   *   connected:    the first connection is up: load state by REST now (nothing falls between)
   *   reset:        the cursor was not resumable: reload state by REST ({reason, cursor})
   *   status:       {status, transport, role} changed
   *   outbox:       the outbox changed (in this tab or another): OutboxItem[]
   *   sent:         {item, message}: an outbox message was accepted
   *   unauthorized: the token was refused even after a fresh one
   * @param {'event'|'connected'|'reset'|'status'|'outbox'|'sent'|'unauthorized'} type
   * @param {(detail: any) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(fn);
    return () => set?.delete(fn);
  }

  /** @param {string} type @param {any} [detail] */
  _emit(type, detail) {
    for (const fn of this._handlers.get(type) || []) {
      try {
        fn(detail);
      } catch (e) {
        // An application handler's bug must not stop the client's state machine.
        Promise.reject(e);
      }
    }
  }

  /** Starts the connection (or joins the tab that holds it) and sends what the outbox holds. */
  start() {
    if (this._started) return;
    this._started = true;
    if (this.opts.resume) this.cursor = this.kv.getItem(this.key + ':cursor');
    this._listen('online', () => this._online());
    this._listen('offline', () => this._offline());
    this._listen('storage', (/** @type {any} */ e) => {
      if (e.key === outboxKey(this)) this._emit('outbox', this.outbox());
    });
    if (!joinTabs(this)) {
      this.role = 'leader';
      this._lead();
    }
    this.flush();
  }

  /** Closes the connection, hands leadership to another tab and stops all timers. */
  stop() {
    this._stopped = true;
    this._closeTransports();
    for (const t of [this._retryTimer, this._probeTimer, this._statusTimer, this._flushTimer]) this.env.clearTimeout(t);
    for (const [type, fn] of this._listeners) this.env.events?.removeEventListener(type, fn);
    this._listeners = [];
    this._unlock?.();
    this._lockAbort?.abort();
    this._chan?.close();
    this._chan = null;
    setStatus(this, 'stopped', null);
  }

  /** @param {string} type @param {any} fn */
  _listen(type, fn) {
    if (!this.env.events) return;
    this.env.events.addEventListener(type, fn);
    this._listeners.push([type, fn]);
  }

  _lead() {
    this._emit('status', { status: this.status, transport: this.transport, role: this.role });
    if (!this.env.online()) return this._offline();
    this._mode = 'stream';
    openStream(this);
  }

  _online() {
    this.flush(true);
    if (this.role !== 'leader' || this._stopped) return;
    this._fails = 0;
    this._probeFails = 0;
    this._closeTransports();
    this._mode = 'stream';
    openStream(this);
  }

  _offline() {
    if (this.role !== 'leader' || this._stopped) return;
    this._closeTransports();
    setStatus(this, 'offline', null);
  }

  _closeTransports() {
    dropStream(this);
    stopPolling(this);
    this.env.clearTimeout(this._retryTimer);
    this.env.clearTimeout(this._probeTimer);
  }

  _unauthorized() {
    this._closeTransports();
    setStatus(this, 'offline', null);
    this._emit('unauthorized', {});
  }

  /**
   * A REST call: JSON in, JSON out (null for 204); a non-2xx answer throws ApiError.
   * @param {string} method
   * @param {string} path e.g. '/v1/conversations'
   * @param {any} [body]
   * @returns {Promise<any>}
   */
  async request(method, path, body) {
    return apiRequest(this, method, path, body);
  }

  /** Sets the session cookie from the token, for EventSource on the same site. */
  async createSession() {
    await this.request('POST', '/v1/session');
    this._needSession = false;
  }

  /** The messages not yet accepted by chatd, oldest first (all tabs of this user). @returns {OutboxItem[]} */
  outbox() {
    return readOutbox(this);
  }

  /**
   * Queues a message and sends it as soon as it can, after the ones queued before it. The
   * client_id makes every retry of it harmless.
   * @param {string} conversationId
   * @param {string} body
   * @param {{clientId?: string, attachments?: Attachment[]}} [opt] attachments: references to files
   *   the app uploaded itself (see the README, Attachments); body may then be ''.
   * @returns {OutboxItem}
   */
  send(conversationId, body, opt = {}) {
    return enqueue(this, conversationId, body, opt);
  }

  /** Queues a failed message again, at the end. @param {string} clientId */
  retry(clientId) {
    requeue(this, clientId);
  }

  /** Removes a message from the outbox (the user gave up on it). @param {string} clientId */
  discard(clientId) {
    discardItem(this, clientId);
  }

  /**
   * Sends the outbox in order. One tab at a time does it (a Web Lock), re-reading the stored
   * outbox under the lock, so two tabs never race on the same message.
   * @param {boolean} [now] ignore the retry backoff
   */
  async flush(now = false) {
    return flushOutbox(this, now);
  }
}
