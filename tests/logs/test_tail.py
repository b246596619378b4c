"""Tests for following games.log like ``tail -F`` (task.Clock, real temporary files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import EventBus, Kill
from gamews.logs.quake3 import parse_line
from gamews.logs.service import LinePipeline
from gamews.logs.tail import MAX_LINE, FileTailer, FileTailService
from tests.logs.support import openarena_lines


class TailerTests(SynchronousTestCase):
    """The polling logic."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = self.dir / "games.log"
        self.lines: list[str] = []

    def write(self, data: str, path: Path | None = None) -> None:
        """Append ``data`` to the log."""
        with (path or self.path).open("a", encoding="utf-8") as f:
            f.write(data)

    def tailer(self, replay: bool = False) -> FileTailer:
        """A tailer collecting lines."""
        t = FileTailer(self.path, self.lines.append, replay=replay)
        self.addCleanup(t.close)
        return t

    def test_new_lines_only(self) -> None:
        """Lines already there at start are skipped; later ones are read."""
        self.write("  0:00 old\n")
        t = self.tailer()
        self.assertEqual(t.poll(), 0)
        self.write("  0:01 new\n  0:02 newer\n")
        self.assertEqual(t.poll(), 2)
        self.assertEqual(self.lines, ["  0:01 new", "  0:02 newer"])

    def test_replay(self) -> None:
        """With replay the existing lines are read first."""
        self.write("a\nb\n")
        t = self.tailer(replay=True)
        t.poll()
        self.assertEqual(self.lines, ["a", "b"])

    def test_replay_current_map(self) -> None:
        """replay="map" starts at the last InitGame line, or at the end without one."""
        self.write("  0:00 InitGame: \\mapname\\a\n  0:01 old\n"
                   "  0:00 InitGame: \\mapname\\b\n  0:02 current\n")
        t = FileTailer(self.path, self.lines.append, replay="map")
        self.addCleanup(t.close)
        t.poll()
        self.assertEqual(self.lines, ["  0:00 InitGame: \\mapname\\b", "  0:02 current"])
        other = self.dir / "other.log"
        other.write_text("no map here\n", "utf-8")
        seen: list[str] = []
        t2 = FileTailer(other, seen.append, replay="map")
        self.addCleanup(t2.close)
        self.assertEqual(t2.poll(), 0)

    def test_replay_map_recorded_game(self) -> None:
        """Started late on the recorded log with replay="map", the state knows the players."""
        self.path.write_text("\n".join(openarena_lines()[:470]) + "\n", "utf-8")
        bus = EventBus(Clock())
        t = FileTailer(self.path, LinePipeline(bus, "oa", parse_line), replay="map")
        self.addCleanup(t.close)
        t.poll()
        state = bus.state("oa")
        assert state is not None
        self.assertEqual(state.map, "oa_dm2")
        # In the recorded TDM game all four bots were put on the red team.
        self.assertEqual(sorted((p.name, p.team) for p in state.players.values()),
                         [("Grism", "red"), ("Kyonshi", "red"), ("Major", "red"),
                          ("Sarge", "red")])

    def test_partial_line_waits(self) -> None:
        """A line is handed on only once its newline is written."""
        t = self.tailer()
        t.poll()
        self.write("  0:01 Kill: 0 1 2: A kil")
        t.poll()
        self.assertEqual(self.lines, [])
        self.write("led B by MOD_X\n")
        t.poll()
        self.assertEqual(self.lines, ["  0:01 Kill: 0 1 2: A killed B by MOD_X"])

    def test_truncation(self) -> None:
        """A truncated file is read again from its start."""
        self.write("x" * 100 + "\n")
        t = self.tailer()
        t.poll()
        self.path.write_text("after\n", "utf-8")
        t.poll()
        self.assertEqual(self.lines, ["after"])
        self.assertEqual(t.stats.rotations, 1)

    def test_rotation(self) -> None:
        """After a rename, the old file is drained, then the new one read from its start."""
        self.write("before start\n")
        t = self.tailer()
        t.poll()
        self.write("last of old\n")
        os.rename(self.path, self.dir / "games.log.1")
        self.write("first of new\n")
        t.poll()
        self.assertEqual(self.lines, ["last of old", "first of new"])
        self.write("second\n")
        t.poll()
        self.assertEqual(self.lines[-1], "second")

    def test_missing_then_created(self) -> None:
        """A file absent at start is read from its beginning once it appears."""
        t = self.tailer()
        self.assertEqual(t.poll(), 0)
        self.write("hello\n")
        t.poll()
        self.assertEqual(self.lines, ["hello"])

    def test_unreadable_logged_once(self) -> None:
        """A file that cannot be opened is logged once, not on every poll."""
        logged: list[LogEvent] = []
        observer = cast(ILogObserver, logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.path.mkdir()  # a directory cannot be read as a log
        t = self.tailer()
        for _ in range(3):
            self.assertEqual(t.poll(), 0)
        self.path.rmdir()
        t.poll()
        texts = [formatEvent(e) for e in logged if e.get("log_namespace") == "gamews.logs.tail"]
        self.assertEqual(len(texts), 2, texts)
        self.assertIn("waiting for", texts[1])

    def test_deleted_then_recreated(self) -> None:
        """A deleted file is kept until a new one appears at the path."""
        self.write("")
        t = self.tailer()
        t.poll()
        self.write("written before the delete\n")
        self.path.unlink()
        self.assertEqual(t.poll(), 1)
        self.write("new file\n")
        t.poll()
        self.assertEqual(self.lines, ["written before the delete", "new file"])

    def test_crlf_nul_empty_and_bad_bytes(self) -> None:
        """CR and NUL ends are stripped, empty lines skipped, Latin-1 lines decoded."""
        t = self.tailer()
        t.poll()
        with self.path.open("ab") as f:
            f.write(b"a\r\n\nb\x00\ncaf\xe9\n")
        t.poll()
        self.assertEqual(self.lines, ["a", "b", "café"])

    def test_overlong_line_flushed(self) -> None:
        """A newline-less run past MAX_LINE is handed on rather than kept forever."""
        t = self.tailer()
        t.poll()
        self.write("y" * (MAX_LINE + 10))
        t.poll()
        self.assertEqual([len(x) for x in self.lines], [MAX_LINE + 10])

    def test_sink_errors_counted(self) -> None:
        """A raising sink is logged and counted; later lines still flow."""
        seen: list[str] = []

        def sink(line: str) -> None:
            seen.append(line)
            if line == "bad":
                raise ValueError(line)

        t = FileTailer(self.path, sink)
        self.addCleanup(t.close)
        t.poll()
        self.write("bad\ngood\n")
        t.poll()
        self.assertEqual((seen, t.stats.errors), (["bad", "good"], 1))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class ServiceTests(SynchronousTestCase):
    """The service polls on an injected clock."""

    def test_polls_on_clock(self) -> None:
        """Lines written after start reach the bus on the next tick, not before."""
        path = Path(self.mktemp())
        path.write_text("  0:00 ClientBegin: 9\n", "utf-8")
        clock = Clock()
        bus = EventBus(clock)
        svc = FileTailService(FileTailer(path, LinePipeline(bus, "oa", parse_line)),
                              clock=clock, interval=0.2)
        got: list[str] = []
        bus.subscribe(lambda e: got.append(e.event.type))
        svc.startService()
        with path.open("a") as f:
            f.write("  0:09 Kill: 0 3 8: Sarge killed Major by MOD_PLASMA\n")
        clock.advance(0.1)
        self.assertEqual(got, [])
        clock.advance(0.1)
        self.assertEqual(got, ["kill"])
        self.successResultOf(svc.stopService())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_poll_error_logged_and_loop_survives(self) -> None:
        """An error while polling is logged and counted; polling goes on."""
        clock = Clock()

        class Broken(FileTailer):
            fail = True

            def poll(self) -> int:
                if self.fail:
                    self.fail = False
                    raise OSError("disk")
                return super().poll()

        tailer = Broken(Path(self.mktemp()), lambda line: None)
        svc = FileTailService(tailer, clock=clock, interval=1)
        svc.startService()
        clock.advance(1)
        self.assertEqual(tailer.stats.errors, 1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        svc.stopService()

    def test_bad_interval(self) -> None:
        """A poll interval of 0 is refused."""
        self.assertRaises(ValueError, FileTailService,
                          FileTailer(Path("x"), print), clock=Clock(), interval=0)

    def test_recorded_game_followed(self) -> None:
        """The recorded games.log written in chunks yields all its 32 kills, in order."""
        path = Path(self.mktemp())
        path.write_bytes(b"")
        clock = Clock()
        bus = EventBus(clock)
        kills: list[Kill] = []
        bus.subscribe(lambda e: kills.append(e.event) if isinstance(e.event, Kill) else None)
        svc = FileTailService(FileTailer(path, LinePipeline(bus, "oa", parse_line)),
                              clock=clock, interval=0.1)
        svc.startService()
        lines = openarena_lines()
        for i in range(0, len(lines), 7):
            with path.open("a", encoding="utf-8") as f:
                f.write("".join(x + "\n" for x in lines[i:i + 7]))
            clock.advance(0.1)
        svc.stopService()
        self.assertEqual(len(kills), 32)
        self.assertEqual((kills[0].killer.name, kills[0].victim.name), ("Sarge", "Major"))
        self.assertEqual(kills[0].killer.team, "free")
