// The publish API against a real herald: publish, batch, info, delete,
// idempotency, presence, and herald's error codes.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Herald, HeraldError, makeToken } from 'herald-node';
import { JWT_SECRET, PUBLISH_KEY, startHerald } from './helpers.mjs';

let open;
let secured;
before(async () => {
  open = await startHerald();
  secured = await startHerald(['--publish-key', PUBLISH_KEY, '--jwt-secret', JWT_SECRET]);
});
after(async () => { await open?.stop(); await secured?.stop(); });

/** Asserts that `promise` rejects with a HeraldError of this status and code. */
async function refused(promise, status, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof HeraldError, `not a HeraldError: ${error}`);
    assert.deepEqual([error.status, error.code], [status, code]);
    return true;
  });
}

test('publish, info, delete', async () => {
  const h = new Herald(open.url);
  const first = await h.publish('n.pid', 'hello');
  assert.deepEqual([first.channel, first.subscribers, typeof first.id], ['n.pid', 0, 'string']);
  await h.publish('n.pid', new Uint8Array([0xff, 0, 1]));
  const last = await h.publish('n.pid', { price: 42 }, { event: 'update' });
  const info = await h.info('n.pid');
  assert.equal(info.messages, 3);
  assert.deepEqual([info.first_id, info.last_id], [first.id, last.id]);
  assert.deepEqual(await h.delete('n.pid'), { channel: 'n.pid', deleted: true });
  await refused(h.info('n.pid'), 404, 'not_found');
});

test('a batch is published whole, bytes included', async () => {
  const h = new Herald(open.url);
  const answers = await h.publishBatch([
    { channel: 'n.batch.a', data: 'one' },
    { channel: 'n.batch.b', data: Buffer.from([0, 1]), event: 'bin' },
    { channel: 'n.batch.a', data: { n: 3 } },
  ]);
  assert.deepEqual(answers.map((a) => a.channel), ['n.batch.a', 'n.batch.b', 'n.batch.a']);
  assert.equal((await h.info('n.batch.a')).messages, 2);
  await refused(h.publishBatch([{ channel: 'n.batch.c', data: 'x' }, { channel: 'no spaces', data: 'x' }]), 400, 'bad_channel');
  await refused(h.info('n.batch.c'), 404, 'not_found'); // the good item was not published either
});

test('an idempotency key makes a retry return the first answer', async () => {
  const h = new Herald(open.url);
  const once = await h.publish('n.idem', 'charge', { idempotencyKey: 'order-17' });
  const again = await h.publish('n.idem', 'charge', { idempotencyKey: 'order-17' });
  assert.equal(again.id, once.id);
  const batch = [{ channel: 'n.idem', data: 'a' }, { channel: 'n.idem', data: 'b' }];
  const first = await h.publishBatch(batch, { idempotencyKey: 'batch-1' });
  assert.deepEqual(await h.publishBatch(batch, { idempotencyKey: 'batch-1' }), first);
  assert.equal((await h.info('n.idem')).messages, 3);
});

// fetch shares kept-alive connections: a publish refused before its body
// is read must leave the connection usable for the next one.
test('errors carry herald codes and statuses', async () => {
  const h = new Herald(open.url);
  for (let i = 0; i < 20; i++) {
    await refused(h.publish('bad channel!', 'x'.repeat(1000)), 400, 'bad_channel');
    assert.equal((await h.publish('n.err', 'fine')).channel, 'n.err');
  }
  await refused(new Herald(secured.url).publish('n.err', ''), 401, 'unauthorized');
  await refused(new Herald(secured.url, { key: 'not-the-key' }).publish('n.err', ''), 401, 'invalid_token');
  const limited = makeToken(JWT_SECRET, 'user-1', { subscribe: ['*'], publish: ['other.*'] });
  await refused(new Herald(secured.url, { token: limited }).publish('n.err', ''), 403, 'forbidden');
  const allowed = makeToken(JWT_SECRET, 'user-1', { publish: ['n.*'] });
  assert.equal((await new Herald(secured.url, { token: allowed }).publish('n.err', 'x')).channel, 'n.err');
  assert.equal((await new Herald(secured.url, { key: PUBLISH_KEY }).publish('n.err', 'x')).channel, 'n.err');
});

test('presence of a channel without presence is a 404 with herald\'s code', async () => {
  const h = new Herald(open.url);
  await h.publish('n.presence', 'x');
  await assert.rejects(h.presence('n.presence'), (error) => {
    assert.ok(error instanceof HeraldError);
    assert.equal(error.status, 404);
    assert.equal(error.code, 'presence_off');
    return true;
  });
});
