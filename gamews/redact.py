"""Keeping secrets and addresses out of everything gamews shows or stores.

A console line is split into commands the way the game engines split it (Source and
ioquake3 alike): at ``;`` outside double quotes and at every line break (a line break also
ends an open quote); within a command, a double-quoted argument is one token. Every
command that names a sensitive setting -- ``rcon_password``, ``sv_password``,
``sv_setsteamaccount``, ``logaddress_add_http``, or any name with ``password``, ``passwd``,
``secret``, ``token``, ``steamaccount`` or a ``key`` part in it -- keeps its words up to
that name and loses the rest to ``<redacted>``, however it is written (``set``/``seta``,
quoted, after other commands, inside a quoted argument such as an ``alias`` body or a
logged ``command "..."``). :func:`redact_command` is applied wherever a command or a log
line is shown or stored: event fields (:func:`redact_event`, at the event bus), console
frames, the audit log.

:func:`mask_addresses` replaces IPv4 and IPv6 addresses (with their port) by ``<ip>``;
log lines reach browsers only through it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any, Final

__all__ = [
    "REDACTED",
    "is_sensitive_name",
    "mask_addresses",
    "redact_command",
    "redact_event",
    "split_commands",
    "truncate",
]

REDACTED: Final = "<redacted>"
ADDRESS: Final = "<ip>"

_EXACT: Final = frozenset({"rcon_password", "sv_password", "sv_setsteamaccount",
                           "logaddress_add_http", "rconpassword", "g_password"})
_LIKE = re.compile(r"password|passwd|secret|token|steamaccount|(?:^|_)(?:api|auth)?keys?(?:_|$)|"
                   r"(?:api|auth|license|steam)key")
_NAME = re.compile(r"[a-z0-9_.\-+]+")
_SEPARATORS: Final = ";\n\r\0"


def is_sensitive_name(word: str) -> bool:
    """Whether ``word`` (a command or setting name, any case, quotes allowed) names a secret."""
    name = word.strip().strip('"').lower().lstrip("+-")
    if not name or not _NAME.fullmatch(name):
        return False
    return name in _EXACT or _LIKE.search(name) is not None


def split_commands(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` spans of the commands in ``text``, split as the engines split
    a console line (separators excluded)."""
    spans: list[tuple[int, int]] = []
    start, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch in "\n\r\0" or (ch == ";" and not quoted):
            spans.append((start, i))
            start, quoted = i + 1, False
    spans.append((start, len(text)))
    return spans


_TOKEN = re.compile(r'"[^"]*"?|[{}()\':]|[^\s"{}()\':]+')


def _redact_one(command: str, depth: int) -> str:
    """One command (no separators outside quotes) with its secret part removed."""
    out: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(command):
        token = match.group()
        quoted = token.startswith('"')
        inner = (token[1:-1] if len(token) > 1 and token.endswith('"') else token[1:]
                 ) if quoted else token
        if is_sensitive_name(inner):
            if not command[match.end():].strip():
                break  # the name alone (a query): nothing to hide
            out.append(command[pos:match.end()])
            out.append(" " + REDACTED)
            return "".join(out)
        if quoted and depth < 2 and any(c in inner for c in " ;"):
            redacted = _redact(inner, depth + 1)
            if redacted != inner:
                out.append(command[pos:match.start()])
                out.append(f'"{redacted}"')
                pos = match.end()
    out.append(command[pos:])
    return "".join(out)


def _redact(text: str, depth: int) -> str:
    parts: list[str] = []
    previous = 0
    for start, end in split_commands(text):
        parts.append(text[previous:start])
        parts.append(_redact_one(text[start:end], depth))
        previous = end
    return "".join(parts)


_RCON_PACKET = re.compile(r'(\brcon\s+)(\d+\s+)?("[^"]*"|\S+)', re.IGNORECASE)
"""The network form of an rcon command, ``rcon [CHALLENGE] PASSWORD COMMAND`` (GoldSrc logs
it in a successful ``Rcon:`` line): its password goes, whatever else parses the line."""


def redact_command(text: str) -> str:
    """``text`` (a console line, several commands, or a log line) with the value of every
    sensitive command replaced by ``<redacted>``; everything else is left as it was."""
    lowered = text.lower()
    if "rcon " in lowered and _RCON_PACKET.search(text) and (
            'rcon: "rcon' in lowered or re.search(r"\brcon\s+\d+\s", lowered)):
        text = _RCON_PACKET.sub(lambda m: f"{m[1]}{REDACTED}", text)
        lowered = text.lower()
    if not any(hint in lowered for hint in ("pass", "secret", "token", "key", "steamaccount",
                                            "logaddress")):
        return text  # the common case, cheaply
    return _redact(text, 0)


_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])")
_IPV6 = re.compile(r"\[?(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?"
                   r"(?![\w:])\]?(?::\d{1,5})?")


def _ipv6(match: re.Match[str]) -> str:
    text = match.group()
    host = text.lstrip("[").split("]")[0].split("%")[0]
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return text
    return ADDRESS


def mask_addresses(text: str) -> str:
    """``text`` with every IPv4 and IPv6 address (and its ``:port``) replaced by ``<ip>``."""
    if "." in text:
        text = _IPV4.sub(ADDRESS, text)
    if "::" in text or text.count(":") >= 7:
        text = _IPV6.sub(_ipv6, text)
    return text


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters cut]"


_SUSPECT = re.compile(r"pass|secret|token|key|steamaccount|logaddress|rcon\s|"
                      r"\d\.\d{1,3}\.\d{1,3}\.\d|:[0-9a-f]{0,4}:", re.IGNORECASE)
"""What any text :func:`redact_command` or :func:`mask_addresses` would change contains
(most event text, names and weapons, does not: it is passed over at once)."""

_TEXT, _CONSOLE_CHAT, _CVAR_VALUE, _PAIRS = range(4)
_PLANS: dict[type, tuple[tuple[str, int], ...]] = {}


def _plan(cls: type) -> tuple[tuple[str, int], ...]:
    """The text fields of an event class worth looking at, and how (made once a class)."""
    plan = _PLANS.get(cls)
    if plan is None:
        private: frozenset[str] = getattr(cls, "private", frozenset())
        kind = getattr(cls, "type", "")
        steps = []
        for field in dataclasses.fields(cls):
            annotation = str(field.type)
            if field.name in private or field.name in ("log_time", "game_clock"):
                continue
            if kind == "chat" and field.name == "text":
                steps.append((field.name, _CONSOLE_CHAT))
            elif kind == "server_cvar" and field.name == "value":
                steps.append((field.name, _CVAR_VALUE))
            elif annotation == "Properties":
                steps.append((field.name, _PAIRS))
            elif annotation.replace(" ", "") in ("str", "str|None"):
                steps.append((field.name, _TEXT))
        plan = _PLANS[cls] = tuple(steps)
    return plan


def _text(value: str) -> str:
    return mask_addresses(redact_command(value)) if _SUSPECT.search(value) else value


def redact_event(event: Any) -> Any:
    """A game event (:mod:`gamews.events`) as it may be shown: secrets redacted in its
    text fields, IP addresses masked except in its ``private`` fields (kept for admin
    tools) and in what players write (chat text, names). Returns ``event`` itself when
    nothing changes."""
    changes: dict[str, Any] = {}
    for name, how in _plan(type(event)):
        value = getattr(event, name)
        if how == _TEXT:
            cleaned = _text(value) if value else value
        elif how == _PAIRS:
            # name/value pairs: a value named like a secret goes whole
            cleaned = tuple((k, REDACTED if v and is_sensitive_name(k) else _text(v))
                            for k, v in value) if any(
                _SUSPECT.search(k) or _SUSPECT.search(v) for k, v in value) else value
        elif how == _CVAR_VALUE:
            cleaned = REDACTED if value and is_sensitive_name(getattr(event, "name", "")) else (
                _text(value))
        else:  # chat: only the console's (an admin's command line) is redacted
            speaker = getattr(event, "player", None)
            cleaned = (redact_command(value) if getattr(speaker, "key", None) == "console"
                       else value)
        if cleaned != value:
            changes[name] = cleaned
    return dataclasses.replace(event, **changes) if changes else event
