"""AsyncHerald against a real herald: the async twin of the publish API,
and subscribe over /ws with live delivery, resume, reconnects and gaps."""

from __future__ import annotations

import asyncio
from typing import List, Union

import pytest
from conftest import JWT_SECRET, PUBLISH_KEY, Server, start_herald, stop_herald
from proxy import Proxy

from herald_client import AsyncHerald, Gap, HeraldError, Message, Subscription, make_token

pytestmark = pytest.mark.anyio

Item = Union[Message, Gap]


async def take(sub: Subscription, n: int, timeout: float = 10.0) -> List[Item]:
    """The next ``n`` items, or a failure naming what did not come in time."""
    items: List[Item] = []

    async def collect() -> None:
        while len(items) < n:
            items.append(await sub.__anext__())

    try:
        await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        pytest.fail(f"waited {timeout}s for {n} items, got {items}")
    return items


async def test_async_twin(herald: Server, channel: str) -> None:
    async with AsyncHerald(herald.url) as h:
        first = await h.publish(channel, "one", idempotency_key="k")
        assert (await h.publish(channel, "one", idempotency_key="k"))["id"] == first["id"]
        batch = await h.publish_batch([{"channel": channel, "data": "two"}, {"channel": channel, "data": b"\x00"}])
        info = await h.info(channel)
        assert info["messages"] == 3 and info["last_id"] == batch[-1]["id"]
        with pytest.raises(HeraldError) as e:
            await h.presence(channel)
        assert (e.value.status, e.value.code) == (404, "presence_off")
        assert (await h.delete(channel))["deleted"] is True
        with pytest.raises(HeraldError) as e:
            await h.publish("bad/channel", "x")
        assert (e.value.status, e.value.code) == (400, "bad_channel")


async def test_live_messages_of_every_kind(herald: Server, channel: str) -> None:
    async with AsyncHerald(herald.url) as h, h.subscribe(channel) as sub:
        sent = [
            await h.publish(channel, "text"),
            await h.publish(channel, b"\xff\x00\x01"),
            await h.publish(channel, {"price": 42, "tags": ["a"]}, event="update"),
            await h.publish(channel, b"utf-8 bytes"),
        ]
        assert sent[0]["subscribers"] == 1
        got = await take(sub, 4)
    assert got == [
        Message(sent[0]["id"], channel, "text"),
        Message(sent[1]["id"], channel, b"\xff\x00\x01"),
        Message(sent[2]["id"], channel, '{"price":42,"tags":["a"]}', "update"),
        # Published as bytes, they stay bytes though they are valid UTF-8.
        Message(sent[3]["id"], channel, b"utf-8 bytes"),
    ]


async def test_several_channels_and_the_cursor(herald: Server, channel: str) -> None:
    a, b = channel + ".a", channel + ".b"
    async with AsyncHerald(herald.url) as h, h.subscribe([a, b]) as sub:
        pa = await h.publish(a, "to a")
        pb = await h.publish(b, "to b")
        got = await take(sub, 2)
        assert {(m.channel, m.data) for m in got if isinstance(m, Message)} == {(a, "to a"), (b, "to b")}
        assert sub.cursor == f"{a}={pa['id']},{b}={pb['id']}"
        cursor = sub.cursor
    async with AsyncHerald(herald.url) as h:
        later = await h.publish(b, "while away")
        async with h.subscribe(f"{a},{b}", since=cursor) as resumed:
            assert await take(resumed, 1) == [Message(later["id"], b, "while away")]


async def test_resume_with_since(herald: Server, channel: str) -> None:
    async with AsyncHerald(herald.url) as h:
        ids = [(await h.publish(channel, str(i)))["id"] for i in range(4)]
        async with h.subscribe(channel, since=ids[1]) as sub:
            replayed = await take(sub, 2)
            live = await h.publish(channel, "live")
            assert replayed + await take(sub, 1) == [
                Message(ids[2], channel, "2"),
                Message(ids[3], channel, "3"),
                Message(live["id"], channel, "live"),
            ]
        async with h.subscribe(channel, since="0") as everything:
            assert [m.data for m in await take(everything, 5)] == ["0", "1", "2", "3", "live"]  # type: ignore[union-attr]


async def test_reconnects_after_a_dropped_connection_and_loses_nothing(herald: Server, channel: str) -> None:
    async with Proxy(int(herald.url.rsplit(":", 1)[1])) as proxy, AsyncHerald(herald.url) as h:
        client = AsyncHerald(proxy.url)
        async with client.subscribe(channel, min_backoff=0.02, max_backoff=0.2) as sub:
            before = [await h.publish(channel, f"before {i}") for i in range(3)]
            got = await take(sub, 3)
            # The network drops the socket, and refuses reconnects while we publish.
            proxy.accepting = False
            proxy.cut()
            during = [await h.publish(channel, f"during {i}") for i in range(3)]
            proxy.accepting = True
            got += await take(sub, 3)
            assert proxy.connections == 2
            after = await h.publish(channel, "after")
            got += await take(sub, 1)
        await client.aclose()
    assert [m.id for m in got] == [p["id"] for p in before + during + [after]]  # type: ignore[union-attr]


async def test_a_drop_before_the_first_message_loses_nothing(herald: Server, channel: str) -> None:
    async with Proxy(int(herald.url.rsplit(":", 1)[1])) as proxy, AsyncHerald(herald.url) as h:
        async with AsyncHerald(proxy.url) as client, client.subscribe(channel, min_backoff=0.02) as sub:
            proxy.accepting = False
            proxy.cut()
            missed = await h.publish(channel, "published while the socket was down")
            proxy.accepting = True
            assert await take(sub, 1) == [Message(missed["id"], channel, "published while the socket was down")]


async def test_a_gap_is_its_own_item(small_herald: Server, channel: str) -> None:
    async with AsyncHerald(small_herald.url) as h:
        ids = [(await h.publish(channel, str(i)))["id"] for i in range(6)]
        async with h.subscribe(channel, since=ids[0]) as sub:
            got = await take(sub, 4)
    assert got == [
        Gap(channel, "trimmed", since=ids[0], missed=2, first_id=ids[3]),
        Message(ids[3], channel, "3"),
        Message(ids[4], channel, "4"),
        Message(ids[5], channel, "5"),
    ]


async def test_a_deleted_channel_is_followed_into_its_next_life(herald: Server, channel: str) -> None:
    async with AsyncHerald(herald.url) as h, h.subscribe(channel) as sub:
        await h.publish(channel, "old life")
        await take(sub, 1)
        await h.delete(channel)
        new = await h.publish(channel, "new life")
        gap, message = await take(sub, 2)
    assert isinstance(gap, Gap) and gap.reason == "epoch"
    assert message == Message(new["id"], channel, "new life")


async def test_make_token_is_accepted_by_herald(secured_herald: Server, channel: str) -> None:
    allowed, other = channel + ".allowed", "elsewhere"
    token = make_token(JWT_SECRET, "user-7", subscribe=[channel + ".*"], publish=[])
    async with AsyncHerald(secured_herald.url, key=PUBLISH_KEY) as publisher:
        async with AsyncHerald(secured_herald.url, token=token) as h:
            async with h.subscribe(allowed) as sub:
                sent = await publisher.publish(allowed, "for user-7")
                assert await take(sub, 1) == [Message(sent["id"], allowed, "for user-7")]
            with pytest.raises(HeraldError) as e:
                async with h.subscribe(other):
                    pass
            assert e.value.code == "forbidden"
            with pytest.raises(HeraldError) as e:
                await h.publish(allowed, "no publish rights")
            assert (e.value.status, e.value.code) == (403, "forbidden")


async def test_refused_connections_raise_with_codes(secured_herald: Server, channel: str) -> None:
    async with AsyncHerald(secured_herald.url) as anonymous:
        with pytest.raises(HeraldError) as e:
            await take(anonymous.subscribe(channel), 1)
        assert (e.value.status, e.value.code) == (401, "unauthorized")
    expired = make_token(JWT_SECRET, "user-7", subscribe=["*"], ttl=-3600)
    async with AsyncHerald(secured_herald.url, token=expired) as late:
        with pytest.raises(HeraldError) as e:
            await take(late.subscribe(channel), 1)
        assert (e.value.status, e.value.code) == (401, "token_expired")
    forged = make_token("not-the-secret", "user-7", subscribe=["*"])
    async with AsyncHerald(secured_herald.url, token=forged) as forger:
        with pytest.raises(HeraldError) as e:
            await take(forger.subscribe(channel), 1)
        assert (e.value.status, e.value.code) == (401, "invalid_token")


async def test_a_bad_channel_is_refused(herald: Server) -> None:
    async with AsyncHerald(herald.url) as h:
        with pytest.raises(HeraldError) as e:
            async with h.subscribe("no spaces allowed"):
                pass
    assert e.value.code == "bad_channel"


async def test_presence_lists_a_subscriber_with_its_token_user_and_info(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text('[[channels]]\npattern = "room.*"\npresence = true\n')
    server = start_herald("--config", str(config), "--publish-key", PUBLISH_KEY, "--jwt-secret", JWT_SECRET)
    try:
        token = make_token(JWT_SECRET, "ann", subscribe=["room.*"], info={"name": "Ann"})
        async with AsyncHerald(server.url, token=PUBLISH_KEY) as backend, AsyncHerald(
            server.url, token=token
        ) as h, h.subscribe("room.py") as sub:
            # The subscription connects in the background: wait (bounded) for it.
            for _ in range(100):
                if (await backend.presence("room.py"))["count"] == 1:
                    break
                await asyncio.sleep(0.05)
            presence = await backend.presence("room.py")
            assert presence["channel"] == "room.py"
            assert (presence["count"], presence["users"]) == (1, 1)
            client = presence["clients"][0]
            assert client["user"] == "ann" and client["info"] == {"name": "Ann"}
            assert client["transport"] == "ws-protocol"
            assert sub is not None
    finally:
        stop_herald(server)


def _compressed_sockets(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("herald_ws_compressed_total"):
                return int(float(line.split()[-1]))
    raise AssertionError("herald_ws_compressed_total is not exposed")


async def test_the_websockets_library_negotiates_compression(herald: Server, channel: str) -> None:
    """The SDK's /ws socket is the `websockets` library's, which offers
    permessage-deflate: herald accepts it, and messages arrive intact."""
    before = _compressed_sockets(herald.url)
    big = {"text": "herald " * 200}
    async with AsyncHerald(herald.url) as h, h.subscribe(channel) as sub:
        sent = await h.publish(channel, big)
        got = await take(sub, 1)
    assert got == [Message(sent["id"], channel, '{"text":"' + "herald " * 200 + '"}')]
    assert _compressed_sockets(herald.url) >= before + 1
