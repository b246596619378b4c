"""The public surface of gamews: everything a plugin imports comes from here.

The contract is the one of the SourceMod WebSocket plugin gamews descends from,
in Pythonic form:

- ``Websocket_Open(ip, port, inc, err, close)``: ``context.open(path, incoming=,
  error=, closed=)`` or ``registry.open(endpoint, path, ...)``, giving an
  :class:`IListener`
- the incoming child callback: ``incoming(child: IConnection)``
- ``Websocket_HookChild(child, recv, disc, err)``: ``child.hook(on_message=,
  on_disconnect=, on_error=, on_open=)``
- ``Websocket_Send(child, type, data)``: ``child.send_text(str)`` or
  ``child.send_binary(bytes)``
- ``Websocket_GetReadyState(child)``: ``child.ready_state`` (:class:`ReadyState`)
- ``Websocket_UnhookChild(child)``: ``child.unhook()``
- ``Websocket_Close(listener)``: ``listener.close()``, giving a ``Deferred``

Besides the WebSocket contract, it exports what a plugin reads and drives: the game
servers (:class:`IGameServer`, :class:`LinkState`), the event bus (:class:`EventBus`,
:class:`Subscription`), the typed events (:class:`Event` and one dataclass per type, such
as :class:`Kill` or :class:`Custom`; :data:`EVENT_TYPES` maps each ``type`` to its class)
in their :class:`Envelope`, and the per-server :class:`MatchState`.

Event subscribers
=================

``context.events.subscribe(callback, server=None)`` calls ``callback(envelope)`` with
every following :class:`Envelope`, in ``seq`` order. The rules a subscriber lives by:

- A callback that raises, or returns a Deferred that fails, is logged with its
  traceback; after ``max_failures`` (3) failures **in a row** the subscription is
  cancelled (logged as an error): a plugin that always fails stops being called rather
  than flooding the log. One success resets the count.
- A callback may return a Deferred: the subscriber is busy until it fires and its
  events wait in a bounded queue (``queue_size``, 1000 by default); when the queue is
  full the oldest waiting event is dropped and counted in ``Subscription.dropped``, so
  the subscriber sees a gap in ``seq`` (and may take a fresh snapshot).
- Other subscribers and the log stream are never held up by one subscriber.

Plugins provide :class:`IGamewsPlugin` and are found through Twisted's plugin system (a
module in a ``twisted/plugins/`` directory on ``sys.path``) or through the
``gamews.plugins`` entry-point group (see :mod:`gamews.discovery`). A plugin declares
its settings (``settings_type``, a frozen dataclass; :func:`setting` for bounds): gamews
checks its ``[plugin.NAME]`` table before anything starts, and errors name
``plugin.NAME.KEY`` by themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface

from gamews.auth import TokenProof, TokenStore, User
from gamews.errors import ConfigError, EndpointConflictError
from gamews.events import (
    EVENT_TYPES,
    Assist,
    Chat,
    Connected,
    Custom,
    Damage,
    Disconnected,
    Entered,
    Envelope,
    Event,
    EventBus,
    GameShutdown,
    ItemPickup,
    Kill,
    MapChange,
    MatchEnd,
    MatchStart,
    MatchState,
    NameChange,
    Player,
    PlayerInfo,
    PlayerScore,
    PlayerState,
    PlayerTriggered,
    PointCaptured,
    RconSeen,
    RoundEnd,
    RoundStart,
    ServerCvar,
    ServerStatus,
    StatusPlayer,
    Subscriber,
    Subscription,
    Suicide,
    TeamChange,
    TeamScore,
    TeamScores,
    TeamTriggered,
    Unknown,
    WorldKill,
    WorldTriggered,
    event_fields,
)
from gamews.logs.bridge import valid_channel
from gamews.plugin_settings import setting, settings_from_table
from gamews.quietlog import RepeatLimiter
from gamews.ratelimit import TokenBucket
from gamews.rcon.commands import change_map, clean_text, kick, kick_slot, say
from gamews.rcon.link import LinkState
from gamews.rcon.server import IGameServer
from gamews.redact import redact_command, truncate
from gamews.throttle import LoginThrottle, ThrottleConfig
from gamews.view import diff_views, view_of

if TYPE_CHECKING:
    from pathlib import Path

    from twisted.application.service import IService
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IAddress
    from twisted.python.failure import Failure
    from twisted.web.resource import IResource

__all__ = [
    "EVENT_TYPES",
    "Assist",
    "ChannelKind",
    "Chat",
    "ChildCallback",
    "ConfigError",
    "Connected",
    "ConnectionRequest",
    "Custom",
    "Damage",
    "DisconnectCallback",
    "Disconnected",
    "EndpointConflictError",
    "Entered",
    "Envelope",
    "ErrorCallback",
    "Event",
    "EventBus",
    "GameShutdown",
    "IChannel",
    "IChildHandler",
    "IConnection",
    "IGameServer",
    "IGamewsPlugin",
    "IListener",
    "IListenerHandler",
    "IMount",
    "IPluginContext",
    "IRequestForwarder",
    "IRequestHandler",
    "ISettingsReloadable",
    "IncomingCallback",
    "ItemPickup",
    "Kill",
    "LinkState",
    "LoginThrottle",
    "MapChange",
    "MatchEnd",
    "MatchStart",
    "MatchState",
    "MessageCallback",
    "NameChange",
    "Player",
    "PlayerInfo",
    "PlayerScore",
    "PlayerState",
    "PlayerTriggered",
    "PointCaptured",
    "RconSeen",
    "ReadyState",
    "RepeatLimiter",
    "Request",
    "RoundEnd",
    "RoundStart",
    "ServerCvar",
    "ServerStatus",
    "StatusPlayer",
    "Subscriber",
    "Subscription",
    "Suicide",
    "TeamChange",
    "TeamScore",
    "TeamScores",
    "TeamTriggered",
    "ThrottleConfig",
    "TokenBucket",
    "TokenProof",
    "TokenStore",
    "Unknown",
    "User",
    "WebSocketError",
    "WorldKill",
    "WorldTriggered",
    "change_map",
    "clean_text",
    "diff_views",
    "event_fields",
    "kick",
    "kick_slot",
    "page",
    "redact_command",
    "say",
    "setting",
    "settings_from_table",
    "truncate",
    "valid_channel",
    "view_of",
]


class ReadyState(enum.IntEnum):
    """A child connection's state; the values match the browser's ``WebSocket.readyState``."""

    CONNECTING = 0
    """Offered to plugins; the opening handshake has not been answered yet."""
    OPEN = 1
    """Handshake done; messages flow both ways."""
    CLOSING = 2
    """A close frame has been sent or received; nothing more can be sent."""
    CLOSED = 3
    """The TCP connection is gone."""


class ChannelKind(enum.Enum):
    """What a channel does with a subscriber that reads too slowly."""

    EVENTS = "events"
    """Every message matters (chat, a console, an event feed): a subscriber with
    more than ``max_send_buffer`` bytes waiting is closed with 1008."""
    STATE = "state"
    """Only the latest state matters (a scoreboard, a game-state tick): while a
    subscriber's socket is full its messages are skipped, and when it drains it
    is caught up once (``catch_up``, or the last message published)."""


class WebSocketError(Exception):
    """A child connection ended abnormally: ``code`` is the RFC 6455 close code
    (1002 protocol error, 1007 invalid UTF-8, 1009 too big, 1006 dropped, …)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class ConnectionRequest:
    """What a browser asked for in its opening handshake."""

    path: str
    """The URL path, such as ``/chat``."""
    query: Mapping[str, list[str]]
    """Query parameters, each name mapped to all its values."""
    headers: Mapping[str, str]
    """HTTP request headers with lower-case names."""
    peer: str
    """The peer's address as text: ``tcp4:127.0.0.1:51234`` or ``unix``."""
    peer_host: str
    """The peer's IP address (after trusted proxies), used for per-IP limits."""
    origin: str | None
    """The ``Origin`` header, if the client sent one (browsers always do)."""
    protocols: tuple[str, ...] = field(default=())
    """The subprotocols the client offered, in its order of preference."""


IncomingCallback: TypeAlias = "Callable[[IConnection], Deferred[None] | None]"
ChildCallback: TypeAlias = "Callable[[IConnection], object]"
MessageCallback: TypeAlias = "Callable[[IConnection, str | bytes], object]"
DisconnectCallback: TypeAlias = "Callable[[IConnection, int | None, str], object]"
ErrorCallback: TypeAlias = "Callable[[IConnection, Failure], object]"


class IConnection(Interface):
    """A child WebSocket connection as one plugin sees it.

    Every plugin listening on a path gets its own ``IConnection`` for each
    child; ``id`` is the same in all of them. Hooks and unhooks are per plugin;
    the child is closed (1000) when the last plugin that hooked it unhooks.
    """

    id: int = Attribute("An integer unique to this child within the process.")
    request: ConnectionRequest = Attribute("The opening handshake (path, query, headers, peer).")
    ready_state: ReadyState = Attribute("The child's current :class:`ReadyState`.")
    subprotocol: str | None = Attribute("The subprotocol chosen for this child, if any.")
    hooked: bool = Attribute("Whether this plugin holds the child.")

    def hook(
        on_message: MessageCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        on_error: ErrorCallback | None = None,
        on_open: ChildCallback | None = None,
        *,
        handler: IChildHandler | None = None,
    ) -> None:
        """Hold this child and receive its events (callbacks, or ``handler``).

        Text messages arrive as ``str``, binary ones as ``bytes``, fragmented
        messages whole. ``on_open`` runs when the handshake completes;
        ``on_error`` gets a :class:`WebSocketError` failure when the child ends
        abnormally, followed by ``on_disconnect(child, code, reason)``, which
        always runs once. Hooking again replaces this plugin's callbacks.
        """

    def unhook() -> None:
        """Stop this plugin's callbacks; the child is closed when nobody holds it."""

    def select_subprotocol(name: str) -> None:
        """Answer the handshake with ``name``, one of ``request.protocols``.

        Only while CONNECTING; raises ``ValueError`` if ``name`` was not offered
        or another plugin already chose a different one.
        """

    def reject(status: int = 403, reason: str = "") -> None:
        """Refuse the child before the handshake completes with HTTP ``status`` (4xx)."""

    def send_text(text: str) -> bool:
        """Send a text message; ``False`` if the child is not OPEN.

        Raises ``ValueError`` above the configured maximum message size.
        """

    def send_binary(data: bytes) -> bool:
        """Send a binary message, byte-exact; ``False`` if the child is not OPEN."""

    def close(code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (or refuse the child if still CONNECTING)."""


class IChildHandler(Interface):
    """An object form of :meth:`IConnection.hook`'s callbacks."""

    def on_open(child: IConnection) -> object:
        """The handshake completed."""

    def on_message(child: IConnection, data: str | bytes) -> object:
        """A whole message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_error(child: IConnection, failure: Failure) -> object:
        """The child ended abnormally; ``failure.value`` is a :class:`WebSocketError`."""

    def on_disconnect(child: IConnection, code: int | None, reason: str) -> object:
        """The child is gone (always called once per hook)."""


class IListenerHandler(Interface):
    """An object form of the callbacks given to ``open``."""

    def incoming(child: IConnection) -> Deferred[None] | None:
        """A child asks to connect: hook it, reject it, or ignore it.

        May return a Deferred (for instance to check a token); the handshake is
        answered once every plugin on the path has decided. A child that no
        plugin hooks is refused with 403.
        """

    def error(listener: IListener, failure: Failure) -> object:
        """The listening port could not be opened, or failed."""

    def closed(listener: IListener) -> object:
        """The listening port went away while this listener was still open."""


class IListener(Interface):
    """One plugin's handle on a listening WebSocket path (seed: the master socket)."""

    endpoint: str = Attribute("The endpoint description as given to ``open``.")
    path: str = Attribute("The URL path, such as ``/echo``.")
    owner: str = Attribute("The name of the plugin that opened it.")
    active: bool = Attribute("False once closed.")

    def when_listening() -> Deferred[IAddress]:
        """Fire with the port's address once it listens (or fail if it cannot)."""

    def connections() -> list[IConnection]:
        """This plugin's view of the children it holds."""

    def broadcast(data: str | bytes, to: Iterable[IConnection] | None = None) -> int:
        """Send one message to many children, framing it once.

        ``to`` defaults to every child this plugin holds; children not OPEN are
        skipped. Text is ``str``, binary ``bytes``. Returns how many were sent
        to; raises ``ValueError`` above the maximum message size.
        """

    def channel(name: str, kind: ChannelKind = ChannelKind.EVENTS, *,
                catch_up: Callable[[IConnection], object] | None = None) -> IChannel:
        """This plugin's channel ``name`` on this listener, made on first use.

        ``kind`` says what happens to a subscriber that reads too slowly (see
        :class:`ChannelKind`). For a ``STATE`` channel, ``catch_up(child)`` runs
        when such a subscriber can take more, to send it what it needs (say, a
        fresh snapshot); without it the subscriber gets the last message
        published. Raises ``ValueError`` if ``name`` exists with another kind.
        """

    def close() -> Deferred[None]:
        """Stop this plugin's callbacks at once and release the port.

        The port stays open while other handles use it; the Deferred returned
        by the last close fires when the port has stopped listening.
        """


class IChannel(Interface):
    """A named group of children one plugin sends to in one call (a topic):
    "everyone watching server X". Made by :meth:`IListener.channel`."""

    name: str = Attribute("The channel's name, unique per listener.")
    kind: ChannelKind = Attribute("What the channel does with slow subscribers.")

    def subscribe(child: IConnection) -> None:
        """Add a child this plugin has hooked (``ValueError`` otherwise).

        A child leaves by itself when it is unhooked or gone.
        """

    def unsubscribe(child: IConnection) -> None:
        """Remove ``child`` (no error if it was not subscribed)."""

    def subscribers() -> list[IConnection]:
        """The children subscribed now."""

    def publish(data: str | bytes) -> int:
        """Send one message to every OPEN subscriber, encoded and framed once.

        Text is ``str``, binary ``bytes``. Returns how many it was sent to now
        plus how many it is still to be sent to; raises ``ValueError`` above the
        maximum message size. A publish to many subscribers is sent over several
        reactor turns of a few milliseconds, so the reactor (and a ticker's next
        tick) is never held long; a publish made meanwhile waits its turn (in
        order; on a ``STATE`` channel a waiting message gives way to a newer one).
        """


class IMount(Interface):
    """A plain HTTP resource (a page, a static directory) mounted on a shared port."""

    endpoint: str = Attribute("The endpoint description.")
    path: str = Attribute("The URL path it is mounted at.")

    def when_listening() -> Deferred[IAddress]:
        """Fire with the port's address once it listens."""

    def close() -> Deferred[None]:
        """Unmount it and release the port (as :meth:`IListener.close`)."""


class IPluginContext(Interface):
    """What gamews hands a plugin when it builds the plugin's service."""

    name: str = Attribute("The plugin's name.")
    endpoints: tuple[str, ...] = Attribute("The web endpoints gamews listens on (``--listen``).")
    config: Mapping[str, Any] = Attribute(
        "The plugin's own ``[plugin.NAME]`` table as written (unchecked), or ``{}``.")
    settings: Any = Attribute(
        "The plugin's checked settings: an instance of its ``settings_type`` (``None`` "
        "for a plugin without one).")
    reactor: Any = Attribute("The reactor (or a test's fake) to use for time and I/O.")
    servers: Mapping[str, IGameServer] = Attribute(
        "The configured game servers by name (:class:`IGameServer`).")
    events: EventBus = Attribute(
        "The event bus (:class:`EventBus`): typed game events in envelopes, match states, "
        "live (for token holders only). See the module docstring for the rules "
        "subscribers live by.")
    public_events: EventBus = Attribute(
        "The public view of the event bus (``gamews.spectator.PublicEvents``, an "
        ":class:`EventBus`): the same events and states ``spectator_delay`` seconds late, "
        "without team chat unless allowed. Anything shown to browsers without a token "
        "reads this one.")
    spectator_delay: float = Attribute(
        "Seconds every public view lags the game (``[spectator] delay``).")
    base_dir: Any = Attribute(
        "The directory relative paths in the plugin's table resolve against (or None).")

    def open(
        path: str,
        *,
        endpoint: str | None = None,
        incoming: IncomingCallback | None = None,
        error: Callable[[IListener, Failure], object] | None = None,
        closed: Callable[[IListener], object] | None = None,
        handler: IListenerHandler | None = None,
    ) -> IListener:
        """Listen for WebSocket children on ``path`` of every web endpoint.

        Without ``endpoint`` the path is served on each of :attr:`endpoints` (every
        ``--listen``) and the listener returned covers them all (its ``broadcast``,
        ``channel`` and ``connections`` span every port); with ``endpoint``, on that one
        only. Give callbacks or a ``handler`` object. Raises ``ValueError`` for a bad
        endpoint and :class:`EndpointConflictError` for options that clash with an open
        port.
        """

    def mount(path: str, resource: IResource, *, endpoint: str | None = None) -> IMount:
        """Serve a plain HTTP ``resource`` at ``path`` of every web endpoint (or of
        ``endpoint`` only, when given), on the ports the WebSocket paths share.

        A ``path`` ending in ``/`` also serves everything below it.
        """


@dataclass(frozen=True)
class Request:
    """A browser user's request to a plugin (a chat line, a console command), as the
    instance holding the game link applies it (docs/operator.md, "Many instances")."""

    body: Mapping[str, Any]
    """The plugin's own fields (``{"name", "text"}`` for chat, ``{"command"}`` for console)."""
    peer_host: str
    """The browser's address (per-address rate limits)."""
    connection: str
    """The browser connection, unique over every instance (per-connection rate limits)."""
    user: User | None = None
    """Who logged in, where the plugin has logins (only local: a forwarded request has none;
    its user is the one :attr:`proof` names, in the origin's own token store)."""
    via: str | None = None
    """The gamews instance (an edge) that forwarded the request; ``None`` when local."""
    proof: TokenProof | None = None
    """On the origin, for a forwarded request whose user had logged in on the edge: the proof
    of their token, to check with :meth:`TokenStore.verify` (the role comes from there)."""


class IRequestHandler(Interface):
    """A plugin service that applies its users' requests where the game link is.

    An origin (``[fanout] role = "origin"``) hands it the requests edges forward, with
    the same checks and rate limits as for its own browsers. A forwarded request
    (``via`` set) carries no user: a plugin with logins finds it with
    ``tokens.verify(request.proof)`` in its own token store.
    """

    def apply(server: str, request: Request) -> Deferred[dict[str, Any]]:
        """Check and run ``request`` on game server ``server``; fire with the reply (a JSON
        object the plugin reads back where the browser is). Never fails."""


class ISettingsReloadable(Interface):
    """A plugin service that takes new settings while it runs (a ``SIGHUP`` reload).

    Without it, a changed ``[plugin.NAME]`` table is named as needing a restart.
    """

    def reload_settings(settings: Any) -> None:
        """Use ``settings`` (an instance of the plugin's ``settings_type``, already checked)
        from now on, without closing any connection."""


class IRequestForwarder(Interface):
    """A game server whose link is held by another gamews instance (the origin)."""

    def forward(plugin: str, server: str, request: Request) -> Deferred[dict[str, Any]]:
        """Send ``request`` to ``plugin`` on the origin; fire with its reply, or fail
        (origin silent, Redis down, too many requests waiting) with an exception whose
        message says why.

        Only the body, the address and connection and, when ``request.user`` came from a
        :class:`TokenStore` login, a proof of that user's token go: never a user or role,
        which the origin takes from its own token store."""


class IGamewsPlugin(IPlugin, Interface):  # Interface too: pydoctor sees an interface
    """A gamews plugin, found by its name (:mod:`gamews.discovery`).

    Ship an instance in a module under ``twisted/plugins/`` of your package, and name it
    (or its class) in the package's ``gamews.plugins`` entry-point group (editable
    installs are found only that way); enable it by name in the config's ``plugins``
    list. ``python -m gamews new-plugin NAME`` writes such a package.
    """

    name: str = Attribute("A short unique name, such as ``echo``.")
    description: str = Attribute("One line saying what the plugin does.")
    settings_type: type | None = Attribute(
        "The plugin's settings, a frozen dataclass whose fields are the keys of its "
        "``[plugin.NAME]`` table (see :func:`settings_from_table` and :func:`setting`). "
        "gamews checks the table against it before building anything, so a bad key or "
        "value stops ``twistd gamews`` with one line naming ``plugin.NAME.KEY``; the "
        "plugin's service gets the instance as ``context.settings``. A plugin without "
        "this attribute (or with ``None``) gets its table unchecked as ``context.config``.")

    def make_service(context: IPluginContext) -> IService:
        """Build the plugin's service; it opens listeners when started and
        closes them (returning a Deferred) when stopped. Called once at start-up,
        after every setting is checked: an exception here stops gamews."""


def page(path: Path) -> IResource:
    """An HTML page read from ``path`` on each request, served with a strict
    Content-Security-Policy (the page may load only its own host's scripts and
    styles and talk only to its own host)."""
    from gamews.pages import Page

    return Page(path)

