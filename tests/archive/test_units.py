"""The archive's parts without threads or sockets: match boundaries, the queries,
seeking, retention, export and import, the config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamews.archive.config import ArchiveConfig, data_dir
from gamews.archive.recorder import Recorder
from gamews.archive.recording import archive_key
from gamews.archive.replay import Replay, ReplaySocket
from gamews.archive.store import (
    events_after,
    export_header,
    get_match,
    import_match,
    iter_events,
    list_matches,
    list_players,
    player_record,
    prune,
    seek,
    summary,
    timeline,
)
from gamews.config import parse_config
from gamews.errors import ConfigError
from gamews.events import (
    EventBus,
    Kill,
    MapChange,
    MatchEnd,
    MatchStart,
    MatchState,
    Player,
    TeamScore,
)
from gamews.testing import PluginTestContext
from tests.archive.support import InlineDatabase, play_demo

A = Player("Ann", "[U:1:10]", 2, "CT")
B = Player("Bob", "[U:1:11]", 3, "TERRORIST")
BOT = Player("Bot", "bot:4", 4, "CT", bot=True)


class Harness:
    """A bus, a clock, an inline database and a recorder on server ``alpha``."""

    def __init__(self, case: SynchronousTestCase, *, database: InlineDatabase | None = None,
                 ) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.bus = EventBus(self.clock)
        self.bus.add_server("alpha")
        self.db = database or InlineDatabase(Path(case.mktemp()))
        self.recorder = Recorder(self.db, self.bus, ["alpha"], clock=self.clock,  # type: ignore[arg-type]
                                 flush_every=0.5, checkpoint_every=5)
        self.recorder.startService()

    def publish(self, *events: Any, step: float = 1.0) -> None:
        for event in events:
            self.bus.publish("alpha", event)
            self.clock.advance(step)

    def flush(self) -> None:
        self.clock.advance(0.5)

    def matches(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.db.sync(list_matches)["matches"]
        return result


class MatchBoundaryTests(SynchronousTestCase):
    """A match runs from a map start to the next; its status says how it ended."""

    def test_finished_then_interrupted(self) -> None:
        """match_end finishes a match (later lines stay in it); a map start with no
        match_end before it interrupts the one running."""
        h = Harness(self)
        h.publish(MapChange("de_dust2"), Kill(A, B, "ak47", headshot=True), MatchEnd("over"),
                  TeamScore("CT", 1))
        h.publish(MapChange("de_nuke"), Kill(B, A, "awp"))
        h.publish(MapChange("de_inferno"))
        h.flush()
        newest, middle, oldest = h.matches()
        self.assertEqual((oldest["map"], oldest["status"], oldest["events"]),
                         ("de_dust2", "finished", 4))
        self.assertEqual(oldest["teams"], {"CT": 1})
        self.assertEqual(oldest["ended"], 1_800_000_002.0)
        self.assertEqual((middle["map"], middle["status"]), ("de_nuke", "interrupted"))
        self.assertEqual(middle["ended"], 1_800_000_005.0)
        self.assertEqual((newest["status"], newest["ended"]), ("live", None))
        self.assertFalse(oldest["joined_mid_match"])

    def test_joined_mid_match(self) -> None:
        """Events with no match open (gamews started mid-match) open one, marked so."""
        h = Harness(self)
        h.publish(Kill(A, B, "ak47"))
        h.flush()
        (match,) = h.matches()
        self.assertTrue(match["joined_mid_match"])
        self.assertEqual(match["status"], "live")

    def test_match_start_after_map_start_continues(self) -> None:
        """Loading map, Started map and Match_Start with no kill between are one match;
        a Match_Start after kills starts another."""
        h = Harness(self)
        h.publish(MapChange("de_dust2", "loading"), MapChange("de_dust2"),
                  MatchStart("de_dust2"), Kill(A, B, "ak47"), MatchStart("de_dust2"))
        h.flush()
        self.assertEqual([m["status"] for m in h.matches()], ["live", "interrupted"])
        self.assertEqual(h.matches()[1]["events"], 4)
        self.assertFalse(h.matches()[1]["joined_mid_match"])

    def test_restart_closes_live_matches(self) -> None:
        """A match left live by a stopped gamews is interrupted when recording starts again;
        an orderly stop interrupts the match it was recording."""
        h = Harness(self)
        h.publish(MapChange("de_dust2"), Kill(A, B, "ak47"))
        h.flush()
        h.recorder.stopService()
        self.assertEqual(h.matches()[0]["status"], "interrupted")
        h.db.sync(lambda c: c.execute("UPDATE matches SET status = 'live'"))
        h2 = Harness(self, database=h.db)
        h2.flush()  # with the first write, even with nothing to record
        self.assertEqual([m["status"] for m in h2.matches()], ["interrupted"])

    def test_database_down_then_back_loses_nothing(self) -> None:
        """Batches that fail are written with the next flush, once each."""
        h = Harness(self)
        h.db.broken = True
        h.publish(MapChange("de_dust2"), Kill(A, B, "ak47"))
        h.flush()
        h.publish(Kill(B, A, "awp"))
        h.flush()
        h.db.broken = False
        h.publish(Kill(A, B, "m4a1"))
        h.flush()
        self.assertTrue(self.flushLoggedErrors(ConnectionError))
        (match,) = h.matches()
        self.assertEqual(match["events"], 4)
        rows = h.db.sync(events_after, match["id"], -1)
        self.assertEqual([seq for seq, _, _ in rows], [1, 2, 3, 4])

    def test_database_down_at_start(self) -> None:
        """Matches a crash left live are interrupted by the first write that succeeds,
        even when the database was down at start."""
        h = Harness(self)
        h.publish(MapChange("de_dust2"))
        h.flush()
        h.db.sync(lambda c: c.execute("UPDATE matches SET status = 'live'"))
        h.db.broken = True
        h2 = Harness(self, database=h.db)
        h2.publish(MapChange("de_nuke"))
        h2.flush()
        h.db.broken = False
        h2.flush()
        self.assertTrue(self.flushLoggedErrors(ConnectionError))
        self.assertEqual([(m["map"], m["status"]) for m in h2.matches()],
                         [("de_nuke", "live"), ("de_dust2", "interrupted")])

    def test_flush_every_half_second(self) -> None:
        """Events are written within one flush interval (a crash loses at most that)."""
        h = Harness(self)
        h.publish(MapChange("de_dust2"), step=0.1)
        self.assertEqual(h.matches(), [])
        h.clock.advance(0.4)
        self.assertEqual(len(h.matches()), 1)


class PlayerTests(SynchronousTestCase):
    """Players across matches: Steam IDs, names for Quake 3, no bots."""

    def test_keys(self) -> None:
        """A Steam ID is the key; Quake 3's client numbers are not (the name is); bots,
        the world and the console have none."""
        self.assertEqual(archive_key(A), "[U:1:10]")
        self.assertEqual(archive_key(Player("Sarge", "client:3", 3)), "name:Sarge")
        self.assertIsNone(archive_key(BOT))
        self.assertIsNone(archive_key(Player("World", "world")))
        self.assertIsNone(archive_key(Player("Console", "console")))

    def test_leaderboard_and_record(self) -> None:
        """Kills, deaths, K/D, headshot % and matches add up over matches; names used
        are listed; bots are left out."""
        h = Harness(self)
        h.publish(MapChange("de_dust2"), Kill(A, B, "ak47", headshot=True), Kill(A, BOT, "awp"),
                  Kill(B, A, "awp"), MatchEnd())
        renamed = Player("Annie", "[U:1:10]", 2, "CT")
        h.publish(MapChange("de_nuke"), Kill(renamed, B, "ak47"))
        h.flush()
        board = h.db.sync(list_players)["players"]
        self.assertEqual([p["id"] for p in board], ["[U:1:10]", "[U:1:11]"])
        ann = board[0]
        self.assertEqual((ann["name"], ann["kills"], ann["deaths"], ann["matches"]),
                         ("Annie", 3, 1, 2))
        self.assertEqual((ann["kd"], ann["headshot_pct"]), (3.0, 33.3))
        record = h.db.sync(player_record, "[U:1:10]")
        self.assertEqual({n["name"] for n in record["names"]}, {"Ann", "Annie"})
        self.assertEqual([m["map"] for m in record["recent"]], ["de_nuke", "de_dust2"])
        self.assertIsNone(h.db.sync(player_record, "bot:4"))
        only = h.db.sync(list_matches, player="Annie")["matches"]
        self.assertEqual([m["map"] for m in only], ["de_nuke"])


class QueryTests(SynchronousTestCase):
    """Listing, summaries, seeking and streaming a match recorded from the demo game."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.h.recorder.accountant.checkpoint_every = 50
        play_demo(self.h.bus, self.h.clock, 400, server="alpha")
        self.h.flush()

    def test_list_filters_and_pages(self) -> None:
        """Newest first, filtered by server and map, paginated with the total."""
        everything = self.h.db.sync(list_matches, per_page=2)
        self.assertGreaterEqual(everything["total"], 3)
        self.assertEqual(len(everything["matches"]), 2)
        starts = [m["started"] for m in self.h.db.sync(list_matches)["matches"]]
        self.assertEqual(starts, sorted(starts, reverse=True))
        first_map = self.h.matches()[-1]["map"]
        only = self.h.db.sync(list_matches, map=first_map)["matches"]
        self.assertTrue(only and all(m["map"] == first_map for m in only))
        self.assertEqual(self.h.db.sync(list_matches, server="nope")["total"], 0)

    def test_seek_gives_the_state_at_that_moment(self) -> None:
        """The state at t from the nearest checkpoint equals the state from replaying every
        event up to t."""
        match = next(m for m in self.h.matches() if m["status"] == "finished")
        rows = self.h.db.sync(events_after, match["id"], -1, 10**6)
        for t in (0.0, 7.5, match["duration"] / 2, match["duration"] + 5):
            state, ahead = self.h.db.sync(seek, match["id"], t, "alpha")
            expected = self._replayed(match, rows, match["started"] + t)
            self.assertEqual(state.snapshot(), expected.snapshot())
            if ahead:
                self.assertGreater(ahead[0][1], match["started"] + t)

    def _replayed(self, match: dict[str, Any], rows: list[tuple[int, float, str]],
                  until: float) -> MatchState:
        from gamews.events import envelope_from_json

        header = self.h.db.sync(export_header, match["id"])
        state = MatchState("alpha")
        state.restore(header["state"])
        for _, t, data in rows:
            if t <= until:
                state.apply(envelope_from_json(json.loads(data)))
        return state

    def test_summary(self) -> None:
        """The match page's data: final scoreboard, rounds with team scores, kills, chat."""
        match = next(m for m in self.h.matches() if m["status"] == "finished")
        s = self.h.db.sync(summary, match["id"])
        self.assertEqual(s["teams"], match["teams"])
        self.assertTrue(s["rounds"] and all(r["teams"] for r in s["rounds"]))
        self.assertEqual(s["rounds"][-1]["teams"], match["teams"])
        self.assertTrue(s["kills"] and s["chat"] and s["scoreboard"])
        marks = self.h.db.sync(timeline, match["id"])
        self.assertEqual(len(marks["kills"]), len(s["kills"]))
        self.assertIsNone(self.h.db.sync(summary, 10**9))

    def test_pages_show_game_text_as_text(self) -> None:
        """Player names and chat (the demo has a name that is an HTML tag) are escaped in
        the list, the match page and the player pages."""
        from gamews.archive.web import _match_html, _matches_html, _player_html, _players_html

        match = next(m for m in self.h.matches() if m["status"] == "finished")
        players = self.h.db.sync(list_players, per_page=200)
        record = self.h.db.sync(player_record, players["players"][0]["id"])
        pages = [_matches_html(self.h.db.sync(list_matches), {"player": "<b>"}),
                 _match_html(self.h.db.sync(summary, match["id"])), _players_html(players),
                 _player_html(record)]
        text = b"".join(p or b"" for p in pages)
        self.assertIn(b"&lt;img src=x onerror=alert(1)&gt;", text)
        self.assertNotIn(b"<img", text)
        self.assertNotIn(b"<b>", text)

    def test_events_stream_in_pages(self) -> None:
        """Every event once, in seq order, a page at a time."""
        match = self.h.matches()[-1]
        seqs = [json.loads(line)["seq"] for line in iter_events(self.h.db.conn, match["id"],
                                                                page=7)]
        self.assertEqual(seqs, list(range(match["first_seq"], match["last_seq"] + 1)))

    def test_export_then_import(self) -> None:
        """A match exported as NDJSON imports as an equal match (another id)."""
        match = next(m for m in self.h.matches() if m["status"] == "finished")
        header = self.h.db.sync(export_header, match["id"])
        lines = [json.dumps(header), *list(iter_events(self.h.db.conn, match["id"]))]
        other = InlineDatabase(Path(self.mktemp()))
        new_id = other.sync(import_match, lines)
        copy = other.sync(get_match, new_id)
        for key in ("server", "map", "started", "ended", "status", "events", "teams",
                    "players", "first_seq", "last_seq"):
            self.assertEqual(copy[key], match[key], key)
        mid = match["duration"] / 2
        self.assertEqual(other.sync(seek, new_id, mid, "alpha")[0].snapshot(),
                         self.h.db.sync(seek, match["id"], mid, "alpha")[0].snapshot())

    def test_import_refuses_garbage(self) -> None:
        """A file that is not a match export is refused with the line at fault."""
        with self.assertRaisesRegex(ValueError, "line 2: not JSON"):
            self.h.db.sync(import_match, ['{"type": "match"}', "nope"])
        with self.assertRaisesRegex(ValueError, "unknown event type"):
            self.h.db.sync(import_match, ['{"type": "bogus", "seq": 1}'])
        with self.assertRaisesRegex(ValueError, "no events"):
            self.h.db.sync(import_match, [])

    def test_prune(self) -> None:
        """keep_matches keeps the newest; keep_days drops old ones; live ones stay."""
        total = self.h.db.sync(list_matches)["total"]
        gone = self.h.db.sync(prune, keep_days=0, keep_matches=2, now=0)
        self.assertEqual(gone, total - 3)  # the live one is not counted
        left = self.h.matches()
        self.assertEqual(len(left), 3)
        gone = self.h.db.sync(prune, keep_days=1, keep_matches=0,
                              now=self.h.clock.seconds() + 2 * 86400)
        self.assertEqual(gone, 2)
        self.assertEqual([m["status"] for m in self.h.matches()], ["live"])
        self.assertEqual(self.h.db.sync(lambda c: c.execute(
            "SELECT COUNT(*) FROM events WHERE match_id NOT IN (SELECT id FROM matches)"
        ).fetchone())[0], 0)


class ReplayTests(SynchronousTestCase):
    """A replay sends a snapshot at the seek point, then deltas on its clock."""

    def test_play_at_speed_reaches_the_final_state(self) -> None:
        """Seek, play at x8: consecutive deltas, then the end with the final scores."""
        h = Harness(self)
        play_demo(h.bus, h.clock, 200, server="alpha")
        h.flush()
        match = next(m for m in h.matches() if m["status"] == "finished")
        frames: list[dict[str, Any]] = []
        clock = Clock()
        replay = Replay(h.db, match, frames.append, clock)  # type: ignore[arg-type]
        replay.seek(match["duration"] / 2, playing=False)
        snapshot = frames[0]
        self.assertEqual(snapshot["type"], "snapshot")
        expected, _ = h.db.sync(seek, match["id"], match["duration"] / 2, "alpha")
        self.assertEqual(snapshot["state"]["teams"], expected.teams)
        replay.set_speed(8)
        replay.play()
        clock.pump([0.25] * int(match["duration"] * 4 / 8 + 8))
        deltas = [f for f in frames if f["type"] == "delta"]
        self.assertEqual([d["seq"] for d in deltas],
                         list(range(snapshot["seq"] + 1, match["last_seq"] + 1)))
        teams = dict(snapshot["state"]["teams"])
        for d in deltas:
            teams = d["changes"].get("teams", teams)
        self.assertEqual(teams, match["teams"])
        self.assertEqual(frames[-1]["type"], "replay")
        self.assertTrue(frames[-1]["ended"])


    def test_ends_whatever_the_rounding(self) -> None:
        """A match whose last moment is no round number still plays to its end (the clock
        stops at the last event, not a rounded length)."""
        h = Harness(self)
        h.publish(MapChange("de_dust2"), Kill(A, B, "ak47"), Kill(B, A, "awp"),
                  MatchEnd(), step=1.00017)
        h.flush()
        (match,) = h.matches()
        frames: list[dict[str, Any]] = []
        clock = Clock()
        replay = Replay(h.db, match, frames.append, clock)  # type: ignore[arg-type]
        replay.seek(0, playing=True)
        replay.set_speed(8)
        clock.pump([0.1] * 20)
        self.assertEqual(frames[-1]["type"], "replay")
        self.assertTrue(frames[-1]["ended"])
        self.assertEqual([f["seq"] for f in frames if f["type"] == "delta"], [2, 3, 4])


class ConfigTests(SynchronousTestCase):
    """The [archive] table and archive = false."""

    def test_defaults(self) -> None:
        """SQLite under the data directory; retention on."""
        config = ArchiveConfig.from_table({}, environ={"XDG_DATA_HOME": "/srv/data"})
        self.assertEqual(config.database, "sqlite:/srv/data/gamews/archive.sqlite")
        self.assertEqual(data_dir({"GAMEWS_DATA": "/x"}), Path("/x"))
        self.assertEqual((config.keep_days, config.keep_matches, config.record), (90, 10_000,
                                                                                  True))

    def test_bad_settings_name_the_key(self) -> None:
        """Each bad setting is refused naming its key; no password in a URL."""
        for table, key in (({"database": "mysql://x"}, "archive.database"),
                           ({"database": "postgresql://u:hunter2@h/db"}, "archive.database"),
                           ({"password": "x"}, "archive.password"),
                           ({"keep_days": -1}, "archive.keep_days"),
                           ({"flush_every": 2}, "archive.flush_every"),
                           ({"record": "yes"}, "archive.record"),
                           ({"wat": 1}, "archive.wat")):
            with self.assertRaises(ConfigError) as e:
                ArchiveConfig.from_table(table, environ={})
            self.assertEqual(e.exception.key, key)
            self.assertNotIn("hunter2", str(e.exception))

    def test_password_from_env(self) -> None:
        """The PostgreSQL password comes from a file or the environment."""
        config = ArchiveConfig.from_table({"database": "postgresql://u@h/db",
                                           "password_env": "PW"}, environ={"PW": "s3"})
        self.assertIsNotNone(config.password)
        self.assertNotIn("s3", repr(config))

    def test_archive_false(self) -> None:
        """archive = false, or an [archive] table; anything else is refused."""
        self.assertIs(parse_config({"archive": False}).archive, False)
        self.assertEqual(parse_config({"archive": {"keep_days": 3}}).archive, {"keep_days": 3})
        with self.assertRaises(ConfigError):
            parse_config({"archive": True})


class TapTests(SynchronousTestCase):
    """twistd gamews builds the archive by default, not with archive = false."""

    def _service(self, toml: str) -> Any:
        from tests.support import service_of

        path = Path(self.mktemp())
        path.write_text(toml)
        return service_of(self, ["--config", str(path)])

    def test_default_and_off(self) -> None:
        """The archive is there by default and gone with archive = false."""
        on = self._service("demo = true\n[archive]\ndatabase = \"sqlite:a.sqlite\"\n")
        self.assertIsNotNone(on.getServiceNamed("archive"))
        off = self._service("demo = true\narchive = false\n")
        self.assertRaises(KeyError, off.getServiceNamed, "archive")




class ReplaySocketTests(SynchronousTestCase):
    """/matches/ws: frames checked, opens answered, floods refused."""

    def test_open_bad_frames_and_floods(self) -> None:
        """An open gets hello, link, timeline, snapshot and replay; an unknown match and a
        bad frame get errors; past 20 frames at once, 'rate limited'."""
        h = Harness(self)
        h.publish(MapChange("de_dust2"), Kill(A, B, "ak47"))
        h.flush()
        context = PluginTestContext("archive")
        sock = ReplaySocket(context, h.db)  # type: ignore[arg-type]
        sock.start()
        child = context.connect("/matches/ws", protocols=("gamews.v1",))
        self.assertEqual(child.subprotocol, "gamews.v1")
        child.receive({"type": "open", "match": 1, "t": 0, "playing": False})
        self.assertEqual([f["type"] for f in child.sent],
                         ["hello", "link", "timeline", "snapshot", "replay"])
        child.receive({"type": "open", "match": 999})
        child.receive("[1, 2]")
        child.receive({"type": "speed", "speed": 3})
        self.assertEqual([f["reason"] for f in child.of_type("error")],
                         ["no such match", "expected a JSON object with a type",
                          "bad 'speed' frame"])
        child.sent.clear()
        for _ in range(25):
            child.receive({"type": "pause"})
        self.assertEqual(len(child.of_type("error")), 8)  # 3 + 17 of the burst went through
        child.drop()
        self.assertEqual(sock.replays, {})


class ImportTests(SynchronousTestCase):
    """The archive reaches plugins only through gamews.api."""

    def test_no_plugin_imports(self) -> None:
        """No module of gamews/archive imports gamews.plugins (nor anything under it)."""
        from tests.test_boundaries import import_graph

        graph = import_graph()
        archive = {m: deps for m, deps in graph.items() if m.startswith("gamews.archive")}
        self.assertIn("gamews.archive.replay", archive)
        self.assertIn("gamews.api", archive["gamews.archive.replay"])
        self.assertEqual({m: sorted(d for d in deps if d.startswith("gamews.plugins"))
                          for m, deps in archive.items()
                          if any(d.startswith("gamews.plugins") for d in deps)}, {})
