// herald.js — the browser client for herald, a dependency-free ES module.
//
//   import { Herald } from '/herald.js';
//   const h = new Herald('https://push.example.com', { token });
//   const sub = h.subscribe('news', (msg) => console.log(msg.channel, msg.id, msg.data));
//   await h.publish('news', 'hello');
//
// One connection carries every channel: the /ws JSON protocol over WebSocket,
// or one multi-channel SSE stream, or one long-poll loop. When a transport
// cannot connect, the next one in `transports` is tried. After a drop the
// client reconnects with exponential backoff and jitter and resumes every
// channel from the last id it delivered, so nothing is lost or repeated;
// when the server no longer has what was missed, a 'gap' event says so.

const DEFAULTS = {
  transports: ['websocket', 'sse', 'poll'],
  token: null,
  connectTimeout: 5000,
  pollTimeout: 25,
  minBackoff: 250,
  maxBackoff: 10000,
};

/** Splits an id `EPOCH-SEQ` (herald's documented id format) for ordering. */
function parseId(id) {
  const dash = typeof id === 'string' ? id.lastIndexOf('-') : -1;
  if (dash < 1) return null;
  return { epoch: id.slice(0, dash), seq: Number(id.slice(dash + 1)) };
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

export class Herald {
  constructor(url, options = {}) {
    const base = url || (typeof location !== 'undefined' ? location.origin : '');
    this.url = base.replace(/\/+$/, '');
    this.options = { ...DEFAULTS, ...options };
    this._channels = new Map(); // name -> { handlers: Set, lastId: string|null }
    this._listeners = new Map(); // event -> Set<fn>
    this._transportIndex = 0;
    this._connection = null;
    this._attempt = 0;
    this._timer = null;
    this._closed = false;
    this.transport = null;
    this.state = 'idle';
  }

  /**
   * Calls `fn` for every message on `channel`; returns `{ close() }`.
   * `since` resumes from an id kept from an earlier session (e.g. in localStorage).
   */
  subscribe(channel, fn, { since } = {}) {
    let entry = this._channels.get(channel);
    const isNew = !entry;
    if (!entry) {
      entry = { handlers: new Set(), lastId: since || null };
      this._channels.set(channel, entry);
    }
    entry.handlers.add(fn);
    if (isNew) this._channelsChanged({ added: channel });
    return {
      close: () => {
        entry.handlers.delete(fn);
        if (entry.handlers.size === 0 && this._channels.get(channel) === entry) {
          this._channels.delete(channel);
          this._channelsChanged({ removed: channel });
        }
      },
    };
  }

  /** Publishes `data` (string, or anything JSON-serialisable) to `channel`. */
  async publish(channel, data, { event } = {}) {
    const body = typeof data === 'string' || data instanceof Blob || data instanceof ArrayBuffer || ArrayBuffer.isView(data)
      ? data
      : JSON.stringify(data);
    const query = event ? `?event=${encodeURIComponent(event)}` : '';
    const headers = {};
    if (this.options.token) headers.Authorization = `Bearer ${this.options.token}`;
    const response = await fetch(`${this.url}/pub/${encodeURIComponent(channel)}${query}`, { method: 'POST', body, headers });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(answer.error ? answer.error.message : `HTTP ${response.status}`);
      error.code = answer.error ? answer.error.code : 'http_error';
      error.status = response.status;
      throw error;
    }
    return answer;
  }

  /** Listens for 'state' ({transport, state}), 'gap' (gap object) or 'error'. */
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

  /** Closes the connection; no reconnect follows. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this._connection) this._connection.stop();
    this._connection = null;
    this._setState('closed');
  }

  // ---- internals ----

  _emit(event, value) {
    const set = this._listeners.get(event);
    if (set) for (const fn of [...set]) { try { fn(value); } catch (e) { console.error(e); } }
  }

  _setState(state) {
    this.state = state;
    this._emit('state', { transport: this.transport, state });
  }

  _names() { return [...this._channels.keys()]; }

  _cursor() {
    const parts = [];
    for (const [name, entry] of this._channels) if (entry.lastId) parts.push(`${name}=${entry.lastId}`);
    return parts.join(',');
  }

  _tokenQuery(prefix) {
    return this.options.token ? `${prefix}token=${encodeURIComponent(this.options.token)}` : '';
  }

  /** Delivers a message once, in order, per channel. */
  _deliver(msg) {
    const entry = this._channels.get(msg.channel);
    if (!entry) return;
    const id = parseId(msg.id);
    const last = parseId(entry.lastId);
    if (id && last && id.epoch === last.epoch && id.seq <= last.seq) return; // already delivered
    entry.lastId = msg.id;
    const message = { channel: msg.channel, id: msg.id, data: decodeData(msg), event: msg.event || 'message' };
    for (const fn of [...entry.handlers]) { try { fn(message); } catch (e) { console.error(e); } }
  }

  /** Records where a channel stands when nothing has been delivered yet. */
  _position(channel, id) {
    const entry = this._channels.get(channel);
    if (entry && !entry.lastId && id) entry.lastId = id;
  }

  _gap(gap) { this._emit('gap', gap); }

  _channelsChanged(change) {
    if (this._closed) return;
    if (this._connection && this._connection.update) {
      this._connection.update(change);
      return;
    }
    if (this._connection) {
      this._restart();
    } else if (this._channels.size > 0 && !this._timer) {
      this._connect();
    }
  }

  _restart() {
    if (this._connection) this._connection.stop();
    this._connection = null;
    if (this._channels.size > 0) this._connect();
  }

  /** Learns every unpositioned channel's position, so a drop before the first message loses nothing. */
  async _learnPositions() {
    const missing = this._names().filter((n) => !this._channels.get(n).lastId);
    if (missing.length === 0) return;
    const path = missing.map(encodeURIComponent).join(',');
    const response = await fetch(`${this.url}/sub/${path}?transport=poll&timeout=0${this._tokenQuery('&')}`);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    // A message that arrived while asking is after "now": deliver it.
    for (const msg of body.messages) this._deliver(msg);
    for (const [name, id] of parseCursor(body.next, missing)) this._position(name, id);
  }

  _connect() {
    if (this._closed || this._channels.size === 0) return;
    clearTimeout(this._timer);
    this._timer = null;
    const transports = this.options.transports;
    const name = transports[this._transportIndex % transports.length];
    this.transport = name;
    this._setState('connecting');
    const make = { websocket: WebSocketConnection, sse: EventStreamConnection, poll: PollConnection }[name];
    const connection = new make(this);
    this._connection = connection;
    connection.start(
      () => { // opened
        if (this._connection !== connection) return;
        this._attempt = 0;
        this._setState('open');
      },
      (opened) => { // ended
        if (this._connection !== connection || this._closed) return;
        this._connection = null;
        if (!opened) this._transportIndex++; // could not connect: try the next transport
        this._setState('reconnecting');
        this._schedule();
      },
    );
  }

  _schedule() {
    const { minBackoff, maxBackoff } = this.options;
    const ceiling = Math.min(maxBackoff, minBackoff * 2 ** this._attempt);
    this._attempt++;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter
    this._timer = setTimeout(() => { this._timer = null; this._connect(); }, delay);
  }
}

/** The /ws JSON protocol over one WebSocket. */
class WebSocketConnection {
  constructor(client) { this.client = client; this.ref = 0; }

  start(opened, ended) {
    const c = this.client;
    const wsUrl = c.url.replace(/^http/, 'ws') + '/ws' + c._tokenQuery('?');
    let isOpen = false;
    let done = false;
    const finish = () => { if (!done) { done = true; clearTimeout(timer); ended(isOpen); } };
    let ws;
    try { ws = new WebSocket(wsUrl); } catch (e) { setTimeout(finish, 0); return; }
    this.ws = ws;
    const timer = setTimeout(() => { if (!isOpen) { try { ws.close(); } catch (e) { /* ignore */ } finish(); } }, c.options.connectTimeout);
    // Established once the server answers: a proxy that accepts the upgrade
    // and then drops the socket counts as "cannot connect".
    ws.onopen = () => {
      for (const name of c._names()) this._sub(name);
    };
    ws.onmessage = (event) => {
      if (!isOpen) { isOpen = true; clearTimeout(timer); opened(); }
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.op === 'msg') c._deliver(frame);
      else if (frame.op === 'ok' && frame.last_id && frame.channel) c._position(frame.channel, frame.last_id);
      else if (frame.op === 'gap') c._gap(frame);
      else if (frame.op === 'error') c._emit('error', frame.error);
    };
    ws.onclose = finish;
    ws.onerror = () => { /* onclose follows */ };
  }

  _sub(name) {
    const entry = this.client._channels.get(name);
    this.ws.send(JSON.stringify({ op: 'sub', channel: name, since: entry ? entry.lastId : null, ref: ++this.ref }));
  }

  update({ added, removed }) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (added) this._sub(added);
    if (removed) this.ws.send(JSON.stringify({ op: 'unsub', channel: removed, ref: ++this.ref }));
  }

  stop() { if (this.ws) { this.ws.onclose = null; try { this.ws.close(); } catch (e) { /* ignore */ } } }
}

/** One multi-channel EventSource with JSON envelopes. */
class EventStreamConnection {
  constructor(client) { this.client = client; }

  start(opened, ended) {
    const c = this.client;
    let isOpen = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (this.source) this.source.close();
      ended(isOpen);
    };
    const timer = setTimeout(() => { if (!isOpen) finish(); }, c.options.connectTimeout);
    c._learnPositions().then(() => {
      if (done) return;
      const names = c._names();
      const cursor = c._cursor();
      const query = `envelope=1${cursor ? `&since=${encodeURIComponent(cursor)}` : ''}${c._tokenQuery('&')}`;
      const source = new EventSource(`${c.url}/sub/${names.map(encodeURIComponent).join(',')}?${query}`);
      this.source = source;
      source.onopen = () => { isOpen = true; clearTimeout(timer); opened(); };
      source.onmessage = (event) => {
        try { c._deliver(JSON.parse(event.data)); } catch (e) { /* not an envelope */ }
      };
      source.addEventListener('herald.gap', (event) => { try { c._gap(JSON.parse(event.data)); } catch (e) { /* ignore */ } });
      source.addEventListener('herald.closed', finish);
      // Reconnects are ours (to resume from our own ids and apply backoff).
      source.onerror = finish;
    }, finish);
  }

  stop() { this.done = true; if (this.source) this.source.close(); }
}

/** A long-poll loop: hold a GET until news, then ask again from `next`. */
class PollConnection {
  constructor(client) { this.client = client; this.abort = new AbortController(); }

  start(opened, ended) {
    const c = this.client;
    let isOpen = false;
    const loop = async () => {
      try {
        await c._learnPositions();
        for (;;) {
          const names = c._names();
          const cursor = c._cursor();
          const query = `transport=poll&timeout=${c.options.pollTimeout}${cursor ? `&since=${encodeURIComponent(cursor)}` : ''}${c._tokenQuery('&')}`;
          const response = await fetch(`${c.url}/sub/${names.map(encodeURIComponent).join(',')}?${query}`, { signal: this.abort.signal });
          if (!response.ok) throw new Error(`HTTP ${response.status}`);
          const body = await response.json();
          if (!isOpen) { isOpen = true; opened(); }
          if (body.gaps) for (const gap of body.gaps) c._gap(gap);
          for (const msg of body.messages) c._deliver(msg);
          for (const [name, id] of parseCursor(body.next, names)) c._position(name, id);
        }
      } catch (e) {
        if (!this.stopped) ended(isOpen);
      }
    };
    loop();
  }

  update() { this.abort.abort(); this.stopped = true; this.client._connection = null; this.client._connect(); }

  stop() { this.stopped = true; this.abort.abort(); }
}

export default Herald;
