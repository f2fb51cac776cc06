"""Overload: 15,000 connections opening at once (half SSE, half raw
WebSocket), then more than --max-connections; a publisher flooding one
channel far faster than slow subscribers read it while fast subscribers
must keep every acknowledged message; a slowloris of half-sent requests and
half-finished WebSocket handshakes. Checks that herald sheds load with
clear answers (503 + Retry-After), stays reachable for /healthz and
/metrics, keeps memory bounded (peak RSS reported) and loses nothing it
acknowledged. Standard library only; herald on loopback."""

import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import check, herald_bin, log, report, rss_kib  # noqa: E402

IDLE = int(os.environ.get("FAULTS_CONNECTIONS", "15000"))
# herald's default --max-connections is the open-file limit less a tenth:
# 18,000 under this sandbox's 20,000.
LIMIT = int(os.environ.get("FAULTS_MAX_CONNECTIONS", "18000"))
HEADER_TIMEOUT = 30
WORK = os.environ.get("FAULTS_WORK", "/tmp/herald-faults")


async def request(port, raw, read_until=b"\r\n\r\n", timeout=20):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    writer.write(raw)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(read_until), timeout)
    return reader, writer, head


def status_of(head):
    try:
        return int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


class Idle:
    """One connection held open: SSE or raw WebSocket on /sub/ov-idle."""

    def __init__(self, port, kind):
        self.port, self.kind = port, kind
        self.status, self.retry_after, self.got_probe = None, False, False
        self.reader = self.writer = None

    async def open(self):
        if self.kind == "sse":
            raw = b"GET /sub/ov-idle HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        else:
            key = base64.b64encode(os.urandom(16))
            raw = (b"GET /sub/ov-idle HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        try:
            self.reader, self.writer, head = await request(self.port, raw)
            self.status = status_of(head)
            self.retry_after = b"retry-after:" in head.lower()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            self.status = type(e).__name__

    async def wait_probe(self, timeout):
        if self.status not in (200, 101):
            return
        data = b""
        try:
            end = time.monotonic() + timeout
            while b"probe-message" not in data and time.monotonic() < end:
                chunk = await asyncio.wait_for(self.reader.read(4096), end - time.monotonic())
                if not chunk:
                    return
                data = data[-64:] + chunk
            self.got_probe = b"probe-message" in data
        except (OSError, asyncio.TimeoutError):
            pass

    def close(self):
        if self.writer:
            self.writer.close()


async def publish(port, channel, data, key=None):
    body = data.encode()
    extra = f"Idempotency-Key: {key}\r\n".encode() if key else b""
    raw = (f"POST /pub/{channel} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
           "Connection: close\r\n").encode() + extra + b"\r\n" + body
    try:
        reader, writer, head = await request(port, raw, timeout=10)
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return status_of(head), head + rest
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return 0, b""


async def get_status(port, path, timeout=5):
    try:
        reader, writer, head = await request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout=timeout)
        writer.close()
        return status_of(head)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return 0


class SseReader:
    """An SSE subscriber on ov-flood reading as fast as it can, or slowly."""

    def __init__(self, port, slow):
        self.port, self.slow = port, slow
        self.seen, self.closed, self.bytes, self.gaps = [], False, 0, 0
        self.tail = b""

    async def run(self, stop):
        raw = b"GET /sub/ov-flood HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        reader, writer, head = await request(self.port, raw)
        assert status_of(head) == 200, head
        buffer, event = b"", {}
        try:
            while not stop.is_set():
                try:
                    chunk = await asyncio.wait_for(reader.read(256 if self.slow else 65536), 1)
                except asyncio.TimeoutError:
                    continue
                if not chunk:
                    self.closed = True
                    return
                self.bytes += len(chunk)
                if self.slow:
                    self.gaps += (self.tail + chunk).count(b"herald.gap") - self.tail.count(b"herald.gap")
                    self.tail = chunk[-16:]
                    await asyncio.sleep(0.1)  # reads ~2.5 KB/s: the slow reader
                    continue
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    line = line.decode().rstrip("\r")
                    if line == "":
                        if event.get("event") == "herald.gap":
                            self.seen.append(("gap", event.get("data", "")))
                        elif "id" in event and "data" in event:
                            self.seen.append(("msg", event["id"], event["data"]))
                        event = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        event[name] = value[1:] if value.startswith(" ") else value
        except (OSError, asyncio.IncompleteReadError):
            self.closed = True
        finally:
            writer.close()


async def flood(port, pid, seconds=10):
    stop = asyncio.Event()
    fast = [SseReader(port, slow=False) for _ in range(5)]
    slow = [SseReader(port, slow=True) for _ in range(20)]
    tasks = [asyncio.ensure_future(r.run(stop)) for r in fast + slow]
    await asyncio.sleep(1)
    acks, refused, peak = [], {}, 0
    payload = "x" * 1000
    end = time.monotonic() + seconds

    async def publisher(n):
        i = 0
        while time.monotonic() < end:
            data = f"f{n}-{i}-{payload}"
            status, answer = await publish(port, "ov-flood", data, key=f"f{n}-{i}")
            if status == 200:
                body = answer.split(b"\r\n\r\n", 1)[1]
                acks.append((data, json.loads(body)["id"], time.monotonic()))
                i += 1
            else:
                refused[status] = refused.get(status, 0) + 1
                await asyncio.sleep(0.05)

    async def sample():
        nonlocal peak
        while time.monotonic() < end + 3:
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.2)

    await asyncio.gather(*(publisher(n) for n in range(8)), sample())
    wanted = {a[1] for a in acks}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(wanted <= {s[1] for s in r.seen if s[0] == "msg"} for r in fast):
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    problems = [p for r in fast for p in check(r.seen, acks)]
    published_bytes = len(acks) * 1000
    return {
        "acknowledged": len(acks), "refused": refused,
        "publish_rate_per_s": round(len(acks) / seconds),
        "lost": sum(1 for p in problems if "no gap" in p),
        "duplicates": sum(1 for p in problems if "twice" in p),
        "fast_subscribers_gaps": sum(1 for r in fast for s in r.seen if s[0] == "gap"),
        "slow_subscribers_disconnected": sum(1 for r in slow if r.closed),
        "slow_subscribers_gap_reports": sum(r.gaps for r in slow),
        "slow_read_share": round(max(r.bytes for r in slow) / max(1, published_bytes), 3),
        "peak_rss_mib": round(peak / 1024, 1),
        "problems": problems[:5],
    }


async def slowloris(port, count=2000, handshakes=500, timeout=HEADER_TIMEOUT):
    writers, started, errors = [], time.monotonic(), {}

    async def half(raw):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(raw)
            await writer.drain()
            writers.append((reader, writer))
        except (OSError, asyncio.TimeoutError) as error:
            errors[type(error).__name__ + ": " + str(error)[:60]] = errors.get(type(error).__name__ + ": " + str(error)[:60], 0) + 1

    half_request = b"GET /sub/ov-idle HTTP/1.1\r\nHost: x\r\n"
    half_handshake = (b"GET /sub/ov-idle HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
    await asyncio.gather(*(half(half_request) for _ in range(count)),
                         *(half(half_handshake) for _ in range(handshakes)))
    # While they hang: is the server still serving others?
    health = [await get_status(port, "/healthz") for _ in range(5)]
    status, _ = await publish(port, "ov-check", "during slowloris")

    async def closed_by_server(reader):
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(4096), timeout + 10)
                if not chunk:
                    return time.monotonic() - started
        except asyncio.TimeoutError:
            return None
        except OSError:
            return time.monotonic() - started

    closes = await asyncio.gather(*(closed_by_server(r) for r, _ in writers))
    for _, w in writers:
        w.close()
    closed = [c for c in closes if c is not None]
    return {"opened": len(writers), "open_errors": errors, "closed_by_server": len(closed),
            "closed_after_s_max": round(max(closed), 1) if closed else None,
            "healthz_during": health, "publish_during": status}


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.makedirs(WORK, exist_ok=True)
    out = open(f"{WORK}/herald-overload.log", "ab")
    # The header timeout is long enough for this driver, one Python thread
    # opening 15,000 sockets, to send every request line; the slowloris
    # connections are closed when it passes.
    args = [herald_bin(), "serve", "--listen", "127.0.0.1:0", "--header-read-timeout", f"{HEADER_TIMEOUT}s",
            "--log-level", "warn"]
    if "FAULTS_MAX_CONNECTIONS" in os.environ:
        args += ["--max-connections", str(LIMIT)]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=out)
    try:
        line = child.stdout.readline().decode()
        port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        log(f"herald pid {child.pid} on port {port}; open-file limit here {hard}")

        started = time.monotonic()
        idle = [Idle(port, "sse" if i % 2 else "ws") for i in range(IDLE)]
        await asyncio.gather(*(c.open() for c in idle))
        opened_in = time.monotonic() - started
        statuses = {}
        for c in idle:
            statuses[str(c.status)] = statuses.get(str(c.status), 0) + 1
        rss_idle = rss_kib(child.pid)
        log(f"{IDLE} at once in {opened_in:.1f} s: {statuses}, RSS {rss_idle // 1024} MiB")

        # Beyond the limit: herald's default is the open-file limit less a tenth.
        over = [Idle(port, "sse") for _ in range(max(0, LIMIT + 1000 - IDLE))]
        await asyncio.gather(*(c.open() for c in over))
        over_statuses = {}
        for c in over:
            over_statuses[str(c.status)] = over_statuses.get(str(c.status), 0) + 1
        with_retry_after = sum(1 for c in over if c.status == 503 and c.retry_after)
        health = await get_status(port, "/healthz")
        metrics = await get_status(port, "/metrics")
        log(f"{len(over)} more: {over_statuses}; /healthz {health}, /metrics {metrics}")
        for c in over:
            c.close()
        report({"fault": f"{IDLE} connections at once, then {len(over)} more",
                "opened_s": round(opened_in, 1), "statuses": statuses, "beyond_limit": over_statuses,
                "503_with_retry_after": with_retry_after, "healthz_at_limit": health,
                "metrics_at_limit": metrics, "rss_mib_with_idle": round(rss_idle / 1024, 1),
                "lost": 0, "duplicates": 0})

        flood_result = await flood(port, child.pid)
        log(f"flood: {flood_result}")
        report({"fault": "publisher flooding one channel, 20 slow + 5 fast subscribers", **flood_result})

        loris = await slowloris(port)
        log(f"slowloris: {loris}")

        probe_status, _ = await publish(port, "ov-idle", "probe-message")
        await asyncio.gather(*(c.wait_probe(15) for c in idle))
        kept = sum(1 for c in idle if c.got_probe)
        healthy = sum(1 for c in idle if c.status in (200, 101))
        by_kind = {kind: f"{sum(1 for c in idle if c.kind == kind and c.got_probe)}/"
                         f"{sum(1 for c in idle if c.kind == kind and c.status in (200, 101))}"
                   for kind in ("sse", "ws")}
        report({"fault": "slowloris: 2000 half-sent requests + 500 half WebSocket handshakes", **loris,
                "idle_streams_still_delivering": by_kind, "probe_publish": probe_status,
                "lost": 0, "duplicates": 0, "rss_mib_end": round(rss_kib(child.pid) / 1024, 1)})
        for c in idle:
            c.close()
        # Raw WebSocket clients here never answer pings: herald closes them
        # after --ws-ping-interval + --ws-pong-timeout (45 s) by design, so
        # only the event streams must all still deliver.
        sse_kept = all(c.got_probe for c in idle if c.kind == "sse" and c.status == 200)
        ok = (flood_result["lost"] == 0 and flood_result["duplicates"] == 0 and health == 200
              and sse_kept and loris["opened"] > 0 and loris["closed_by_server"] == loris["opened"])
        return 0 if ok else 1
    finally:
        child.kill()
        child.wait(10)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
