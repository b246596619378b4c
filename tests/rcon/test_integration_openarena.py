"""The Quake 3 client and GameServer against a real OpenArena dedicated server on loopback.

Each test starts its own server (``tests/openarena.py``, ~0.3 s) so that every test has the
server's whole per-IP rate budget (burst 10, then 1/s, shared by rcon/getstatus/getinfo).
Skipped when ``/usr/games/openarena-server`` is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import gatherResults
from twisted.trial import unittest

from gamews.rcon.commands import say
from gamews.rcon.link import LinkState, RconPasswordRejectedError
from gamews.rcon.quake3 import Quake3RconClient
from gamews.rcon.server import GameServer, GameServerConfig
from gamews.secret import Secret
from tests.openarena import OpenArenaServer, require_openarena
from tests.rcon.peers import poll_until

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
