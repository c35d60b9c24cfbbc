// Fakes for chatd.test.mjs: a clock the test moves, an EventSource and a fetch answered by a
// scripted chatd, Web Locks and a BroadcastChannel shared by several clients ("tabs").

/** Lets every promise chain that is waiting on something already settled run. */
export async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** A clock with timers that fire only when the test advances it. */
export class Clock {
  t = 0;
  seq = 0;
  timers = new Map();
  setTimeout = (fn, ms) => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn });
    return id;
  };
  clearTimeout = (id) => void this.timers.delete(id);
  now = () => this.t;

  /** Moves time forward by ms, firing due timers in order and settling promises between. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let next = null;
      for (const [id, tm] of this.timers) if (tm.at <= end && (!next || tm.at < next[1].at)) next = [id, tm];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
    await settle();
  }
}

/** Returns an EventSource class whose instances the test drives; `all` lists them. */
export function fakeEventSource() {
  class ES {
    static all = [];
    constructor(url, init) {
      this.url = url;
      this.init = init;
      this.listeners = new Map();
      this.closed = false;
      this.onerror = null;
      ES.all.push(this);
    }
    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, []);
      this.listeners.get(type).push(fn);
    }
    /** The server sends an event (id for durable ones). */
    emit(type, data, id = '') {
      if (this.closed) return;
      for (const fn of this.listeners.get(type) || []) fn({ data: JSON.stringify(data), lastEventId: id });
    }
    /** The connection fails or ends (what EventSource reports as `error`). */
    fail() {
      if (!this.closed) this.onerror?.();
    }
    close() {
      this.closed = true;
    }
    get query() {
      return new URL(this.url, 'http://chatd.test').searchParams;
    }
  }
  ES.open = () => ES.all.filter((e) => !e.closed);
  ES.last = () => ES.all[ES.all.length - 1];
  return ES;
}

/**
 * A scripted chatd behind fetch. route(req) answers a request with {status, body, headers},
 * or returns nothing to hold it (a long poll); the test answers held ones with req.answer().
 */
export class FakeServer {
  requests = [];
  constructor(route) {
    this.route = route;
  }
  fetch = (url, init = {}) =>
    new Promise((resolve, reject) => {
      const u = new URL(url, 'http://chatd.test');
      const req = {
        url,
        path: u.pathname,
        query: u.searchParams,
        method: init.method || 'GET',
        headers: init.headers || {},
        credentials: init.credentials,
        body: init.body ? JSON.parse(init.body) : undefined,
        done: false,
        answer(status, body, headers = {}) {
          if (req.done) return;
          req.done = true;
          resolve(new Response(body === undefined || status === 204 ? null : JSON.stringify(body), { status, headers }));
        },
        /** The network fails (offline, refused, or cut by a proxy). */
        fail() {
          if (req.done) return;
          req.done = true;
          reject(new TypeError('Failed to fetch'));
        },
      };
      init.signal?.addEventListener('abort', () => {
        req.done = true;
        req.aborted = true;
        reject(new DOMException('aborted', 'AbortError'));
      });
      this.requests.push(req);
      const r = this.route(req);
      if (r === 'fail') req.fail();
      else if (r) req.answer(r.status, r.body, r.headers);
    });
  held(path) {
    return this.requests.filter((r) => !r.done && r.path === path);
  }
  of(path) {
    return this.requests.filter((r) => r.path === path);
  }
}

/** navigator.locks for clients in one "browser": exclusive, queued, released on resolve. */
export class Locks {
  held = new Map(); // name → queue of waiters; the first holds the lock
  request(name, opts, fn) {
    if (typeof opts === 'function') [fn, opts] = [opts, {}];
    return new Promise((resolve, reject) => {
      const q = this.held.get(name) || [];
      this.held.set(name, q);
      const w = { run: null };
      w.run = async () => {
        try {
          resolve(await fn({ name }));
        } catch (e) {
          reject(e);
        } finally {
          q.shift();
          if (q.length) q[0].run();
        }
      };
      opts.signal?.addEventListener('abort', () => {
        const i = q.indexOf(w);
        if (i > 0) {
          q.splice(i, 1);
          reject(new DOMException('aborted', 'AbortError'));
        }
      });
      q.push(w);
      if (q.length === 1) w.run();
    });
  }
}

/** BroadcastChannel for clients in one "browser": delivers to every other open instance. */
export function fakeBroadcastChannel() {
  const open = new Set();
  return class BC {
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      open.add(this);
    }
    postMessage(data) {
      const copy = structuredClone(data);
      for (const o of open) if (o !== this && o.name === this.name) queueMicrotask(() => o.onmessage?.({ data: copy }));
    }
    close() {
      open.delete(this);
    }
  };
}

/** localStorage. */
export class KV {
  m = new Map();
  getItem(k) {
    return this.m.has(k) ? this.m.get(k) : null;
  }
  setItem(k, v) {
    this.m.set(k, String(v));
  }
  removeItem(k) {
    this.m.delete(k);
  }
}

/** window, for online/offline. */
export class Win extends EventTarget {
  onLine = true;
  go(online) {
    this.onLine = online;
    this.dispatchEvent(new Event(online ? 'online' : 'offline'));
  }
}
