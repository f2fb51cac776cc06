// The console page (/) and the demo page (/demo) in a real headless
// Chromium, against one `herald serve --demo` on a free port with a fast
// clock. Screenshots go to test-artifacts/ (console.png, console-phone.png,
// demo.png, demo-phone.png).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startHerald, launchChromium, artifacts, waitForSubscribers, WAIT_MS } from "./helpers.mjs";

const PHONE = { width: 390, height: 844 };
const CLOCK = /New message at \d\d:\d\d:\d\d/;

let browser;
let server;

before(async () => {
  browser = await launchChromium();
  server = await startHerald(["--demo", "--demo-tick", "300ms"]);
});
after(async () => {
  await browser?.close();
  server?.child.kill();
});

/** Opens `path`, collecting page errors, console errors and any request leaving herald's origin. */
async function open(path, viewport) {
  const page = await browser.newPage(viewport ? { viewport } : {});
  const problems = [];
  const origin = new URL(server.url);
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("request", (r) => { if (new URL(r.url()).host !== origin.host) problems.push(`external request: ${r.url()}`); });
  page.on("websocket", (ws) => { if (new URL(ws.url()).host !== origin.host) problems.push(`external WebSocket: ${ws.url()}`); });
  await page.goto(`${server.url}${path}`);
  return { page, problems };
}

async function sideways(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

/** Waits until the element `selector` has text matching `pattern`. */
function textIn(page, selector, pattern) {
  return page.waitForFunction(
    ({ selector, source }) => new RegExp(source).test(document.querySelector(selector)?.innerText ?? ""),
    { selector, source: pattern.source },
    { timeout: WAIT_MS },
  );
}

test("the demo page shows the echo reply and clock messages on all three clients", async () => {
  const { page, problems } = await open("/demo");
  await textIn(page, "#ws ol", /服务器回应:你好,服务器!/);
  await textIn(page, "#sse ol", CLOCK);
  await textIn(page, "#poll ol", CLOCK);
  // Over which connection, and ids that SSE and long polling share.
  await textIn(page, "#ws ol", /socket #1/);
  await textIn(page, "#sse ol", /stream #1/);
  await textIn(page, "#poll ol", /request #\d+, held/);
  // Let a few more ticks in so the screenshot shows the streams moving.
  await textIn(page, "#poll [data-role=count]", /^[3-9]|\d\d/);
  await textIn(page, "#sse [data-role=count]", /^[3-9]|\d\d/);
  await page.screenshot({ path: `${artifacts()}demo.png`, fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test("the demo page works at phone width", async () => {
  const { page, problems } = await open("/demo", PHONE);
  await textIn(page, "#ws ol", /服务器回应:你好,服务器!/);
  await textIn(page, "#poll ol", CLOCK);
  assert.ok((await sideways(page)) <= 0, "the demo page does not scroll sideways");
  await page.screenshot({ path: `${artifacts()}demo-phone.png`, fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test("the demo's WebSocket form sends what is typed and shows the reply", async () => {
  const { page, problems } = await open("/demo");
  await textIn(page, "#ws ol", /服务器回应:你好,服务器!/);
  await page.fill("#ws input", "second message");
  await page.click("#ws button");
  await textIn(page, "#ws ol", /服务器回应:second message/);
  assert.deepEqual(problems, []);
  await page.close();
});

for (const transport of ["auto", "websocket", "sse", "poll"]) {
  test(`the console subscribes over ${transport}, publishes and shows the message`, async () => {
    const { page, problems } = await open("/");
    const channel = `console-${transport}`;
    await page.fill("#channels", channel);
    await page.selectOption("#transport", transport);
    await page.click("#subscribe");
    await textIn(page, "#state", /^open$/);
    await waitForSubscribers(server.url, channel);
    await page.fill("#pub-channel", channel);
    await page.fill("#pub-event", "greeting");
    await page.fill("#pub-data", `hello over ${transport}`);
    await page.click("#publish");
    const row = page.locator("#log tr.msg", { hasText: `hello over ${transport}` });
    await row.waitFor({ timeout: WAIT_MS });
    assert.equal(await row.locator("td.channel").textContent(), channel);
    assert.match(await row.locator("td.id").textContent(), /^\S+-\d+$/);
    assert.equal(await row.locator("td.event").textContent(), "greeting");
    assert.match(await row.locator("td.time").textContent(), /^\d\d:\d\d:\d\d\.\d{3}$/);
    await textIn(page, "#pub-result", /published \S+ to console-/);
    assert.match(await page.textContent("#transport-used"), new RegExp(transport === "auto" ? "websocket" : transport));
    assert.deepEqual(problems, []);
    await page.close();
  });
}

test("the console shows the demo clock on several channels at once, and its screenshot", async () => {
  const { page, problems } = await open("/");
  await page.fill("#channels", "clock, news");
  await page.click("#subscribe");
  await textIn(page, "#log", CLOCK);
  await waitForSubscribers(server.url, "news");
  await page.fill("#pub-channel", "news");
  await page.fill("#pub-data", "breaking: herald console works");
  await page.click("#publish");
  await page.locator("#log tr.msg", { hasText: "breaking: herald console works" }).waitFor({ timeout: WAIT_MS });
  await page.waitForFunction(() => document.querySelectorAll("#log tr.msg").length >= 5, null, { timeout: WAIT_MS });
  await page.screenshot({ path: `${artifacts()}console.png`, fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test("the console is usable at phone width", async () => {
  const { page, problems } = await open("/", PHONE);
  await page.fill("#channels", "clock");
  await page.click("#subscribe");
  await textIn(page, "#log", CLOCK);
  await page.waitForFunction(() => document.querySelectorAll("#log tr.msg").length >= 3, null, { timeout: WAIT_MS });
  assert.ok((await sideways(page)) <= 0, "the console does not scroll sideways");
  for (const id of ["#channels", "#transport", "#subscribe", "#pub-channel", "#pub-data", "#publish"]) {
    const box = await page.locator(id).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= PHONE.width, `${id} fits the screen`);
  }
  await page.screenshot({ path: `${artifacts()}console-phone.png`, fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test("the console shows who is on a channel with presence, and their joins and leaves live", async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "herald-console-presence-"));
  const file = join(dir, "herald.toml");
  writeFileSync(file, '[[channels]]\npattern = "room.*"\npresence = true\njoin_leave = true\n');
  const own = await startHerald(["--config", file]);
  try {
    const console1 = await browser.newPage();
    await console1.goto(`${own.url}/`);
    await console1.fill("#channels", "room.console");
    await console1.selectOption("#transport", "websocket");
    await console1.click("#subscribe");
    await textIn(console1, "#presence", /room\.console: 1 connection \(1 anonymous\)/);
    const console2 = await browser.newPage();
    await console2.goto(`${own.url}/`);
    await console2.fill("#channels", "room.console");
    await console2.selectOption("#transport", "sse");
    await console2.click("#subscribe");
    await textIn(console1, "#presence", /room\.console: 2 connections \(2 anonymous\)/);
    await console1.locator("#log tr.info", { hasText: "joined" }).waitFor({ timeout: WAIT_MS });
    await console2.close();
    await console1.locator("#log tr.info", { hasText: "left" }).waitFor({ timeout: WAIT_MS });
    await textIn(console1, "#presence", /room\.console: 1 connection \(1 anonymous\)/);
    await console1.close();
  } finally {
    own.child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
