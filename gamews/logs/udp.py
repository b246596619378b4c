"""Receive a Source server's log over UDP (``logaddress_add IP:PORT``).

Each datagram is ``\\xff\\xff\\xff\\xff`` then ``R`` and one log line
``L MM/DD/YYYY - HH:MM:SS: message`` (NUL-terminated, maybe with a newline), or ``S``, the
server's ``sv_logsecret`` and the line. Packets from any other address than the game
server's, without the right secret (when one is configured) or not in this format are
dropped and counted in :class:`gamews.logs.common.LogStats`, never parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from gamews.logs.common import AllowedHosts, LineSink, LogStats, split_lines
from gamews.secret import Secret

__all__ = ["OOB", "LogPacket", "SourceLogReceiver", "UdpLogService", "decode_packet"]

OOB: Final = b"\xff\xff\xff\xff"
"""The out-of-band header of every connectionless Source/Quake packet."""

MAX_SECRET: Final = 256
"""Longest secret looked for in an ``S`` packet."""

_LINE_START: Final = re.compile(rb"L \d\d/\d\d/\d{4} - ")
_log = Logger(namespace="gamews.logs.udp")


@dataclass(frozen=True, slots=True)
class LogPacket:
    """A decoded log datagram: ``secret`` is ``None`` for an ``R`` packet."""

    secret: bytes | None
    payload: bytes
    """The log text after the header and secret, NULs and line ends still in."""

    def __repr__(self) -> str:
        secret = "None" if self.secret is None else "<redacted>"
        return f"LogPacket(secret={secret}, payload={self.payload!r})"


def decode_packet(data: bytes) -> LogPacket | None:
    """Decode one datagram, or ``None`` if it is not a log packet; never raises.

    ``S`` packets are split at the first ``L MM/DD/YYYY - `` after the type byte (secrets
    are numbers, so they cannot contain it). HL1's ``log L ...`` form is read as ``R``.
    """
    if not data.startswith(OOB) or len(data) < 6:
        return None
    kind = data[4:5]
    if kind == b"R":
        return LogPacket(None, data[5:])
    if kind == b"S":
        m = _LINE_START.search(data, 5, 5 + MAX_SECRET + 16)
        if m is None or m.start() == 5:
            return None
        return LogPacket(data[5:m.start()], data[m.start():])
    if data.startswith(b"log ", 4):
        return LogPacket(None, data[8:])
    return None


class SourceLogReceiver(DatagramProtocol):
    """Checks each datagram's source and secret and hands its lines to ``sink``."""

    def __init__(self, sink: LineSink, *, allowed: AllowedHosts, secret: Secret | None,
                 stats: LogStats | None = None) -> None:
        """Accept datagrams from ``allowed`` hosts, with ``secret`` if it is not ``None``."""
        self.sink = sink
        self.allowed = allowed
        self.secret = secret
        self.stats = stats if stats is not None else LogStats()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Check, decode and pass on one datagram (``addr`` is ``(host, port)``)."""
        stats = self.stats
        stats.received += 1
        if not self.allowed.allows(str(addr[0])):
            stats.dropped_address += 1
            return
        packet = decode_packet(datagram)
        if packet is None:
            stats.dropped_malformed += 1
            return
        if self.secret is not None and (
            packet.secret is None or not self.secret.matches(packet.secret)
        ):
            stats.dropped_secret += 1
            return
        stats.accepted += 1
        for line in split_lines(packet.payload):
            stats.lines += 1
            try:
                self.sink(line)
            except Exception:
                stats.errors += 1
                _log.failure("log line handler failed")


class UdpLogService(Service):
    """Listens for log datagrams on ``port`` of ``interface`` while running."""

    def __init__(self, reactor: Any, port: int, receiver: SourceLogReceiver, *,
                 interface: str = "") -> None:
        """Listen with ``reactor.listenUDP(port, receiver, interface)`` when started."""
        self.reactor = reactor
        self.port_number = port
        self.interface = interface
        self.receiver = receiver
        self.listening: IListeningPort | None = None
        self._failure: CannotListenError | None = None

    @property
    def stats(self) -> LogStats:
        """The receiver's counters."""
        return self.receiver.stats

    def set_secret(self, secret: Secret | None) -> None:
        """Require ``secret`` (``sv_logsecret``) from the next datagram on (a reload)."""
        self.receiver.secret = secret

    def startService(self) -> None:
        """Bind the UDP port and resolve the game server's host name, if it has one.

        A port that cannot be bound fails :meth:`when_listening` (gamews then stops)."""
        super().startService()  # type: ignore[no-untyped-call]
        self._failure = None
        try:
            self.listening = self.reactor.listenUDP(self.port_number, self.receiver,
                                                    interface=self.interface)
        except CannotListenError as e:
            self._failure = e
            return
        self.receiver.allowed.resolve(self.reactor)

    def when_listening(self) -> Deferred[IAddress]:
        """Fire with the bound address (fail if the port could not be bound)."""
        if self.listening is not None:
            return succeed(self.listening.getHost())
        return fail(self._failure or RuntimeError("the UDP log service is not running"))

    def stopService(self) -> Deferred[None]:
        """Close the UDP port."""
        super().stopService()  # type: ignore[no-untyped-call]
        listening, self.listening = self.listening, None
        if listening is None:
            return succeed(None)
        d: Deferred[object] = maybeDeferred(listening.stopListening)
        return d.addCallback(lambda _: None)
