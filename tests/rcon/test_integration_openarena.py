"""The Quake 3 client and GameServer against a real OpenArena dedicated server on loopback.

Each test starts its own server (``tests/openarena.py``, ~0.3 s) so that every test has the
server's whole per-IP rate budget (burst 10, then 1/s, shared by rcon/getstatus/getinfo).
Skipped when ``/usr/games/openarena-server`` is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import gatherResults
from twisted.logger import formatEvent
from twisted.trial import unittest

from gamews.rcon.commands import say
from gamews.rcon.link import (
    LinkState,
    RconLinkLostError,
    RconPasswordRejectedError,
    RconTimeoutError,
)
from gamews.rcon.quake3 import Quake3RconClient
from gamews.rcon.server import GameServer, GameServerConfig
from gamews.secret import Secret
from tests.openarena import OpenArenaServer, free_udp_port, require_openarena
from tests.rcon.peers import poll_until
from tests.support import capture_logs, logged_errors

PASSWORD = "oa-test-pw"
BOTS = ("Sarge", "Grism", "Kyonshi")


class OpenArenaTests(unittest.TestCase):
    """rcon status and say, a wrong password, getstatus with bots, pacing."""

    timeout = 40

    def setUp(self) -> None:
        """Start a real server with three bots."""
        require_openarena()
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.oa = OpenArenaServer(rcon_password=PASSWORD, bots=BOTS)
        self.addCleanup(self.oa.stop)
        self.oa.start()

    def client(self, password: str = PASSWORD, **options: Any) -> Quake3RconClient:
        """A started client (no status polling, a conservative burst), stopped at cleanup."""
        options.setdefault("status_interval", None)
        # The launcher spent a few getstatus from 127.0.0.1 already: leave it room.
        options.setdefault("burst", 6)
        client = Quake3RconClient("oa", "127.0.0.1", self.oa.port, Secret(password),
                                  reactor=self.reactor, **options)
        client.start()
        self.addCleanup(client.stop)
        return client

    async def test_status_and_say(self) -> None:
        """rcon status lists the bots; say answers with the console line."""
        client = self.client()
        status = await client.rcon("status")
        self.assertTrue(status.startswith("map: oa_dm1"), status)
        for bot in BOTS:
            self.assertIn(bot, status)
        said = await client.rcon(say('hello; quit "from" gamews'))
        self.assertEqual(said, "console: hello quit from gamews\n")
        self.assertTrue(self.oa.running(), "the server quit: say was injectable")
        self.assertEqual(client.state, LinkState.UP)

    async def test_long_reply(self) -> None:
        """cvarlist (about ten datagrams) is gathered whole."""
        client = self.client()
        text = await client.rcon("cvarlist")
        self.assertGreater(len(text), 8000)
        self.assertRegex(text, r"\n\d+ total cvars\n")

    async def test_wrong_password(self) -> None:
        """``Bad rconpassword.`` is reported as a rejected password."""
        client = self.client(password="not-" + PASSWORD)
        with self.assertRaises(RconPasswordRejectedError):
            await client.rcon("status")
        self.assertEqual(client.state, LinkState.AUTH_FAILED)

    async def test_getstatus_through_game_server(self) -> None:
        """A [[server]] table becomes a GameServer whose snapshot lists the bots."""
        base = Path(self.mktemp())
        base.mkdir()
        (base / "oa.rcon").write_text(PASSWORD + "\n")
        config = GameServerConfig.from_table(
            {"name": "oa", "kind": "quake3", "rcon": f"127.0.0.1:{self.oa.port}",
             "password_file": "oa.rcon", "log": str(self.oa.games_log),
             "status_interval": 0}, base_dir=base)  # no poller here: the client probes
        server = GameServer(config, reactor=self.reactor)
        server.startService()
        self.addCleanup(server.stopService)
        await poll_until(self.reactor, lambda: server.status().players is not None)
        snapshot = server.status()
        assert snapshot.players is not None and snapshot.info is not None
        self.assertEqual(sorted(p.name for p in snapshot.players), sorted(BOTS))
        self.assertEqual(snapshot.info["mapname"], "oa_dm1")
        self.assertEqual(snapshot.state, LinkState.UP)
        self.assertIn("map: oa_dm1", await server.rcon("status"))

    async def test_paced_burst_none_lost(self) -> None:
        """Twelve commands at once: paced to the server's budget, every one answered."""
        client = self.client(burst=5, interval=1.1)
        replies = await gatherResults([client.rcon(f"echo n{i}") for i in range(12)])
        for i, text in enumerate(replies):
            self.assertIn(f"n{i}", text)


class OpenArenaRecoveryTests(unittest.TestCase):
    """The Quake 3 link against a real server that is absent, killed and restarted."""

    timeout = 60

    def setUp(self) -> None:
        """Collect every log event (to find unhandled errors and count link lines)."""
        require_openarena()
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.events = capture_logs(self)
        self.port = free_udp_port()

    def server(self) -> OpenArenaServer:
        """A server (not started) on this test's fixed port, stopped at cleanup."""
        oa = OpenArenaServer(rcon_password=PASSWORD, bots=("Sarge",), port=self.port)
        self.addCleanup(oa.stop)
        return oa

    def client(self) -> Quake3RconClient:
        """A started client polling every 2 s, reopening after 0.5, 1, 2, 2, ... s."""
        client = Quake3RconClient(
            "oa", "127.0.0.1", self.port, Secret(PASSWORD), reactor=self.reactor,
            timeout=1.5, status_interval=2.0, burst=5,
            retry_policy=lambda attempt: min(0.5 * 2 ** (attempt - 1), 2.0))
        client.start()
        self.addCleanup(client.stop)
        return client

    def assert_clean_log(self, reason: str) -> None:
        """No error was logged (no unhandled Deferred error, no traceback), the link said
        why it went down in one line, and Twisted opened and closed at most two ports."""
        self.assertEqual(logged_errors(self.events), [])
        lines = [formatEvent(e) for e in self.events]
        down = [line for line in lines if line.startswith("rcon link to oa down: ")]
        self.assertEqual(len(down), 1, down)
        self.assertTrue(down[0].startswith(f"rcon link to oa down: {reason}"), down)
        self.assertLessEqual(sum("UDP Port" in line and "Closed" in line for line in lines),
                             1, lines)

    async def test_absent_at_start_then_started(self) -> None:
        """With no server, the link is DOWN (no reply) and a command fails with its
        timeout; once the server starts, the link comes up within the backoff."""
        client = self.client()
        await poll_until(self.reactor, lambda: client.state is LinkState.DOWN)
        self.assertEqual(client.notifier.status.detail, "no reply to getstatus within 1.5 s")
        started = self.reactor.seconds()
        with self.assertRaises((RconTimeoutError, RconLinkLostError)):
            await client.rcon("status")
        self.assertLess(self.reactor.seconds() - started, 1.5 + 0.5)
        self.server().start()
        back = self.reactor.seconds()
        await poll_until(self.reactor, lambda: client.state is LinkState.UP, timeout=2.0 + 2.0)
        self.assertLess(self.reactor.seconds() - back, 4.0)
        self.assertIn("map: oa_dm1", await client.rcon("status"))
        self.assert_clean_log("no reply to getstatus")

    async def test_killed_and_restarted(self) -> None:
        """A server killed while the link is up: DOWN on the next poll, commands fail while
        it is gone, UP again within the backoff once it is back on the same port."""
        oa = self.server()
        oa.start()
        client = self.client()
        await poll_until(self.reactor, lambda: client.state is LinkState.UP)
        oa.stop()
        await poll_until(self.reactor, lambda: client.state is LinkState.DOWN, timeout=5.0)
        with self.assertRaises((RconTimeoutError, RconLinkLostError)):
            await client.rcon("status")
        self.server().start()
        back = self.reactor.seconds()
        await poll_until(self.reactor, lambda: client.state is LinkState.UP, timeout=2.0 + 2.0)
        self.assertLess(self.reactor.seconds() - back, 4.0)
        self.assertIn("map: oa_dm1", await client.rcon("status"))
        self.assertLessEqual(client.pending, 1)  # nothing piled up (a status poll may wait)
        self.assert_clean_log("port unreachable")
