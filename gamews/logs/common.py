"""What the log sources share: counters, the source-address check, line splitting."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, TypeAlias

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from gamews.events import Event, Unknown

__all__ = ["AllowedHosts", "IgnoredKind", "LineSink", "LogStats", "decode_line", "ignored_kind",
           "mask_addresses", "split_lines"]

LineSink: TypeAlias = Callable[[str], object]
"""Where a log source hands each line (without its line ending)."""

_log = Logger(namespace="gamews.logs")


@dataclass(slots=True)
class LogStats:
    """Counters of one log source (read them in the manhole or a metrics page)."""

    received: int = 0
    """Datagrams, POSTs or reads taken in."""
    accepted: int = 0
    """Of those, how many passed the address and secret checks."""
    lines: int = 0
    """Lines handed to the parser."""
    dropped_address: int = 0
    """Dropped: not from the game server's address."""
    dropped_secret: int = 0
    """Dropped: missing or wrong secret."""
    dropped_malformed: int = 0
    """Dropped: not a log packet or request (bad header, too big, wrong method)."""
    errors: int = 0
    """Lines whose handling raised (logged), or failed polls of a file."""
    rotations: int = 0
    """Files followed after a rotation or truncation."""
    too_long: int = 0
    """Lines longer than ``MAX_LINE`` (4096), parsed as ``unknown`` unread."""
    bridge_dropped: int = 0
    """``gamews CHANNEL JSON`` lines dropped: bad channel, invalid or oversized JSON."""
    events: Counter[str] = field(default_factory=Counter)
    """Parsed lines by event type (``unknown``: no type fits), counted by the line pipeline."""

    def as_dict(self) -> dict[str, int]:
        """The integer counters by name."""
        return {f.name: value for f in fields(self)
                if isinstance(value := getattr(self, f.name), int)}

    @property
    def dropped(self) -> int:
        """All drops together."""
        return self.dropped_address + self.dropped_secret + self.dropped_malformed


def _canonical(host: str) -> str:
    try:
        addr = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal (brackets allowed)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class AllowedHosts:
    """The addresses a log may come from: the game server's, as IP literals or names.

    Names are resolved by :meth:`resolve` (log sources call it when they start); until then
    only literal addresses are allowed. An empty set of hosts allows nobody.
    """

    def __init__(self, hosts: Iterable[str]) -> None:
        """Allow ``hosts`` (IP addresses, or names to resolve)."""
        self.hosts = tuple(hosts)
        self._allowed = {_canonical(h) for h in self.hosts if is_ip(h)}

    def __repr__(self) -> str:
        return f"AllowedHosts({list(self.hosts)!r})"

    def resolve(self, reactor: Any) -> Deferred[None]:
        """Resolve the names among the hosts with ``reactor.resolve`` and allow the results."""
        names = [h for h in self.hosts if not is_ip(h)]

        def add(address: str) -> None:
            self._allowed.add(_canonical(address))

        def failed(failure: Any, name: str) -> None:
            _log.error("cannot resolve log source host {name}: {why}", name=name,
                       why=failure.getErrorMessage())

        ds: list[Deferred[None]] = []
        for name in names:
            d: Deferred[str] = reactor.resolve(name)
            ds.append(d.addCallbacks(add, failed, errbackArgs=(name,)))
        return DeferredList(ds).addCallback(lambda _: None)

    def allows(self, host: str) -> bool:
        """Whether a packet or request from ``host`` may be read."""
        return _canonical(host) in self._allowed


def decode_line(raw: bytes) -> str:
    """A log line as text: UTF-8, or Latin-1 when it is not valid UTF-8 (older servers write
    names in Latin-1; every byte is a Latin-1 character, so nothing becomes U+FFFD)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_lines(data: bytes) -> Iterator[str]:
    """The non-empty lines of ``data`` as text (:func:`decode_line`), ends stripped."""
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\r\x00")
        if line:
            yield decode_line(line)


@dataclass(frozen=True, slots=True)
class IgnoredKind:
    """A kind of log line a parser leaves :class:`gamews.events.Unknown` on purpose."""

    name: str
    pattern: str
    """A regular expression matched at the start of the line's message."""
    reason: str

    def matches(self, message: str) -> bool:
        """Whether ``message`` (a line without its time stamp) is of this kind."""
        return re.match(self.pattern, message) is not None


def ignored_kind(table: Iterable[IgnoredKind], message: str) -> str | None:
    """The name of the first kind in ``table`` that ``message`` is of, or ``None``."""
    return next((kind.name for kind in table if kind.matches(message)), None)


MAX_LINE = 4096
"""The longest log line parsed; a longer one is ``Unknown`` (engines cut lines near 1 KiB)."""


_ADDRESS: Final = re.compile(
    r"(?<![\w.:])(?:(?P<v4>\d{1,3}(?:\.\d{1,3}){3})|\[?(?P<v6>[0-9A-Fa-f]{0,4}"
    r"(?::[0-9A-Fa-f]{0,4}){2,7})\]?)(?::\d{1,5})?(?![\w.:])")

ADDRESS_MASK: Final = "<address>"
"""What stands in for an IP address in an unparsed line."""


def mask_addresses(text: str) -> str:
    """``text`` with every IPv4 or IPv6 address (and its port) replaced by ``<address>``."""
    def sub(m: re.Match[str]) -> str:
        return ADDRESS_MASK if is_ip(m["v4"] or m["v6"]) else m[0]

    return _ADDRESS.sub(sub, text)


def parse_safely(parse: Callable[[str], Event], line: str) -> Event:
    """``parse(line)`` with trailing CR, LF and NUL removed; never raises: a line that is
    too long, or that trips a parser bug, is :class:`gamews.events.Unknown`. An Unknown
    line's IP addresses are masked (:func:`mask_addresses`): they must not reach a browser."""
    if len(line) > MAX_LINE:
        return Unknown(mask_addresses(line))
    try:
        event = parse(line.rstrip("\r\n\x00"))
    except Exception:  # a parser bug must not stop the stream
        return Unknown(mask_addresses(line))
    if isinstance(event, Unknown):
        return replace(event, raw=mask_addresses(event.raw))
    return event

