"""Channels: named groups of children a plugin publishes to in one call.

A channel belongs to one plugin's listener (``listener.channel(name)``). Each
message published on it is encoded and framed once for every subscriber. What
happens to a subscriber that reads too slowly is the channel's
:class:`~gamews.api.ChannelKind`:

- ``EVENTS``: every message matters; past ``max_send_buffer`` bytes waiting the
  subscriber is closed with 1008 ("reading too slowly").
- ``STATE``: only the latest state matters; while the subscriber's socket is
  full its messages are skipped, and once it drains it is caught up (the
  channel's ``catch_up`` callback, or else the last message published).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from autobahn.websocket.protocol import WebSocketProtocol
from zope.interface import implementer

from gamews.api import ChannelKind, IChannel, IConnection
from gamews.isolation import call_plugin

if TYPE_CHECKING:
    from gamews.stats import PathStats
    from gamews.websocket import Child, ListenerLike

__all__ = ["Channel", "encode_message", "send_once"]

_OPEN = WebSocketProtocol.STATE_OPEN


@implementer(IChannel)
class Channel:
    """A named group of one listener's children (see :class:`gamews.api.IChannel`)."""

    def __init__(self, listener: ListenerLike, name: str, kind: ChannelKind,
                 catch_up: Callable[[IConnection], object] | None,
                 prepare: Callable[[bytes, bool], Any], max_message_size: int,
                 stats: PathStats) -> None:
        self.listener = listener
        self.name = name
        self.kind = kind
        self._catch_up = catch_up
        self._prepare = prepare
        self._max_message_size = max_message_size
        self._stats = stats
        self._children: dict[int, Child] = {}
        self._last: Any = None

    def __repr__(self) -> str:
        return (f"<Channel {self.name!r} {self.kind.name} of {self.listener.owner}: "
                f"{len(self._children)} subscribers>")

    # -- membership -------------------------------------------------------------

    def subscribe(self, child: IConnection) -> None:
        inner = _child_of(child)
        if not inner.is_hooked(self.listener):
            raise ValueError("hook a child before subscribing it to a channel")
        self._children[inner.id] = inner
        inner.channels.add(self)

    def unsubscribe(self, child: IConnection) -> None:
        self.drop(_child_of(child))

    def drop(self, child: Child) -> None:
        """Forget ``child`` (it unsubscribed, was unhooked, or is gone)."""
        if self._children.pop(child.id, None) is not None:
            child.channels.discard(self)
            child.behind.pop(self, None)

    def subscribers(self) -> list[IConnection]:
        return [child.handle_for(self.listener) for child in self._children.values()]

    def __len__(self) -> int:
        return len(self._children)

    # -- publishing -------------------------------------------------------------

    def publish(self, data: str | bytes) -> int:
        payload, is_binary = encode_message(data, self._max_message_size)
        if self.kind is ChannelKind.EVENTS:
            return send_once(self._children.values(), payload, is_binary, self._prepare,
                             self._stats)
        self._last = self._prepare(payload, is_binary)
        sent = self._publish_state(self._last)
        self._stats.messages_out += sent
        self._stats.bytes_out += sent * len(payload)
        return sent

    def _publish_state(self, prepared: Any) -> int:
        sent = 0
        for child in list(self._children.values()):
            protocol = child.protocol
            if child.lost or protocol.state != _OPEN:
                continue
            if protocol.send_buffer.paused:
                child.behind[self] = None  # caught up when its socket drains
                self._stats.skipped += 1
                continue
            protocol.sendPreparedMessage(prepared)
            sent += 1
        return sent

    def catch_up(self, child: Child) -> None:
        """``child`` missed messages and can take more: bring it up to date."""
        if self._children.get(child.id) is not child:
            return
        if self._catch_up is not None:
            call_plugin(self.listener.owner, "catch_up", self._catch_up,
                        child.handle_for(self.listener))
            return
        last = self._last
        if last is not None:
            child.protocol.sendPreparedMessage(last)
            self._stats.messages_out += 1
            self._stats.bytes_out += len(last.payload)


def encode_message(data: str | bytes, limit: int) -> tuple[bytes, bool]:
    """``data``'s payload and whether it is binary (``bytes``; text is ``str``);
    ``ValueError`` above ``limit`` bytes."""
    is_binary = isinstance(data, bytes)
    payload = data if isinstance(data, bytes) else data.encode("utf-8")
    if len(payload) > limit:
        raise ValueError(f"message of {len(payload)} bytes exceeds the limit of {limit}")
    return payload, is_binary


def send_once(children: Iterable[Child], payload: bytes, is_binary: bool,
              prepare: Callable[[bytes, bool], Any], stats: PathStats) -> int:
    """Send one message to every open child in ``children``, framed once (and
    only if someone takes it); a child too far behind is closed with 1008."""
    prepared = None
    sent = 0
    size = len(payload)
    for child in list(children):
        if not child.reserve(size):
            continue
        if prepared is None:
            prepared = prepare(payload, is_binary)
        child.protocol.sendPreparedMessage(prepared)
        sent += 1
    stats.messages_out += sent
    stats.bytes_out += sent * size
    return sent


def _child_of(connection: IConnection) -> Child:
    child = getattr(connection, "_child", None)
    if child is None:
        raise TypeError(f"{connection!r} is not a gamews connection")
    return child  # type: ignore[no-any-return]
