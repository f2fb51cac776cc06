"""Real herald processes for the tests: each listens on a loopback port the
kernel picks, is waited for on /healthz (bounded), and is stopped by its PID
at the end."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator

import httpx
import pytest

HERALD_BIN = os.environ.get("HERALD_BIN", os.path.join(os.path.dirname(__file__), "../../../target/debug/herald"))
PUBLISH_KEY = "PUBLISH_KEY"  # the placeholders docs/sdk.md uses, so its snippets run as written
JWT_SECRET = "JWT_SECRET"


@dataclass
class Server:
    url: str
    process: subprocess.Popen  # type: ignore[type-arg]
    log: str


def start_herald(*args: str, timeout: float = 20.0) -> Server:
    """Starts ``herald serve --listen 127.0.0.1:0 ARGS``: the kernel picks the
    port and herald prints it ("herald listening on URL"), so no two servers
    race for one; then waits for /healthz. Every wait is bounded."""
    # Only the flags given here: no HERALD_* setting from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    log = tempfile.NamedTemporaryFile(prefix="herald-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [HERALD_BIN, "serve", "--listen", "127.0.0.1:0", *args], env=env, stdout=subprocess.PIPE, stderr=log
    )
    server = Server("", process, log.name)
    deadline = time.monotonic() + timeout
    try:
        server.url = _announced_url(process, deadline)
        while not _healthy(server.url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"herald did not answer /healthz within {timeout}s")
            try:
                process.wait(timeout=0.05)  # the pause between attempts; also notices an early exit
                raise RuntimeError(f"herald exited with {process.returncode}")
            except subprocess.TimeoutExpired:
                pass
    except RuntimeError as e:
        stop_herald(server)
        raise RuntimeError(f"{e}: {read_log(server)}") from None
    return server


def _announced_url(process: subprocess.Popen, deadline: float) -> str:  # type: ignore[type-arg]
    assert process.stdout is not None
    out = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in out:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("herald did not say where it listens in time")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"herald exited early: {out!r}")
            out += chunk
    match = re.search(rb"herald listening on (http://\S+)", out)
    if not match:
        raise RuntimeError(f"unexpected first line from herald: {out!r}")
    return match.group(1).decode()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def read_log(server: Server) -> str:
    with open(server.log, errors="replace") as f:
        return f.read()[-4000:]


def stop_herald(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)
    if server.process.stdout is not None:
        server.process.stdout.close()
    os.unlink(server.log)


@pytest.fixture(scope="session")
def herald() -> Iterator[Server]:
    """An open herald: no auth, default history."""
    server = start_herald()
    yield server
    stop_herald(server)


@pytest.fixture(scope="session")
def small_herald() -> Iterator[Server]:
    """A herald that keeps 3 messages per channel, to make gaps."""
    server = start_herald("--history-size", "3")
    yield server
    stop_herald(server)


@pytest.fixture(scope="session")
def secured_herald() -> Iterator[Server]:
    """A herald with a publish key and a JWT secret."""
    server = start_herald("--publish-key", PUBLISH_KEY, "--jwt-secret", JWT_SECRET)
    yield server
    stop_herald(server)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # websockets runs on asyncio only


@pytest.fixture
def channel(request: pytest.FixtureRequest) -> str:
    """A channel name of this test's own, so tests sharing a server never meet."""
    return "t." + request.node.name.replace("[", ".").replace("]", "").replace("/", ".")[:100]
