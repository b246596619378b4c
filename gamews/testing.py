"""A test kit for gamews plugins: drive a plugin's service with no sockets and no real time.

What ``twisted.internet.testing`` and ``autobahn.twisted.testing`` give their users, for
plugins: a :class:`PluginTestContext` (an :class:`gamews.api.IPluginContext` on a
``MemoryReactorClock``, with a real :class:`gamews.api.EventBus`), a
:class:`ScriptedGameServer` (feed it typed events or log lines, change its link state,
script its RCON answers) and a :class:`FakeBrowser` (a child connection that records every
frame the plugin sends it). A trial test of a plugin reads::

    from twisted.trial.unittest import SynchronousTestCase
    from gamews.api import Chat, Player
    from gamews.testing import PluginTestContext

    class ShoutTests(SynchronousTestCase):
        def test_shouts(self) -> None:
            context = PluginTestContext.for_plugin(Shout(), {"max_length": 10})
            game = context.add_server("alpha")
            service = Shout().make_service(context)
            service.startService()
            browser = context.connect("/shout")
            browser.receive("gg")
            self.assertEqual(browser.frames, ["GG"])
            game.feed(Chat(Player("Sarge", "bot:2"), "hi"))
            context.reactor.advance(1)          # time moves only when the test says

The listeners, channels and mounts here stand in for the real shared-port registry (which
gamews tests over real sockets); what is under test is the plugin's own logic.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from zope.interface import implementer

from gamews.api import (
    ChannelKind,
    ConnectionRequest,
    Envelope,
    Event,
    EventBus,
    IChannel,
    IChildHandler,
    IConnection,
    IGameServer,
    IGamewsPlugin,
    IListener,
    IListenerHandler,
    IMount,
    IPluginContext,
    LinkState,
    ReadyState,
)
from gamews.rcon.server import GameServerStatus
from gamews.spectator import PublicEvents, SpectatorConfig

__all__ = [
    "FakeBrowser",
    "FakeChannel",
    "FakeListener",
    "FakeMount",
    "PluginTestContext",
    "ScriptedGameServer",
]

_ids = itertools.count(1)


@implementer(IConnection)
class FakeBrowser:
    """A browser's connection as a plugin sees it; records what the plugin sends.

    ``frames`` holds every message sent to it (``str`` or ``bytes``) in order; ``sent``
    the text ones that are JSON, decoded. Drive it with :meth:`open`, :meth:`receive`
    and :meth:`drop`; ``closed`` is the ``(code, reason)`` the plugin closed or rejected
    it with.
    """

    def __init__(self, peer_host: str = "127.0.0.1", protocols: tuple[str, ...] = (), *,
                 path: str = "/", query: Mapping[str, list[str]] | None = None,
                 headers: Mapping[str, str] | None = None, origin: str | None = None) -> None:
        self.id = next(_ids)
        self.request = ConnectionRequest(path=path, query=dict(query or {}),
                                         headers=dict(headers or {}),
                                         peer=f"tcp4:{peer_host}:1", peer_host=peer_host,
                                         origin=origin, protocols=protocols)
        self.ready_state = ReadyState.CONNECTING
        self.subprotocol: str | None = None
        self.hooked = False
        self.frames: list[str | bytes] = []
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.callbacks: dict[str, Callable[..., object] | None] = {}

    def __repr__(self) -> str:
        return f"<FakeBrowser #{self.id} {self.ready_state.name}>"

    def hook(self, on_message: Callable[..., object] | None = None,
             on_disconnect: Callable[..., object] | None = None,
             on_error: Callable[..., object] | None = None,
             on_open: Callable[..., object] | None = None, *,
             handler: IChildHandler | None = None) -> None:
        if handler is not None:
            on_message, on_disconnect = handler.on_message, handler.on_disconnect
            on_error, on_open = handler.on_error, handler.on_open
        self.hooked = True
        self.callbacks = {"message": on_message, "disconnect": on_disconnect,
                          "error": on_error, "open": on_open}

    def unhook(self) -> None:
        self.hooked = False
        self.callbacks = {}

    def select_subprotocol(self, name: str) -> None:
        if name not in self.request.protocols:
            raise ValueError(f"{name!r} was not offered")
        self.subprotocol = name

    def reject(self, status: int = 403, reason: str = "") -> None:
        self.closed = (status, reason)

    def send_text(self, text: str) -> bool:
        if self.ready_state is not ReadyState.OPEN:
            return False
        self.frames.append(text)
        try:
            self.sent.append(json.loads(text))
        except (ValueError, RecursionError):  # not JSON, or nested too deep to decode
            pass
        return True

    def send_binary(self, data: bytes) -> bool:
        if self.ready_state is not ReadyState.OPEN:
            return False
        self.frames.append(bytes(data))
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        if self.ready_state is not ReadyState.CLOSED:
            self.ready_state = ReadyState.CLOSING

    # -- driving it from a test ---------------------------------------------------------

    def _call(self, name: str, *args: object) -> None:
        callback = self.callbacks.get(name)
        if callback is not None:
            callback(self, *args)

    def open(self) -> None:
        """Complete the handshake (the plugin's ``on_open`` runs)."""
        self.ready_state = ReadyState.OPEN
        self._call("open")

    def receive(self, frame: Mapping[str, Any] | str | bytes) -> None:
        """Deliver a message: ``str`` or ``bytes`` as they are, a mapping as JSON text."""
        data = frame if isinstance(frame, str | bytes) else json.dumps(frame)
        self._call("message", data)

    def drop(self, code: int = 1001, reason: str = "") -> None:
        """The connection goes away (the plugin's ``on_disconnect`` runs)."""
        self.ready_state = ReadyState.CLOSED
        self._call("disconnect", code, reason)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The JSON frames sent to it with ``"type": kind``."""
        return [f for f in self.sent if f.get("type") == kind]


@implementer(IListener)
class FakeListener:
    """A listener that offers children to the plugin; broadcasts send to each."""

    def __init__(self, endpoint: str, path: str, owner: str,
                 incoming: Callable[[IConnection], object] | None) -> None:
        self.endpoint, self.path, self.owner = endpoint, path, owner
        self.incoming = incoming
        self.active = True
        self.broadcasts = 0
        """How many times the plugin sent one message to many (broadcast or publish)."""
        self.channels: dict[str, FakeChannel] = {}
        self.children: list[FakeBrowser] = []

    def connect(self, child: FakeBrowser | None = None) -> FakeBrowser:
        """A new browser asks: it is offered to the plugin, and opened if hooked."""
        child = child or FakeBrowser(path=self.path)
        self.children.append(child)
        if self.incoming is not None:
            self.incoming(child)
        if child.hooked and child.closed is None:
            child.open()
        return child

    def when_listening(self) -> Deferred[Any]:
        return succeed(None)

    def connections(self) -> list[IConnection]:
        return [c for c in self.children if c.hooked and c.ready_state is not ReadyState.CLOSED]

    def broadcast(self, data: str | bytes, to: Iterable[IConnection] | None = None) -> int:
        self.broadcasts += 1
        sent = 0
        for child in (self.connections() if to is None else to):
            sent += (child.send_text(data) if isinstance(data, str)
                     else child.send_binary(data))
        return sent

    def channel(self, name: str, kind: ChannelKind = ChannelKind.EVENTS, *,
                catch_up: Callable[[IConnection], object] | None = None) -> IChannel:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = FakeChannel(self, name, kind)
        elif channel.kind is not kind:
            raise ValueError(f"channel {name!r} is already a {channel.kind.name} channel")
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


@implementer(IMount)
class FakeMount:
    """A mounted resource, kept for the test to look at (``resource``)."""

    def __init__(self, endpoint: str, path: str, resource: IResource) -> None:
        self.endpoint, self.path, self.resource = endpoint, path, resource
        self.active = True

    def when_listening(self) -> Deferred[Any]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.active = False
        return succeed(None)


@implementer(IGameServer)
class ScriptedGameServer:
    """A game server whose events, link state and RCON answers the test scripts.

    :meth:`answer` sets the reply to a command (text, an exception, or a function of the
    command); an unscripted command stays pending in :attr:`replies` for the test to fire.
    Every command is recorded in :attr:`commands`. Attached to a context
    (:meth:`PluginTestContext.add_server`), :meth:`feed` publishes events on its bus.
    """

    def __init__(self, name: str = "alpha", kind: str = "source", *,
                 events: EventBus | None = None) -> None:
        self.name = name
        self.kind = kind
        self.state = LinkState.UP
        self.detail: str | None = None
        """Why the link is not up (:meth:`set_state`), as ``status().detail``."""
        self.stale = False
        self.events = events
        self.commands: list[str] = []
        self.replies: list[Deferred[str]] = []
        """The pending replies of unscripted commands, in order."""
        self._answers: dict[str, str | BaseException | Callable[[str], str]] = {}
        self._subscribers: list[Callable[[LinkState], object]] = []

    def __repr__(self) -> str:
        return f"<ScriptedGameServer {self.name} {self.state.value}>"

    # -- IGameServer ----------------------------------------------------------------------

    def rcon(self, command: str) -> Deferred[str]:
        self.commands.append(command)
        answer = self._answers.get(command, self._answers.get("*"))
        if isinstance(answer, BaseException):
            return fail(answer)
        if callable(answer):
            return succeed(answer(command))
        if answer is not None:
            return succeed(answer)
        d: Deferred[str] = Deferred()
        self.replies.append(d)
        return d

    def subscribe(self, callback: Callable[[LinkState], object]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def status(self) -> GameServerStatus:
        return GameServerStatus(self.name, self.kind, "127.0.0.1:27015",  # type: ignore[arg-type]
                                self.state, 0.0, self.detail, len(self.replies))

    # -- scripting --------------------------------------------------------------------------

    def answer(self, command: str, reply: str | BaseException | Callable[[str], str]) -> None:
        """Answer ``command`` (``"*"``: any command not scripted otherwise) with ``reply``:
        text, an exception to fail with, or a function of the command giving the text."""
        self._answers[command] = reply

    def set_state(self, state: LinkState, detail: str | None = None) -> None:
        """Change the link state (``detail``: why it is not up); subscribers are told at
        once."""
        self.state = state
        self.detail = detail
        for callback in list(self._subscribers):
            callback(state)

    def feed(self, *events: Event) -> list[Envelope]:
        """Publish typed events as this server on the context's bus; the envelopes."""
        if self.events is None:
            raise RuntimeError("add the server to a PluginTestContext first")
        return [self.events.publish(self.name, event) for event in events]

    def feed_log(self, *lines: str) -> list[Envelope]:
        """Parse log lines (Source or Quake 3, and ``gamews CHANNEL JSON`` bridge lines)
        and publish their events, as gamews does with a log stream."""
        from gamews.logs.bridge import Rejected, parse_bridge_line
        from gamews.logs.service import parse_any

        events: list[Event] = []
        for line in lines:
            bridged = parse_bridge_line(line)
            if not isinstance(bridged, Rejected):
                events.append(bridged if bridged is not None else parse_any(line))
        return self.feed(*events)


@implementer(IPluginContext)
class PluginTestContext:
    """A plugin context on a ``MemoryReactorClock`` with a real event bus.

    Make one with :meth:`for_plugin` to have the plugin's settings checked and set
    (``context.settings``), or directly with a ``config`` table and ``settings``.

    ``reactor`` is both the clock (``reactor.advance(seconds)``) and a memory reactor
    (``reactor.tcpClients`` shows what the plugin tried to connect to). ``listeners``
    and ``mounts`` record what the plugin opened; :meth:`connect` opens a
    :class:`FakeBrowser` on one of its paths.
    """

    def __init__(self, name: str = "plugin", config: Mapping[str, Any] | None = None,
                 servers: Mapping[str, ScriptedGameServer] | None = None,
                 base_dir: Path | None = None, *,
                 endpoints: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",),
                 settings: Any = None, spectator: SpectatorConfig | None = None) -> None:
        self.name = name
        self.config: Mapping[str, Any] = dict(config or {})
        self.settings = settings
        self.reactor = MemoryReactorClock()  # type: ignore[no-untyped-call]
        self.endpoints = endpoints
        self.events = EventBus(self.reactor)
        self.public_events = PublicEvents(self.events, spectator)
        """The public (delayed) view of :attr:`events` (``spectator``: its delay and
        team chat rule, ``[spectator]``)."""
        self.spectator_delay = self.public_events.delay
        self.servers: dict[str, ScriptedGameServer] = {}
        self.base_dir = base_dir
        self.listeners: list[FakeListener] = []
        self.mounts: list[FakeMount] = []
        for server in (servers or {}).values():
            self.add_server(server)

    @classmethod
    def for_plugin(cls, plugin: IGamewsPlugin, table: Mapping[str, Any] | None = None, *,
                   servers: Mapping[str, ScriptedGameServer] | None = None,
                   base_dir: Path | None = None,
                   endpoints: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",),
                   spectator: SpectatorConfig | None = None) -> PluginTestContext:
        """A context for ``plugin`` with its ``[plugin.NAME]`` ``table`` checked as gamews
        checks it (``context.settings``); a bad key raises :class:`ConfigError` naming
        ``plugin.NAME.KEY``."""
        from gamews.plugin_settings import plugin_settings

        settings_type = getattr(plugin, "settings_type", None)
        settings = (plugin_settings(plugin.name, settings_type, table or {}, base_dir=base_dir)
                    if settings_type is not None else None)
        if spectator is None and plugin.name in ("live", "overlay"):  # the older spelling
            spectator = SpectatorConfig.from_tables(None, table)
        return cls(plugin.name, table, servers, base_dir, endpoints=endpoints,
                   settings=settings, spectator=spectator)

    def add_server(self, server: str | ScriptedGameServer, kind: str = "source"
                   ) -> ScriptedGameServer:
        """Add a game server (a name, or a :class:`ScriptedGameServer`) fed by this
        context's bus; returns it."""
        game = server if isinstance(server, ScriptedGameServer) else ScriptedGameServer(
            server, kind)
        game.events = self.events
        self.servers[game.name] = game
        self.events.add_server(game.name)
        return game

    def open(self, path: str, *, endpoint: str | None = None,
             incoming: Callable[[IConnection], Any] | None = None,
             error: Callable[[IListener, Failure], object] | None = None,
             closed: Callable[[IListener], object] | None = None,
             handler: IListenerHandler | None = None) -> IListener:
        if handler is not None:
            incoming = handler.incoming
        listener = FakeListener(endpoint or self.endpoints[0], path, self.name, incoming)
        self.listeners.append(listener)
        return listener

    def mount(self, path: str, resource: IResource, *, endpoint: str | None = None) -> IMount:
        mount = FakeMount(endpoint or self.endpoints[0], path, resource)
        self.mounts.append(mount)
        return mount

    def listener(self, path: str) -> FakeListener:
        """The active listener the plugin opened on ``path`` (``LookupError`` if none)."""
        for listener in self.listeners:
            if listener.path == path and listener.active:
                return listener
        raise LookupError(f"the plugin listens on no {path!r}")

    def connect(self, path: str, **request: Any) -> FakeBrowser:
        """A browser connects to ``path`` (``request``: :class:`FakeBrowser`'s keywords,
        such as ``query``, ``headers``, ``protocols``); offered, and opened if hooked."""
        return self.listener(path).connect(FakeBrowser(path=path, **request))
