"""The reconnecting Source RCON client with StringTransport and task.Clock (no real I/O or time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from gamews.rcon.link import (
    LinkState,
    RconLinkLostError,
    RconPasswordRejectedError,
    RconQueueFullError,
    RconStoppedError,
    RconTimeoutError,
)
from gamews.rcon.source import SourceRconClient
from gamews.rcon.source_codec import (
    SERVERDATA_AUTH,
    SERVERDATA_AUTH_RESPONSE,
    SERVERDATA_EXECCOMMAND,
    SERVERDATA_RESPONSE_VALUE,
    Packet,
    PacketDecoder,
)
from gamews.secret import Secret

PASSWORD = "hunter2-rcon"
MARKER_TAIL = b"\x00\x00\x00\x01\x00\x00\x00\x00"


def packet_bytes(packet_id: int, packet_type: int, body: bytes = b"") -> bytes:
    """A server packet (the body may contain NULs)."""
    import struct

    return struct.pack("<iii", 10 + len(body), packet_id, packet_type) + body + b"\0\0"


class ClosingTransport(StringTransport):
    """A StringTransport whose close reaches the protocol one clock tick later, as a reactor's."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 27015))
        self.clock = clock
        self.protocol: IProtocol | None = None
        self.closed = False

    def loseConnection(self) -> None:
        """Close once."""
        super().loseConnection()
        self._close()

    def abortConnection(self) -> None:
        """Abort once."""
        self.aborted = True
        self._close()

    def _close(self) -> None:
        if not self.closed and self.protocol is not None:
            self.closed = True
            self.clock.callLater(0, self.protocol.connectionLost, Failure(ConnectionLost()))


class SrcdsPeer:
    """An in-memory Source RCON server on one connection, answering like SRCDS/rconx.

    Reads what the client wrote, answers auth (empty RESPONSE_VALUE + AUTH_RESPONSE, id -1
    on a wrong password), commands with ``reply(command)`` split into ``chunk``-byte pieces,
    and mirrors the end marker followed by the ``00 00 00 01 00 00 00 00`` packet.
    """

    def __init__(self, protocol: IProtocol, transport: ClosingTransport,
                 password: str = PASSWORD, chunk: int = 4086,
                 reply: Callable[[str], str] = lambda c: f"ran {c}") -> None:
        self.protocol = protocol
        self.transport = transport
        self.password = password
        self.chunk = chunk
        self.reply = reply
        self.decoder = PacketDecoder(types=frozenset({0, 2, 3}))
        self.received: list[Packet] = []
        self.hold = False

    def requests(self) -> list[Packet]:
        """Take what the client sent since the last call."""
        data = self.transport.value()
        self.transport.clear()
        packets = self.decoder.feed(data)
        self.received += packets
        return packets

    def answer(self) -> None:
        """Answer everything the client sent."""
        out = b""
        for packet in self.requests():
            if packet.type == SERVERDATA_AUTH:
                ok = packet.body.decode() == self.password
                out += packet_bytes(packet.id, SERVERDATA_RESPONSE_VALUE)
                out += packet_bytes(packet.id if ok else -1, SERVERDATA_AUTH_RESPONSE)
            elif packet.type == SERVERDATA_EXECCOMMAND:
                body = self.reply(packet.body.decode()).encode()
                pieces = [body[i:i + self.chunk] for i in range(0, len(body), self.chunk)]
                for piece in pieces or [b""]:
                    out += packet_bytes(packet.id, SERVERDATA_RESPONSE_VALUE, piece)
            elif packet.type == SERVERDATA_RESPONSE_VALUE:
                out += packet_bytes(packet.id, SERVERDATA_RESPONSE_VALUE)
                out += packet_bytes(packet.id, SERVERDATA_RESPONSE_VALUE, MARKER_TAIL)
        if out:
            self.protocol.dataReceived(out)


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects synchronously to an in-memory SrcdsPeer, or fails while ``refuse`` is set."""

    def __init__(self, clock: Clock, **peer_options: Any) -> None:
        self.clock = clock
        self.refuse = False
        self.attempts: list[float] = []
        self.peers: list[SrcdsPeer] = []
        self.peer_options = peer_options

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Record the attempt; connect or refuse."""
        self.attempts.append(self.clock.seconds())
        if self.refuse:
            return fail(ConnectionRefusedError("refused"))
        protocol = protocolFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 27015))
        assert protocol is not None
        transport = ClosingTransport(self.clock)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.peers.append(SrcdsPeer(protocol, transport, **self.peer_options))
        return succeed(protocol)

    @property
    def peer(self) -> SrcdsPeer:
        """The latest connection's peer."""
        return self.peers[-1]


class ClientTestCase(unittest.SynchronousTestCase):
    """Builds a client on a Clock and a FakeEndpoint; collects log events and states."""

    def make(self, *, password: str = PASSWORD, **options: Any) -> SourceRconClient:
        """A started client named alpha."""
        self.clock = Clock()
        peer_options = options.pop("peer_options", {})
        self.endpoint = FakeEndpoint(self.clock, **peer_options)
        self.events: list[dict[str, Any]] = []
        options.setdefault("jitter", lambda: 0.0)
        client = SourceRconClient(
            "alpha", self.endpoint, Secret(password), clock=self.clock,
            log=Logger(observer=cast(ILogObserver, self.events.append)), **options,
        )
        self.states: list[LinkState] = []
        client.notifier.subscribe(self.states.append)
        client.start()
        self.addCleanup(self.stop, client)
        return client

    def stop(self, client: SourceRconClient) -> None:
        """Stop the client and let the close happen."""
        d = client.stop()
        self.clock.advance(0)
        self.successResultOf(d)

    def log_text(self) -> list[str]:
        """The formatted log lines."""
        return [formatEvent(e) for e in self.events]


class AuthAndCommandTests(ClientTestCase):
    """The happy path."""

    def test_auth_then_command(self) -> None:
        """The password goes first; once accepted, a command returns its reply text."""
        client = self.make()
        [auth] = self.endpoint.peer.requests()
        self.assertEqual((auth.type, auth.body), (SERVERDATA_AUTH, PASSWORD.encode()))
        self.endpoint.peer.received.clear()
        self.endpoint.peer.protocol.dataReceived(
            packet_bytes(auth.id, 0) + packet_bytes(auth.id, 2))
        self.assertEqual(client.state, LinkState.UP)
        d = client.rcon("status")
        self.endpoint.peer.answer()
        self.assertEqual(self.successResultOf(d), "ran status")
        self.assertEqual(self.states, [LinkState.CONNECTING, LinkState.UP])

    def test_commands_wait_for_auth(self) -> None:
        """A command issued during authentication is sent only after it succeeds."""
        client = self.make()
        d = client.rcon("status")
        packets = self.endpoint.peer.requests()
        self.assertEqual([p.type for p in packets], [SERVERDATA_AUTH])
        self.assertNoResult(d)
        self.endpoint.peer.protocol.dataReceived(
            packet_bytes(packets[0].id, 0) + packet_bytes(packets[0].id, 2))
        self.endpoint.peer.answer()
        self.assertEqual(self.successResultOf(d), "ran status")

    def test_multi_packet_and_pipelined(self) -> None:
        """A 100 KB reply in 4 KB pieces arrives whole; pipelined commands keep their replies."""
        client = self.make(peer_options={"reply": lambda c: (c + "\n") * (100_000 // len(c))})
        self.endpoint.peer.answer()
        first, second = client.rcon("cvarlist"), client.rcon("status")
        self.endpoint.peer.answer()
        self.assertEqual(self.successResultOf(first), "cvarlist\n" * (100_000 // 8))
        self.assertEqual(self.successResultOf(second), "status\n" * (100_000 // 6))

    def test_bad_command_text(self) -> None:
        """A NUL or an over-long command fails at once with ValueError, nothing is sent."""
        client = self.make()
        self.endpoint.peer.answer()
        self.failureResultOf(client.rcon("say a\0quit"), ValueError)
        self.failureResultOf(client.rcon("x" * 5000), ValueError)
        self.assertEqual(self.endpoint.peer.requests(), [])


class QueueAndTimeoutTests(ClientTestCase):
    """Queueing while down, bounds and timeouts."""

    def test_queued_while_down_then_flushed_in_order(self) -> None:
        """Commands wait while the server is unreachable and go out in order once it is up."""
        client = self.make(timeout=30.0)
        self.endpoint.peer.answer()
        self.endpoint.refuse = True
        self.endpoint.peer.transport.loseConnection()
        self.clock.advance(0)
        self.assertEqual(client.state, LinkState.DOWN)
        replies = [client.rcon(f"c{i}") for i in range(3)]
        self.clock.advance(2.0)  # first retry: refused
        self.assertEqual(len(self.endpoint.attempts), 2)
        self.endpoint.refuse = False
        self.clock.advance(4.0)  # second retry connects
        self.endpoint.peer.answer()  # auth
        self.endpoint.peer.answer()  # commands
        self.assertEqual([self.successResultOf(d) for d in replies], ["ran c0", "ran c1", "ran c2"])
        self.assertEqual(client.state, LinkState.UP)

    def test_queue_full(self) -> None:
        """Beyond max_pending a command fails at once with RconQueueFullError."""
        client = self.make(max_pending=2)
        a, b = client.rcon("a"), client.rcon("b")
        failure = self.failureResultOf(client.rcon("c"), RconQueueFullError)
        self.assertIn("alpha", str(failure.value))
        self.assertNoResult(a)
        self.assertNoResult(b)
        self.stop(client)
        self.failureResultOf(a, RconStoppedError)
        self.failureResultOf(b, RconStoppedError)

    def test_timeout_in_flight_then_late_reply_ignored(self) -> None:
        """No reply within the timeout fails the command; its late reply is dropped."""
        client = self.make(timeout=5.0)
        peer = self.endpoint.peer
        peer.answer()
        d = client.rcon("slow")
        sent = peer.requests()
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertIn("sent", str(self.failureResultOf(d, RconTimeoutError).value))
        peer.protocol.dataReceived(packet_bytes(sent[0].id, 0, b"late")
                                   + packet_bytes(sent[1].id, 0))
        e = client.rcon("next")
        peer.answer()
        self.assertEqual(self.successResultOf(e), "ran next")
        self.assertEqual(client.pending, 0)

    def test_timeout_while_queued(self) -> None:
        """A queued command times out too and leaves the queue."""
        client = self.make(timeout=5.0)
        d = client.rcon("status")
        self.clock.advance(5.0)
        self.assertIn("queued", str(self.failureResultOf(d, RconTimeoutError).value))
        self.assertEqual(client.pending, 0)

    def test_cancel(self) -> None:
        """Cancelling a queued command removes it."""
        client = self.make()
        d = client.rcon("status")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(client.pending, 0)
        self.endpoint.peer.answer()  # auth: the link comes up, nothing else is sent
        self.assertEqual([p.type for p in self.endpoint.peer.received], [SERVERDATA_AUTH])
        after = client.rcon("after")
        self.endpoint.peer.answer()
        self.assertEqual(self.successResultOf(after), "ran after")
        self.clock.advance(10)  # the cancelled command's deadline passes harmlessly
        self.assertEqual(client.state, LinkState.UP)

    def test_link_lost_fails_in_flight_only(self) -> None:
        """A drop fails commands already sent (they may have run) and keeps queued ones."""
        client = self.make(timeout=60.0)
        self.endpoint.peer.answer()
        sent = client.rcon("kick bob")
        self.endpoint.peer.transport.loseConnection()
        self.clock.advance(0)
        self.failureResultOf(sent, RconLinkLostError)
        queued = client.rcon("status")
        self.clock.advance(2.0)
        self.endpoint.peer.answer()
        self.endpoint.peer.answer()
        self.assertEqual(self.successResultOf(queued), "ran status")

    def test_stop_fails_queued(self) -> None:
        """Stopping fails waiting commands with RconStoppedError and reports STOPPED."""
        client = self.make()
        d = client.rcon("status")
        self.stop(client)
        self.failureResultOf(d, RconStoppedError)
        self.assertEqual(client.state, LinkState.STOPPED)
        self.failureResultOf(client.rcon("status"), RconStoppedError)


class ReconnectTests(ClientTestCase):
    """Backoff, malformed input, password rejection."""

    def test_backoff_timings(self) -> None:
        """Refused connects are retried after 2, 4, 8, ... s (+ jitter), capped at 60 s."""
        client = self.make(jitter=lambda: 0.25)
        self.endpoint.peer.answer()
        self.endpoint.refuse = True
        self.endpoint.peer.transport.loseConnection()
        self.clock.advance(0)
        self.assertEqual(client.state, LinkState.DOWN)
        start = self.clock.seconds()
        for _ in range(int(200 / 0.25)):
            self.clock.advance(0.25)
        gaps = [b - a for a, b in zip(self.endpoint.attempts[1:], self.endpoint.attempts[2:],
                                      strict=False)]
        first = self.endpoint.attempts[1] - start
        self.assertEqual(first, 2.25)
        self.assertEqual(gaps[:5], [4.25, 8.25, 16.25, 32.25, 60.25])

    def test_one_line_per_change(self) -> None:
        """A refused server retried six times logs one "down" line with its reason and
        delay, the recovery one "up" line; the reason is the link's detail meanwhile."""
        client = self.make()
        self.endpoint.peer.answer()
        self.endpoint.refuse = True
        self.endpoint.peer.transport.loseConnection()
        self.clock.advance(0)
        for _ in range(6):
            self.clock.advance(60)
            self.assertEqual(client.notifier.status.detail, "connection refused")
        self.endpoint.refuse = False
        self.clock.advance(60)
        self.endpoint.peer.answer()
        self.assertEqual(client.state, LinkState.UP)
        self.assertEqual(self.log_text(), [
            "rcon link to alpha up",
            "rcon link to alpha down: connection lost; retrying in 2 s",
            "rcon link to alpha down: connection refused; retrying in 4 s",
            "rcon link to alpha up",
        ])

    def test_malformed_drops_and_reconnects(self) -> None:
        """Garbage aborts the connection (logged, not raised) and the link comes back."""
        client = self.make()
        self.endpoint.peer.answer()
        d = client.rcon("status")
        self.endpoint.peer.protocol.dataReceived(b"\xff" * 64)  # size field -1
        self.assertTrue(self.endpoint.peer.transport.aborted)
        self.clock.advance(0)
        self.failureResultOf(d, RconLinkLostError)
        self.assertEqual(client.state, LinkState.DOWN)
        self.assertTrue(any("malformed" in line for line in self.log_text()))
        self.clock.advance(2.0)
        self.assertEqual(len(self.endpoint.peers), 2)
        self.endpoint.peer.answer()
        self.assertEqual(client.state, LinkState.UP)

    def test_auth_timeout(self) -> None:
        """A server that never answers the password is dropped and retried."""
        client = self.make(timeout=3.0)
        self.clock.advance(3.0)
        self.assertTrue(self.endpoint.peer.transport.aborted)
        self.clock.advance(0)
        self.assertEqual(client.state, LinkState.DOWN)
        self.clock.advance(2.0)
        self.assertEqual(len(self.endpoint.attempts), 2)

    def test_peer_closes_during_auth(self) -> None:
        """A close before the auth answer is a plain failure, not an error in the reactor."""
        client = self.make()
        self.endpoint.peer.transport.loseConnection()
        self.clock.advance(0)  # would raise automat.NoTransition without the loss guard
        self.assertEqual(client.state, LinkState.DOWN)
        self.clock.advance(2.0)
        self.endpoint.peer.answer()
        self.assertEqual(client.state, LinkState.UP)

    def test_stop_during_auth(self) -> None:
        """Stopping while the password is in flight closes the connection and stops."""
        client = self.make()
        d = client.stop()
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertTrue(self.endpoint.peer.transport.aborted)
        self.assertEqual(client.state, LinkState.STOPPED)
        self.clock.advance(100)
        self.assertEqual(len(self.endpoint.attempts), 1)

    def test_password_rejected_backs_off_minutes(self) -> None:
        """A rejection logs one clear error, reports AUTH_FAILED and waits 5 minutes."""
        client = self.make(password="wrong")
        queued = client.rcon("status")
        self.endpoint.peer.answer()
        self.failureResultOf(queued, RconPasswordRejectedError)
        self.failureResultOf(client.rcon("status"), RconPasswordRejectedError)
        self.clock.advance(0)
        self.assertEqual(client.state, LinkState.AUTH_FAILED)
        rejected = [line for line in self.log_text() if "rcon password rejected by alpha" in line]
        self.assertEqual(len(rejected), 1)
        self.clock.advance(299)
        self.assertEqual(len(self.endpoint.attempts), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.endpoint.attempts), 2)
        self.endpoint.peer.answer()
        self.clock.advance(0)
        rejected = [line for line in self.log_text() if "rcon password rejected by alpha" in line]
        self.assertEqual(len(rejected), 1, "logged again")
        self.assertEqual(client.state, LinkState.AUTH_FAILED)

    def test_password_never_logged_or_in_repr(self) -> None:
        """The password appears in no log event and not in repr."""
        client = self.make(password="wrong-" + PASSWORD)
        self.endpoint.peer.answer()
        self.clock.advance(0)
        self.clock.advance(400)
        everything = " ".join(self.log_text()) + repr(self.events) + repr(client)
        self.assertNotIn(PASSWORD, everything)
        self.assertIn("alpha", repr(client))


class FakeSrcdsBanPeer:
    """A faithful stand-in for SRCDS's rcon ban (rconx has none).

    SRCDS counts failed rcon auths per address: ``sv_rcon_minfailures`` (5) failures within
    ``sv_rcon_minfailuretime`` (30 s) ban the address, after which its connections are
    closed at once.  Success clears nothing here; the test only needs the ban.
    """

    def __init__(self, clock: Clock, min_failures: int = 5, window: float = 30.0) -> None:
        self.clock = clock
        self.min_failures = min_failures
        self.window = window
        self.failures: list[float] = []
        self.banned = False

    def auth_failed(self) -> None:
        """Record a failure and ban if there were too many in the window."""
        now = self.clock.seconds()
        self.failures = [t for t in self.failures if now - t < self.window] + [now]
        if len(self.failures) >= self.min_failures:
            self.banned = True


class BanAvoidanceTests(ClientTestCase):
    """Against SRCDS's ban-after-failures (fake peer: rconx does not ban)."""

    def run_hour(self, **options: Any) -> tuple[FakeSrcdsBanPeer, int]:
        """Run a client with a wrong password for one simulated hour; return peer, attempts."""
        client = self.make(password="wrong", **options)
        ban = FakeSrcdsBanPeer(self.clock)
        handled = 0
        for _ in range(3600 * 2):
            for peer in self.endpoint.peers[handled:]:
                if ban.banned:
                    peer.transport.loseConnection()
                else:
                    peer.answer()
                    ban.auth_failed()
            handled = len(self.endpoint.peers)
            self.clock.advance(0.5)
        self.assertIsNot(client.state, LinkState.UP)
        return ban, len(self.endpoint.attempts)

    def test_not_banned(self) -> None:
        """gamews makes ~one auth attempt per 5 minutes and is never banned."""
        ban, attempts = self.run_hour()
        self.assertFalse(ban.banned)
        self.assertLessEqual(attempts, 13)

    def test_fake_peer_bans_tight_loops(self) -> None:
        """The fake is strict enough to matter: a 1-second retry loop gets banned."""
        ban, attempts = self.run_hour(auth_failure_delay=1.0)
        self.assertTrue(ban.banned)
        self.assertGreater(attempts, 100)
