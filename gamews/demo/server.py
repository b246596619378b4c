"""The demo game server: a :class:`gamews.demo.match.DemoMatch` behind the real
protocols on loopback, a Source RCON server (TCP) and a Source UDP log stream.

gamews connects to it exactly as to a real server, so the demo exercises the
whole path: RCON authentication and multi-packet replies, log packets with a
``sv_logsecret``, parsing, the match state and the pages.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gamews.demo.match import DemoMatch
from gamews.rcon.source_codec import (
    MAX_BODY,
    SERVERDATA_AUTH,
    SERVERDATA_AUTH_RESPONSE,
    SERVERDATA_EXECCOMMAND,
    SERVERDATA_RESPONSE_VALUE,
    Packet,
    PacketDecoder,
    ProtocolViolationError,
    encode_packet,
)
from gamews.reactor import maybe_global_reactor
from gamews.secret import Secret

__all__ = ["DemoGameService", "DemoRconProtocol", "log_packet"]

log = Logger(namespace="gamews.demo")

def log_packet(line: str, secret: Secret | None) -> bytes:
    """One ``logaddress_add`` datagram: four 0xff bytes, ``R`` (or ``S`` and the
    secret), the line, a newline and a NUL."""
    head = b"\xff\xff\xff\xffR" if secret is None else (
        b"\xff\xff\xff\xffS" + secret.reveal().encode())
    return head + line.encode("utf-8") + b"\n\x00"


class DemoRconProtocol(Protocol):
    """The server side of Source RCON, as SRCDS answers it."""

    factory: _RconFactory

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        self._decoder = PacketDecoder(types=frozenset(
            {SERVERDATA_AUTH, SERVERDATA_EXECCOMMAND, SERVERDATA_RESPONSE_VALUE}))
        self._authenticated = False

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.connections.discard(self)

    def dataReceived(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except ProtocolViolationError as e:
            log.warn("demo rcon: dropping a client that sent garbage: {e}", e=e)
            assert self.transport is not None
            self.transport.loseConnection()
            return
        for packet in packets:
            self._packet(packet)

    def _send(self, packet_id: int, packet_type: int, body: bytes = b"") -> None:
        assert self.transport is not None
        self.transport.write(encode_packet(Packet(packet_id, packet_type, body)))

    def _packet(self, packet: Packet) -> None:
        assert self.transport is not None
        if packet.type == SERVERDATA_AUTH:
            if self.factory.password.matches(packet.body):
                self._authenticated = True
                self._send(packet.id, SERVERDATA_RESPONSE_VALUE)
                self._send(packet.id, SERVERDATA_AUTH_RESPONSE)
            else:
                self._send(packet.id, SERVERDATA_RESPONSE_VALUE)
                self._send(-1, SERVERDATA_AUTH_RESPONSE)
            return
        if not self._authenticated:
            self.transport.loseConnection()
            return
        if packet.type == SERVERDATA_EXECCOMMAND:
            peer: Any = self.transport.getPeer()
            reply = self.factory.service.command(
                packet.body.decode("utf-8", "replace"), f"{peer.host}:{peer.port}")
            data = reply.encode("utf-8").replace(b"\0", b"")
            for start in range(0, max(len(data), 1), MAX_BODY):
                self._send(packet.id, SERVERDATA_RESPONSE_VALUE, data[start:start + MAX_BODY])
        else:
            # the client's end marker: mirror it, then the odd packet SRCDS
            # sends after it (body 00 00 00 01 00 00 00 00), which clients skip
            self._send(packet.id, SERVERDATA_RESPONSE_VALUE)
            self.transport.write(struct.pack("<iii", 18, packet.id, SERVERDATA_RESPONSE_VALUE)
                                 + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00")


class _RconFactory(Factory):
    protocol = DemoRconProtocol  # type: ignore[assignment]

    def __init__(self, service: DemoGameService, password: Secret) -> None:
        self.service = service
        self.password = password
        self.connections: set[DemoRconProtocol] = set()


class DemoGameService(Service):
    """The simulated game server: RCON on ``rcon_endpoint``, logs sent to ``log_port``."""

    def __init__(self, *, rcon_endpoint: str, password: Secret, log_port: int,
                 log_secret: Secret | None, reactor: Any = None, seed: int = 0,
                 tick: float = 0.25) -> None:
        reactor = maybe_global_reactor(reactor)
        self.reactor = reactor
        self.match = DemoMatch(seed=seed)
        self.rcon_endpoint = rcon_endpoint
        self.password = password
        self.log_port = log_port
        self.log_secret = log_secret
        self.commands: list[str] = []
        self._tick = tick
        self._loop = LoopingCall(self._flush)
        self._loop.clock = reactor
        self._udp: Any = None
        self._listening: Deferred[IListeningPort] | None = None
        self._factory = _RconFactory(self, password)
        self._outage: Any = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._udp = self.reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self._listen()
        self._loop.start(self._tick, now=True)

    def _listen(self) -> None:
        endpoint = serverFromString(self.reactor, self.rcon_endpoint)
        self._listening = endpoint.listen(self._factory)
        self._listening.addErrback(
            lambda f: log.failure("demo game: cannot listen for RCON", f))

    def outage(self, seconds: float) -> None:
        """Drop every RCON connection and refuse new ones for ``seconds`` (a link failure)."""
        if self._listening is None or self._outage is not None:
            return
        listening, self._listening = self._listening, None
        listening.addCallback(lambda port: port.stopListening())
        for proto in list(self._factory.connections):
            if proto.transport is not None:
                proto.transport.loseConnection()

        def recover() -> None:
            self._outage = None
            if self.running:
                self._listen()

        self._outage = self.reactor.callLater(seconds, recover)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop.running:
            self._loop.stop()
        if self._outage is not None and self._outage.active():
            self._outage.cancel()
        self._outage = None
        stops: list[Deferred[Any]] = []
        if self._udp is not None:
            stops.append(maybeDeferred(self._udp.stopListening))
        if self._listening is not None:
            stops.append(self._listening.addCallback(lambda port: port.stopListening()))
        return DeferredList(stops).addCallback(lambda _: None)

    def command(self, line: str, source: str) -> str:
        """Run an RCON command on the match and send the lines it logged at once.

        ``demo_outage SECONDS`` (demo only) simulates a failing game link: the reply
        goes out, then RCON is down for that long.
        """
        self.commands.append(line)
        name, _, arg = line.partition(" ")
        if name == "demo_outage":
            try:
                seconds = min(max(float(arg or 5), 0.1), 300.0)
            except ValueError:
                return "usage: demo_outage SECONDS\n"
            self.reactor.callLater(0.1, self.outage, seconds)
            return f"RCON goes down for {seconds:g} s\n"
        reply = self.match.command(line, source)
        self._flush()
        return reply

    def _flush(self) -> None:
        for line in self.match.advance(self.reactor.seconds()):
            self._udp.write(log_packet(line, self.log_secret), ("127.0.0.1", self.log_port))
