"""Tests for the ioquake3 / OpenArena games.log parser."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import (
    Chat,
    Connected,
    Disconnected,
    Entered,
    Event,
    GameShutdown,
    ItemPickup,
    Kill,
    MapChange,
    MatchEnd,
    PlayerInfo,
    PlayerScore,
    PlayerTriggered,
    Suicide,
    TeamScores,
    Unknown,
    WorldKill,
)
from gamews.logs.quake3 import parse_line, player, split_info
from tests.logs.support import FUZZ, check_bounded, openarena_lines

# Line kinds of the recorded game that no event type fits (server notes and separators).
NOT_EVENTS = ("Info:", "Playerstore:", "----")


def body(line: str) -> str:
    """The line without its clock."""
    return line.split(" ", 1)[1] if line[:1] != " " else line.strip().split(" ", 1)[1]


class FixtureTests(SynchronousTestCase):
    """Every line of the real recorded games.log."""

    def test_every_line_typed(self) -> None:
        """Each line gives a non-Unknown event unless it is a server note or separator."""
        lines = openarena_lines()
        self.assertEqual(len(lines), 491)
        for line in lines:
            event = parse_line(line)
            if body(line).startswith(NOT_EVENTS):
                self.assertIsInstance(event, Unknown, line)
            else:
                self.assertFalse(isinstance(event, Unknown), line)
            self.assertIsNotNone(event.game_clock, line)

    def test_counts(self) -> None:
        """The recorded game's events come out in the right numbers."""
        counts = Counter(parse_line(line).type for line in openarena_lines())
        self.assertEqual(counts["kill"] + counts["suicide"] + counts["world_kill"], 38)
        self.assertEqual(counts["world_kill"], 3)
        self.assertEqual(counts["chat"], 25 + 13 + 12)
        self.assertEqual(counts["map_change"], 4)
        self.assertEqual(counts["player_connected"], 17)
        self.assertEqual(counts["item"], 270)

    def test_fields_of_fixture_lines(self) -> None:
        """Fields of each kind of line in the recording, asserted."""
        by_kind: dict[str, str] = {}
        for line in openarena_lines():
            by_kind.setdefault(body(line).split(":", 1)[0], line)
        e: Event = parse_line(by_kind["InitGame"])
        assert isinstance(e, MapChange)
        self.assertEqual((e.map, e.game_clock), ("oa_dm1", 0))
        self.assertEqual(dict(e.settings)["g_gametype"], "0")
        self.assertEqual(dict(e.settings)["sv_hostname"], "gamews-test")
        e = parse_line(by_kind["ClientUserinfoChanged"])
        assert isinstance(e, PlayerInfo)
        self.assertEqual(e.player, player(0, "Sarge", "free", True))
        self.assertEqual(dict(e.info)["model"], "sarge")
        self.assertEqual(parse_line(by_kind["ClientConnect"]), Connected(player(0), game_clock=0))
        self.assertEqual(parse_line(by_kind["ClientBegin"]), Entered(player(0), game_clock=0))
        self.assertEqual(parse_line(by_kind["Item"]),
                         ItemPickup(player(1), "ammo_rockets", game_clock=0))
        self.assertEqual(parse_line(by_kind["Kill"]),
                         Kill(player(0, "Sarge"), player(3, "Major"), "MOD_PLASMA",
                              weapon_name="plasma gun", game_clock=9))
        self.assertEqual(parse_line(by_kind["PlayerScore"]),
                         PlayerScore(player(0, "Sarge"), 1, game_clock=9))
        e = parse_line(by_kind["say"])
        assert isinstance(e, Chat)
        self.assertEqual((e.player.name, e.player.key, e.text, e.team, e.game_clock),
                         ("Kyonshi", "name:Kyonshi",
                          "That isn't the best way to a girl's heart.", False, 30))
        self.assertEqual(parse_line(by_kind["Exit"]),
                         MatchEnd("Fraglimit hit.", game_clock=219))
        self.assertEqual(parse_line(by_kind["score"]),
                         PlayerScore(player(0, "Sarge"), 10, 0, True, game_clock=219))
        self.assertEqual(parse_line(by_kind["ShutdownGame"]), GameShutdown(game_clock=235))
        e = parse_line(by_kind["sayteam"])
        assert isinstance(e, Chat)
        self.assertEqual((e.player.name, e.team, e.text),
                         ("Kyonshi", True, "who is the leader of this rag-tag bunch?"))
        e = parse_line(by_kind["tell"])
        assert isinstance(e, Chat)
        assert e.target is not None
        self.assertEqual((e.player.name, e.target.name, e.text),
                         ("Grism", "Major", "Sniper Queen follow Kyonshi, Kyonshi needs the help."))
        self.assertEqual(parse_line(by_kind["ClientDisconnect"]),
                         Disconnected(player(4), game_clock=173))

    def test_suicide_and_world_kill(self) -> None:
        """Self-kills are Suicide; the kicked bot's 1022 kill is a WorldKill."""
        lines = openarena_lines()
        self.assertIn(Suicide(player(3, "Major"), "MOD_ROCKET_SPLASH",
                              weapon_name="rocket launcher (splash)", game_clock=137),
                      [parse_line(x) for x in lines])
        self.assertIn(WorldKill(player(4, "Ayumi"), "MOD_SUICIDE", "suicide", game_clock=173),
                      [parse_line(x) for x in lines])


class OtherLinesTests(SynchronousTestCase):
    """Real ioquake3 / OpenArena line kinds that are not in the recording."""

    def test_team_scores(self) -> None:
        """The end-of-match ``red:8  blue:5`` line of team games."""
        self.assertEqual(parse_line("  9:59 red:8  blue:5"),
                         TeamScores((("red", 8), ("blue", 5)), game_clock=599))

    def test_long_clock_and_no_clock(self) -> None:
        """Clocks past 99 minutes and lines with no clock parse."""
        self.assertEqual(parse_line("123:05 ClientBegin: 7").game_clock, 123 * 60 + 5)
        self.assertEqual(parse_line("ClientBegin: 7"), Entered(player(7)))

    def test_awards_and_ctf(self) -> None:
        """``Award:`` and ``CTF:`` lines are player actions."""
        e = parse_line("  1:00 Award: 0 2: Sarge gained the EXCELLENT award!")
        assert isinstance(e, PlayerTriggered)
        self.assertEqual((e.player.key, e.action), ("client:0", "award"))
        self.assertEqual(dict(e.properties)["text"], "Sarge gained the EXCELLENT award!")
        e = parse_line("  2:10 CTF: 1 2 1: Grism captured the BLUE flag!")
        assert isinstance(e, PlayerTriggered)
        self.assertEqual((e.player.slot, e.action, dict(e.properties)["codes"]),
                         (1, "ctf", "2 1"))

    def test_world_falling(self) -> None:
        """Falling and lava deaths come from the world (1022)."""
        e = parse_line(" 10:02 Kill: 1022 2 19: <world> killed Kyonshi by MOD_FALLING")
        self.assertEqual(e, WorldKill(player(2, "Kyonshi"), "MOD_FALLING", "falling",
                                      game_clock=602))

    def test_hostile_names(self) -> None:
        """Names with colour codes, colons, ' killed ' and non-ASCII keep their client numbers."""
        e = parse_line("  0:11 Kill: 3 5 10: ^1Dr. killed Who killed ^7Bob: ü by MOD_RAILGUN")
        assert isinstance(e, Kill)
        self.assertEqual((e.killer.slot, e.victim.slot, e.weapon), (3, 5, "MOD_RAILGUN"))
        e = parse_line("  0:12 say: ^2Fröhlich: hi: there")
        assert isinstance(e, Chat)
        self.assertEqual((e.player.name, e.text), ("^2Fröhlich", "hi: there"))
        e = parse_line("  0:12 ClientUserinfoChanged: 5 n\\^1Ünïcode\\t\\2\\model\\x")
        assert isinstance(e, PlayerInfo)
        self.assertEqual(e.player, player(5, "^1Ünïcode", "blue"))

    def test_empty_chat_and_timelimit(self) -> None:
        """An empty chat message and a timelimit exit."""
        e = parse_line("  0:01 say: Sarge: ")
        assert isinstance(e, Chat)
        self.assertEqual(e.text, "")
        self.assertEqual(parse_line(" 20:00 Exit: Timelimit hit."),
                         MatchEnd("Timelimit hit.", game_clock=1200))

    def test_malformed_known_keywords(self) -> None:
        """Known keywords with bad arguments are Unknown, never errors."""
        for line in ("  0:00 Kill: x y z", "  0:00 ClientConnect: abc", "  0:00 Item: ",
                     "  0:00 ShutdownGame: extra", "  0:00 PlayerScore: 1", "", "\x00",
                     "  0:00 score: x", "  0:00 CTF: a"):
            e = parse_line(line)
            self.assertIsInstance(e, Unknown, line)

    def test_split_info(self) -> None:
        """Info strings split into pairs, with or without the leading backslash."""
        self.assertEqual(split_info("\\a\\1\\b\\2"), (("a", "1"), ("b", "2")))
        self.assertEqual(split_info("a\\1\\b"), (("a", "1"),))


KEYWORDS = ["InitGame", "ShutdownGame", "Exit", "ClientConnect", "ClientBegin",
            "ClientDisconnect", "ClientUserinfoChanged", "Kill", "PlayerScore", "score", "Item",
            "say", "sayteam", "tell", "CTF", "Award", "Challenge", "red", "Info", "Warmup"]
CLOCKS = st.sampled_from(["", "  0:00 ", " 12:34 ", "1234:99 ", "0:0 ", "  1:00"])
REST = st.text(alphabet="0123 :\\killedbyMOD_Xtn-\x00\né^", max_size=60)


def q3_lines() -> st.SearchStrategy[str]:
    """Lines that look like games.log lines, with random damage."""
    return st.tuples(CLOCKS, st.sampled_from(KEYWORDS), st.just(": "), REST).map("".join)


class FuzzTests(SynchronousTestCase):
    """Hypothesis: no input makes the parser raise or return an unbounded event."""

    @FUZZ
    @given(st.one_of(q3_lines(), st.text(max_size=200)))
    def test_fuzz(self, line: str) -> None:
        """10,000 generated lines: exactly one known, bounded event each, never an error."""
        check_bounded(parse_line(line), line)
