// Shared pieces of the browser tests: a real herald on a free port, a real
// headless Chromium, and a page with herald.js loaded from that herald.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const HERALD_BIN = process.env.HERALD_BIN ?? fileURLToPath(new URL("../../../target/debug/herald", import.meta.url));
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const ARTIFACTS = fileURLToPath(new URL("../../../test-artifacts/", import.meta.url));
/** The bound on every wait: a failing test fails in this time and says what it waited for. */
export const WAIT_MS = 15_000;

/** Starts `herald serve --listen 127.0.0.1:0 ...args`; resolves with { child, url } once it listens. */
export function startHerald(args = []) {
  const child = spawn(HERALD_BIN, ["serve", "--listen", "127.0.0.1:0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let logs = "";
  child.stderr.on("data", (chunk) => { logs += chunk; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); reject(new Error(`herald did not start in time:\n${logs}`)); }, WAIT_MS);
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = out.match(/herald listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1], logs: () => logs });
      }
    });
    child.on("error", (error) => { clearTimeout(timer); reject(error); });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`herald exited with ${code}:\n${logs}`));
    });
  });
}

/** Launches Debian's Chromium headless, with a fresh profile. */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Publishes from Node (not the page); resolves to herald's answer. */
export async function publish(base, channel, data, token = null) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(`${base}/pub/${channel}`, { method: "POST", body: data, headers });
  if (!response.ok) throw new Error(`publish to ${channel} failed: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Waits until `channel` has at least `count` subscribers (herald's channel info). */
export async function waitForSubscribers(base, channel, count = 1, token = null) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const response = await fetch(`${base}/pub/${channel}`, { headers });
    if (response.ok && (await response.json()).subscribers >= count) return;
    if (Date.now() > deadline) throw new Error(`waited ${WAIT_MS} ms for ${count} subscriber(s) on ${channel}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An HS256 JWT for herald's `--jwt-secret`. */
export function jwt(secret, claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/** The artifacts directory (test-artifacts/ at the repository root), created if needed. */
export function artifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
