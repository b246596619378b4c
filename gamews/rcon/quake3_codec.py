"""Sans-IO codec for Quake 3-family out-of-band (OOB) UDP messages.

Covers ioquake3 and its descendants (OpenArena, Urban Terror, Wolfenstein: Enemy
Territory).  Every OOB datagram starts with ``\\xff\\xff\\xff\\xff``; requests are one text
line (the engine reads them with ``MSG_ReadStringLine``: at most 1023 bytes, cut at the first
newline); replies start with a keyword line (``print``, ``statusResponse``,
``infoResponse``).  Pure: no Twisted, no sockets, no clocks.

An rcon reply is one or more ``print\\n<chunk>`` datagrams with no end marker (the caller
waits for silence and joins the chunks in arrival order: a cut can fall inside a line).
Strings are Latin-1 on the wire (the engine works in bytes); decoding Latin-1 is lossless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "BAD_PASSWORD_REPLY",
    "MAX_REQUEST",
    "NO_PASSWORD_REPLY",
    "OOB",
    "OobMessage",
    "Player",
    "ServerStatus",
    "encode_getinfo",
    "encode_getstatus",
    "encode_rcon",
    "is_bad_password",
    "parse_datagram",
    "parse_info_response",
    "parse_info_string",
    "parse_status_response",
    "print_text",
    "strip_colours",
]

OOB: Final = b"\xff\xff\xff\xff"
#: The engine's reply to a wrong or missing rcon password (body of a ``print``).
BAD_PASSWORD_REPLY: Final = "Bad rconpassword."  # noqa: S105 - a reply text, not a secret
#: Longest request line the engine reads (``MAX_STRING_CHARS`` - 1), without the OOB prefix.
MAX_REQUEST: Final = 1023

_KEYWORDS: Final = (b"print", b"statusResponse", b"infoResponse")
_COLOUR = re.compile(r"\^[0-9A-Za-z]")
_PLAYER = re.compile(r"^(-?\d{1,10}) (-?\d{1,10}) \"(.*)\"")
_UNSAFE_PASSWORD = re.compile(r'[\s"\\;\x00-\x1f\x7f]')


def _text(data: bytes) -> str:
    return data.decode("latin-1")


def encode_rcon(password: str, command: str) -> bytes:
    """Return the datagram ``rcon PASSWORD COMMAND``.

    Raises ``ValueError`` for a password the engine cannot parse as one word (empty, or with
    whitespace, quotes, backslashes, semicolons or control characters), a command holding a
    newline, NUL or other control character, non-Latin-1 text, or a request longer than
    :data:`MAX_REQUEST`.
    """
    if not password or _UNSAFE_PASSWORD.search(password):
        raise ValueError("an rcon password must be one word without quotes or control chars")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in command):
        raise ValueError("an rcon command cannot contain control characters or newlines")
    try:
        line = f"rcon {password} {command}".encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("Quake 3 rcon text must be Latin-1") from None
    if len(line) > MAX_REQUEST:
        raise ValueError(f"an rcon request is at most {MAX_REQUEST} bytes")
    return OOB + line


def _challenge(challenge: str) -> str:
    if challenge and not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", challenge):
        raise ValueError("a challenge is 1-64 letters, digits, '_' or '-'")
    return f" {challenge}" if challenge else ""


def encode_getstatus(challenge: str = "") -> bytes:
    """Return a ``getstatus`` request (the optional challenge is echoed back)."""
    return OOB + f"getstatus{_challenge(challenge)}".encode("ascii")


def encode_getinfo(challenge: str = "") -> bytes:
    """Return a ``getinfo`` request (the optional challenge is echoed back)."""
    return OOB + f"getinfo{_challenge(challenge)}".encode("ascii")


@dataclass(frozen=True, slots=True)
class OobMessage:
    """A parsed OOB reply: ``keyword`` (``print``, ``statusResponse``, ``infoResponse``)."""

    keyword: str
    payload: bytes


def parse_datagram(data: bytes) -> OobMessage | None:
    """Return the reply in ``data``, or ``None`` for anything else (never raises)."""
    if not data.startswith(OOB):
        return None
    body = data[len(OOB):]
    for keyword in _KEYWORDS:
        if body.startswith(keyword):
            rest = body[len(keyword):]
            if rest[:1] == b"\n":
                return OobMessage(keyword.decode("ascii"), rest[1:])
            if not rest or rest[:1] in (b" ", b"\\"):
                return OobMessage(keyword.decode("ascii"), rest.lstrip(b" "))
    return None


#: The engine's reply when the server has no rconpassword at all.
NO_PASSWORD_REPLY: Final = "No rconpassword set on the server."  # noqa: S105 - a reply text


def is_bad_password(text: str) -> bool:
    """Whether an rcon reply is the engine's wrong-password (or no-password) answer."""
    return text.strip() in (BAD_PASSWORD_REPLY, NO_PASSWORD_REPLY)


def strip_colours(text: str) -> str:
    """Remove ``^N`` colour codes (``^`` then a letter or digit, as ioquake3 does)."""
    return _COLOUR.sub("", text)


def parse_info_string(text: str) -> dict[str, str]:
    """Parse ``\\key\\value\\key\\value``; a key without a value gets ``""``."""
    parts = text.split("\\")
    if parts and parts[0] == "":
        parts = parts[1:]
    info: dict[str, str] = {}
    for i in range(0, len(parts), 2):
        key = parts[i]
        if key:
            info[key] = parts[i + 1] if i + 1 < len(parts) else ""
    return info


@dataclass(frozen=True, slots=True)
class Player:
    """One line of a ``statusResponse``: ``name`` is ``raw_name`` without colour codes."""

    score: int
    ping: int
    name: str
    raw_name: str


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """A ``statusResponse``: the server's info keys and its player list."""

    info: dict[str, str] = field(default_factory=dict)
    players: tuple[Player, ...] = ()

    @property
    def hostname(self) -> str:
        """The server's name without colour codes."""
        return strip_colours(self.info.get("sv_hostname", ""))

    @property
    def map_name(self) -> str:
        """The current map."""
        return self.info.get("mapname", "")


def parse_status_response(payload: bytes) -> ServerStatus:
    """Parse a ``statusResponse`` payload (info line, then one line per player).

    Lines that are not ``score ping "name"`` are skipped; never raises.
    """
    lines = _text(payload).split("\n")
    info = parse_info_string(lines[0]) if lines else {}
    players: list[Player] = []
    for line in lines[1:]:
        match = _PLAYER.match(line)
        if match is None:
            continue
        raw = match.group(3)
        players.append(Player(int(match.group(1)), int(match.group(2)), strip_colours(raw), raw))
    return ServerStatus(info, tuple(players))


def parse_info_response(payload: bytes) -> dict[str, str]:
    """Parse an ``infoResponse`` payload into its keys; never raises."""
    return parse_info_string(_text(payload).split("\n", 1)[0])


def print_text(payload: bytes) -> str:
    """Decode one ``print`` datagram's payload."""
    return _text(payload)
