"""Recording every game server's events into the archive, one match at a time.

A match runs from a map start (``map_change``, or ``match_start``) to the next one;
``match_end`` marks it ``finished`` (the lines after it, such as the final scores, still
belong to it). A match still ``live`` when the next one starts, when
gamews stops, or found ``live`` when gamews starts again after a crash, is closed as
``interrupted``. Events that arrive with no match open (gamews started mid-match)
open one marked ``joined_mid_match``. Starts that follow one another with no kill
between them (Source's ``Loading map``, ``Started map`` and ``Match_Start``) are one
match, of the last map named.

The reactor's share of the work is small: a :class:`Recording` applies each event to
its own copy of the match state (for the checkpoints seeking starts from) and counts
kills; every ``flush_every`` seconds the events gathered are handed to the writer
thread as one :class:`~gamews.archive.store.Batch` (turned into JSON there), so a
crash loses at most that much.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.archive.db import Conn, Database
from gamews.archive.recording import Batch, MatchId, Recording
from gamews.archive.store import close_live, write_batch
from gamews.events import Envelope, EventBus, MapChange, MatchStart, MatchState, Subscription

__all__ = ["Recorder"]

log = Logger(namespace="gamews.archive")
_MAX_QUEUED = 200_000
"""Events kept for a database that does not answer, before the oldest are dropped."""


class Recorder(Service):
    """Records the events of ``servers`` from ``bus`` into ``db`` (see the module doc)."""

    def __init__(self, db: Database, bus: EventBus, servers: list[str], *, clock: Any,
                 flush_every: float = 0.5, checkpoint_every: int = 500) -> None:
        self.db = db
        self.bus = bus
        self.servers = servers
        self.clock = clock
        self.flush_every = flush_every
        self.checkpoint_every = checkpoint_every
        self.current: dict[str, Recording] = {}
        self.states: dict[str, MatchState] = {}
        self._subscriptions: list[Subscription] = []
        self._events: list[tuple[MatchId, Envelope]] = []
        self._touched: dict[int, Recording] = {}
        self._retry: Batch | None = None
        self._stale: list[str] = []
        self._writing: Deferred[Any] | None = None
        self._waiters: list[Deferred[None]] = []
        self._loop: LoopingCall | None = None
        self.written = 0
        """Events written so far."""

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        for server in self.servers:
            snapshot, sub = self.bus.subscribe_with_snapshot(server, self.event,
                                                            name=f"archive:{server}")
            state = MatchState(server)
            state.restore(snapshot)
            self.states[server] = state
            self._subscriptions.append(sub)
        # the matches a stopped or crashed gamews left live are closed with the first
        # write that succeeds (before it inserts the new ones)
        self._stale = list(self.servers)
        loop = self._loop = LoopingCall(self.flush)
        loop.clock = self.clock
        loop.start(self.flush_every, now=False).addErrback(
            lambda f: log.failure("archive flush loop stopped", f))

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        for sub in self._subscriptions:
            sub.cancel()
        self._subscriptions.clear()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for recording in self.current.values():
            recording.close("interrupted")
            self._touched[id(recording)] = recording
        self.current.clear()
        return self._drain()

    def _drain(self) -> Deferred[None]:
        """Write everything gathered (after the write under way)."""
        async def drain() -> None:
            await self._idle()
            self.flush()
            await self._idle()

        return Deferred.fromCoroutine(drain())

    def _idle(self) -> Deferred[None]:
        """Fire when no write is under way."""
        if self._writing is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def event(self, envelope: Envelope) -> None:
        """One event from the bus."""
        server = envelope.server
        state = self.states.get(server)
        if state is None:
            return
        event = envelope.event
        recording = self.current.get(server)
        starts = isinstance(event, MapChange | MatchStart)
        if (starts and recording is not None and recording.status == "live"
                and not recording.joined and recording.kills == 0):
            # loading, then started, then the match start: one match (of the last map)
            recording.map = getattr(event, "map", None) or recording.map
            starts = False
        if recording is None or starts:
            if recording is not None:
                recording.close("interrupted")  # a finished one stays finished
                self._touched[id(recording)] = recording
            recording = Recording(MatchId(), envelope, state, joined=not starts,
                                  checkpoint_every=self.checkpoint_every)
            self.current[server] = recording
        recording.add(envelope)
        self._events.append((recording.key, envelope))
        self._touched[id(recording)] = recording

    def _take(self) -> Batch:
        batch = Batch(events=self._events)
        self._events = []
        for recording in self._touched.values():
            batch.matches.append(recording.row())
            batch.checkpoints += recording.take_checkpoints()
            batch.players += recording.take_players()
        self._touched = {}
        if self._retry is not None:
            batch = _merge(self._retry, batch)
            self._retry = None
        if len(batch.events) > _MAX_QUEUED:
            dropped = len(batch.events) - _MAX_QUEUED
            log.error("archive: the database is not answering; {n} events dropped",
                      n=dropped)
            del batch.events[:dropped]
        return batch

    def flush(self) -> None:
        """Hand what was gathered to the writer (unless a write is under way)."""
        if self._writing is not None:
            return
        batch = self._take()
        stale = self._stale
        if not batch and not stale:
            return
        count = len(batch.events)

        def written(closed: int) -> None:
            self.written += count
            if self._stale is stale:
                self._stale = []
            if closed:
                log.info("archive: {n} matches left live by an earlier run are interrupted",
                         n=closed)

        def failed(failure: Failure) -> None:
            log.failure("archive: writing {n} events failed; trying again", failure, n=count)
            self._retry = batch if self._retry is None else _merge(batch, self._retry)

        d: Deferred[int] = self.db.write(_write_all, batch, stale)
        self._writing = d

        def finished(_: object) -> None:
            # after written() or failed(): a drain that waits for this sees the retry
            self._writing = None
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

        d.addCallbacks(written, failed).addBoth(finished)


def _write_all(conn: Conn, batch: Batch, stale: list[str]) -> int:
    """One flush's transaction: close what a crash left live, then write the batch;
    how many matches it closed."""
    closed = close_live(conn, stale) if stale else 0
    write_batch(conn, batch)
    return closed


def _merge(old: Batch, new: Batch) -> Batch:
    """``old`` then ``new``: one row per match and per player line (the newest)."""
    matches = {id(r.key): r for r in old.matches}
    matches.update((id(r.key), r) for r in new.matches)
    players = {(id(p.key), p.player): p for p in old.players}
    players.update(((id(p.key), p.player), p) for p in new.players)
    return Batch(list(matches.values()), old.events + new.events,
                 old.checkpoints + new.checkpoints, list(players.values()))
