"""Tokens and webhook signatures, checked without a server (herald's
acceptance of tokens is in test_subscribe.py)."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta

import jwt

from herald_client import make_token, verify_webhook

BODY = b'{"events":[{"type":"channel.occupied","channel":"news","time_ms":1767225600000}]}'


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_verify_webhook_accepts_herald_signature() -> None:
    assert verify_webhook("s3cret", BODY, sign(b"s3cret", BODY))
    assert verify_webhook(b"s3cret", BODY.decode(), sign(b"s3cret", BODY).upper().replace("SHA256=", "sha256="))


def test_verify_webhook_refuses_everything_else() -> None:
    good = sign(b"s3cret", BODY)
    assert not verify_webhook("other", BODY, good)
    assert not verify_webhook("s3cret", BODY + b" ", good)
    assert not verify_webhook("s3cret", BODY, None)
    assert not verify_webhook("s3cret", BODY, "")
    assert not verify_webhook("s3cret", BODY, good.replace("sha256=", "sha1="))
    assert not verify_webhook("s3cret", BODY, good[:-2])
    assert not verify_webhook("s3cret", BODY, "sha256=not-hex")


def test_make_token_claims() -> None:
    token = make_token("k", "user-42", subscribe=["chat.*"], publish=["chat.room1"], ttl=timedelta(minutes=5), info={"n": 1})
    claims = jwt.decode(token, "k", algorithms=["HS256"])
    assert claims["sub"] == "user-42"
    assert claims["herald"] == {"subscribe": ["chat.*"], "publish": ["chat.room1"], "info": {"n": 1}}
    assert abs(claims["exp"] - (time.time() + 300)) < 5
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
