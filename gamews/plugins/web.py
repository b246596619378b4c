"""What the built-in page plugins (chat, live, console) share: their page and
socket on every web port, the JSON frames of ``docs/protocol.md``, following one
game server per connection, and the RCON link state.

Built only on :mod:`gamews.api`, as a third-party plugin would be.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from gamews.api import (
    ChannelKind,
    Envelope,
    IChannel,
    IConnection,
    IListener,
    IPluginContext,
    IRequestForwarder,
    ReadyState,
    RepeatLimiter,
    Request,
    TokenBucket,
    page,
)

__all__ = ["MAX_DEPTH", "PROTOCOL_VERSION", "SUBPROTOCOL", "FrameSchema", "WebPluginService",
           "link_state_name", "read_frame"]

STATIC = Path(__file__).parent / "static"
PROTOCOL_VERSION = 1
SUBPROTOCOL = "gamews.v1"
MAX_FRAME = 16 * 1024
FRAME_RATE = 20.0
"""Frames a second a browser may send (after a burst of twice as many): far above what the
pages send. Past it the connection is closed with 1008, so that one browser sending in a
tight loop cannot hold the reactor (every frame costs a parse and an answer)."""
MAX_DEPTH = 32
"""The deepest nesting of arrays and objects a frame may have."""
BAD_FRAMES_BURST = 10
BAD_FRAMES_INTERVAL = 1.0
"""A connection may send ``BAD_FRAMES_BURST`` bad frames at once, then one per
``BAD_FRAMES_INTERVAL`` seconds; one more and it is closed with 1008."""

FieldType = type | tuple[type, ...]
FrameSchema = Mapping[str, Mapping[str, FieldType]]
"""Frame type → field name → the type(s) its value may have (``type(None)`` among
them: the field may be left out or null)."""

_TYPE_NAMES = {str: "a string", int: "a number", float: "a number", bool: "true or false",
               type(None): "null", list: "a list", dict: "an object"}


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` deep."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [v for item in level
                 for v in (item.values() if isinstance(item, dict) else item)
                 if isinstance(v, dict | list)] if level else []
        if not level:
            return False
    return True


def read_frame(data: str | bytes, schema: FrameSchema) -> tuple[dict[str, Any] | None, str]:
    """Parse and check one browser frame against ``schema``: ``(frame, "")``, or
    ``(None, reason)`` for anything else (binary, too big, not JSON, nested deeper than
    :data:`MAX_DEPTH`, not an object with a known ``type``, a field of the wrong type).
    Numbers are never booleans and never NaN or infinite."""
    if isinstance(data, bytes) or len(data) > MAX_FRAME:
        return None, "frames are JSON text up to 16 KiB"
    try:
        frame = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None, "expected a JSON object with a type"
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return None, "expected a JSON object with a type"
    fields = schema.get(frame["type"])
    if fields is None:
        return None, f"unknown frame type {frame['type'][:40]!r}"
    if _too_deep(frame, MAX_DEPTH - 1):
        return None, f"frames nest at most {MAX_DEPTH} deep"
    for name, kind in fields.items():
        value = frame.get(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not (isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))):
            wanted = " or ".join(dict.fromkeys(_TYPE_NAMES.get(k, k.__name__) for k in kinds))
            return None, f"{frame['type']}: {name} must be {wanted}"
    return frame, ""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_LINK_NAMES = {"up": "connected", "connecting": "connecting", "down": "reconnecting",
               "auth_failed": "password_rejected", "stopped": "stopped"}


def link_state_name(state: Any) -> str:
    """The protocol's name for a game server's link state."""
    value = str(getattr(state, "value", state))
    return _LINK_NAMES.get(value, value)


class WebPluginService(Service):
    """A page at ``/NAME`` and its WebSocket at ``/NAME/ws`` on every web port."""

    plugin: ClassVar[str]
    frames: ClassVar[FrameSchema] = {"select": {"server": str}}
    """The frames browsers may send: each type's fields and their types (see
    :func:`read_frame`); anything else is answered with ``error`` before plugin code."""
    public: ClassVar[bool] = False
    """Whether the plugin shows events to browsers without a token: it then reads the
    delayed public view (``context.public_events``) instead of the live bus."""
    channel_kind: ClassVar[ChannelKind] = ChannelKind.EVENTS
    """What the server channels do with a browser that reads too slowly."""
    link_detail: ClassVar[bool] = False
    """Whether ``link`` frames carry why a link is not up (admins' pages only: the reason
    can name hosts)."""
    log = Logger()

    def __init__(self, context: IPluginContext) -> None:
        self.context = context
        self.clock = context.reactor
        self.listeners: list[IListener] = []
        self.following: dict[int, str] = {}
        self.children: dict[int, tuple[IListener, IConnection]] = {}
        self.subscribed: dict[int, IChannel] = {}
        self._frame_buckets: dict[int, TokenBucket] = {}
        self._unsubscribe: list[Callable[[], object]] = []
        self._mounts: list[Any] = []
        self._bad: dict[int, TokenBucket] = {}
        self.quiet = RepeatLimiter(self.log)
        """This plugin's log for lines a browser can repeat at will (once a minute each)."""

    # -- life ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        for endpoint in self.context.endpoints:
            html = page(STATIC / f"{self.plugin}.html")
            self._mounts.append(self.context.mount(f"/{self.plugin}", html, endpoint=endpoint))
            listener = self.context.open(f"/{self.plugin}/ws", endpoint=endpoint,
                                         incoming=self._incoming_for_listener(endpoint))
            self.listeners.append(listener)
        for server in self.context.servers.values():
            self._unsubscribe.append(server.subscribe(partial(self.link_changed, server.name)))
        subscription = self.events.subscribe(self.event, name=f"plugin:{self.plugin}")
        self._unsubscribe.append(subscription.cancel)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        closing = [lst.close() for lst in self.listeners] + [m.close() for m in self._mounts]
        self.listeners, self._mounts = [], []
        return DeferredList(closing).addCallback(lambda _: None)

    @property
    def events(self) -> Any:
        """The event bus this plugin shows: the public (delayed) one if :attr:`public`."""
        return self.context.public_events if self.public else self.context.events

    # -- connections -----------------------------------------------------------

    def _incoming_for_listener(self, endpoint: str) -> Callable[[IConnection], Any]:
        def incoming(child: IConnection) -> Any:
            if SUBPROTOCOL in child.request.protocols:
                child.select_subprotocol(SUBPROTOCOL)
            listener = self.listeners[self.context.endpoints.index(endpoint)]
            self.children[child.id] = (listener, child)
            child.hook(on_open=self._opened, on_message=self._message,
                       on_disconnect=self._gone)
            return self.admit(child)

        return incoming

    def admit(self, child: IConnection) -> Any:
        """Vet a new child before its handshake (override to check more)."""
        return None

    def _opened(self, child: IConnection) -> None:
        self.opened(child)

    def opened(self, child: IConnection) -> None:
        """A child is open: by default, greet it and follow the first server."""
        self.follow(child, self.default_server())

    def _gone(self, child: IConnection, code: int | None, reason: str) -> None:
        self.following.pop(child.id, None)
        self.children.pop(child.id, None)
        self.subscribed.pop(child.id, None)
        self._bad.pop(child.id, None)
        self._frame_buckets.pop(child.id, None)
        self.gone(child)

    def gone(self, child: IConnection) -> None:
        """A child has gone (override to forget per-child state)."""

    def _message(self, child: IConnection, data: str | bytes) -> None:
        now = self.clock.seconds()
        bucket = self._frame_buckets.get(child.id)
        if bucket is None:
            bucket = self._frame_buckets[child.id] = TokenBucket(2 * FRAME_RATE,
                                                                 1 / FRAME_RATE, now)
        if bucket.take(now) > 0:  # what follows until the close is ignored
            if child.ready_state is ReadyState.OPEN:
                self.quiet.emit(LogLevel.info, "{plugin}: closing {peer}: over {rate:g} frames "
                                "a second", kind=child.request.peer_host, plugin=self.plugin,
                                peer=child.request.peer, rate=FRAME_RATE)
                child.close(1008, "sending too fast")
            return
        frame, why = read_frame(data, self.frames)
        if frame is None:
            self.bad_frame(child, why)
            return
        if frame["type"] == "select" and self.may_select(child):
            if frame.get("server") not in self.context.servers:
                self.bad_frame(child, "unknown server")
            else:
                self.follow(child, frame["server"])
            return
        try:
            self.frame(child, frame)
        except Exception:
            failure = Failure()
            self.quiet.emit(LogLevel.error, "{plugin}: a {type} frame failed", failure=failure,
                            kind=(frame["type"], failure.type), plugin=self.plugin,
                            type=frame["type"])
            self.send(child, {"type": "error", "reason": "internal error"})

    def bad_frame(self, child: IConnection, reason: str) -> None:
        """Answer a frame that breaks the protocol (or a rate limit) with ``error``; a
        connection that keeps sending them is closed with 1008."""
        self.send(child, {"type": "error", "reason": reason})
        now = self.clock.seconds()
        bucket = self._bad.setdefault(child.id, TokenBucket(BAD_FRAMES_BURST,
                                                            BAD_FRAMES_INTERVAL, now))
        if bucket.take(now) > 0:
            child.close(1008, "too many bad frames")

    def may_select(self, child: IConnection) -> bool:
        """Whether ``child`` may follow another server now (override to require a login)."""
        return True

    def frame(self, child: IConnection, frame: dict[str, Any]) -> None:
        """A JSON frame from ``child`` other than ``select``."""
        self.send(child, {"type": "error", "reason": f"unknown frame type {frame['type']!r}"})

    # -- servers ---------------------------------------------------------------

    def default_server(self) -> str | None:
        return next(iter(self.context.servers), None)

    def follow(self, child: IConnection, server: str | None) -> None:
        """Make ``child`` follow ``server``: greet it, send the link state, the opening frames."""
        if server is not None:
            self.following[child.id] = server
            self.subscribe(child, server)
        self.send(child, {"type": "hello", "plugin": self.plugin, "version": PROTOCOL_VERSION,
                          "servers": list(self.context.servers), "server": server})
        if server is not None:
            game = self.context.servers[server]
            self.send(child, self.link_frame(server, game.state))
            self.joined(child, server)

    def joined(self, child: IConnection, server: str) -> None:
        """``child`` now follows ``server``: send it what it needs to start."""

    def followers(self, server: str) -> list[tuple[IListener, IConnection]]:
        return [self.children[cid] for cid, s in self.following.items()
                if s == server and cid in self.children]

    # -- channels: one per server and listener, or more (see channel_names) -----

    def channel_names(self, server: str) -> tuple[str, ...]:
        """Every channel name of ``server``'s followers (override with channel_for)."""
        return (server,)

    def channel_for(self, child: IConnection, server: str) -> str:
        """The channel ``child`` joins to follow ``server``."""
        return server

    def channel(self, listener: IListener, name: str) -> IChannel:
        return listener.channel(
            name, self.channel_kind,
            catch_up=self.catch_up if self.channel_kind is ChannelKind.STATE else None)

    def subscribe(self, child: IConnection, server: str) -> None:
        """Put ``child`` in the channel it should be in to follow ``server``."""
        entry = self.children.get(child.id)
        if entry is None:
            return
        channel = self.channel(entry[0], self.channel_for(child, server))
        old = self.subscribed.get(child.id)
        if old is not channel:
            if old is not None:
                old.unsubscribe(child)
            channel.subscribe(child)
            self.subscribed[child.id] = channel

    def catch_up(self, child: IConnection) -> None:
        """A follower of a STATE channel missed frames and can take more (override)."""

    def link_frame(self, server: str, state: Any) -> dict[str, Any]:
        game = self.context.servers.get(server)
        detail = None
        if self.link_detail and game is not None and link_state_name(state) != "connected":
            detail = game.status().detail
        return {"type": "link", "server": server, "state": link_state_name(state),
                "detail": detail, "stale": bool(getattr(game, "stale", False))}

    def link_changed(self, server: str, state: Any) -> None:
        self.broadcast(server, self.link_frame(server, state))

    def event(self, envelope: Envelope) -> None:
        """An event from the bus (override)."""

    # -- users' requests ---------------------------------------------------------

    def connection_key(self, child: IConnection) -> str:
        """``child``'s name in a :class:`Request` (unique in this process)."""
        return str(child.id)

    def submit(self, server: str, request: Request) -> Deferred[dict[str, Any]]:
        """Have ``request`` applied where ``server``'s game link is: here (:meth:`apply`),
        or on the origin when this instance is a fan-out edge; fire with the reply."""
        game = self.context.servers.get(server)
        if game is None or not IRequestForwarder.providedBy(game):
            return self.apply(server, request)
        d: Deferred[dict[str, Any]] = game.forward(self.plugin, server, request)
        return d.addErrback(lambda f: self.unanswered(f.getErrorMessage()))

    def apply(self, server: str, request: Request) -> Deferred[dict[str, Any]]:
        """Check and run a user's request here (override; see ``IRequestHandler``)."""
        raise NotImplementedError

    def unanswered(self, reason: str) -> dict[str, Any]:
        """The reply when a forwarded request got none (override)."""
        return {"error": reason}

    # -- sending ---------------------------------------------------------------

    @staticmethod
    def encode(frame: dict[str, Any]) -> str:
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))

    def send(self, child: IConnection, frame: dict[str, Any]) -> None:
        child.send_text(self.encode(frame))

    def broadcast(self, server: str, frame: dict[str, Any]) -> None:
        """Send ``frame`` to every follower of ``server``, encoding and framing once."""
        self.publish(self.channel_names(server), frame)

    def publish(self, names: tuple[str, ...], frame: dict[str, Any]) -> None:
        """Send ``frame`` on the channels ``names`` of every listener, encoding once."""
        text = self.encode(frame)
        for listener in self.listeners:
            for name in names:
                self.channel(listener, name).publish(text)
