// herald.js in a real headless Chromium against a real herald.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startHerald, launchChromium, publish, waitForSubscribers, WAIT_MS } from "./helpers.mjs";

let browser;
const servers = [];

before(async () => { browser = await launchChromium(); });
after(async () => {
  await browser?.close();
  for (const s of servers) s.child.kill();
});

async function herald(args = []) {
  const server = await startHerald(args);
  servers.push(server);
  return server.url;
}

/** A page on herald's origin with a Herald client subscribed to `channel`. */
async function clientPage(base, channel, options = {}, since = null, setup = null) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  if (setup) await setup(page);
  await page.goto(`${base}/healthz`);
  await page.evaluate(async ({ channel, options, since }) => {
    const { Herald } = await import("/herald.js");
    window.got = [];
    window.states = [];
    window.gaps = [];
    const h = new Herald(location.origin, { connectTimeout: 2000, minBackoff: 50, maxBackoff: 400, ...options });
    h.on("state", (s) => window.states.push(s));
    h.on("gap", (g) => window.gaps.push(g));
    h.subscribe(channel, (m) => window.got.push(m), since ? { since } : {});
    window.h = h;
  }, { channel, options, since });
  return { page, errors };
}

async function received(page, count) {
  await page.waitForFunction((n) => window.got.length >= n, count, { timeout: WAIT_MS });
  return page.evaluate(() => window.got);
}

for (const transport of ["websocket", "sse", "poll"]) {
  test(`receives 20 messages over ${transport} alone`, async () => {
    const base = await herald();
    const { page, errors } = await clientPage(base, "twenty", { transports: [transport] });
    await waitForSubscribers(base, "twenty");
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push((await publish(base, "twenty", `m${i}`)).id);
    const got = await received(page, 20);
    assert.deepEqual(got.map((m) => m.data), ids.map((_, i) => `m${i}`));
    assert.deepEqual(got.map((m) => m.id), ids);
    assert.equal(got[0].channel, "twenty");
    assert.equal(await page.evaluate(() => window.h.transport), transport);
    assert.deepEqual(errors, []);
    await page.close();
  });
}

test("falls back to SSE when WebSockets are blocked", async () => {
  const base = await herald();
  const { page } = await clientPage(base, "fb1", {}, null, async (p) => {
    await p.routeWebSocket(/.*/, (ws) => ws.close());
  });
  await page.waitForFunction(() => window.h.transport === "sse" && window.h.state === "open", null, { timeout: WAIT_MS });
  await waitForSubscribers(base, "fb1");
  await publish(base, "fb1", "via sse");
  assert.equal((await received(page, 1))[0].data, "via sse");
  const transports = await page.evaluate(() => window.states.map((s) => s.transport));
  assert.ok(transports.includes("websocket") && transports.includes("sse"), transports.join(","));
  await page.close();
});

test("falls back to long polling when WebSocket and SSE are blocked", async () => {
  const base = await herald();
  const { page } = await clientPage(base, "fb2", {}, null, async (p) => {
    await p.routeWebSocket(/.*/, (ws) => ws.close());
    await p.route("**/sub/**", (route) => {
      const accept = route.request().headers()["accept"] ?? "";
      return accept.includes("text/event-stream") ? route.abort() : route.continue();
    });
  });
  await page.waitForFunction(() => window.h.transport === "poll", null, { timeout: WAIT_MS });
  await waitForSubscribers(base, "fb2");
  await publish(base, "fb2", "via poll");
  assert.equal((await received(page, 1))[0].data, "via poll");
  await page.close();
});

for (const transport of ["websocket", "sse"]) {
  test(`resumes without loss when the server closes every ${transport} connection mid-stream`, async () => {
    const base = await herald(["--max-connection-age", "300ms"]);
    const { page } = await clientPage(base, "resume", { transports: [transport] });
    await waitForSubscribers(base, "resume");
    const count = 150;
    for (let i = 0; i < count; i++) {
      await publish(base, "resume", String(i));
      await new Promise((r) => setTimeout(r, 8)); // spread publishing over several connection ages
    }
    const got = await received(page, count);
    await new Promise((r) => setTimeout(r, 100));
    const all = await page.evaluate(() => window.got.map((m) => m.data));
    assert.deepEqual(all, Array.from({ length: count }, (_, i) => String(i)), "nothing lost or repeated");
    assert.equal(got.length, count);
    const reconnects = await page.evaluate(() => window.states.filter((s) => s.state === "reconnecting").length);
    assert.ok(reconnects >= 2, `expected several reconnects, saw ${reconnects}`);
    await page.close();
  });
}

test("publishes from the page", async () => {
  const base = await herald();
  const page = await browser.newPage();
  await page.goto(`${base}/healthz`);
  const answer = await page.evaluate(async () => {
    const { Herald } = await import("/herald.js");
    return new Herald(location.origin).publish("from-page", "hello from the page");
  });
  assert.equal(answer.channel, "from-page");
  const history = await (await fetch(`${base}/sub/from-page?since=0`)).json();
  assert.equal(history.messages[0].data, "hello from the page");
  await page.close();
});

test("reports a gap when history no longer holds what was missed", async () => {
  const base = await herald(["--history-size", "5"]);
  const first = await publish(base, "gappy", "0");
  for (let i = 1; i < 10; i++) await publish(base, "gappy", String(i));
  const { page } = await clientPage(base, "gappy", { transports: ["websocket"] }, first.id);
  await page.waitForFunction(() => window.gaps.length > 0, null, { timeout: WAIT_MS });
  const gap = await page.evaluate(() => window.gaps[0]);
  assert.equal(gap.channel, "gappy");
  assert.equal(gap.reason, "trimmed");
  const got = await received(page, 5);
  assert.deepEqual(got.map((m) => m.data), ["5", "6", "7", "8", "9"]);
  await page.close();
});
