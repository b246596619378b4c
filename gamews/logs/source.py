"""Parse Source engine log lines (HL Log Standard: CS:GO, CS2, TF2...) into events.

A line is ``L MM/DD/YYYY - HH:MM:SS: message`` (files and ``logaddress_add`` UDP), or
``MM/DD/YYYY - HH:MM:SS.mmm - message`` (CS2's ``logaddress_add_http`` bodies); a bare
message is accepted too. Players are written ``"Name<userid><steamid><team>"``; names may
hold quotes, ``<``, ``>`` and any Unicode, so player tokens are matched by their
``<userid><steamid><team>"`` tail. :func:`parse_line` gives exactly one
:class:`~gamews.events.Event` per line and never raises.

Steam IDs are normalised to ``[U:1:N]`` (from ``STEAM_X:Y:Z``, ``[U:1:N]`` or a 64-bit id);
bots get ``bot:USERID``, the console ``console``, pending or LAN ids ``uid:USERID``.

Events go to plugins and browsers, so secrets in lines are replaced by ``<redacted>``: the
values of cvars named like passwords, secrets, tokens or keys, the arguments of such rcon
commands, and the whole command of a rejected rcon (it may hold a mistyped password).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, TypeAlias

from gamews.events import (
    Assist,
    Chat,
    Connected,
    Damage,
    Disconnected,
    Entered,
    Event,
    ItemPickup,
    Kill,
    MapChange,
    MatchEnd,
    MatchStart,
    NameChange,
    Player,
    PlayerTriggered,
    Position,
    Properties,
    RconSeen,
    RoundEnd,
    RoundStart,
    ServerCvar,
    Suicide,
    TeamChange,
    TeamScore,
    TeamTriggered,
    Unknown,
    WorldTriggered,
)
from gamews.logs.common import MAX_LINE, parse_safely
from gamews.redact import REDACTED, redact_command
from gamews.redact import is_sensitive_name as is_sensitive

__all__ = [
    "MAX_LINE", "REDACTED", "is_sensitive", "make_player", "normalise_steam_id", "parse_line",
    "parse_properties", "redact_command", "split_stamp",
]

STEAM64_BASE: Final = 76561197960265728
"""The 64-bit Steam ID of account 0 in the public universe."""

"""Longer lines are not parsed (Unknown): the engine never writes them, and it bounds the
time a hostile line can cost the patterns."""

_STAMP: Final = re.compile(
    r"(?:L )?(\d\d)/(\d\d)/(\d{4}) - (\d\d):(\d\d):(\d\d)(\.\d{1,6})?(?:: | - )")
_STEAM2: Final = re.compile(r"STEAM_[0-5]:([01]):(\d{1,10})\Z")
_STEAM3: Final = re.compile(r"\[U:1:(\d{1,10})\]\Z")
_STEAM64: Final = re.compile(r"7656119\d{10}\Z")


def _p(tag: str) -> str:
    """A player token ``"name<uid><steamid><team>"`` with groups ``{tag}n/u/s/t``.

    The team part is missing in CS:GO's ``switched from team`` lines.
    """
    return (rf'"(?P<{tag}n>.*?)<(?P<{tag}u>-?\d{{1,10}})><(?P<{tag}s>[^<>"]*)>'
            rf'(?:<(?P<{tag}t>[^<>"]*)>)?"')


def _pos(tag: str) -> str:
    return rf'(?: \[(?P<{tag}>-?[\d.]+ -?[\d.]+ -?[\d.]+)\])?'


_LITERALS: Final = {
    'kill': ' killed "', 'damage': ' attacked ', 'assist': 'assisted killing',
    'suicide': ' committed suicide with ', 'connected': ' connected, address ',
    'entered': ' entered the game', 'disconnected': ' disconnected', 'joined': ' joined team ',
    'switched': ' switched from team ', 'renamed': ' changed name to ', 'say': ' say',
    'ptrig': ' triggered ', 'purchased': ' purchased ', 'picked': ' picked up ',
    'threw': ' threw ', 'role': ' changed role to ', 'spawned': ' spawned as ',
    'tscore': 'Team ', 'ttrig': 'Team ',
    'wtrig': 'World triggered ', 'gameover': 'Game Over:', 'loading': 'Loading map ',
    'started': 'Started map ', 'mapchange': 'Mapchange to ', 'cvar': 'server_cvar: ',
    'cvardump': '" = "', 'rcon': 'rcon from ', 'badrcon': 'Bad Rcon: ',
}
"""A text each pattern's line must contain: a cheap test before the regular expression."""

_A: Final = _p("a")
_B: Final = _p("b")
_REST: Final = r"(?P<rest>(?: \(.*\))*)"

_PATTERNS: Final[list[tuple[str, str, re.Pattern[str]]]] = [
    (name, _LITERALS[name], re.compile(pattern + r"\Z", re.S)) for name, pattern in [
        ("kill", rf'{_A}{_pos("ap")} killed {_B}{_pos("bp")} with "(?P<w>[^"]*)"{_REST}'),
        ("damage", rf'{_A}{_pos("ap")} attacked {_B}{_pos("bp")} with "(?P<w>[^"]*)"{_REST}'),
        ("assist", rf'{_A} (?P<flash>flash-)?assisted killing {_B}{_REST}'),
        ("suicide", rf'{_A}{_pos("ap")} committed suicide with "(?P<w>[^"]*)"{_REST}'),
        ("connected", rf'{_A} connected, address "(?P<addr>[^"]*)"'),
        ("entered", rf'{_A} entered the game'),
        ("disconnected", rf'{_A} disconnected(?: \(reason "(?P<r>.*)"\))?'),
        ("joined", rf'{_A} joined team "(?P<t>[^"]*)"'),
        ("switched", rf'{_A} switched from team <(?P<o>[^<>]*)> to <(?P<t>[^<>]*)>'),
        ("renamed", rf'{_A} changed name to "(?P<nn>.*)"'),
        ("say", rf'{_A} (?P<kind>say|say_team) "(?P<text>.*)"(?P<dead> \(dead\))?'),
        ("ptrig", rf'{_A}{_pos("ap")} triggered "(?P<act>[^"]*)"'
                  rf'(?: against {_B}{_pos("bp")})?(?P<rest>.*)'),
        ("purchased", rf'{_A} purchased "(?P<item>[^"]*)"'),
        ("picked", rf'{_A} picked up (?:item )?"(?P<item>[^"]*)"'),
        ("threw", rf'{_A} threw (?P<item>\w+) \[(?P<ap>-?[\d.]+ -?[\d.]+ -?[\d.]+)\].*'),
        ("role", rf'{_A} changed role to "(?P<role>[^"]*)"'),
        ("spawned", rf'{_A} spawned as "(?P<role>[^"]*)"'),
        ("tscore", r'Team "(?P<t>[^"]*)" (?:scored|current score|final score) "(?P<s>-?\d{1,9})"'
                   r'(?: with "(?P<n>\d{1,9})" players)?'),
        ("ttrig", rf'Team "(?P<t>[^"]*)" triggered "(?P<act>[^"]*)"{_REST}'),
        ("wtrig", rf'World triggered "(?P<act>[^"]*)"(?: on "(?P<map>[^"]*)")?'
                  rf'(?: reason "(?P<reason>[^"]*)")?{_REST}'),
        ("gameover", r'Game Over: (?P<mode>.*?)(?: (?P<map>\S+) score (?P<score>\d+:\d+)'
                     r'(?: after \d+ min)?)?'),
        ("loading", r'Loading map "(?P<map>[^"]*)"'),
        ("started", r'Started map "(?P<map>[^"]*)"(?P<rest>.*)'),
        ("mapchange", r'-------- Mapchange to (?P<map>\S+) --------'),
        ("cvar", r'server_cvar: "(?P<k>[^"]*)" "(?P<v>.*)"'),
        ("cvardump", r'"(?P<k>[^"<>]*)" = "(?P<v>.*)"'),
        ("rcon", r'rcon from "(?P<addr>[^"]*)": command "(?P<cmd>.*)"'),
        ("badrcon", r'Bad Rcon: ".*" from "(?P<addr>[^"]*)"'),
    ]
]

_PROP: Final = re.compile(r'\((\w[\w-]*)(?: "([^"]*)")?((?: [\w-]+)*)\)')


def normalise_steam_id(steam_id: str) -> str | None:
    """``[U:1:N]`` for a ``STEAM_X:Y:Z``, ``[U:1:N]`` or 64-bit id; ``None`` otherwise."""
    m = _STEAM2.match(steam_id)
    if m is not None:
        return f"[U:1:{int(m[2]) * 2 + int(m[1])}]"
    m = _STEAM3.match(steam_id)
    if m is not None:
        return f"[U:1:{int(m[1])}]"
    if _STEAM64.match(steam_id):
        return f"[U:1:{int(steam_id) - STEAM64_BASE}]"
    return None


def make_player(name: str, userid: str, steam_id: str, team: str | None) -> Player:
    """The :class:`Player` for the parts of a ``"name<userid><steamid><team>"`` token."""
    uid = int(userid)
    t = team or None
    if steam_id == "BOT":
        return Player(name, f"bot:{uid}", uid, t, True)
    if steam_id == "Console":
        return Player(name, "console", uid, None)
    norm = normalise_steam_id(steam_id)
    if norm is None:
        return Player(name, f"uid:{uid}", uid, t)
    return Player(name, norm, uid, t, False, norm)


def split_stamp(line: str) -> tuple[str | None, str]:
    """Split the ``L MM/DD/YYYY - HH:MM:SS: `` (or CS2 HTTP) prefix: ISO time, message."""
    m = _STAMP.match(line)
    if m is None:
        return None, line
    mo, d, y, hh, mm, ss, frac = m.groups()
    return f"{y}-{mo}-{d}T{hh}:{mm}:{ss}{frac or ''}", line[m.end():]


def parse_properties(text: str) -> tuple[Properties, tuple[str, ...]]:
    """``(key "value")`` groups as properties, bare ``(word word)`` groups as flags."""
    props: list[tuple[str, str]] = []
    flags: list[str] = []
    for m in _PROP.finditer(text):
        if m[2] is None:
            flags.append(m[1])
            flags.extend(m[3].split())
        else:
            props.append((m[1], m[2]))
            flags.extend(m[3].split())
    return tuple(props), tuple(flags)


def _position(text: str | None) -> Position | None:
    if not text:
        return None
    try:
        x, y, z = (float(v) for v in text.split())
    except ValueError:
        return None
    return (x, y, z)


def _prop_position(props: Properties, key: str) -> Position | None:
    for k, v in props:
        if k == key:
            return _position(v)
    return None


def _int(props: dict[str, str], key: str) -> int | None:
    value = props.get(key)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def parse_line(line: str) -> Event:
    """Parse one Source log line (with or without its time stamp); never raises."""
    return parse_safely(_parse, line)


def _parse(line: str) -> Event:
    stamp, message = split_stamp(line)
    for name, literal, pattern in _PATTERNS:
        if literal not in message:
            continue
        m = pattern.match(message)
        if m is not None:
            event = _BUILDERS[name](m, stamp)
            if event is not None:
                return event
    return Unknown(line, log_time=stamp)


def _a(m: re.Match[str]) -> Player:
    return make_player(m["an"], m["au"], m["as"], m["at"])


def _b(m: re.Match[str]) -> Player:
    return make_player(m["bn"], m["bu"], m["bs"], m["bt"])


def _kill(m: re.Match[str], t: str | None) -> Event | None:
    props, flags = parse_properties(m["rest"])
    pd = dict(props)
    headshot = "headshot" in flags or pd.get("customkill", "").startswith("headshot")
    return Kill(
        _a(m), _b(m), m["w"], headshot, flags,
        _position(m["ap"]) or _prop_position(props, "attacker_position"),
        _position(m["bp"]) or _prop_position(props, "victim_position"),
        props, log_time=t,
    )


def _damage(m: re.Match[str], t: str | None) -> Event | None:
    props, _ = parse_properties(m["rest"])
    pd = dict(props)
    damage = _int(pd, "damage")
    return Damage(
        _a(m), _b(m), m["w"], damage if damage is not None else 0, _int(pd, "damage_armor"),
        _int(pd, "health"), _int(pd, "armor"), pd.get("hitgroup"), _position(m["ap"]),
        _position(m["bp"]), log_time=t,
    )


def _assist(m: re.Match[str], t: str | None) -> Event | None:
    return Assist(_a(m), _b(m), m["flash"] is not None, log_time=t)


def _suicide(m: re.Match[str], t: str | None) -> Event | None:
    props, _ = parse_properties(m["rest"])
    pos = _position(m["ap"]) or _prop_position(props, "attacker_position")
    return Suicide(_a(m), m["w"], pos, log_time=t)


def _connected(m: re.Match[str], t: str | None) -> Event | None:
    return Connected(_a(m), m["addr"] or None, log_time=t)


def _entered(m: re.Match[str], t: str | None) -> Event | None:
    return Entered(_a(m), log_time=t)


def _disconnected(m: re.Match[str], t: str | None) -> Event | None:
    return Disconnected(_a(m), m["r"], log_time=t)


def _joined(m: re.Match[str], t: str | None) -> Event | None:
    p = _a(m)
    return TeamChange(p, m["t"], p.team, log_time=t)


def _switched(m: re.Match[str], t: str | None) -> Event | None:
    return TeamChange(_a(m), m["t"], m["o"] or None, log_time=t)


def _renamed(m: re.Match[str], t: str | None) -> Event | None:
    return NameChange(_a(m), m["nn"], log_time=t)


def _say(m: re.Match[str], t: str | None) -> Event | None:
    return Chat(_a(m), m["text"], m["kind"] == "say_team", m["dead"] is not None, log_time=t)


def _ptrig(m: re.Match[str], t: str | None) -> Event | None:
    rest = m["rest"]
    props, flags = parse_properties(rest)
    props += tuple((f, "") for f in flags)
    if rest and not rest.startswith(" ("):
        props += (("detail", rest.strip()),)
    target = _b(m) if m["bn"] is not None else None
    return PlayerTriggered(_a(m), m["act"], target, props, log_time=t)


def _purchased(m: re.Match[str], t: str | None) -> Event | None:
    return PlayerTriggered(_a(m), "purchased", None, (("item", m["item"]),), log_time=t)


def _picked(m: re.Match[str], t: str | None) -> Event | None:
    return ItemPickup(_a(m), m["item"], log_time=t)


def _threw(m: re.Match[str], t: str | None) -> Event | None:
    return PlayerTriggered(_a(m), "threw", None, (("item", m["item"]), ("position", m["ap"])),
                           log_time=t)


def _role(m: re.Match[str], t: str | None) -> Event | None:
    return PlayerTriggered(_a(m), "changed_role", None, (("role", m["role"]),), log_time=t)


def _spawned(m: re.Match[str], t: str | None) -> Event | None:
    return PlayerTriggered(_a(m), "spawned", None, (("role", m["role"]),), log_time=t)


def _tscore(m: re.Match[str], t: str | None) -> Event | None:
    n = m["n"]
    return TeamScore(m["t"], int(m["s"]), int(n) if n is not None else None, log_time=t)


def _ttrig(m: re.Match[str], t: str | None) -> Event | None:
    props, _ = parse_properties(m["rest"])
    return TeamTriggered(m["t"], m["act"], props, log_time=t)


def _wtrig(m: re.Match[str], t: str | None) -> Event | None:
    act = m["act"]
    props, _ = parse_properties(m["rest"])
    pd = dict(props)
    if act == "Round_Start":
        return RoundStart(log_time=t)
    if act in ("Round_End", "Round_Win", "Round_Stalemate", "Mini_Round_Win"):
        winner = pd.get("winner")
        reason = m["reason"] or ("stalemate" if act == "Round_Stalemate" else None)
        return RoundEnd(winner, reason, log_time=t)
    if act == "Match_Start":
        return MatchStart(m["map"], log_time=t)
    if act == "Game_Over":
        return MatchEnd(m["reason"] or pd.get("reason"), log_time=t)
    if m["map"] is not None:
        props = (("map", m["map"]), *props)
    if m["reason"] is not None:
        props = (("reason", m["reason"]), *props)
    return WorldTriggered(act, props, log_time=t)


def _gameover(m: re.Match[str], t: str | None) -> Event | None:
    return MatchEnd(m["mode"] or None, m["map"], m["score"], log_time=t)


def _loading(m: re.Match[str], t: str | None) -> Event | None:
    return MapChange(m["map"], "loading", log_time=t)


def _started(m: re.Match[str], t: str | None) -> Event | None:
    props, _ = parse_properties(m["rest"])
    return MapChange(m["map"], "started", props, log_time=t)


def _cvar(m: re.Match[str], t: str | None) -> Event | None:
    value = REDACTED if is_sensitive(m["k"]) and m["v"] else m["v"]
    return ServerCvar(m["k"], value, log_time=t)


def _rcon(m: re.Match[str], t: str | None) -> Event | None:
    return RconSeen(m["addr"] or None, redact_command(m["cmd"]), True, log_time=t)


def _badrcon(m: re.Match[str], t: str | None) -> Event | None:
    # The rejected command line may hold a mistyped password: never pass it on.
    return RconSeen(m["addr"] or None, "", False, log_time=t)


_Builder: TypeAlias = Callable[[re.Match[str], str | None], Event | None]

_BUILDERS: Final[dict[str, _Builder]] = {
    "kill": _kill, "damage": _damage, "assist": _assist, "suicide": _suicide,
    "connected": _connected, "entered": _entered, "disconnected": _disconnected,
    "joined": _joined, "switched": _switched, "renamed": _renamed, "say": _say,
    "ptrig": _ptrig, "purchased": _purchased, "picked": _picked, "threw": _threw,
    "role": _role, "spawned": _spawned, "tscore": _tscore, "ttrig": _ttrig, "wtrig": _wtrig,
    "gameover": _gameover, "loading": _loading, "started": _started, "mapchange": _loading,
    "cvar": _cvar, "cvardump": _cvar, "rcon": _rcon, "badrcon": _badrcon,
}
