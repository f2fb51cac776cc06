// The two secrets a backend shares with herald: the JWT secret it mints
// subscriber tokens with, and the webhook secret herald signs its calls with.

import { createHmac, timingSafeEqual } from 'node:crypto';

const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * An HS256 JWT for a herald started with `--jwt-secret`: `sub` names the user
 * (logs, presence), `subscribe`/`publish` are channel patterns (`*` a
 * wildcard), `ttl` seconds until `exp`, `info` any JSON shown in presence.
 */
export function makeToken(secret, sub, { subscribe = [], publish = [], ttl = 3600, info } = {}) {
  const herald = { subscribe: [...subscribe], publish: [...publish] };
  if (info !== undefined) herald.info = info;
  const claims = { exp: Math.floor(Date.now() / 1000 + ttl), herald };
  if (sub != null) claims.sub = sub;
  // HS256 is one HMAC over two base64url JSON parts (RFC 7519): no library needed.
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`;
}

/**
 * Whether `X-Herald-Signature: sha256=<hex>` is herald's HMAC-SHA256 of the
 * raw `body` under `secret`. Pass the body exactly as received (a Buffer or
 * string), before any JSON parsing; the comparison takes constant time.
 */
export function verifyWebhook(secret, body, signatureHeader) {
  if (typeof signatureHeader !== 'string' || !signatureHeader.startsWith('sha256=')) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(body).digest('hex'));
  const given = Buffer.from(signatureHeader.slice('sha256='.length).trim().toLowerCase());
  return given.length === expected.length && timingSafeEqual(given, expected);
}
