"""The Source RCON client against a real peer: the rconx package's server on loopback."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.trial import unittest

from gamews.rcon.link import LinkState, RconPasswordRejectedError, RconTimeoutError
from gamews.rcon.source import SourceRconClient
from gamews.secret import Secret
from tests.rcon.peers import RconxPeer, free_tcp_port, poll_until
from tests.support import capture_logs, logged_errors

PASSWORD = "rconx-test-pw"


def reply(command: str) -> str:
    """The peer's command handler: ``big N`` returns N numbered lines, else an echo."""
    if command.startswith("big "):
        return "".join(f"line {i:06d} of the long reply\n" for i in range(int(command[4:])))
    return f"echo: {command}"


class RconxIntegrationTests(unittest.TestCase):
    """Auth, wrong password, multi-packet replies, and a peer that goes away and comes back."""

    timeout = 30

    def setUp(self) -> None:
        """Start an rconx server on a free loopback port."""
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.peer = RconxPeer(PASSWORD, reply)
        self.peer.start()
        self.addCleanup(self.peer.stop)
        self.events: list[dict[str, Any]] = []

    def client(self, password: str = PASSWORD, **options: Any) -> SourceRconClient:
        """A started client to the peer, stopped at cleanup."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.peer.port, timeout=5)
        client = SourceRconClient(
            "rconx", endpoint, Secret(password), clock=self.reactor,
            log=Logger(observer=cast(ILogObserver, self.events.append)), **options)
        client.start()
        self.addCleanup(client.stop)
        return client

    async def test_auth_and_command(self) -> None:
        """Authenticated commands get their replies."""
        client = self.client()
        self.assertEqual(await client.rcon("status"), "echo: status")
        self.assertEqual(client.state, LinkState.UP)
        self.assertEqual(self.peer.auth_attempts, 1)

    async def test_wrong_password(self) -> None:
        """A wrong password gives AUTH_FAILED, one clear log line and no fast retries."""
        client = self.client(password="not-" + PASSWORD)
        waiting = client.rcon("status")
        await poll_until(self.reactor, lambda: client.state is LinkState.AUTH_FAILED)
        lines = [formatEvent(e) for e in self.events]
        self.assertEqual(sum("rcon password rejected by rconx" in line for line in lines), 1)
        self.assertEqual(self.peer.auth_attempts, 1)
        self.assertNotIn(PASSWORD, " ".join(lines))
        with self.assertRaises(RconPasswordRejectedError):
            await waiting  # the queued command fails at once, not after its timeout
        with self.assertRaises(RconPasswordRejectedError):
            await client.rcon("status")

    async def test_multi_packet_reply(self) -> None:
        """A 30 KB reply (8 packets from rconx) arrives whole and in order."""
        client = self.client()
        text = await client.rcon("big 1000")
        self.assertGreater(len(text.encode()), 20_000)
        self.assertEqual(text, reply("big 1000"))

    async def test_pipelined_commands(self) -> None:
        """Many commands in flight at once each get their own reply."""
        client = self.client(max_pending=300)
        await client.rcon("warm up")
        replies = [client.rcon(f"c{i}") for i in range(200)]
        for i, d in enumerate(replies):
            self.assertEqual(await d, f"echo: c{i}")

    async def test_peer_drops_and_comes_back(self) -> None:
        """When the peer goes away the link goes DOWN; when it is back the link comes UP."""
        client = self.client(retry_policy=lambda attempt: 0.1)
        self.assertEqual(await client.rcon("before"), "echo: before")
        self.peer.stop()
        await poll_until(self.reactor, lambda: client.state is LinkState.DOWN)
        queued = client.rcon("while down")
        self.peer = RconxPeer(PASSWORD, reply, port=self.peer.port)
        self.peer.start()
        self.addCleanup(self.peer.stop)
        self.assertEqual(await queued, "echo: while down")
        self.assertEqual(client.state, LinkState.UP)


class RconxRecoveryTests(unittest.TestCase):
    """The Source link against an rconx peer that is absent at start, then killed and
    restarted: it recovers within its backoff, says why once, and logs no error."""

    timeout = 30

    def setUp(self) -> None:
        """Collect every log event; pick a port with no peer yet."""
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.events = capture_logs(self)
        self.port = free_tcp_port()

    def peer(self) -> RconxPeer:
        """A started peer on the test's port, stopped at cleanup."""
        peer = RconxPeer(PASSWORD, reply, port=self.port)
        peer.start()
        self.addCleanup(peer.stop)
        return peer

    def client(self) -> SourceRconClient:
        """A started client retrying after 0.2, 0.4, 0.8, 0.8, ... s; timeout 1 s."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port, timeout=5)
        client = SourceRconClient(
            "rconx", endpoint, Secret(PASSWORD), clock=self.reactor, timeout=1.0,
            retry_policy=lambda attempt: min(0.2 * 2 ** (attempt - 1), 0.8))
        client.start()
        self.addCleanup(client.stop)
        return client

    def lines(self) -> list[str]:
        """Formatted log lines."""
        return [formatEvent(e) for e in self.events]

    def assert_clean_log(self, downs: int) -> None:
        """No error or traceback was logged, no line of Twisted's retry machinery, and
        ``downs`` lines said why the link was down."""
        self.assertEqual(logged_errors(self.events), [])
        noise = [line for line in self.lines() if "Scheduling retry" in line
                 or "Starting factory" in line or "Stopping factory" in line]
        self.assertEqual(noise, [])
        down = [line for line in self.lines() if line.startswith("rcon link to rconx down: ")]
        self.assertEqual(len(down), downs, down)

    async def test_absent_at_start_then_started(self) -> None:
        """No peer: DOWN with "connection refused", a command fails with its timeout; the
        peer starts: UP within the backoff, commands answered."""
        client = self.client()
        await poll_until(self.reactor, lambda: client.state is LinkState.DOWN)
        self.assertEqual(client.notifier.status.detail, "connection refused")
        with self.assertRaises(RconTimeoutError):
            await client.rcon("while down")
        self.peer()
        back = self.reactor.seconds()
        await poll_until(self.reactor, lambda: client.state is LinkState.UP)
        self.assertLess(self.reactor.seconds() - back, 0.8 + 0.5)
        self.assertEqual(await client.rcon("status"), "echo: status")
        self.assert_clean_log(downs=1)
        self.assertIn("rcon link to rconx down: connection refused; retrying in 0.2 s",
                      self.lines())
        self.assertEqual(self.lines().count("rcon link to rconx up"), 1)

    async def test_killed_and_restarted(self) -> None:
        """The peer goes away while up: DOWN, commands time out; back: UP within the backoff."""
        peer = self.peer()
        client = self.client()
        self.assertEqual(await client.rcon("before"), "echo: before")
        peer.stop()
        await poll_until(self.reactor, lambda: client.state is LinkState.DOWN)
        with self.assertRaises(RconTimeoutError):
            await client.rcon("while down")
        self.peer()
        back = self.reactor.seconds()
        await poll_until(self.reactor, lambda: client.state is LinkState.UP)
        self.assertLess(self.reactor.seconds() - back, 0.8 + 0.5)
        self.assertEqual(await client.rcon("after"), "echo: after")
        self.assertEqual(client.pending, 0)
        # down: "connection lost", then (if an attempt was refused) "connection refused"
        self.assertIn(len([line for line in self.lines() if " down: " in line]), (1, 2))
        self.assert_clean_log(downs=len([line for line in self.lines() if " down: " in line]))
