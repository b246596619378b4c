"""In-memory stand-ins for the plugin-facing API, to test plugin logic on a Clock.

These fake only what gamews itself provides to plugins (listeners, children, the
plugin context, a game server link): the real ones are tested over real sockets
elsewhere, and here the plugins' decisions are what is under test.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from gamews.api import (
    ChannelKind,
    ConnectionRequest,
    IChannel,
    IConnection,
    IListener,
    IPluginContext,
    ReadyState,
)
from gamews.events import EventBus
from gamews.rcon.link import LinkState
from gamews.settings import PluginSettings, available_plugins
from gamews.spectator import PublicEvents, SpectatorConfig

_ids = itertools.count(1)


@implementer(IConnection)
class FakeChild:
    """A child connection that records what a plugin sends it."""

    def __init__(self, peer_host: str = "127.0.0.1", protocols: tuple[str, ...] = ()) -> None:
        self.id = next(_ids)
        self.request = ConnectionRequest(path="/x/ws", query={}, headers={},
                                         peer=f"tcp4:{peer_host}:1", peer_host=peer_host,
                                         origin=None, protocols=protocols)
        self.ready_state = ReadyState.CONNECTING
        self.subprotocol: str | None = None
        self.hooked = False
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.callbacks: dict[str, Any] = {}

    def hook(self, on_message: Any = None, on_disconnect: Any = None, on_error: Any = None,
             on_open: Any = None, *, handler: Any = None) -> None:
        self.hooked = True
        self.callbacks = {"message": on_message, "disconnect": on_disconnect,
                          "open": on_open}

    def unhook(self) -> None:
        self.hooked = False

    def select_subprotocol(self, name: str) -> None:
        self.subprotocol = name

    def reject(self, status: int = 403, reason: str = "") -> None:
        self.closed = (status, reason)

    def send_text(self, text: str) -> bool:
        if self.ready_state is not ReadyState.OPEN:
            return False
        self.sent.append(json.loads(text))
        return True

    def send_binary(self, data: bytes) -> bool:
        raise AssertionError("the page plugins send text only")

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.ready_state = ReadyState.CLOSING

    # driving it from a test

    def open(self) -> None:
        self.ready_state = ReadyState.OPEN
        if self.callbacks.get("open"):
            self.callbacks["open"](self)

    def receive(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        self.callbacks["message"](self, text)

    def drop(self) -> None:
        self.ready_state = ReadyState.CLOSED
        if self.callbacks.get("disconnect"):
            self.callbacks["disconnect"](self, 1001, "")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("type") == kind]


@implementer(IListener)
class FakeListener:
    """A listener that hands children to the plugin and broadcasts by sending to each."""

    def __init__(self, endpoint: str, path: str, owner: str,
                 incoming: Callable[[IConnection], Any]) -> None:
        self.endpoint, self.path, self.owner = endpoint, path, owner
        self.incoming = incoming
        self.active = True
        self.broadcasts = 0
        self.channels: dict[str, FakeChannel] = {}

    def connect(self, child: FakeChild | None = None) -> FakeChild:
        """A new child: offered to the plugin, then opened if hooked."""
        child = child or FakeChild()
        self.incoming(child)
        if child.hooked:
            child.open()
        return child

    def when_listening(self) -> Deferred[Any]:
        return succeed(None)

    def connections(self) -> list[IConnection]:
        return []

    def broadcast(self, data: str | bytes, to: Iterable[IConnection] | None = None) -> int:
        self.broadcasts += 1
        sent = 0
        for child in to or []:
            assert isinstance(data, str)
            sent += child.send_text(data)
        return sent

    def channel(self, name: str, kind: ChannelKind = ChannelKind.EVENTS, *,
                catch_up: Callable[[IConnection], object] | None = None) -> IChannel:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = FakeChannel(self, name, kind)
        return channel

    def close(self) -> Deferred[None]:
        self.active = False
        return succeed(None)


@implementer(IChannel)
class FakeChannel:
    """A channel that publishes by sending to each subscriber (counted as a broadcast)."""

    def __init__(self, listener: FakeListener, name: str, kind: ChannelKind) -> None:
        self.listener, self.name, self.kind = listener, name, kind
        self.members: dict[int, IConnection] = {}

    def subscribe(self, child: IConnection) -> None:
        self.members[child.id] = child

    def unsubscribe(self, child: IConnection) -> None:
        self.members.pop(child.id, None)

    def subscribers(self) -> list[IConnection]:
        return [c for c in self.members.values() if c.ready_state is not ReadyState.CLOSED]

    def publish(self, data: str | bytes) -> int:
        subscribers = self.subscribers()
        return self.listener.broadcast(data, subscribers) if subscribers else 0


class FakeMount:
    def close(self) -> Deferred[None]:
        return succeed(None)


@implementer(IPluginContext)
class FakeContext:
    """A plugin context on a Clock, with an event bus and fake game servers; ``config``
    is checked against the built-in plugin ``name``'s settings."""

    def __init__(self, name: str, config: dict[str, Any], servers: dict[str, Any],
                 base_dir: Path | None = None, *, delay: float | None = None,
                 team_chat: str = "hidden") -> None:
        self.name = name
        self.config = config
        plugin = available_plugins()[name]
        self.settings = PluginSettings.of(plugin, config, base_dir=base_dir).settings
        self.reactor = Clock()
        self.endpoints = ("tcp:8080",)
        self.servers = servers
        self.events = EventBus(self.reactor)
        self.public_events = PublicEvents(self.events, SpectatorConfig.from_tables(
            {"team_chat": team_chat, **({} if delay is None else {"delay": delay})},
            config if name == "live" else None))
        self.spectator_delay = self.public_events.delay
        self.base_dir = base_dir
        self.listeners: list[FakeListener] = []

    def open(self, path: str, *, endpoint: str | None = None, incoming: Any = None,
             error: Any = None, closed: Any = None, handler: Any = None) -> IListener:
        listener = FakeListener(endpoint or self.endpoints[0], path, self.name, incoming)
        self.listeners.append(listener)
        return listener

    def mount(self, path: str, resource: Any, *, endpoint: str | None = None) -> Any:
        return FakeMount()


class FakeGameServer:
    """A game server link whose replies the test controls."""

    def __init__(self, name: str = "alpha", kind: str = "source") -> None:
        self.name = name
        self.kind = kind
        self.state = LinkState.UP
        self.commands: list[str] = []
        self.replies: list[Deferred[str]] = []
        self._subscribers: list[Callable[[LinkState], object]] = []

    def rcon(self, command: str) -> Deferred[str]:
        self.commands.append(command)
        d: Deferred[str] = Deferred()
        self.replies.append(d)
        return d

    def subscribe(self, callback: Callable[[LinkState], object]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def set_state(self, state: LinkState) -> None:
        self.state = state
        for callback in list(self._subscribers):
            callback(state)
