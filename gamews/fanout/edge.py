"""The edge's side: the event bus fed from the origin's streams, game servers that
stand in for the origin's, and requests forwarded to the origin.

:class:`EdgeFeed` loads each followed server's snapshot into the bus
(:meth:`gamews.events.EventBus.restore`), then reads its stream with ``XREAD BLOCK``
from the snapshot's ``(epoch, seq)`` and replays every entry
(:meth:`gamews.events.EventBus.replay`), so plugins see the events as on the origin:
same ``seq``, same order, none twice. A :class:`gamews.fanout.codec.Cursor` classifies
each entry; a gap (entries trimmed while this edge was away) takes a fresh snapshot,
logged. After a failed read (Redis down) it reads on from where it was.

:class:`RemoteGameServer` is the plugins' :class:`gamews.rcon.server.IGameServer` on an
edge: its state is the origin's RCON link as the origin's heartbeat says, ``stale``
while there is no heartbeat; it has no RCON of its own (``rcon`` fails) but forwards the
plugins' user requests (:class:`gamews.api.IRequestForwarder`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.api import IRequestForwarder, Request
from gamews.events import EventBus, MatchState, envelope_from_json
from gamews.fanout.codec import Cursor, Step, dumps
from gamews.fanout.config import FanoutConfig
from gamews.fanout.link import FanoutService, RedisLink, read_streams, redis_time_id
from gamews.fanout.origin import REQUEST_TTL
from gamews.rcon.link import LinkState, RconError, StateNotifier
from gamews.rcon.server import GameServerStatus, IGameServer

__all__ = ["EdgeFeed", "OriginSilentError", "RemoteGameServer"]

log = Logger(namespace="gamews.fanout")


class OriginSilentError(Exception):
    """A forwarded request got no reply (no origin, or Redis down)."""


@implementer(IGameServer, IRequestForwarder)
class RemoteGameServer:
    """A game server whose link the origin holds, as an edge's plugins see it."""

    def __init__(self, name: str, feed: EdgeFeed) -> None:
        self.name = name
        self.kind = "source"
        self.stale = True
        self._feed = feed
        self._notifier = StateNotifier(name, feed.clock, log)
        self._notifier.set(LinkState.CONNECTING)

    def __repr__(self) -> str:
        return f"<RemoteGameServer {self.name!r} via Redis>"

    @property
    def state(self) -> LinkState:
        """The origin's RCON link state, as last heard."""
        return self._notifier.state

    def heard(self, beat: dict[str, Any] | None) -> None:
        """The origin's heartbeat for this server (``None``: none, the origin is silent)."""
        was_stale, self.stale = self.stale, beat is None
        was = self._notifier.state
        if beat is not None:
            if beat.get("kind") in ("source", "quake3"):
                self.kind = str(beat["kind"])
            try:
                state = LinkState(beat.get("link"))
            except ValueError:
                state = LinkState.CONNECTING
            self._notifier.set(state)
        if self.stale != was_stale:
            log.info("fanout edge: origin of {server} is {what}", server=self.name,
                     what="silent; pages show stale" if self.stale else "back")
            if self._notifier.state is was:  # else set() told the subscribers
                self._notifier.announce()

    def rcon(self, command: str) -> Deferred[str]:
        """Refused: an edge runs no RCON (its plugins forward user requests instead)."""
        return fail(RconError(f"{self.name}: RCON runs on the origin; an edge only forwards "
                              "chat lines and console commands"))

    def subscribe(self, callback: Callable[[LinkState], object]) -> Callable[[], None]:
        """See :meth:`IGameServer.subscribe` (also called when ``stale`` changes)."""
        return self._notifier.subscribe(callback)

    def status(self) -> GameServerStatus:
        """See :meth:`IGameServer.status`."""
        link = self._notifier.status
        return GameServerStatus(self.name, "quake3" if self.kind == "quake3" else "source",
                                "origin (Redis)", link.state, link.since,
                                "stale" if self.stale else None, len(self._feed.pending))

    def forward(self, plugin: str, server: str, request: Request) -> Deferred[dict[str, Any]]:
        """See :meth:`IRequestForwarder.forward`."""
        return self._feed.forward(plugin, server, request)


class EdgeFeed(FanoutService):
    """Events in from Redis, heartbeats polled, requests out and replies in."""

    def __init__(self, config: FanoutConfig, bus: EventBus, reader: RedisLink,
                 writer: RedisLink, *, clock: Any) -> None:
        super().__init__(config, clock=clock)
        self.bus = bus
        self.reader = reader
        self.writer = writer
        self.servers = {name: RemoteGameServer(name, self) for name in config.servers}
        self.cursors = {name: Cursor() for name in config.servers}
        self._by_key = {self.keys.events(name): name for name in config.servers}
        self.pending: dict[str, Deferred[dict[str, Any]]] = {}
        self.replies_position = "$"
        self.snapshots = 0
        self._last_load: dict[str, float] = {}
        self._poller = LoopingCall(self._poll)
        self._poller.clock = clock
        for name in config.servers:
            bus.add_server(name)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._poller.start(min(1.0, self.config.stale_after / 3), now=False)
        self.spawn("edge feed", self._run())

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._poller.running:
            self._poller.stop()
        for d in list(self.pending.values()):
            d.cancel()

    # -- events in -----------------------------------------------------------------

    def _positions(self) -> dict[str, str]:
        where = {self.keys.events(s): c.stream_id for s, c in self.cursors.items()}
        where[self.keys.replies(self.config.name)] = self.replies_position
        return where

    async def _run(self) -> None:
        self.replies_position = await self.retry(self.reader, "TIME",
                                                 lambda: redis_time_id(self.reader))
        for server in self.servers:
            await self.retry(self.reader, "GET snapshot", partial(self._load, server))
        log.info("fanout edge {name}: following {servers}", name=self.config.name,
                 servers=", ".join(self.servers))
        await read_streams(self.reader, self.clock, lambda: bool(self.running), self._positions,
                           self._entry)

    async def _load(self, server: str) -> None:
        """Take ``server``'s snapshot (if the origin wrote one) and read on from it."""
        last = self._last_load.get(server)
        if last is not None and self.clock.seconds() - last < 0.5:
            await deferLater(self.clock, 0.5)  # the snapshot lags the stream: let it move
        self._last_load[server] = self.clock.seconds()
        raw = await self.reader.execute("GET", self.keys.snapshot(server))
        if raw is None:
            log.info("fanout edge: no snapshot of {server} yet; reading its stream from the "
                     "start", server=server)
            self.cursors[server] = Cursor()
            return
        snapshot = json.loads(raw)
        taken = Cursor(int(snapshot["epoch"]), int(snapshot["seq"]))
        cursor = self.cursors[server]
        if cursor.epoch is not None and (taken.epoch, taken.seq) <= (cursor.epoch, cursor.seq):
            # older than what this edge has: restoring it would deliver events twice; the
            # next read finds the gap again, and the snapshot will have moved on by then
            return
        self.bus.restore(server, snapshot["state"])
        self.cursors[server] = taken
        self.snapshots += 1

    async def _entry(self, key: str, entry_id: str, fields: dict[str, str]) -> None:
        server = self._by_key.get(key)
        if server is None:
            self._reply(entry_id, fields)
            return
        cursor = self.cursors[server]
        step = cursor.step(entry_id)
        if step is Step.OLD:
            return
        if step is Step.GAP:
            log.warn("fanout edge: gap in {server}'s stream (at {at}, next is {next}); "
                     "taking a fresh snapshot", server=server, at=cursor.stream_id,
                     next=entry_id)
            await self.retry(self.reader, "GET snapshot", lambda: self._load(server))
            return
        try:
            envelope = envelope_from_json(json.loads(fields["e"]))
        except (KeyError, ValueError):
            log.warn("fanout edge: skipping a malformed entry {id} of {server}", id=entry_id,
                     server=server)
            cursor.advance(entry_id)
            return
        if step is Step.RESTART:
            log.info("fanout edge: {server}'s origin started a new run", server=server)
            self.bus.restore(server, MatchState(server).snapshot())
        cursor.advance(entry_id)
        self.bus.replay(envelope)

    # -- the origin's heartbeats -------------------------------------------------------

    def _poll(self) -> None:
        names = list(self.servers)

        def heard(values: list[Any]) -> None:
            for name, value in zip(names, values, strict=False):
                self.servers[name].heard(json.loads(value) if value else None)

        def silent(_: Failure) -> None:
            for name in names:
                self.servers[name].heard(None)

        self.writer.execute_now("MGET", *(self.keys.heartbeat(n) for n in names)).addCallbacks(
            heard, silent)

    # -- requests out, replies in ---------------------------------------------------------

    def forward(self, plugin: str, server: str, request: Request) -> Deferred[dict[str, Any]]:
        """Send ``request`` to the origin's ``plugin``; fire with its reply."""
        ident = uuid.uuid4().hex
        user = None if request.user is None else {"name": request.user.name,
                                                   "role": request.user.role}
        message = {"id": ident, "edge": self.config.name, "plugin": plugin, "server": server,
                   "body": dict(request.body), "peer": request.peer_host,
                   "conn": request.connection, "user": user, "sent": self.clock.seconds()}
        d: Deferred[dict[str, Any]] = Deferred()
        self.pending[ident] = d

        def forget(result: object) -> object:
            self.pending.pop(ident, None)
            if isinstance(result, Failure):
                why = ("shutting down" if result.check(CancelledError)
                       else f"the origin did not answer in {REQUEST_TTL:g} s"
                       if result.check(TimeoutError) else "no connection to Redis")
                return Failure(OriginSilentError(why))
            return result

        d.addTimeout(REQUEST_TTL, self.clock).addBoth(forget)
        self.writer.execute_now("XADD", self.keys.requests(), "MAXLEN", "~", 10_000, "*",
                                "r", dumps(message)).addErrback(
            lambda f: None if d.called else d.errback(f))
        return d

    def _reply(self, entry_id: str, fields: dict[str, str]) -> None:
        self.replies_position = entry_id
        try:
            message = json.loads(fields.get("r", ""))
            d = self.pending.get(str(message["id"]))
            reply = message["reply"]
        except (ValueError, KeyError, TypeError):
            log.warn("fanout edge: skipping a malformed reply {id}", id=entry_id)
            return
        if d is not None and not d.called and isinstance(reply, dict):
            d.callback(reply)
