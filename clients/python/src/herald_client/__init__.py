"""herald_client — the Python backend SDK for herald, the real-time push server.

    from herald_client import Herald
    Herald("http://127.0.0.1:8080", key="PUBLISH_KEY").publish("news", {"title": "hi"})

See clients/python/README.md and docs/sdk.md.
"""

from .client import AsyncHerald, Herald
from .errors import HeraldError
from .signing import make_token, verify_webhook
from .subscription import Subscription
from .types import ChannelInfo, Deleted, Gap, Message, Presence, Published

__all__ = [
    "AsyncHerald",
    "ChannelInfo",
    "Deleted",
    "Gap",
    "Herald",
    "HeraldError",
    "Message",
    "Presence",
    "Published",
    "Subscription",
    "make_token",
    "verify_webhook",
]
