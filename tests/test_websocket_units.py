"""The child protocol driven by hand: StringTransport and MemoryReactorClock, no real time."""

from __future__ import annotations

import base64
import os
import struct
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gamews.api import IConnection, ReadyState
from gamews.config import WebSocketLimits
from gamews.registry import Registry
from gamews.websocket import GamewsServerProtocol, Wire, XorMasker, tune_autobahn


class Transport(StringTransport):
    """A StringTransport that, like a TCP transport, lets a protocol unregister
    a producer it never registered (Autobahn does so when dropping)."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


def handshake(path: str = "/ws", extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
            b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n")


def masked(opcode: int, payload: bytes) -> bytes:
    mask = b"\x0a\x0b\x0c\x0d"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


class ProtocolUnitTests(SynchronousTestCase):
    """Handshake, messages and timers of one child, with the clock in the test's hand."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.limits = WebSocketLimits(handshake_timeout=5, ping_interval=30, ping_timeout=10,
                                      close_timeout=2)
        self.registry = Registry(self.limits, reactor=self.clock)
        self.seen: list[object] = []
        self.children: list[IConnection] = []

        def incoming(child: IConnection) -> None:
            self.children.append(child)
            child.hook(on_message=lambda c, d: self.seen.append(d),
                       on_disconnect=lambda c, code, r: self.seen.append(("gone", code)))

        self.registry.open("tcp:8080:interface=127.0.0.1", "/ws", owner="p", incoming=incoming)
        factory = self.registry.ports()[0].routes["/ws"].factory
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert isinstance(protocol, GamewsServerProtocol)
        self.protocol: GamewsServerProtocol = protocol
        self.transport: Transport = Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol.makeConnection(self.transport)

    def open_child(self) -> IConnection:
        self.protocol.dataReceived(handshake())
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 101"))
        self.transport.clear()
        return self.children[0]

    def test_handshake_then_message(self) -> None:
        """A valid upgrade gets 101; a masked text frame reaches the plugin as str."""
        child = self.open_child()
        self.assertEqual(child.ready_state, ReadyState.OPEN)
        self.protocol.dataReceived(masked(0x1, b"gg wp"))
        self.assertEqual(self.seen, ["gg wp"])

    def test_send_is_an_unmasked_frame(self) -> None:
        """send_binary writes one unmasked binary frame, byte-exact."""
        child = self.open_child()
        self.assertTrue(child.send_binary(b"\x00\xff"))
        self.assertEqual(self.transport.value(), b"\x82\x02\x00\xff")

    def test_send_above_limit_raises(self) -> None:
        """A send above max_message_size raises ValueError and sends nothing."""
        child = self.open_child()
        self.assertRaises(ValueError, child.send_binary, b"x" * (self.limits.max_message_size + 1))
        self.assertEqual(self.transport.value(), b"")

    def test_handshake_timeout_on_the_clock(self) -> None:
        """No handshake within handshake_timeout: the transport is closed."""
        self.clock.advance(4.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnecting)

    def test_keepalive_ping_and_dead_peer(self) -> None:
        """A ping goes out every ping_interval; without a pong the peer is dropped."""
        self.open_child()
        self.clock.advance(30)
        self.assertEqual(self.transport.value()[:1], b"\x89")  # a ping frame
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(10.1)
        self.assertTrue(self.transport.disconnecting)

    def test_close_handshake_and_timers_cleared(self) -> None:
        """A client close is echoed; once the connection is lost no timer is pending."""
        self.open_child()
        self.protocol.dataReceived(masked(0x8, struct.pack("!H", 1000)))
        self.assertEqual(self.transport.value()[:4], b"\x88\x02\x03\xe8")
        self.protocol.connectionLost()
        self.assertEqual(self.seen, [("gone", 1000)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_protocol_is_the_childs_wire(self) -> None:
        """The protocol is its child's Wire: ready state, paused, send, close."""
        wire: Wire = self.protocol  # mypy checks GamewsServerProtocol against Wire
        child = self.open_child()
        self.assertIs(wire.ready_state, ReadyState.OPEN)
        self.assertFalse(wire.paused)
        wire.send(b"hi", False)
        self.assertEqual(self.transport.value(), b"\x81\x02hi")
        self.assertEqual(child.id, self.protocol.child.id)
        wire.close(1000, b"bye")
        self.assertIs(wire.ready_state, ReadyState.CLOSING)

    def test_masked_frame_goes_through_the_fast_masker(self) -> None:
        """Once Autobahn is tuned, a client's masked frame is unmasked by XorMasker."""
        self.assertEqual(tune_autobahn(), [])
        calls: list[int] = []
        process = XorMasker.process

        def counting(masker: XorMasker, data: bytes) -> bytes:
            calls.append(len(data))
            return process(masker, data)

        self.patch(XorMasker, "process", counting)
        self.open_child()
        self.protocol.dataReceived(masked(0x1, b"gg wp"))
        self.assertEqual(self.seen, ["gg wp"])
        self.assertEqual(calls, [5])

    def test_registry_broadcast_is_send_to_many(self) -> None:
        """The manhole's broadcast (Registry.broadcast) frames once, counts in the
        path's stats and refuses a message above max_message_size."""
        self.open_child()
        self.assertEqual(self.registry.broadcast("/ws", "hello"), 1)
        self.assertEqual(self.transport.value(), b"\x81\x05hello")
        stats = self.registry.stats.path("/ws")
        self.assertEqual((stats.messages_out, stats.bytes_out), (1, 5))
        self.assertEqual(self.registry.broadcast("/elsewhere", "hello"), 0)
        with self.assertRaises(ValueError):
            self.registry.broadcast("/ws", "x" * (self.limits.max_message_size + 1))

    def test_wrong_path_version_is_400(self) -> None:
        """A handshake with an unsupported version is answered 400 (or 426) and closed."""
        self.protocol.dataReceived(handshake().replace(b"Version: 13", b"Version: 99"))
        status = self.transport.value().split(b"\r\n", 1)[0]
        self.assertIn(status[9:12], (b"400", b"426"))
        self.assertTrue(self.transport.disconnecting)


class AutobahnDebugFormattingTests(SynchronousTestCase):
    """Autobahn's debug-log arguments are formatted only when a line is written,
    and then to the same text as before."""

    def test_same_text_when_emitted(self) -> None:
        import autobahn.websocket.protocol
        from autobahn.util import hltype, hlval

        ab_protocol: Any = autobahn.websocket.protocol
        tune_autobahn()
        tune_autobahn()  # idempotent: no lazy of a lazy
        lazy_type = ab_protocol.hltype(self.test_same_text_when_emitted)
        lazy_value = ab_protocol.hlval(1234)
        self.assertNotIsInstance(lazy_type, str)
        self.assertEqual(str(lazy_type), hltype(self.test_same_text_when_emitted))
        self.assertEqual(f"{lazy_value}", hlval(1234))
        self.assertEqual(str(ab_protocol.pformat([("a", 1)])), "[('a', 1)]")
        timings = ab_protocol.Timings()
        timings.track("x")
        self.assertIn("'x'", str(timings))


class TuningTests(SynchronousTestCase):
    """tune_autobahn finds every name it replaces, and says so when one is gone."""

    def test_every_name_is_found(self) -> None:
        """The installed Autobahn has every name the tuning replaces (an upgrade
        that moves one fails here)."""
        self.assertEqual(tune_autobahn(), [])

    def test_missing_name_is_a_warning(self) -> None:
        """A name missing from Autobahn is skipped, returned and logged as a warning."""
        from types import ModuleType

        from twisted.logger import ILogObserver, LogLevel, globalLogPublisher

        from gamews.websocket import _tuning

        empty = ModuleType("autobahn.gone")
        self.patch(_tuning, "_LAZY_NAMES", ((empty, ("hltype",)),))
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.assertEqual(tune_autobahn(), ["autobahn.gone.hltype"])
        warnings = [e for e in events if e.get("log_level") is LogLevel.warn]
        self.assertEqual([e["name"] for e in warnings], ["autobahn.gone.hltype"])


class XorMaskerTests(SynchronousTestCase):
    """gamews's masker equals the RFC's definition, whole or in pieces."""

    def reference(self, mask: bytes, data: bytes) -> bytes:
        return bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def test_matches_rfc_in_any_pieces(self) -> None:
        mask = bytes([0x37, 0xFA, 0x21, 0x3D])
        data = os.urandom(1000) + b"\x00" * 7
        for cuts in ([], [1], [3, 4, 5], [2, 500, 501, 999], list(range(0, 1007, 13))):
            masker = XorMasker(mask)
            pieces = []
            previous = 0
            for cut in [*cuts, len(data)]:
                pieces.append(masker.process(data[previous:cut]))
                previous = cut
            self.assertEqual(b"".join(pieces), self.reference(mask, data), cuts)
            self.assertEqual(masker.pointer(), len(data))
        masker.reset()
        self.assertEqual(masker.pointer(), 0)
        self.assertEqual(masker.process(b""), b"")
        with self.assertRaises(ValueError):
            XorMasker(b"abc")
