"""The bridge from plugins inside the game server: ``gamews CHANNEL JSON`` log lines.

A SourceMod or CounterStrikeSharp plugin writes a line to the game's log (``LogToGame``)
and it reaches gamews through the log stream like any other line::

    L 11/28/2026 - 12:00:00: gamews bomb {"site":"A","planter":"[U:1:123]"}

A line whose message (after the engine's time stamp) starts with the word ``gamews`` and a
space is a bridge line. It becomes a :class:`gamews.events.Custom` event when

- ``CHANNEL`` is 1 to 32 characters of ``a-z``, ``0-9``, ``_``, ``-`` and ``.``, starting
  with a letter or digit, and
- ``JSON`` is one strict JSON object (no ``NaN`` or ``Infinity``) of at most
  :data:`MAX_JSON` bytes (UTF-8), at most :data:`MAX_DEPTH` levels deep.

Any other bridge line (a bad channel name, invalid or oversized JSON, not an object) is
dropped, counted (``LogStats.bridge_dropped``) and logged without its text: it is neither
published nor forwarded. Lines that do not start so are left to the game's
parser. This module only recognises the lines; the engine parsers are untouched.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

from gamews.events import Custom

__all__ = ["CHANNEL", "MAX_DEPTH", "MAX_JSON", "BridgeLine", "Rejected", "parse_bridge_line",
           "valid_channel"]

MAX_JSON: Final = 1024
"""The largest JSON text accepted, in bytes (SourceMod's ``LogToGame`` cuts near 1 KiB)."""

MAX_DEPTH: Final = 8
"""How deeply objects and arrays may nest in a bridge line's JSON."""

CHANNEL: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
"""What a channel name may be."""

_LINE: Final = re.compile(
    # the Source stamp ("L 11/28/2026 - 12:00:00: ") or a Quake 3 game clock (" 12:34 ")
    r"(?:L (?P<month>\d\d)/(?P<day>\d\d)/(?P<year>\d{4}) - (?P<time>\d\d:\d\d:\d\d): "
    r"|\s*(?P<min>\d+):(?P<sec>\d\d) )?"
    r"gamews (?P<channel>\S*) ?(?P<json>.*)", re.DOTALL)


def valid_channel(name: str) -> bool:
    """Whether ``name`` may be a bridge channel's name (:data:`CHANNEL`)."""
    return CHANNEL.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A bridge line that is dropped, and why (the reason never quotes the line)."""

    reason: str


BridgeLine = Custom | Rejected | None
"""What :func:`parse_bridge_line` gives: an event, a rejection, or ``None`` (not a
bridge line)."""


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("a number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def parse_bridge_line(line: str) -> BridgeLine:
    """The :class:`Custom` event of a bridge line, a :class:`Rejected` for a bad one, or
    ``None`` for a line that is not a bridge line."""
    m = _LINE.fullmatch(line.rstrip("\r\n\x00"))
    if m is None:
        return None
    channel, text = m["channel"], m["json"]
    if not valid_channel(channel):
        return Rejected("bad channel name")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_JSON:
        return Rejected(f"JSON longer than {MAX_JSON} bytes")
    try:
        # strict JSON: no NaN or Infinity, no number too large for a double (browsers'
        # JSON.parse would refuse what json.dumps writes for them)
        data = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return Rejected("invalid JSON")
    if not isinstance(data, dict):
        return Rejected("JSON is not an object")
    if _depth(data) > MAX_DEPTH:
        return Rejected(f"JSON nested more than {MAX_DEPTH} levels")
    log_time = (f"{m['year']}-{m['month']}-{m['day']}T{m['time']}" if m["year"] else None)
    game_clock = int(m["min"]) * 60 + int(m["sec"]) if m["min"] else None
    return Custom(channel, data, log_time=log_time, game_clock=game_clock)
