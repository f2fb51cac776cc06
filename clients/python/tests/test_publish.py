"""The blocking client against a real herald: publish, batch, info, delete,
idempotency, and herald's error codes."""

from __future__ import annotations


import pytest
from conftest import JWT_SECRET, PUBLISH_KEY, Server

from herald_client import Herald, HeraldError, make_token


def test_publish_info_delete(herald: Server, channel: str) -> None:
    with Herald(herald.url) as h:
        first = h.publish(channel, "hello")
        assert first["channel"] == channel and first["subscribers"] == 0 and first["id"]
        h.publish(channel, b"\xff\x00binary")
        last = h.publish(channel, {"price": 42}, event="update")
        info = h.info(channel)
        assert info["messages"] == 3
        assert (info["first_id"], info["last_id"]) == (first["id"], last["id"])
        assert h.delete(channel) == {"channel": channel, "deleted": True}
        with pytest.raises(HeraldError) as e:
            h.info(channel)
        assert (e.value.status, e.value.code) == (404, "not_found")


def test_batch(herald: Server, channel: str) -> None:
    with Herald(herald.url) as h:
        answers = h.publish_batch(
            [
                {"channel": channel + ".a", "data": "one"},
                {"channel": channel + ".b", "data": b"\x00\x01", "event": "bin"},
                {"channel": channel + ".a", "data": {"n": 3}},
            ]
        )
        assert [a["channel"] for a in answers] == [channel + ".a", channel + ".b", channel + ".a"]
        assert h.info(channel + ".a")["messages"] == 2
        assert h.info(channel + ".b")["messages"] == 1


def test_batch_is_checked_whole(herald: Server, channel: str) -> None:
    with Herald(herald.url) as h:
        with pytest.raises(HeraldError) as e:
            h.publish_batch([{"channel": channel, "data": "ok"}, {"channel": "no spaces", "data": "x"}])
        assert (e.value.status, e.value.code) == (400, "bad_channel")
        with pytest.raises(HeraldError) as e:
            h.info(channel)
        assert e.value.code == "not_found"  # the good item was not published either


def test_idempotency_key(herald: Server, channel: str) -> None:
    with Herald(herald.url) as h:
        once = h.publish(channel, "charge", idempotency_key="order-17")
        again = h.publish(channel, "charge", idempotency_key="order-17")
        assert again["id"] == once["id"]
        batch = [{"channel": channel, "data": "a"}, {"channel": channel, "data": "b"}]
        first = h.publish_batch(batch, idempotency_key="batch-1")
        assert h.publish_batch(batch, idempotency_key="batch-1") == first
        assert h.info(channel)["messages"] == 3


def test_errors_carry_codes(herald: Server, secured_herald: Server, channel: str) -> None:
    # One kept-alive connection throughout: a refused publish leaves it usable.
    with Herald(herald.url) as h:
        for _ in range(20):
            with pytest.raises(HeraldError) as e:
                h.publish("bad channel!", "x" * 1000)
            assert (e.value.status, e.value.code) == (400, "bad_channel")
            assert h.publish(channel, "fine")["channel"] == channel
        with pytest.raises(HeraldError) as e:
            h.publish(channel, "x" * (64 * 1024 + 1))
        assert (e.value.status, e.value.code) == (413, "too_large")
    with Herald(secured_herald.url) as anonymous, pytest.raises(HeraldError) as e:
        anonymous.publish(channel, "x")
    assert (e.value.status, e.value.code) == (401, "unauthorized")
    with Herald(secured_herald.url, key="not-the-key") as wrong, pytest.raises(HeraldError) as e:
        wrong.publish(channel, "x")
    assert (e.value.status, e.value.code) == (401, "invalid_token")
    token = make_token(JWT_SECRET, "user-1", subscribe=["*"], publish=["other.*"])
    with Herald(secured_herald.url, token=token) as limited, pytest.raises(HeraldError) as e:
        limited.publish(channel, "x")
    assert (e.value.status, e.value.code) == (403, "forbidden")
    with Herald(secured_herald.url, key=PUBLISH_KEY) as right:
        assert right.publish(channel, "x")["channel"] == channel


def test_token_with_publish_rights_publishes(secured_herald: Server, channel: str) -> None:
    token = make_token(JWT_SECRET, "user-1", publish=[channel.split(".")[0] + ".*"])
    with Herald(secured_herald.url, token=token) as h:
        assert h.publish(channel, "from a token")["channel"] == channel


def test_presence_of_a_channel_without_presence_is_404(herald: Server, channel: str) -> None:
    with Herald(herald.url) as h:
        h.publish(channel, "x")
        with pytest.raises(HeraldError) as e:
            h.presence(channel)
    assert (e.value.status, e.value.code) == (404, "presence_off")
    assert e.value.message
