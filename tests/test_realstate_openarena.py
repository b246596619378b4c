"""The live view is right from the first seconds on a real OpenArena server started first.

Each test starts its own OpenArena dedicated server (``tests/openarena.py``) with bots,
waits until it answers, *then* starts gamews (the live plugin, a Quake 3 ``[[server]]``
following the server's ``games.log`` from its end, as an admin would), and reads
``/live/ws`` as a browser does. Skipped when ``openarena-server`` is not installed.

Bots' pings are 0 on a loopback server: that their pings are refreshed is shown by the
status answers being merged again and again, each time with the server's own values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import gatherResults
from twisted.trial import unittest

from gamews.events import Envelope, ServerStatus
from gamews.plugins.live import LivePlugin
from gamews.rcon.link import LinkState
from gamews.rcon.server import GameServer
from gamews.rcon.status import StatusPoller
from gamews.service import GamewsService
from gamews.settings import Settings, parse_settings
from tests.openarena import OpenArenaServer, require_openarena
from tests.rcon.peers import poll_until
from tests.support import Client, connect, port_of, real_reactor

PASSWORD = "oa-state-pw"
BOTS = ("Sarge", "Grism", "Kyonshi")


def live_settings(server: dict[str, Any], base_dir: Path) -> Settings:
    """Settings of a gamews on a free loopback port with the live plugin and ``server``."""
    return parse_settings({"listen": ["tcp:0:interface=127.0.0.1"], "plugins": ["live"],
                           "websocket": {"ping_interval": 0}, "server": [server]},
                          plugins={"live": LivePlugin()}, base_dir=base_dir)


class LiveView:
    """The live page's state rebuilt from a ``/live/ws`` client's frames."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def state(self) -> dict[str, Any] | None:
        view: dict[str, Any] | None = None
        for raw in self.client.messages:
            frame = json.loads(raw)
            if frame.get("type") == "snapshot":
                view = json.loads(json.dumps(frame["state"]))
            elif frame.get("type") == "delta" and view is not None:
                changes = frame["changes"]
                for key in ("map", "round", "teams"):
                    if key in changes:
                        view[key] = changes[key]
                for pid, player in changes.get("players", {}).items():
                    if player is None:
                        view["players"].pop(pid, None)
                    else:
                        view["players"][pid] = player
        return view

    def complete(self, map_name: str, bots: tuple[str, ...] = BOTS) -> bool:
        """Whether the view shows ``map_name`` and every bot, each with a ping."""
        view = self.state()
        if view is None or view["map"] != map_name:
            return False
        pings = {p["name"]: p["ping"] for p in view["players"].values()}
        return all(pings.get(b) is not None for b in bots) and len(pings) == len(bots)


class OpenArenaLiveTests(unittest.TestCase):
    """A real server first, gamews second: map, players and pings within 2 s of link-up."""

    timeout = 90

    def setUp(self) -> None:
        require_openarena()
        self.reactor: Any = real_reactor()
        self.oa = OpenArenaServer(rcon_password=PASSWORD, bots=BOTS)
        self.addCleanup(self.oa.stop)
        self.oa.start()

    async def start_gamews(self, status_interval: float = 15) -> tuple[GamewsService, int]:
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "oa.rcon").write_text(PASSWORD)
        (tmp / "oa.rcon").chmod(0o600)
        server = {"name": "oa", "kind": "quake3", "rcon": f"127.0.0.1:{self.oa.port}",
                  "password_file": "oa.rcon", "log": f"file:{self.oa.games_log}",
                  "status_interval": status_interval}
        service = GamewsService(live_settings(server, tmp), reactor=self.reactor)
        self.up_at: float | None = None

        def link(state: LinkState) -> None:
            if state is LinkState.UP and self.up_at is None:
                self.up_at = self.reactor.seconds()

        service.servers["oa"].subscribe(link)
        self.started_at = self.reactor.seconds()
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        port = port_of(await service.registry.ports()[0].when_listening())
        return service, port

    async def live(self, port: int) -> LiveView:
        client = await connect(port, "/live/ws")
        self.addCleanup(client.drop)
        return LiveView(client)

    def report(self, what: str, seconds: float) -> None:
        print(f"\n  {what}: {seconds * 1000:.0f} ms", file=sys.stderr)

    async def test_complete_view_within_two_seconds_of_link_up(self) -> None:
        """Started mid-map: /live/ws shows the map and every bot with a ping within 2 s of
        the link coming up, and status answers keep being merged (pings refreshed)."""
        service, port = await self.start_gamews(status_interval=1)
        view = await self.live(port)
        await poll_until(self.reactor, lambda: view.complete("oa_dm1"), timeout=10)
        assert self.up_at is not None
        elapsed = self.reactor.seconds() - self.up_at
        self.report("link-up to complete live view", elapsed)
        self.report("gamews start to complete live view", self.reactor.seconds() - self.started_at)
        self.assertLess(elapsed, 2.0)

        merged: list[ServerStatus] = []

        def seen(envelope: Envelope) -> None:
            if isinstance(envelope.event, ServerStatus):
                merged.append(envelope.event)

        service.events.subscribe(seen, server="oa")
        await poll_until(self.reactor, lambda: len(merged) >= 3, timeout=10)
        state = service.events.state("oa")
        assert state is not None
        latest = {p.player.name: p.ping for p in merged[-1].players}
        self.assertEqual({p.name: p.ping for p in state.players.values()}, latest)
        self.assertEqual(set(latest), set(BOTS))

    async def test_map_change(self) -> None:
        """After ``map oa_dm2`` the view shows the new map and every bot with a ping in 2 s."""
        service, port = await self.start_gamews()
        view = await self.live(port)
        await poll_until(self.reactor, lambda: view.complete("oa_dm1"), timeout=10)
        game = service.servers["oa"]
        await game.rcon("map oa_dm2")
        changed_at = self.reactor.seconds()
        await poll_until(self.reactor, lambda: view.complete("oa_dm2"), timeout=10)
        elapsed = self.reactor.seconds() - changed_at
        self.report("map change to complete live view", elapsed)
        self.assertLess(elapsed, 2.0)

    async def test_pacing_never_loses_an_rcon_command(self) -> None:
        """With status queries every second, 20 rcon commands at once all get their own
        answer (none dropped by the server's 10-then-1/s budget), and the status query
        asked meanwhile is answered too."""
        service, _ = await self.start_gamews(status_interval=1)
        poller = service.getServiceNamed("status:oa")
        assert isinstance(poller, StatusPoller)
        await poll_until(self.reactor, lambda: poller.answers >= 3, timeout=15)
        game = service.servers["oa"]
        assert isinstance(game, GameServer)
        before = poller.answers
        replies = await gatherResults([game.rcon(f"echo pacing-{i}") for i in range(20)])
        for i, reply in enumerate(replies):
            self.assertEqual(reply.strip(), f"pacing-{i}")
        # the status query asked during the burst waited its turn in the same queue
        await poll_until(self.reactor, lambda: poller.answers > before, timeout=5)
