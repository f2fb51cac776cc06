// Tokens and webhook signatures, checked without a server (herald's
// acceptance of tokens is in subscribe.test.mjs).

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { makeToken, verifyWebhook } from 'herald-node';

const BODY = '{"events":[{"type":"channel.occupied","channel":"news","time_ms":1767225600000}]}';
const sign = (secret, body) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

test('verifyWebhook accepts herald\'s signature', () => {
  assert.equal(verifyWebhook('s3cret', BODY, sign('s3cret', BODY)), true);
  assert.equal(verifyWebhook('s3cret', Buffer.from(BODY), sign('s3cret', BODY)), true);
  assert.equal(verifyWebhook(Buffer.from('s3cret'), new TextEncoder().encode(BODY), `sha256=${sign('s3cret', BODY).slice(7).toUpperCase()}`), true);
});

test('verifyWebhook refuses everything else', () => {
  const good = sign('s3cret', BODY);
  assert.equal(verifyWebhook('other', BODY, good), false);
  assert.equal(verifyWebhook('s3cret', `${BODY} `, good), false);
  assert.equal(verifyWebhook('s3cret', BODY, undefined), false);
  assert.equal(verifyWebhook('s3cret', BODY, ''), false);
  assert.equal(verifyWebhook('s3cret', BODY, good.replace('sha256=', 'sha1=')), false);
  assert.equal(verifyWebhook('s3cret', BODY, good.slice(0, -2)), false);
  assert.equal(verifyWebhook('s3cret', BODY, 'sha256=not-hex'), false);
});

test('makeToken signs HS256 claims herald reads', () => {
  const token = makeToken('k', 'user-42', { subscribe: ['chat.*'], publish: ['chat.room1'], ttl: 300, info: { n: 1 } });
  const [header, claims, signature] = token.split('.');
  assert.equal(signature, createHmac('sha256', 'k').update(`${header}.${claims}`).digest('base64url'));
  assert.deepEqual(JSON.parse(Buffer.from(header, 'base64url')), { alg: 'HS256', typ: 'JWT' });
  const decoded = JSON.parse(Buffer.from(claims, 'base64url'));
  assert.equal(decoded.sub, 'user-42');
  assert.deepEqual(decoded.herald, { subscribe: ['chat.*'], publish: ['chat.room1'], info: { n: 1 } });
  assert.ok(Math.abs(decoded.exp - (Date.now() / 1000 + 300)) < 5);
});
