"""Typed game events, their JSON form, the event bus and the per-server match state.

Parsers (:mod:`gamews.logs.quake3`, :mod:`gamews.logs.source`) turn one log line into
exactly one :class:`Event` (:class:`Unknown` when no other type fits). A log source hands
each event to :meth:`EventBus.publish` with the name of its game server; the bus stamps it
with a per-server sequence number (an :class:`Envelope`), updates that server's
:class:`MatchState` and queues it for every subscriber.

JSON schema
===========

One JSON object per event (:meth:`Envelope.to_json`)::

    {"type": "kill", "server": "alpha", "seq": 42, "received": 1795858300.89,
     "log_time": "2026-11-28T09:29:24", "game_clock": null,
     "killer": {"name": "Sarge", "id": "[U:1:123]", "slot": 2, "team": "CT", "bot": false},
     "victim": {...}, "weapon": "ak47", "headshot": true, "flags": ["headshot"],
     "killer_pos": [1.0, 2.0, 3.0], "victim_pos": [4.0, 5.0, 6.0]}

Common keys, present in every object:

``type``
    the event type (the table below).
``server``
    the game server's name (its ``[[server]]`` table's ``name``).
``seq``
    an integer starting at 1 for each game server and growing by exactly 1 per event, so
    a gap means events were lost (see :class:`Subscription`).
``received``
    when gamews received the line (seconds since the epoch, float).
``log_time``
    the line's own wall-clock stamp as ISO 8601 without zone (Source logs), or ``null``.
``game_clock``
    the line's own game-clock stamp in seconds since map start (Quake 3 ``M:SS``), or ``null``.

No event carries an IP address (players' or admins'): parsers drop them, so nothing
that reaches a plugin or a browser can leak one.

A *player* is an object ``{"name", "id", "slot", "team", "bot"}``: ``id`` is a stable
identity (Source: the Steam ID normalised to ``[U:1:N]`` while no other connected player
holds it, else ``uid:USERID``, see :class:`MatchState`; ``bot:USERID`` for bots,
``console`` for the server console, ``uid:USERID`` when the Steam ID is pending, LAN or 0;
Quake 3: ``client:N``, the client number, valid within a map), ``slot`` the user id (Source)
or client number (Quake 3), ``team`` the team as the game names it (``CT``, ``TERRORIST``,
``Red``, ``Unassigned``; Quake 3 ``free``, ``red``, ``blue``, ``spectator``) or ``null``
when the line does not say. A *position* is ``[x, y, z]`` or ``null``. A *properties*
object maps names to strings.

=======================  ===============================================================
type                     fields
=======================  ===============================================================
``unknown``              ``raw``: the line (any line no other type fits)
``player_connected``     ``player``
``player_entered``       ``player``
``player_disconnected``  ``player``, ``reason`` (or ``null``)
``player_info``          ``player`` (name and team as now set), ``info`` (properties);
                         a Quake 3 user-info line of a known player that changes only
                         the team or only the name is published as a team change or a
                         name change instead
``team_change``          ``player``, ``team``, ``old_team`` (or ``null``)
``name_change``          ``player`` (old name), ``new_name``
``chat``                 ``player``, ``text``, ``team`` (bool), ``dead`` (bool),
                         ``target`` (a player for private messages, or ``null``)
``kill``                 ``killer``, ``victim``, ``weapon``, ``headshot`` (bool), ``flags``
                         (list of strings: ``headshot``, ``penetrated``, ``noscope``...),
                         ``killer_pos``, ``victim_pos``, ``properties``,
                         ``weapon_name`` (readable name, or ``null``: show ``weapon``)
``suicide``              ``player``, ``weapon``, ``position``, ``weapon_name``
``world_kill``           ``victim``, ``cause`` (``MOD_FALLING``, ``bomb``...),
                         ``cause_name`` (``falling``, or ``null``)
``damage``               ``attacker``, ``victim``, ``weapon``, ``damage``,
                         ``damage_armor``, ``health``, ``armor``, ``hitgroup``,
                         ``attacker_pos``, ``victim_pos``
``assist``               ``assister``, ``victim``, ``flash`` (bool)
``player_score``         ``player``, ``score``, ``ping`` (or ``null``), ``final`` (bool)
``item``                 ``player``, ``item``, ``properties`` (TF2 ``healing``)
``player_triggered``     ``player``, ``action``, ``target`` (or ``null``), ``properties``
``team_triggered``       ``team``, ``action``, ``properties``
``world_triggered``      ``action``, ``properties``
``point_captured``       ``team``, ``point`` (or ``null``), ``cappers`` (players),
                         ``properties``
``team_score``           ``team``, ``score``, ``players`` (or ``null``)
``team_scores``          ``scores`` (object: team name to score)
``round_start``          (nothing more)
``round_end``            ``winner`` (or ``null``), ``reason`` (or ``null``)
``match_start``          ``map`` (or ``null``)
``match_end``            ``reason`` (or ``null``), ``map`` (or ``null``), ``score`` (or ``null``)
``map_change``           ``map``, ``phase`` (``loading`` or ``started``), ``settings``
``game_shutdown``        (nothing more)
``server_cvar``          ``name``, ``value``
``rcon``                 ``command``, ``ok`` (bool)
``server_status``        ``map``, ``hostname`` (either may be ``null``), ``players`` (player
                         objects with ``ping``, ``score``, ``connected``, ``state``),
                         ``asked_seq``: the game server's answer to a status query,
                         merged into the match state (:class:`MatchState`)
``custom``               ``channel``, ``data`` (a JSON object): a ``gamews CHANNEL JSON``
                         line from a game-side plugin (:mod:`gamews.logs.bridge`)
=======================  ===============================================================
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.redact import redact_event

__all__ = [
    "EVENT_TYPES",
    "Assist",
    "Chat",
    "Connected",
    "Custom",
    "Damage",
    "Disconnected",
    "Entered",
    "Envelope",
    "Event",
    "EventBus",
    "GameShutdown",
    "ItemPickup",
    "Kill",
    "MapChange",
    "MatchEnd",
    "MatchStart",
    "MatchState",
    "NameChange",
    "Player",
    "PlayerInfo",
    "PlayerScore",
    "PlayerTriggered",
    "PointCaptured",
    "Position",
    "Properties",
    "RconSeen",
    "RoundEnd",
    "RoundStart",
    "ServerCvar",
    "ServerStatus",
    "StatusPlayer",
    "Subscription",
    "Suicide",
    "TeamChange",
    "TeamScore",
    "TeamScores",
    "TeamTriggered",
    "Unknown",
    "WorldKill",
    "WorldTriggered",
    "envelope_from_json",
    "player_fields",
]

Position = tuple[float, float, float]
"""A map position ``(x, y, z)``."""

Properties = tuple[tuple[str, str], ...]
"""Name/value pairs in line order (hashable, unlike a dict); JSON renders an object."""

_log = Logger(namespace="gamews.events")


@dataclass(frozen=True, slots=True)
class Player:
    """A player as one log line names them.

    ``key`` is the stable identity (see the module docstring); ``slot`` the Source user id
    or Quake 3 client number; ``team`` ``None`` when the line does not say.
    """

    name: str
    key: str
    slot: int | None = None
    team: str | None = None
    bot: bool = False
    steam_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The player's JSON object."""
        return {"name": self.name, "id": self.key, "slot": self.slot, "team": self.team,
                "bot": self.bot}


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events: the line's own time stamps (either may be ``None``)."""

    type: ClassVar[str] = "event"
    log_time: str | None = None
    """The line's wall-clock stamp, ISO 8601 without zone (Source)."""
    game_clock: int | None = None
    """The line's game-clock stamp in seconds since map start (Quake 3)."""


@dataclass(frozen=True, slots=True)
class Unknown(Event):
    """A line no other type fits; nothing is dropped silently."""

    type: ClassVar[str] = "unknown"
    raw: str


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """A player connected (the address the log gives is never kept: it must not reach a
    browser, and gamews has no use for it)."""

    type: ClassVar[str] = "player_connected"
    player: Player


@dataclass(frozen=True, slots=True)
class Entered(Event):
    """A player entered the game (Source ``entered the game``, Quake 3 ``ClientBegin``)."""

    type: ClassVar[str] = "player_entered"
    player: Player


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """A player left, with the reason when the log gives one."""

    type: ClassVar[str] = "player_disconnected"
    player: Player
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlayerInfo(Event):
    """Quake 3 ``ClientUserinfoChanged``: the player's name and team as now set."""

    type: ClassVar[str] = "player_info"
    player: Player
    info: Properties = ()


@dataclass(frozen=True, slots=True)
class TeamChange(Event):
    """A player joined ``team`` (from ``old_team`` when the log says)."""

    type: ClassVar[str] = "team_change"
    player: Player
    team: str
    old_team: str | None = None


@dataclass(frozen=True, slots=True)
class NameChange(Event):
    """A player (``player.name`` is the old name) is now called ``new_name``."""

    type: ClassVar[str] = "name_change"
    player: Player
    new_name: str


@dataclass(frozen=True, slots=True)
class Chat(Event):
    """A chat message: to all, to the team, or (``target``) to one player."""

    type: ClassVar[str] = "chat"
    player: Player
    text: str
    team: bool = False
    dead: bool = False
    target: Player | None = None


@dataclass(frozen=True, slots=True)
class Kill(Event):
    """``killer`` killed ``victim`` with ``weapon``; ``flags`` are the line's bare flags."""

    type: ClassVar[str] = "kill"
    killer: Player
    victim: Player
    weapon: str
    headshot: bool = False
    flags: tuple[str, ...] = ()
    killer_pos: Position | None = None
    victim_pos: Position | None = None
    properties: Properties = ()
    weapon_name: str | None = None
    """The weapon as people call it (Quake 3: ``rocket launcher (splash)`` for
    ``MOD_ROCKET_SPLASH``), when the parser knows; ``weapon`` keeps the raw name."""


@dataclass(frozen=True, slots=True)
class Suicide(Event):
    """A player killed themselves (``weapon`` says how)."""

    type: ClassVar[str] = "suicide"
    player: Player
    weapon: str
    position: Position | None = None
    weapon_name: str | None = None
    """As :attr:`Kill.weapon_name`."""


@dataclass(frozen=True, slots=True)
class WorldKill(Event):
    """The world killed ``victim`` (falling, lava, a trigger, the bomb...)."""

    type: ClassVar[str] = "world_kill"
    victim: Player
    cause: str
    cause_name: str | None = None
    """The cause as people call it (``falling`` for ``MOD_FALLING``), when known."""


@dataclass(frozen=True, slots=True)
class Damage(Event):
    """``attacker`` hurt ``victim`` (CS:GO ``attacked`` lines)."""

    type: ClassVar[str] = "damage"
    attacker: Player
    victim: Player
    weapon: str
    damage: int
    damage_armor: int | None = None
    health: int | None = None
    armor: int | None = None
    hitgroup: str | None = None
    attacker_pos: Position | None = None
    victim_pos: Position | None = None


@dataclass(frozen=True, slots=True)
class Assist(Event):
    """``assister`` helped kill ``victim`` (``flash``: by blinding them)."""

    type: ClassVar[str] = "assist"
    assister: Player
    victim: Player
    flash: bool = False


@dataclass(frozen=True, slots=True)
class PlayerScore(Event):
    """A player's score (Quake 3 ``PlayerScore``; ``final`` for the end-of-match list)."""

    type: ClassVar[str] = "player_score"
    player: Player
    score: int
    ping: int | None = None
    final: bool = False


@dataclass(frozen=True, slots=True)
class ItemPickup(Event):
    """A player picked up an item (Quake 3 ``Item``, TF2 ``picked up item``), with the
    line's properties (TF2 ``healing``)."""

    type: ClassVar[str] = "item"
    player: Player
    item: str
    properties: Properties = ()


@dataclass(frozen=True, slots=True)
class PlayerTriggered(Event):
    """A player did something game-specific (``Planted_The_Bomb``, a CTF capture...)."""

    type: ClassVar[str] = "player_triggered"
    player: Player
    action: str
    target: Player | None = None
    properties: Properties = ()


@dataclass(frozen=True, slots=True)
class TeamTriggered(Event):
    """A team did something (``SFUI_Notice_CTs_Win`` with the scores as properties)."""

    type: ClassVar[str] = "team_triggered"
    team: str
    action: str
    properties: Properties = ()


@dataclass(frozen=True, slots=True)
class WorldTriggered(Event):
    """A world event other than the round and match ones."""

    type: ClassVar[str] = "world_triggered"
    action: str
    properties: Properties = ()


@dataclass(frozen=True, slots=True)
class PointCaptured(Event):
    """``team`` captured control point ``point`` (TF2 ``pointcaptured``); ``cappers`` are the
    players the line names, ``properties`` the rest (``cp``, ``numcappers``...)."""

    type: ClassVar[str] = "point_captured"
    team: str
    point: str | None
    cappers: tuple[Player, ...] = ()
    properties: Properties = ()


@dataclass(frozen=True, slots=True)
class TeamScore(Event):
    """A team's score (``players``: how many it has, when the log says)."""

    type: ClassVar[str] = "team_score"
    team: str
    score: int
    players: int | None = None


@dataclass(frozen=True, slots=True)
class TeamScores(Event):
    """Several teams' scores on one line (Quake 3 ``red:8 blue:5``)."""

    type: ClassVar[str] = "team_scores"
    scores: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class RoundStart(Event):
    """A round started."""

    type: ClassVar[str] = "round_start"


@dataclass(frozen=True, slots=True)
class RoundEnd(Event):
    """A round ended (``winner``: the winning team, when the log says)."""

    type: ClassVar[str] = "round_end"
    winner: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class MatchStart(Event):
    """A match started (on ``map`` when the log says)."""

    type: ClassVar[str] = "match_start"
    map: str | None = None


@dataclass(frozen=True, slots=True)
class MatchEnd(Event):
    """A match ended (Quake 3 ``Exit``, CS ``Game Over``, TF2 ``Game_Over``)."""

    type: ClassVar[str] = "match_end"
    reason: str | None = None
    map: str | None = None
    score: str | None = None


@dataclass(frozen=True, slots=True)
class MapChange(Event):
    """The server is ``loading`` or has ``started`` ``map`` (Quake 3 ``InitGame``: started)."""

    type: ClassVar[str] = "map_change"
    map: str
    phase: str = "started"
    settings: Properties = ()


@dataclass(frozen=True, slots=True)
class GameShutdown(Event):
    """Quake 3 ``ShutdownGame``: the game module stops; every client is dropped from it."""

    type: ClassVar[str] = "game_shutdown"


@dataclass(frozen=True, slots=True)
class ServerCvar(Event):
    """A server variable was set (or listed)."""

    type: ClassVar[str] = "server_cvar"
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class RconSeen(Event):
    """The game server logged an rcon command (``ok`` false for a bad password).

    ``command`` is the command as run (empty for a rejected one, which may hold a mistyped
    password); the sender's address is never kept.
    """

    type: ClassVar[str] = "rcon"
    command: str
    ok: bool = True


@dataclass(frozen=True, slots=True)
class Custom(Event):
    """A line ``gamews CHANNEL JSON`` written by a plugin inside the game server (the
    bridge, :mod:`gamews.logs.bridge`): ``data`` is its JSON object, checked and bounded."""

    type: ClassVar[str] = "custom"
    channel: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StatusPlayer:
    """One player as the game server's status query lists them (never their address).

    ``player.key`` follows the log's identity rules where the status gives a Steam ID (Source)
    and is ``name:NAME`` where it gives only a name (Quake 3 ``getstatus``, CS2); ``ping`` in
    ms; ``score`` (Quake 3); ``connected`` seconds on the server; ``state`` (``active``,
    ``spawning``...); each ``None`` when the status does not say.
    """

    player: Player
    ping: int | None = None
    score: int | None = None
    connected: int | None = None
    state: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The player's JSON object with ``ping``, ``score``, ``connected`` and ``state``."""
        return {**self.player.to_json(), "ping": self.ping, "score": self.score,
                "connected": self.connected, "state": self.state}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> StatusPlayer:
        """The inverse of :meth:`to_json`."""
        player = _player_from_json(dict(value))
        assert player is not None
        return cls(player, value.get("ping"), value.get("score"), value.get("connected"),
                   value.get("state"))


@dataclass(frozen=True, slots=True)
class ServerStatus(Event):
    """What the game server answered to a status query (Source ``status``, Quake 3
    ``getstatus``): merged into the match state by the rules of :class:`MatchState`.

    ``asked_seq`` is the server's last event ``seq`` when the query was sent: log events
    after it are newer than the answer and win over it.
    """

    type: ClassVar[str] = "server_status"
    map: str | None
    hostname: str | None
    players: tuple[StatusPlayer, ...]
    asked_seq: int = 0


EVENT_TYPES: Final[Mapping[str, type[Event]]] = {
    cls.type: cls
    for cls in (
        Unknown, Connected, Entered, Disconnected, PlayerInfo, TeamChange, NameChange, Chat,
        Kill, Suicide, WorldKill, Damage, Assist, PlayerScore, ItemPickup, PlayerTriggered,
        TeamTriggered, WorldTriggered, TeamScore, TeamScores, RoundStart, RoundEnd,
        MatchStart, MatchEnd, MapChange, GameShutdown, ServerCvar, RconSeen, PointCaptured,
        ServerStatus, Custom,
    )
}
"""Every event class by its ``type``."""

_FIELDS: dict[type[Event], tuple[str, ...]] = {}


def _field_names(cls: type[Event]) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in fields(cls))
        _FIELDS[cls] = names
    return names


_OBJECT_FIELDS: dict[type[Event], frozenset[str]] = {}


def _object_fields(cls: type[Event]) -> frozenset[str]:
    """Fields holding name/value pairs, rendered as JSON objects (``{}`` when empty)."""
    names = _OBJECT_FIELDS.get(cls)
    if names is None:
        names = frozenset(f.name for f in fields(cls)
                          if "Properties" in str(f.type) or "tuple[tuple[str" in str(f.type))
        _OBJECT_FIELDS[cls] = names
    return names


_PLAYER_FIELDS: dict[type[Event], tuple[str, ...]] = {}


def player_fields(cls: type[Event]) -> tuple[str, ...]:
    """Fields holding one player (or ``None``)."""
    names = _PLAYER_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in fields(cls) if str(f.type) in ("Player", "Player | None"))
        _PLAYER_FIELDS[cls] = names
    return names


def _json_value(value: object) -> Any:
    if isinstance(value, Player | StatusPlayer):
        return value.to_json()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def event_fields(event: Event) -> dict[str, Any]:
    """The event's own fields as JSON values (without the envelope's keys)."""
    cls = type(event)
    objects = _object_fields(cls)
    return {name: ({k: _json_value(v) for k, v in getattr(event, name)} if name in objects
                   else _json_value(getattr(event, name)))
            for name in _field_names(cls)}


@dataclass(frozen=True, slots=True)
class Envelope:
    """An event as published: which game server, its sequence number, when it arrived."""

    seq: int
    server: str
    received: float
    event: Event

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the schema in the module docstring."""
        out: dict[str, Any] = {"type": self.event.type, "server": self.server, "seq": self.seq,
                               "received": self.received}
        out.update(event_fields(self.event))
        return out

    def to_json_text(self) -> str:
        """:meth:`to_json` as compact JSON text (non-ASCII kept as is)."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))


def _player_from_json(value: Any) -> Player | None:
    if not isinstance(value, dict):
        return None
    return Player(str(value.get("name", "")), str(value.get("id", "")), value.get("slot"),
                  value.get("team"), bool(value.get("bot", False)))


def _field_from_json(kind: str, value: Any) -> Any:
    if kind in ("Player", "Player | None"):
        return _player_from_json(value)
    if kind == "tuple[Player, ...]":
        return tuple(p for p in map(_player_from_json, value or ()) if p is not None)
    if kind == "tuple[StatusPlayer, ...]":
        return tuple(StatusPlayer.from_json(v) for v in value or () if isinstance(v, dict))
    if isinstance(value, list):
        return tuple(value)
    return value


def envelope_from_json(obj: Mapping[str, Any]) -> Envelope:
    """The inverse of :meth:`Envelope.to_json`.

    A player's Steam ID is not in the JSON and comes back as ``None``. Raises
    ``ValueError`` for an unknown ``type`` or a malformed object.
    """
    cls = EVENT_TYPES.get(str(obj.get("type")))
    if cls is None:
        raise ValueError(f"unknown event type {obj.get('type')!r}")
    objects = _object_fields(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in obj:
            continue
        value = obj[f.name]
        if f.name in objects:
            value = tuple((str(k), v) for k, v in (value or {}).items())
        else:
            value = _field_from_json(str(f.type), value)
        kwargs[f.name] = value
    try:
        event = cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"malformed {cls.type} event: {e}") from None
    return Envelope(int(obj["seq"]), str(obj["server"]), float(obj["received"]), event)


# -- match state ------------------------------------------------------------------------------


@dataclass(slots=True)
class PlayerState:
    """What the match state knows about one player."""

    key: str
    name: str
    slot: int | None
    team: str | None
    bot: bool
    connected_at: float
    kills: int = 0
    deaths: int = 0
    score: int | None = None
    ping: int | None = None
    steam_id: str | None = None
    added_seq: int = 0
    """The ``seq`` of the event that added the player (for the status merge rules)."""

    def to_json(self) -> dict[str, Any]:
        """The player's snapshot object."""
        return {"id": self.key, "name": self.name, "slot": self.slot, "team": self.team,
                "bot": self.bot, "connected_at": self.connected_at, "kills": self.kills,
                "deaths": self.deaths, "score": self.score, "ping": self.ping}


_CS_SCORE_TEAMS: Final = {"CT": "CT", "T": "TERRORIST"}
_TEAM_WINS: Final = {"SFUI_Notice_CTs_Win": "CT", "SFUI_Notice_Terrorists_Win": "TERRORIST",
                     "SFUI_Notice_Target_Bombed": "TERRORIST",
                     "SFUI_Notice_Bomb_Defused": "CT", "SFUI_Notice_Target_Saved": "CT",
                     "SFUI_Notice_Hostages_Rescued": "CT", "CTs_Win": "CT",
                     "Terrorists_Win": "TERRORIST", "Target_Bombed": "TERRORIST",
                     "Bomb_Defused": "CT", "Target_Saved": "CT", "All_Hostages_Rescued": "CT"}
"""CS team triggers that name a round's winner (CS:GO/CS2 ``SFUI_Notice_*``, CS 1.6)."""


def _plain(name: str) -> str:
    """A Quake 3 name without ``^N`` colour codes (how ``getstatus`` and the log compare)."""
    return re.sub(r"\^[0-9A-Za-z]", "", name)


class MatchState:
    """One game server's match as far as its events tell: map, teams, players, backlogs.

    Fed by :meth:`EventBus.publish` (or :meth:`apply` directly); :meth:`snapshot` gives a
    JSON object with the ``seq`` of the last event applied, so a subscriber that takes a
    snapshot and subscribes in the same call (:meth:`EventBus.subscribe_with_snapshot`)
    gets every following event exactly once.

    Identity (Source): a player is known by the Steam ID only while no other connected
    player (another user id) holds the same one; a second holder (old servers give every
    bot ``STEAM_0:0:12345``) is known by its user id (``uid:N``) while it is connected.

    Merge rules, status query versus log (a :class:`ServerStatus` event):

    * The log is authoritative for kills, deaths, scores, chat, teams and names of the
      players it announced; a status never changes them (it fills a score still unknown).
    * The status is authoritative for who is connected and for pings: a listed player the
      state lacks is added (``name:NAME`` when the status gives no identity, replaced by
      the real identity as soon as a log line names the player); a player the state holds
      but the status does not list is removed, unless a log event added them after the
      query was sent (``asked_seq``); every listed player's ping is set.
    * The map: the status's map is taken unless a log event changed the map after the
      query was sent. The host name is the status's.
    * Players are matched by user id (Source) or by name without colour codes (Quake 3).
    """

    def __init__(self, server: str, *, kill_feed_size: int = 20, chat_size: int = 50) -> None:
        """Start empty; the kill feed keeps ``kill_feed_size`` entries, the chat ``chat_size``."""
        if kill_feed_size < 0 or chat_size < 0:
            raise ValueError("backlog sizes must be 0 or more")
        self.server = server
        self.seq = 0
        self.run = 0
        """Which numbering ``seq`` belongs to: changes when the numbering starts again (a new
        run of the instance holding the game link). Compare for equality only."""
        self.map: str | None = None
        self.map_seq = 0
        """The ``seq`` of the last log event that set the map."""
        self.hostname: str | None = None
        self.round = 0
        self.teams: dict[str, int] = {}
        self.players: dict[str, PlayerState] = {}
        self.kill_feed: deque[Envelope] = deque(maxlen=kill_feed_size)
        self.chat: deque[Envelope] = deque(maxlen=chat_size)
        self.game_clock: int | None = None
        self._round_winner: str | None = None

    def _touch(self, player: Player, now: float) -> PlayerState | None:
        """Find (or, for a player seen mid-game, add) ``player``; update name/team."""
        if player.key == "world":
            return None
        if player.key.startswith("name:"):
            return self._by_name(player.name)
        state = self.players.get(player.key)
        if state is None:
            state = PlayerState(player.key, player.name, player.slot, player.team, player.bot,
                                now, steam_id=player.steam_id, added_seq=self.seq)
            placeholder = self._placeholder(player.name)
            if placeholder is not None:
                # a player known only from a status answer: the log now names them
                del self.players[placeholder.key]
                state.connected_at, state.ping = placeholder.connected_at, placeholder.ping
                state.score, state.added_seq = placeholder.score, placeholder.added_seq
            self.players[player.key] = state
            return state
        if player.name:
            state.name = player.name
        if player.team is not None:
            state.team = player.team
        return state

    def _placeholder(self, name: str) -> PlayerState | None:
        if not name:
            return None
        return self.players.get(f"name:{_plain(name)}")

    def _identity(self, p: Player) -> Player:
        """``p`` with the key the identity rules give it (see the class docstring)."""
        if p.steam_id is None or p.slot is None:
            return p
        alias = self.players.get(f"uid:{p.slot}")
        if alias is not None and alias.steam_id == p.steam_id:
            return replace(p, key=alias.key)
        own = self.players.get(p.key)
        if own is not None and own.slot == p.slot:
            return p
        if own is not None or any(q.steam_id == p.steam_id and q.slot != p.slot
                                  for q in self.players.values()):
            return replace(p, key=f"uid:{p.slot}")
        return p

    def resolve(self, event: Event) -> Event:
        """Fill in what a line leaves out from what the state knows.

        Quake 3 chat lines name the player but not the client number (``name:NAME`` keys)
        and most Quake 3 lines give the number but not the name or team; the event is
        returned with those players completed (unchanged when nothing is known). Source
        players get the key of the identity rules (class docstring); a CS round end
        without a winner gets the one its team trigger named.

        A Quake 3 :class:`PlayerInfo` of a known player that changes only the team becomes a
        :class:`TeamChange`, one that changes only the name a :class:`NameChange`, so that
        plugins see the same events for every game.
        """
        if isinstance(event, PlayerInfo):
            known = self.players.get(event.player.key)
            if known is not None:
                p = event.player
                old = Player(known.name, p.key, p.slot, known.team, p.bot, p.steam_id)
                if p.name == known.name and p.team != known.team and p.team is not None:
                    return TeamChange(old, p.team, known.team, log_time=event.log_time,
                                      game_clock=event.game_clock)
                if p.name != known.name and p.team == known.team:
                    return NameChange(old, p.name, log_time=event.log_time,
                                      game_clock=event.game_clock)
            return event
        if isinstance(event, RoundEnd) and event.winner is None and self._round_winner:
            return replace(event, winner=self._round_winner)
        changes: dict[str, Any] = {}
        for name in player_fields(type(event)):
            original = getattr(event, name)
            if not isinstance(original, Player):
                continue
            value = self._identity(original)
            if value.key.startswith("name:"):
                known = self._by_name(value.name)
            else:
                known = self.players.get(value.key)
                if known is not None and known.name == value.name and (
                    known.team == value.team or value.team is not None
                ):
                    known = None
            if known is not None:
                changes[name] = Player(value.name or known.name, known.key, known.slot,
                                       value.team if value.team is not None else known.team,
                                       known.bot, value.steam_id)
            elif value is not original:
                changes[name] = value
        return replace(event, **changes) if changes else event

    def _by_name(self, name: str) -> PlayerState | None:
        for p in self.players.values():
            if p.name == name:
                return p
        return None

    def _reset_stats(self) -> None:
        self.round = 0
        self.teams.clear()
        self._round_winner = None
        for p in self.players.values():
            p.kills = p.deaths = 0
            p.score = None

    def _set_map(self, name: str) -> None:
        self.map = name
        self.map_seq = self.seq

    def apply(self, envelope: Envelope) -> None:
        """Update the state from one published event."""
        self.seq = envelope.seq
        event, now = envelope.event, envelope.received
        if event.game_clock is not None:
            self.game_clock = event.game_clock
        if isinstance(event, Kill):
            killer = self._touch(event.killer, now)
            victim = self._touch(event.victim, now)
            if killer is not None:
                killer.kills += 1
            if victim is not None:
                victim.deaths += 1
            self.kill_feed.append(envelope)
        elif isinstance(event, Suicide):
            p = self._touch(event.player, now)
            if p is not None:
                p.deaths += 1
            self.kill_feed.append(envelope)
        elif isinstance(event, WorldKill):
            p = self._touch(event.victim, now)
            if p is not None:
                p.deaths += 1
            self.kill_feed.append(envelope)
        elif isinstance(event, Chat):
            if event.player.key != "console":
                self._touch(event.player, now)
            self.chat.append(envelope)
        elif isinstance(event, Connected | Entered | PlayerInfo | Damage | Assist | ItemPickup):
            for value in (getattr(event, n) for n in player_fields(type(event))):
                if isinstance(value, Player) and value.key != "console":
                    self._touch(value, now)
        elif isinstance(event, Disconnected):
            self.players.pop(event.player.key, None)
        elif isinstance(event, TeamChange):
            p = self._touch(event.player, now)
            if p is not None:
                p.team = event.team
        elif isinstance(event, NameChange):
            p = self._touch(event.player, now)
            if p is not None:
                p.name = event.new_name
        elif isinstance(event, PlayerScore):
            p = self._touch(event.player, now)
            if p is not None:
                p.score = event.score
        elif isinstance(event, TeamScore):
            self.teams[event.team] = event.score
        elif isinstance(event, TeamScores):
            self.teams.update(dict(event.scores))
        elif isinstance(event, TeamTriggered):
            if event.action in _TEAM_WINS:
                self._round_winner = event.team
            for k, v in event.properties:
                if k in _CS_SCORE_TEAMS and v.lstrip("-").isdigit():
                    self.teams[_CS_SCORE_TEAMS[k]] = int(v)
        elif isinstance(event, RoundStart):
            self.round += 1
            self._round_winner = None
        elif isinstance(event, MatchStart):
            if event.map:
                self._set_map(event.map)
            self._reset_stats()
        elif isinstance(event, MapChange):
            self._set_map(event.map)
            if event.phase == "started":
                self._reset_stats()
        elif isinstance(event, GameShutdown):
            self.players.clear()
        elif isinstance(event, ServerStatus):
            self._reconcile(event, now)

    def _reconcile(self, status: ServerStatus, now: float) -> None:
        """Merge a status answer (the rules in the class docstring)."""
        if status.map and self.map_seq <= status.asked_seq:
            self.map = status.map
        if status.hostname:
            self.hostname = status.hostname
        matched: set[str] = set()
        for listed in status.players:
            state = self._match(listed.player, matched)
            if state is None:
                p = listed.player
                key = self._identity(p).key if not p.key.startswith("name:") else (
                    f"name:{_plain(p.name)}")
                state = PlayerState(key, p.name, p.slot, p.team, p.bot, now, steam_id=p.steam_id,
                                    added_seq=self.seq)
                if listed.connected is not None:
                    state.connected_at = now - listed.connected
                self.players[key] = state
            matched.add(state.key)
            state.ping = listed.ping
            if state.score is None:
                state.score = listed.score
        for key, held in list(self.players.items()):
            if key not in matched and held.added_seq <= status.asked_seq:
                del self.players[key]

    def _match(self, listed: Player, matched: set[str]) -> PlayerState | None:
        """The state's player that a status line lists, not yet matched, or ``None``."""
        free = [p for p in self.players.values() if p.key not in matched]
        if listed.key.startswith("name:"):
            plain = _plain(listed.name)
            return next((p for p in free if _plain(p.name) == plain), None)
        if listed.slot is not None:
            found = next((p for p in free if p.slot == listed.slot), None)
            if found is not None:
                return found
        return next((p for p in free if p.key == listed.key), None)

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Replace the whole state with a :meth:`snapshot` taken elsewhere (another instance
        of gamews), so that applying the events that follow it gives the same state."""
        self.seq = int(snapshot.get("seq", 0))
        self.run = int(snapshot.get("run", self.run))
        self.map = snapshot.get("map")
        self.map_seq = self.seq
        self.hostname = snapshot.get("hostname")
        self.round = int(snapshot.get("round", 0))
        self.game_clock = snapshot.get("game_clock")
        self.teams = {str(k): int(v) for k, v in dict(snapshot.get("teams", {})).items()}
        self.players = {}
        for p in snapshot.get("players", []):
            state = PlayerState(str(p["id"]), str(p["name"]), p.get("slot"), p.get("team"),
                                bool(p.get("bot")), float(p.get("connected_at", 0.0)),
                                int(p.get("kills", 0)), int(p.get("deaths", 0)), p.get("score"),
                                p.get("ping"), added_seq=self.seq)
            self.players[state.key] = state
        self.kill_feed.clear()
        self.kill_feed.extend(envelope_from_json(e) for e in snapshot.get("kill_feed", []))
        self.chat.clear()
        self.chat.extend(envelope_from_json(e) for e in snapshot.get("chat", []))

    def snapshot(self) -> dict[str, Any]:
        """A JSON object of the whole state, with ``seq`` of the last event applied."""
        return {
            "type": "snapshot", "server": self.server, "seq": self.seq, "run": self.run,
            "map": self.map, "hostname": self.hostname, "round": self.round,
            "game_clock": self.game_clock, "teams": dict(self.teams),
            "players": [p.to_json() for p in self.players.values()],
            "kill_feed": [e.to_json() for e in self.kill_feed],
            "chat": [e.to_json() for e in self.chat],
        }


# -- bus --------------------------------------------------------------------------------------

Subscriber = Callable[[Envelope], object]
"""A subscriber: called with each envelope; may return a Deferred to apply backpressure."""


class Subscription:
    """One subscriber's handle: its bounded queue, counters, and :meth:`cancel`.

    Events are delivered in ``seq`` order. While the callback's Deferred is pending the
    subscriber is busy and events wait in its queue; when the queue is full the oldest
    waiting event is dropped and counted in :attr:`dropped` (the subscriber sees the gap in
    ``seq`` and may take a fresh snapshot). Exceptions (or failed Deferreds) are logged; after
    ``max_failures`` in a row the subscription is cancelled.
    """

    def __init__(self, bus: EventBus, callback: Subscriber, server: str | None,
                 queue_size: int, max_failures: int, name: str) -> None:
        """Made by :meth:`EventBus.subscribe`."""
        self._bus = bus
        self.callback = callback
        self.server = server
        self.name = name
        self.queue: deque[Envelope] = deque()
        self.queue_size = queue_size
        self.max_failures = max_failures
        self.delivered = 0
        self.dropped = 0
        self.failures = 0
        self.total_failures = 0
        self.active = True
        self.after = 0
        """Events of :attr:`server` up to this ``seq`` are skipped (already in a snapshot)."""
        self._busy = False
        self._draining = False
        self._scheduled: IDelayedCall | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.name} server={self.server!r} active={self.active}>"

    def cancel(self) -> None:
        """Stop deliveries; queued events are discarded. Idempotent."""
        if not self.active:
            return
        self.active = False
        self.queue.clear()
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        self._bus._remove(self)

    def _offer(self, envelope: Envelope) -> None:
        if not self.active or (envelope.seq <= self.after and envelope.server == self.server):
            return
        if len(self.queue) >= self.queue_size:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _log.warn("subscriber {name} is slow: {dropped} events dropped so far",
                          name=self.name, dropped=self.dropped)
        self.queue.append(envelope)
        self._drain()

    def _drain(self) -> None:
        if self._draining or self._busy or not self.active:
            return
        self._draining = True
        budget = self._bus.batch
        try:
            while self.queue and self.active and not self._busy:
                if budget == 0:
                    # A long backlog is delivered over several reactor turns so other
                    # subscribers and I/O get their share.
                    if self._scheduled is None:
                        self._scheduled = self._bus.clock.callLater(0, self._resume)
                    return
                budget -= 1
                self._deliver(self.queue.popleft())
        finally:
            self._draining = False

    def _resume(self) -> None:
        self._scheduled = None
        self._drain()

    def _deliver(self, envelope: Envelope) -> None:
        try:
            result = self.callback(envelope)
        except Exception:
            self._failed(Failure(), envelope)
            return
        self.delivered += 1
        if isinstance(result, Deferred):
            self._busy = True
            result.addCallbacks(self._done, self._failed_async, errbackArgs=(envelope,))
        else:
            self.failures = 0

    def _done(self, _: object) -> None:
        self._busy = False
        self.failures = 0
        self._drain()

    def _failed_async(self, failure: Failure, envelope: Envelope) -> None:
        self._busy = False
        self._failed(failure, envelope)
        self._drain()

    def _failed(self, failure: Failure, envelope: Envelope) -> None:
        self.failures += 1
        self.total_failures += 1
        _log.failure("subscriber {name} failed on {type} seq {seq} ({n} in a row)", failure,
                     name=self.name, type=envelope.event.type, seq=envelope.seq,
                     n=self.failures)
        if self.failures >= self.max_failures:
            _log.error("subscriber {name} unsubscribed after {n} failures in a row",
                       name=self.name, n=self.failures)
            self.cancel()


class EventBus:
    """Fans events out to subscribers, per game server or for all, and keeps match states.

    ``clock`` gives the ``received`` time stamps and schedules the delivery of long
    backlogs; ``queue_size`` is each subscriber's default bound; ``batch`` how many events
    one subscriber gets per reactor turn at most.
    """

    def __init__(self, clock: IReactorTime, *, queue_size: int = 1000, max_failures: int = 3,
                 batch: int = 500, kill_feed_size: int = 20, chat_size: int = 50) -> None:
        """Create an empty bus; match states are made with these backlog sizes by default."""
        if queue_size < 1 or max_failures < 1 or batch < 1:
            raise ValueError("queue_size, max_failures and batch must be at least 1")
        self.clock = clock
        self.queue_size = queue_size
        self.max_failures = max_failures
        self.batch = batch
        self.kill_feed_size = kill_feed_size
        self.chat_size = chat_size
        self.run = int(clock.seconds() * 1000)
        """The run number of the states made here (this process's start, in ms)."""
        self._states: dict[str, MatchState] = {}
        self._seq: dict[str, int] = {}
        self._all: list[Subscription] = []
        self._by_server: dict[str, list[Subscription]] = {}
        self._count = 0
        self._pending: deque[Envelope] = deque()
        self._publishing = False
        self.restore_listeners: list[Callable[[str, Mapping[str, Any]], object]] = []
        """Called with ``(server, snapshot)`` after each :meth:`restore`."""

    # servers and states

    def add_server(self, server: str, *, kill_feed_size: int | None = None,
                   chat_size: int | None = None) -> MatchState:
        """Create (or return) ``server``'s match state, with its own backlog sizes if given."""
        state = self._states.get(server)
        if state is None:
            state = MatchState(
                server,
                kill_feed_size=self.kill_feed_size if kill_feed_size is None else kill_feed_size,
                chat_size=self.chat_size if chat_size is None else chat_size,
            )
            state.seq = self._seq.get(server, 0)
            state.run = self.run
            self._states[server] = state
        return state

    def state(self, server: str) -> MatchState | None:
        """``server``'s match state, or ``None`` if it has none."""
        return self._states.get(server)

    def servers(self) -> list[str]:
        """Names of the servers with a match state."""
        return list(self._states)

    # publishing

    def publish(self, server: str, event: Event) -> Envelope:
        """Stamp ``event`` with ``server``'s next ``seq``, update its state, deliver it.

        The event is first completed from the match state (:meth:`MatchState.resolve`);
        secrets in its text and IP addresses outside its private fields are removed
        (:func:`gamews.redact.redact_event`), so no subscriber ever holds them.
        """
        seq = self._seq.get(server, 0) + 1
        self._seq[server] = seq
        state = self._states.get(server)
        if state is None:
            state = self.add_server(server)
        envelope = Envelope(seq, server, self.clock.seconds(), state.resolve(redact_event(event)))
        state.apply(envelope)
        self._dispatch(envelope)
        return envelope

    def replay(self, envelope: Envelope) -> None:
        """Deliver an envelope published by another bus (another gamews instance), keeping its
        ``seq`` and time stamp: the state is updated and subscribers get it as if published here.

        The envelope's event is already resolved (:meth:`MatchState.resolve`) by its origin;
        it is redacted again here (:func:`gamews.redact.redact_event`).
        """
        event = redact_event(envelope.event)
        if event is not envelope.event:
            envelope = replace(envelope, event=event)
        self._seq[envelope.server] = envelope.seq
        self.add_server(envelope.server).apply(envelope)
        self._dispatch(envelope)

    def restore(self, server: str, snapshot: Mapping[str, Any]) -> None:
        """Replace ``server``'s match state with ``snapshot`` (from another instance); the next
        :meth:`replay` continues from its ``seq``. Subscriptions made with a snapshot of the
        old state stop skipping, as the numbering may start again."""
        state = self.add_server(server)
        state.restore(snapshot)
        self._seq[server] = state.seq
        for sub in self._by_server.get(server, ()):
            sub.after = 0
        for listener in tuple(self.restore_listeners):
            listener(server, snapshot)

    def _dispatch(self, envelope: Envelope) -> None:
        self._pending.append(envelope)
        if not self._publishing:
            # A subscriber that publishes from its callback gets its event delivered after
            # the current one has reached everybody, so every subscriber sees seq order.
            self._publishing = True
            try:
                while self._pending:
                    env = self._pending.popleft()
                    for sub in tuple(self._by_server.get(env.server, ())):
                        sub._offer(env)
                    for sub in tuple(self._all):
                        sub._offer(env)
            finally:
                self._publishing = False

    # subscribing

    def subscribe(self, callback: Subscriber, *, server: str | None = None,
                  queue_size: int | None = None, name: str | None = None) -> Subscription:
        """Call ``callback`` with every following event of ``server`` (``None``: all)."""
        self._count += 1
        sub = Subscription(
            self, callback, server, self.queue_size if queue_size is None else queue_size,
            self.max_failures, name or str(getattr(callback, "__qualname__", f"#{self._count}")),
        )
        if sub.queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if server is None:
            self._all.append(sub)
        else:
            self._by_server.setdefault(server, []).append(sub)
        return sub

    def subscribe_with_snapshot(
        self, server: str, callback: Subscriber, *, queue_size: int | None = None,
        name: str | None = None,
    ) -> tuple[dict[str, Any], Subscription]:
        """``server``'s snapshot and a subscription whose first event has ``seq`` + 1."""
        snapshot = self.add_server(server).snapshot()
        sub = self.subscribe(callback, server=server, queue_size=queue_size, name=name)
        # Called from a subscriber's callback, events already in the snapshot may still be
        # on their way to subscribers: this one skips them.
        sub.after = snapshot["seq"]
        return snapshot, sub

    def subscriptions(self) -> Iterator[Subscription]:
        """Every active subscription."""
        yield from self._all
        for subs in self._by_server.values():
            yield from subs

    def _remove(self, sub: Subscription) -> None:
        target = self._all if sub.server is None else self._by_server.get(sub.server, [])
        if sub in target:
            target.remove(sub)
