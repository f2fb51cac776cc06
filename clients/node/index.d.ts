// Types for herald-node, the Node.js backend SDK for herald (index.js).

/** Message data: text and bytes are sent as they are, anything else as JSON. */
export type Data = string | ArrayBuffer | ArrayBufferView | unknown;

export interface HeraldOptions {
  /** herald's `--publish-key`. */
  key?: string;
  /** A JWT whose claims cover the channels (see makeToken). */
  token?: string;
  /** Bound on each HTTP request, in ms (default 10000). */
  timeout?: number;
  /** A WHATWG-compatible WebSocket class, if the global one is missing (Node 20 without --experimental-websocket). */
  WebSocket?: unknown;
}

export interface Published {
  id: string;
  channel: string;
  subscribers: number;
}

export interface ChannelInfo {
  channel: string;
  subscribers: number;
  messages: number;
  bytes?: number;
  first_id: string | null;
  last_id: string | null;
  options?: unknown;
}

export interface Deleted {
  channel: string;
  deleted: boolean;
}

export interface PresenceClient {
  client: string;
  user: string | null;
  info?: unknown;
  transport: 'ws' | 'ws-protocol' | 'sse' | 'poll' | string;
}

export interface Presence {
  channel: string;
  count: number;
  /** Distinct non-null users (DESIGN §8). */
  users: unknown;
  clients: PresenceClient[];
}

export interface BatchItem {
  channel: string;
  data: Data;
  event?: string;
}

/** One message: `data` is a string for text, a Uint8Array for binary (as published). */
export interface Message {
  type: 'message';
  id: string;
  channel: string;
  /** The name it was published with, or null. */
  event: string | null;
  data: string | Uint8Array;
}

/**
 * Messages on `channel` were missed and cannot be delivered: history no
 * longer holds them (`trimmed`, `missed` of them) or was reset (`epoch`).
 */
export interface Gap {
  type: 'gap';
  channel: string;
  reason: 'trimmed' | 'epoch' | string;
  since?: string;
  missed?: number;
  first_id?: string;
}

export type Item = Message | Gap;

/** Where to resume: an id (one channel), a cursor `'a=ID,b=ID'`, `{channel: id}`, or `'0'` for all history. */
export type Since = string | Record<string, string>;

export interface SubscribeOptions {
  since?: Since;
  /** Reconnect backoff bounds in ms (defaults 250 and 10000), jittered. */
  minBackoff?: number;
  maxBackoff?: number;
  /** How long a connection may take to open and subscribe, in ms (default 10000). */
  openTimeout?: number;
  /** `/ws` ping interval in ms; a socket silent for two intervals is replaced (default 25000; 0 turns it off). */
  pingInterval?: number;
  WebSocket?: unknown;
}

/** Anything herald refused. */
export class HeraldError extends Error {
  constructor(code: string, message: string, status?: number | null);
  /** herald's snake_case code: `bad_channel`, `forbidden`, `not_found`... */
  code: string;
  /** The HTTP status; null for an error frame on `/ws`. */
  status: number | null;
  static fromBody(status: number, text: string): HeraldError;
}

/** Messages and gaps of some channels, resumed across reconnects. */
export class Subscription implements AsyncIterableIterator<Item> {
  /** Resolves once every channel is subscribed; rejects with a HeraldError if herald refuses. */
  readonly ready: Promise<void>;
  readonly channels: string[];
  /** Where every channel stands (`news=ID,alerts=ID`): keep it and pass it as `since` to resume. */
  readonly cursor: string;
  next(): Promise<IteratorResult<Item, undefined>>;
  return(): Promise<IteratorResult<Item, undefined>>;
  [Symbol.asyncIterator](): Subscription;
  /** Closes the socket; iteration ends. */
  close(): void;
}

export class Herald {
  constructor(url: string, options?: HeraldOptions);
  readonly url: string;
  /** Publishes `data`; resolves once it is in the channel's history. */
  publish(channel: string, data: Data, options?: { event?: string; idempotencyKey?: string }): Promise<Published>;
  /** Publishes a batch all or nothing; item i of a keyed batch uses key `K#i`. */
  publishBatch(items: Iterable<BatchItem>, options?: { idempotencyKey?: string }): Promise<Published[]>;
  info(channel: string): Promise<ChannelInfo>;
  delete(channel: string): Promise<Deleted>;
  /** For a channel with presence on; rejects 404 otherwise. */
  presence(channel: string): Promise<Presence>;
  /** Follows channels over one `/ws` socket (`'a'`, `'a,b'` or `['a', 'b']`). */
  subscribe(channels: string | string[], options?: SubscribeOptions): Subscription;
}

/** An HS256 JWT for a herald started with `--jwt-secret`. */
export function makeToken(
  secret: string | Uint8Array,
  sub: string | null,
  options?: { subscribe?: Iterable<string>; publish?: Iterable<string>; ttl?: number; info?: unknown },
): string;

/** Whether `X-Herald-Signature` is herald's HMAC-SHA256 of the raw body (constant-time). */
export function verifyWebhook(secret: string | Uint8Array, body: string | Uint8Array, signatureHeader: string | null | undefined): boolean;

export default Herald;
