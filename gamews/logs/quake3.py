"""Parse ioquake3 / OpenArena ``games.log`` lines (``g_log``) into events.

A line is ``  M:SS Keyword: rest`` (the game clock since map start, right-aligned to width
3). :func:`parse_line` turns one line into exactly one :class:`gamews.events.Event` and
never raises; lines no event type fits give :class:`gamews.events.Unknown`.

Players are identified by client number (``client:N``), which is valid within a map; chat
lines carry only the name (``name:NAME``), which the match state resolves.

Means of death keep their raw ``MOD_*`` name in ``weapon`` (``cause`` for world deaths) and
get a readable one (:data:`WEAPON_NAMES`) in ``weapon_name`` (``cause_name``). Lines of the
kinds in :data:`IGNORED` stay :class:`gamews.events.Unknown` on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, TypeAlias

from gamews.events import (
    Chat,
    Connected,
    Disconnected,
    Entered,
    Event,
    GameShutdown,
    ItemPickup,
    Kill,
    MapChange,
    MatchEnd,
    Player,
    PlayerInfo,
    PlayerScore,
    PlayerTriggered,
    Suicide,
    TeamScores,
    Unknown,
    WorldKill,
)
from gamews.logs.common import MAX_LINE, IgnoredKind, parse_safely

__all__ = ["IGNORED", "MAX_LINE", "TEAMS", "WEAPON_NAMES", "WORLD", "parse_line", "player",
           "split_info", "weapon_name"]

"""Longer lines are not parsed (Unknown): the engine never writes them, and it bounds the
time a hostile line can cost the patterns."""

WORLD: Final = 1022
"""The client number Quake 3 uses for the world as a killer (``ENTITYNUM_WORLD``)."""

TEAMS: Final = {"0": "free", "1": "red", "2": "blue", "3": "spectator"}
"""Quake 3 team numbers (``t\\N`` in user info) to names."""

WEAPON_NAMES: Final = {
    "MOD_UNKNOWN": "unknown", "MOD_SHOTGUN": "shotgun", "MOD_GAUNTLET": "gauntlet",
    "MOD_MACHINEGUN": "machine gun", "MOD_GRENADE": "grenade launcher",
    "MOD_GRENADE_SPLASH": "grenade launcher (splash)", "MOD_ROCKET": "rocket launcher",
    "MOD_ROCKET_SPLASH": "rocket launcher (splash)", "MOD_PLASMA": "plasma gun",
    "MOD_PLASMA_SPLASH": "plasma gun (splash)", "MOD_RAILGUN": "railgun",
    "MOD_LIGHTNING": "lightning gun", "MOD_BFG": "BFG", "MOD_BFG_SPLASH": "BFG (splash)",
    "MOD_WATER": "drowning", "MOD_SLIME": "slime", "MOD_LAVA": "lava", "MOD_CRUSH": "crushed",
    "MOD_TELEFRAG": "telefrag", "MOD_FALLING": "falling", "MOD_SUICIDE": "suicide",
    "MOD_TARGET_LASER": "laser", "MOD_TRIGGER_HURT": "hurt by the map", "MOD_NAIL": "nailgun",
    "MOD_CHAINGUN": "chaingun", "MOD_PROXIMITY_MINE": "proximity mine",
    "MOD_KAMIKAZE": "kamikaze", "MOD_JUICED": "juiced", "MOD_GRAPPLE": "grappling hook",
}
"""ioquake3's means of death (``meansOfDeath_t``, with Team Arena's and OpenArena's) as
people call them."""

IGNORED: Final[tuple[IgnoredKind, ...]] = (
    IgnoredKind("separator", r"\s*\d{1,4}:\d\d -{20,}\s*\Z",
                "the line of dashes the game writes around a map's lines"),
    IgnoredKind("info", r"\s*\d{1,4}:\d\d Info: ",
                "OpenArena's diagnostics (server info length, bot counts)"),
    IgnoredKind("playerstore", r"\s*\d{1,4}:\d\d Playerstore: ",
                "OpenArena's player store failing to find a GUID (bots have none)"),
)
"""Line kinds left :class:`gamews.events.Unknown` on purpose, with the reason."""

_CLOCK: Final = re.compile(r"\s*(\d{1,4}):(\d\d) ")
_KEYWORD: Final = re.compile(r"([A-Za-z_]+):(?: (.*)|)\Z", re.S)
_NUM: Final = re.compile(r"\d{1,4}\Z")
_KILL: Final = re.compile(r"(\d{1,4}) (\d{1,4}) (\d{1,4}): (.*) killed (.*) by (\w+)\Z", re.S)
_SCORE: Final = re.compile(r"(\d{1,4}) (-?\d{1,6}): (.*) now has -?\d+ points\Z", re.S)
_ITEM: Final = re.compile(r"(\d{1,4}) (\S+)\Z")
_CHAT: Final = re.compile(r"(.*?): (.*)\Z", re.S)
_TELL: Final = re.compile(r"(.*?) to (.*?): (.*)\Z", re.S)
_FINAL: Final = re.compile(
    r"(-?\d{1,6})\s+ping: (\d{1,6})\s+client: (\d{1,4}) (.*)\Z", re.S)
_TEAMS: Final = re.compile(r"(red):(-?\d{1,6})\s+(blue):(-?\d{1,6})\s*\Z")
_EVENTCODE: Final = re.compile(r"(\d{1,4}) ((?:-?\d{1,6} ?)*): (.*)\Z", re.S)
_USERINFO: Final = re.compile(r"(\d{1,4}) (.*)\Z", re.S)


def player(num: int, name: str = "", team: str | None = None, bot: bool = False) -> Player:
    """The :class:`Player` for client ``num``."""
    return Player(name, f"client:{num}", num, team, bot)


def weapon_name(mod: str) -> str | None:
    """The readable name of a ``MOD_*`` means of death, or ``None`` if it is not known."""
    return WEAPON_NAMES.get(mod)


def _named(name: str) -> Player:
    return Player(name, f"name:{name}")


def split_info(text: str) -> tuple[tuple[str, str], ...]:
    r"""Split a ``\key\value\key\value`` info string (leading backslash optional)."""
    parts = text.split("\\")
    if parts and parts[0] == "":
        parts = parts[1:]
    return tuple(zip(parts[0::2], parts[1::2], strict=False))


def parse_line(line: str) -> Event:
    """Parse one ``games.log`` line; never raises."""
    return parse_safely(_parse, line)


def _parse(line: str) -> Event:
    clock: int | None = None
    body = line
    c = _CLOCK.match(line)
    if c is not None:
        clock = int(c[1]) * 60 + int(c[2])
        body = line[c.end():]
    event: Event | None = None
    m = _KEYWORD.match(body)
    if m is not None:
        handler = _HANDLERS.get(m[1])
        if handler is not None:
            event = handler(m[2] or "", clock)
    else:
        t = _TEAMS.match(body)
        if t is not None:
            event = TeamScores(((t[1], int(t[2])), (t[3], int(t[4]))), game_clock=clock)
    return event if event is not None else Unknown(line, game_clock=clock)


def _init_game(rest: str, clock: int | None) -> Event | None:
    settings = split_info(rest)
    mapname = dict(settings).get("mapname", "")
    return MapChange(mapname, "started", settings, game_clock=clock)


def _shutdown(rest: str, clock: int | None) -> Event | None:
    return GameShutdown(game_clock=clock) if not rest.strip() else None


def _exit(rest: str, clock: int | None) -> Event | None:
    return MatchEnd(rest.strip() or None, game_clock=clock)


def _client(rest: str) -> int | None:
    rest = rest.strip()
    return int(rest) if _NUM.match(rest) else None


def _connect(rest: str, clock: int | None) -> Event | None:
    n = _client(rest)
    return None if n is None else Connected(player(n), game_clock=clock)


def _begin(rest: str, clock: int | None) -> Event | None:
    n = _client(rest)
    return None if n is None else Entered(player(n), game_clock=clock)


def _disconnect(rest: str, clock: int | None) -> Event | None:
    n = _client(rest)
    return None if n is None else Disconnected(player(n), game_clock=clock)


def _userinfo(rest: str, clock: int | None) -> Event | None:
    m = _USERINFO.match(rest)
    if m is None:
        return None
    info = split_info(m[2])
    values = dict(info)
    team = TEAMS.get(values.get("t", ""), values.get("t"))
    bot = "skill" in values
    return PlayerInfo(player(int(m[1]), values.get("n", ""), team, bot), info, game_clock=clock)


def _kill(rest: str, clock: int | None) -> Event | None:
    m = _KILL.match(rest)
    if m is None:
        return None
    k, v, how = int(m[1]), int(m[2]), m[6]
    victim = player(v, m[5])
    label = weapon_name(how)
    if k == WORLD:
        return WorldKill(victim, how, label, game_clock=clock)
    if k == v:
        return Suicide(victim, how, weapon_name=label, game_clock=clock)
    return Kill(player(k, m[4]), victim, how, weapon_name=label, game_clock=clock)


def _score(rest: str, clock: int | None) -> Event | None:
    m = _SCORE.match(rest)
    if m is None:
        return None
    return PlayerScore(player(int(m[1]), m[3]), int(m[2]), game_clock=clock)


def _final_score(rest: str, clock: int | None) -> Event | None:
    m = _FINAL.match(rest)
    if m is None:
        return None
    return PlayerScore(player(int(m[3]), m[4]), int(m[1]), int(m[2]), True, game_clock=clock)


def _item(rest: str, clock: int | None) -> Event | None:
    m = _ITEM.match(rest)
    return None if m is None else ItemPickup(player(int(m[1])), m[2], game_clock=clock)


def _say(rest: str, clock: int | None) -> Event | None:
    m = _CHAT.match(rest)
    return None if m is None else Chat(_named(m[1]), m[2], game_clock=clock)


def _sayteam(rest: str, clock: int | None) -> Event | None:
    m = _CHAT.match(rest)
    return None if m is None else Chat(_named(m[1]), m[2], True, game_clock=clock)


def _tell(rest: str, clock: int | None) -> Event | None:
    m = _TELL.match(rest)
    if m is None:
        return None
    return Chat(_named(m[1]), m[3], target=_named(m[2]), game_clock=clock)


_Handler: TypeAlias = Callable[[str, int | None], Event | None]


def _coded(action: str) -> _Handler:
    """``CTF: N A B: text`` / ``Award: N A: text``: a player event with numeric codes."""

    def handle(rest: str, clock: int | None) -> Event | None:
        m = _EVENTCODE.match(rest)
        if m is None:
            return None
        props = (("codes", m[2].strip()), ("text", m[3]))
        return PlayerTriggered(player(int(m[1])), action, properties=props, game_clock=clock)

    return handle


_HANDLERS: Final = {
    "InitGame": _init_game,
    "ShutdownGame": _shutdown,
    "Exit": _exit,
    "ClientConnect": _connect,
    "ClientBegin": _begin,
    "ClientDisconnect": _disconnect,
    "ClientUserinfoChanged": _userinfo,
    "Kill": _kill,
    "PlayerScore": _score,
    "score": _final_score,
    "Item": _item,
    "say": _say,
    "sayteam": _sayteam,
    "tell": _tell,
    "CTF": _coded("ctf"),
    "Award": _coded("award"),
    "Challenge": _coded("challenge"),
}
