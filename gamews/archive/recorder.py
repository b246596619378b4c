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

import json
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.archive.db import Database
from gamews.archive.store import Batch, MatchId, MatchRow, PlayerLine, close_live, write_batch
from gamews.events import (
    Envelope,
    EventBus,
    Kill,
    MapChange,
    MatchEnd,
    MatchStart,
    MatchState,
    Player,
    Subscription,
    Suicide,
    WorldKill,
)

__all__ = ["Recorder", "Recording", "archive_key"]

log = Logger(namespace="gamews.archive")
_MAX_QUEUED = 200_000
"""Events kept for a database that does not answer, before the oldest are dropped."""


def archive_key(player: Player) -> str | None:
    """``player``'s identity across matches (:func:`gamews.archive.store.player_key`)."""
    if player.bot:
        return None
    key = player.key
    if key in ("world", "console") or key.startswith("bot:"):
        return None
    if key.startswith("[U:"):
        return key
    return f"name:{player.name}" if player.name else None


class _Line:
    __slots__ = ("deaths", "headshots", "kills", "last_seen", "name", "team")

    def __init__(self, name: str, team: str | None, seen: float) -> None:
        self.name, self.team, self.last_seen = name, team, seen
        self.kills = self.deaths = self.headshots = 0


class Recording:
    """One match as it is recorded: ``state`` (the server's match state, before
    ``first``) is updated by :meth:`add`; the flushes take rows, checkpoints, players."""

    def __init__(self, key: MatchId, first: Envelope, state: MatchState, *, joined: bool,
                 checkpoint_every: int = 500) -> None:
        self.key = key
        self.server = first.server
        self.state = state
        event = first.event
        self.map: str | None = (event.map if isinstance(event, MapChange | MatchStart)
                                and event.map else state.map)
        self.started = first.received
        self.ended: float | None = None
        self.last_event = first.received
        self.status = "live"
        self.joined = joined
        self.first_seq = first.seq
        self.last_seq = first.seq - 1
        self.events = 0
        self.kills = 0
        self.reason: str | None = None
        self.checkpoint_every = checkpoint_every
        self._since = 0
        self._final: MatchRow | None = None
        self._lines: dict[str, _Line] = {}
        self._dirty: set[str] = set()
        # the state just before the first event: seeking to the start begins here
        self._checkpoints: list[tuple[MatchId, int, float, dict[str, Any]]] = [
            (key, first.seq - 1, first.received, state.snapshot())]

    def add(self, envelope: Envelope) -> None:
        """Record one event of this match."""
        self.state.apply(envelope)
        self.last_seq = envelope.seq
        self.last_event = envelope.received
        self.events += 1
        event = envelope.event
        if isinstance(event, Kill):
            self.kills += 1
            killer = self._line(event.killer, envelope.received)
            if killer is not None:
                killer.kills += 1
                killer.headshots += event.headshot
            victim = self._line(event.victim, envelope.received)
            if victim is not None:
                victim.deaths += 1
        elif isinstance(event, Suicide | WorldKill):
            victim = self._line(event.player if isinstance(event, Suicide) else event.victim,
                                envelope.received)
            if victim is not None:
                victim.deaths += 1
        elif isinstance(event, MatchEnd) and self.status == "live":
            self.status = "finished"
            self.ended = envelope.received
            self.reason = event.reason
        self._since += 1
        if self._since >= self.checkpoint_every:
            self._since = 0
            self._checkpoints.append((self.key, envelope.seq, envelope.received,
                                      self.state.snapshot()))

    def _line(self, player: Player, seen: float) -> _Line | None:
        key = archive_key(player)
        if key is None:
            return None
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line(player.name, player.team, seen)
        else:
            line.name = player.name or line.name
            line.team = player.team if player.team is not None else line.team
            line.last_seen = seen
        self._dirty.add(key)
        return line

    def close(self, status: str) -> None:
        """End a match still ``live`` as ``status`` (``interrupted``) at its last event,
        and take its final row: the state goes on to the next match."""
        if self.status == "live":
            self.status = status
            self.ended = self.last_event
        for p in self.state.players.values():
            line = self._line(Player(p.name, p.key, p.slot, p.team, p.bot), self.last_event)
            if line is not None:
                line.last_seen = self.last_event
        self._final = None
        self._final = self.row()

    def row(self) -> MatchRow:
        """The match's columns now (every player present gets a line too)."""
        if self._final is not None:
            return self._final
        for p in self.state.players.values():
            key = archive_key(Player(p.name, p.key, p.slot, p.team, p.bot))
            if key is not None and key not in self._lines:
                # present but no kill or death yet (the time does not hang on the flushes)
                self._lines[key] = _Line(p.name, p.team, max(self.started, p.connected_at))
                self._dirty.add(key)
        players = sorted(self.state.players.values(),
                         key=lambda p: (-(p.score if p.score is not None else p.kills),
                                        p.deaths, p.name))
        summary = [{"name": p.name, "team": p.team, "bot": p.bot, "kills": p.kills,
                    "deaths": p.deaths, "score": p.score if p.score is not None else p.kills}
                   for p in players[:32]]
        return MatchRow(self.key, self.server, self.map, self.started, self.ended,
                        self.last_event, self.status, self.joined, self.first_seq,
                        self.last_seq, self.events, json.dumps(dict(self.state.teams)),
                        json.dumps(summary, ensure_ascii=False), self.reason)

    def take_checkpoints(self) -> list[tuple[MatchId, int, float, dict[str, Any]]]:
        taken, self._checkpoints = self._checkpoints, []
        return taken

    def take_players(self) -> list[PlayerLine]:
        taken = [PlayerLine(self.key, k, line.name, line.team, line.kills, line.deaths,
                            line.headshots, line.last_seen)
                 for k in self._dirty for line in (self._lines[k],)]
        self._dirty.clear()
        return taken


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
        self._writing: Deferred[None] | None = None
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
        # the matches a stopped or crashed gamews left live (the writer is in order:
        # this runs before any batch)
        self._write(close_live, list(self.servers))
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
        pending = self._writing if self._writing is not None else succeed(None)

        def last(_: object) -> Deferred[None]:
            self.flush()
            return self._writing if self._writing is not None else succeed(None)

        return pending.addBoth(last)

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
        if not batch:
            return
        count = len(batch.events)

        def written(_: object) -> None:
            self.written += count

        def failed(failure: Failure) -> None:
            log.failure("archive: writing {n} events failed; trying again", failure, n=count)
            self._retry = batch if self._retry is None else _merge(batch, self._retry)

        self._write(write_batch, batch).addCallbacks(written, failed)

    def _write(self, fn: Any, *args: Any) -> Deferred[None]:
        d: Deferred[None] = self.db.write(fn, *args)
        self._writing = d

        def done(result: object) -> object:
            if self._writing is d:
                self._writing = None
            return result

        d.addBoth(done)
        # callers chain on a copy of the outcome
        out: Deferred[None] = Deferred()
        d.addCallbacks(out.callback, out.errback)
        return out


def _merge(old: Batch, new: Batch) -> Batch:
    """``old`` then ``new``: one row per match and per player line (the newest)."""
    matches = {id(r.key): r for r in old.matches}
    matches.update((id(r.key), r) for r in new.matches)
    players = {(id(p.key), p.player): p for p in old.players}
    players.update(((id(p.key), p.player), p) for p in new.players)
    return Batch(list(matches.values()), old.events + new.events,
                 old.checkpoints + new.checkpoints, list(players.values()))
