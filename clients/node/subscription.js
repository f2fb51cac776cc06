// Following channels over herald's /ws JSON protocol, without loss.
//
// A Subscription keeps, for each channel, the id of the last message it
// handed out. When the socket drops, it reconnects with bounded, jittered
// backoff and sends each `sub` with that id as `since`, so herald replays
// exactly what was missed; when herald no longer has it, a gap item says
// so. Before the first message, the position is the `last_id` herald
// answered the `sub` with, so a drop before anything arrived loses nothing
// either.
//
// The socket is the WHATWG WebSocket: global in Node 22+, behind
// `--experimental-websocket` in Node 20 and 21, or any compatible class passed
// as the `WebSocket` option. It cannot report why a handshake failed, so
// after a failed connect the same handshake is asked once over node:http to
// tell a refusal (401, 403: thrown) from a network failure (retried).

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { HeraldError } from './errors.js';

const DEFAULTS = { minBackoff: 250, maxBackoff: 10_000, openTimeout: 10_000, pingInterval: 25_000 };

function positionsFrom(channels, since) {
  const positions = new Map(channels.map((c) => [c, null]));
  if (since == null || since === '') return positions;
  let pairs;
  if (typeof since === 'object') pairs = Object.entries(since);
  else if (since.includes('=')) pairs = since.split(',').filter((p) => p.includes('=')).map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]);
  else if (since === '0' || channels.length === 1) pairs = channels.map((c) => [c, since]);
  else throw new TypeError('a bare id resumes one channel; pass a cursor or an object for several');
  // As herald does: a channel named but not subscribed is ignored.
  for (const [channel, id] of pairs) if (positions.has(channel)) positions.set(channel, id);
  return positions;
}

/**
 * Whether `id` follows `last` on one channel. herald documents ids as
 * `EPOCH-SEQ`; ids of different epochs cannot be ordered, so they pass.
 */
function isAfter(id, last) {
  const a = /^(.+)-(\d+)$/.exec(id);
  const b = /^(.+)-(\d+)$/.exec(last ?? '');
  if (!a || !b || a[1] !== b[1]) return true;
  return Number(a[2]) > Number(b[2]);
}

/** Asks for the WebSocket handshake over node:http: herald's error if it refuses, else null. */
function handshakeRefusal(wsUrl, timeout) {
  const url = new URL(wsUrl.replace(/^ws/, 'http'));
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    const request = client.request(url, {
      timeout,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      },
    });
    request.on('upgrade', (response, socket) => { socket.destroy(); resolve(null); });
    request.on('response', (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { text += chunk; });
      response.on('end', () => {
        const { statusCode: status } = response;
        resolve(status >= 400 && status < 500 && status !== 429 ? HeraldError.fromBody(status, text) : null);
      });
      response.on('error', () => resolve(null));
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(null));
    request.end();
  });
}

/**
 * An async iterable of `{type: 'message', id, channel, event, data}` and
 * `{type: 'gap', channel, reason, since, missed, first_id}` items. A refused
 * subscription (`forbidden`, `bad_channel`, a bad token...) rejects `ready`
 * and the iteration with a HeraldError; network failures never do.
 */
export class Subscription {
  #wsUrl;
  #options;
  #WebSocket;
  #positions;
  #subscribedAt = new Map(); // channel -> last_id of its sub's ok
  #pending = new Map(); // ref -> channel of sub frames not yet answered
  #ref = 0;
  #items = [];
  #wake = null;
  #error = null;
  #closed = false;
  #failures = 0;
  #finish = null; // ends the current socket
  #timer = null; // the backoff before the next connect
  #cancelWait = null;
  #settleReady;

  constructor(url, credential, channels, since, options = {}) {
    this.#options = { ...DEFAULTS, ...options };
    this.#WebSocket = this.#options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError('no WebSocket here: Node 22+ has one built in; on Node 20 run node with '
        + '--experimental-websocket, or pass { WebSocket } (any WHATWG-compatible class)');
    }
    // Query, not header: the WHATWG WebSocket cannot set headers (herald takes both).
    this.#wsUrl = `${url.replace(/^http/, 'ws')}/ws${credential ? `?token=${encodeURIComponent(credential)}` : ''}`;
    this.#positions = positionsFrom(channels, since);
    /** Resolves once every channel is subscribed; rejects if herald refuses. */
    this.ready = new Promise((resolve, reject) => {
      this.#settleReady = (error) => { if (error) reject(error); else resolve(); };
    });
    this.ready.catch(() => {}); // the iteration reports it too: never an unhandled rejection
    this.#run();
  }

  get channels() { return [...this.#positions.keys()]; }

  /** Where every channel stands (`news=ID,alerts=ID`): keep it and pass it as `since` to resume. */
  get cursor() {
    return [...this.#positions].filter(([, id]) => id).map(([c, id]) => `${c}=${id}`).join(',');
  }

  [Symbol.asyncIterator]() { return this; }

  async next() {
    for (;;) {
      if (this.#items.length) return { value: this.#items.shift(), done: false };
      if (this.#error) {
        const error = this.#error;
        this.#error = null;
        throw error;
      }
      if (this.#closed) return { value: undefined, done: true };
      await new Promise((resolve) => { this.#wake = resolve; });
    }
  }

  /** Called by `break` in `for await`: closes the subscription. */
  async return() {
    this.close();
    return { value: undefined, done: true };
  }

  /** Closes the socket; iteration ends. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#cancelWait?.();
    this.#finish?.();
    this.#settleReady();
    this.#notify();
  }

  #notify() {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #push(item) {
    this.#items.push(item);
    this.#notify();
  }

  #fail(error) {
    this.#error = error;
    this.#settleReady(error);
    this.close();
  }

  async #run() {
    while (!this.#closed) {
      if (this.#failures > 0) {
        const ceiling = Math.min(this.#options.maxBackoff, this.#options.minBackoff * 2 ** Math.min(this.#failures - 1, 30));
        const delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: half to all of it
        await new Promise((resolve) => { this.#timer = setTimeout(resolve, delay); this.#cancelWait = resolve; });
      }
      if (this.#closed) return;
      const opened = await this.#connect();
      if (this.#closed) return;
      if (opened) {
        this.#failures = 1;
        continue;
      }
      this.#failures++;
      const refusal = await handshakeRefusal(this.#wsUrl, this.#options.openTimeout);
      if (refusal) this.#fail(refusal);
    }
  }

  /** One socket, from connect to close; resolves whether every sub was answered. */
  #connect() {
    return new Promise((resolve) => {
      let ws;
      let opened = false;
      let lastHeard = Date.now();
      let pinger = null;
      const openTimer = setTimeout(() => finish(), this.#options.openTimeout);
      const finish = () => {
        if (this.#finish !== finish) return;
        this.#finish = null;
        clearTimeout(openTimer);
        clearInterval(pinger);
        this.#pending.clear();
        if (ws) {
          ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
          try { ws.close(); } catch { /* already closed */ }
        }
        resolve(opened);
      };
      this.#finish = finish;
      try {
        ws = new this.#WebSocket(this.#wsUrl);
      } catch {
        finish();
        return;
      }
      ws.onopen = () => { for (const channel of this.#positions.keys()) this.#sub(ws, channel); };
      ws.onmessage = (event) => {
        lastHeard = Date.now();
        let frame;
        try { frame = JSON.parse(event.data); } catch { return; }
        this.#frame(ws, frame);
        if (!opened && this.#pending.size === 0 && !this.#closed) {
          opened = true;
          clearTimeout(openTimer);
          this.#settleReady();
          const { pingInterval } = this.#options;
          if (pingInterval > 0) {
            // A socket that hears nothing for two intervals is dead (a network
            // that vanished without a close): drop it and resume on a new one.
            pinger = setInterval(() => {
              if (Date.now() - lastHeard > 2 * pingInterval) finish();
              else ws.send(JSON.stringify({ op: 'ping' }));
            }, pingInterval);
          }
        }
      };
      // An error ends the socket too: Node 20's WebSocket reports a refused
      // handshake with an error and no close.
      ws.onclose = finish;
      ws.onerror = finish;
    });
  }

  #sub(ws, channel) {
    const ref = ++this.#ref;
    this.#pending.set(ref, channel);
    const since = this.#positions.get(channel);
    ws.send(JSON.stringify({ op: 'sub', channel, ref, ...(since ? { since } : {}) }));
  }

  #frame(ws, frame) {
    switch (frame.op) {
      case 'msg': {
        const { channel, id } = frame;
        if (!this.#positions.has(channel) || !isAfter(id, this.#positions.get(channel))) return;
        this.#positions.set(channel, id);
        const data = frame.encoding === 'base64' ? new Uint8Array(Buffer.from(frame.data, 'base64')) : frame.data;
        this.#push({ type: 'message', id, channel, event: frame.event ?? null, data });
        return;
      }
      case 'gap': {
        const { op, ...gap } = frame;
        this.#push({ type: 'gap', ...gap });
        // Nothing to replay: resume from where the sub started, not the stale id again.
        if (!gap.first_id) this.#positions.set(gap.channel, this.#subscribedAt.get(gap.channel) ?? this.#positions.get(gap.channel));
        return;
      }
      case 'ok': {
        const channel = this.#pending.get(frame.ref);
        if (channel === undefined) return;
        this.#pending.delete(frame.ref);
        this.#subscribedAt.set(channel, frame.last_id ?? null);
        if (!this.#positions.get(channel)) this.#positions.set(channel, frame.last_id ?? null);
        return;
      }
      case 'error': {
        const error = frame.error ?? {};
        const channel = frame.channel ?? error.channel;
        if (error.code === 'channel_deleted' && this.#positions.has(channel)) {
          // Follow the channel's next life; the resume reports the lost history as a gap.
          this.#sub(ws, channel);
          return;
        }
        this.#fail(new HeraldError(String(error.code ?? 'error'), String(error.message ?? '')));
        return;
      }
      default:
    }
  }
}
