// Type declarations for herald.js (docs/client.md).

export type TransportName = 'websocket' | 'sse' | 'poll';

export interface HeraldOptions {
  /** Transports to try, in order (default: websocket, sse, poll). Give one to force it. */
  transports?: TransportName[];
  /**
   * A JWT (or the publish key), or a function returning one (called before
   * every connection and publish, so an expiring token can be renewed).
   * Sent as `?token=` to WebSocket and EventSource, `Authorization: Bearer` on fetch.
   */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** How long a transport may take to connect before the next is tried (ms, default 5000). */
  connectTimeout?: number;
  /** How long the server holds each long poll (s, default 25). */
  pollTimeout?: number;
  /** `/ws` liveness ping interval (ms, default 25000; 0 disables). A socket silent for two intervals is replaced. */
  pingInterval?: number;
  /** Reconnect backoff bounds (ms, defaults 250 and 10000); each delay is jittered between half and all of the bound. */
  minBackoff?: number;
  maxBackoff?: number;
  /** After falling back, retry the preferred transport on a reconnect this long after the fallback (ms, default 60000). */
  retryPreferredAfter?: number;
}

export interface HeraldMessage {
  channel: string;
  /** Opaque resume id. */
  id: string;
  /** Text, or bytes for binary messages. */
  data: string | Uint8Array;
  /** The event name it was published with, or 'message'. */
  event: string;
}

export interface HeraldGap {
  channel: string;
  /** `trimmed`: messages left history (`missed` counts them); `epoch`: history was reset or the id is not from it. */
  reason: 'trimmed' | 'epoch' | string;
  since?: string;
  missed?: number;
  first_id?: string;
}

/** One subscription present on a channel. */
export interface PresenceClient {
  client: string;
  user: string | null;
  info?: unknown;
  transport: 'ws' | 'ws-protocol' | 'sse' | 'poll' | string;
}

/** Who is on a channel with presence. */
export interface Presence {
  channel: string;
  /** Connections. */
  count: number;
  /** Distinct non-null users. */
  users: number;
  clients: PresenceClient[];
}

/** Someone joined or left a channel with `join_leave = true`. */
export interface PresenceEvent {
  channel: string;
  client: string;
  user: string | null;
  info: unknown;
}

export type HeraldStateName = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface HeraldState {
  transport: TransportName | null;
  state: HeraldStateName;
  /** On 'reconnecting': the delay before the next attempt (ms) and the attempt number. */
  delay?: number;
  attempt?: number;
}

export interface HeraldError {
  code: string;
  message: string;
  /** The channel concerned, when there is one (a refused sub, `channel_deleted`). */
  channel?: string;
  /** The HTTP status, for errors answered over HTTP. */
  status?: number;
}

export interface PublishResult {
  id: string;
  channel: string;
  subscribers: number;
}

/** A failed publish: herald's error code and the HTTP status. */
export interface PublishError extends Error {
  code: string;
  status: number;
}

export interface Subscription {
  close(): void;
}

export class Herald {
  /** `url`: the server's base URL; default: this page's origin. */
  constructor(url?: string, options?: HeraldOptions);
  readonly url: string;
  /** The transport in use (or being tried). */
  readonly transport: TransportName | null;
  readonly state: HeraldStateName;
  /** `since`: resume from an id kept from an earlier session. */
  subscribe(channel: string, onMessage: (message: HeraldMessage) => void, options?: { since?: string }): Subscription;
  /** Rejects with a PublishError. Non-string, non-binary data is sent as JSON. */
  publish(
    channel: string,
    data: string | ArrayBuffer | ArrayBufferView | Blob | unknown,
    options?: { event?: string; idempotencyKey?: string },
  ): Promise<PublishResult>;
  on(event: 'state', fn: (state: HeraldState) => void): this;
  on(event: 'gap', fn: (gap: HeraldGap) => void): this;
  on(event: 'error', fn: (error: HeraldError) => void): this;
  on(event: 'join' | 'leave', fn: (event: PresenceEvent) => void): this;
  off(event: 'state' | 'gap' | 'error' | 'join' | 'leave', fn: (...args: any[]) => void): this;
  /** Who is on `channel` (over /ws when connected there, else GET /pub/{channel}/presence). */
  presence(channel: string): Promise<Presence>;
  close(): void;
}

export default Herald;
