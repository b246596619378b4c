"""Relays game-side plugins' ``custom`` events to browsers, read-only, on ``/bridge/ws``.

A SourceMod or CounterStrikeSharp plugin writes ``gamews CHANNEL JSON`` to the game's log
(:mod:`gamews.logs.bridge`); every gamews plugin gets it as a :class:`gamews.api.Custom`
event. This plugin, **off unless listed** in ``plugins``, also sends it to the browsers
that asked for that channel::

    ws://HOST:8080/bridge/ws?channel=bomb&channel=score&server=alpha

``channel`` (one or more, required) names the channels; ``server`` (optional) keeps only
that game server's events, as late as every public view (``[spectator] delay``). Each event
arrives as one text frame, the event's JSON
(``{"type": "custom", "server", "seq", "received", "log_time", "game_clock", "channel",
"data"}``), encoded once for every browser. Browsers only read: a browser that sends
anything is closed with 1008.

Config (optional)::

    [plugin.bridge]
    channels = ["bomb", "score"]   # the channels browsers may follow (default: any)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from gamews.api import (
    ConfigError,
    Custom,
    Envelope,
    IConnection,
    IGamewsPlugin,
    IListener,
    IPluginContext,
    Subscription,
    valid_channel,
)

__all__ = ["BridgePlugin", "BridgeService", "BridgeSettings"]

PATH = "/bridge/ws"
MAX_CHANNELS = 16
"""How many channels one browser may follow."""


def _channel_key(server: str | None, channel: str) -> str:
    """The listener channel of ``channel`` for ``server``'s events (``None``: any server)."""
    return f"{server or '*'}/{channel}"


@dataclass(frozen=True)
class BridgeSettings:
    """The ``[plugin.bridge]`` table."""

    channels: tuple[str, ...] | None = None
    """The channels browsers may follow (``None``: any)."""

    def __post_init__(self) -> None:
        bad = [c for c in self.channels or () if not valid_channel(c)]
        if bad:
            raise ConfigError("channels", f"{bad[0]!r} is not a channel name "
                                          "(1 to 32 of a-z, 0-9, _ . -)")


class BridgeService(Service):
    """Subscribes to the bus; publishes each ``custom`` event to its channel's browsers."""

    def __init__(self, context: IPluginContext) -> None:
        self.context = context
        settings: BridgeSettings = context.settings
        self.allowed: frozenset[str] | None = (frozenset(settings.channels)
                                                if settings.channels is not None else None)
        self.listener: IListener | None = None
        self.subscription: Subscription | None = None
        self.relayed = 0
        """Events relayed (each counted once, however many browsers got it)."""

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.listener = self.context.open(PATH, incoming=self.incoming)
        # browsers here hold no token: they get the public view, ``[spectator] delay`` late
        self.subscription = self.context.public_events.subscribe(self.event,
                                                                 name="plugin:bridge")

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self.subscription is not None:
            self.subscription.cancel()
        listener, self.listener = self.listener, None
        return listener.close() if listener is not None else succeed(None)

    def incoming(self, child: IConnection) -> None:
        """Check the query; hold the browser on the channels it asked for."""
        assert self.listener is not None
        query = child.request.query
        channels = list(dict.fromkeys(query.get("channel", [])))
        servers = query.get("server", [])
        if not channels or len(channels) > MAX_CHANNELS or len(servers) > 1:
            child.reject(400, f"give 1 to {MAX_CHANNELS} channel= and at most one server=")
            return
        if not all(valid_channel(c) for c in channels):
            child.reject(400, "bad channel name")
            return
        if self.allowed is not None and not set(channels) <= self.allowed:
            child.reject(403, "channel not relayed")
            return
        server = servers[0] if servers else None
        if server is not None and server not in self.context.servers:
            child.reject(404, "unknown server")
            return
        child.hook(on_message=self.message)
        for channel in channels:
            self.listener.channel(_channel_key(server, channel)).subscribe(child)

    def message(self, child: IConnection, data: Any) -> None:
        """Browsers only read here."""
        child.close(1008, "read-only")

    def event(self, envelope: Envelope) -> None:
        """Relay a ``custom`` event to the browsers following its channel."""
        event = envelope.event
        if self.listener is None or not isinstance(event, Custom):
            return
        if self.allowed is not None and event.channel not in self.allowed:
            return
        text = envelope.to_json_text()
        for key in (_channel_key(envelope.server, event.channel),
                    _channel_key(None, event.channel)):
            self.listener.channel(key).publish(text)
        self.relayed += 1


@implementer(IGamewsPlugin)
class BridgePlugin:
    """Relays game-side plugins' ``gamews CHANNEL JSON`` lines to browsers (``/bridge/ws``)."""

    name = "bridge"
    description = "Relays in-game plugins' gamews log lines to browsers, read-only."
    settings_type = BridgeSettings

    def make_service(self, context: IPluginContext) -> IService:
        return BridgeService(context)
