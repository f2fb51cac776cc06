// herald.js in a real headless Chromium against a real herald: every
// transport alone, fallback, reconnect and resume, gaps, publish, tokens.
//
// Each test starts its own `herald serve --demo` (HERALD_BIN) on a free loopback
// port with the flags it needs; all of them are killed at the end.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startHerald, launchChromium, publish, waitForSubscribers, jwt, WAIT_MS } from "./helpers.mjs";

const TRANSPORTS = ["websocket", "sse", "poll"];

let browser;
const servers = [];
const configDirs = [];

before(async () => { browser = await launchChromium(); });
after(async () => {
  await browser?.close();
  for (const server of servers) server.child.kill();
  const { rmSync } = await import("node:fs");
  for (const dir of configDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh `herald serve --demo` with `args`, killed when the file ends. */
async function herald(args = []) {
  const server = await startHerald(["--demo", ...args]);
  servers.push(server);
  return server.url;
}

/**
 * A page on herald's origin with a Herald client (window.h) subscribed to
 * `channels`. The page records window.got (messages), window.states,
 * window.gaps and window.errors; `setup(page)` runs before anything loads.
 */
async function clientPage(base, { channels, options = {}, since = null, token = null, setup = null }) {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  if (setup) await setup(page);
  await page.goto(`${base}/healthz`);
  await page.evaluate(async ({ channels, options, since, token }) => {
    const { Herald } = await import("/herald.js");
    window.got = [];
    window.states = [];
    window.gaps = [];
    window.errors = [];
    // The token as a function, as an app renewing its JWT would pass it.
    const auth = token ? { token: async () => token } : {};
    const h = new Herald(location.origin, { connectTimeout: 2000, minBackoff: 50, maxBackoff: 400, ...options, ...auth });
    h.on("state", (s) => window.states.push(s));
    h.on("gap", (g) => window.gaps.push(g));
    h.on("error", (e) => window.errors.push(e));
    window.subs = {};
    for (const channel of channels) window.subs[channel] = h.subscribe(channel, (m) => window.got.push(m), since ? { since } : {});
    window.h = h;
  }, { channels, options, since, token });
  return { page, pageErrors };
}

/** Waits until the page holds `count` messages (or the bound passes) and returns them. */
async function received(page, count) {
  await page.waitForFunction((n) => window.got.length >= n, count, { timeout: WAIT_MS });
  return page.evaluate(() => window.got);
}

/** Waits until a message with `data` arrived and returns every message's data. */
async function receivedUntil(page, data) {
  await page.waitForFunction((d) => window.got.some((m) => m.data === d), data, { timeout: WAIT_MS });
  return page.evaluate(() => window.got.map((m) => m.data));
}

function reconnects(page) {
  return page.evaluate(() => window.states.filter((s) => s.state === "reconnecting").length);
}

/** Blocks every WebSocket the page opens: the "proxy" accepts, then closes it. */
function blockWebSockets(page) {
  return page.routeWebSocket(/.*/, (ws) => ws.close());
}

/** Aborts every request that asks for an event stream, as a buffering proxy would break it. */
function blockEventStreams(page) {
  return page.route("**/sub/**", (route) => {
    const accept = route.request().headers()["accept"] ?? "";
    return accept.includes("text/event-stream") ? route.abort() : route.continue();
  });
}

for (const transport of TRANSPORTS) {
  test(`receives 20 messages over ${transport} alone`, async () => {
    const base = await herald();
    const { page, pageErrors } = await clientPage(base, { channels: ["twenty"], options: { transports: [transport] } });
    await waitForSubscribers(base, "twenty");
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push((await publish(base, "twenty", `m${i}`)).id);
    const got = await received(page, 20);
    assert.deepEqual(got.map((m) => m.data), ids.map((_, i) => `m${i}`));
    assert.deepEqual(got.map((m) => m.id), ids);
    assert.ok(got.every((m) => m.channel === "twenty" && m.event === "message"));
    assert.equal(await page.evaluate(() => window.h.transport), transport);
    const states = await page.evaluate(() => window.states.map((s) => `${s.transport}:${s.state}`));
    assert.deepEqual(states, [`${transport}:connecting`, `${transport}:open`]);
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

  test(`two channels share one ${transport} connection`, async () => {
    const base = await herald();
    const streams = [];
    const { page } = await clientPage(base, {
      channels: ["multi-a", "multi-b"],
      options: { transports: [transport] },
      setup: (p) => {
        p.on("websocket", (ws) => streams.push(ws.url()));
        p.on("request", (r) => { if (r.url().includes("/sub/")) streams.push(r.url()); });
      },
    });
    await waitForSubscribers(base, "multi-a");
    await waitForSubscribers(base, "multi-b");
    for (let i = 0; i < 10; i++) {
      await publish(base, "multi-a", `a${i}`);
      await publish(base, "multi-b", `b${i}`);
    }
    const got = await received(page, 20);
    const on = (channel) => got.filter((m) => m.channel === channel).map((m) => m.data);
    assert.deepEqual(on("multi-a"), Array.from({ length: 10 }, (_, i) => `a${i}`));
    assert.deepEqual(on("multi-b"), Array.from({ length: 10 }, (_, i) => `b${i}`));
    if (transport === "websocket") {
      assert.equal(streams.length, 1, streams.join("\n"));
      assert.match(streams[0], /\/ws$/);
    } else {
      // SSE: one stream for both channels (after one position request);
      // polls: every request names both channels.
      assert.ok(streams.length >= 1);
      for (const url of streams) assert.match(url, /\/sub\/multi-a,multi-b\?/);
      if (transport === "sse") assert.equal(streams.filter((u) => u.includes("envelope=1")).length, 1, streams.join("\n"));
    }
    await page.close();
  });
}

test("falls back to SSE when WebSockets are blocked", async () => {
  const base = await herald();
  const { page, pageErrors } = await clientPage(base, { channels: ["fb1"], setup: blockWebSockets });
  await page.waitForFunction(() => window.h.transport === "sse" && window.h.state === "open", null, { timeout: WAIT_MS });
  await waitForSubscribers(base, "fb1");
  await publish(base, "fb1", "via sse");
  assert.equal((await received(page, 1))[0].data, "via sse");
  const states = await page.evaluate(() => window.states.map((s) => `${s.transport}:${s.state}`));
  assert.equal(states[0], "websocket:connecting");
  assert.ok(!states.includes("websocket:open"), `a blocked WebSocket is never reported open: ${states}`);
  assert.equal(states.at(-1), "sse:open");
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test("falls back to long polling when WebSocket and SSE are blocked", async () => {
  const base = await herald();
  const { page, pageErrors } = await clientPage(base, {
    channels: ["fb2"],
    setup: async (p) => { await blockWebSockets(p); await blockEventStreams(p); },
  });
  await page.waitForFunction(() => window.h.transport === "poll" && window.h.state === "open", null, { timeout: WAIT_MS });
  await waitForSubscribers(base, "fb2");
  await publish(base, "fb2", "via poll");
  assert.equal((await received(page, 1))[0].data, "via poll");
  const tried = await page.evaluate(() => [...new Set(window.states.map((s) => s.transport))]);
  assert.deepEqual(tried, ["websocket", "sse", "poll"]);
  assert.deepEqual(pageErrors, []);
  await page.close();
});

/**
 * Publishes 0, 1, 2... to `channel` until `done()` holds (checked every few
 * messages) or `limit` messages went out; resolves to the count.
 */
async function publishUntil(base, channel, done, limit = 20_000) {
  let count = 0;
  while (count < limit) {
    await publish(base, channel, String(count++));
    if (count % 5 === 0 && (await done())) return count;
  }
  throw new Error(`published ${limit} messages and the condition never held`);
}

for (const transport of ["websocket", "sse"]) {
  test(`resumes without loss or repeat when the server closes every ${transport} connection mid-stream`, async () => {
    const base = await herald(["--max-connection-age", "300ms", "--history-size", "100000"]);
    const { page } = await clientPage(base, { channels: ["resume"], options: { transports: [transport] } });
    await waitForSubscribers(base, "resume");
    const count = await publishUntil(base, "resume", async () => (await reconnects(page)) >= 3);
    await publish(base, "resume", "end");
    const all = await receivedUntil(page, "end");
    assert.deepEqual(all, [...Array.from({ length: count }, (_, i) => String(i)), "end"], "nothing lost, repeated or reordered");
    assert.deepEqual(await page.evaluate(() => window.gaps), []);
    const states = await page.evaluate(() => window.states.map((s) => s.transport));
    assert.ok(states.every((t) => t === transport), "reconnects stay on the transport");
    await page.close();
  });
}

test("resumes without loss or repeat across transport switches (WebSocket -> SSE -> long poll) mid-stream", async () => {
  const base = await herald(["--max-connection-age", "300ms", "--history-size", "100000"]);
  const { page } = await clientPage(base, { channels: ["switch"] });
  await waitForSubscribers(base, "switch");
  const state = () => page.evaluate(() => `${window.h.transport}:${window.h.state}`);
  let phase = "websocket";
  const count = await publishUntil(base, "switch", async () => {
    if (phase === "websocket" && (await reconnects(page)) >= 1) {
      phase = "to-sse";
      await blockWebSockets(page); // from the next connection on
    } else if (phase === "to-sse" && (await state()) === "sse:open") {
      phase = "sse";
      await page.evaluate(() => { window.sseOpenedAt = window.states.length; });
    } else if (phase === "sse" && (await page.evaluate(() => window.states.slice(window.sseOpenedAt).some((s) => s.state === "reconnecting")))) {
      phase = "to-poll";
      await blockEventStreams(page);
    } else if (phase === "to-poll" && (await state()) === "poll:open") {
      phase = "poll";
      return true;
    }
    return false;
  });
  // A few more while polling, then the end marker.
  for (let i = count; i < count + 10; i++) await publish(base, "switch", String(i));
  await publish(base, "switch", "end");
  const all = await receivedUntil(page, "end");
  assert.deepEqual(all, [...Array.from({ length: count + 10 }, (_, i) => String(i)), "end"], "nothing lost, repeated or reordered");
  assert.deepEqual(await page.evaluate(() => window.gaps), []);
  const opened = await page.evaluate(() => window.states.filter((s) => s.state === "open").map((s) => s.transport));
  assert.ok(opened.includes("websocket") && opened.includes("sse") && opened.at(-1) === "poll", opened.join(","));
  await page.close();
});

for (const [first, block] of [["websocket", blockWebSockets], ["sse", blockEventStreams]]) {
  test(`a ${first} connection that drops before its first message still resumes from when it subscribed`, async () => {
    const base = await herald(["--max-connection-age", "400ms"]);
    const { page } = await clientPage(base, { channels: ["early"], options: { transports: [first, "poll"] } });
    await page.waitForFunction((t) => window.h.transport === t && window.h.state === "open", first, { timeout: WAIT_MS });
    await block(page); // the next connection has to go elsewhere
    await page.waitForFunction(() => window.h.state === "reconnecting", null, { timeout: WAIT_MS });
    for (const data of ["away 0", "away 1", "away 2"]) await publish(base, "early", data);
    const all = await receivedUntil(page, "away 2");
    assert.deepEqual(all, ["away 0", "away 1", "away 2"]);
    assert.equal(await page.evaluate(() => window.h.transport), "poll");
    assert.deepEqual(await page.evaluate(() => window.gaps), []);
    await page.close();
  });
}

test("climbs back to WebSocket once it works again after a fallback", async () => {
  const base = await herald(["--max-connection-age", "300ms", "--history-size", "100000"]);
  let blocked = true;
  const { page } = await clientPage(base, {
    channels: ["climb"],
    options: { retryPreferredAfter: 200 },
    // A proxy that refuses WebSockets until it is fixed, then passes them through.
    setup: (p) => p.routeWebSocket(/.*/, (ws) => (blocked ? ws.close() : ws.connectToServer())),
  });
  await page.waitForFunction(() => window.h.transport === "sse" && window.h.state === "open", null, { timeout: WAIT_MS });
  await waitForSubscribers(base, "climb");
  const count = await publishUntil(base, "climb", async () => {
    blocked = false;
    return page.evaluate(() => window.h.transport === "websocket" && window.h.state === "open");
  });
  await publish(base, "climb", "end");
  const all = await receivedUntil(page, "end");
  assert.deepEqual(all, [...Array.from({ length: count }, (_, i) => String(i)), "end"], "nothing lost, repeated or reordered");
  await page.close();
});

test("publishes from the page", async () => {
  const base = await herald();
  const { page } = await clientPage(base, { channels: ["from-page"] });
  await waitForSubscribers(base, "from-page");
  const answer = await page.evaluate(() => window.h.publish("from-page", "hello from the page"));
  assert.equal(answer.channel, "from-page");
  assert.equal(typeof answer.id, "string");
  assert.equal(answer.subscribers, 1);
  const [got] = await received(page, 1);
  assert.equal(got.data, "hello from the page");
  assert.equal(got.id, answer.id);
  // JSON data and an event name.
  await page.evaluate(() => window.h.publish("from-page", { n: 1 }, { event: "update" }));
  const [, second] = await received(page, 2);
  assert.equal(second.data, '{"n":1}');
  assert.equal(second.event, "update");
  await page.close();
});

test("publishes with the token as a bearer key, and reports a refusal", async () => {
  const base = await herald(["--publish-key", "s3cret"]);
  const page = await browser.newPage();
  await page.goto(`${base}/healthz`);
  const outcome = await page.evaluate(async () => {
    const { Herald } = await import("/herald.js");
    const ok = await new Herald(location.origin, { token: "s3cret" }).publish("keyed", "with key");
    const refused = await new Herald(location.origin).publish("keyed", "without").catch((e) => ({ status: e.status, code: e.code }));
    return { ok, refused };
  });
  assert.equal(outcome.ok.channel, "keyed");
  assert.equal(outcome.refused.status, 401);
  assert.equal(typeof outcome.refused.code, "string");
  await page.close();
});

for (const transport of TRANSPORTS) {
  test(`subscribes with a JWT over ${transport}`, async () => {
    const secret = "jwt-test-secret";
    const base = await herald(["--jwt-secret", secret]);
    const token = jwt(secret, { sub: "tester", herald: { subscribe: ["tok.*"], publish: ["tok.*"] } });
    const { page } = await clientPage(base, { channels: ["tok.a"], options: { transports: [transport] }, token });
    await waitForSubscribers(base, "tok.a", 1, token);
    await publish(base, "tok.a", "authorised", token);
    assert.equal((await received(page, 1))[0].data, "authorised");
    // From the page too: the same token as a bearer.
    await page.evaluate(() => window.h.publish("tok.a", "from the page"));
    assert.equal((await received(page, 2))[1].data, "from the page");
    await page.close();
  });
}

for (const transport of TRANSPORTS) {
  test(`reports a gap over ${transport} when history no longer holds what was missed`, async () => {
    const base = await herald(["--history-size", "5"]);
    const first = await publish(base, "gappy", "0");
    for (let i = 1; i < 10; i++) await publish(base, "gappy", String(i));
    const { page } = await clientPage(base, { channels: ["gappy"], options: { transports: [transport] }, since: first.id });
    await page.waitForFunction(() => window.gaps.length > 0, null, { timeout: WAIT_MS });
    const gap = await page.evaluate(() => window.gaps[0]);
    assert.equal(gap.channel, "gappy");
    assert.equal(gap.reason, "trimmed");
    assert.equal(gap.since, first.id);
    assert.equal(gap.op, undefined);
    const got = await received(page, 5);
    assert.deepEqual(got.map((m) => m.data), ["5", "6", "7", "8", "9"]);
    await publish(base, "gappy", "10");
    assert.equal((await received(page, 6))[5].data, "10");
    assert.equal(await page.evaluate(() => window.gaps.length), 1);
    await page.close();
  });

  test(`reports a reset history once over ${transport}, then carries on from the new one`, async () => {
    const base = await herald(["--max-connection-age", "300ms"]);
    const requests = [];
    const { page } = await clientPage(base, {
      channels: ["reset"],
      options: { transports: [transport] },
      since: "zzzzzz-3", // an id from a history this server never had
      setup: (p) => p.on("request", (r) => { if (r.url().includes("/sub/")) requests.push(r.url()); }),
    });
    await page.waitForFunction(() => window.gaps.length > 0, null, { timeout: WAIT_MS });
    assert.equal(await page.evaluate(() => window.gaps[0].reason), "epoch");
    if (transport !== "poll") {
      // Reconnects resume from the new history's position, not the stale id.
      const opens = await page.evaluate(() => window.states.filter((s) => s.state === "open").length);
      await page.waitForFunction((n) => window.states.filter((s) => s.state === "open").length >= n + 2, opens, { timeout: WAIT_MS });
    }
    await waitForSubscribers(base, "reset");
    await publish(base, "reset", "after the reset");
    assert.equal((await received(page, 1))[0].data, "after the reset");
    assert.equal(await page.evaluate(() => window.gaps.length), 1, "the gap is reported once");
    if (transport === "poll") assert.ok(requests.length <= 4, `polls do not spin: ${requests.length} requests`);
    await page.close();
  });
}

for (const transport of TRANSPORTS) {
  test(`a deleted channel is reported over ${transport}, and followed when it is used again`, async () => {
    const base = await herald();
    const { page } = await clientPage(base, { channels: ["doomed"], options: { transports: [transport] } });
    await waitForSubscribers(base, "doomed");
    await publish(base, "doomed", "before");
    await received(page, 1);
    const response = await fetch(`${base}/pub/doomed`, { method: "DELETE" });
    assert.equal(response.status, 200);
    await page.waitForFunction(() => window.errors.some((e) => e.code === "channel_deleted"), null, { timeout: WAIT_MS });
    assert.equal(await page.evaluate(() => window.errors.find((e) => e.code === "channel_deleted").channel), "doomed");
    await publish(base, "doomed", "after");
    const all = await receivedUntil(page, "after");
    assert.deepEqual(all, ["before", "after"]);
    // The channel's new life is a new history: said once, as an epoch gap.
    assert.deepEqual(await page.evaluate(() => window.gaps.map((g) => `${g.channel}:${g.reason}`)), ["doomed:epoch"]);
    await page.close();
  });
}

test("closing one subscription keeps the others; close() ends everything", async () => {
  const base = await herald();
  const { page } = await clientPage(base, { channels: ["keep", "drop"] });
  await waitForSubscribers(base, "keep");
  await waitForSubscribers(base, "drop");
  await page.evaluate(() => window.subs.drop.close());
  const info = async (channel) => (await fetch(`${base}/pub/${channel}`)).json();
  const deadline = Date.now() + WAIT_MS;
  while ((await info("drop")).subscribers !== 0) {
    assert.ok(Date.now() < deadline, "the server saw the unsubscribe");
    await new Promise((r) => setTimeout(r, 20));
  }
  await publish(base, "drop", "not for us");
  await publish(base, "keep", "still here");
  const got = await received(page, 1);
  assert.deepEqual(got.map((m) => m.data), ["still here"]);
  assert.equal(await page.evaluate(() => window.states.filter((s) => s.state === "open").length), 1, "same connection");
  await page.evaluate(() => window.h.close());
  assert.equal(await page.evaluate(() => window.h.state), "closed");
  const closedDeadline = Date.now() + WAIT_MS;
  while ((await info("keep")).subscribers !== 0) {
    assert.ok(Date.now() < closedDeadline, "the server saw the close");
    await new Promise((r) => setTimeout(r, 20));
  }
  await page.close();
});

test("an option passed as undefined takes its default, and binary stays binary", async () => {
  const base = await herald();
  const page = await browser.newPage();
  await page.goto(`${base}/healthz`);
  await page.evaluate(async () => {
    const { Herald } = await import("/herald.js");
    const h = new Herald(location.origin, { transports: undefined, connectTimeout: undefined });
    window.got = new Promise((resolve) => h.subscribe("js.undefined", (m) => resolve(m)));
    window.h = h;
  });
  await waitForSubscribers(base, "js.undefined", 1);
  const outcome = await page.evaluate(async () => {
    // Published as bytes (application/octet-stream) that happen to be UTF-8.
    await fetch("/pub/js.undefined", {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: new TextEncoder().encode("abc"),
    });
    const message = await window.got;
    window.h.close();
    return {
      transports: window.h.options.transports,
      connectTimeout: window.h.options.connectTimeout,
      binary: message.data instanceof Uint8Array,
      bytes: Array.from(message.data),
    };
  });
  await page.close();
  assert.deepEqual(outcome.transports, ["websocket", "sse", "poll"]);
  assert.equal(typeof outcome.connectTimeout, "number");
  assert.equal(outcome.binary, true);
  assert.deepEqual(outcome.bytes, [97, 98, 99]);
});

// Presence (DESIGN §8): a channel with presence and join_leave, from a
// TOML file the test writes.
async function presenceHerald() {
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "herald-js-presence-"));
  configDirs.push(dir);
  const file = join(dir, "herald.toml");
  writeFileSync(file, '[[channels]]\npattern = "room.*"\npresence = true\njoin_leave = true\n');
  return herald(["--config", file]);
}

for (const transport of TRANSPORTS) {
  test(`presence and join/leave over ${transport}`, async () => {
    const base = await presenceHerald();
    const { page, pageErrors } = await clientPage(base, { channels: ["room.js"], options: { transports: [transport] } });
    await page.evaluate(() => {
      window.moves = [];
      window.h.on("join", (e) => window.moves.push(["join", e]));
      window.h.on("leave", (e) => window.moves.push(["leave", e]));
    });
    await waitForSubscribers(base, "room.js", 1);
    // A second client, over WebSocket.
    const { page: other } = await clientPage(base, { channels: ["room.js"], options: { transports: ["websocket"] } });
    await waitForSubscribers(base, "room.js", 2);
    const listing = await page.evaluate(async () => {
      // Polls come and go: ask until both clients are listed.
      for (;;) {
        const p = await window.h.presence("room.js");
        if (p.count === 2) return p;
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    assert.equal(listing.channel, "room.js");
    const kinds = listing.clients.map((c) => c.transport).sort();
    const own = { websocket: "ws-protocol", sse: "sse", poll: "poll" }[transport];
    assert.deepEqual(kinds, [own, "ws-protocol"].sort());
    await other.close();
    if (transport === "poll") {
      // Long polls carry messages only: no join or leave events, though
      // presence sees the other client go.
      await page.evaluate(async () => {
        while ((await window.h.presence("room.js")).count !== 1) await new Promise((r) => setTimeout(r, 50));
      });
      assert.deepEqual(await page.evaluate(() => window.moves), []);
    } else {
      await page.waitForFunction(() => window.moves.some(([kind]) => kind === "leave"), null, { timeout: WAIT_MS });
      const moves = await page.evaluate(() => window.moves);
      assert.deepEqual(moves.map(([kind]) => kind), ["join", "leave"]);
      assert.equal(moves[0][1].channel, "room.js");
      assert.equal(moves[0][1].client, moves[1][1].client);
      assert.equal(moves[0][1].user, null);
    }
    assert.deepEqual(pageErrors, []);
    await page.close();
  });
}
