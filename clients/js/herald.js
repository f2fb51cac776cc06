// herald.js — the browser client for herald, a dependency-free ES module.
//
//   import { Herald } from '/herald.js';
//   const h = new Herald('https://push.example.com', { token });
//   const sub = h.subscribe('news', (msg) => console.log(msg.channel, msg.id, msg.data));
//   await h.publish('news', 'hello');
//
// One connection carries every channel: the /ws JSON protocol over a
// WebSocket, or one multi-channel SSE stream, or one long-poll loop. A
// transport that cannot connect in time is given up for the next one in
// `transports`. After a drop the client reconnects with exponential backoff
// and jitter and resumes every channel from its own last id, so nothing is
// lost or repeated, whichever transport carries the next connection; when
// the server no longer has what was missed, a 'gap' event says so.
//
// Docs: docs/client.md. Types: herald.d.ts.

const DEFAULTS = {
  transports: ['websocket', 'sse', 'poll'],
  token: null,
  connectTimeout: 5000,
  pollTimeout: 25,
  pingInterval: 25000,
  minBackoff: 250,
  maxBackoff: 10000,
  retryPreferredAfter: 60000,
};

const TRANSPORTS = ['websocket', 'sse', 'poll'];

/**
 * Orders two ids of one channel. herald documents its ids as `EPOCH-SEQ`;
 * anything else (or ids of different epochs) cannot be ordered: null.
 */
function compareIds(a, b) {
  const pa = /^(.+)-(\d+)$/.exec(a || '');
  const pb = /^(.+)-(\d+)$/.exec(b || '');
  if (!pa || !pb || pa[1] !== pb[1]) return null;
  return Number(pa[2]) - Number(pb[2]);
}

/** Reads a cursor (`name=id,name=id`, or a bare id for one channel) into a Map. */
function parseCursor(cursor, channels) {
  const out = new Map();
  if (!cursor) return out;
  if (!cursor.includes('=')) {
    if (channels.length === 1) out.set(channels[0], cursor);
    return out;
  }
  for (const part of cursor.split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return out;
}

function decodeData(msg) {
  if (msg.encoding !== 'base64') return msg.data;
  const bin = atob(msg.data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

/** An Error carrying herald's `{code, message}` and the HTTP status. */
async function httpError(response) {
  const body = await response.json().catch(() => ({}));
  const error = new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  error.code = body.error ? body.error.code : 'http_error';
  error.status = response.status;
  return error;
}

export class Herald {
  /**
   * `url`: the server's base URL (default: this page's origin).
   * Options: see DEFAULTS and docs/client.md.
   */
  constructor(url, options = {}) {
    const base = url || (typeof location !== 'undefined' ? location.origin : '');
    this.url = String(base).replace(/\/+$/, '');
    // An option given as undefined takes its default, as in most libraries.
    const given = Object.fromEntries(
      Object.entries(options || {}).filter(([, value]) => value !== undefined),
    );
    this.options = { ...DEFAULTS, ...given };
    const transports = this.options.transports.filter((t) => TRANSPORTS.includes(t));
    if (transports.length === 0) throw new Error(`transports must name some of ${TRANSPORTS.join(', ')}`);
    this.options.transports = transports;
    this._channels = new Map(); // name -> { handlers: Set, lastId: string|null, seen: string[] }
    this._listeners = new Map(); // event -> Set<fn>
    this._index = 0; // position in options.transports
    this._fellBackAt = 0;
    this._connection = null;
    this._attempt = 0;
    this._timer = null;
    this._changePending = false;
    this._closed = false;
    this.transport = null;
    this.state = 'idle';
    this._online = () => this._reconnectNow();
    // This client's id while long polling, so the server keeps it one
    // presence member from poll to poll.
    this._pollClient = Math.random().toString(36).slice(2, 12) + Date.now().toString(36);
    if (typeof addEventListener === 'function') addEventListener('online', this._online);
  }

  /**
   * Calls `fn(message)` for every message on `channel`; returns `{ close() }`.
   * `since` resumes from an id kept from an earlier session (e.g. in localStorage).
   */
  subscribe(channel, fn, { since } = {}) {
    if (typeof channel !== 'string' || channel === '') throw new TypeError('channel must be a non-empty string');
    if (typeof fn !== 'function') throw new TypeError('subscribe needs a function to call with each message');
    let entry = this._channels.get(channel);
    if (!entry) {
      entry = { handlers: new Set(), lastId: since || null, seen: [] };
      this._channels.set(channel, entry);
      this._channelsChanged();
    }
    // A wrapper, so the same function subscribed twice is two subscriptions.
    const handler = (message) => fn(message);
    entry.handlers.add(handler);
    return {
      close: () => {
        entry.handlers.delete(handler);
        if (entry.handlers.size === 0 && this._channels.get(channel) === entry) {
          this._channels.delete(channel);
          this._channelsChanged();
        }
      },
    };
  }

  /**
   * Publishes `data` (string, bytes, or anything JSON-serialisable) to
   * `channel` over HTTP; resolves to `{id, channel, subscribers}`.
   */
  async publish(channel, data, { event, idempotencyKey } = {}) {
    const binary = data instanceof ArrayBuffer || ArrayBuffer.isView(data) || (typeof Blob !== 'undefined' && data instanceof Blob);
    const body = typeof data === 'string' || binary ? data : JSON.stringify(data);
    const query = event ? `?event=${encodeURIComponent(event)}` : '';
    const headers = await this._authHeaders();
    if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
    const response = await fetch(`${this.url}/pub/${encodeURIComponent(channel)}${query}`, { method: 'POST', body, headers });
    if (!response.ok) throw await httpError(response);
    return response.json();
  }

  /**
   * Who is on `channel` (a channel with presence): resolves to
   * `{channel, count, users, clients: [{client, user, info, transport}]}`.
   * Asked over the /ws connection when that is the transport in use (any
   * client allowed to subscribe may ask), else over HTTP
   * (`GET /pub/{channel}/presence`, which needs publish rights).
   */
  async presence(channel) {
    const connection = this._connection;
    if (connection && typeof connection.request === 'function') {
      const answer = await connection.request({ op: 'presence', channel });
      if (answer) return answer.presence;
    }
    const headers = await this._authHeaders();
    const response = await fetch(`${this.url}/pub/${encodeURIComponent(channel)}/presence`, { headers });
    if (!response.ok) throw await httpError(response);
    return response.json();
  }

  /**
   * Listens for 'state' ({transport, state}), 'gap' (gap object), 'error'
   * ({code, message, channel?}), and 'join' / 'leave' ({channel, client,
   * user, info}: someone came to or left a channel with join_leave, over
   * WebSocket or SSE).
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
    return this;
  }

  /** Closes the connection for good: no reconnect follows. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    this._timer = null;
    if (typeof removeEventListener === 'function') removeEventListener('online', this._online);
    this._stopConnection();
    this._setState('closed');
  }

  // ---- internals shared with the transports ----

  _emit(event, value) {
    const set = this._listeners.get(event);
    if (set) for (const fn of [...set]) { try { fn(value); } catch (e) { console.error(e); } }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit('state', { transport: this.transport, state, ...extra });
  }

  _names() { return [...this._channels.keys()]; }

  /** The resume cursor for `names`: every channel with a known position. */
  _cursor(names) {
    const parts = [];
    for (const name of names) {
      const entry = this._channels.get(name);
      if (entry && entry.lastId) parts.push(`${name}=${entry.lastId}`);
    }
    return parts.join(',');
  }

  async _token() {
    const { token } = this.options;
    return typeof token === 'function' ? token() : token;
  }

  async _authHeaders() {
    const token = await this._token();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  /** Delivers a message once, in order, per channel. */
  _deliver(msg) {
    const entry = this._channels.get(msg.channel);
    if (!entry || typeof msg.id !== 'string') return;
    const order = compareIds(msg.id, entry.lastId);
    if (order !== null && order <= 0) return; // already delivered
    if (order === null) {
      // Ids that cannot be ordered: remember the recent ones instead.
      if (entry.seen.includes(msg.id)) return;
      entry.seen.push(msg.id);
      if (entry.seen.length > 256) entry.seen.shift();
    }
    entry.lastId = msg.id;
    const message = { channel: msg.channel, id: msg.id, data: decodeData(msg), event: msg.event || 'message' };
    for (const fn of [...entry.handlers]) { try { fn(message); } catch (e) { console.error(e); } }
  }

  /**
   * Records where a channel stands, as the server said: when nothing has
   * been delivered yet, or (`force`) after a gap or a poll's `next`.
   */
  _position(channel, id, force = false) {
    const entry = this._channels.get(channel);
    if (!entry || !id) return;
    if (!entry.lastId) { entry.lastId = id; return; }
    if (!force) return;
    const order = compareIds(id, entry.lastId);
    if (order === null || order > 0) entry.lastId = id;
  }

  _gap(gap) {
    const { op, ...report } = gap;
    this._emit('gap', report);
  }

  _deleted(channel) {
    this._emit('error', { code: 'channel_deleted', message: `channel ${channel} was deleted`, channel });
  }

  /**
   * Asks the server where every channel without a position stands now (a
   * poll that does not wait), so a stream that drops before its first
   * message still resumes from the moment of subscribing.
   */
  async _learnPositions(headers, signal) {
    const missing = this._names().filter((n) => !this._channels.get(n).lastId);
    if (missing.length === 0) return;
    const path = missing.map(encodeURIComponent).join(',');
    const response = await fetch(`${this.url}/sub/${path}?transport=poll&timeout=0`, { headers, signal });
    if (!response.ok) {
      const error = await httpError(response);
      this._emit('error', { code: error.code, message: error.message, status: error.status });
      throw error;
    }
    const body = await response.json();
    for (const [name, id] of parseCursor(body.next, missing)) this._position(name, id);
  }

  // ---- connection life cycle ----

  /** Applies subscribe/close calls made in one task as one change. */
  _channelsChanged() {
    if (this._closed || this._changePending) return;
    this._changePending = true;
    queueMicrotask(() => {
      this._changePending = false;
      if (this._closed) return;
      if (this._channels.size === 0) {
        clearTimeout(this._timer);
        this._timer = null;
        this._stopConnection();
        this._setState('idle');
      } else if (this._connection) {
        this._connection.channelsChanged();
      } else if (!this._timer) {
        this._connect();
      }
    });
  }

  _stopConnection() {
    const connection = this._connection;
    this._connection = null;
    if (connection) connection.stop();
  }

  /** Replaces the current connection at once, on the same transport. */
  _restart() {
    this._stopConnection();
    this._connect();
  }

  _reconnectNow() {
    if (this._closed || !this._timer) return;
    clearTimeout(this._timer);
    this._timer = null;
    this._index = 0;
    this._attempt = 0;
    this._connect();
  }

  _connect() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this._closed || this._channels.size === 0) return;
    const { transports } = this.options;
    const name = transports[this._index % transports.length];
    this.transport = name;
    this._setState('connecting');
    const Kind = { websocket: WebSocketConnection, sse: EventStreamConnection, poll: PollConnection }[name];
    const connection = new Kind(this);
    this._connection = connection;
    connection.start(
      () => { // the server answered: the transport works
        if (this._connection !== connection) return;
        this._attempt = 0;
        this._setState('open');
      },
      (opened) => { // gone, or never worked
        if (this._connection !== connection || this._closed) return;
        this._connection = null;
        const { length } = this.options.transports;
        if (!opened) {
          this._index = (this._index + 1) % length; // blocked here: try the next transport
          if (this._index !== 0) this._fellBackAt = Date.now();
        } else if (this._index !== 0 && Date.now() - this._fellBackAt >= this.options.retryPreferredAfter) {
          this._index = 0; // a fallback dropped long after it was chosen: try the preferred one again
        }
        this._schedule();
      },
    );
  }

  _schedule() {
    const { minBackoff, maxBackoff } = this.options;
    const ceiling = Math.min(maxBackoff, minBackoff * 2 ** Math.min(this._attempt, 30));
    this._attempt++;
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2)); // jitter: half to all of the ceiling
    this._setState('reconnecting', { delay, attempt: this._attempt });
    this._timer = setTimeout(() => { this._timer = null; this._connect(); }, delay);
  }
}

/** The /ws JSON protocol over one WebSocket: every channel, acknowledged. */
class WebSocketConnection {
  constructor(client) {
    this.client = client;
    this.ref = 0;
    this.pending = new Map(); // ref -> { op, channel }
    this.subscribed = new Set(); // channels this socket has asked for
    this.lastOk = new Map(); // channel -> last_id from its sub's ok
    this.stopped = false;
  }

  async start(opened, ended) {
    const c = this.client;
    let isOpen = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(connectTimer);
      clearInterval(this.pinger);
      if (this.ws) { this.ws.onclose = null; try { this.ws.close(); } catch (e) { /* already closed */ } }
      // Questions asked on this socket get no answer now: let them ask again over HTTP.
      for (const request of this.pending.values()) if (request.resolve) request.resolve(null);
      this.pending.clear();
      if (!this.stopped) ended(isOpen);
    };
    this.finish = finish;
    const connectTimer = setTimeout(() => { if (!isOpen) finish(); }, c.options.connectTimeout);
    let token;
    try { token = await c._token(); } catch (e) { finish(); return; }
    if (done) return;
    const wsUrl = `${c.url.replace(/^http/, 'ws')}/ws${token ? `?token=${encodeURIComponent(token)}` : ''}`;
    let ws;
    try { ws = new WebSocket(wsUrl); } catch (e) { finish(); return; }
    this.ws = ws;
    let lastHeard = Date.now();
    ws.onopen = () => this.channelsChanged();
    // Open once the server answers: a proxy that accepts the upgrade and
    // then drops or stalls the socket counts as "cannot connect".
    ws.onmessage = (event) => {
      lastHeard = Date.now();
      if (!isOpen) {
        isOpen = true;
        clearTimeout(connectTimer);
        const { pingInterval } = c.options;
        if (pingInterval > 0) {
          // A socket that hears nothing for two intervals is dead (a network
          // that vanished without a close): drop it and reconnect.
          this.pinger = setInterval(() => {
            if (Date.now() - lastHeard > 2 * pingInterval) finish();
            else this.send({ op: 'ping' });
          }, pingInterval);
        }
        opened();
      }
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      this.frame(frame);
    };
    ws.onclose = finish;
    ws.onerror = () => { /* onclose follows */ };
  }

  frame(frame) {
    const c = this.client;
    const request = this.pending.get(frame.ref);
    if (request) this.pending.delete(frame.ref);
    if (request && request.resolve) {
      if (frame.op === 'error') request.reject(Object.assign(new Error(frame.error.message), frame.error));
      else request.resolve(frame);
      return;
    }
    switch (frame.op) {
      case 'msg':
        if (this.subscribed.has(frame.channel)) c._deliver(frame);
        break;
      case 'ok':
        if (request && request.op === 'sub' && frame.last_id) {
          this.lastOk.set(frame.channel, frame.last_id);
          c._position(frame.channel, frame.last_id);
        }
        break;
      case 'join':
      case 'leave':
        if (this.subscribed.has(frame.channel)) c._emit(frame.op, presenceEvent(frame));
        break;
      case 'gap':
        c._gap(frame);
        // Nothing to replay (first_id absent): resume from the newest id the
        // server had at subscribe time, not again from the stale one.
        if (!frame.first_id) c._position(frame.channel, this.lastOk.get(frame.channel), true);
        break;
      case 'error': {
        const error = { ...frame.error };
        if (frame.channel) error.channel = frame.channel;
        else if (request && request.channel) error.channel = request.channel;
        if (error.code === 'channel_deleted' && error.channel) {
          // As on SSE and long polling: say so, and follow the channel's new life.
          c._deleted(error.channel);
          this.subscribed.delete(error.channel);
          this.channelsChanged();
          break;
        }
        if (request && request.op === 'sub') this.subscribed.delete(request.channel);
        c._emit('error', error);
        break;
      }
      default:
        break;
    }
  }

  /** Sends `frame` and resolves to its answer (null when the socket is not open). */
  request(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const ref = ++this.ref;
      this.pending.set(ref, { op: frame.op, channel: frame.channel, resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return null;
    const ref = ++this.ref;
    if (frame.op === 'sub' || frame.op === 'unsub') this.pending.set(ref, { op: frame.op, channel: frame.channel });
    this.ws.send(JSON.stringify({ ...frame, ref }));
    return ref;
  }

  /** Brings the socket's subscriptions in line with the client's channels. */
  channelsChanged() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return; // onopen will
    const c = this.client;
    for (const name of c._names()) {
      if (this.subscribed.has(name)) continue;
      this.subscribed.add(name);
      this.send({ op: 'sub', channel: name, since: c._channels.get(name).lastId || undefined });
    }
    for (const name of [...this.subscribed]) {
      if (c._channels.has(name)) continue;
      this.subscribed.delete(name);
      this.lastOk.delete(name);
      this.send({ op: 'unsub', channel: name });
    }
  }

  stop() { this.stopped = true; if (this.finish) this.finish(); }
}

/** One multi-channel EventSource with JSON envelopes (`?envelope=1`). */
class EventStreamConnection {
  constructor(client) {
    this.client = client;
    this.abort = new AbortController();
    this.stopped = false;
  }

  async start(opened, ended) {
    const c = this.client;
    let isOpen = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(connectTimer);
      this.abort.abort();
      if (this.source) this.source.close();
      if (!this.stopped) ended(isOpen);
    };
    this.finish = finish;
    const connectTimer = setTimeout(() => { if (!isOpen) finish(); }, c.options.connectTimeout);
    let token;
    try {
      token = await c._token();
      await c._learnPositions(token ? { Authorization: `Bearer ${token}` } : {}, this.abort.signal);
    } catch (e) {
      finish();
      return;
    }
    if (done) return;
    const names = c._names();
    this.names = names.join(',');
    const cursor = c._cursor(names);
    const query = `envelope=1${cursor ? `&since=${encodeURIComponent(cursor)}` : ''}${token ? `&token=${encodeURIComponent(token)}` : ''}`;
    const source = new EventSource(`${c.url}/sub/${names.map(encodeURIComponent).join(',')}?${query}`);
    this.source = source;
    source.onopen = () => {
      if (isOpen) return;
      isOpen = true;
      clearTimeout(connectTimer);
      opened();
    };
    source.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; } // not an envelope
      c._deliver(msg);
    };
    source.addEventListener('herald.gap', (event) => {
      let gap;
      try { gap = JSON.parse(event.data); } catch (e) { return; }
      c._gap(gap);
      // The stream's last id is its cursor where the gap happened: resume from there.
      c._position(gap.channel, parseCursor(event.lastEventId, names).get(gap.channel), true);
    });
    for (const kind of ['join', 'leave']) {
      source.addEventListener(`herald.${kind}`, (event) => {
        let frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
        c._emit(kind, presenceEvent(frame));
      });
    }
    source.addEventListener('herald.closed', (event) => {
      let info = {};
      try { info = JSON.parse(event.data); } catch (e) { /* no details */ }
      if (info.reason === 'deleted' && info.channel) c._deleted(info.channel);
      finish();
    });
    // Reconnects are ours, to resume from our own ids and apply backoff.
    source.onerror = finish;
  }

  channelsChanged() {
    if (this.client._names().join(',') !== this.names) this.client._restart();
  }

  stop() { this.stopped = true; if (this.finish) this.finish(); }
}

/** A long-poll loop: hold a GET until news, then ask again from `next`. */
/** A join or leave as handed to 'join' / 'leave' listeners. */
function presenceEvent(frame) {
  return { channel: frame.channel, client: frame.client, user: frame.user ?? null, info: frame.info ?? null };
}

class PollConnection {
  constructor(client) {
    this.client = client;
    this.abort = new AbortController();
    this.stopped = false;
  }

  async start(opened, ended) {
    const c = this.client;
    const { connectTimeout, pollTimeout, minBackoff } = c.options;
    let isOpen = false;
    try {
      const token = await c._token();
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      while (!this.stopped) {
        const names = c._names();
        this.names = names.join(',');
        const cursor = c._cursor(names);
        // The first poll does not wait: it proves the transport works and
        // learns every new channel's position at once.
        const wait = isOpen ? pollTimeout : 0;
        const query = `transport=poll&timeout=${wait}&client=${c._pollClient}${cursor ? `&since=${encodeURIComponent(cursor)}` : ''}`;
        const started = Date.now();
        const deadline = setTimeout(() => this.abort.abort(), wait * 1000 + connectTimeout);
        let body;
        try {
          const response = await fetch(`${c.url}/sub/${names.map(encodeURIComponent).join(',')}?${query}`, { headers, signal: this.abort.signal });
          if (!response.ok) {
            const error = await httpError(response);
            c._emit('error', { code: error.code, message: error.message, status: error.status });
            throw error;
          }
          body = await response.json();
        } finally {
          clearTimeout(deadline);
        }
        if (this.stopped) return;
        if (!isOpen) { isOpen = true; opened(); }
        for (const gap of body.gaps || []) c._gap(gap);
        for (const msg of body.messages || []) c._deliver(msg);
        // `next` is where this poll left every channel, gaps included.
        for (const [name, id] of parseCursor(body.next, names)) c._position(name, id, true);
        for (const channel of body.closed || []) c._deleted(channel);
        const empty = !(body.messages && body.messages.length) && !(body.gaps && body.gaps.length);
        if (wait > 0 && empty && Date.now() - started < 1000) {
          // A server that does not hold polls: do not spin.
          await new Promise((resolve) => setTimeout(resolve, minBackoff));
        }
      }
    } catch (e) {
      if (!this.stopped) ended(isOpen);
    }
  }

  channelsChanged() {
    if (this.client._names().join(',') !== this.names) this.client._restart();
  }

  stop() { this.stopped = true; this.abort.abort(); }
}

export default Herald;
