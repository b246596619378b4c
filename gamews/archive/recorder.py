"""Recording every game server's events into the archive, one match at a time.

A match runs from a map start (``map_change``, or ``match_start``) to the next one;
``match_end`` marks it ``finished`` (the lines after it, such as the final scores, still
belong to it). A match still ``live`` when the next one starts, when
gamews stops, or found ``live`` when gamews starts again after a crash, is closed as
``interrupted``. Events that arrive with no match open (gamews started mid-match)
open one marked ``joined_mid_match``. Starts that follow one another with no kill
between them (Source's ``Loading map``, ``Started map`` and ``Match_Start``) are one
match, of the last map named.

The reactor's share is only that: deciding which match each event belongs to (a type
check and a kill count) and appending it to a list. Every ``flush_every`` seconds the
list goes to the writer thread, where an :class:`Accountant` applies the events to its
own copies of the match states (:class:`~gamews.archive.recording.Recording`: rows,
player lines, the checkpoints seeking starts from), turns them into JSON and writes one
transaction; so a crash loses at most that much. A batch whose write fails is kept,
already accounted, and written with the next.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.archive.db import Conn, Database
from gamews.archive.recording import Batch, MatchId, Recording
from gamews.archive.store import close_live, write_batch
from gamews.events import (
    Envelope,
    EventBus,
    Kill,
    MapChange,
    MatchEnd,
    MatchStart,
    MatchState,
    Subscription,
)

__all__ = ["Recorder"]

log = Logger(namespace="gamews.archive")
_MAX_QUEUED = 200_000
"""Events kept for a database that does not answer, before the oldest are dropped."""


class _Open:
    """What the reactor knows of a server's open match: enough to place the next event."""

    __slots__ = ("finished", "joined", "key", "kills")

    def __init__(self, joined: bool) -> None:
        self.key = MatchId()
        self.joined = joined
        self.finished = False
        self.kills = 0


class Accountant:
    """The writer thread's side: each server's match state and open :class:`Recording`,
    and the batch a failed write left. Used only in the writer thread (one at a time)."""

    def __init__(self, checkpoint_every: int) -> None:
        self.checkpoint_every = checkpoint_every
        self.states: dict[str, MatchState] = {}
        self.current: dict[str, Recording] = {}
        self.retry: Batch | None = None
        self.inbox: deque[tuple[list[tuple[_Open, Envelope]], dict[str, Any], bool]] = deque()
        """What the reactor handed over (``deque`` appends and pops are thread-safe): kept
        until a write takes it, so a write that never ran (no connection) loses nothing."""

    def account(self) -> Batch:
        """Apply what is in the inbox: events, the starting states of servers new to it
        and whether recording stops; the batch to write, after the one a failed write
        left."""
        touched: dict[int, Recording] = {}
        events: list[tuple[_Open, Envelope]] = []
        closing = False
        while self.inbox:
            more, snapshots, stop = self.inbox.popleft()
            for server, snapshot in snapshots.items():
                state = self.states[server] = MatchState(server)
                state.restore(snapshot)
            events += more
            closing = closing or stop
        for match, envelope in events:
            server = envelope.server
            recording = self.current.get(server)
            if recording is None or recording.key is not match.key:
                if recording is not None:
                    recording.close("interrupted")  # a finished one stays finished
                    touched[id(recording)] = recording
                recording = Recording(match.key, envelope, self.states[server],
                                      joined=match.joined,
                                      checkpoint_every=self.checkpoint_every)
                self.current[server] = recording
            recording.add(envelope)
            touched[id(recording)] = recording
        if closing:
            for recording in self.current.values():
                recording.close("interrupted")
                touched[id(recording)] = recording
            self.current.clear()
        batch = Batch(events=[(match.key, envelope) for match, envelope in events])
        for recording in touched.values():
            batch.matches.append(recording.row())
            batch.checkpoints += recording.take_checkpoints()
            batch.players += recording.take_players()
        if self.retry is not None:
            batch = _merge(self.retry, batch)
            self.retry = None
        if len(batch.events) > _MAX_QUEUED:
            # the database has not answered for long: keep the newest
            del batch.events[:len(batch.events) - _MAX_QUEUED]
        return batch


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
        self.current: dict[str, _Open] = {}
        self.accountant = Accountant(checkpoint_every)
        self._subscriptions: list[Subscription] = []
        self._events: list[tuple[_Open, Envelope]] = []
        self._snapshots: dict[str, Any] = {}
        self._closing = False
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
            self._snapshots[server] = snapshot
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
        self.current.clear()
        self._closing = True
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
        """One event from the bus: which match it belongs to (all else in the writer)."""
        kind = type(envelope.event)
        match = self.current.get(envelope.server)
        if kind is MapChange or kind is MatchStart:
            if match is None or match.finished or match.joined or match.kills:
                # a new match (starts with no kill between them are one)
                match = self.current[envelope.server] = _Open(joined=False)
        elif match is None:
            match = self.current[envelope.server] = _Open(joined=True)
        elif kind is Kill:
            match.kills += 1
        elif kind is MatchEnd:
            match.finished = True
        self._events.append((match, envelope))

    def flush(self) -> None:
        """Hand what was gathered to the writer (unless a write is under way)."""
        if self._writing is not None:
            return
        events, self._events = self._events, []
        snapshots, self._snapshots = self._snapshots, {}
        stale, closing = self._stale, self._closing
        if not events and not stale and not closing and not snapshots:
            return
        count = len(events)

        def written(closed: int) -> None:
            self.written += count
            if self._stale is stale:
                self._stale = []
            if closed:
                log.info("archive: {n} matches left live by an earlier run are interrupted",
                         n=closed)

        def failed(failure: Failure) -> None:
            log.failure("archive: writing {n} events failed; trying again", failure, n=count)

        self.accountant.inbox.append((events, snapshots, closing))
        d: Deferred[int] = self.db.write(_write_all, self.accountant, stale)
        self._writing = d

        def finished(_: object) -> None:
            # after written() or failed(): a drain that waits for this sees the retry
            self._writing = None
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

        d.addCallbacks(written, failed).addBoth(finished)


def _write_all(conn: Conn, accountant: Accountant, stale: list[str]) -> int:
    """One flush, in the writer thread: account for the events handed over, then one
    transaction that closes what a crash left live and writes the batch; how many matches
    it closed."""
    batch = accountant.account()
    try:
        closed = close_live(conn, stale) if stale else 0
        write_batch(conn, batch)
    except BaseException:
        accountant.retry = batch
        raise
    return closed


def _merge(old: Batch, new: Batch) -> Batch:
    """``old`` then ``new``: one row per match and per player line (the newest)."""
    matches = {id(r.key): r for r in old.matches}
    matches.update((id(r.key), r) for r in new.matches)
    players = {(id(p.key), p.player): p for p in old.players}
    players.update(((id(p.key), p.player), p) for p in new.players)
    return Batch(list(matches.values()), old.events + new.events,
                 old.checkpoints + new.checkpoints, list(players.values()))
