"""Real herald processes for the tests: each binds a free loopback port, is
waited for on /healthz (bounded), and is stopped by its PID at the end."""

from __future__ import annotations

import os
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_herald(*args: str, timeout: float = 20.0) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Only the flags given here: no HERALD_* setting from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    log = tempfile.NamedTemporaryFile(prefix="herald-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [HERALD_BIN, "serve", "--listen", f"127.0.0.1:{port}", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(url, process, log.name)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_herald(server)
            raise RuntimeError(f"herald did not answer /healthz within {timeout}s: {read_log(server)}")
        try:
            process.wait(timeout=0.05)  # the pause between attempts; also notices an early exit
            raise RuntimeError(f"herald exited with {process.returncode}: {read_log(server)}")
        except subprocess.TimeoutExpired:
            pass


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
