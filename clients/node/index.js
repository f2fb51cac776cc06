// herald-node — the Node.js backend SDK for herald, the real-time push
// server. No dependencies: Node's own fetch, crypto and WebSocket.
//
//   import { Herald } from 'herald-node';
//   const herald = new Herald('http://127.0.0.1:8080', { key: 'PUBLISH_KEY' });
//   await herald.publish('news', { title: 'hello' });
//   for await (const item of herald.subscribe('news')) console.log(item);
//
// Docs: README.md here and docs/sdk.md. Types: index.d.ts.

import { errorFrom } from './errors.js';
import { Subscription } from './subscription.js';

export { HeraldError } from './errors.js';
export { Subscription } from './subscription.js';
export { makeToken, verifyWebhook } from './signing.js';

const isBytes = (data) => data instanceof ArrayBuffer || ArrayBuffer.isView(data);

function toBytes(data) {
  return data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Text and bytes are sent as they are, anything else as JSON. */
function encode(data) {
  if (typeof data === 'string') return { body: data, type: 'text/plain; charset=utf-8' };
  if (isBytes(data)) return { body: toBytes(data), type: 'application/octet-stream' };
  return { body: JSON.stringify(data), type: 'application/json' };
}

/** A batch item as herald takes it: JSON cannot carry bytes, so they go base64. */
function batchItem({ channel, data, event }) {
  const item = { channel, data };
  if (isBytes(data)) {
    item.data = Buffer.from(toBytes(data)).toString('base64');
    item.encoding = 'base64';
  }
  if (event) item.event = event;
  return item;
}

// Quote everything, so a bad name reaches herald (and gets its bad_channel
// answer) instead of turning into another path.
const pubPath = (channel, suffix = '') => `/pub/${encodeURIComponent(channel)}${suffix}`;

export class Herald {
  #credential;

  /**
   * `key` is herald's `--publish-key`; `token` a JWT whose `herald.publish`
   * claims cover the channels (see makeToken). `timeout` bounds each request
   * (ms); `WebSocket` replaces the global one for subscribe.
   */
  constructor(url, { key, token, timeout = 10_000, WebSocket } = {}) {
    this.url = String(url).replace(/\/+$/, '');
    // The publish key may do anything; a JWT only what its claims grant.
    // Private, so logging the client never prints it.
    this.#credential = key || token || null;
    this.timeout = timeout;
    this.WebSocket = WebSocket;
  }

  async #request(method, path, { body, headers = {}, query } = {}) {
    if (this.#credential) headers.Authorization = `Bearer ${this.#credential}`;
    const search = query ? `?${new URLSearchParams(query)}` : '';
    const response = await fetch(`${this.url}${path}${search}`, {
      method, body, headers, signal: AbortSignal.timeout(this.timeout),
    });
    if (!response.ok) throw await errorFrom(response);
    return response.json();
  }

  /** Publishes `data`; resolves to `{id, channel, subscribers}` once it is in history. */
  publish(channel, data, { event, idempotencyKey } = {}) {
    const { body, type } = encode(data);
    const headers = { 'Content-Type': type };
    if (idempotencyKey != null) headers['Idempotency-Key'] = idempotencyKey;
    return this.#request('POST', pubPath(channel), { body, headers, query: event ? { event } : undefined });
  }

  /** Publishes `[{channel, data, event?}]` all or nothing (herald checks the whole batch first). */
  publishBatch(items, { idempotencyKey } = {}) {
    const headers = { 'Content-Type': 'application/json' };
    if (idempotencyKey != null) headers['Idempotency-Key'] = idempotencyKey;
    return this.#request('POST', '/pub', { body: JSON.stringify([...items].map(batchItem)), headers });
  }

  /** Subscribers, message count, first and last id; rejects `404 not_found` if never used. */
  info(channel) {
    return this.#request('GET', pubPath(channel));
  }

  /** Drops the channel and its history; its subscribers are told. */
  delete(channel) {
    return this.#request('DELETE', pubPath(channel));
  }

  /** Who is subscribed, for a channel with presence on (`404` otherwise). */
  presence(channel) {
    return this.#request('GET', pubPath(channel, '/presence'));
  }

  /**
   * Follows `channels` (a name, `'a,b'`, or an array) over one `/ws` socket:
   * an async iterable of messages and gaps that reconnects with backoff and
   * resumes where it was. `since`: an id (one channel), a cursor
   * (`'news=ID,alerts=ID'`, as `sub.cursor` gives), a `{channel: id}` object,
   * or `'0'` for everything still in history. `await sub.ready` before doing
   * anything the subscription must see.
   */
  subscribe(channels, { since, ...options } = {}) {
    const names = typeof channels === 'string' ? channels.split(',') : [...channels];
    if (names.length === 0 || names.some((n) => typeof n !== 'string' || n === '')) {
      throw new TypeError('subscribe needs one or more non-empty channel names');
    }
    return new Subscription(this.url, this.#credential, names, since, { WebSocket: this.WebSocket, ...options });
  }
}

export default Herald;
