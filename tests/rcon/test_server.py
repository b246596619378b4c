"""``[[server]]`` tables, GameServer services and the IGameServer interface."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from gamews.errors import ConfigError
from gamews.rcon.link import LinkState
from gamews.rcon.server import GameServer, GameServerConfig, IGameServer
from tests.rcon.test_quake3_client import STATUS, FakeUDPReactor
from tests.rcon.test_source_client import FakeEndpoint

SECRET = "s3cret-rcon-pw"


class ConfigTests(unittest.TestCase):
    """GameServerConfig.from_table."""

    def setUp(self) -> None:
        """A base dir holding a password file."""
        self.base = Path(self.mktemp())
        self.base.mkdir()
        (self.base / "alpha.rcon").write_text(SECRET + "\n")

    def table(self, **changes: Any) -> dict[str, Any]:
        """A valid table with ``changes`` applied (None deletes a key)."""
        table: dict[str, Any] = {"name": "alpha", "kind": "source", "rcon": "127.0.0.1:27015",
                                 "password_file": "alpha.rcon"}
        for key, value in changes.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return table

    def error(self, **changes: Any) -> ConfigError:
        """The ConfigError for a table with ``changes``."""
        try:
            GameServerConfig.from_table(self.table(**changes), base_dir=self.base)
        except ConfigError as e:
            return e
        self.fail(f"no ConfigError for {changes}")

    def test_valid_source(self) -> None:
        """A minimal table gives name, kind, host, port and the password from the file."""
        config = GameServerConfig.from_table(self.table(), base_dir=self.base)
        self.assertEqual((config.name, config.kind, config.host, config.port),
                         ("alpha", "source", "127.0.0.1", 27015))
        self.assertEqual(config.password.reveal(), SECRET)
        self.assertNotIn(SECRET, repr(config))

    def test_password_env_and_quake3(self) -> None:
        """password_env works; quake3 and a [v6]:port address are accepted."""
        os.environ["GAMEWS_TEST_RCON"] = "oa-pw"
        self.addCleanup(os.environ.pop, "GAMEWS_TEST_RCON")
        config = GameServerConfig.from_table(
            self.table(kind="quake3", rcon="[::1]:27960", password_file=None,
                       password_env="GAMEWS_TEST_RCON"), base_dir=None)
        self.assertEqual((config.kind, config.host, config.port, config.address),
                         ("quake3", "::1", 27960, "[::1]:27960"))
        self.assertEqual(config.password.reveal(), "oa-pw")

    def test_unknown_keys_ignored(self) -> None:
        """Keys for other parts of gamews (log streams) are left alone."""
        config = GameServerConfig.from_table(
            self.table(log="udp:127.0.0.1:27500", log_secret_file="x", future=1),
            base_dir=self.base)
        self.assertEqual(config.name, "alpha")

    def test_inline_password_refused(self) -> None:
        """An inline password is refused with a message naming password_file/password_env."""
        e = self.error(password="oops")
        self.assertEqual(e.key, "server.alpha.password")
        self.assertIn("password_file", e.message)

    def test_bad_values(self) -> None:
        """Each bad value is reported under its own key."""
        cases: dict[str, dict[str, Any]] = {
            "server.name": {"name": "bad name"},
            "server.alpha.kind": {"kind": "minecraft"},
            "server.alpha.rcon": {"rcon": "127.0.0.1"},
            "server.alpha.password_file": {"password_file": None},
            "server.alpha.rcon_timeout": {"rcon_timeout": -1},
            "server.alpha.rcon_queue": {"rcon_queue": True},
        }
        for key, changes in cases.items():
            self.assertEqual(self.error(**changes).key, key, changes)
        for rcon in ("host:0", "host:99999", "ho st:1", "[nope]:1", ":27015", "a:b:c"):
            self.assertEqual(self.error(rcon=rcon).key, "server.alpha.rcon", rcon)

    def test_quake3_password_one_word(self) -> None:
        """A Quake 3 password the engine cannot parse is refused at config time."""
        (self.base / "spaced").write_text("two words\n")
        e = self.error(kind="quake3", password_file="spaced")
        self.assertEqual(e.key, "server.alpha.password")
        self.assertNotIn("two words", str(e))

    def test_status_interval(self) -> None:
        """status_interval: 15 by default, 0 (off) or seconds in [1, 3600], else its key is
        named; with status queries on, the Quake 3 client has no probe of its own."""
        self.assertEqual(GameServerConfig.from_table(self.table(), base_dir=self.base)
                         .status_interval, 15.0)
        for value in (0, 1, 2.5, 3600):
            config = GameServerConfig.from_table(self.table(status_interval=value),
                                                 base_dir=self.base)
            self.assertEqual(config.status_interval, value)
        for bad in (-1, 0.5, 3601, True, "15"):
            self.assertEqual(self.error(status_interval=bad).key,
                             "server.alpha.status_interval", bad)
        for value, probe in ((15, None), (0, 30.0)):
            config = GameServerConfig.from_table(
                self.table(kind="quake3", status_interval=value), base_dir=self.base)
            server = GameServer(config, reactor=FakeUDPReactor())
            self.assertEqual(server.client.status_interval, probe)  # type: ignore[union-attr]

    def test_options(self) -> None:
        """rcon_timeout and rcon_queue reach the client."""
        config = GameServerConfig.from_table(self.table(rcon_timeout=2.5, rcon_queue=7),
                                             base_dir=self.base)
        server = GameServer(config, endpoint=FakeEndpoint(FakeUDPReactor()),
                            reactor=FakeUDPReactor())
        self.assertEqual((server.client.timeout, server.client.max_pending), (2.5, 7))


class GameServerTests(unittest.SynchronousTestCase):
    """GameServer services."""

    def config(self, kind: str) -> GameServerConfig:
        """A config without touching the environment (no status poller: the Quake 3 client
        probes with getstatus itself)."""
        base = Path(self.mktemp())
        base.mkdir()
        (base / "pw").write_text(SECRET)
        port = "27015" if kind == "source" else "27960"
        return GameServerConfig.from_table(
            {"name": f"g-{kind}", "kind": kind, "rcon": f"127.0.0.1:{port}", "password_file": "pw",
             "status_interval": 0},
            base_dir=base)

    def test_source_service(self) -> None:
        """A source server provides IGameServer, connects at start and reports UP."""
        reactor = FakeUDPReactor()
        endpoint = FakeEndpoint(reactor, password=SECRET)
        server = GameServer(self.config("source"), reactor=reactor, endpoint=endpoint)
        verifyObject(IGameServer, server)
        self.assertEqual((server.name, server.kind), ("g-source", "source"))
        states: list[LinkState] = []
        server.subscribe(states.append)
        server.startService()
        endpoint.peer.answer()
        d = server.rcon("status")
        endpoint.peer.answer()
        self.assertEqual(self.successResultOf(d), "ran status")
        self.assertEqual(states, [LinkState.CONNECTING, LinkState.UP])
        snapshot = server.status().to_json()
        self.assertEqual((snapshot["state"], snapshot["address"]), ("up", "127.0.0.1:27015"))
        self.assertNotIn(SECRET, json.dumps(snapshot) + repr(server) + repr(server.config))
        stopped = server.stopService()
        reactor.advance(0)
        self.successResultOf(stopped)
        self.assertEqual(server.state, LinkState.STOPPED)

    def test_quake3_service(self) -> None:
        """A quake3 server polls getstatus and its snapshot lists the players."""
        reactor = FakeUDPReactor()
        server = GameServer(self.config("quake3"), reactor=reactor)
        verifyObject(IGameServer, server)
        server.startService()
        port = reactor.ports[0][1]
        port.reply(STATUS)
        snapshot = server.status()
        self.assertEqual(snapshot.state, LinkState.UP)
        assert snapshot.players is not None and snapshot.info is not None
        self.assertEqual([p.name for p in snapshot.players], ["Sarge", "Grism"])
        self.assertEqual(snapshot.info["mapname"], "oa_dm1")
        self.assertEqual(json.loads(json.dumps(snapshot.to_json()))["players"][0]["raw_name"],
                         "^1Sar^7ge")
        server.stopService()
        self.assertFalse(port.listening)
        self.assertEqual(server.state, LinkState.STOPPED)
