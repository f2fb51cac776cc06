"""What herald answers, as typed shapes: JSON answers stay plain dicts
(``TypedDict``), subscription items are small dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, TypedDict, Union


class Published(TypedDict):
    """The answer to a publish: the message's id, its channel, and how many
    subscribers it reached."""

    id: str
    channel: str
    subscribers: int


class ChannelInfo(TypedDict, total=False):
    channel: str
    subscribers: int
    messages: int
    bytes: int
    first_id: Optional[str]
    last_id: Optional[str]
    options: Any


class Deleted(TypedDict):
    channel: str
    deleted: bool


class PresenceClient(TypedDict):
    client: str
    user: Optional[str]
    info: Any
    transport: str


class Presence(TypedDict):
    channel: str
    count: int
    users: Any  # distinct non-null users (DESIGN §8); kept loose until the endpoint settles
    clients: List[PresenceClient]


@dataclass(frozen=True)
class Message:
    """One message: ``data`` is ``str`` for text, ``bytes`` for binary (as
    published); ``event`` the name it was published with, if any."""

    id: str
    channel: str
    data: Union[str, bytes]
    event: Optional[str] = None


@dataclass(frozen=True)
class Gap:
    """Messages on ``channel`` were missed and cannot be delivered: history
    no longer holds them (``reason="trimmed"``, ``missed`` of them) or was
    reset (``reason="epoch"``). Delivery goes on from ``first_id``."""

    channel: str
    reason: str
    since: Optional[str] = None
    missed: Optional[int] = None
    first_id: Optional[str] = None
