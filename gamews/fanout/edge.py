"""The edge's side: the event bus fed from the origin's streams, game servers that
stand in for the origin's, and requests forwarded to the origin.

:class:`EdgeFeed` loads each followed server's snapshot into the bus
(:meth:`gamews.events.EventBus.restore`), then reads its stream with ``XREAD BLOCK``
from the snapshot's ``(epoch, seq)`` and replays every entry
(:meth:`gamews.events.EventBus.replay`), so plugins see the events as on the origin:
same ``seq``, same order, none twice. A :class:`gamews.fanout.codec.Cursor` classifies
each entry; a gap (entries trimmed while this edge was away) takes a fresh snapshot,
logged. At its start, when the stream still holds the origin's run from its first event,
it replays the whole run instead (so plugins' backlogs, such as the chat's, fill as on the
origin). After a failed read (Redis down) it reads on from where it was. Every entry,
snapshot, heartbeat and reply is opened with the shared keys
(:class:`gamews.fanout.codec.Sealer`); one that does not open is dropped and counted.

:class:`RemoteGameServer` is the plugins' :class:`gamews.rcon.server.IGameServer` on an
edge: its state is the origin's RCON link as the origin's heartbeat says, ``stale``
while there is no heartbeat; it has no RCON of its own (``rcon`` fails) but forwards the
plugins' user requests (:class:`gamews.api.IRequestForwarder`): the body, the browser's
address and connection as this edge saw them, and a proof of the user's token (never a
role), at most :data:`MAX_IN_FLIGHT` at a time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.api import IRequestForwarder, Request
from gamews.auth import prove
from gamews.events import EventBus, MatchState, envelope_from_json
from gamews.fanout.codec import Cursor, Step, dumps, parse_id
from gamews.fanout.config import FanoutConfig
from gamews.fanout.link import (
    FanoutService,
    FanoutStats,
    RedisLink,
    read_streams,
    redis_time_id,
)
from gamews.fanout.origin import REQUEST_TTL, event_place
from gamews.rcon.link import LinkState, RconError, StateNotifier
from gamews.rcon.server import GameServerStatus, IGameServer

__all__ = ["MAX_IN_FLIGHT", "EdgeFeed", "OriginSilentError", "RemoteGameServer"]

log = Logger(namespace="gamews.fanout")

MAX_IN_FLIGHT: Final = 64
"""Requests an edge has waiting for the origin's reply at most; more fail at once."""


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
                 writer: RedisLink, *, clock: Any, stats: FanoutStats | None = None) -> None:
        super().__init__(config, clock=clock, stats=stats)
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
        self._refused: dict[str, str] = {}
        """Per stream, the ID of the last entry dropped (so one is counted once)."""
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
        key = self.keys.snapshot(server)
        raw = await self.reader.execute("GET", key)
        text = None if raw is None else self.sealer.open(key, str(raw))
        if raw is not None and text is None:
            self.rejected("snapshot", key, "not sealed with a fan-out key")
        cursor = self.cursors[server]
        if text is None:
            if cursor.epoch is None:
                log.info("fanout edge: no snapshot of {server} yet; reading its stream from "
                         "the start", server=server)
            return
        snapshot = json.loads(text)
        taken = Cursor(int(snapshot["epoch"]), int(snapshot["seq"]))
        if cursor.epoch is None and await self.reader.execute(
                "XRANGE", self.keys.events(server), f"{taken.epoch}-1", f"{taken.epoch}-1"):
            # the stream holds this run from its first event: replay it all, so that the
            # plugins see every event (the chat backlog is the origin's)
            self.bus.restore(server, {**MatchState(server).snapshot(), "run": taken.epoch})
            self.cursors[server] = Cursor(taken.epoch, 0)
            return
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
            self._reply(key, entry_id, fields)
            return
        cursor = self.cursors[server]
        step = cursor.step(entry_id)
        if step is Step.OLD:
            return
        text = self.sealer.open(event_place(key, entry_id), fields.get("s", ""))
        if text is None:
            # not the origin's: skipped, the cursor stays (the origin finds it when it adds
            # the next event, and goes on in a new epoch); read again a little later
            if self._refused.get(key) != entry_id:
                self._refused[key] = entry_id
                self.rejected("event", f"{key} {entry_id}", "not sealed with a fan-out key")
            await deferLater(self.clock, 0.5)
            return
        if step is Step.GAP:
            log.warn("fanout edge: gap in {server}'s stream (at {at}, next is {next}); "
                     "taking a fresh snapshot", server=server, at=cursor.stream_id,
                     next=entry_id)
            await self.retry(self.reader, "GET snapshot", lambda: self._load(server))
            return
        try:
            envelope = envelope_from_json(json.loads(text))
        except (KeyError, ValueError, TypeError):
            log.warn("fanout edge: skipping a malformed entry {id} of {server}", id=entry_id,
                     server=server)
            cursor.advance(entry_id)
            return
        if step is Step.RESTART:
            log.info("fanout edge: {server}'s origin started a new run", server=server)
            self.bus.restore(server, {**MatchState(server).snapshot(),
                                      "run": parse_id(entry_id)[0]})
        cursor.advance(entry_id)
        self.bus.replay(envelope)

    # -- the origin's heartbeats -------------------------------------------------------

    def _poll(self) -> None:
        names = list(self.servers)
        keys = [self.keys.heartbeat(n) for n in names]

        def heard(values: list[Any]) -> None:
            for name, key, value in zip(names, keys, values, strict=False):
                text = None if value is None else self.sealer.open(key, str(value))
                beat = json.loads(text) if text else None
                if value is not None and text is None:
                    self.rejected("heartbeat", key, "not sealed with a fan-out key")
                elif beat is not None and not (
                        abs(self.clock.seconds() - float(beat.get("time", 0))) <= REQUEST_TTL):
                    # an old heartbeat written back (or clocks far apart): not a sign of life
                    self.rejected("heartbeat", key, "too old (clocks in sync?)")
                    beat = None
                self.servers[name].heard(beat)

        def silent(_: Failure) -> None:
            for name in names:
                self.servers[name].heard(None)

        # a hung Redis answers nothing: stale after stale_after, not the link's reply timeout
        self.writer.execute_now("MGET", *keys).addTimeout(
            self.config.stale_after, self.clock).addCallbacks(heard, silent)

    # -- requests out, replies in ---------------------------------------------------------

    def forward(self, plugin: str, server: str, request: Request) -> Deferred[dict[str, Any]]:
        """Send ``request`` to the origin's ``plugin``; fire with its reply."""
        if len(self.pending) >= MAX_IN_FLIGHT:
            return fail(OriginSilentError("busy: too many requests waiting for the origin"))
        ident = uuid.uuid4().hex
        inner = dumps({"id": ident, "edge": self.config.name, "plugin": plugin,
                       "server": server, "body": dict(request.body), "peer": request.peer_host,
                       "conn": request.connection, "sent": self.clock.seconds()})
        credential = request.user.credential if request.user is not None else ""
        proof = prove(credential, inner.encode("utf-8", "surrogatepass")) if credential else None
        key = self.keys.requests()
        sealed = self.sealer.seal(key, dumps({"r": inner, "proof": proof}))
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
        self.writer.execute_now("XADD", key, "MAXLEN", "~", 10_000, "*", "s", sealed).addErrback(
            lambda f: None if d.called else d.errback(f))
        return d

    def _reply(self, key: str, entry_id: str, fields: dict[str, str]) -> None:
        self.replies_position = entry_id
        text = self.sealer.open(key, fields.get("s", ""))
        if text is None:
            self.rejected("reply", f"{key} {entry_id}", "not sealed with a fan-out key")
            return
        try:
            message = json.loads(text)
            d = self.pending.get(str(message["id"]))
            reply = message["reply"]
        except (ValueError, KeyError, TypeError):
            log.warn("fanout edge: skipping a malformed reply {id}", id=entry_id)
            return
        if d is not None and not d.called and isinstance(reply, dict):
            d.callback(reply)
