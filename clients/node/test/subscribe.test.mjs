// subscribe over /ws against a real herald: live delivery, several channels
// and the cursor, resume with `since`, reconnects through a proxy that cuts
// the socket, gaps, deleted channels, and tokens from makeToken.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Herald, HeraldError, makeToken } from 'herald-node';
import { JWT_SECRET, PUBLISH_KEY, Proxy, startHerald, take, within, WAIT_MS } from './helpers.mjs';

let open;
let small;
let secured;
before(async () => {
  open = await startHerald();
  small = await startHerald(['--history-size', '3']);
  secured = await startHerald(['--publish-key', PUBLISH_KEY, '--jwt-secret', JWT_SECRET]);
});
after(async () => { await open?.stop(); await small?.stop(); await secured?.stop(); });

const message = (answer, data, event = null) => ({ type: 'message', id: answer.id, channel: answer.channel, event, data });

test('live messages of every kind', async () => {
  const h = new Herald(open.url);
  const sub = h.subscribe('s.live');
  await within(WAIT_MS, 'the subscription', sub.ready);
  const sent = [
    await h.publish('s.live', 'text'),
    await h.publish('s.live', Buffer.from([0xff, 0, 1])),
    await h.publish('s.live', { price: 42, tags: ['a'] }, { event: 'update' }),
    await h.publish('s.live', new TextEncoder().encode('utf-8 bytes')),
  ];
  assert.equal(sent[0].subscribers, 1);
  assert.deepEqual(await take(sub, 4), [
    message(sent[0], 'text'),
    message(sent[1], new Uint8Array([0xff, 0, 1])),
    message(sent[2], '{"price":42,"tags":["a"]}', 'update'),
    // Published as bytes, they stay bytes though they are valid UTF-8.
    message(sent[3], new TextEncoder().encode('utf-8 bytes')),
  ]);
  sub.close();
  assert.deepEqual(await sub.next(), { value: undefined, done: true });
});

test('several channels on one socket, and the cursor resumes them', async () => {
  const h = new Herald(open.url);
  const sub = h.subscribe(['s.multi.a', 's.multi.b']);
  await within(WAIT_MS, 'the subscription', sub.ready);
  const a = await h.publish('s.multi.a', 'to a');
  const b = await h.publish('s.multi.b', 'to b');
  const got = await take(sub, 2);
  assert.deepEqual(new Set(got.map((m) => `${m.channel}:${m.data}`)), new Set(['s.multi.a:to a', 's.multi.b:to b']));
  assert.equal(sub.cursor, `s.multi.a=${a.id},s.multi.b=${b.id}`);
  const { cursor } = sub;
  sub.close();
  const later = await h.publish('s.multi.b', 'while away');
  const resumed = h.subscribe('s.multi.a,s.multi.b', { since: cursor });
  assert.deepEqual(await take(resumed, 1), [message(later, 'while away')]);
  resumed.close();
});

test('resume with since, and since 0 for everything in history', async () => {
  const h = new Herald(open.url);
  const sent = [];
  for (let i = 0; i < 4; i++) sent.push(await h.publish('s.since', String(i)));
  const sub = h.subscribe('s.since', { since: sent[1].id });
  const replayed = await take(sub, 2);
  const live = await h.publish('s.since', 'live');
  assert.deepEqual([...replayed, ...await take(sub, 1)], [message(sent[2], '2'), message(sent[3], '3'), message(live, 'live')]);
  sub.close();
  const everything = h.subscribe('s.since', { since: '0' });
  assert.deepEqual((await take(everything, 5)).map((m) => m.data), ['0', '1', '2', '3', 'live']);
  everything.close();
});

test('reconnects after a dropped connection and loses nothing', async () => {
  const proxy = await new Proxy(open.url).start();
  const h = new Herald(open.url);
  const sub = new Herald(proxy.url).subscribe('s.drop', { minBackoff: 20, maxBackoff: 200 });
  try {
    await within(WAIT_MS, 'the subscription', sub.ready);
    const sent = [];
    for (let i = 0; i < 3; i++) sent.push(await h.publish('s.drop', `before ${i}`));
    const got = await take(sub, 3);
    // The network drops the socket, and refuses reconnects while we publish.
    proxy.accepting = false;
    proxy.cut();
    for (let i = 0; i < 3; i++) sent.push(await h.publish('s.drop', `during ${i}`));
    proxy.accepting = true;
    got.push(...await take(sub, 3));
    assert.equal(proxy.connections, 2);
    sent.push(await h.publish('s.drop', 'after'));
    got.push(...await take(sub, 1));
    assert.deepEqual(got.map((m) => m.id), sent.map((a) => a.id));
  } finally {
    sub.close();
    await proxy.close();
  }
});

test('a drop before the first message loses nothing', async () => {
  const proxy = await new Proxy(open.url).start();
  const sub = new Herald(proxy.url).subscribe('s.early', { minBackoff: 20, maxBackoff: 200 });
  try {
    await within(WAIT_MS, 'the subscription', sub.ready);
    proxy.accepting = false;
    proxy.cut();
    const missed = await new Herald(open.url).publish('s.early', 'published while the socket was down');
    proxy.accepting = true;
    assert.deepEqual(await take(sub, 1), [message(missed, 'published while the socket was down')]);
  } finally {
    sub.close();
    await proxy.close();
  }
});

test('a gap is its own item', async () => {
  const h = new Herald(small.url);
  const sent = [];
  for (let i = 0; i < 6; i++) sent.push(await h.publish('s.gap', String(i)));
  const sub = h.subscribe('s.gap', { since: sent[0].id });
  assert.deepEqual(await take(sub, 4), [
    { type: 'gap', channel: 's.gap', reason: 'trimmed', since: sent[0].id, missed: 2, first_id: sent[3].id },
    message(sent[3], '3'),
    message(sent[4], '4'),
    message(sent[5], '5'),
  ]);
  sub.close();
});

test('a deleted channel is followed into its next life', async () => {
  const h = new Herald(open.url);
  const sub = h.subscribe('s.deleted');
  await within(WAIT_MS, 'the subscription', sub.ready);
  await h.publish('s.deleted', 'old life');
  await take(sub, 1);
  await h.delete('s.deleted');
  const renewed = await h.publish('s.deleted', 'new life');
  const [gap, next] = await take(sub, 2);
  assert.deepEqual([gap.type, gap.reason], ['gap', 'epoch']);
  assert.deepEqual(next, message(renewed, 'new life'));
  sub.close();
});

/** Asserts that `promise` rejects with a HeraldError of this code (and status, if given). */
async function refused(promise, code, status) {
  await assert.rejects(within(WAIT_MS, `a refusal (${code})`, promise), (error) => {
    assert.ok(error instanceof HeraldError, `not a HeraldError: ${error}`);
    assert.equal(error.code, code);
    if (status !== undefined) assert.equal(error.status, status);
    return true;
  });
}

test('makeToken is accepted by herald: allowed channels only', async () => {
  const token = makeToken(JWT_SECRET, 'user-7', { subscribe: ['s.jwt.*'] });
  const h = new Herald(secured.url, { token });
  const sub = h.subscribe('s.jwt.allowed');
  await within(WAIT_MS, 'the subscription', sub.ready);
  const sent = await new Herald(secured.url, { key: PUBLISH_KEY }).publish('s.jwt.allowed', 'for user-7');
  assert.deepEqual(await take(sub, 1), [message(sent, 'for user-7')]);
  sub.close();
  const elsewhere = h.subscribe('elsewhere');
  await refused(elsewhere.ready, 'forbidden', null);
  await refused(elsewhere.next(), 'forbidden', null);
  assert.deepEqual(await elsewhere.next(), { value: undefined, done: true });
});

test('refused connections reject with herald codes', async () => {
  const cases = [
    [undefined, 'unauthorized'],
    [makeToken(JWT_SECRET, 'user-7', { subscribe: ['*'], ttl: -3600 }), 'token_expired'],
    [makeToken('not-the-secret', 'user-7', { subscribe: ['*'] }), 'invalid_token'],
  ];
  for (const [token, code] of cases) {
    const sub = new Herald(secured.url, { token }).subscribe('s.refused', { minBackoff: 20 });
    await refused(sub.ready, code, 401);
    await refused(take(sub, 1), code, 401);
  }
});

test('a bad channel is refused', async () => {
  const sub = new Herald(open.url).subscribe('no spaces allowed');
  await refused(sub.ready, 'bad_channel', null);
});

test('presence lists a subscriber with its token\'s user and info', async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'herald-node-presence-'));
  const file = join(dir, 'herald.toml');
  writeFileSync(file, '[[channels]]\npattern = "room.*"\npresence = true\n');
  const server = await startHerald(['--config', file, '--publish-key', PUBLISH_KEY, '--jwt-secret', JWT_SECRET]);
  try {
    const token = makeToken(JWT_SECRET, 'ann', { subscribe: ['room.*'], info: { name: 'Ann' } });
    const client = new Herald(server.url, { token });
    const sub = client.subscribe('room.node');
    await within(WAIT_MS, 'the subscription', sub.ready);
    const backend = new Herald(server.url, { token: PUBLISH_KEY });
    const presence = await backend.presence('room.node');
    assert.equal(presence.channel, 'room.node');
    assert.equal(presence.count, 1);
    assert.equal(presence.users, 1);
    assert.equal(presence.clients[0].user, 'ann');
    assert.deepEqual(presence.clients[0].info, { name: 'Ann' });
    assert.equal(presence.clients[0].transport, 'ws-protocol');
    sub.close();
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
