"""A match as it is recorded, without I/O: its row, its players' lines, the state
checkpoints seeking starts from, and the rows a flush writes (:class:`Batch`).

Player identity across matches (:func:`archive_key`): a Source player's normalised Steam
ID (``[U:1:N]``); anyone else by name (``name:NAME``: Quake 3 has no stable identity, a
client number is valid within a map only). Bots, the console and the world are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gamews.events import (
    Envelope,
    Kill,
    MapChange,
    MatchEnd,
    MatchStart,
    MatchState,
    Player,
    Suicide,
    WorldKill,
)

__all__ = ["Batch", "MatchId", "MatchRow", "PlayerLine", "Recording", "archive_key"]


class MatchId:
    """A match's database id, once the writer has inserted its row (writer thread only)."""

    __slots__ = ("id",)

    def __init__(self, id: int | None = None) -> None:
        self.id = id


@dataclass(frozen=True)
class MatchRow:
    """A match's columns as of one flush."""

    key: MatchId
    server: str
    map: str | None
    started: float
    ended: float | None
    last_event: float
    status: str
    joined: bool
    first_seq: int
    last_seq: int
    events: int
    teams: str
    players: str
    reason: str | None


@dataclass(frozen=True)
class PlayerLine:
    """One player's line in one match, as of one flush."""

    key: MatchId
    player: str
    name: str
    team: str | None
    kills: int
    deaths: int
    headshots: int
    last_seen: float


@dataclass
class Batch:
    """What one flush writes, in one transaction."""

    matches: list[MatchRow] = field(default_factory=list)
    events: list[tuple[MatchId, Envelope]] = field(default_factory=list)
    checkpoints: list[tuple[MatchId, int, float, dict[str, Any]]] = field(default_factory=list)
    players: list[PlayerLine] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.matches or self.events or self.checkpoints or self.players)


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
