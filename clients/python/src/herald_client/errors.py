"""The one exception herald's SDK raises for anything herald refused."""

from __future__ import annotations

import json
from typing import Optional


class HeraldError(Exception):
    """herald answered with an error: ``.code`` is its snake_case code
    (``bad_channel``, ``forbidden``...), ``.status`` the HTTP status (``None``
    for an error frame on ``/ws``, which has no status)."""

    def __init__(self, code: str, message: str, status: Optional[int] = None) -> None:
        super().__init__(f"{code}: {message}" if status is None else f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @classmethod
    def from_body(cls, status: int, body: bytes) -> "HeraldError":
        """Reads herald's ``{"error": {"code", "message"}}``; anything else
        (a proxy's HTML page, say) becomes code ``http_error``."""
        try:
            error = json.loads(body)["error"]
            return cls(str(error["code"]), str(error.get("message", "")), status)
        except (ValueError, KeyError, TypeError):
            text = body[:200].decode("utf-8", "replace")
            return cls("http_error", text or f"HTTP {status}", status)
