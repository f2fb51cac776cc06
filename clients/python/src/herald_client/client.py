"""herald's publish API (``/pub``) for backends, as a blocking client
(:class:`Herald`) and its asyncio twin (:class:`AsyncHerald`), which also
subscribes over ``/ws``.

Both build the same requests (the ``_request`` helpers below) and differ only
in how they send them, so the two can never drift apart.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union, cast
from urllib.parse import quote

import httpx

from .errors import HeraldError
from .subscription import Since, Subscription
from .types import ChannelInfo, Deleted, Presence, Published

Data = Union[str, bytes, bytearray, memoryview, Any]
"""Message data: text and bytes are sent as they are, anything else as JSON."""

_Request = Dict[str, Any]


def _path(channel: str, suffix: str = "") -> str:
    # Quote everything, so a bad name reaches herald (and gets its bad_channel
    # answer) instead of turning into another path.
    return "/pub/" + quote(channel, safe="") + suffix


def _body(data: Data) -> tuple[bytes, str]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), "application/octet-stream"
    if isinstance(data, str):
        return data.encode("utf-8"), "text/plain; charset=utf-8"
    # Compact, like herald's own JSON text for a batch item's non-string data.
    return json.dumps(data, separators=(",", ":")).encode("utf-8"), "application/json"


def _publish_request(
    channel: str, data: Data, event: Optional[str], idempotency_key: Optional[str]
) -> _Request:
    content, content_type = _body(data)
    headers = {"Content-Type": content_type}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    params = {"event": event} if event else None
    return dict(method="POST", url=_path(channel), content=content, headers=headers, params=params)


def _batch_item(item: Mapping[str, Any]) -> Dict[str, Any]:
    out = {"channel": item["channel"], "data": item["data"]}
    data = item["data"]
    if isinstance(data, (bytes, bytearray, memoryview)):
        # JSON cannot carry bytes: herald takes them base64-encoded.
        out["data"] = base64.b64encode(bytes(data)).decode("ascii")
        out["encoding"] = "base64"
    if item.get("event"):
        out["event"] = item["event"]
    return out


def _batch_request(items: Iterable[Mapping[str, Any]], idempotency_key: Optional[str]) -> _Request:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
    return dict(method="POST", url="/pub", json=[_batch_item(i) for i in items], headers=headers)


def _answer(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    raise HeraldError.from_body(response.status_code, response.content)


def _channels(channels: Union[str, Sequence[str]]) -> List[str]:
    names = channels.split(",") if isinstance(channels, str) else list(channels)
    if not names or any(not n for n in names):
        raise ValueError("subscribe needs one or more non-empty channel names")
    return names


class _Client:
    def __init__(self, url: str, key: Optional[str], token: Optional[str]) -> None:
        self.url = url.rstrip("/")
        # The publish key may do anything; a JWT only what its claims grant.
        self._credential = key or token
        self._headers = {"Authorization": f"Bearer {self._credential}"} if self._credential else {}


class Herald(_Client):
    """A blocking client for herald's publish API.

    ``key`` is the ``--publish-key``; ``token`` a JWT whose ``herald.publish``
    claims cover the channels (see :func:`make_token`). Use it as a context
    manager, or call :meth:`close`, to release its connections.
    """

    def __init__(
        self, url: str, key: Optional[str] = None, token: Optional[str] = None, *, timeout: float = 10.0
    ) -> None:
        super().__init__(url, key, token)
        self._http = httpx.Client(base_url=self.url, headers=self._headers, timeout=timeout)

    def _send(self, request: _Request) -> Any:
        return _answer(self._http.request(**request))

    def publish(
        self, channel: str, data: Data, event: Optional[str] = None, idempotency_key: Optional[str] = None
    ) -> Published:
        """Publishes ``data``; returns once it is in the channel's history."""
        return cast(Published, self._send(_publish_request(channel, data, event, idempotency_key)))

    def publish_batch(
        self, items: Iterable[Mapping[str, Any]], idempotency_key: Optional[str] = None
    ) -> List[Published]:
        """Publishes ``[{"channel", "data", "event"?}, ...]`` all or nothing (checked whole first)."""
        return cast(List[Published], self._send(_batch_request(items, idempotency_key)))

    def info(self, channel: str) -> ChannelInfo:
        """Subscribers, message count, first and last id; ``404 not_found`` if never used."""
        return cast(ChannelInfo, self._send(dict(method="GET", url=_path(channel))))

    def delete(self, channel: str) -> Deleted:
        """Drops the channel and its history; its subscribers are told."""
        return cast(Deleted, self._send(dict(method="DELETE", url=_path(channel))))

    def presence(self, channel: str) -> Presence:
        """Who is subscribed, for a channel with presence on (``404`` otherwise)."""
        return cast(Presence, self._send(dict(method="GET", url=_path(channel, "/presence"))))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Herald":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncHerald(_Client):
    """The asyncio twin of :class:`Herald`, which can also :meth:`subscribe`."""

    def __init__(
        self, url: str, key: Optional[str] = None, token: Optional[str] = None, *, timeout: float = 10.0
    ) -> None:
        super().__init__(url, key, token)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=timeout)

    async def _send(self, request: _Request) -> Any:
        return _answer(await self._http.request(**request))

    async def publish(
        self, channel: str, data: Data, event: Optional[str] = None, idempotency_key: Optional[str] = None
    ) -> Published:
        """Publishes ``data``; returns once it is in the channel's history."""
        return cast(Published, await self._send(_publish_request(channel, data, event, idempotency_key)))

    async def publish_batch(
        self, items: Iterable[Mapping[str, Any]], idempotency_key: Optional[str] = None
    ) -> List[Published]:
        """Publishes ``[{"channel", "data", "event"?}, ...]`` all or nothing (checked whole first)."""
        return cast(List[Published], await self._send(_batch_request(items, idempotency_key)))

    async def info(self, channel: str) -> ChannelInfo:
        """Subscribers, message count, first and last id; ``404 not_found`` if never used."""
        return cast(ChannelInfo, await self._send(dict(method="GET", url=_path(channel))))

    async def delete(self, channel: str) -> Deleted:
        """Drops the channel and its history; its subscribers are told."""
        return cast(Deleted, await self._send(dict(method="DELETE", url=_path(channel))))

    async def presence(self, channel: str) -> Presence:
        """Who is subscribed, for a channel with presence on (``404`` otherwise)."""
        return cast(Presence, await self._send(dict(method="GET", url=_path(channel, "/presence"))))

    def subscribe(
        self,
        channels: Union[str, Sequence[str]],
        since: Since = None,
        *,
        min_backoff: float = 0.25,
        max_backoff: float = 10.0,
        open_timeout: float = 10.0,
    ) -> Subscription:
        """Follows ``channels`` over one ``/ws`` socket: an async iterator of
        :class:`Message` and :class:`Gap` items that reconnects (backoff between
        ``min_backoff`` and ``max_backoff`` seconds) and resumes where it was.

        ``since`` resumes from an id (one channel), a cursor
        (``"news=ID,alerts=ID"``, as :attr:`Subscription.cursor` gives), a
        ``{channel: id}`` dict, or ``"0"`` for everything still in history.
        ``async with`` connects at once, so nothing published after it is missed.
        """
        return Subscription(
            self.url,
            self._credential,
            _channels(channels),
            since,
            min_backoff=min_backoff,
            max_backoff=max_backoff,
            open_timeout=open_timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncHerald":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
