// Shared pieces of the SDK's tests: a real herald on a port the kernel picks,
// a TCP proxy that can cut connections, and bounded waits.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

export const HERALD_BIN = process.env.HERALD_BIN ?? fileURLToPath(new URL('../../../target/debug/herald', import.meta.url));
/** The bound on every wait: a failing test fails in this time and says what it waited for. */
export const WAIT_MS = 10_000;
export const PUBLISH_KEY = 'PUBLISH_KEY'; // the placeholders docs/sdk.md uses, so its snippets run as written
export const JWT_SECRET = 'JWT_SECRET';

/**
 * Starts `herald serve --listen 127.0.0.1:0 ...args`, learns its URL from the
 * line it prints, and waits for /healthz. Resolves to { url, stop }.
 */
export async function startHerald(args = []) {
  // Only the flags given here: no HERALD_* setting from the environment.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
  const child = spawn(HERALD_BIN, ['serve', '--listen', '127.0.0.1:0', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  child.stderr.on('data', (chunk) => { logs += chunk; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), WAIT_MS);
      await exited;
      clearTimeout(timer);
    }
  };
  try {
    const url = await within(WAIT_MS, 'herald to say where it listens', new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk;
        const match = out.match(/herald listening on (http:\/\/\S+)/);
        if (match) resolve(match[1]);
      });
      child.once('error', reject);
      exited.then((code) => reject(new Error(`herald exited with ${code}`)));
    }));
    await within(WAIT_MS, 'herald /healthz', (async () => {
      for (;;) {
        const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
        if (ok) return;
        await new Promise((r) => setTimeout(r, 50)); // the pause between attempts
      }
    })());
    return { url, stop, logs: () => logs };
  } catch (error) {
    await stop();
    error.message += `\n${logs}`;
    throw error;
  }
}

/** `promise`, or a failure naming what did not happen within `ms`. */
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next `n` items of a subscription, within WAIT_MS. */
export async function take(sub, n) {
  const items = [];
  await within(WAIT_MS, `${n} items (got ${items.length})`, (async () => {
    while (items.length < n) {
      const { value, done } = await sub.next();
      if (done) throw new Error(`subscription ended after ${items.length} items`);
      items.push(value);
    }
  })());
  return items;
}

/**
 * A TCP proxy the tests can cut, to drop a subscriber's connection the way a
 * network does (a reset, no close frame), and refuse reconnects for a while.
 */
export class Proxy {
  constructor(targetUrl) {
    this.target = new URL(targetUrl);
    this.accepting = true;
    this.connections = 0;
    this.sockets = new Set();
    this.server = net.createServer((client) => this.#handle(client));
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  #handle(client) {
    if (!this.accepting) { client.resetAndDestroy(); return; }
    const upstream = net.connect(Number(this.target.port), this.target.hostname);
    this.connections++;
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => { this.sockets.delete(socket); client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Resets every forwarded connection. */
  cut() {
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.sockets.clear();
  }

  async close() {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
