// Shared pieces of the browser tests: a real herald on a free port and a
// real headless Chromium.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const HERALD_BIN = process.env.HERALD_BIN ?? fileURLToPath(new URL("../../../target/debug/herald", import.meta.url));
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const ARTIFACTS = fileURLToPath(new URL("../../../test-artifacts/", import.meta.url));
export const WAIT_MS = 15_000;

/** Starts `herald serve --listen 127.0.0.1:0 ...args`; resolves with { child, url }. */
export function startHerald(args = []) {
  const child = spawn(HERALD_BIN, ["serve", "--listen", "127.0.0.1:0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
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

/** Launches Debian's Chromium headless, as the project's CI can. */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Publishes from Node (not the page). */
export async function publish(base, channel, data) {
  const response = await fetch(`${base}/pub/${channel}`, { method: "POST", body: data });
  if (!response.ok) throw new Error(`publish failed: ${response.status}`);
  return response.json();
}

/** Waits until `channel` has at least `count` subscribers. */
export async function waitForSubscribers(base, channel, count = 1) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const response = await fetch(`${base}/pub/${channel}`);
    if (response.ok && (await response.json()).subscribers >= count) return;
    if (Date.now() > deadline) throw new Error(`no ${count} subscribers on ${channel}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function artifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
