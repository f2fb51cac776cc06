// Type declarations for herald.js.

export type TransportName = 'websocket' | 'sse' | 'poll';

export interface HeraldOptions {
  /** Transports to try, in order (default: websocket, sse, poll). */
  transports?: TransportName[];
  /** JWT or publish key: ?token= for WebSocket, EventSource and polls; Bearer for publish. */
  token?: string | null;
  /** How long a transport may take to connect before the next is tried (ms, default 5000). */
  connectTimeout?: number;
  /** Long-poll hold time asked of the server (s, default 25). */
  pollTimeout?: number;
  /** Reconnect backoff bounds (ms, defaults 250 and 10000), with jitter. */
  minBackoff?: number;
  maxBackoff?: number;
}

export interface HeraldMessage {
  channel: string;
  /** Opaque resume id. */
  id: string;
  /** Text, or bytes for binary messages. */
  data: string | Uint8Array;
  /** The SSE event type it was published with, or 'message'. */
  event: string;
}

export interface HeraldGap {
  channel: string;
  reason: 'trimmed' | 'epoch';
  since?: string;
  missed?: number;
  first_id?: string;
}

export interface HeraldState {
  transport: TransportName | null;
  state: 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';
}

export interface PublishResult {
  id: string;
  channel: string;
  subscribers: number;
}

export interface Subscription {
  close(): void;
}

export class Herald {
  constructor(url?: string, options?: HeraldOptions);
  readonly url: string;
  /** The transport in use (or being tried). */
  readonly transport: TransportName | null;
  readonly state: HeraldState['state'];
  subscribe(channel: string, onMessage: (message: HeraldMessage) => void, options?: { since?: string }): Subscription;
  publish(channel: string, data: unknown, options?: { event?: string }): Promise<PublishResult>;
  on(event: 'state', fn: (state: HeraldState) => void): this;
  on(event: 'gap', fn: (gap: HeraldGap) => void): this;
  on(event: 'error', fn: (error: { code: string; message: string }) => void): this;
  off(event: string, fn: (...args: any[]) => void): this;
  close(): void;
}

export default Herald;
