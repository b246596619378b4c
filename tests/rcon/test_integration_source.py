"""The Source RCON client against a real peer: the rconx package's server on loopback."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.trial import unittest

from gamews.rcon.link import LinkState, RconPasswordRejectedError
from gamews.rcon.source import SourceRconClient
from gamews.secret import Secret
from tests.rcon.peers import RconxPeer, poll_until

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
