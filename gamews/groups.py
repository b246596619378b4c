"""One plugin handle over the same path on several web endpoints.

``context.open(path)`` and ``context.mount(path, resource)`` without an ``endpoint=`` serve
on every ``--listen`` endpoint: the plugin gets a :class:`ListenerGroup` (or
:class:`MountGroup`) that behaves as one listener, so a plugin written for one port works
unchanged on many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.api import ChannelKind, IChannel, IConnection, IListener, IMount

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

__all__ = ["ChannelGroup", "ListenerGroup", "MountGroup"]


def _first_address(handles: Sequence[IListener] | Sequence[IMount]) -> Deferred[IAddress]:
    """Fire with the first handle's address once every handle listens; fail with the
    first failure."""
    waiting: list[Deferred[IAddress]] = [h.when_listening() for h in handles]
    d: Deferred[list[IAddress]] = gatherResults(waiting, consumeErrors=True)

    def first(addresses: list[IAddress]) -> IAddress:
        return addresses[0]

    def unwrap(failure: Failure) -> Failure:
        sub = getattr(failure.value, "subFailure", None)
        return sub if isinstance(sub, Failure) else failure

    return d.addCallbacks(first, unwrap)


def _close_all(handles: Iterable[IListener] | Iterable[IMount]) -> Deferred[None]:
    return DeferredList([h.close() for h in handles]).addCallback(lambda _: None)


@implementer(IChannel)
class ChannelGroup:
    """A channel of a :class:`ListenerGroup`: the same channel on each member listener."""

    def __init__(self, name: str, kind: ChannelKind, members: Sequence[IChannel]) -> None:
        self.name = name
        self.kind = kind
        self.members = tuple(members)

    def subscribe(self, child: IConnection) -> None:
        # a child arrived on exactly one member listener: its channel takes it
        for member in self.members:
            try:
                member.subscribe(child)
            except ValueError:
                continue
            return
        raise ValueError("hook a child before subscribing it to a channel")

    def unsubscribe(self, child: IConnection) -> None:
        for member in self.members:
            member.unsubscribe(child)

    def subscribers(self) -> list[IConnection]:
        return [child for member in self.members for child in member.subscribers()]

    def publish(self, data: str | bytes) -> int:
        return sum(member.publish(data) for member in self.members)


@implementer(IListener)
class ListenerGroup:
    """A plugin's listener on one path of several endpoints, used as one.

    ``endpoint`` is the first endpoint; :attr:`listeners` holds one listener per endpoint.
    The ``error`` and ``closed`` callbacks given to ``open`` get the member listener
    concerned.
    """

    def __init__(self, listeners: Sequence[IListener]) -> None:
        if not listeners:
            raise ValueError("a listener group needs at least one listener")
        self.listeners = tuple(listeners)
        self.endpoint = self.listeners[0].endpoint
        self.path = self.listeners[0].path
        self.owner = self.listeners[0].owner
        self._channels: dict[str, ChannelGroup] = {}

    def __repr__(self) -> str:
        return f"<ListenerGroup {self.owner} {self.path} on {len(self.listeners)} endpoints>"

    @property
    def active(self) -> bool:
        return all(listener.active for listener in self.listeners)

    def when_listening(self) -> Deferred[IAddress]:
        return _first_address(self.listeners)

    def connections(self) -> list[IConnection]:
        return [child for listener in self.listeners for child in listener.connections()]

    def broadcast(self, data: str | bytes, to: Iterable[IConnection] | None = None) -> int:
        targets = None if to is None else list(to)
        return sum(listener.broadcast(data, targets) for listener in self.listeners)

    def channel(self, name: str, kind: ChannelKind = ChannelKind.EVENTS, *,
                catch_up: Callable[[IConnection], object] | None = None) -> IChannel:
        members = [listener.channel(name, kind, catch_up=catch_up)
                   for listener in self.listeners]
        group = self._channels.get(name)
        if group is None:
            group = self._channels[name] = ChannelGroup(name, kind, members)
        return group

    def close(self) -> Deferred[None]:
        return _close_all(self.listeners)


@implementer(IMount)
class MountGroup:
    """A resource mounted at one path of several endpoints, used as one mount."""

    def __init__(self, mounts: Sequence[IMount]) -> None:
        if not mounts:
            raise ValueError("a mount group needs at least one mount")
        self.mounts = tuple(mounts)
        self.endpoint = self.mounts[0].endpoint
        self.path = self.mounts[0].path

    def when_listening(self) -> Deferred[IAddress]:
        return _first_address(self.mounts)

    def close(self) -> Deferred[None]:
        return _close_all(self.mounts)
