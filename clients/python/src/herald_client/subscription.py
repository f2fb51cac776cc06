"""Following channels over herald's ``/ws`` JSON protocol, without loss.

A :class:`Subscription` keeps, for each channel, the id of the last message
it handed out. When the socket drops, it reconnects with bounded, jittered
backoff and sends each ``sub`` with that id as ``since``, so herald replays
exactly what was missed; when herald no longer has it, a :class:`Gap` item
says so. Before the first message, the position is the ``last_id`` herald
answered the ``sub`` with, so a drop before anything arrived loses nothing
either.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional, Union

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .errors import HeraldError
from .types import Gap, Message

log = logging.getLogger("herald_client")

Since = Union[None, str, Mapping[str, str]]
Item = Union[Message, Gap]


class _Retry(Exception):
    """A failure worth another attempt (network, 5xx, 429)."""


def _positions(channels: List[str], since: Since) -> Dict[str, Optional[str]]:
    positions: Dict[str, Optional[str]] = dict.fromkeys(channels)
    if since is None or since == "":
        return positions
    if isinstance(since, Mapping):
        pairs = list(since.items())
    elif "=" in since:
        pairs = [tuple(part.split("=", 1)) for part in since.split(",") if "=" in part]  # type: ignore[misc]
    elif since == "0" or len(channels) == 1:
        pairs = [(c, since) for c in channels]
    else:
        raise ValueError("a bare id resumes one channel; pass a cursor or a dict for several")
    for channel, position in pairs:
        if channel in positions:  # as herald does: a channel not subscribed is ignored
            positions[channel] = position
    return positions


def _is_after(new: str, last: Optional[str]) -> bool:
    """Whether ``new`` follows ``last`` on one channel. herald documents ids
    as ``EPOCH-SEQ``; ids of different epochs cannot be ordered, so they pass."""
    if last is None:
        return True
    epoch, _, seq = new.rpartition("-")
    last_epoch, _, last_seq = last.rpartition("-")
    if epoch != last_epoch or not (seq.isdigit() and last_seq.isdigit()):
        return True
    return int(seq) > int(last_seq)


def _ws_url(url: str) -> str:
    if url.startswith("http"):
        url = "ws" + url[len("http") :]
    return url + "/ws"


class Subscription:
    """An async iterator of :class:`Message` and :class:`Gap` items.

    Use ``async with`` to connect before doing anything that must be seen, or
    iterate straight away (it connects on the first item). A refused
    subscription (``forbidden``, ``bad_channel``, a bad token...) raises
    :class:`HeraldError` and ends it; network failures never do.
    """

    def __init__(
        self,
        url: str,
        credential: Optional[str],
        channels: List[str],
        since: Since,
        *,
        min_backoff: float,
        max_backoff: float,
        open_timeout: float,
    ) -> None:
        self._url = _ws_url(url)
        self._headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self._positions = _positions(channels, since)
        self._subscribed_at: Dict[str, Optional[str]] = {}  # last_id of each sub's ok
        self._pending: Dict[int, str] = {}  # ref -> channel of sub frames not yet answered
        self._ref = 0
        self._items: Deque[Item] = deque()
        self._ws: Optional[ClientConnection] = None
        self._failures = 0
        self._closed = False
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._open_timeout = open_timeout

    @property
    def channels(self) -> List[str]:
        return list(self._positions)

    @property
    def cursor(self) -> str:
        """Where every channel stands (``"news=ID,alerts=ID"``): keep it and
        pass it as ``since`` to resume after a restart."""
        return ",".join(f"{c}={p}" for c, p in self._positions.items() if p)

    async def __aenter__(self) -> "Subscription":
        await self._connected()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Item:
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                raise StopAsyncIteration
            ws = await self._connected()
            try:
                raw = await ws.recv()
            except ConnectionClosed as e:
                log.info("herald /ws connection lost (%s); resuming", e)
                await self._drop()
                continue
            try:
                await self._frame(ws, json.loads(raw))
            except HeraldError:
                await self._drop()
                raise

    async def aclose(self) -> None:
        """Closes the socket; iteration ends."""
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        self._pending.clear()
        self._failures = max(self._failures, 1)
        if ws is not None:
            await ws.close()

    def _backoff(self) -> float:
        ceiling = min(self._max_backoff, self._min_backoff * 2.0 ** min(self._failures - 1, 30))
        return ceiling / 2 + random.random() * ceiling / 2  # jitter: half to all of it

    async def _connected(self) -> ClientConnection:
        while self._ws is None:
            if self._closed:
                raise StopAsyncIteration
            if self._failures:
                await asyncio.sleep(self._backoff())  # backoff, not synchronisation
            try:
                self._ws = await self._open()
                self._failures = 0
            except _Retry as e:
                self._failures += 1
                log.info("herald /ws connect failed (%s); retrying", e)
            except HeraldError:
                self._closed = True
                raise
        return self._ws

    async def _open(self) -> ClientConnection:
        try:
            ws = await connect(
                self._url, additional_headers=self._headers, open_timeout=self._open_timeout, max_size=None
            )
        except InvalidStatus as e:
            status = e.response.status_code
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status}") from None
            raise HeraldError.from_body(status, bytes(e.response.body or b"")) from None
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as e:
            raise _Retry(repr(e)) from None
        try:
            await asyncio.wait_for(self._subscribe_all(ws), self._open_timeout)
        except BaseException as e:
            await ws.close()
            if isinstance(e, (ConnectionClosed, asyncio.TimeoutError)):
                raise _Retry(repr(e)) from None
            raise
        return ws

    async def _subscribe_all(self, ws: ClientConnection) -> None:
        """Sends every ``sub`` and handles frames until all are answered
        (replayed messages for one channel may arrive before another's ok)."""
        for channel in self._positions:
            await self._sub(ws, channel)
        while self._pending:
            await self._frame(ws, json.loads(await ws.recv()))

    async def _sub(self, ws: ClientConnection, channel: str) -> None:
        self._ref += 1
        self._pending[self._ref] = channel
        frame: Dict[str, Any] = {"op": "sub", "channel": channel, "ref": self._ref}
        if self._positions[channel]:
            frame["since"] = self._positions[channel]
        await ws.send(json.dumps(frame))

    async def _frame(self, ws: ClientConnection, frame: Dict[str, Any]) -> None:
        op = frame.get("op")
        if op == "msg":
            channel, id = frame["channel"], frame["id"]
            if channel not in self._positions or not _is_after(id, self._positions[channel]):
                return
            self._positions[channel] = id
            data = frame["data"]
            if frame.get("encoding") == "base64":
                data = base64.b64decode(data)
            self._items.append(Message(id=id, channel=channel, data=data, event=frame.get("event")))
        elif op == "gap":
            channel = frame["channel"]
            self._items.append(
                Gap(channel, frame.get("reason", ""), frame.get("since"), frame.get("missed"), frame.get("first_id"))
            )
            if not frame.get("first_id"):
                # Nothing to replay: resume from where the sub started, not the stale id again.
                self._positions[channel] = self._subscribed_at.get(channel) or self._positions[channel]
        elif op == "ok" and frame.get("ref") in self._pending:
            channel = self._pending.pop(frame["ref"])
            self._subscribed_at[channel] = frame.get("last_id")
            if self._positions[channel] is None:
                self._positions[channel] = frame.get("last_id")
        elif op == "error":
            error = frame.get("error") or {}
            code = str(error.get("code", "error"))
            channel = frame.get("channel") or error.get("channel")
            if code == "channel_deleted" and channel in self._positions:
                # Follow the channel's next life; the resume then reports the lost history as a gap.
                await self._sub(ws, channel)
                return
            self._pending.pop(frame.get("ref"), None)  # type: ignore[arg-type]
            self._closed = True
            raise HeraldError(code, str(error.get("message", "")))
