"""Reconciliation on a Source server: an rconx peer answers ``status``, a log file is followed.

gamews starts mid-match (the log has nothing yet): the map and every player show at once from
the status answer. Then the log goes on, one player's ``disconnected`` line is lost, and the
next status answer no longer lists him: he is removed, while what the log says (kills, the
player who joined) stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial import unittest

from gamews.rcon.link import LinkState
from gamews.service import GamewsService
from tests.rcon.peers import RconxPeer, poll_until
from tests.support import connect, port_of, real_reactor
from tests.test_realstate_openarena import LiveView, live_settings

PASSWORD = "rcon-state-pw"

HEAD = """hostname: gamews reconciliation test
version : 1.38.2.2 secure
os      :  Linux
type    :  community dedicated
map     : de_train
players : 2 humans, 1 bots (10/0 max) (not hibernating)

# userid name uniqueid connected ping loss state rate adr
"""
ANN = '# 2 1 "Ann" STEAM_1:1:100 10:00 {ping} 0 active 196608 203.0.113.7:27005\n'
BOB = '# 3 2 "Bob" STEAM_1:0:200 09:00 31 0 active 196608 203.0.113.8:27005\n'
CID = '# 5 4 "Cid" STEAM_1:0:300 00:10 12 0 active 196608 203.0.113.9:27005\n'
DAVE = '#4 "Dave" BOT active 64\n'
STAMP = "L 11/28/2026 - 09:30:01: "


class ReconciliationTests(unittest.TestCase):
    """A mid-match start, then a lost ``disconnected`` line."""

    timeout = 40

    def setUp(self) -> None:
        self.reactor: Any = real_reactor()
        self.status = HEAD + ANN.format(ping=40) + BOB + DAVE + "#end\n"
        self.peer = RconxPeer(PASSWORD, self.answer)
        self.peer.start()
        self.addCleanup(self.peer.stop)
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        (tmp / "cs.rcon").write_text(PASSWORD)
        (tmp / "cs.rcon").chmod(0o600)
        self.log = tmp / "console.log"
        self.log.write_text("")
        server = {"name": "cs", "kind": "source", "rcon": f"127.0.0.1:{self.peer.port}",
                  "password_file": "cs.rcon", "log": f"file:{self.log}",
                  "log_format": "source", "status_interval": 1}
        self.service = GamewsService(live_settings(server, tmp), reactor=self.reactor)

    def answer(self, command: str) -> str:
        return self.status if command == "status" else f"Unknown command \"{command}\"\n"

    def write(self, *messages: str) -> None:
        with self.log.open("a", encoding="utf-8") as f:
            f.writelines(STAMP + m + "\n" for m in messages)

    async def test_mid_match_start_and_lost_disconnect(self) -> None:
        """Map and players at once from status; the log adds; status removes the one gone."""
        up: list[float] = []
        self.service.servers["cs"].subscribe(
            lambda s: up.append(self.reactor.seconds()) if s is LinkState.UP else None)
        self.service.startService()
        self.addCleanup(lambda: self.service.stopService() if self.service.running else None)
        port = port_of(await self.service.registry.ports()[0].when_listening())
        view = LiveView(await connect(port, "/live/ws"))

        def players() -> dict[str, Any]:
            state = view.state()
            return {p["name"]: p for p in state["players"].values()} if state else {}

        await poll_until(self.reactor, lambda: set(players()) == {"Ann", "Bob", "Dave"},
                         timeout=10)
        self.assertLess(self.reactor.seconds() - up[0], 2.0)
        state = view.state()
        assert state is not None
        self.assertEqual(state["map"], "de_train")
        self.assertEqual({n: p["ping"] for n, p in players().items()},
                         {"Ann": 40, "Bob": 31, "Dave": None})
        self.assertEqual(players()["Ann"]["id"], "[U:1:201]")

        # Cid joins: the server lists him, and the log says so
        self.status = HEAD + ANN.format(ping=40) + BOB + CID + DAVE + "#end\n"
        self.write('"Cid<5><STEAM_1:0:300><>" connected, address "203.0.113.9:27005"',
                   '"Cid<5><STEAM_1:0:300><>" entered the game',
                   '"Ann<2><STEAM_1:1:100><CT>" [1 2 3] killed "Bob<3><STEAM_1:0:200><TERRORIST>" '
                   '[4 5 6] with "ak47" (headshot)')
        await poll_until(self.reactor, lambda: "Cid" in players(), timeout=10)
        # Bob's "disconnected" line is lost; the server's status no longer lists him
        self.status = HEAD + ANN.format(ping=55) + CID + DAVE + "#end\n"
        await poll_until(self.reactor, lambda: "Bob" not in players(), timeout=10)
        final = players()
        self.assertEqual(set(final), {"Ann", "Cid", "Dave"})
        self.assertEqual((final["Ann"]["kills"], final["Ann"]["ping"], final["Cid"]["ping"]),
                         (1, 55, 12))
        self.assertNotIn("203.0.113", "".join(str(m) for m in view.client.messages))
