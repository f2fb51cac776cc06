"""The two secrets a backend shares with herald: the JWT secret it mints
subscriber tokens with, and the webhook secret herald signs its calls with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any, Iterable, Optional, Union


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_token(
    secret: Union[str, bytes],
    sub: Optional[str],
    subscribe: Iterable[str] = (),
    publish: Iterable[str] = (),
    ttl: Union[float, timedelta] = 3600,
    info: Any = None,
) -> str:
    """An HS256 JWT for a herald started with ``--jwt-secret``: ``sub`` names
    the user (logs, presence), ``subscribe``/``publish`` are channel patterns
    (``*`` a wildcard), ``ttl`` seconds until ``exp``, ``info`` any JSON shown
    in presence."""
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    claims: dict[str, Any] = {
        "exp": int(time.time() + seconds),
        "herald": {"subscribe": list(subscribe), "publish": list(publish)},
    }
    if sub is not None:
        claims["sub"] = sub
    if info is not None:
        claims["herald"]["info"] = info
    # HS256 is one HMAC over two base64url JSON parts (RFC 7519), not worth a dependency.
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    key = secret.encode() if isinstance(secret, str) else secret
    signature = hmac.new(key, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def verify_webhook(
    secret: Union[str, bytes], body: Union[bytes, str], signature_header: Optional[str]
) -> bool:
    """Whether ``X-Herald-Signature: sha256=<hex>`` is herald's HMAC-SHA256
    of the raw ``body`` under ``secret``. Pass the body exactly as received,
    before any JSON parsing; the comparison takes constant time."""
    if not signature_header or not signature_header.startswith("sha256="):
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    raw = body.encode() if isinstance(body, str) else body
    expected = hmac.new(key, raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature_header[len("sha256=") :].strip().lower())
