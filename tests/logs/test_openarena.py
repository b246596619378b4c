"""Integration: a real OpenArena server's games.log followed into Kill events on the bus.

The server (Debian ``openarena-server``) runs headless on 127.0.0.1 with bots; gamews follows
its ``games.log`` through a ``file:`` log source built from a ``[[server]]`` table. An
inotify watch on the same file notes when each line was written; every bot kill must reach
a bus subscriber as a Kill event within 1 s of that (wall clock). The game runs at
``timescale 4`` so the bots kill each other about four times as often and the test is short.
"""

from __future__ import annotations

from typing import Any
from unittest import SkipTest

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from gamews.events import Envelope, EventBus, Kill
from gamews.logs.quake3 import parse_line
from gamews.logs.service import log_source_from_table
from tests.openarena import OpenArenaServer, require_openarena

KILLS = 3
"""How many kills to wait for."""


def kill_key(event: Kill) -> tuple[Any, ...]:
    """What identifies a kill line (the bus adds teams, so events differ in those)."""
    return (event.game_clock, event.killer.slot, event.victim.slot, event.weapon)


class OpenArenaLogTests(TestCase):
    """Against the real server."""

    timeout = 120

    def setUp(self) -> None:
        require_openarena()
        from tests.support import real_reactor

        self.reactor = real_reactor()
        self.oa = OpenArenaServer(rcon_password="gamewslog",
                                  bots=("Sarge", "Grism", "Kyonshi", "Major", "Ayumi"),
                                  lifetime=150, timescale=4)
        self.oa.start()
        self.addCleanup(self.oa.stop)

    def watch_writes(self, path: FilePath[str]) -> dict[tuple[Any, ...], float]:
        """Note (with inotify) when each kill line appears in ``path``."""
        try:
            from twisted.internet import inotify
        except ImportError as e:  # not Linux
            raise SkipTest(f"inotify unavailable: {e}") from None

        written: dict[tuple[Any, ...], float] = {}
        state = {"pos": 0, "partial": b""}

        def changed(_: object, fp: FilePath[str], mask: int) -> None:
            now = self.reactor.seconds()
            with open(fp.path, "rb") as f:
                f.seek(state["pos"])  # type: ignore[arg-type]
                data = f.read()
            state["pos"] = int(state["pos"]) + len(data)  # type: ignore[call-overload]
            lines = (bytes(state["partial"]) + data).split(b"\n")  # type: ignore[call-overload]
            state["partial"] = lines.pop()
            for raw in lines:
                event = parse_line(raw.decode("utf-8", "replace"))
                if isinstance(event, Kill):
                    written.setdefault(kill_key(event), now)

        notifier = inotify.INotify(self.reactor)
        notifier.startReading()
        self.addCleanup(notifier.loseConnection)
        notifier.watch(path, mask=inotify.IN_MODIFY, callbacks=[changed])
        return written

    async def test_bot_kills_within_one_second(self) -> None:
        """Bots' kills reach the bus as Kill events within 1 s of being written."""
        written = self.watch_writes(FilePath(str(self.oa.games_log)))
        bus = EventBus(self.reactor)
        svc = log_source_from_table(
            {"name": "oa", "rcon": f"127.0.0.1:{self.oa.port}",
             "log": f"file:{self.oa.games_log}"},
            bus=bus, reactor=self.reactor, where="server[0]",
        )
        assert svc is not None
        kills: list[Envelope] = []
        enough: Deferred[None] = Deferred()

        def on_event(envelope: Envelope) -> None:
            if isinstance(envelope.event, Kill):
                kills.append(envelope)
                if len(kills) == KILLS:
                    enough.callback(None)

        bus.subscribe(on_event, server="oa")
        svc.startService()
        self.addCleanup(svc.stopService)
        await enough
        for envelope in kills:
            event = envelope.event
            assert isinstance(event, Kill)
            at = written.get(kill_key(event))
            self.assertIsNotNone(at, f"inotify did not see {event}")
            assert at is not None
            delay = envelope.received - at
            self.assertLess(delay, 1.0, f"{event} reached the bus {delay:.3f}s after writing")
            self.assertTrue(event.killer.name and event.victim.name)
            self.assertEqual(event.killer.key, f"client:{event.killer.slot}")
            self.assertTrue(event.weapon.startswith("MOD_"))
        state = bus.state("oa")
        assert state is not None
        self.assertGreaterEqual(sum(p.kills for p in state.players.values()), KILLS)
        self.assertEqual(svc.stats.errors, 0)  # type: ignore[attr-defined]
