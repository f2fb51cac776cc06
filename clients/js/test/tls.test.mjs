// herald.js over https:// and wss:// in a real headless Chromium, against a
// herald serving TLS with a test certificate made by openssl (Chromium is
// told to accept it with --ignore-certificate-errors): the page loads over
// HTTP/2 (ALPN), the WebSocket negotiates permessage-deflate (the server
// counts it in herald_ws_compressed_total), and a JSON message published
// on the plain listener arrives intact through the compressed socket.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { HERALD_BIN, CHROMIUM, WAIT_MS, publish, waitForSubscribers } from "./helpers.mjs";

let browser;
let server;
let dir;

/** A CA and a server certificate for 127.0.0.1, in `dir`. */
function makeCertificate(dir) {
  const openssl = (...args) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  const curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"];
  openssl("req", "-x509", ...curve, "-subj", "/CN=herald test CA", "-keyout", join(dir, "ca.key"), "-out", join(dir, "ca.pem"));
  openssl("req", "-x509", ...curve, "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE",
    "-addext", "extendedKeyUsage=serverAuth", "-CA", join(dir, "ca.pem"), "-CAkey", join(dir, "ca.key"),
    "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"));
}

/** herald with a plain and a TLS listener; resolves with both base URLs. */
function startTlsHerald(dir) {
  const child = spawn(HERALD_BIN, ["serve", "--listen", "127.0.0.1:0", "--listen", "tls://127.0.0.1:0",
    "--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")], { stdio: ["ignore", "pipe", "pipe"] });
  let logs = "";
  child.stderr.on("data", (chunk) => { logs += chunk; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); reject(new Error(`herald did not start in time:\n${logs}`)); }, WAIT_MS);
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const plain = out.match(/herald listening on (http:\/\/\S+)/);
      const tls = out.match(/herald listening on (https:\/\/\S+)/);
      if (plain && tls) {
        clearTimeout(timer);
        resolve({ child, plain: plain[1], tls: tls[1] });
      }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`herald exited with ${code}:\n${logs}`)); });
  });
}

async function compressedSockets(plain) {
  const text = await (await fetch(`${plain}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("herald_ws_compressed_total "));
  return Number(line?.split(" ")[1] ?? 0);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "herald-tls-"));
  makeCertificate(dir);
  server = await startTlsHerald(dir);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--ignore-certificate-errors"],
  });
});

after(async () => {
  await browser?.close();
  server?.child.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("herald.js over wss:// negotiates permessage-deflate in Chromium, on a page served over HTTP/2", async () => {
  const before = await compressedSockets(server.plain);
  const page = await browser.newPage();
  await page.goto(`${server.tls}/healthz`);
  const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  assert.equal(protocol, "h2", "the page came over HTTP/2");
  await page.evaluate(async () => {
    const { Herald } = await import("/herald.js");
    window.got = [];
    window.states = [];
    const h = new Herald(location.origin, { transports: ["websocket"], connectTimeout: 5000 });
    h.on("state", (s) => window.states.push(s));
    h.subscribe("prices", (m) => window.got.push(m));
    window.h = h;
  });
  await page.waitForFunction(() => window.states.some((s) => s.state === "open" && s.transport === "websocket"), null, { timeout: WAIT_MS });
  await waitForSubscribers(server.plain, "prices", 1);
  assert.equal(await compressedSockets(server.plain), before + 1, "Chromium's socket negotiated permessage-deflate");
  const data = JSON.stringify({ items: Array.from({ length: 50 }, (_, i) => ({ symbol: `SYM${i}`, bid: 100 + i, ask: 101 + i })) });
  await publish(server.plain, "prices", data);
  await page.waitForFunction(() => window.got.length >= 1, null, { timeout: WAIT_MS });
  const got = await page.evaluate(() => window.got.map((m) => m.data));
  assert.deepEqual(got, [data]);
  await page.close();
});
