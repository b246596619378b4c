"""Build RCON commands from untrusted (browser) text without letting it inject a command.

Both engines split a console line into commands at ``;`` and at line breaks (Source also
splits a quoted argument's surroundings at ``;``), and neither can escape a ``"`` inside a
quoted argument.  So user text is *cleaned*, not escaped: every character that could end
the argument or the command -- ``"``, ``;``, CR/LF and every other control or format
character (including NUL and the Unicode line/paragraph separators) -- becomes a space, runs
of spaces collapse, and the result is length-capped and wrapped in double quotes.

Identifiers (player slots, map names) are validated instead and raise ``ValueError``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, Literal

__all__ = [
    "MAX_TEXT",
    "Kind",
    "change_map",
    "clean_text",
    "kick",
    "kick_slot",
    "quote",
    "say",
]

Kind = Literal["source", "quake3"]

#: Longest chat text kept (Source's chat input and ioquake3's ``say`` both stop near 127).
MAX_TEXT: Final = 120

_FORBIDDEN: Final = frozenset('";\\`$%')
_SPACES = re.compile(r"\s+")
_MAP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,63}")


def clean_text(text: str, *, max_length: int = MAX_TEXT) -> str:
    """Return ``text`` with every command-breaking character replaced by a space.

    Removes ``"`` ``;`` ``\\`` `````` ``$`` ``%`` and all Unicode control, format,
    surrogate, private-use and unassigned characters (categories ``C*``) and line/paragraph
    separators (``Zl``, ``Zp``); collapses whitespace; strips; cuts to ``max_length``.
    """
    out: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in _FORBIDDEN or category[0] == "C" or category in ("Zl", "Zp"):
            out.append(" ")
        else:
            out.append(ch)
    cleaned = _SPACES.sub(" ", "".join(out)).strip()
    return cleaned[:max_length].rstrip()


def quote(text: str, *, max_length: int = MAX_TEXT) -> str:
    """Return ``text`` cleaned by :func:`clean_text` and wrapped in double quotes."""
    return f'"{clean_text(text, max_length=max_length)}"'


def say(text: str) -> str:
    """``say "TEXT"``: a chat line from the console, same syntax on both engines."""
    return f"say {quote(text)}"


def kick_slot(kind: Kind, slot: int, reason: str = "") -> str:
    """Kick by number: ``kickid USERID "REASON"`` (Source) or ``clientkick SLOT`` (Quake 3).

    ``reason`` (cleaned and quoted) is sent only to Source, whose ``kickid`` shows it.
    """
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < 100_000:
        raise ValueError("a player slot/user id is a small non-negative integer")
    if kind == "source":
        return f"kickid {slot} {quote(reason)}" if clean_text(reason) else f"kickid {slot}"
    return f"clientkick {slot}"


def kick(name: str) -> str:
    """Kick by player name: ``kick "NAME"`` on both engines (name cleaned and quoted).

    An empty cleaned name raises ``ValueError``.
    """
    cleaned = clean_text(name, max_length=64)
    if not cleaned:
        raise ValueError("an empty player name")
    return f'kick "{cleaned}"'


def change_map(name: str) -> str:
    """``map NAME`` for a map name of letters, digits, ``_ . - /`` (validated, not cleaned)."""
    if not _MAP.fullmatch(name) or ".." in name:
        raise ValueError(f"not a map name: {name!r}")
    return f"map {name}"
