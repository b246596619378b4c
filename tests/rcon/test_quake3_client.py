"""The paced Quake 3 UDP client on a fake UDP reactor and task.Clock (no real I/O or time)."""

from __future__ import annotations

import itertools
from typing import Any, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.trial import unittest

from gamews.ratelimit import TokenBucket
from gamews.rcon.link import (
    LinkState,
    RconPasswordRejectedError,
    RconQueueFullError,
    RconStoppedError,
    RconTimeoutError,
)
from gamews.rcon.quake3 import Quake3RconClient
from gamews.rcon.quake3_codec import OOB
from gamews.secret import Secret

PASSWORD = "hunter2-q3"
STATUS = (OOB + b'statusResponse\n\\mapname\\oa_dm1\\sv_hostname\\^1test\n'
          b'3 0 "^1Sar^7ge"\n0 50 "Grism"\n')


class FakeUDPPort:
    """A connected UDP port that records datagrams with their send time."""

    def __init__(self, clock: Clock, protocol: DatagramProtocol) -> None:
        self.clock = clock
        self.protocol = protocol
        self.sent: list[tuple[float, bytes]] = []
        self.peer: tuple[str, int] | None = None
        self.listening = True

    def connect(self, host: str, port: int) -> None:
        """Remember the peer."""
        self.peer = (host, port)

    def write(self, data: bytes, addr: object = None) -> None:
        """Record a datagram."""
        self.sent.append((self.clock.seconds(), data))

    def stopListening(self) -> None:
        """Close."""
        self.listening = False

    def reply(self, *datagrams: bytes) -> None:
        """Deliver datagrams from the server."""
        assert self.peer is not None
        for data in datagrams:
            self.protocol.datagramReceived(data, self.peer)


class FakeUDPReactor(Clock):
    """A Clock with listenUDP and resolve."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[tuple[str, FakeUDPPort]] = []

    def listenUDP(self, port: int, protocol: DatagramProtocol, interface: str = "",
                  maxPacketSize: int = 8192) -> FakeUDPPort:
        """Make a fake port."""
        fake = FakeUDPPort(self, protocol)
        protocol.makeConnection(fake)  # type: ignore[arg-type]
        self.ports.append((interface, fake))
        return fake

    def resolve(self, name: str, timeout: Any = None) -> Deferred[str]:
        """Every name is loopback."""
        return succeed("127.0.0.1")


class Quake3ClientTests(unittest.SynchronousTestCase):
    """rcon, getstatus, pacing, timeouts, wrong password."""

    def make(self, password: str = PASSWORD, **options: Any) -> Quake3RconClient:
        """A started client named oa on 127.0.0.1:27960."""
        self.reactor = FakeUDPReactor()
        self.events: list[dict[str, Any]] = []
        options.setdefault("status_interval", None)
        client = Quake3RconClient(
            "oa", options.pop("host", "127.0.0.1"), 27960, Secret(password),
            reactor=self.reactor, log=Logger(observer=cast(ILogObserver, self.events.append)),
            **options,
        )
        client.start()
        self.addCleanup(client.stop)
        return client

    @property
    def port(self) -> FakeUDPPort:
        """The client's UDP port."""
        return self.reactor.ports[-1][1]

    def test_bound_to_loopback(self) -> None:
        """For a loopback server the socket binds 127.0.0.1 and is connected to the server."""
        self.make()
        self.assertEqual(self.reactor.ports[0][0], "127.0.0.1")
        self.assertEqual(self.port.peer, ("127.0.0.1", 27960))

    def test_hostname_resolved(self) -> None:
        """A host name is resolved before the socket is connected."""
        self.make(host="localhost")
        self.assertEqual(self.port.peer, ("127.0.0.1", 27960))

    def test_rcon_gathers_until_quiet(self) -> None:
        """Datagrams cut mid-line are joined once the server has been quiet for ``quiet`` s."""
        client = self.make(quiet=0.15)
        d = client.rcon("cvarlist")
        self.assertEqual(self.port.sent, [(0.0, OOB + b"rcon " + PASSWORD.encode() + b" cvarlist")])
        self.port.reply(OOB + b"print\nsv_hostn", OOB + b'print\name "x"\n')
        self.reactor.advance(0.1)
        self.port.reply(OOB + b"print\n2 total cvars\n")
        self.reactor.advance(0.14)
        self.assertNoResult(d)
        self.reactor.advance(0.01)
        self.assertEqual(self.successResultOf(d), 'sv_hostname "x"\n2 total cvars\n')
        self.assertEqual(client.state, LinkState.UP)

    def test_getstatus(self) -> None:
        """getstatus gives players with colour codes stripped and keeps the snapshot."""
        client = self.make()
        d = client.getstatus()
        self.port.reply(STATUS)
        status = self.successResultOf(d)
        self.assertEqual([(p.name, p.raw_name, p.score) for p in status.players],
                         [("Sarge", "^1Sar^7ge", 3), ("Grism", "Grism", 0)])
        self.assertIs(client.last_status, status)

    def test_status_polling(self) -> None:
        """With status_interval, getstatus is polled at start and then periodically."""
        client = self.make(status_interval=30.0)
        self.assertEqual(self.port.sent[-1][1], OOB + b"getstatus")
        self.port.reply(STATUS)
        self.assertEqual(client.state, LinkState.UP)
        self.reactor.advance(30)
        self.assertEqual(len(self.port.sent), 2)

    def test_pacing_burst_then_interval(self) -> None:
        """Ten requests go at once, then one per interval; every request is answered."""
        client = self.make(interval=1.1, burst=10)
        replies = [client.getstatus() for _ in range(13)]
        for _ in range(100):
            while len(self.port.sent) > sum(1 for d in replies if d.called):
                self.port.reply(STATUS)
            self.reactor.advance(0.05)
        times = [t for t, _ in self.port.sent]
        self.assertEqual(times[:10], [0.0] * 10)
        self.assertTrue(1.1 - 1e-9 <= times[10] < 1.2, times)
        for earlier, later in itertools.pairwise(times[10:]):
            self.assertGreaterEqual(later - earlier, 1.1 - 1e-9)
        self.assertTrue(all(d.called for d in replies))

    def test_no_reply_is_reported_not_lost(self) -> None:
        """A request with no reply fails with RconTimeoutError and the link reads DOWN."""
        client = self.make(timeout=2.0)
        d = client.rcon("status")
        self.reactor.advance(2.0)
        self.assertIn("oa", str(self.failureResultOf(d, RconTimeoutError).value))
        self.assertEqual(client.state, LinkState.DOWN)

    def test_after_timeout_waits_quiet_period(self) -> None:
        """After a timeout the next request waits one quiet period (a late reply drains)."""
        client = self.make(timeout=2.0, quiet=0.15)
        first, second = client.rcon("status"), client.rcon("serverinfo")
        self.reactor.advance(2.0)
        self.failureResultOf(first, RconTimeoutError)
        self.port.reply(OOB + b"print\nlate answer to status\n")
        self.assertEqual(len(self.port.sent), 1)
        self.reactor.advance(0.15)
        self.assertEqual(len(self.port.sent), 2)
        self.port.reply(OOB + b"print\nserverinfo reply\n")
        self.reactor.advance(0.15)
        self.assertEqual(self.successResultOf(second), "serverinfo reply\n")

    def test_queue_full(self) -> None:
        """Beyond max_pending a request fails at once."""
        client = self.make(max_pending=2)
        first, second = client.rcon("a"), client.rcon("b")
        self.failureResultOf(client.rcon("c"), RconQueueFullError)
        client.stop()
        self.failureResultOf(first, RconStoppedError)
        self.failureResultOf(second, RconStoppedError)

    def test_bad_password(self) -> None:
        """``Bad rconpassword.`` fails the command, logs once and holds off rcon for minutes."""
        client = self.make(password="wrong", auth_failure_delay=300.0)
        d = client.rcon("status")
        self.port.reply(OOB + b"print\nBad rconpassword.\n")
        self.reactor.advance(1)
        self.failureResultOf(d, RconPasswordRejectedError)
        self.assertEqual(client.state, LinkState.AUTH_FAILED)
        lines = [formatEvent(e) for e in self.events]
        self.assertEqual(sum("rcon password rejected by oa" in line for line in lines), 1)
        self.failureResultOf(client.rcon("status"), RconPasswordRejectedError)
        self.assertEqual(len(self.port.sent), 1, "sent although rejected")
        self.reactor.advance(300)
        again = client.rcon("status")
        self.assertEqual(len(self.port.sent), 2)
        self.assertNotIn("wrong", " ".join(lines) + repr(self.events) + repr(client)
                         + repr(client.__dict__))  # the request in flight holds it
        client.stop()
        self.failureResultOf(again, RconStoppedError)

    def test_garbage_and_late_replies_ignored(self) -> None:
        """Datagrams that are not OOB replies, or not the awaited kind, are dropped."""
        client = self.make()
        d = client.getstatus()
        self.port.reply(b"junk", OOB + b"print\nlate rcon reply\n", OOB + b"infoResponse\n\\a\\b")
        self.assertNoResult(d)
        self.port.reply(STATUS)
        self.successResultOf(d)

    def test_unsendable_command(self) -> None:
        """A newline in a command fails with ValueError and sends nothing."""
        client = self.make()
        self.failureResultOf(client.rcon("say hi\nquit"), ValueError)
        self.assertEqual(self.port.sent, [])

    def test_token_bucket(self) -> None:
        """The bucket gives ``capacity`` at once, then one per interval."""
        bucket = TokenBucket(2, 1.0, 0.0)
        self.assertEqual([bucket.take(0.0), bucket.take(0.0)], [0.0, 0.0])
        self.assertEqual(bucket.take(0.0), 1.0)
        self.assertEqual(bucket.take(0.5), 0.5)
        self.assertEqual(bucket.take(1.0), 0.0)
