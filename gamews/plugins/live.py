"""The live match view: map, scores, scoreboard and kill feed, live in the browser.

Page ``/live``, socket ``/live/ws`` (``docs/protocol.md``): a ``snapshot`` on connect,
then ``delta`` frames numbered by the event ``seq``; a browser that sees a gap asks for
a ``resync``. Each frame is encoded and framed once for all spectators of a server
(a STATE channel per server: a spectator that reads too slowly skips deltas and gets
a fresh snapshot once its socket drains, so it never holds the server's memory).

A spectator delay (like SourceTV's ``tv_delay``; ``[spectator] delay``, see
:mod:`gamews.spectator`) holds the public view that many seconds behind the game, so a
player cannot ghost through it; a browser that logs in with a console token sees it live.

The same view also serves the stream overlay (:class:`OverlayPlugin`: ``/overlay`` and
``/overlay/ws``), a transparent page for OBS with the score and the kill feed.

Config (``[plugin.overlay]`` takes the same keys)::

    [plugin.live]
    delay = 0          # older spelling of [spectator] delay (every public view lags by it)
    kill_feed = 10     # kill feed entries kept
    tokens_file = "tokens.txt"   # console tokens whose holders see the view live
    lockout_after = 10 # failed logins from one address before a lockout...
    lockout = 900      # ...of this many seconds (delays of 1, 2, 4... s before)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import LogLevel
from zope.interface import implementer

from gamews.api import (
    ChannelKind,
    Envelope,
    IConnection,
    IGamewsPlugin,
    IPluginContext,
    LoginThrottle,
    ThrottleConfig,
    TokenBucket,
    TokenStore,
    User,
    diff_views,
    setting,
    view_of,
)
from gamews.plugins.web import FrameSchema, WebPluginService

__all__ = ["LivePlugin", "LiveService", "LiveSettings", "OverlayPlugin", "OverlayService",
           "diff_views", "view_of"]

RESYNC_BURST = 3
RESYNC_INTERVAL = 5.0
"""A spectator may ask for ``RESYNC_BURST`` snapshots at once, then one per
``RESYNC_INTERVAL`` seconds (each is a whole snapshot); more get ``error``."""



@dataclass(frozen=True)
class LiveSettings:
    """The ``[plugin.live]`` table."""

    delay: float = setting(0.0, at_least=0)
    """The older spelling of ``[spectator] delay`` (every public view lags by it)."""
    kill_feed: int = setting(10, at_least=0)
    """Kill feed entries kept."""
    tokens_file: Path | None = None
    """Console tokens whose holders see the game live (:mod:`gamews.auth`)."""
    lockout_after: int = setting(10, at_least=1)
    """Failed logins from one address before a lockout..."""
    lockout: float = setting(900.0, at_least=0)
    """...of this many seconds (delays of 1, 2, 4 ... s before it)."""


def _public(server: str) -> str:
    """The channel of ``server``'s delayed public view."""
    return f"{server} (delayed)"


class _Feed:
    """One game server's view, and the delayed public view with the history it lags."""

    def __init__(self, view: dict[str, Any], seq: int, run: int) -> None:
        self.view = view
        self.seq = seq
        self.run = run
        # (time, run, seq, view) of the last `delay` seconds, not yet public
        self.history: deque[tuple[float, int, int, dict[str, Any]]] = deque()
        self.public_view = view
        self.public_seq = seq
        self.public_run = run


class LiveService(WebPluginService):
    """The live plugin's service."""

    plugin = "live"
    frames: ClassVar[FrameSchema] = {"select": {"server": str}, "resync": {},
                                     "login": {"token": str}}
    channel_kind = ChannelKind.STATE

    def __init__(self, context: IPluginContext) -> None:
        super().__init__(context)
        settings: LiveSettings = context.settings
        # one delay for every public view (``[spectator] delay``; this table's ``delay`` is
        # its older spelling, folded into it by the config)
        self.delay = context.spectator_delay
        self.kill_feed = settings.kill_feed
        self.feeds: dict[str, _Feed] = {}
        self.privileged: dict[int, User] = {}
        """Logged-in children (no delay on the servers their token reaches)."""
        self.throttle = LoginThrottle(self.clock, ThrottleConfig(settings.lockout_after,
                                                                 settings.lockout))
        self._resyncs: dict[int, TokenBucket] = {}
        self.tokens = (TokenStore.load(settings.tokens_file,
                                       key=f"plugin.{self.plugin}.tokens_file")
                       if settings.tokens_file is not None else None)

    def startService(self) -> None:
        super().startService()
        self._timers: list[IDelayedCall] = []
        for server in self.context.servers:
            self._fresh(server)

    def stopService(self) -> Deferred[None]:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        return super().stopService()

    def _fresh(self, server: str) -> _Feed:
        """Take ``server``'s view afresh from its match state (the public view keeps its lag;
        a new run reaches it, after the delay, as a snapshot)."""
        state = self.context.events.add_server(server)
        view, seq, run = view_of(state, self.kill_feed), state.seq, state.run
        feed = self.feeds.get(server)
        if feed is None or self.delay <= 0:
            feed = self.feeds[server] = _Feed(view, seq, run)
        else:
            if run != feed.run:
                self._hold(server, feed, run, seq, view)
            feed.view, feed.seq, feed.run = view, seq, run
        return feed

    def _hold(self, server: str, feed: _Feed, run: int, seq: int, view: dict[str, Any]) -> None:
        """Keep ``view`` for the public view, released after the delay."""
        feed.history.append((self.clock.seconds(), run, seq, view))
        self._timers.append(self.clock.callLater(self.delay, self._release, server))

    def _delayed(self, child: IConnection, server: str) -> bool:
        user = self.privileged.get(child.id)
        return self.delay > 0 and (user is None or user.role_on(server) is None)

    def channel_names(self, server: str) -> tuple[str, ...]:
        return (server, _public(server)) if self.delay > 0 else (server,)

    def channel_for(self, child: IConnection, server: str) -> str:
        return _public(server) if self._delayed(child, server) else server

    def catch_up(self, child: IConnection) -> None:
        """A spectator that read too slowly skipped deltas: send it a fresh snapshot."""
        server = self.following.get(child.id)
        if server is not None:
            self.send(child, self.link_frame(server, self.context.servers[server].state))
            self.joined(child, server)

    def joined(self, child: IConnection, server: str) -> None:
        feed = self.feeds.get(server)
        state = self.context.events.state(server)
        if feed is None or (state is not None and (state.seq, state.run) != (feed.seq, feed.run)):
            # events not seen yet, or a state replaced without events (a fan-out edge
            # that loaded a snapshot): start from the state as it is
            feed = self._fresh(server)
        delayed = self._delayed(child, server)
        view, seq, run = ((feed.public_view, feed.public_seq, feed.public_run) if delayed
                          else (feed.view, feed.seq, feed.run))
        self.send(child, {"type": "snapshot", "server": server, "seq": seq, "run": run,
                          "delay": self.delay if delayed else 0, "state": view})

    def gone(self, child: IConnection) -> None:
        self.privileged.pop(child.id, None)
        self._resyncs.pop(child.id, None)

    def frame(self, child: IConnection, frame: dict[str, Any]) -> None:
        server = self.following.get(child.id)
        if frame["type"] == "resync" and server is not None:
            now = self.clock.seconds()
            bucket = self._resyncs.setdefault(child.id, TokenBucket(RESYNC_BURST,
                                                                    RESYNC_INTERVAL, now))
            if bucket.take(now) > 0:
                self.bad_frame(child, "rate limited")
            else:
                self.joined(child, server)
        elif frame["type"] == "login":
            self._login(child, frame["token"])
        else:
            super().frame(child, frame)

    def _login(self, child: IConnection, token: str) -> None:
        address = child.request.peer_host
        if self.throttle.locked(address):
            self.quiet.emit(LogLevel.warn, "live: login refused from {address}: locked out",
                            kind=address, address=address)
            child.close(1008, "login refused")
            return
        if self.throttle.wait(address) > 0:
            self.bad_frame(child, "login refused: too many failures, try again later")
            return
        user = (self.tokens.check(token, now=self.clock.seconds())
                if self.tokens is not None else None)
        if user is None:
            self.throttle.failed(address)
            self.quiet.emit(LogLevel.warn, "live: login refused from {address}",
                            kind=address, address=address)
            self.send(child, {"type": "error", "reason": "login refused"})
            return
        self.throttle.succeeded(address)
        self.privileged[child.id] = user
        server = self.following.get(child.id)
        if server is not None:
            self.subscribe(child, server)
            self.joined(child, server)

    def event(self, envelope: Envelope) -> None:
        server = envelope.server
        feed = self.feeds.get(server)
        state = self.context.events.state(server)
        if feed is None or state is None:
            return
        if state.seq != envelope.seq or envelope.seq != feed.seq + 1 or state.run != feed.run:
            # the bus delivered late or we missed events: start this server afresh
            self._fresh(server)
            for _, child in self.followers(server):
                self.joined(child, server)
            return
        view = view_of(state, self.kill_feed)
        frame = {"type": "delta", "server": server, "seq": envelope.seq, "run": feed.run,
                 "changes": diff_views(feed.view, view)}
        feed.view, feed.seq = view, envelope.seq
        self.publish((server,), frame)
        if self.delay <= 0:
            feed.public_view, feed.public_seq, feed.public_run = view, envelope.seq, feed.run
            return
        self._hold(server, feed, feed.run, envelope.seq, view)

    def _release(self, server: str) -> None:
        """Send the delayed public view everything older than ``delay``."""
        feed = self.feeds.get(server)
        if feed is None:
            return
        self._timers = [t for t in self._timers if t.active()]
        cutoff = self.clock.seconds() - self.delay
        while feed.history and feed.history[0][0] <= cutoff:
            _, run, seq, view = feed.history.popleft()
            if run != feed.public_run:  # a new run: a reset, as a snapshot
                frame = {"type": "snapshot", "server": server, "seq": seq, "run": run,
                         "delay": self.delay, "state": view}
            else:
                frame = {"type": "delta", "server": server, "seq": seq, "run": run,
                         "changes": diff_views(feed.public_view, view)}
            feed.public_view, feed.public_seq, feed.public_run = view, seq, run
            self.publish((_public(server),), frame)


@implementer(IGamewsPlugin)
class LivePlugin:
    """The live match view (``/live``)."""

    name = "live"
    description = "Live match view: map, scores, scoreboard and kill feed as they happen."
    settings_type = LiveSettings

    def make_service(self, context: IPluginContext) -> IService:
        return LiveService(context)


class OverlayService(LiveService):
    """The stream overlay: the live view on ``/overlay`` and ``/overlay/ws``.

    The page (for OBS's browser source) shows the score and the kill feed on a transparent
    background, with no controls, sized by URL parameters::

        http://HOST:8080/overlay?width=480&scale=1.5&feed=6&server=alpha

    ``width`` in pixels (200-3840, default 420), ``scale`` the text size (0.5-4, default
    1), ``feed`` kill feed entries (0-20, default 5), ``server`` the game server to follow,
    ``score=0`` or ``kills=0`` to hide a part. Its settings are the live view's, in its own
    ``[plugin.overlay]`` table; its delay is every public view's (``[spectator] delay``, of
    which the table's ``delay`` is an older spelling).
    """

    plugin = "overlay"


@implementer(IGamewsPlugin)
class OverlayPlugin:
    """The stream overlay (``/overlay``)."""

    name = "overlay"
    description = "Stream overlay for OBS: score and kill feed on a transparent page."
    settings_type = LiveSettings

    def make_service(self, context: IPluginContext) -> IService:
        return OverlayService(context)
