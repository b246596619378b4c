"""Game events as readable lines, shared by the chat and console plugins.

:func:`line_of` gives the chat page's line for an event (the ``line`` object of
``docs/protocol.md``); :func:`console_text` one line of text for any event. Both read
the event dataclasses of :mod:`gamews.api`; only their result is JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from gamews.api import (
    Chat,
    Connected,
    Disconnected,
    Envelope,
    Kill,
    MapChange,
    MatchEnd,
    Player,
    RconSeen,
    RoundEnd,
    RoundStart,
    Suicide,
    TeamScore,
    Unknown,
    WorldKill,
    event_fields,
)

__all__ = ["WEB_PREFIX", "console_text", "line_of"]

WEB_PREFIX: Final = "(web) "
"""How a line said from a browser starts in the game (``say "(web) NAME: TEXT"``)."""
_WEB_LINE: Final = re.compile(r"\(web\) (?P<name>[^:]{1,24}): (?P<text>.*)", re.DOTALL)
_CONSOLE: Final = "console"
"""The player key of the server console (Source ``Console<0><Console><Console>``)."""


def _name(player: Player) -> str:
    return player.name or "?"


def _sentence(envelope: Envelope) -> tuple[str, str] | None:
    """The (kind, sentence) of an event the chat shows as a sentence, if it is one."""
    event = envelope.event
    if isinstance(event, Connected):
        return "connected", f"{_name(event.player)} joined the game"
    if isinstance(event, Disconnected):
        sentence = f"{_name(event.player)} left the game"
        return "disconnected", sentence + (f" ({event.reason})" if event.reason else "")
    if isinstance(event, Kill):
        return event.type, (f"{_name(event.killer)} killed {_name(event.victim)} with "
                            f"{event.weapon_name or event.weapon}"
                            + (" (headshot)" if event.headshot else ""))
    if isinstance(event, Suicide):
        return event.type, (f"{_name(event.player)} killed themselves (suicide: "
                            f"{event.weapon_name or event.weapon})")
    if isinstance(event, WorldKill):
        return event.type, (f"{_name(event.victim)} was killed by the world "
                            f"({event.cause_name or event.cause})")
    if isinstance(event, RoundStart):
        return event.type, "Round started"
    if isinstance(event, RoundEnd):
        return event.type, "Round over" + (f": {event.winner} win" if event.winner else "")
    if isinstance(event, MapChange) and event.phase != "loading":
        return event.type, f"Map changed to {event.map}"
    if isinstance(event, TeamScore):
        return event.type, f"Team {event.team} scored {event.score}"
    if isinstance(event, MatchEnd):
        return event.type, "Match over" + (f" ({event.score})" if event.score else "")
    return None


def line_of(envelope: Envelope) -> dict[str, Any] | None:
    """The chat page's line for one event, or None if the chat does not show it."""
    event = envelope.event
    base = {"seq": envelope.seq, "time": envelope.received}
    if isinstance(event, Chat):
        if event.player.key == _CONSOLE:
            match = _WEB_LINE.fullmatch(event.text)
            if match:
                return {**base, "kind": "web", "source": "web", "name": match["name"],
                        "text": match["text"], "team": None, "team_only": False, "dead": False}
            return {**base, "kind": "chat", "name": "Console", "team": None, "text": event.text,
                    "team_only": False, "dead": False}
        return {**base, "kind": "chat", "name": _name(event.player), "team": event.player.team,
                "text": event.text, "team_only": event.team, "dead": event.dead}
    sentence = _sentence(envelope)
    if sentence is None:
        return None
    kind, text = sentence
    return {**base, "kind": "event", "event": kind, "text": text, "name": None, "team": None}


_SKIP: Final = frozenset({"log_time", "game_clock"})


def _value(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def console_text(envelope: Envelope) -> str:
    """One readable console line for an event (addresses left out)."""
    event = envelope.event
    line = line_of(envelope)
    if line is not None:
        return f"{line['name']}: {line['text']}" if line["name"] else str(line["text"])
    if isinstance(event, Unknown):
        return event.raw
    if isinstance(event, RconSeen):
        return f"rcon: {event.command}"
    fields = " ".join(f"{k}={_value(v)}" for k, v in event_fields(event).items()
                      if k not in _SKIP and v not in (None, [], {}, ""))
    return f"[{event.type}] {fields}".rstrip()
