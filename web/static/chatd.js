// @ts-check
// chatd.js: the browser side of chatd's protocol, one dependency-free ES module that any front
// end can import (the page at / does). It keeps one live connection per browser and user, on
// whatever transport the network in between allows:
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
 * @typedef {{client_id: string, conversation_id: string, body: string, state: 'pending'|'failed',
 *   error?: SendError, created_at: number}} OutboxItem
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

/** An error answer from chatd, with its HTTP status and error code. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string|undefined} code
   * @param {string} message
   * @param {number} retryAfter seconds, from Retry-After
   */
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** @returns {Env} */
function browserEnv() {
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
function memoryKV() {
  const m = new Map();
  return {
    /** @param {string} k */ getItem: (k) => (m.has(k) ? m.get(k) : null),
    /** @param {string} k @param {string} v */ setItem: (k, v) => void m.set(k, v),
    /** @param {string} k */ removeItem: (k) => void m.delete(k),
  };
}

/** How many delivered ids are remembered for de-duplication. */
const SEEN = 4096;
/** A stream that lived at least this long after `ready` was cut, not refused: resume at once. */
const HEALTHY_MS = 1000;

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

  // ---- events ---------------------------------------------------------------------------------

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

  // ---- lifecycle ------------------------------------------------------------------------------

  /** Starts the connection (or joins the tab that holds it) and sends what the outbox holds. */
  start() {
    if (this._started) return;
    this._started = true;
    if (this.opts.resume) this.cursor = this.kv.getItem(this.key + ':cursor');
    this._listen('online', () => this._online());
    this._listen('offline', () => this._offline());
    this._listen('storage', (/** @type {any} */ e) => {
      if (e.key === this._outboxKey()) this._emit('outbox', this.outbox());
    });
    const { locks, BroadcastChannel: BC } = this.env;
    if (this.opts.shared && locks && BC) {
      this.role = 'follower';
      this._chan = new BC(this.key);
      this._chan.onmessage = (/** @type {MessageEvent} */ m) => this._onChannel(m.data);
      this._lockAbort = new AbortController();
      locks
        .request(this.key, { signal: this._lockAbort.signal }, () => {
          if (this._stopped) return undefined;
          this.role = 'leader';
          this._lead();
          return new Promise((resolve) => (this._unlock = () => resolve(undefined)));
        })
        .catch(() => {}); // aborted by stop()
      this._post({ t: 'hello' });
    } else {
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
    this._setStatus('stopped', null);
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
    this._openStream();
  }

  _online() {
    this.flush(true);
    if (this.role !== 'leader' || this._stopped) return;
    this._fails = 0;
    this._probeFails = 0;
    this._closeTransports();
    this._mode = 'stream';
    this._openStream();
  }

  _offline() {
    if (this.role !== 'leader' || this._stopped) return;
    this._closeTransports();
    this._setStatus('offline', null);
  }

  _closeTransports() {
    this._dropStream();
    this._stopPolling();
    this.env.clearTimeout(this._retryTimer);
    this.env.clearTimeout(this._probeTimer);
  }

  // ---- status ---------------------------------------------------------------------------------

  /** @param {Status} status @param {Transport} transport */
  _setStatus(status, transport) {
    this.env.clearTimeout(this._statusTimer);
    const changed = status !== this.status || transport !== this.transport;
    this.status = status;
    this.transport = transport;
    if (this.role === 'leader') this._post({ t: 'status', status, transport, cursor: this.cursor });
    if (changed) this._emit('status', { status, transport, role: this.role });
    if ((status === 'live' || status === 'fallback') && !this._everUp) {
      this._everUp = true;
      this._emit('connected', {});
      this.flush();
    }
  }

  /**
   * Shows `reconnecting` only if the connection is not back within ms: a proxy that cuts the
   * stream every few seconds should not make the status blink.
   * @param {number} ms
   */
  _reconnectingSoon(ms) {
    this.env.clearTimeout(this._statusTimer);
    this._statusTimer = this.env.setTimeout(() => this._setStatus('reconnecting', this.transport), ms);
  }

  // ---- cross-tab ------------------------------------------------------------------------------

  /** @param {any} msg */
  _post(msg) {
    try {
      this._chan?.postMessage(msg);
    } catch {
      // The channel closed with the page; nobody is listening.
    }
  }

  /** @param {any} msg */
  _onChannel(msg) {
    if (!msg || this._stopped) return;
    if (msg.t === 'hello' && this.role === 'leader') this._post({ t: 'status', status: this.status, transport: this.transport, cursor: this.cursor });
    else if (msg.t === 'outbox') this._emit('outbox', this.outbox());
    if (this.role !== 'follower') return;
    if (msg.t === 'event') this._deliver(msg.e);
    else if (msg.t === 'reset') this._reset(msg.data);
    else if (msg.t === 'status') {
      if (msg.cursor && !this.cursor) this.cursor = msg.cursor;
      this._setStatus(msg.status, msg.transport);
    }
  }

  // ---- delivery -------------------------------------------------------------------------------

  /**
   * Delivers one event unless it was delivered before; durable ones move the cursor.
   * @param {ChatEvent} e
   */
  _deliver(e) {
    if (e.id) {
      if (this._seen.has(e.id)) return;
      this._seen.add(e.id);
      if (this._seen.size > SEEN) this._seen.delete(this._seen.values().next().value || '');
      this._setCursor(e.id);
    }
    if (this.role === 'leader') this._post({ t: 'event', e });
    this._emit('event', e);
  }

  /** @param {string} c */
  _setCursor(c) {
    this.cursor = c;
    if (this.role === 'leader') this.kv.setItem(this.key + ':cursor', c);
  }

  /** @param {{reason?: string, cursor?: string}} data */
  _reset(data) {
    this._seen.clear();
    if (data?.cursor) this._setCursor(data.cursor);
    if (this.role === 'leader') this._post({ t: 'reset', data });
    this._emit('reset', data);
  }

  // ---- the stream -----------------------------------------------------------------------------

  /** @param {number} fails */
  _backoff(fails) {
    const base = Math.min(this.opts.backoffMax, this.opts.backoffMin * 2 ** Math.max(0, fails - 1));
    return base / 2 + (this.env.random() * base) / 2; // jitter: clients do not return in lockstep
  }

  /** Opens an EventSource: the main transport, or a probe while polling. */
  async _openStream() {
    if (this._stopped || this.role !== 'leader') return;
    this._dropStream();
    const a = { es: /** @type {any} */ (null), timer: /** @type {any} */ (null), ready: false, readyAt: 0 };
    this._sse = a;
    const q = new URLSearchParams();
    if (this.cursor) q.set('last_event_id', this.cursor);
    try {
      if (this.auth === 'ticket') q.set('ticket', await this._ticket());
      else if (this._needSession) {
        await this.createSession();
      }
    } catch (e) {
      if (this._sse !== a) return;
      if (e instanceof ApiError && e.status === 401) return this._unauthorized();
      return this._streamFailed(a);
    }
    if (this._sse !== a || this._stopped) return;
    const ES = this.env.EventSource || /** @type {any} */ (globalThis).EventSource;
    const url = this._url('/v1/events', q);
    const es = this.auth === 'cookie' && this.crossSite ? new ES(url, { withCredentials: true }) : new ES(url);
    a.es = es;
    a.timer = this.env.setTimeout(() => this._stuck(a), this.opts.readyTimeout);
    es.addEventListener('ready', (/** @type {MessageEvent} */ ev) => this._onReady(a, ev));
    es.addEventListener('reset', (/** @type {MessageEvent} */ ev) => a === this._sse && a.ready && this._reset(parse(ev.data)));
    for (const type of DURABLE) {
      es.addEventListener(type, (/** @type {MessageEvent} */ ev) => {
        if (a === this._sse && a.ready) this._deliver({ id: ev.lastEventId, type, data: parse(ev.data) });
      });
    }
    for (const type of EPHEMERAL) {
      es.addEventListener(type, (/** @type {MessageEvent} */ ev) => a === this._sse && a.ready && this._deliver({ type, data: parse(ev.data) }));
    }
    es.onerror = () => this._streamFailed(a);
  }

  /** @param {any} a @param {MessageEvent} ev */
  _onReady(a, ev) {
    if (a !== this._sse) return;
    this.env.clearTimeout(a.timer);
    a.ready = true;
    a.readyAt = this.env.now();
    const data = parse(ev.data);
    // A probe resumes from an older cursor than the poll may have reached: never go back.
    if (!this.cursor && data?.cursor) this._setCursor(data.cursor);
    if (this._mode === 'poll') {
      this._stopPolling();
      this.env.clearTimeout(this._probeTimer);
      this._mode = 'stream';
    }
    this._probeFails = 0;
    this._setStatus('live', 'sse');
  }

  /** `ready` did not come in time: something holds the response back. @param {any} a */
  _stuck(a) {
    if (a !== this._sse) return;
    this._dropStream();
    if (this._mode === 'poll') {
      this._probeFails++;
      this._scheduleProbe();
    } else {
      this._startPolling();
    }
  }

  /** The EventSource failed or ended. @param {any} a */
  _streamFailed(a) {
    if (a !== this._sse || this._stopped) return;
    this._dropStream();
    if (this._mode === 'poll') {
      this._probeFails++;
      return this._scheduleProbe();
    }
    if (a.ready && this.env.now() - a.readyAt >= HEALTHY_MS) {
      // Cut after a healthy while (a proxy's timeout, a deploy): resume by cursor at once,
      // with a little jitter so that a proxy's restart does not bring every client back in
      // the same millisecond.
      this._fails = 0;
      this._reconnectingSoon(2000);
      return this._retryStream(100 + this.env.random() * 400);
    }
    this._fails++;
    if (this.auth === 'cookie' && this.opts.getToken && !a.ready) this._needSession = true; // it may have been a 401
    if (!this.env.online()) return this._offline();
    if (!a.ready && this._fails >= 2) {
      // Refused twice before `ready` (an intermediary that rejects streams, or the service
      // is down): the long poll finds out which, and delivers meanwhile if it can.
      return this._startPolling();
    }
    this._setStatus('reconnecting', this.transport);
    this._retryStream(this._backoff(this._fails));
  }

  /** @param {number} ms */
  _retryStream(ms) {
    this.env.clearTimeout(this._retryTimer);
    this._retryTimer = this.env.setTimeout(() => {
      if (this._stopped || this.role !== 'leader') return;
      if (!this.env.online()) return this._offline();
      this._mode = 'stream';
      this._openStream();
    }, ms);
  }

  _dropStream() {
    const a = this._sse;
    this._sse = null;
    if (!a) return;
    this.env.clearTimeout(a.timer);
    a.es?.close();
  }

  // ---- the long poll --------------------------------------------------------------------------

  _startPolling() {
    this._dropStream();
    this._stopPolling();
    this._mode = 'poll';
    const p = { ctl: new AbortController() };
    this._poll = p;
    this._pollLoop(p);
    this._scheduleProbe();
  }

  _stopPolling() {
    this._poll?.ctl.abort();
    this._poll = null;
  }

  _scheduleProbe() {
    this.env.clearTimeout(this._probeTimer);
    const base = Math.min(this.opts.probeMax, this.opts.probeMin * 2 ** this._probeFails);
    const ms = base / 2 + (this.env.random() * base) / 2;
    this._probeTimer = this.env.setTimeout(() => {
      if (this._mode === 'poll' && !this._sse && !this._stopped) this._openStream();
    }, ms);
  }

  /** @param {number} ms */
  _sleep(ms) {
    return new Promise((resolve) => this.env.setTimeout(() => resolve(undefined), ms));
  }

  /** @param {{ctl: AbortController}} p */
  async _pollLoop(p) {
    let fails = 0;
    let full = 0; // polls in a row that waited their whole timeout without being cut
    while (this._poll === p && !this._stopped) {
      const q = new URLSearchParams();
      if (this.cursor) {
        q.set('cursor', this.cursor);
        q.set('timeout', String(this._pollWait));
      }
      const started = this.env.now();
      /** @type {Response|null} */ let res = null;
      /** @type {any} */ let body = null;
      try {
        res = await this._fetch('GET', '/v1/events/poll?' + q, undefined, p.ctl.signal);
        if (res.ok) body = await res.json();
      } catch (e) {
        if (this._poll !== p) return;
        const elapsed = this.env.now() - started;
        if (this.cursor && elapsed >= 1500 && elapsed < this._pollWait * 1000 - 500) {
          // Cut while waiting: an intermediary ends responses after a while. Ask for waits
          // well inside what it allows, and go again at once.
          this._pollWait = Math.max(1, Math.floor(elapsed / 2000));
          full = 0;
          await this._sleep(50 + this.env.random() * 200);
          continue;
        }
        fails++;
        if (!this.env.online()) return this._offline();
        this._setStatus('reconnecting', 'poll');
        await this._sleep(this._backoff(fails));
        continue;
      }
      if (this._poll !== p) return;
      if (res.status === 401) return this._unauthorized();
      if (!res.ok || !body) {
        fails++;
        const retryAfter = Number(res.headers.get('Retry-After')) || 0;
        this._setStatus('reconnecting', 'poll');
        await this._sleep(retryAfter ? retryAfter * 1000 : this._backoff(fails));
        continue;
      }
      fails = 0;
      if (!this.cursor && body.cursor) this._setCursor(body.cursor);
      this._setStatus('fallback', 'poll');
      for (const e of body.events || []) {
        if (this._poll !== p) return; // a probe took over while this answer was read
        if (e.type === 'reset') this._reset(e.data);
        else this._deliver(e);
      }
      if (body.cursor && this._poll === p) this._setCursor(body.cursor);
      const waited = this.env.now() - started;
      if (this._pollWait < this.opts.pollTimeout && waited >= this._pollWait * 1000 - 200 && ++full >= 3) {
        // Three full waits in a row: the intermediary may allow longer ones again.
        this._pollWait = Math.min(this.opts.pollTimeout, this._pollWait * 2);
        full = 0;
      }
    }
  }

  _unauthorized() {
    this._closeTransports();
    this._setStatus('offline', null);
    this._emit('unauthorized', {});
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  /** @param {string} path @param {URLSearchParams} [q] */
  _url(path, q) {
    const s = q ? String(q) : '';
    return this.opts.baseUrl + path + (s && !path.includes('?') ? '?' + s : '');
  }

  /** @param {boolean} fresh */
  async _token(fresh) {
    return this.opts.getToken ? await this.opts.getToken({ fresh }) : null;
  }

  /**
   * One request with credentials: Bearer when the app supplies tokens (a 401 gets one retry
   * with a fresh token), else the cookie.
   * @param {string} method
   * @param {string} path
   * @param {any} [body]
   * @param {AbortSignal} [signal]
   * @returns {Promise<Response>}
   */
  async _fetch(method, path, body, signal) {
    for (let attempt = 0; ; attempt++) {
      const token = await this._token(attempt > 0);
      /** @type {Record<string, string>} */
      const headers = { Accept: 'application/json' };
      if (token) headers.Authorization = 'Bearer ' + token;
      else if (method !== 'GET' && method !== 'HEAD') headers['X-Chat-Request'] = '1'; // a cookie may write only with this
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await this.env.fetch(this.opts.baseUrl + path, {
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
   * @param {string} method
   * @param {string} path e.g. '/v1/conversations'
   * @param {any} [body]
   * @returns {Promise<any>}
   */
  async request(method, path, body) {
    const res = await this._fetch(method, path, body);
    if (res.status === 204) return null;
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      const e = data?.error || {};
      const err = new ApiError(res.status, e.code, e.message || `request failed (${res.status})`, Number(res.headers.get('Retry-After')) || 0);
      if (res.status === 401) this._emit('unauthorized', {});
      throw err;
    }
    return data;
  }

  /** Sets the session cookie from the token, for EventSource on the same site. */
  async createSession() {
    await this.request('POST', '/v1/session');
    this._needSession = false;
  }

  async _ticket() {
    const r = await this.request('POST', '/v1/tickets');
    return String(r.ticket);
  }

  // ---- the outbox -----------------------------------------------------------------------------

  _outboxKey() {
    return this.key + ':outbox';
  }

  /** The messages not yet accepted by chatd, oldest first (all tabs of this user). @returns {OutboxItem[]} */
  outbox() {
    try {
      const v = JSON.parse(this.kv.getItem(this._outboxKey()) || '[]');
      return Array.isArray(v) ? v : [];
    } catch {
      return [];
    }
  }

  /** @param {(items: OutboxItem[]) => OutboxItem[]} fn */
  _editOutbox(fn) {
    const items = fn(this.outbox());
    if (items.length) this.kv.setItem(this._outboxKey(), JSON.stringify(items));
    else this.kv.removeItem(this._outboxKey());
    this._post({ t: 'outbox' });
    this._emit('outbox', items);
  }

  /**
   * Queues a message and sends it as soon as it can, after the ones queued before it. The
   * client_id makes every retry of it harmless.
   * @param {string} conversationId
   * @param {string} body
   * @param {{clientId?: string}} [opt]
   * @returns {OutboxItem}
   */
  send(conversationId, body, opt = {}) {
    /** @type {OutboxItem} */
    const item = { client_id: opt.clientId || uid(), conversation_id: conversationId, body, state: 'pending', created_at: this.env.now() };
    this._editOutbox((items) => [...items, item]);
    this.flush(true);
    return item;
  }

  /** Queues a failed message again, at the end. @param {string} clientId */
  retry(clientId) {
    this._editOutbox((items) => {
      const it = items.find((i) => i.client_id === clientId);
      if (!it) return items;
      const again = { ...it, state: /** @type {const} */ ('pending'), error: undefined };
      return [...items.filter((i) => i !== it), again];
    });
    this.flush(true);
  }

  /** Removes a message from the outbox (the user gave up on it). @param {string} clientId */
  discard(clientId) {
    this._editOutbox((items) => items.filter((i) => i.client_id !== clientId));
  }

  /**
   * Sends the outbox in order. One tab at a time does it (a Web Lock), re-reading the stored
   * outbox under the lock, so two tabs never race on the same message.
   * @param {boolean} [now] ignore the retry backoff
   */
  async flush(now = false) {
    if (this._stopped) return;
    if (now) {
      this._flushFails = 0;
      this.env.clearTimeout(this._flushTimer);
    }
    if (this._flushing) {
      this._flushAgain = true;
      return;
    }
    this._flushing = true;
    try {
      const locks = this.opts.shared ? this.env.locks : null;
      if (locks) await locks.request(this._outboxKey(), () => this._flushLocked());
      else await this._flushLocked();
    } finally {
      this._flushing = false;
      if (this._flushAgain) {
        this._flushAgain = false;
        this.flush();
      }
    }
  }

  async _flushLocked() {
    for (;;) {
      if (this._stopped) return;
      const item = this.outbox().find((i) => i.state === 'pending');
      if (!item) return;
      /** @type {Response} */ let res;
      /** @type {any} */ let data = null;
      try {
        res = await this._fetch('POST', `/v1/conversations/${encodeURIComponent(item.conversation_id)}/messages`, { body: item.body, client_id: item.client_id });
        data = await res.json().catch(() => null);
      } catch {
        return this._flushLater(0); // unreachable: keep it, and everything after it, in order
      }
      if (res.ok) {
        this._flushFails = 0;
        this._editOutbox((items) => items.filter((i) => i.client_id !== item.client_id));
        this._emit('sent', { item, message: data });
        continue;
      }
      if (res.status === 401) {
        this._emit('unauthorized', {});
        return; // kept: it goes out once the user signs in again
      }
      if (res.status === 408 || res.status === 429 || res.status >= 500) {
        return this._flushLater(Number(res.headers.get('Retry-After')) || 0);
      }
      // Refused for good (a 4xx): keep it, shown as failed, for the user to retry or discard.
      const e = data?.error || {};
      this._editOutbox((items) => items.map((i) => (i.client_id === item.client_id
        ? { ...i, state: 'failed', error: { status: res.status, code: e.code, message: e.message || `refused (${res.status})` } } : i)));
    }
  }

  /** @param {number} retryAfter seconds */
  _flushLater(retryAfter) {
    this._flushFails++;
    this.env.clearTimeout(this._flushTimer);
    this._flushTimer = this.env.setTimeout(() => this.flush(), retryAfter ? retryAfter * 1000 : this._backoff(this._flushFails));
  }
}

/** @param {string} s */
function parse(s) {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
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
