"""Parse Source engine log lines (HL Log Standard: CS:GO, CS2, TF2...) into events.

A line is ``L MM/DD/YYYY - HH:MM:SS: message`` (files and ``logaddress_add`` UDP), or
``MM/DD/YYYY - HH:MM:SS.mmm - message`` (CS2's ``logaddress_add_http`` bodies); a bare
message is accepted too. Players are written ``"Name<userid><steamid><team>"``; names may
hold quotes, ``<``, ``>`` and any Unicode, so player tokens are matched by their
``<userid><steamid><team>"`` tail. :func:`parse_line` gives exactly one
:class:`gamews.events.Event` per line and never raises.

Chat comes first: the text of ``say``/``say_team`` is not escaped by the engine, so a
chat line is recognised by its structure (a player token, `` say "``, the text to the last
quote, an optional `` (dead)``) before any other pattern is tried; the speaker's token
ends at the first ``<userid><steamid><team>" say "`` of the line, and whatever follows is
text, so no chat text can make another event. GoldSrc (CS 1.6, HLDS) lines are read too.

Steam IDs are normalised to ``[U:1:N]`` (from ``STEAM_X:Y:Z``, ``[U:1:N]`` or a 64-bit id);
account 0 and 64-bit ids below the public base are "no ID". Bots get ``bot:USERID``, the
console ``console``, pending, LAN or missing ids ``uid:USERID``. Which key a player keeps
when two connected players share a Steam ID is the match state's rule
(:class:`gamews.events.MatchState`).

Lines of the kinds in :data:`IGNORED` (``left buyzone``, CS2's round-stats JSON block...)
stay :class:`gamews.events.Unknown` on purpose; the table says why for each.

Events go to plugins and browsers, so secrets in lines are replaced by ``<redacted>``: the
values of cvars named like passwords, secrets, tokens or keys, the arguments of such rcon
commands, the challenge and password of GoldSrc's ``Rcon:`` lines, and the whole command of
a rejected rcon (it may hold a mistyped password). Players' and admins' IP addresses are
never kept.
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
    PointCaptured,
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
    WorldKill,
    WorldTriggered,
)
from gamews.logs.common import MAX_LINE, IgnoredKind, parse_safely
from gamews.redact import REDACTED, redact_command
from gamews.redact import is_sensitive_name as is_sensitive

__all__ = [
    "IGNORED", "MAX_LINE", "REDACTED", "is_sensitive", "make_player", "normalise_steam_id",
    "parse_line", "parse_properties", "redact_command", "split_stamp",
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

    The team part is missing in CS:GO's ``switched from team`` lines, and both the Steam ID
    and the team in CS2's ``"Console<0>"``.
    """
    return (rf'"(?P<{tag}n>.*?)<(?P<{tag}u>-?\d{{1,10}})>(?:<(?P<{tag}s>[^<>"]*)>'
            rf'(?:<(?P<{tag}t>[^<>"]*)>)?)?"')


def _pos(tag: str) -> str:
    return rf'(?: \[(?P<{tag}>-?[\d.]+ -?[\d.]+ -?[\d.]+)\])?'


_PART: Final = r'(?:[^<>"\d][^<>"]*|7656119\d{10})?'
"""A token's Steam ID or team part: never a small number (a user id is), so ``<5>`` at the
end of a name is not taken for a Steam ID."""
_CHAT: Final = re.compile(
    rf'<(?P<au>-?\d{{1,10}})>(?:<(?P<as>{_PART})>(?:<(?P<at>{_PART})>)?)?" '
    r'(?P<kind>say|say_team) "')
"""The end of the speaker's token and the verb of a chat line (searched, first wins)."""
_CHAT_END: Final = re.compile(r'"(?P<dead> \(dead\))?\Z')

_LITERALS: Final = {
    'kill': ' killed "', 'killother': ' killed other "', 'bombed': ' was killed by the bomb',
    'damage': ' attacked ', 'assist': 'assisted killing',
    'suicide': ' committed suicide with ', 'connected': ' connected, address ',
    'entered': ' entered the game', 'disconnected': ' disconnected', 'joined': ' joined team ',
    'switched': ' switched from team ', 'renamed': ' changed name to ',
    'tfdamage': ' triggered "damage" against ', 'tfassist': ' triggered "kill assist" against ',
    'blinded': ' blinded for ', 'ptrig': ' triggered ', 'purchased': ' purchased ',
    'picked': ' picked up ', 'threw': ' threw ', 'role': ' changed role to ',
    'spawned': ' spawned as ', 'tscore': 'Team ', 'captured': '"pointcaptured"', 'ttrig': 'Team ',
    'wtrig': 'World triggered ', 'gameover': 'Game Over:', 'loading': 'Loading map ',
    'started': 'Started map ', 'mapchange': 'Mapchange to ', 'cvar': 'server_cvar: ',
    'hlcvar': 'Server cvar ', 'cvardump': '" = "', 'rcon': 'rcon from ',
    'badrcon': 'Bad Rcon: ', 'hlrcon': 'Rcon: ', 'anyrcon': 'con',
}
"""A text each pattern's line must contain: a cheap test before the regular expression."""

_A: Final = _p("a")
_B: Final = _p("b")
_REST: Final = r"(?P<rest>(?: \(.*\))*)"

_PATTERNS: Final[list[tuple[str, str, re.Pattern[str]]]] = [
    (name, _LITERALS[name], re.compile(pattern + r"\Z", re.S)) for name, pattern in [
        ("killother", rf'{_A}{_pos("ap")} killed other "(?P<what>[^"<]*)<(?P<ent>\d{{1,10}})>"'
                      rf'{_pos("bp")} with "(?P<w>[^"]*)"{_REST}'),
        ("kill", rf'{_A}{_pos("ap")} killed {_B}{_pos("bp")} with "(?P<w>[^"]*)"{_REST}'),
        ("bombed", rf'{_A}{_pos("ap")} was killed by the bomb\.?'),
        ("damage", rf'{_A}{_pos("ap")} attacked {_B}{_pos("bp")} with "(?P<w>[^"]*)"{_REST}'),
        ("assist", rf'{_A} (?P<flash>flash-)?assisted killing {_B}{_REST}'),
        ("suicide", rf'{_A}{_pos("ap")} committed suicide with "(?P<w>[^"]*)"{_REST}'),
        ("connected", rf'{_A} connected, address "[^"]*"'),
        ("entered", rf'{_A} entered the game'),
        ("disconnected", rf'{_A} disconnected(?: \(reason "(?P<r>.*)"\))?'),
        ("joined", rf'{_A} joined team "(?P<t>[^"]*)"{_REST}'),
        ("switched", rf'{_A} switched from team <(?P<o>[^<>]*)> to <(?P<t>[^<>]*)>'),
        ("renamed", rf'{_A} changed name to "(?P<nn>.*)"'),
        ("tfdamage", rf'{_A} triggered "damage" against {_B}{_REST}'),
        ("tfassist", rf'{_A} triggered "kill assist" against {_B}{_REST}'),
        ("blinded", rf'{_A} blinded for (?P<sec>[\d.]+) by {_B}(?P<rest>.*)'),
        ("ptrig", rf'{_A}{_pos("ap")} triggered "(?P<act>[^"]*)"'
                  rf'(?: against {_B}{_pos("bp")})?(?P<rest>.*)'),
        ("purchased", rf'{_A} purchased "(?P<item>[^"]*)"'),
        ("picked", rf'{_A} picked up (?:item )?"(?P<item>[^"]*)"{_REST}'),
        ("threw", rf'{_A} threw (?P<item>\w+) \[(?P<ap>-?[\d.]+ -?[\d.]+ -?[\d.]+)\].*'),
        ("role", rf'{_A} changed role to "(?P<role>[^"]*)"'),
        ("spawned", rf'{_A} spawned as "(?P<role>[^"]*)"'),
        ("tscore", r'Team "(?P<t>[^"]*)" (?:scored|current score|final score) '
                   r'"(?P<s>-?\d{1,9}(?:\.\d{1,6})?)"(?: with "(?P<n>\d{1,9})" players)?'),
        ("captured", rf'Team "(?P<t>[^"]*)" triggered "pointcaptured"{_REST}'),
        ("ttrig", rf'Team "(?P<t>[^"]*)" triggered "(?P<act>[^"]*)"{_REST}'),
        ("wtrig", rf'World triggered "(?P<act>[^"]*)"(?: on "(?P<map>[^"]*)")?'
                  rf'(?: reason "(?P<reason>[^"]*)")?{_REST}'),
        ("gameover", r'Game Over: (?P<mode>.*?)(?: (?P<map>\S+) score (?P<score>\d+:\d+)'
                     r'(?: after \d+ min)?)?'),
        ("loading", r'Loading map "(?P<map>[^"]*)"'),
        ("started", r'Started map "(?P<map>[^"]*)"(?P<rest>.*)'),
        ("mapchange", r'-------- Mapchange to (?P<map>\S+) --------'),
        ("cvar", r'server_cvar: "(?P<k>[^"]*)" "(?P<v>.*)"'),
        ("hlcvar", r'Server cvar "(?P<k>[^"]*)" = "(?P<v>.*)"'),
        ("cvardump", r'"(?P<k>[^"<>]*)" = "(?P<v>.*)"'),
        ("rcon", r'rcon from "[^"]*": command "(?P<cmd>.*)"'),
        ("badrcon", r'Bad Rcon: ".*" from "[^"]*"'),
        ("hlrcon", r'Rcon: "rcon \S+ (?:"[^"]*"|\S+)(?: (?P<cmd>.*))?" from "[^"]*"'),
        # any other rcon line may hold a password: an rcon event without the command
        ("anyrcon", r'(?P<bad>Bad )?(?:Rcon: |rcon from ).*'),
    ]
]
"""Tried in this order after chat; the first match whose builder gives an event wins."""

_PROP: Final = re.compile(r'\((\w[\w-]*)(?: "([^"]*)")?((?: [\w-]+)*)\)')
_CAPPER: Final = re.compile(
    r'\(player\d{1,3} "(.*?)<(-?\d{1,10})>(?:<([^<>"]*)>(?:<([^<>"]*)>)?)?"\)')

IGNORED: Final[tuple[IgnoredKind, ...]] = (
    IgnoredKind("left_buyzone", r'".*<-?\d+>(?:<[^<>"]*>){1,2}" left buyzone with \[',
                "CS inventory when a player leaves the buy zone: not shown anywhere"),
    IgnoredKind("money_change", r'".*<-?\d+>(?:<[^<>"]*>){1,2}" money change ',
                "CS economy detail (each purchase and round reward): not shown anywhere"),
    IgnoredKind("validated", r'".*<-?\d+>(?:<[^<>"]*>){1,2}" STEAM USERID validated\Z',
                "the Steam ID is already in every line of that player"),
    IgnoredKind("round_stats_json",
                r'(?:JSON_BEGIN\{|\}\}JSON_END|\}?,?|"[^"]*" ?: ?(?:"[^"]*"|\{),?)\Z',
                "CS2's per-round statistics block, one JSON fragment a line; the round's "
                "own events carry the same data"),
    IgnoredKind("accolade", r"ACCOLADE, ", "CS2 end-of-match awards, text for humans"),
    IgnoredKind("freeze_period", r"Starting Freeze period\Z", "CS round phase, no state"),
    IgnoredKind("team_names", r'(?:Team playing "[^"]*": |(?:Red|Blue) Team: )',
                "a team's display name; teams are known by their game names"),
    IgnoredKind("match_status", r"MatchStatus: ",
                "CS2 summary of score and teams, repeating the team_score events"),
    IgnoredKind("match_pause", r"Match pause is (?:enabled|disabled)",
                "a pause is not part of the live view"),
    IgnoredKind("log_file", r"Log file (?:started|closed)", "the server's own log rotation"),
    IgnoredKind("cvar_block", r"server cvars (?:start|end)\Z",
                "brackets around the cvar lines, which are parsed"),
    IgnoredKind("started_marker", r'Started: {1,2}"[^"]*"\Z',
                "CS2 marker written after the cvar block, carrying nothing"),
    IgnoredKind("plugin_message", r"\[[A-Za-z][\w .-]{0,31}\] ",
                "a server plugin's own message ([META], [TFTrue]...), not a game event"),
    IgnoredKind("tournament", r"Tournament mode started\Z",
                "TF2 tournament phase, no state (the rounds are parsed)"),
)
"""Line kinds left :class:`gamews.events.Unknown` on purpose, with the reason (matched
against the message after the time stamp)."""


def normalise_steam_id(steam_id: str) -> str | None:
    """``[U:1:N]`` for a ``STEAM_X:Y:Z``, ``[U:1:N]`` or 64-bit id; ``None`` otherwise.

    Account 0 (``STEAM_0:0:0``, ``[U:1:0]``) is "no ID", and so is a 64-bit id at or below
    the public base (it is invalid, not a negative account).
    """
    account: int | None = None
    m = _STEAM2.match(steam_id)
    if m is not None:
        account = int(m[2]) * 2 + int(m[1])
    elif (m := _STEAM3.match(steam_id)) is not None:
        account = int(m[1])
    elif _STEAM64.match(steam_id):
        account = int(steam_id) - STEAM64_BASE
    if account is None or account <= 0 or account >= 2**32:
        return None
    return f"[U:1:{account}]"


def make_player(name: str, userid: str, steam_id: str | None, team: str | None) -> Player:
    """The :class:`Player` for the parts of a ``"name<userid><steamid><team>"`` token
    (``steam_id`` ``None`` when the token has no such part, as CS2's ``"Console<0>"``)."""
    uid = int(userid)
    t = team or None
    if steam_id == "BOT":
        return Player(name, f"bot:{uid}", uid, t, True)
    if steam_id == "Console" or (steam_id is None and uid == 0):
        return Player(name, "console", uid, None)
    if steam_id is None:
        return Player(name, f"uid:{uid}", uid, t)
    norm = normalise_steam_id(steam_id)
    if norm is None:
        return Player(name, f"uid:{uid}", uid, t)
    return Player(name, norm, uid, t, False, norm)


def split_stamp(line: str) -> tuple[str | None, str]:
    """Split the ``L MM/DD/YYYY - HH:MM:SS:`` (or CS2 HTTP) prefix: ISO time, message."""
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
    chat = _chat(message, stamp)
    if chat is not None:
        return chat
    message = message.rstrip(" ")
    for name, literal, pattern in _PATTERNS:
        if literal not in message:
            continue
        m = pattern.match(message)
        if m is not None:
            event = _BUILDERS[name](m, stamp)
            if event is not None:
                return event
    return Unknown(line, log_time=stamp)


def _chat(message: str, t: str | None) -> Chat | None:
    """A chat line, recognised by its structure alone (see the module docstring)."""
    if not message.startswith('"'):
        return None
    m = _CHAT.search(message, 1)
    if m is None:
        return None
    rest = message[m.end():]
    end = _CHAT_END.search(rest)
    if end is None:
        return None
    player = make_player(message[1:m.start()], m["au"], m["as"], m["at"])
    return Chat(player, rest[:end.start()], m["kind"] == "say_team", end["dead"] is not None,
                log_time=t)


def _a(m: re.Match[str]) -> Player:
    return make_player(m["an"], m["au"], m["as"], m["at"])


def _b(m: re.Match[str]) -> Player:
    return make_player(m["bn"], m["bu"], m["bs"], m["bt"])


_WORLD_WEAPONS: Final = frozenset({"world", "worldspawn", "trigger_hurt", "env_explosion"})
"""Suicide "weapons" that mean the map killed the player."""


def _kill(m: re.Match[str], t: str | None) -> Event | None:
    props, flags = parse_properties(m["rest"])
    pd = dict(props)
    if pd.get("customkill") == "feign_death":
        # a TF2 spy feigning death: nobody died
        return PlayerTriggered(_a(m), "feign_death", _b(m), (("weapon", m["w"]), *props),
                               log_time=t)
    headshot = "headshot" in flags or pd.get("customkill", "").startswith("headshot")
    return Kill(
        _a(m), _b(m), m["w"], headshot, flags,
        _position(m["ap"]) or _prop_position(props, "attacker_position"),
        _position(m["bp"]) or _prop_position(props, "victim_position"),
        props, log_time=t,
    )


def _killother(m: re.Match[str], t: str | None) -> Event | None:
    # a chicken, a hostage...: nobody in the match died
    return PlayerTriggered(_a(m), "killed_other", None,
                           (("victim", m["what"]), ("weapon", m["w"])), log_time=t)


def _bombed(m: re.Match[str], t: str | None) -> Event | None:
    return WorldKill(_a(m), "bomb", "the bomb", log_time=t)


def _damage(m: re.Match[str], t: str | None) -> Event | None:
    props, _ = parse_properties(m["rest"])
    pd = dict(props)
    damage = _int(pd, "damage")
    return Damage(
        _a(m), _b(m), m["w"], damage if damage is not None else 0, _int(pd, "damage_armor"),
        _int(pd, "health"), _int(pd, "armor"), pd.get("hitgroup"), _position(m["ap"]),
        _position(m["bp"]), log_time=t,
    )


def _tfdamage(m: re.Match[str], t: str | None) -> Event | None:
    props, _ = parse_properties(m["rest"])
    pd = dict(props)
    damage = _int(pd, "damage")
    return Damage(_a(m), _b(m), pd.get("weapon", ""), damage if damage is not None else 0,
                  log_time=t)


def _assist(m: re.Match[str], t: str | None) -> Event | None:
    return Assist(_a(m), _b(m), m["flash"] is not None, log_time=t)


def _tfassist(m: re.Match[str], t: str | None) -> Event | None:
    return Assist(_a(m), _b(m), log_time=t)


def _blinded(m: re.Match[str], t: str | None) -> Event | None:
    return PlayerTriggered(_a(m), "blinded", _b(m), (("duration", m["sec"]),), log_time=t)


def _suicide(m: re.Match[str], t: str | None) -> Event | None:
    props, _ = parse_properties(m["rest"])
    if m["w"] in _WORLD_WEAPONS:
        return WorldKill(_a(m), m["w"], "world", log_time=t)
    pos = _position(m["ap"]) or _prop_position(props, "attacker_position")
    return Suicide(_a(m), m["w"], pos, "suicide", log_time=t)


def _connected(m: re.Match[str], t: str | None) -> Event | None:
    return Connected(_a(m), log_time=t)


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
    props, _ = parse_properties(m["rest"])
    return ItemPickup(_a(m), m["item"], props, log_time=t)


def _threw(m: re.Match[str], t: str | None) -> Event | None:
    return PlayerTriggered(_a(m), "threw", None, (("item", m["item"]), ("position", m["ap"])),
                           log_time=t)


def _role(m: re.Match[str], t: str | None) -> Event | None:
    return PlayerTriggered(_a(m), "changed_role", None, (("role", m["role"]),), log_time=t)


def _spawned(m: re.Match[str], t: str | None) -> Event | None:
    return PlayerTriggered(_a(m), "spawned", None, (("role", m["role"]),), log_time=t)


def _tscore(m: re.Match[str], t: str | None) -> Event | None:
    n = m["n"]
    # GoldSrc writes some scores as floats ("586.00")
    return TeamScore(m["t"], round(float(m["s"])), int(n) if n is not None else None,
                     log_time=t)


def _captured(m: re.Match[str], t: str | None) -> Event | None:
    rest = m["rest"]
    cappers = tuple(make_player(c[1], c[2], c[3], c[4]) for c in _CAPPER.finditer(rest))
    props, _ = parse_properties(_CAPPER.sub("", rest))
    point = dict(props).get("cpname") or dict(props).get("cp")
    kept = tuple((k, v) for k, v in props if not k.startswith("position"))
    return PointCaptured(m["t"], point, cappers, kept, log_time=t)


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
    mode = " ".join(m["mode"].split())
    return MatchEnd(mode or None, m["map"], m["score"], log_time=t)


def _loading(m: re.Match[str], t: str | None) -> Event | None:
    return MapChange(m["map"], "loading", log_time=t)


def _started(m: re.Match[str], t: str | None) -> Event | None:
    props, _ = parse_properties(m["rest"])
    return MapChange(m["map"], "started", props, log_time=t)


def _cvar(m: re.Match[str], t: str | None) -> Event | None:
    value = REDACTED if is_sensitive(m["k"]) and m["v"] else m["v"]
    return ServerCvar(m["k"], value, log_time=t)


def _rcon(m: re.Match[str], t: str | None) -> Event | None:
    return RconSeen(redact_command(m["cmd"] or ""), True, log_time=t)


def _badrcon(m: re.Match[str], t: str | None) -> Event | None:
    # The rejected command line may hold a mistyped password: never pass it on.
    return RconSeen("", False, log_time=t)


def _anyrcon(m: re.Match[str], t: str | None) -> Event | None:
    return RconSeen("", m["bad"] is None, log_time=t)


_Builder: TypeAlias = Callable[[re.Match[str], str | None], Event | None]

_BUILDERS: Final[dict[str, _Builder]] = {
    "kill": _kill, "killother": _killother, "bombed": _bombed, "damage": _damage,
    "assist": _assist, "suicide": _suicide, "connected": _connected, "entered": _entered,
    "disconnected": _disconnected, "joined": _joined, "switched": _switched,
    "renamed": _renamed, "tfdamage": _tfdamage, "tfassist": _tfassist, "blinded": _blinded,
    "ptrig": _ptrig, "purchased": _purchased, "picked": _picked, "threw": _threw,
    "role": _role, "spawned": _spawned, "tscore": _tscore, "captured": _captured,
    "ttrig": _ttrig, "wtrig": _wtrig, "gameover": _gameover, "loading": _loading,
    "started": _started, "mapchange": _loading, "cvar": _cvar, "hlcvar": _cvar,
    "cvardump": _cvar, "rcon": _rcon, "badrcon": _badrcon, "hlrcon": _rcon,
    "anyrcon": _anyrcon,
}
