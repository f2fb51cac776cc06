"""Shared parts of the fault drivers run by scripts/faults: publishers that
retry with an Idempotency-Key until answered 200, SSE subscribers that
resume with Last-Event-ID, the check that every acknowledged message
reached every subscriber once, in order, or behind a reported gap, and the
FAULTS line each driver prints for the summary table. Standard library only.
"""

import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def get(url, timeout=2.0):
    """(status, parsed JSON or None); status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None
    except (OSError, ValueError, http.client.HTTPException):
        return 0, None


def wait_until(what, condition, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {limit} s waiting for {what}")


class Publisher(threading.Thread):
    """Publishes PREFIX-0, PREFIX-1... to CHANNEL at BASE every PACE seconds,
    each retried with its Idempotency-Key until answered 200."""

    def __init__(self, base, channel, prefix, pace=0.02, give_up=120.0):
        super().__init__(daemon=True)
        self.base, self.channel, self.prefix = base, channel, prefix
        self.pace, self.give_up = pace, give_up
        self.acks = []  # (data, id, monotonic time)
        self.refused = {}  # status -> count (0: no answer)
        self.stop = threading.Event()
        self.failed = None

    def publish(self, data):
        request = urllib.request.Request(
            f"{self.base}/pub/{self.channel}",
            data=data.encode(),
            method="POST",
            headers={"Idempotency-Key": data},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                body = json.loads(error.read() or b"null")
            except ValueError:
                body = None
            return error.code, body
        except (OSError, ValueError, http.client.HTTPException):
            return 0, None

    def run(self):
        i = 0
        while not self.stop.is_set():
            data = f"{self.prefix}-{i}"
            deadline = time.monotonic() + self.give_up
            while True:
                status, body = self.publish(data)
                if status == 200:
                    self.acks.append((data, body["id"], time.monotonic()))
                    break
                self.refused[status] = self.refused.get(status, 0) + 1
                if status not in (0, 503, 507):
                    self.failed = f"{data}: unexpected {status} {body}"
                    return
                if status == 503 and not (body or {}).get("error", {}).get("code"):
                    self.failed = f"{data}: 503 without an error code: {body}"
                    return
                if time.monotonic() > deadline:
                    self.failed = f"{data}: not accepted within {self.give_up} s"
                    return
                time.sleep(0.1)  # retry pacing
            i += 1
            time.sleep(self.pace)


class Subscriber(threading.Thread):
    """An SSE subscriber that reconnects with Last-Event-ID when its stream
    breaks or stays silent longer than IDLE seconds (herald is started with
    a short --sse-heartbeat, so silence means a dead link)."""

    def __init__(self, host, port, channel, idle=5.0, slow=0.0):
        super().__init__(daemon=True)
        self.host, self.port, self.channel = host, port, channel
        self.idle, self.slow = idle, slow
        self.seen = []  # ("msg", id, data) or ("gap", json)
        self.last = None
        self.reconnects = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.stream()
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if self.stop.is_set():
                return
            self.reconnects += 1
            time.sleep(0.2)

    def stream(self):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.idle)
        headers = {"Accept": "text/event-stream"}
        if self.last:
            headers["Last-Event-ID"] = self.last
        connection.request("GET", f"/sub/{self.channel}", headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            response.read()
            connection.close()
            return
        event = {}
        try:
            while not self.stop.is_set():
                line = response.readline()
                if not line:
                    return
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if "data" in event or "event" in event:
                        self.dispatch(event)
                    event = {}
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data" and "data" in event:
                        event["data"] += "\n" + value
                    else:
                        event[name] = value
                if self.slow:
                    time.sleep(self.slow)
        finally:
            connection.close()

    def dispatch(self, event):
        if event.get("event") == "herald.gap":
            self.seen.append(("gap", event.get("data", "")))
        elif event.get("event", "message") == "message" and "id" in event:
            self.last = event["id"]
            self.seen.append(("msg", event["id"], event.get("data", "")))

    def ids(self):
        return {s[1] for s in self.seen if s[0] == "msg"}


def split(message_id):
    epoch, _, seq = message_id.rpartition("-")
    return epoch, int(seq)


def check(seen, acks):
    """Problems in one subscriber's log: disorder, duplicates, a new epoch
    without a gap, and acknowledged messages missing without a gap report
    where they belong."""
    problems = []
    previous, gap_since, positions = None, False, {}
    for index, item in enumerate(seen):
        if item[0] == "gap":
            gap_since = True
            continue
        _, mid, data = item
        epoch, seq = split(mid)
        if previous:
            if previous[0] == epoch and seq <= previous[1]:
                problems.append(f"{mid} ({data}) after {previous}: out of order")
            if previous[0] != epoch and not gap_since:
                problems.append(f"new epoch at {mid} without a gap report")
        if mid in positions:
            problems.append(f"{mid} ({data}) delivered twice")
        positions[mid] = index
        previous, gap_since = (epoch, seq), False
    for data, mid, _ in acks:
        if mid in positions:
            if seen[positions[mid]][2] != data:
                problems.append(f"{mid} acknowledged for {data}, delivered as {seen[positions[mid]][2]}")
            continue
        epoch, seq = split(mid)
        before = -1
        for index, item in enumerate(seen):
            if item[0] == "msg":
                e, s = split(item[1])
                if e == epoch and s < seq:
                    before = index
        start = before + 1
        until = next((i for i in range(start, len(seen)) if seen[i][0] == "msg"), len(seen))
        if not any(item[0] == "gap" for item in seen[start:until]):
            problems.append(f"{mid} ({data}) acknowledged, never delivered, no gap reported")
    return problems


def report(summary):
    print("FAULTS " + json.dumps(summary, sort_keys=True), flush=True)


class Processes:
    """Processes this driver started, by PID, stopped on exit."""

    def __init__(self):
        self.children = []

    def start(self, args, log_path, **kwargs):
        out = open(log_path, "ab")
        child = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
        self.children.append(child)
        return child

    def stop_all(self):
        for child in self.children:
            if child.poll() is None:
                try:
                    child.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for child in self.children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def herald_bin():
    return os.environ.get("HERALD_BIN", "target/release/herald")
