"""Ask the game server who is on it: status answers parsed, and the poller that publishes them.

:func:`parse_source_status` reads the text of a Source RCON ``status`` (pure, never raises)
in its three layouts:

* CS:GO, TF2, CS:S, GMod: ``# userid [slot] "name" uniqueid connected ping loss state ...``
  (bots: ``#103 "Jeff" BOT active 64``);
* CS2: a ``---------players--------`` block of ``id time ping loss state rate [adr] 'name'``
  rows (bots have ``BOT`` as their time, no Steam ID is given; ``65535 [NoChan]`` rows are
  empty slots);
* GoldSrc (CS 1.6, HLDS): ``# slot "name" userid uniqueid frag time ping loss adr``.

Addresses in the rows are never kept. :func:`quake3_status` turns a Quake 3 ``getstatus``
answer into the same form.

:class:`StatusPoller` queries its game server when the link comes up, every ``interval``
seconds and shortly after a map change, and publishes each answer on the event bus as a
:class:`gamews.events.ServerStatus`, which the match state merges by the rules written in
:class:`gamews.events.MatchState`. Only one query is in flight at a time; on Quake 3 the
query shares the rcon client's paced budget (``getstatus`` and ``rcon`` are one queue).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.events import Envelope, EventBus, MapChange, Player, ServerStatus, StatusPlayer
from gamews.logs.source import make_player
from gamews.rcon import quake3_codec
from gamews.rcon.link import LinkState
from gamews.rcon.quake3 import Quake3RconClient
from gamews.rcon.server import GameServer

__all__ = ["StatusAnswer", "StatusPoller", "parse_source_status", "quake3_status"]

_log = Logger(namespace="gamews.rcon.status")

_HOSTNAME: Final = re.compile(r"hostname\s*:\s*(.*?)\s*\Z")
_MAP: Final = re.compile(r"map\s*:\s*(\S+)")
_SPAWNGROUP: Final = re.compile(r"loaded spawngroup\(\s*\d+\)\s*:\s*SV:\s*\[\d+:\s*([^\s|\]]+)"
                                r"\s*\|\s*main lump")
_LEGACY: Final = re.compile(
    r'#\s*(?P<uid>\d{1,10})(?:\s+(?P<slot>\d{1,3}))?\s+"(?P<name>.*)"\s+(?P<id>\S+)'
    r'(?:\s+(?P<time>[\d:]{4,12})\s+(?P<ping>\d{1,6})\s+(?P<loss>\d{1,3}))?'
    r'\s+(?P<state>[a-z]+)\b')
_GOLDSRC: Final = re.compile(
    r'#\s*(?P<slot>\d{1,3})\s+"(?P<name>.*)"\s+(?P<uid>\d{1,10})\s+(?P<id>\S+)\s+-?\d+\s+'
    r'(?P<time>[\d:]{4,12})\s+(?P<ping>\d{1,6})\s+(?P<loss>\d{1,3})\b')
_CS2: Final = re.compile(
    r"\s*(?P<uid>\d{1,5})\s+(?P<time>BOT|[\d:]{4,12})\s+(?P<ping>\d{1,6})\s+(?P<loss>\d{1,3})"
    r"\s+(?P<state>[a-z]+)\s+\d+.*?'(?P<name>.*)'\s*\Z")


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """A parsed status answer: the map and host name (``None`` if not given) and players."""

    map: str | None
    hostname: str | None
    players: tuple[StatusPlayer, ...]


def _seconds(text: str | None) -> int | None:
    if not text or not text[0].isdigit():
        return None
    total = 0
    for part in text.split(":"):
        if not part.isdigit():
            return None
        total = total * 60 + int(part)
    return total


def _int(text: str | None) -> int | None:
    return int(text) if text is not None else None


def parse_source_status(text: str) -> StatusAnswer:
    """Parse a Source ``status`` reply (any of the layouts in the module docstring)."""
    hostname: str | None = None
    map_name: str | None = None
    players: list[StatusPlayer] = []
    goldsrc = cs2 = False
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if hostname is None and (m := _HOSTNAME.match(stripped)) is not None:
            hostname = m[1] or None
        elif map_name is None and (m := _MAP.match(stripped)) is not None:
            map_name = m[1]
        elif map_name is None and (m := _SPAWNGROUP.match(stripped)) is not None:
            map_name = m[1]
        elif stripped.startswith("#") and " frag " in stripped and "userid" in stripped:
            goldsrc = True
        elif stripped.startswith("---------players"):
            cs2 = True
        elif stripped == "#end":
            cs2 = False
        elif goldsrc and (m := _GOLDSRC.match(stripped)) is not None:
            players.append(StatusPlayer(
                make_player(m["name"], m["uid"], m["id"], None),
                _int(m["ping"]), None, _seconds(m["time"]), "active"))
        elif cs2 and (m := _CS2.match(line)) is not None:
            uid = int(m["uid"])
            if uid == 65535:
                continue  # an empty slot being challenged
            bot = m["time"] == "BOT"
            player = Player(m["name"], f"bot:{uid}" if bot else f"uid:{uid}", uid, None, bot)
            players.append(StatusPlayer(player, _int(m["ping"]), None, _seconds(m["time"]),
                                        m["state"]))
        elif not goldsrc and (m := _LEGACY.match(stripped)) is not None:
            players.append(StatusPlayer(
                make_player(m["name"], m["uid"], m["id"], None),
                _int(m["ping"]), None, _seconds(m["time"]), m["state"]))
    return StatusAnswer(map_name, hostname, tuple(players))


def quake3_status(status: quake3_codec.ServerStatus) -> StatusAnswer:
    """A Quake 3 ``getstatus`` answer in the common form (players known by name only)."""
    players = tuple(StatusPlayer(Player(p.name, f"name:{p.name}"), p.ping, p.score)
                    for p in status.players)
    return StatusAnswer(status.map_name or None, status.hostname or None, players)


def query_status(game: GameServer) -> Deferred[StatusAnswer]:
    """Ask ``game`` for its status: ``getstatus`` (Quake 3) or RCON ``status`` (Source)."""
    if game.kind == "quake3":
        return cast(Quake3RconClient, game.client).getstatus().addCallback(quake3_status)
    return game.client.rcon("status").addCallback(parse_source_status)


class StatusPoller(Service):
    """Queries one game server's status and publishes the answers (module docstring).

    ``settle``: seconds after a map change before the next query (clients reconnect).
    """

    def __init__(self, game: GameServer, bus: EventBus, interval: float, *,
                 clock: IReactorTime, settle: float = 1.0) -> None:
        """Poll ``game`` every ``interval`` seconds while running."""
        self.game = game
        self.bus = bus
        self.interval = interval
        self.clock = clock
        self.settle = settle
        self.name = f"status:{game.name}"
        self.answers = 0
        """Answers published so far."""
        self._loop: LoopingCall | None = None
        self._busy = False
        self._failing = False
        self._after_map: IDelayedCall | None = None
        self._unsubscribe: list[Any] = []

    def startService(self) -> None:
        """Start polling (at once) and follow link-ups and map changes."""
        super().startService()  # type: ignore[no-untyped-call]
        self._unsubscribe.append(self.game.subscribe(self._link_changed))
        sub = self.bus.subscribe(self._event, server=self.game.name, name=self.name)
        self._unsubscribe.append(sub.cancel)
        loop = self._loop = LoopingCall(self._tick)
        loop.clock = self.clock
        loop.start(self.interval, now=True)

    def stopService(self) -> Deferred[None] | None:
        """Stop polling; an answer still on its way is dropped."""
        super().stopService()  # type: ignore[no-untyped-call]
        for stop in self._unsubscribe:
            stop()
        self._unsubscribe = []
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._after_map is not None and self._after_map.active():
            self._after_map.cancel()
        self._after_map = None
        return None

    def _link_changed(self, state: LinkState) -> None:
        if state is LinkState.UP:
            self.query()

    def _event(self, envelope: Envelope) -> None:
        event = envelope.event
        if isinstance(event, MapChange) and event.phase == "started" and self.running:
            if self._after_map is not None and self._after_map.active():
                self._after_map.cancel()
            self._after_map = self.clock.callLater(self.settle, self.query)

    def _tick(self) -> None:
        # Quake 3's link is up only while it answers: the query is what brings it back.
        if self.game.kind == "quake3" or self.game.state is LinkState.UP:
            self.query()

    def query(self) -> None:
        """Ask now, unless a query is already on its way."""
        if self._busy or not self.running:
            return
        self._busy = True
        state = self.bus.state(self.game.name)
        asked = state.seq if state is not None else 0
        query_status(self.game).addCallbacks(self._answered, self._failed,
                                             callbackArgs=(asked,))

    def _answered(self, answer: StatusAnswer, asked: int) -> None:
        self._busy = False
        if self._failing:
            _log.info("status of {name} answered again", name=self.game.name)
            self._failing = False
        if not self.running:
            return
        self.answers += 1
        self.bus.publish(self.game.name, ServerStatus(answer.map, answer.hostname,
                                                      answer.players, asked))

    def _failed(self, failure: Failure) -> None:
        self._busy = False
        if not self._failing:
            _log.warn("status query of {name} failed: {why}", name=self.game.name,
                      why=failure.getErrorMessage())
            self._failing = True
