// The live status page (GET /status) in a real headless Chromium: it loads
// without errors, and its numbers move when messages flow through herald.
//
// Starts its own `herald serve` (from HERALD_BIN) on a free loopback port.
// Screenshots go to test-artifacts/status.png (desktop) and
// test-artifacts/status-phone.png (phone width).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERALD_BIN = process.env.HERALD_BIN ?? fileURLToPath(new URL("../../../target/debug/herald", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../../../test-artifacts/", import.meta.url));
const WAIT_MS = 15_000;

let server;
let base;
let browser;

/** Starts herald on port 0 and resolves with its base URL once it listens. */
function startHerald() {
  const child = spawn(HERALD_BIN, ["serve", "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
  let logs = "";
  child.stderr.on("data", (chunk) => { logs += chunk; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`herald did not start in time:\n${logs}`)), WAIT_MS);
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = out.match(/herald listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1] });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`herald exited with ${code}:\n${logs}`));
    });
  });
}

/** Opens an SSE subscription and resolves once the server answered (it is subscribed then). */
async function subscribe(channel) {
  const controller = new AbortController();
  const response = await fetch(`${base}/sub/${channel}`, {
    headers: { accept: "text/event-stream" },
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  const received = [];
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        received.push(decoder.decode(value));
      }
    } catch {
      // aborted at the end of the test
    }
  })();
  return { received, close: () => controller.abort() };
}

async function publish(channel, data) {
  const response = await fetch(`${base}/pub/${channel}`, { method: "POST", body: data });
  assert.equal(response.status, 200);
}

before(async () => {
  ({ child: server, url: base } = await startHerald());
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await exited;
  }
});

test("the status page loads without errors and its numbers move with traffic", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console error: ${message.text()}`);
  });
  const external = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(base)) external.push(request.url());
  });

  const response = await page.goto(`${base}/status`);
  assert.equal(response.status(), 200);
  // The first snapshot arrives within a second or so of the page opening.
  await page.waitForFunction(() => document.getElementById("engine").textContent === "memory", null, { timeout: WAIT_MS });
  assert.equal(await page.textContent("#state"), "live");
  const before = await page.textContent("#deliveries-total");

  const subscriber = await subscribe("status.test");
  let sent = 0;
  const traffic = setInterval(() => { publish("status.test", `tick ${sent++}`).catch(() => {}); }, 50);
  try {
    await page.waitForFunction(
      (initial) => {
        const total = document.getElementById("deliveries-total").textContent;
        const rate = Number(document.getElementById("deliveries-rate").textContent);
        return total !== initial && total !== "0" && rate > 0;
      },
      before,
      { timeout: WAIT_MS },
    );
    // The channel's own rate needs two snapshots of it, so this also waits
    // for the charts to have a few points to draw.
    await page.waitForFunction(
      () => [...document.querySelectorAll("#busiest tr")].some((row) =>
        row.cells[0]?.textContent === "status.test" && Number(row.cells[1].textContent) > 0),
      null,
      { timeout: WAIT_MS },
    );
    await page.waitForFunction(() => document.getElementById("latency-p99").textContent.endsWith("ms"), null, { timeout: WAIT_MS });
    await page.waitForFunction(() => document.getElementById("connections-split").textContent.includes("sse"), null, { timeout: WAIT_MS });
  } finally {
    clearInterval(traffic);
  }
  assert.ok(subscriber.received.join("").includes("tick 0"), "the subscriber got the messages");
  assert.ok(Number(await page.textContent("#publishes-rate")) > 0);

  await page.screenshot({ path: `${ARTIFACTS}status.png`, fullPage: true });

  // Phone width: everything fits without sideways scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => document.documentElement.scrollWidth <= window.innerWidth, null, { timeout: WAIT_MS });
  await page.screenshot({ path: `${ARTIFACTS}status-phone.png`, fullPage: true });

  subscriber.close();
  await page.close();
  assert.deepEqual(external, [], "the page loads nothing from elsewhere");
  assert.deepEqual(errors, []);
});
