"""The child model: what gamews knows of one browser connection, apart from the wire.

A :class:`Child` is one WebSocket connection shared by every plugin that holds
it; each plugin sees it through its own :class:`ConnectionHandle`. A
:class:`Channel` is a named group of one listener's children. Every way of
sending one message to many children (a channel's ``publish``, a listener's
``broadcast``, the manhole's ``broadcast``) is :func:`send_to_many`.

Nothing here imports Autobahn or Twisted's transports: a child talks to its
connection through :class:`Wire` (implemented by
:class:`gamews.websocket._protocol.GamewsServerProtocol`, and by a fake in the
unit tests), which is why the slow-reader rules below are tested on a clock
with a fake wire.

What happens to a child that reads too slowly (its socket's buffer is full, the
wire is *paused*):

- a message sent to it alone, or on an ``EVENTS`` channel, or by a broadcast
  counts against ``max_send_buffer``; past it the child is closed with 1008
  ("reading too slowly");
- on a ``STATE`` channel, where only the latest state matters, its messages are
  skipped while it is paused, and once the wire drains it is caught up (the
  channel's ``catch_up`` callback, or else the last message published).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.api import (
    ChannelKind,
    ChildCallback,
    ConnectionRequest,
    DisconnectCallback,
    ErrorCallback,
    IChannel,
    IChildHandler,
    IConnection,
    MessageCallback,
    ReadyState,
    WebSocketError,
)
from gamews.config import WebSocketLimits
from gamews.isolation import call_plugin
from gamews.stats import PathStats

__all__ = ["Channel", "Child", "ConnectionHandle", "ListenerLike", "OutgoingMessage", "Refused",
           "Route", "Wire", "encode_message", "send_to_many"]

log = Logger(namespace="gamews.websocket")

_SENDABLE_CODES = frozenset({1000, 1001, 1008, 1011})
_ERROR_CODES = frozenset({1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011})
_ids = itertools.count(1)
_OPEN = ReadyState.OPEN  # a module constant: an Enum member read through its class is slow


class Wire(Protocol):
    """The one connection under a :class:`Child`: what the child model needs of the
    WebSocket protocol (``GamewsServerProtocol`` in gamews, a fake in unit tests)."""

    @property
    def ready_state(self) -> ReadyState:
        """The protocol's RFC 6455 state (CLOSED once the connection is gone)."""

    @property
    def paused(self) -> bool:
        """Whether the socket's buffer is full (bytes sent now wait in memory)."""

    def send(self, payload: bytes, is_binary: bool) -> None:
        """Frame and send one message."""

    def send_prepared(self, prepared: Any) -> None:
        """Send a message framed once for many (what ``prepare`` made)."""

    def send_now(self, prepared: Any) -> bool:
        """Send a message framed once for many if the wire is OPEN, not paused and
        sends it as framed (no compression of its own): the common case of a
        broadcast, in one call. ``False``: nothing was sent, the caller takes the
        general way (``reserve``, then ``send_prepared``)."""

    def close(self, code: int, reason: bytes | None) -> None:
        """Start the closing handshake when OPEN; drop a connection still CONNECTING."""

    def drop(self) -> None:
        """Abort the connection now, without a closing handshake."""


class ListenerLike(Protocol):
    """What a child needs of a listener (the registry's ``Listener``)."""

    owner: str

    @property
    def active(self) -> bool: ...

    def offer(self, child: IConnection) -> Deferred[None] | None: ...


class UnfinishedBudget:
    """The bytes every connection of the process holds in unfinished messages, and
    their cap (``max_unfinished_bytes``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        """Bytes held now."""
        self.refused = 0
        """Connections closed for adding bytes past the cap."""

    def take(self, size: int) -> bool:
        """Hold ``size`` more bytes, or ``False`` (nothing held) if that passes the cap."""
        if self.held + size > self.limit:
            self.refused += 1
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """Stop holding ``size`` bytes."""
        self.held -= size


class Route(Protocol):
    """What a child needs of the path it arrived on (the registry's route)."""

    limits: WebSocketLimits
    stats: PathStats
    budget: UnfinishedBudget

    def listeners(self) -> list[ListenerLike]: ...

    def admit(self, child: Child) -> tuple[int, str] | None: ...

    def release(self, child: Child) -> None: ...


class Refused(Exception):  # noqa: N818  # an answer, not an error
    """The opening handshake is answered with HTTP ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Hook:
    handle: ConnectionHandle
    on_message: MessageCallback | None
    on_disconnect: DisconnectCallback | None
    on_error: ErrorCallback | None
    on_open: ChildCallback | None


class Child:
    """The state of one child connection shared by every plugin's handle."""

    __slots__ = ("_handles", "_hooks", "_lost_waiters", "_rejection", "_subprotocol_owner",
                 "admitted", "behind", "channels", "id", "lost", "queued", "request", "route",
                 "subprotocol", "wire")

    def __init__(self, wire: Wire, route: Route) -> None:
        self.id = next(_ids)
        self.wire = wire
        self.route = route
        self.request: ConnectionRequest | None = None
        self.subprotocol: str | None = None
        self._subprotocol_owner: str | None = None
        self._rejection: tuple[int, str] | None = None
        self._handles: dict[ListenerLike, ConnectionHandle] = {}
        self._hooks: dict[ListenerLike, _Hook] = {}
        self.lost = False
        self.admitted = False
        self._lost_waiters: list[Deferred[None]] | None = None
        self.channels: dict[Channel, None] = {}
        """The channels this child is subscribed to (a dict: 64 bytes empty, a set 216)."""
        self.behind: dict[Channel, None] = {}
        """STATE channels whose messages this child missed while its wire was paused."""
        self.queued = 0
        """Bytes sent since the wire paused (what this slow reader costs)."""

    # -- state ---------------------------------------------------------------

    @property
    def ready_state(self) -> ReadyState:
        """The RFC 6455 ready state, read from the wire."""
        if self.lost:
            return ReadyState.CLOSED
        return self.wire.ready_state

    def holders(self) -> list[str]:
        """Names of the plugins holding this child."""
        return [listener.owner for listener in self._hooks]

    def handle_for(self, listener: ListenerLike) -> ConnectionHandle:
        """The handle ``listener``'s plugin sees for this child."""
        handle = self._handles.get(listener)
        if handle is None:
            handle = self._handles[listener] = ConnectionHandle(self, listener)
        return handle

    # -- the handshake ---------------------------------------------------------

    def offer(self, request: ConnectionRequest) -> Deferred[str | None] | str | None:
        """Offer the child to every plugin on its path; the subprotocol chosen, or
        :class:`Refused` (raised, or the Deferred's failure)."""
        self.request = request
        denied = self.route.admit(self)
        if denied is not None:
            raise Refused(*denied)
        self.admitted = True
        waits: list[Deferred[None]] = []
        for listener in self.route.listeners():
            waiting = listener.offer(self.handle_for(listener))
            if waiting is not None:
                waits.append(waiting)
        if waits:
            decided: Deferred[str | None] = DeferredList(waits).addCallback(
                lambda _: self._decide()
            )
            return decided
        return self._decide()

    def _decide(self) -> str | None:
        if self._rejection is not None:
            raise Refused(*self._rejection)
        if not self._hooks:
            raise Refused(403, "no plugin accepted the connection")
        return self.subprotocol

    def select_subprotocol(self, listener: ListenerLike, name: str) -> None:
        if self.ready_state is not ReadyState.CONNECTING or self.request is None:
            raise ValueError("a subprotocol can only be chosen while CONNECTING")
        if name not in self.request.protocols:
            raise ValueError(f"subprotocol {name!r} was not offered by the client")
        if self.subprotocol is not None and self.subprotocol != name:
            raise ValueError(
                f"subprotocol {self.subprotocol!r} was already chosen by {self._subprotocol_owner}"
            )
        self.subprotocol, self._subprotocol_owner = name, listener.owner

    def reject(self, status: int, reason: str) -> None:
        if not 400 <= status <= 599:
            raise ValueError("a rejection needs an HTTP status 400-599")
        if self.ready_state is not ReadyState.CONNECTING:
            raise ValueError("only a CONNECTING child can be rejected; close it instead")
        if self._rejection is None:
            self._rejection = (status, reason or "rejected")

    # -- hooks ---------------------------------------------------------------

    def hook(self, listener: ListenerLike, hook: _Hook) -> None:
        if self.ready_state in (ReadyState.CLOSING, ReadyState.CLOSED):
            raise ValueError("cannot hook a closing or closed child")
        self._hooks[listener] = hook

    def is_hooked(self, listener: ListenerLike) -> bool:
        return listener in self._hooks

    def unhook(self, listener: ListenerLike) -> None:
        """Drop ``listener``'s hook; close (1000) when nobody holds the child."""
        if self._hooks.pop(listener, None) is None:
            return
        for channel in [c for c in self.channels if c.listener is listener]:
            channel.drop(self)
        if not self._hooks and self.ready_state is ReadyState.OPEN:
            self.close(1000, "no plugin holds this connection")

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (1000, 1001, 1008, 1011 or 3000-4999),
        or drop a child still CONNECTING."""
        if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} cannot be sent (use 1000 or 3000-4999)")
        if self.ready_state in (ReadyState.OPEN, ReadyState.CONNECTING):
            raw = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
            self.wire.close(code, raw or None)

    # -- sending -------------------------------------------------------------

    def reserve(self, size: int) -> bool:
        """Whether ``size`` more bytes may be sent now: the child is OPEN and not
        too far behind. A child past ``max_send_buffer`` is closed with 1008."""
        if self.lost or self.wire.ready_state is not _OPEN:
            return False
        if self.wire.paused:
            self.queued += size
            limits = self.route.limits
            if self.queued > max(limits.max_send_buffer, 2 * limits.max_message_size):
                log.info("closing {peer}: it reads too slowly ({queued} bytes waiting)",
                         peer=self.request.peer if self.request else "?",
                         queued=self.queued)
                self.close(1008, "reading too slowly")
                self.route.stats.slow_consumers += 1
                return False
        return True

    def buffer_full(self) -> None:
        """The wire's socket is full (it is now ``paused``): count what is sent from now on."""
        self.queued = 0

    def drained(self) -> None:
        """The wire can take more: catch up the STATE channels it fell behind on."""
        self.queued = 0
        while self.behind and not self.wire.paused and not self.lost:
            channel = next(iter(self.behind))
            del self.behind[channel]
            channel.catch_up(self)

    # -- events from the wire --------------------------------------------------

    def on_lost(self, waiter: Deferred[None]) -> None:
        """Fire ``waiter`` once the connection is gone."""
        if self.lost:
            waiter.callback(None)
        else:
            if self._lost_waiters is None:
                self._lost_waiters = []
            self._lost_waiters.append(waiter)

    def _dispatch(self, name: str, *args: Any) -> None:
        """Call each holder's ``name`` callback (``on_message``, …), isolated; a
        holder that unhooks or closes its listener meanwhile is skipped."""
        hooks = self._hooks
        for listener, hook in tuple(hooks.items()):
            fn = getattr(hook, name)
            if fn is not None and listener.active and hooks.get(listener) is hook:
                call_plugin(listener.owner, name, fn, hook.handle, *args)

    def opened(self) -> None:
        self._dispatch("on_open")

    def message(self, data: str | bytes) -> None:
        self._dispatch("on_message", data)

    def closed(self, was_clean: bool, code: int | None, reason: str | None,
               local_code: int | None = None, local_reason: object = None) -> None:
        """The connection is gone: tell every holder once, then forget them.

        ``local_code`` and ``local_reason`` are what this side closed with, if it
        did (a protocol error found in the browser's frames, say)."""
        self.lost = True
        if not was_clean or code in _ERROR_CODES or local_code in _ERROR_CODES:
            err_code = local_code if local_code in _ERROR_CODES else (code or 1006)
            text = reason or local_reason
            failure = Failure(WebSocketError(err_code or 1006, str(text or "connection lost")))
            self._dispatch("on_error", failure)
        self._dispatch("on_disconnect", code, reason or "")
        self._hooks.clear()
        for channel in list(self.channels):
            channel.drop(self)
        waiters, self._lost_waiters = self._lost_waiters or [], None
        for waiter in waiters:
            waiter.callback(None)


@implementer(IConnection)
class ConnectionHandle:
    """One plugin's view of a child connection (see :class:`gamews.api.IConnection`)."""

    __slots__ = ("_child", "_listener")

    def __init__(self, child: Child, listener: ListenerLike) -> None:
        self._child = child
        self._listener = listener

    def __repr__(self) -> str:
        req = self._child.request
        return (f"<ConnectionHandle #{self.id} {req.path if req else '?'} "
                f"{req.peer if req else '?'} {self.ready_state.name} for {self._listener.owner}>")

    @property
    def id(self) -> int:
        return self._child.id

    @property
    def request(self) -> ConnectionRequest:
        assert self._child.request is not None
        return self._child.request

    @property
    def ready_state(self) -> ReadyState:
        return self._child.ready_state

    @property
    def subprotocol(self) -> str | None:
        return self._child.subprotocol

    @property
    def hooked(self) -> bool:
        return self._child.is_hooked(self._listener)

    def hook(
        self,
        on_message: MessageCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        on_error: ErrorCallback | None = None,
        on_open: ChildCallback | None = None,
        *,
        handler: IChildHandler | None = None,
    ) -> None:
        if handler is not None:
            if any(f is not None for f in (on_message, on_disconnect, on_error, on_open)):
                raise TypeError("give callbacks or a handler, not both")
            on_message, on_disconnect = handler.on_message, handler.on_disconnect
            on_error, on_open = handler.on_error, handler.on_open
        if not self._listener.active:
            raise ValueError("this plugin's listener is closed")
        self._child.hook(self._listener, _Hook(self, on_message, on_disconnect, on_error, on_open))

    def unhook(self) -> None:
        self._child.unhook(self._listener)

    def select_subprotocol(self, name: str) -> None:
        self._child.select_subprotocol(self._listener, name)

    def reject(self, status: int = 403, reason: str = "") -> None:
        self._child.reject(status, reason)

    def _send(self, data: str | bytes) -> bool:
        child = self._child
        payload, is_binary = encode_message(data, child.route.limits.max_message_size)
        if not child.reserve(len(payload)):
            return False
        stats = child.route.stats
        stats.messages_out += 1
        stats.bytes_out += len(payload)
        child.wire.send(payload, is_binary)
        return True

    def send_text(self, text: str) -> bool:
        return self._send(text)

    def send_binary(self, data: bytes) -> bool:
        return self._send(bytes(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.ready_state is ReadyState.CONNECTING:
            self._child.reject(403, reason or "closed by plugin")
        else:
            self._child.close(code, reason)


# -- one message to many ---------------------------------------------------------------


def encode_message(data: str | bytes, limit: int) -> tuple[bytes, bool]:
    """``data``'s payload and whether it is binary (``bytes``; text is ``str``);
    ``ValueError`` above ``limit`` bytes."""
    is_binary = isinstance(data, bytes)
    payload = data if isinstance(data, bytes) else data.encode("utf-8")
    if len(payload) > limit:
        raise ValueError(f"message of {len(payload)} bytes exceeds the limit of {limit}")
    return payload, is_binary


class OutgoingMessage:
    """One message for many children: its payload, framed once when first needed
    by ``prepare`` (the factory's ``prepareMessage``)."""

    __slots__ = ("_prepare", "_prepared", "is_binary", "payload")

    def __init__(self, data: str | bytes, limit: int,
                 prepare: Callable[[bytes, bool], Any]) -> None:
        """Encode ``data``; ``ValueError`` above ``limit`` bytes."""
        self.payload, self.is_binary = encode_message(data, limit)
        self._prepare = prepare
        self._prepared: Any = None

    def prepared(self) -> Any:
        """The message framed (once)."""
        if self._prepared is None:
            self._prepared = self._prepare(self.payload, self.is_binary)
        return self._prepared


def send_to_many(children: Iterable[Child], message: OutgoingMessage, stats: PathStats, *,
                 state: Channel | None = None) -> int:
    """Send ``message`` to every open child in ``children``, framed once (if there
    are any); the number of children it was sent to.

    A paused child is closed with 1008 once too far behind, or, for a ``state``
    channel's message, skipped and caught up when its wire drains."""
    sent = 0
    size = len(message.payload)
    targets = list(children)
    prepared = message.prepared() if targets else None
    for child in targets:
        wire = child.wire
        if wire.send_now(prepared):  # open, keeping up: most children, most times
            sent += 1
            continue
        if state is None:
            if not child.reserve(size):
                continue
        elif child.lost or wire.ready_state is not _OPEN:
            continue
        elif wire.paused:
            child.behind[state] = None  # caught up when its wire drains
            stats.skipped += 1
            continue
        wire.send_prepared(prepared)
        sent += 1
    stats.messages_out += sent
    stats.bytes_out += sent * size
    return sent


PUBLISH_SLICE = 0.005
"""Seconds a publish sends for before the reactor gets a turn (reads, timers, the
publisher's next tick on time); the subscribers left get the message on the next
turns, before the channel's next message."""
PUBLISH_BACKLOG = 64
"""Publishes of one channel that may wait for their turn (a second at 64 Hz)."""
_CHUNK = 64
"""Subscribers sent to between two looks at the clock."""


@implementer(IChannel)
class Channel:
    """A named group of one listener's children (see :class:`gamews.api.IChannel`).

    A publish to many subscribers is spread over reactor turns of
    :data:`PUBLISH_SLICE` seconds, so a publish that takes longer than its
    publisher's period delays the next (which is sent after it, in order)
    instead of holding the reactor until a ticker skips ticks; a ``STATE``
    channel drops a waiting message for a newer one. Past
    :data:`PUBLISH_BACKLOG` waiting publishes the channel says it cannot keep up
    and sends them at once.
    """

    def __init__(self, listener: ListenerLike, name: str, kind: ChannelKind,
                 catch_up: Callable[[IConnection], object] | None,
                 prepare: Callable[[bytes, bool], Any], max_message_size: int,
                 stats: PathStats, clock: IReactorTime) -> None:
        self.listener = listener
        self.name = name
        self.kind = kind
        self._catch_up = catch_up
        self._prepare = prepare
        self._max_message_size = max_message_size
        self._stats = stats
        self._clock = clock
        self._children: dict[int, Child] = {}
        self._last: OutgoingMessage | None = None
        self._behind: deque[tuple[OutgoingMessage, list[Child], int]] = deque()
        """Publishes not yet sent to every subscriber: message, targets, next index."""
        self._resume: IDelayedCall | None = None
        self._warned = False

    def __repr__(self) -> str:
        return (f"<Channel {self.name!r} {self.kind.name} of {self.listener.owner}: "
                f"{len(self._children)} subscribers>")

    # -- membership -------------------------------------------------------------

    def subscribe(self, child: IConnection) -> None:
        inner = _child_of(child)
        if not inner.is_hooked(self.listener):
            raise ValueError("hook a child before subscribing it to a channel")
        self._children[inner.id] = inner
        inner.channels[self] = None

    def unsubscribe(self, child: IConnection) -> None:
        self.drop(_child_of(child))

    def drop(self, child: Child) -> None:
        """Forget ``child`` (it unsubscribed, was unhooked, or is gone)."""
        if self._children.pop(child.id, None) is not None:
            child.channels.pop(self, None)
            child.behind.pop(self, None)

    def subscribers(self) -> list[IConnection]:
        return [child.handle_for(self.listener) for child in self._children.values()]

    def __len__(self) -> int:
        return len(self._children)

    # -- publishing -------------------------------------------------------------

    def publish(self, data: str | bytes) -> int:
        message = OutgoingMessage(data, self._max_message_size, self._prepare)
        if self.kind is ChannelKind.STATE:
            message.prepared()  # kept framed for the subscribers that fall behind
            self._last = message
        targets = list(self._children.values())
        if not self._behind:
            return self._send(message, targets, 0)
        # an earlier publish is still being sent: this one goes after it
        self._stats.publishes_behind += 1
        if self.kind is ChannelKind.STATE:
            self._behind.clear()  # only the latest state matters: everyone gets this one
        self._behind.append((message, targets, 0))
        if len(self._behind) > PUBLISH_BACKLOG:
            self._overloaded()
        return len(targets)

    def _send(self, message: OutgoingMessage, targets: list[Child], start: int) -> int:
        """Send ``message`` to ``targets[start:]`` for at most :data:`PUBLISH_SLICE`
        seconds; what is left waits for the next reactor turn, first in line. The
        number sent to now, plus those left."""
        state = self if self.kind is ChannelKind.STATE else None
        deadline = self._clock.seconds() + PUBLISH_SLICE
        sent = 0
        for at in range(start, len(targets), _CHUNK):
            if at > start and self._clock.seconds() >= deadline:
                if start == 0:
                    self._stats.publishes_spread += 1
                self._behind.appendleft((message, targets, at))
                if self._resume is None:
                    self._resume = self._clock.callLater(0, self._next)
                return sent + len(targets) - at
            sent += send_to_many(targets[at:at + _CHUNK], message, self._stats, state=state)
        return sent

    def _next(self) -> None:
        """A reactor turn for the publish first in line."""
        self._resume = None
        self._send(*self._behind.popleft())
        if self._behind and self._resume is None:
            self._resume = self._clock.callLater(0, self._next)
        if not self._behind:
            self._warned = False

    def _overloaded(self) -> None:
        """More publishes wait than :data:`PUBLISH_BACKLOG`: the channel cannot keep
        up. Send them all now (the publisher's loop is held up until they are: a
        ticker then skips ticks) rather than hold ever more, and say so once."""
        if not self._warned:
            self._warned = True
            log.warn("channel {name!r} of {owner} cannot keep up: {waiting} publishes to "
                     "{subscribers} subscribers waiting; sending them before the next",
                     name=self.name, owner=self.listener.owner, waiting=len(self._behind),
                     subscribers=len(self._children))
        while self._behind:
            message, targets, at = self._behind.popleft()
            send_to_many(targets[at:], message, self._stats,
                         state=self if self.kind is ChannelKind.STATE else None)
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

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
            child.wire.send_prepared(last.prepared())
            self._stats.messages_out += 1
            self._stats.bytes_out += len(last.payload)


def _child_of(connection: IConnection) -> Child:
    if not isinstance(connection, ConnectionHandle):
        raise TypeError(f"{connection!r} is not a gamews connection")
    return connection._child
