"""The match state's rules: status versus log, identity (with hypothesis), round winners."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import (
    Connected,
    Disconnected,
    Event,
    EventBus,
    Kill,
    MapChange,
    Player,
    PlayerInfo,
    PlayerScore,
    RoundEnd,
    ServerStatus,
    StatusPlayer,
    TeamTriggered,
)
from gamews.logs import quake3
from gamews.logs.source import make_player, normalise_steam_id, parse_line


def listed(name: str, key: str, slot: int | None = None, ping: int | None = 30,
           score: int | None = None) -> StatusPlayer:
    return StatusPlayer(Player(name, key, slot), ping, score, 60, "active")


class StatusMergeTests(SynchronousTestCase):
    """The merge rules of MatchState for a ServerStatus."""

    def setUp(self) -> None:
        self.bus = EventBus(Clock())

    def publish(self, *events: Event) -> None:
        for event in events:
            self.bus.publish("s", event)

    @property
    def players(self) -> dict[str, tuple[str, int | None, int | None, int]]:
        state = self.bus.state("s")
        assert state is not None
        return {k: (p.name, p.ping, p.score, p.kills) for k, p in state.players.items()}

    def test_mid_match_start(self) -> None:
        """A status on an empty state gives the map, the host name and every player."""
        self.publish(ServerStatus("de_dust2", "host", (
            listed("Ann", "[U:1:1]", 2, 40), listed("Bot", "bot:3", 3, None)), 0))
        state = self.bus.state("s")
        assert state is not None
        self.assertEqual((state.map, state.hostname), ("de_dust2", "host"))
        self.assertEqual(self.players, {"[U:1:1]": ("Ann", 40, None, 0),
                                        "bot:3": ("Bot", None, None, 0)})

    def test_log_authoritative_for_scores_and_kills(self) -> None:
        """A status sets pings but never the kills or a score the log gave."""
        ann = make_player("Ann", "2", "[U:1:1]", "CT")
        bob = make_player("Bob", "3", "[U:1:2]", "T")
        self.publish(Connected(ann), Connected(bob), Kill(ann, bob, "ak47"),
                     PlayerScore(ann, 5))
        self.publish(ServerStatus(None, None, (listed("Ann", "[U:1:1]", 2, 50, 99),
                                               listed("Bob", "[U:1:2]", 3, 60)), 4))
        self.assertEqual(self.players, {"[U:1:1]": ("Ann", 50, 5, 1),
                                        "[U:1:2]": ("Bob", 60, None, 0)})

    def test_missing_player_removed_unless_newer(self) -> None:
        """A player the status does not list goes, unless the log added them after the ask."""
        self.publish(Connected(make_player("Gone", "2", "[U:1:1]", None)))
        asked = 1
        self.publish(Connected(make_player("New", "3", "[U:1:2]", None)))
        self.publish(ServerStatus(None, None, (), asked))
        self.assertEqual(set(self.players), {"[U:1:2]"})

    def test_newer_log_map_wins(self) -> None:
        """A map change logged after the ask is kept; an older one is replaced."""
        self.publish(MapChange("de_nuke"))
        self.publish(ServerStatus("de_dust2", None, (), 0))
        state = self.bus.state("s")
        assert state is not None
        self.assertEqual(state.map, "de_nuke")
        self.publish(ServerStatus("de_dust2", None, (), 2))
        self.assertEqual(state.map, "de_dust2")

    def test_quake3_placeholder_takes_the_log_identity(self) -> None:
        """A Quake 3 player known by name from getstatus becomes client:N when the log names
        them, keeping the ping, without a duplicate."""
        self.publish(ServerStatus("oa_dm1", None, (listed("^1Sarge", "name:^1Sarge", None, 0),
                                                   listed("Grism", "name:Grism")), 0))
        self.assertEqual(set(self.players), {"name:Sarge", "name:Grism"})
        self.publish(Kill(quake3.player(0, "Sarge"), quake3.player(1, "Grism"),
                          "MOD_ROCKET"))
        self.assertEqual(self.players, {"client:0": ("Sarge", 0, None, 1),
                                        "client:1": ("Grism", 30, None, 0)})
        self.publish(ServerStatus("oa_dm1", None, (listed("Sarge", "name:Sarge", None, 5),
                                                   listed("Grism", "name:Grism")), 2))
        self.assertEqual(self.players["client:0"], ("Sarge", 5, None, 1))

    def test_round_end_winner_from_team_line(self) -> None:
        """A CS Round_End without a winner gets the one its team trigger named."""
        self.publish(TeamTriggered("CT", "SFUI_Notice_CTs_Win"))
        envelope = self.bus.publish("s", RoundEnd())
        assert isinstance(envelope.event, RoundEnd)
        self.assertEqual(envelope.event.winner, "CT")


SHARED = "STEAM_0:0:12345"

steam_ids = st.sampled_from([SHARED, "STEAM_1:1:100", "STEAM_1:0:200", "[U:1:77]",
                             "STEAM_0:0:0", "STEAM_ID_PENDING", "BOT", "76561190000000000"])
actions = st.lists(st.tuples(st.booleans(), st.integers(2, 9), steam_ids), max_size=40)


class IdentityTests(SynchronousTestCase):
    """Hypothesis: identities stay distinct and stable whatever joins and leaves."""

    @settings(max_examples=500, deadline=None, derandomize=True, database=None)
    @given(actions)
    def test_one_player_per_connected_userid(self, steps: list[tuple[bool, int, str]]) -> None:
        """Each connected user id is exactly one player; a player whose Steam ID no other
        connected player held when they joined is known by it; leaving removes that player."""
        bus = EventBus(Clock())
        state = bus.add_server("s")
        connected: dict[int, str] = {}
        unique_at_join: set[int] = set()
        for join, uid, steam in steps:
            norm = normalise_steam_id(steam)
            if join and uid not in connected:
                if norm is not None and all(normalise_steam_id(s) != norm
                                            for s in connected.values()):
                    unique_at_join.add(uid)
                connected[uid] = steam
                bus.publish("s", Connected(make_player(f"p{uid}", str(uid), steam, None)))
            elif not join and uid in connected:
                unique_at_join.discard(uid)
                bus.publish("s", Disconnected(make_player(f"p{uid}", str(uid),
                                                          connected.pop(uid), None)))
            by_slot = {p.slot: p.key for p in state.players.values()}
            self.assertEqual(sorted(by_slot), sorted(connected))
            self.assertEqual(len(state.players), len(connected))
            for uid, steam in connected.items():
                if uid in unique_at_join:
                    self.assertEqual(by_slot[uid], normalise_steam_id(steam))
                elif steam not in ("BOT",):
                    self.assertEqual(by_slot[uid], f"uid:{uid}")

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(st.integers(0, 2**40), st.sampled_from(["STEAM_0:{}:{}", "[U:1:{}]", "{}"]),
           st.integers(0, 1))
    def test_no_negative_or_zero_account(self, n: int, form: str, y: int) -> None:
        """No Steam ID form normalises to account 0, a negative or an over-32-bit account."""
        text = form.format(y, n) if form.startswith("STEAM") else form.format(n)
        if form == "{}":
            text = str(76561197960265728 - 2**20 + n)
        norm = normalise_steam_id(text)
        if norm is not None:
            account = int(norm[5:-1])
            self.assertTrue(0 < account < 2**32, norm)

    def test_zero_and_invalid_ids_are_no_id(self) -> None:
        """Account 0 in both widths and a 64-bit id below the base are "no ID"."""
        for text in ("STEAM_0:0:0", "STEAM_0:0:0000000000", "[U:1:0]", "76561190000000000",
                     "76561197960265728"):
            self.assertIsNone(normalise_steam_id(text), text)
        self.assertEqual(make_player("a", "7", "STEAM_0:0:0", None).key, "uid:7")

    def test_shared_id_bots_from_lines(self) -> None:
        """Two players logging the same Steam ID at once stay two players."""
        bus = EventBus(Clock())
        for line in ('"Bot A<3><STEAM_0:0:12345><CT>" entered the game',
                     '"Bot B<4><STEAM_0:0:12345><CT>" entered the game',
                     '"Bot B<4><STEAM_0:0:12345><CT>" killed "Bot A<3><STEAM_0:0:12345><CT>" '
                     'with "ak47"'):
            bus.publish("s", parse_line(line))
        state = bus.state("s")
        assert state is not None
        self.assertEqual({k: (p.name, p.kills, p.deaths) for k, p in state.players.items()},
                         {"[U:1:24690]": ("Bot A", 0, 1), "uid:4": ("Bot B", 1, 0)})


class PlayerInfoTests(SynchronousTestCase):
    """Quake 3 user info still becomes team and name changes."""

    def test_info_of_unknown_player_adds_them(self) -> None:
        """A first ClientUserinfoChanged adds the player with the name."""
        bus = EventBus(Clock())
        bus.publish("s", PlayerInfo(quake3.player(3, "Ayumi", "free", True)))
        state = bus.state("s")
        assert state is not None
        self.assertEqual(state.players["client:3"].name, "Ayumi")
