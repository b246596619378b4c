"""Tests for gamews.events: JSON form, match state, event bus."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, cast

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import (
    EVENT_TYPES,
    Chat,
    Connected,
    Disconnected,
    Envelope,
    Event,
    EventBus,
    GameShutdown,
    Kill,
    MapChange,
    MatchState,
    NameChange,
    Player,
    PlayerInfo,
    RoundStart,
    Suicide,
    TeamChange,
    TeamScore,
    TeamScores,
    TeamTriggered,
    Unknown,
    WorldKill,
)
from gamews.logs import quake3, source

ANN = Player("Ann", "[U:1:1]", 2, "CT", steam_id="[U:1:1]")
BOB = Player("Bob", "bot:3", 3, "TERRORIST", bot=True)


def kill(a: Player = ANN, b: Player = BOB) -> Kill:
    """A kill of ``b`` by ``a``."""
    return Kill(a, b, "ak47", True, ("headshot",), (1.0, 2.0, 3.0), None,
                log_time="2026-11-28T09:00:00")


class JsonTests(SynchronousTestCase):
    """The documented JSON schema."""

    def test_common_keys(self) -> None:
        """Every object has type, server, seq, received and the line's time stamps."""
        env = Envelope(7, "alpha", 12.5, kill())
        obj = json.loads(env.to_json_text())
        self.assertEqual(obj["type"], "kill")
        self.assertEqual(obj["server"], "alpha")
        self.assertEqual(obj["seq"], 7)
        self.assertEqual(obj["received"], 12.5)
        self.assertEqual(obj["log_time"], "2026-11-28T09:00:00")
        self.assertIsNone(obj["game_clock"])

    def test_players_positions_flags(self) -> None:
        """Players become objects, positions lists, flags lists."""
        obj = Envelope(1, "a", 0.0, kill()).to_json()
        self.assertEqual(obj["killer"], {"name": "Ann", "id": "[U:1:1]", "slot": 2,
                                         "team": "CT", "bot": False})
        self.assertEqual(obj["victim"]["bot"], True)
        self.assertEqual(obj["killer_pos"], [1.0, 2.0, 3.0])
        self.assertIsNone(obj["victim_pos"])
        self.assertEqual(obj["flags"], ["headshot"])
        self.assertIs(obj["headshot"], True)

    def test_properties_are_objects(self) -> None:
        """Name/value pairs (settings, properties, scores) become JSON objects."""
        obj = Envelope(1, "a", 0.0, TeamScores((("red", 8), ("blue", 5)))).to_json()
        self.assertEqual(obj["scores"], {"red": 8, "blue": 5})
        obj = Envelope(1, "a", 0.0, TeamTriggered("CT", "x", (("CT", "1"),))).to_json()
        self.assertEqual(obj["properties"], {"CT": "1"})
        obj = Envelope(1, "a", 0.0, kill()).to_json()
        self.assertEqual((obj["properties"], obj["flags"]), ({}, ["headshot"]))
        obj = Envelope(1, "a", 0.0, Kill(ANN, BOB, "x")).to_json()
        self.assertEqual((obj["properties"], obj["flags"]), ({}, []))
        self.assertEqual(Envelope(1, "a", 0.0, MapChange("m")).to_json()["settings"], {})

    def test_every_type_registered(self) -> None:
        """EVENT_TYPES names each class by its own unique type string."""
        self.assertEqual(len(EVENT_TYPES), 31)  # with custom (the bridge)
        for name, cls in EVENT_TYPES.items():
            self.assertEqual(cls.type, name)

    def test_schema_documented(self) -> None:
        """Each event type and each of its fields is named in the module's schema table."""
        import gamews.events

        doc = gamews.events.__doc__ or ""
        for name, cls in EVENT_TYPES.items():
            self.assertIn(f"``{name}``", doc)
            for field_name in Envelope(1, "s", 0.0, RoundStart()).to_json():
                self.assertIn(f"``{field_name}``", doc)
            row = doc.split(f"``{name}``", 1)[1].split("\n``", 1)[0]
            for f in fields(cls):
                if f.name not in ("log_time", "game_clock"):
                    self.assertIn(f"``{f.name}``", row, (name, f.name))

    def test_no_addresses(self) -> None:
        """No event type has a field that could carry an IP address."""
        for cls in EVENT_TYPES.values():
            self.assertFalse({"address", "addr", "ip"} & {f.name for f in fields(cls)}, cls)

    def test_non_ascii_kept(self) -> None:
        """Non-ASCII names survive as themselves in the JSON text."""
        env = Envelope(1, "a", 0.0, Chat(Player("Ⓐnn 😀", "x"), "héllo"))
        self.assertIn("Ⓐnn 😀", env.to_json_text())

    def test_events_are_frozen(self) -> None:
        """Events cannot be changed once made."""
        e = RoundStart()
        with self.assertRaises(AttributeError):
            e.log_time = "x"  # type: ignore[misc]


def env(seq: int, event: Event, received: float = 100.0) -> Envelope:
    """An envelope for server ``s``."""
    return Envelope(seq, "s", received, event)


class MatchStateTests(SynchronousTestCase):
    """The match state follows the events."""

    def test_kills_deaths_feed(self) -> None:
        """A kill counts for the killer and the victim and enters the kill feed."""
        st = MatchState("s", kill_feed_size=2)
        for i in range(1, 4):
            st.apply(env(i, kill()))
        st.apply(env(4, Suicide(BOB, "world")))
        snap = st.snapshot()
        players = {p["id"]: p for p in snap["players"]}
        self.assertEqual(players["[U:1:1]"]["kills"], 3)
        self.assertEqual(players["bot:3"]["deaths"], 4)
        self.assertEqual([k["seq"] for k in snap["kill_feed"]], [3, 4])
        self.assertEqual(snap["seq"], 4)

    def test_chat_backlog_bounded(self) -> None:
        """The chat backlog keeps the last ``chat_size`` messages."""
        st = MatchState("s", chat_size=3)
        for i in range(1, 11):
            st.apply(env(i, Chat(ANN, f"m{i}")))
        self.assertEqual([c["text"] for c in st.snapshot()["chat"]], ["m8", "m9", "m10"])

    def test_connect_team_name_disconnect(self) -> None:
        """Players are added, renamed, moved and removed, with their connection time."""
        st = MatchState("s")
        st.apply(env(1, Connected(Player("Ann", "[U:1:1]", 2)), 50.0))
        st.apply(env(2, TeamChange(ANN, "TERRORIST", "CT"), 60.0))
        st.apply(env(3, NameChange(Player("Ann", "[U:1:1]", 2, "TERRORIST"), "Anna"), 70.0))
        p = st.snapshot()["players"][0]
        self.assertEqual((p["name"], p["team"], p["connected_at"]), ("Anna", "TERRORIST", 50.0))
        st.apply(env(4, Disconnected(Player("Anna", "[U:1:1]", 2), "Disconnect")))
        self.assertEqual(st.snapshot()["players"], [])

    def test_scores_rounds_map(self) -> None:
        """Team scores, CS round-end scores, rounds and the map are tracked."""
        st = MatchState("s")
        st.apply(env(1, MapChange("de_dust2")))
        st.apply(env(2, RoundStart()))
        st.apply(env(3, TeamTriggered("CT", "SFUI_Notice_CTs_Win", (("CT", "1"), ("T", "0")))))
        st.apply(env(4, TeamScore("CT", 1, 5)))
        st.apply(env(5, RoundStart()))
        snap = st.snapshot()
        self.assertEqual(snap["map"], "de_dust2")
        self.assertEqual(snap["round"], 2)
        self.assertEqual(snap["teams"], {"CT": 1, "TERRORIST": 0})
        st.apply(env(6, MapChange("de_inferno")))
        self.assertEqual((st.snapshot()["round"], st.snapshot()["teams"]), (0, {}))

    def test_quake3_names_resolved(self) -> None:
        """Quake 3 chat by name and kills by number are completed from player info."""
        st = MatchState("s")
        st.apply(env(1, PlayerInfo(quake3.player(0, "Sarge", "red", True))))
        chat = st.resolve(Chat(Player("Sarge", "name:Sarge"), "hi"))
        assert isinstance(chat, Chat)
        self.assertEqual((chat.player.key, chat.player.team, chat.player.bot),
                         ("client:0", "red", True))
        k = st.resolve(Kill(quake3.player(0, "Sarge"), quake3.player(1, "Grism"), "MOD_X"))
        assert isinstance(k, Kill)
        self.assertEqual(k.killer.team, "red")
        self.assertIsNone(k.victim.team)
        unknown = Chat(Player("Nobody", "name:Nobody"), "x")
        self.assertIs(st.resolve(unknown), unknown)

    def test_quake3_team_and_name_changes(self) -> None:
        """A known player's user info becomes TeamChange or NameChange when only one changed."""
        bus = EventBus(Clock())
        bus.publish("oa", PlayerInfo(quake3.player(2, "Kyonshi", "red", True)))
        e = bus.publish("oa", PlayerInfo(quake3.player(2, "Kyonshi", "blue", True))).event
        assert isinstance(e, TeamChange)
        self.assertEqual((e.player.team, e.team, e.old_team), ("red", "blue", "red"))
        e = bus.publish("oa", PlayerInfo(quake3.player(2, "Kyo", "blue", True))).event
        assert isinstance(e, NameChange)
        self.assertEqual((e.player.name, e.new_name), ("Kyonshi", "Kyo"))
        e = bus.publish("oa", PlayerInfo(quake3.player(2, "K", "red", True))).event
        self.assertIsInstance(e, PlayerInfo)
        players = bus.state("oa").snapshot()["players"]  # type: ignore[union-attr]
        self.assertEqual([(p["name"], p["team"]) for p in players], [("K", "red")])

    def test_shutdown_clears_players(self) -> None:
        """Quake 3 ShutdownGame drops every client; a world kill counts a death."""
        st = MatchState("s")
        st.apply(env(1, PlayerInfo(quake3.player(4, "Ayumi"))))
        st.apply(env(2, WorldKill(quake3.player(4, "Ayumi"), "MOD_SUICIDE")))
        self.assertEqual(st.snapshot()["players"][0]["deaths"], 1)
        st.apply(env(3, GameShutdown()))
        self.assertEqual(st.snapshot()["players"], [])

    def test_negative_sizes_refused(self) -> None:
        """Backlog sizes below zero are refused."""
        self.assertRaises(ValueError, MatchState, "s", chat_size=-1)

    def test_fixture_game(self) -> None:
        """Replaying the recorded OpenArena game gives Sarge's final 10 kills on oa_dm1."""
        from tests.logs.support import openarena_lines

        bus = EventBus(Clock())
        states = []
        for line in openarena_lines():
            bus.publish("oa", quake3.parse_line(line))
            if line.endswith("Exit: Fraglimit hit."):
                states.append(bus.state("oa").snapshot())  # type: ignore[union-attr]
        snap = states[0]
        self.assertEqual(snap["map"], "oa_dm1")
        sarge = next(p for p in snap["players"] if p["name"] == "Sarge")
        self.assertEqual((sarge["kills"], sarge["score"], sarge["id"]), (10, 10, "client:0"))
        final = bus.state("oa").snapshot()  # type: ignore[union-attr]
        self.assertEqual(final["map"], "oa_dm2")
        self.assertEqual(final["players"], [])
        self.assertTrue(all(c["player"]["id"].startswith("client:") for c in final["chat"]))


class Recorder:
    """A subscriber that records what it gets."""

    def __init__(self) -> None:
        self.got: list[Envelope] = []

    def __call__(self, envelope: Envelope) -> None:
        self.got.append(envelope)


class BusTests(SynchronousTestCase):
    """Publishing, subscribing, isolation of bad subscribers."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.bus = EventBus(self.clock, queue_size=5, max_failures=3, batch=100)
        self.logged: list[LogEvent] = []
        observer = cast(ILogObserver, self.logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def test_seq_per_server(self) -> None:
        """Each server's events are numbered 1, 2, 3... and stamped with the clock."""
        a = [self.bus.publish("a", RoundStart()) for _ in range(3)]
        b = self.bus.publish("b", RoundStart())
        self.assertEqual([e.seq for e in a], [1, 2, 3])
        self.assertEqual(b.seq, 1)
        self.assertEqual(b.received, 1000.0)

    def test_per_server_and_all(self) -> None:
        """A per-server subscriber gets only its server; an all-subscriber gets both."""
        one, every = Recorder(), Recorder()
        self.bus.subscribe(one, server="a")
        self.bus.subscribe(every)
        self.bus.publish("a", RoundStart())
        self.bus.publish("b", RoundStart())
        self.assertEqual([e.server for e in one.got], ["a"])
        self.assertEqual([e.server for e in every.got], ["a", "b"])

    def test_snapshot_then_stream_no_gap_no_duplicate(self) -> None:
        """The first event after a snapshot has the snapshot's seq + 1, and none repeat."""
        for _ in range(4):
            self.bus.publish("a", kill())
        rec = Recorder()
        snap, _ = self.bus.subscribe_with_snapshot("a", rec)
        for _ in range(3):
            self.bus.publish("a", kill())
        self.assertEqual(snap["seq"], 4)
        self.assertEqual(len(snap["kill_feed"]), 4)
        self.assertEqual([e.seq for e in rec.got], [5, 6, 7])

    def test_raising_subscriber_isolated_then_dropped(self) -> None:
        """A raising subscriber is logged, then unsubscribed; the others go on."""
        calls = []

        def bad(envelope: Envelope) -> None:
            calls.append(envelope.seq)
            raise RuntimeError("boom")

        good = Recorder()
        sub = self.bus.subscribe(bad, name="bad")
        self.bus.subscribe(good)
        for _ in range(5):
            self.bus.publish("a", RoundStart())
        self.assertEqual(calls, [1, 2, 3])
        self.assertFalse(sub.active)
        self.assertEqual(len(good.got), 5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)
        self.assertTrue(any("unsubscribed" in str(e.get("log_format")) for e in self.logged))

    def test_failures_must_be_in_a_row(self) -> None:
        """A success resets the failure count, so occasional errors do not unsubscribe."""
        def flaky(envelope: Envelope) -> None:
            if envelope.seq % 2:
                raise ValueError("odd")

        sub = self.bus.subscribe(flaky)
        for _ in range(10):
            self.bus.publish("a", RoundStart())
        self.assertTrue(sub.active)
        self.assertEqual(sub.total_failures, 5)
        self.flushLoggedErrors(ValueError)

    def test_slow_subscriber_bounded(self) -> None:
        """A subscriber busy on a Deferred queues at most queue_size events, oldest dropped."""
        pending: list[Deferred[None]] = []
        seen: list[int] = []

        def slow(envelope: Envelope) -> Deferred[None]:
            seen.append(envelope.seq)
            d: Deferred[None] = Deferred()
            pending.append(d)
            return d

        fast = Recorder()
        sub = self.bus.subscribe(slow)
        self.bus.subscribe(fast)
        for _ in range(20):
            self.bus.publish("a", RoundStart())
        self.assertEqual(len(fast.got), 20)
        self.assertEqual(seen, [1])
        self.assertEqual(len(sub.queue), 5)
        self.assertEqual(sub.dropped, 14)
        pending[0].callback(None)
        self.assertEqual(seen, [1, 16])
        while len(pending) < 6:
            pending[-1].callback(None)
        self.assertEqual(seen, [1, 16, 17, 18, 19, 20])

    def test_failed_deferred_counts(self) -> None:
        """A subscriber whose Deferreds fail is unsubscribed like a raising one."""
        sub = self.bus.subscribe(lambda e: fail(KeyError("x")))
        for _ in range(4):
            self.bus.publish("a", RoundStart())
        self.assertFalse(sub.active)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 3)

    def test_long_backlog_spread_over_turns(self) -> None:
        """More events than ``batch`` queued at once are delivered over later reactor turns."""
        bus = EventBus(self.clock, queue_size=1000, batch=10)
        got: list[int] = []
        resumed: list[Deferred[None]] = []

        def gate(envelope: Envelope) -> Deferred[None] | None:
            got.append(envelope.seq)
            if envelope.seq == 1:
                d: Deferred[None] = Deferred()
                resumed.append(d)
                return d
            return None

        bus.subscribe(gate)
        for _ in range(30):
            bus.publish("a", RoundStart())
        resumed[0].callback(None)
        self.assertEqual(len(got), 11)
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(got, list(range(1, 31)))

    def test_reentrant_publish_keeps_order(self) -> None:
        """A subscriber that publishes gets the new event after the current one, in order."""
        got: list[int] = []

        def echo(envelope: Envelope) -> None:
            got.append(envelope.seq)
            if envelope.seq == 1:
                self.bus.publish("a", RoundStart())

        self.bus.subscribe(echo)
        self.bus.publish("a", RoundStart())
        self.bus.publish("a", RoundStart())
        self.assertEqual(got, [1, 2, 3])

    def test_reentrant_publish_order_for_all(self) -> None:
        """When one subscriber publishes, every subscriber still sees events in seq order."""
        first: list[int] = []
        second: list[int] = []

        def republish(envelope: Envelope) -> None:
            first.append(envelope.seq)
            if envelope.seq == 1:
                self.bus.publish("a", RoundStart())

        self.bus.subscribe(republish)
        self.bus.subscribe(lambda e: second.append(e.seq))
        self.bus.publish("a", RoundStart())
        self.assertEqual((first, second), ([1, 2], [1, 2]))

    def test_snapshot_from_callback_no_duplicate(self) -> None:
        """A snapshot taken inside a delivery is not followed by events it already holds."""
        late: list[int] = []
        taken: list[dict[str, Any]] = []

        def joiner(envelope: Envelope) -> None:
            if envelope.seq == 1:
                self.bus.publish("a", RoundStart())
                snap, _ = self.bus.subscribe_with_snapshot("a", lambda e: late.append(e.seq))
                taken.append(snap)

        self.bus.subscribe(joiner)
        self.bus.publish("a", RoundStart())
        self.bus.publish("a", RoundStart())
        self.assertEqual(taken[0]["seq"], 2)
        self.assertEqual(late, [3])

    def test_cancel(self) -> None:
        """A cancelled subscription gets nothing more; cancelling twice is harmless."""
        rec = Recorder()
        sub = self.bus.subscribe(rec, server="a")
        self.bus.publish("a", RoundStart())
        sub.cancel()
        sub.cancel()
        self.bus.publish("a", RoundStart())
        self.assertEqual(len(rec.got), 1)
        self.assertEqual(list(self.bus.subscriptions()), [])

    def test_add_server_sizes(self) -> None:
        """add_server gives a server its own backlog sizes; state() finds it."""
        st = self.bus.add_server("x", kill_feed_size=1)
        self.assertIs(self.bus.state("x"), st)
        self.assertIsNone(self.bus.state("y"))
        self.assertEqual(st.kill_feed.maxlen, 1)
        self.assertEqual(self.bus.servers(), ["x"])

    def test_source_lines_through_bus(self) -> None:
        """Parsed Source lines update the state and reach subscribers as JSON."""
        rec: list[dict[str, Any]] = []
        self.bus.subscribe(lambda e: rec.append(e.to_json()))
        for line in (
            'L 11/28/2026 - 09:00:00: "Ann<2><STEAM_1:1:0><CT>" [0 0 0] killed '
            '"Bob<3><BOT><TERRORIST>" [1 1 1] with "ak47" (headshot)',
            'L 11/28/2026 - 09:00:01: "Ann<2><STEAM_1:1:0><CT>" say "nice"',
        ):
            self.bus.publish("cs", source.parse_line(line))
        self.assertEqual([r["type"] for r in rec], ["kill", "chat"])
        self.assertEqual(rec[0]["killer"]["id"], "[U:1:1]")
        players = self.bus.state("cs").snapshot()["players"]  # type: ignore[union-attr]
        self.assertEqual(sorted(p["id"] for p in players), ["[U:1:1]", "bot:3"])

    def test_bad_arguments(self) -> None:
        """Queue sizes and failure counts below 1 are refused."""
        self.assertRaises(ValueError, EventBus, self.clock, queue_size=0)
        self.assertRaises(ValueError, self.bus.subscribe, Recorder(), queue_size=0)

    def test_unknown_has_raw(self) -> None:
        """Unknown keeps the whole line."""
        self.assertEqual(Envelope(1, "a", 0, Unknown("x y")).to_json()["raw"], "x y")


class ApiExportTests(SynchronousTestCase):
    """Plugins get the event types from gamews.api."""

    def test_event_types_exported(self) -> None:
        """Every event class, the envelope, the player and the match state are in
        gamews.api as the very objects of gamews.events."""
        from gamews import api, events

        names = {cls.__name__ for cls in events.EVENT_TYPES.values()} | {
            "Envelope", "Event", "Player", "MatchState", "PlayerState", "EventBus",
            "event_fields"}
        for name in sorted(names):
            self.assertIn(name, api.__all__)
            self.assertIs(getattr(api, name), getattr(events, name), name)
