"""The Python blocks of docs/sdk.md, run as written against a real herald
(only its address swapped in), so the docs cannot drift from the SDK."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import queue
import re
import subprocess
import sys
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest
from conftest import JWT_SECRET, PUBLISH_KEY, Server, start_herald, stop_herald

from herald_client import AsyncHerald, Herald, HeraldError

DOC = Path(__file__).resolve().parents[3] / "docs" / "sdk.md"
WAIT = 15.0


def snippets(lang: str) -> Dict[str, str]:
    """Fenced blocks tagged ```LANG NAME, by name."""
    blocks = re.findall(rf"^```{lang} (\w+)\n(.*?)^```$", DOC.read_text(), re.M | re.S)
    return dict(blocks)


@pytest.fixture(scope="module")
def docs_herald() -> Iterator[Server]:
    server = start_herald("--publish-key", PUBLISH_KEY, "--jwt-secret", JWT_SECRET)
    yield server
    stop_herald(server)


def code(name: str, server: Server) -> str:
    return snippets("python")[name].replace("http://127.0.0.1:8080", server.url)


class Script:
    """A snippet running as its own process, its stdout read line by line with timeouts."""

    def __init__(self, source: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", source], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self) -> str:
        try:
            return self.lines.get(timeout=WAIT)
        except queue.Empty:
            self.stop()
            assert self.process.stderr is not None
            pytest.fail(f"no output within {WAIT}s; stderr: {self.process.stderr.read()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=WAIT)


def run(source: str, cwd: Path) -> Tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-c", source], cwd=cwd, capture_output=True, text=True, timeout=WAIT)
    return done.returncode, done.stdout, done.stderr


def test_every_python_block_is_tested() -> None:
    assert set(snippets("python")) == {"publish", "subscribe", "token", "webhook"}


def test_publish_block(docs_herald: Server, tmp_path: Path) -> None:
    status, out, err = run(code("publish", docs_herald), tmp_path)
    assert status == 0, err
    first, last_id = out.splitlines()
    with Herald(docs_herald.url, key=PUBLISH_KEY) as h:
        news = h.info("news")
        assert news["last_id"] == last_id and first.split()[0] == news["first_id"]
        assert h.info("alerts")["messages"] >= 1


def wait_for_file(path: Path, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while not (path.exists() and text in path.read_text()):
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not come to hold {text!r} within {WAIT}s")
        time.sleep(0.02)  # the pause between looks at the file


def test_subscribe_block_resumes_across_restarts(docs_herald: Server, tmp_path: Path) -> None:
    source = code("subscribe", docs_herald)
    cursor = tmp_path / "news.cursor"
    with Herald(docs_herald.url, key=PUBLISH_KEY) as h:
        seen = h.publish("news", "seen before")
        missed = h.publish("news", "missed while down")
        cursor.write_text(f"news={seen['id']}")
        script = Script(source, tmp_path)
        try:
            assert script.line() == f"news {missed['id']} None missed while down"
            live = h.publish("news", "live", event="update")
            assert script.line() == f"news {live['id']} update live"
            wait_for_file(cursor, f"news={live['id']}")
        finally:
            script.stop()
        data = b"\xff during the restart"  # not UTF-8, so it stays bytes
        during = h.publish("news", data)
        script = Script(source, tmp_path)
        try:
            assert script.line() == f"news {during['id']} None {data!r}"
        finally:
            script.stop()


def test_token_block_is_accepted_by_herald(docs_herald: Server, tmp_path: Path) -> None:
    status, out, err = run(code("token", docs_herald), tmp_path)
    assert status == 0, err
    token = out.strip()
    with Herald(docs_herald.url, token=token) as h:
        assert h.publish("chat.lobby", "hi")["channel"] == "chat.lobby"

    async def subscribe() -> None:
        async with AsyncHerald(docs_herald.url, token=token) as h:
            async with h.subscribe(["news", "user.42.inbox"]) as sub:
                assert sub.channels == ["news", "user.42.inbox"]
            with pytest.raises(HeraldError) as e:
                async with h.subscribe("user.43.inbox"):
                    pass
            assert e.value.code == "forbidden"

    asyncio.run(asyncio.wait_for(subscribe(), WAIT))


def test_webhook_block() -> None:
    namespace: Dict[str, object] = {}
    exec(snippets("python")["webhook"], namespace)
    handle = namespace["handle_herald_webhook"]
    body = json.dumps({"events": [{"type": "channel.occupied", "channel": "news", "time_ms": 1}]}).encode()
    signature = "sha256=" + hmac.new(b"WEBHOOK_SECRET", body, hashlib.sha256).hexdigest()
    out = io.StringIO()
    with redirect_stdout(out):
        assert handle(body, {"X-Herald-Signature": signature}) == 204  # type: ignore[operator]
        assert handle(body, {"X-Herald-Signature": signature.replace("a", "b")}) == 401  # type: ignore[operator]
        assert handle(body, {}) == 401  # type: ignore[operator]
    assert out.getvalue() == "channel.occupied news\n"
