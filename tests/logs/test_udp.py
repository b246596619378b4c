"""Tests for the Source UDP log receiver (``logaddress_add``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamews.events import Envelope, EventBus, Kill
from gamews.logs.common import AllowedHosts, LogStats
from gamews.logs.service import LinePipeline
from gamews.logs.source import parse_line
from gamews.logs.udp import OOB, LogPacket, SourceLogReceiver, UdpLogService, decode_packet
from gamews.secret import Secret
from tests.logs.support import FUZZ

LINE = (b'L 11/28/2026 - 09:30:01: "Ann<2><[U:1:5]><CT>" [1 2 3] killed '
        b'"Bot<3><BOT><TERRORIST>" [4 5 6] with "ak47" (headshot)')
SERVER = ("203.0.113.5", 27015)


def packet(line: bytes = LINE, secret: bytes | None = None, newline: bool = True) -> bytes:
    """A datagram as a Source server sends it."""
    head = OOB + (b"R" if secret is None else b"S" + secret)
    return head + line + (b"\n" if newline else b"") + b"\x00"


class DecodeTests(SynchronousTestCase):
    """The pure packet decoder."""

    def test_r_packet(self) -> None:
        """An R packet has no secret and the line as payload."""
        self.assertEqual(decode_packet(packet()), LogPacket(None, LINE + b"\n\x00"))

    def test_s_packet(self) -> None:
        """An S packet's secret is split from the line at ``L MM/DD/YYYY - ``."""
        p = decode_packet(packet(secret=b"123456"))
        assert p is not None
        self.assertEqual((p.secret, p.payload), (b"123456", LINE + b"\n\x00"))

    def test_hl1_form(self) -> None:
        """HL1's ``log L ...`` form reads as an R packet."""
        self.assertEqual(decode_packet(OOB + b"log " + LINE), LogPacket(None, LINE))

    def test_malformed(self) -> None:
        """Wrong header, unknown type, S without a line or secret: not a log packet."""
        for data in (b"", OOB, b"\xff\xff\xffR" + LINE, OOB + b"X" + LINE, OOB + b"S1234",
                     OOB + b"S" + LINE, b"\xfe" * 5 + LINE):
            self.assertIsNone(decode_packet(data), data)

    def test_secret_not_in_repr(self) -> None:
        """A decoded packet's repr hides the secret."""
        self.assertNotIn("987654", repr(decode_packet(packet(secret=b"987654"))))

    @FUZZ
    @given(st.one_of(
        st.binary(max_size=300),
        st.tuples(st.sampled_from([OOB + b"R", OOB + b"S", OOB + b"S12", OOB + b"log ", OOB]),
                  st.binary(max_size=40),
                  st.sampled_from([b"", b"L 11/28/2026 - ", LINE, b"\x00", b"\n"]),
                  st.binary(max_size=40)).map(b"".join),
    ))
    def test_fuzz(self, data: bytes) -> None:
        """10,000 generated datagrams: None or a packet whose parts come from the input."""
        p = decode_packet(data)
        if p is not None:
            self.assertTrue(data.startswith(OOB))
            self.assertLessEqual(len(p.payload) + len(p.secret or b""), len(data))
            self.assertTrue(data.endswith(p.payload))


class ReceiverTests(SynchronousTestCase):
    """Address and secret checks, counters, line hand-off."""

    def receiver(self, secret: str | None = None) -> tuple[SourceLogReceiver, list[str]]:
        """A receiver for SERVER's host collecting lines."""
        lines: list[str] = []
        r = SourceLogReceiver(lines.append, allowed=AllowedHosts([SERVER[0]]),
                              secret=Secret(secret) if secret else None)
        return r, lines

    def test_accepts_from_server(self) -> None:
        """A packet from the game server's host reaches the sink, without NUL or newline."""
        r, lines = self.receiver()
        r.datagramReceived(packet(), SERVER)
        r.datagramReceived(packet(newline=False), (SERVER[0], 40000))
        self.assertEqual(lines, [LINE.decode()] * 2)
        self.assertEqual((r.stats.accepted, r.stats.lines, r.stats.dropped), (2, 2, 0))

    def test_drops_other_address(self) -> None:
        """A packet from another host is dropped, counted, never handed on."""
        r, lines = self.receiver()
        r.datagramReceived(packet(), ("198.51.100.9", 27015))
        self.assertEqual(lines, [])
        self.assertEqual(r.stats.dropped_address, 1)

    def test_secret_checked(self) -> None:
        """With a secret set, R packets and wrong secrets are dropped; the right one passes."""
        r, lines = self.receiver("424242")
        r.datagramReceived(packet(), SERVER)
        r.datagramReceived(packet(secret=b"424243"), SERVER)
        r.datagramReceived(packet(secret=b"42424"), SERVER)
        self.assertEqual((lines, r.stats.dropped_secret), ([], 3))
        r.datagramReceived(packet(secret=b"424242"), SERVER)
        self.assertEqual(len(lines), 1)

    def test_malformed_counted(self) -> None:
        """Non-log datagrams from the server are counted as malformed."""
        r, lines = self.receiver()
        r.datagramReceived(OOB + b"getchallenge", SERVER)
        self.assertEqual((lines, r.stats.dropped_malformed), ([], 1))

    def test_ipv4_mapped_and_non_utf8(self) -> None:
        """An IPv4-mapped IPv6 source matches; a line that is not UTF-8 is read as Latin-1."""
        r, lines = self.receiver()
        data = OOB + b"RL 11/28/2026 - 09:30:01: caf\xe9\x00"
        r.datagramReceived(data, ("::ffff:203.0.113.5", 1))
        self.assertEqual(lines, ["L 11/28/2026 - 09:30:01: café"])

    def test_sink_error_counted(self) -> None:
        """A sink that raises is logged and counted; the next packet still goes through."""
        calls: list[str] = []

        def sink(line: str) -> None:
            calls.append(line)
            raise RuntimeError("x")

        r = SourceLogReceiver(sink, allowed=AllowedHosts([SERVER[0]]), secret=None)
        r.datagramReceived(packet(), SERVER)
        r.datagramReceived(packet(), SERVER)
        self.assertEqual((len(calls), r.stats.errors), (2, 2))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_host_names_resolved(self) -> None:
        """A host name is allowed once resolved, not before."""
        allowed = AllowedHosts(["gameserver.example"])
        self.assertFalse(allowed.allows("203.0.113.5"))
        d: Deferred[str] = Deferred()

        class Resolver:
            def resolve(self, name: str) -> Deferred[str]:
                return d

        allowed.resolve(Resolver())
        d.callback("203.0.113.5")
        self.assertTrue(allowed.allows("203.0.113.5"))


class FakeUdpReactor:
    """Records listenUDP calls (MemoryReactor has no UDP)."""

    def __init__(self) -> None:
        self.listened: list[tuple[int, object, str]] = []
        self.stopped = False

    def listenUDP(self, port: int, protocol: object, interface: str = "") -> FakeUdpReactor:
        """Record the call; act as the port."""
        self.listened.append((port, protocol, interface))
        return self

    def stopListening(self) -> None:
        """The port's stop."""
        self.stopped = True


class ServiceTests(SynchronousTestCase):
    """The UDP service binds and unbinds on an injected reactor."""

    def test_listen_and_stop(self) -> None:
        """startService listens on the port and interface; stopService stops listening."""
        reactor = FakeUdpReactor()
        r = SourceLogReceiver(lambda line: None, allowed=AllowedHosts([]), secret=None)
        svc = UdpLogService(reactor, 27500, r, interface="127.0.0.1")
        svc.startService()
        self.assertEqual(reactor.listened, [(27500, r, "127.0.0.1")])
        self.assertIs(svc.stats, r.stats)
        self.successResultOf(svc.stopService())
        self.assertFalse(svc.running)
        self.assertTrue(reactor.stopped)


class LoopbackTests(TestCase):
    """Real UDP sockets on loopback, real-format packets, reaching the bus."""

    timeout = 10

    def setUp(self) -> None:
        from tests.support import real_reactor

        self.reactor = real_reactor()
        self.bus = EventBus(self.reactor)
        self.got: list[Envelope] = []
        self.waiting: list[tuple[int, Deferred[None]]] = []
        self.bus.subscribe(self.collect, server="cs")

    def collect(self, envelope: Envelope) -> None:
        """Record an event and fire waiters."""
        self.got.append(envelope)
        for n, d in list(self.waiting):
            if len(self.got) >= n:
                self.waiting.remove((n, d))
                d.callback(None)

    def wait_for(self, n: int) -> Deferred[None]:
        """Fire when ``n`` events have arrived."""
        d: Deferred[None] = Deferred()
        self.waiting.append((n, d))
        if len(self.got) >= n:
            self.waiting.remove((n, d))
            d.callback(None)
        return d

    def start(self, secret: str | None) -> tuple[UdpLogService, int]:
        """Start a receiver service on 127.0.0.1 allowing 127.0.0.1 only."""
        receiver = SourceLogReceiver(LinePipeline(self.bus, "cs", parse_line),
                                     allowed=AllowedHosts(["127.0.0.1"]),
                                     secret=Secret(secret) if secret else None, stats=LogStats())
        svc = UdpLogService(self.reactor, 0, receiver, interface="127.0.0.1")
        svc.startService()
        self.addCleanup(svc.stopService)
        assert svc.listening is not None
        port: int = svc.listening.getHost().port  # type: ignore[attr-defined]
        return svc, port

    def sender(self, interface: str) -> Any:
        """A UDP socket bound to ``interface``."""
        port = self.reactor.listenUDP(0, DatagramProtocol(), interface=interface)
        self.addCleanup(port.stopListening)
        return port

    async def test_without_secret(self) -> None:
        """Packets from 127.0.0.1 reach the bus as Kill events; from 127.0.0.2 they do not."""
        svc, port = self.start(None)
        self.sender("127.0.0.2").write(packet(), ("127.0.0.1", port))
        good = self.sender("127.0.0.1")
        good.write(packet(), ("127.0.0.1", port))
        good.write(packet(LINE.replace(b"ak47", b"awp")), ("127.0.0.1", port))
        await self.wait_for(2)
        self.assertEqual([type(e.event) for e in self.got], [Kill, Kill])
        kill = self.got[1].event
        assert isinstance(kill, Kill)
        self.assertEqual((kill.weapon, kill.killer.key, self.got[1].seq), ("awp", "[U:1:5]", 2))
        self.assertEqual((svc.stats.dropped_address, svc.stats.accepted), (1, 2))

    async def test_with_secret(self) -> None:
        """With sv_logsecret set only S packets with the right secret reach the bus."""
        svc, port = self.start("777")
        s = self.sender("127.0.0.1")
        s.write(packet(), ("127.0.0.1", port))
        s.write(packet(secret=b"778"), ("127.0.0.1", port))
        self.sender("127.0.0.2").write(packet(secret=b"777"), ("127.0.0.1", port))
        s.write(packet(secret=b"777"), ("127.0.0.1", port))
        await self.wait_for(1)
        self.assertEqual(len(self.got), 1)
        self.assertIsInstance(self.got[0].event, Kill)
        self.assertEqual((svc.stats.dropped_secret, svc.stats.dropped_address), (2, 1))
