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
    RconLinkLostError,
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


SERVER = ("127.0.0.1", 27960)


class FakeUDPPort:
    """A UDP port (connected once the client connects it) that records datagrams with their
    send time, and where each went."""

    def __init__(self, clock: Clock, protocol: DatagramProtocol) -> None:
        self.clock = clock
        self.protocol = protocol
        self.sent: list[tuple[float, bytes]] = []
        self.to: list[object] = []
        self.peer: tuple[str, int] | None = None
        self.listening = True

    def connect(self, host: str, port: int) -> None:
        """Remember the peer."""
        assert self.peer is None, "a UDP port is connected once"
        self.peer = (host, port)

    def write(self, data: bytes, addr: object = None) -> None:
        """Record a datagram (``addr``: given on an unconnected port)."""
        assert (addr is None) == (self.peer is not None), (addr, self.peer)
        self.sent.append((self.clock.seconds(), data))
        self.to.append(addr or self.peer)

    def stopListening(self) -> None:
        """Close."""
        self.listening = False

    def icmp_close(self) -> None:
        """What the reactor does to a connected UDP port on an ICMP error: close it."""
        self.listening = False
        self.protocol.doStop()

    def reply(self, *datagrams: bytes, source: tuple[str, int] = SERVER) -> None:
        """Deliver datagrams from the server (or from ``source``)."""
        for data in datagrams:
            self.protocol.datagramReceived(data, source)


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


class ClientCase(unittest.SynchronousTestCase):
    """Builds a client on a FakeUDPReactor and collects its log events."""

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
        """The client's (latest) UDP port."""
        return self.reactor.ports[-1][1]


class Quake3ClientTests(ClientCase):
    """rcon, getstatus, pacing, timeouts, wrong password."""

    def test_bound_to_loopback(self) -> None:
        """For a loopback server the socket binds 127.0.0.1, sends to the server, and is
        connected to it once it has answered; until then other senders are ignored."""
        client = self.make()
        self.assertEqual(self.reactor.ports[0][0], "127.0.0.1")
        d = client.getstatus()
        self.assertEqual((self.port.peer, self.port.to), (None, [SERVER]))
        self.port.reply(STATUS, source=("127.0.0.1", 27961))
        self.assertNoResult(d)
        self.port.reply(STATUS)
        self.successResultOf(d)
        self.assertEqual(self.port.peer, SERVER)

    def test_hostname_resolved(self) -> None:
        """A host name is resolved before anything is sent."""
        client = self.make(host="localhost")
        client.getstatus().addErrback(lambda f: None)  # stopped unanswered
        self.assertEqual(self.port.to, [SERVER])

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


class PortUnreachableTests(ClientCase):
    """ICMP errors are link events: a new, unconnected port at once, probes with backoff,
    requests time out while the server is away, the link recovers, one log line per change."""

    def make(self, password: str = PASSWORD, **options: Any) -> Quake3RconClient:
        """A client with a 1-2-4-8 s probe backoff, polling every 30 s, timeout 0.5 s,
        whose server answered (so its port is connected)."""
        options.setdefault("retry_policy", lambda attempt: float(min(2 ** (attempt - 1), 8)))
        options.setdefault("status_interval", 30.0)
        options.setdefault("timeout", 0.5)
        client = super().make(password, **options)
        self.port.reply(STATUS)  # the first probe's answer
        return client

    def lines(self) -> list[str]:
        """The formatted log lines."""
        return [formatEvent(e) for e in self.events]

    def probes(self, port: FakeUDPPort) -> list[float]:
        """When ``port`` sent a getstatus."""
        return [t for t, d in port.sent if d[4:13] == b"getstatus"]

    def test_icmp_close_then_probes_with_backoff(self) -> None:
        """A port the reactor closed is replaced at once by one unconnected port (no more
        closes: it gets no ICMP errors); the server is probed after 1, 2, 4, 8, 8 s."""
        client = self.make()
        first = self.port
        self.assertEqual(first.peer, SERVER)
        start = self.reactor.seconds()
        first.icmp_close()
        self.assertEqual(client.state, LinkState.DOWN)
        self.assertEqual(len(self.reactor.ports), 2)
        second = self.port
        self.assertIsNone(second.peer)
        for _ in range(int(30 / 0.25)):
            self.reactor.advance(0.25)
        self.assertEqual(len(self.reactor.ports), 2)
        probes = self.probes(second)
        self.assertEqual([round(b - a, 2) for a, b in itertools.pairwise([start, *probes])][:5],
                         [1.0, 2.0, 4.0, 8.0, 8.0])
        self.assertEqual(set(second.to), {SERVER})

    def test_recovers_connects_and_resets_backoff(self) -> None:
        """An answer to a probe brings the link UP, connects the new port, and the backoff
        starts over (the next outage's first probe comes after 1 s)."""
        client = self.make()
        self.port.icmp_close()
        for _ in range(28):
            self.reactor.advance(0.25)
        self.port.reply(STATUS)
        self.assertEqual((client.state, self.port.peer), (LinkState.UP, SERVER))
        self.port.icmp_close()
        before = len(self.probes(self.port))
        self.reactor.advance(1.0)
        self.assertEqual(len(self.probes(self.port)), before + 1)

    def test_in_flight_fails_then_requests_time_out(self) -> None:
        """The request in flight fails at once (it never reached a server); a command sent
        while the server is away fails with RconTimeoutError after its timeout."""
        client = self.make(retry_policy=lambda attempt: 60.0)
        sent = client.rcon("status")
        self.port.icmp_close()
        failure = self.failureResultOf(sent, RconLinkLostError)
        self.assertIn("port unreachable", str(failure.value))
        later = client.rcon("status")
        self.reactor.advance(0.49)
        self.assertNoResult(later)
        self.reactor.advance(0.01)
        self.failureResultOf(later, RconTimeoutError)
        self.assertEqual(client.pending, 0)
        self.assertEqual(client.notifier.status.detail, "port unreachable")

    def test_connection_refused_closes_and_reopens(self) -> None:
        """An ICMP error read as connectionRefused (the port still open) is handled the same
        way: that port is closed and an unconnected one opened."""
        client = self.make()
        first = self.port
        first.protocol.connectionRefused()
        self.assertFalse(first.listening)
        self.assertEqual(client.state, LinkState.DOWN)
        self.assertIsNot(self.port, first)
        self.assertTrue(self.port.listening)

    def test_one_line_per_change(self) -> None:
        """Thirty seconds of unanswered probes log one "down" line with the reason and the
        delay; the recovery one "up" line; nothing else."""
        client = self.make()
        self.port.icmp_close()
        for _ in range(120):
            self.reactor.advance(0.25)
        self.port.reply(STATUS)
        self.assertEqual(client.state, LinkState.UP)
        self.assertEqual(self.lines(), [
            "rcon link to oa up",
            "rcon link to oa down: port unreachable; retrying in 1 s",
            "rcon link to oa up",
        ])
        self.assertIsNone(client.notifier.status.detail)

    def test_absent_at_start(self) -> None:
        """A server that never answered: DOWN after the first probe's timeout, probed with
        backoff, up when it answers."""
        self.reactor = FakeUDPReactor()
        client = Quake3RconClient("oa", "127.0.0.1", 27960, Secret(PASSWORD),
                                  reactor=self.reactor, timeout=0.5, status_interval=30.0,
                                  retry_policy=lambda attempt: float(min(2 ** (attempt - 1), 8)))
        client.start()
        self.addCleanup(client.stop)
        self.reactor.advance(0.5)
        self.assertEqual((client.state, client.notifier.status.detail),
                         (LinkState.DOWN, "no reply to getstatus within 0.5 s"))
        for _ in range(12):  # to 3.5 s: probes at 0, 1.5 and 3.5 s
            self.reactor.advance(0.25)
        self.assertEqual(self.probes(self.port), [0.0, 1.5, 3.5])
        self.port.reply(STATUS)
        self.assertEqual((client.state, self.port.peer), (LinkState.UP, SERVER))

    def test_stop_while_down(self) -> None:
        """Stopping while probing cancels the probes."""
        client = self.make()
        self.port.icmp_close()
        self.successResultOf(client.stop())
        sent = len(self.port.sent)
        self.reactor.advance(100)
        self.assertEqual(len(self.port.sent), sent)
        self.assertEqual(client.state, LinkState.STOPPED)
