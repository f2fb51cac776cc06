// The Node blocks of docs/sdk.md, run as written against a real herald
// (only its address swapped in), so the docs cannot drift from the SDK.
// Each block is written into the package (test/.snippets/) so its
// `import 'herald-node'` resolves to this package by its own name.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { Herald, HeraldError } from 'herald-node';
import { JWT_SECRET, PUBLISH_KEY, startHerald, within, WAIT_MS } from './helpers.mjs';

const DOC = fileURLToPath(new URL('../../../docs/sdk.md', import.meta.url));
const SNIPPETS = fileURLToPath(new URL('./.snippets/', import.meta.url));
// Node 20 and 21 keep WebSocket behind a flag.
const FLAGS = Number(process.versions.node.split('.')[0]) < 22 ? ['--experimental-websocket'] : [];

/** Fenced blocks tagged ```js NAME, by name. */
function snippets() {
  const text = readFileSync(DOC, 'utf8');
  return Object.fromEntries([...text.matchAll(/^```js (\w+)\n([\s\S]*?)^```$/gm)].map((m) => [m[1], m[2]]));
}

let server;
let cwd;
before(async () => {
  server = await startHerald(['--publish-key', PUBLISH_KEY, '--jwt-secret', JWT_SECRET]);
  mkdirSync(SNIPPETS, { recursive: true });
  cwd = mkdtempSync(join(tmpdir(), 'herald-docs-'));
});
after(async () => {
  await server?.stop();
  rmSync(SNIPPETS, { recursive: true, force: true });
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

/** A block as its own node process, its stdout read line by line with timeouts. */
class Script {
  constructor(name, replace = {}) {
    let source = snippets()[name].replaceAll('http://127.0.0.1:8080', server.url);
    for (const [from, to] of Object.entries(replace)) source = source.replaceAll(from, to);
    const file = join(SNIPPETS, `${name}.mjs`);
    writeFileSync(file, source);
    this.child = spawn(process.execPath, [...FLAGS, file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.stderr = '';
    this.child.stderr.on('data', (chunk) => { this.stderr += chunk; });
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.lines = [];
    this.waiting = null;
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      this.lines.push(line);
      this.waiting?.();
    });
  }

  async line() {
    const got = within(WAIT_MS, `a line of output (stderr: ${this.stderr})`, (async () => {
      while (this.lines.length === 0) await new Promise((resolve) => { this.waiting = resolve; });
      return this.lines.shift();
    })());
    return got;
  }

  /** Resolves to the exit code once the process ends by itself. */
  done() {
    return within(WAIT_MS, `the block to finish (stderr: ${this.stderr})`, this.exited);
  }

  async stop() {
    this.child.kill('SIGTERM');
    await within(WAIT_MS, 'the block to stop', this.exited);
  }
}

test('every js block is tested', () => {
  assert.deepEqual(Object.keys(snippets()).sort(), ['publish', 'subscribe', 'token', 'webhook']);
});

test('publish block', async () => {
  const script = new Script('publish');
  assert.equal(await script.done(), 0, script.stderr);
  const [first, lastId] = script.lines;
  const h = new Herald(server.url, { key: PUBLISH_KEY });
  const news = await h.info('news');
  assert.equal(news.last_id, lastId);
  assert.equal(first.split(' ')[0], news.first_id);
  assert.ok((await h.info('alerts')).messages >= 1);
});

async function waitForFile(path, text) {
  await within(WAIT_MS, `${path} to hold ${text}`, (async () => {
    while (!(existsSync(path) && readFileSync(path, 'utf8').includes(text))) {
      await new Promise((resolve) => setTimeout(resolve, 20)); // the pause between looks at the file
    }
  })());
}

test('subscribe block resumes across restarts', async () => {
  const h = new Herald(server.url, { key: PUBLISH_KEY });
  const cursor = join(cwd, 'news.cursor');
  const seen = await h.publish('news', 'seen before');
  const missed = await h.publish('news', 'missed while down');
  writeFileSync(cursor, `news=${seen.id}`);
  let script = new Script('subscribe');
  try {
    assert.equal(await script.line(), `news ${missed.id} null missed while down`);
    const live = await h.publish('news', 'live', { event: 'update' });
    assert.equal(await script.line(), `news ${live.id} update live`);
    await waitForFile(cursor, `news=${live.id}`);
  } finally {
    await script.stop();
  }
  const during = await h.publish('news', new Uint8Array([0xff, 0x20])); // not UTF-8, so it stays bytes
  script = new Script('subscribe');
  try {
    assert.equal(await script.line(), `news ${during.id} null Uint8Array(2) [ 255, 32 ]`);
  } finally {
    await script.stop();
  }
});

test('token block is accepted by herald', async () => {
  const script = new Script('token');
  assert.equal(await script.done(), 0, script.stderr);
  const token = script.lines[0];
  const h = new Herald(server.url, { token });
  assert.equal((await h.publish('chat.lobby', 'hi')).channel, 'chat.lobby');
  const sub = h.subscribe(['news', 'user.42.inbox']);
  await within(WAIT_MS, 'the subscription', sub.ready);
  sub.close();
  const refused = h.subscribe('user.43.inbox');
  await assert.rejects(within(WAIT_MS, 'a refusal', refused.ready), (error) => error instanceof HeraldError && error.code === 'forbidden');
});

async function freePort() {
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

test('webhook block', async () => {
  const port = await freePort();
  const script = new Script('webhook', { '.listen(3000)': `.listen(${port}, '127.0.0.1')` });
  try {
    const body = JSON.stringify({ events: [{ type: 'channel.occupied', channel: 'news', time_ms: 1 }] });
    const signature = `sha256=${createHmac('sha256', 'WEBHOOK_SECRET').update(body).digest('hex')}`;
    const post = (headers) => within(WAIT_MS, 'the webhook answer', (async () => {
      for (;;) { // until the block listens
        try {
          return (await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body, headers })).status;
        } catch {
          if (script.child.exitCode !== null) throw new Error(`the block exited: ${script.stderr}`);
          await new Promise((resolve) => setTimeout(resolve, 20)); // the pause between attempts
        }
      }
    })());
    assert.equal(await post({ 'X-Herald-Signature': signature }), 204);
    assert.equal(await script.line(), 'channel.occupied news');
    assert.equal(await post({ 'X-Herald-Signature': signature.replace(/a/g, 'b') }), 401);
    assert.equal(await post({}), 401);
    assert.deepEqual(script.lines, []);
  } finally {
    await script.stop();
  }
});
