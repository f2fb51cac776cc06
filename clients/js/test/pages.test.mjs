// The console page (/) and the demo page (/demo) in a real headless Chromium.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startHerald, launchChromium, artifacts, waitForSubscribers, WAIT_MS } from "./helpers.mjs";

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

/** Opens `path`, collecting page errors, console errors and requests leaving the origin. */
async function open(path, viewport) {
  const page = await browser.newPage(viewport ? { viewport } : {});
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("request", (r) => { if (!r.url().startsWith(server.url) && !r.url().startsWith("ws://127.0.0.1")) problems.push(`external request: ${r.url()}`); });
  await page.goto(`${server.url}${path}`);
  return { page, problems };
}

test("the demo page shows the echo reply and clock messages on all three clients", async () => {
  const { page, problems } = await open("/demo");
  await page.getByText("服务器回应:你好,服务器!").first().waitFor({ timeout: WAIT_MS });
  await page.waitForFunction(() => {
    const text = (id) => document.getElementById(id)?.innerText ?? "";
    return /New message at \d\d:\d\d:\d\d/.test(text("sse")) && /New message at \d\d:\d\d:\d\d/.test(text("poll"));
  }, null, { timeout: WAIT_MS });
  await page.screenshot({ path: `${artifacts()}demo.png`, fullPage: true });
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
    await waitForSubscribers(server.url, channel);
    await page.fill("#pub-channel", channel);
    await page.fill("#pub-data", `hello over ${transport}`);
    await page.click("#pub button");
    await page.locator("#log td.data", { hasText: `hello over ${transport}` }).waitFor({ timeout: WAIT_MS });
    const used = await page.textContent("#transport-used");
    assert.match(used, transport === "auto" ? /websocket/ : new RegExp(transport));
    if (transport === "auto") await page.screenshot({ path: `${artifacts()}console.png`, fullPage: true });
    assert.deepEqual(problems, []);
    await page.close();
  });
}

test("the console is usable at phone width", async () => {
  const { page, problems } = await open("/", { width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page scrolls sideways by ${overflow}px`);
  await page.screenshot({ path: `${artifacts()}console-phone.png`, fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});
