"""Tests for the Source engine (HL Log Standard) parser: CS:GO, CS2, TF2 lines.

No Source server runs here; the lines below are written in each game's real log format
(CS:GO 2018-era file/UDP lines, CS2 file and HTTP lines, TF2 lines). If recorded lines are
present in ``../shared/fixtures/source/`` they are checked too.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import (
    Assist,
    Chat,
    Connected,
    Damage,
    Disconnected,
    Entered,
    Envelope,
    Event,
    ItemPickup,
    Kill,
    MapChange,
    MatchEnd,
    MatchStart,
    NameChange,
    Player,
    PlayerTriggered,
    PointCaptured,
    RconSeen,
    RoundEnd,
    RoundStart,
    ServerCvar,
    Suicide,
    TeamChange,
    TeamScore,
    TeamTriggered,
    Unknown,
    WorldKill,
    WorldTriggered,
)
from gamews.logs.common import decode_line
from gamews.logs.source import make_player, normalise_steam_id, parse_line, split_stamp
from tests.logs.support import FUZZ, check_bounded, fixture

CSGO = "L 06/23/2018 - 19:52:17: "
CS2 = "L 11/28/2026 - 09:30:01: "
CS2_HTTP = "11/28/2026 - 09:30:01.264 - "
TF2 = "L 01/02/2013 - 20:15:12: "

ANN = Player("Ann", "[U:1:24691357]", 2, "CT", False, "[U:1:24691357]")
BOT3 = Player("Bot", "bot:3", 3, "TERRORIST", True)


def parse(line: str) -> Event:
    """Parse and check the event is a known, bounded one."""
    event = parse_line(line)
    check_bounded(event, line)
    return event


class SteamIdTests(SynchronousTestCase):
    """Player identities."""

    def test_forms_normalised(self) -> None:
        """STEAM_X:Y:Z, [U:1:N] and 64-bit ids give the same [U:1:N]."""
        self.assertEqual(normalise_steam_id("STEAM_1:1:12345678"), "[U:1:24691357]")
        self.assertEqual(normalise_steam_id("STEAM_0:1:12345678"), "[U:1:24691357]")
        self.assertEqual(normalise_steam_id("[U:1:24691357]"), "[U:1:24691357]")
        self.assertEqual(normalise_steam_id("76561197984957085"), "[U:1:24691357]")
        self.assertIsNone(normalise_steam_id("STEAM_ID_PENDING"))

    def test_bots_console_pending(self) -> None:
        """Bots are bot:USERID, the console console, pending and LAN ids uid:USERID."""
        self.assertEqual(make_player("B", "3", "BOT", "CT"), Player("B", "bot:3", 3, "CT", True))
        self.assertEqual(make_player("Console", "0", "Console", "Console").key, "console")
        self.assertEqual(make_player("P", "9", "STEAM_ID_PENDING", "").key, "uid:9")
        self.assertEqual(make_player("P", "9", "STEAM_ID_LAN", "").team, None)

    def test_stamps(self) -> None:
        """File/UDP and CS2 HTTP time stamps become ISO times."""
        self.assertEqual(split_stamp(CSGO + "x"), ("2018-06-23T19:52:17", "x"))
        self.assertEqual(split_stamp(CS2_HTTP + "x"), ("2026-11-28T09:30:01.264", "x"))
        self.assertEqual(split_stamp("x"), (None, "x"))


class CsgoTests(SynchronousTestCase):
    """CS:GO lines."""

    def test_kill_with_positions_headshot(self) -> None:
        """A kill with positions, weapon and flags."""
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><CT>" [-1117 2465 -56] killed '
                  '"Bot<3><BOT><TERRORIST>" [-1000 2300.5 -60] with "m4a1" (headshot penetrated)')
        self.assertEqual(e, Kill(ANN, BOT3, "m4a1", True, ("headshot", "penetrated"),
                                 (-1117.0, 2465.0, -56.0), (-1000.0, 2300.5, -60.0),
                                 log_time="2018-06-23T19:52:17"))

    def test_kill_plain(self) -> None:
        """A kill without flags is no headshot."""
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><CT>" [0 0 0] killed '
                  '"Bot<3><BOT><TERRORIST>" [1 1 1] with "knife"')
        assert isinstance(e, Kill)
        self.assertEqual((e.weapon, e.headshot, e.flags), ("knife", False, ()))

    def test_damage(self) -> None:
        """``attacked`` lines give damage, armour, health and hit group."""
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><CT>" [-1117 2465 -56] attacked '
                  '"Bot<3><BOT><TERRORIST>" [-1000 2300 -60] with "m4a1" (damage "27") '
                  '(damage_armor "3") (health "73") (armor "96") (hitgroup "chest")')
        self.assertEqual(e, Damage(ANN, BOT3, "m4a1", 27, 3, 73, 96, "chest",
                                   (-1117.0, 2465.0, -56.0), (-1000.0, 2300.0, -60.0),
                                   log_time="2018-06-23T19:52:17"))

    def test_connect_enter_team_disconnect(self) -> None:
        """The life of a player: connected, entered, switched team, disconnected."""
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><>" connected, address "203.0.113.7:27005"')
        self.assertEqual(e, Connected(Player("Ann", ANN.key, 2, None, False, ANN.key),
                                      log_time="2018-06-23T19:52:17"))
        self.assertNotIn("203.0.113.7", Envelope(1, "s", 0, e).to_json_text())
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><>" entered the game')
        self.assertIsInstance(e, Entered)
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678>" switched from team <Unassigned> to <CT>')
        assert isinstance(e, TeamChange)
        self.assertEqual((e.player.key, e.team, e.old_team), (ANN.key, "CT", "Unassigned"))
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><CT>" disconnected (reason "Disconnect")')
        self.assertEqual(e, Disconnected(ANN, "Disconnect", log_time="2018-06-23T19:52:17"))
        e = parse(CSGO + '"Bot<3><BOT><TERRORIST>" disconnected (reason "Kicked by Console")')
        assert isinstance(e, Disconnected)
        self.assertEqual((e.player.bot, e.reason), (True, "Kicked by Console"))

    def test_chat(self) -> None:
        """say, say_team, the console, and the dead flag."""
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><CT>" say "gg wp"')
        self.assertEqual(e, Chat(ANN, "gg wp", log_time="2018-06-23T19:52:17"))
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><CT>" say_team "rush b" (dead)')
        assert isinstance(e, Chat)
        self.assertEqual((e.team, e.dead, e.text), (True, True, "rush b"))
        e = parse(CSGO + '"Console<0><Console><Console>" say "Match is live"')
        assert isinstance(e, Chat)
        self.assertEqual((e.player.key, e.text), ("console", "Match is live"))

    def test_rounds_and_scores(self) -> None:
        """Match and round start, the round's winner with scores, team scores, round end."""
        t = "2018-06-23T19:52:17"
        self.assertEqual(parse(CSGO + 'World triggered "Match_Start" on "de_dust2"'),
                         MatchStart("de_dust2", log_time=t))
        self.assertEqual(parse(CSGO + 'World triggered "Round_Start"'), RoundStart(log_time=t))
        self.assertEqual(
            parse(CSGO + 'Team "CT" triggered "SFUI_Notice_Target_Saved" (CT "1") (T "0")'),
            TeamTriggered("CT", "SFUI_Notice_Target_Saved", (("CT", "1"), ("T", "0")),
                          log_time=t))
        self.assertEqual(parse(CSGO + 'Team "TERRORIST" scored "0" with "5" players'),
                         TeamScore("TERRORIST", 0, 5, log_time=t))
        self.assertEqual(parse(CSGO + 'World triggered "Round_End"'), RoundEnd(log_time=t))
        self.assertEqual(
            parse(CSGO + "Game Over: competitive mg_de_dust2 de_dust2 score 16:14 after 52 min"),
            MatchEnd("competitive mg_de_dust2", "de_dust2", "16:14", log_time=t))

    def test_map_cvars_rcon(self) -> None:
        """Map loading, cvars (both forms), rcon; a bad rcon's command is not passed on."""
        t = "2018-06-23T19:52:17"
        self.assertEqual(parse(CSGO + 'Loading map "de_dust2"'),
                         MapChange("de_dust2", "loading", log_time=t))
        e = parse(CSGO + 'Started map "de_dust2" (CRC "-1207046185")')
        self.assertEqual(e, MapChange("de_dust2", "started", (("CRC", "-1207046185"),),
                                      log_time=t))
        self.assertEqual(parse(CSGO + 'server_cvar: "sv_cheats" "0"'),
                         ServerCvar("sv_cheats", "0", log_time=t))
        self.assertEqual(parse(CSGO + '"mp_friendlyfire" = "0"'),
                         ServerCvar("mp_friendlyfire", "0", log_time=t))
        self.assertEqual(parse(CSGO + 'rcon from "198.51.100.4:51234": command "status"'),
                         RconSeen("status", True, log_time=t))
        e = parse(CSGO + 'Bad Rcon: "rcon 1984 "hunter2" status" from "198.51.100.4:51234"')
        self.assertEqual(e, RconSeen("", False, log_time=t))
        self.assertNotIn("hunter2", json.dumps(Envelope(1, "s", 0, e).to_json()))

    def test_secrets_redacted(self) -> None:
        """Password, secret and token cvars and rcon commands never carry their values."""
        t = "2018-06-23T19:52:17"
        self.assertEqual(parse(CSGO + 'server_cvar: "sv_password" "letmein"'),
                         ServerCvar("sv_password", "<redacted>", log_time=t))
        self.assertEqual(parse(CSGO + '"sv_logsecret" = "31337"'),
                         ServerCvar("sv_logsecret", "<redacted>", log_time=t))
        self.assertEqual(parse(CSGO + 'server_cvar: "sv_password" ""'),
                         ServerCvar("sv_password", "", log_time=t))
        e = parse(CSGO + 'rcon from "198.51.100.4:51234": command "rcon_password n3wpass"')
        self.assertEqual(e, RconSeen("rcon_password <redacted>", True, log_time=t))
        e = parse(CSGO + 'rcon from "198.51.100.4:1": command "logaddress_add_http '
                  '"http://203.0.113.1:8080/logs/cs2/tok""')
        assert isinstance(e, RconSeen)
        self.assertNotIn("tok", e.command.split()[-1])

    def test_player_actions(self) -> None:
        """Bomb events, purchases, grenades and assists are typed."""
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><TERRORIST>" triggered "Planted_The_Bomb"')
        assert isinstance(e, PlayerTriggered)
        self.assertEqual((e.player.key, e.action), (ANN.key, "Planted_The_Bomb"))
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><CT>" purchased "m4a1"')
        assert isinstance(e, PlayerTriggered)
        self.assertEqual((e.action, e.properties), ("purchased", (("item", "m4a1"),)))
        e = parse(CSGO + '"Ann<2><STEAM_1:1:12345678><CT>" threw flashbang [-1117 2465 -56] '
                  "flashbang entindex 123)")
        assert isinstance(e, PlayerTriggered)
        self.assertEqual(dict(e.properties)["item"], "flashbang")
        e = parse(CSGO + '"Cid<4><STEAM_1:0:555><CT>" assisted killing "Bot<3><BOT><TERRORIST>"')
        assert isinstance(e, Assist)
        self.assertEqual((e.assister.key, e.victim.key, e.flash), ("[U:1:1110]", "bot:3", False))

    def test_suicide(self) -> None:
        """committed suicide, with its position."""
        e = parse(CSGO + '"Bot<3><BOT><TERRORIST>" [1 2 3] committed suicide with "hegrenade"')
        self.assertEqual(e, Suicide(BOT3, "hegrenade", (1.0, 2.0, 3.0), "suicide",
                                    log_time="2018-06-23T19:52:17"))


class Cs2Tests(SynchronousTestCase):
    """CS2 lines, file and HTTP forms."""

    def test_http_kill(self) -> None:
        """An HTTP-form kill with [U:1:N] ids, several flags and millisecond time."""
        e = parse(CS2_HTTP + '"Ann<2><[U:1:24691357]><CT>" [100 200 10] killed '
                  '"Zed<5><[U:1:654321]><TERRORIST>" [150 250 12] with "ak47" '
                  "(headshot penetrated throughsmoke)")
        assert isinstance(e, Kill)
        self.assertEqual((e.killer, e.victim.key, e.weapon, e.headshot, e.log_time),
                         (ANN, "[U:1:654321]", "ak47", True, "2026-11-28T09:30:01.264"))
        self.assertEqual(e.flags, ("headshot", "penetrated", "throughsmoke"))

    def test_file_form_and_flash_assist(self) -> None:
        """The file form parses the same; flash assists are flagged."""
        e = parse(CS2 + '"Ann<2><[U:1:24691357]><CT>" flash-assisted killing '
                  '"Zed<5><[U:1:654321]><TERRORIST>"')
        assert isinstance(e, Assist)
        self.assertEqual((e.assister, e.flash, e.log_time), (ANN, True, "2026-11-28T09:30:01"))

    def test_cs2_round_win_scores(self) -> None:
        """A round won by the terrorists with both scores, then the match start."""
        e = parse(CS2_HTTP + 'Team "TERRORIST" triggered "SFUI_Notice_Terrorists_Win" '
                  '(CT "2") (T "3")')
        self.assertEqual(e, TeamTriggered("TERRORIST", "SFUI_Notice_Terrorists_Win",
                                          (("CT", "2"), ("T", "3")),
                                          log_time="2026-11-28T09:30:01.264"))
        self.assertIsInstance(parse(CS2_HTTP + 'World triggered "Match_Start" on "de_mirage"'),
                              MatchStart)

    def test_cs2_damage_head(self) -> None:
        """A CS2 damage line to the head."""
        e = parse(CS2 + '"Ann<2><[U:1:24691357]><CT>" [1 2 3] attacked "Bot<3><BOT><TERRORIST>"'
                  ' [4 5 6] with "deagle" (damage "100") (damage_armor "0") (health "0") '
                  '(armor "0") (hitgroup "head")')
        assert isinstance(e, Damage)
        self.assertEqual((e.damage, e.health, e.hitgroup), (100, 0, "head"))

    def test_lines_without_a_type(self) -> None:
        """Lines of ignored kinds (buy zone, JSON stats) are Unknown with their time."""
        for line in (CS2 + '"Ann<2><[U:1:24691357]><CT>" left buyzone with [ weapon_knife ]',
                     CS2 + "JSON_BEGIN{"):
            e = parse(line)
            self.assertIsInstance(e, Unknown)
            self.assertEqual(e.log_time, "2026-11-28T09:30:01")


class Tf2Tests(SynchronousTestCase):
    """TF2 lines (positions as properties, custom kills, hostile names)."""

    RED = '"Jim<12><[U:1:42]><Red>"'
    BLUE = '"Bob<13><[U:1:43]><Blue>"'

    def test_kill_positions_in_properties(self) -> None:
        """Positions given as attacker_position / victim_position properties."""
        e = parse(TF2 + f'{self.RED} killed {self.BLUE} with "scattergun" '
                  '(attacker_position "-1516 1144 -255") (victim_position "-1463 1185 -255")')
        assert isinstance(e, Kill)
        self.assertEqual((e.killer.team, e.victim.team, e.weapon, e.headshot),
                         ("Red", "Blue", "scattergun", False))
        self.assertEqual(e.killer_pos, (-1516.0, 1144.0, -255.0))
        self.assertEqual(e.victim_pos, (-1463.0, 1185.0, -255.0))

    def test_headshot_customkill(self) -> None:
        """customkill "headshot" is a headshot."""
        e = parse(TF2 + f'{self.RED} killed {self.BLUE} with "sniperrifle" '
                  '(customkill "headshot") (attacker_position "1 2 3") (victim_position "4 5 6")')
        assert isinstance(e, Kill)
        self.assertTrue(e.headshot)
        self.assertEqual(dict(e.properties)["customkill"], "headshot")

    def test_triggered_against(self) -> None:
        """kill assist / medic_death carry the other player and properties."""
        e = parse(TF2 + f'{self.RED} triggered "medic_death" against {self.BLUE} '
                  '(healing "250") (ubercharge "0")')
        assert isinstance(e, PlayerTriggered)
        assert e.target is not None
        self.assertEqual((e.action, e.target.key, dict(e.properties)["healing"]),
                         ("medic_death", "[U:1:43]", "250"))

    def test_team_round_game(self) -> None:
        """joined team, Round_Win's winner, current and final scores, Game_Over's reason."""
        t = "2013-01-02T20:15:12"
        e = parse(TF2 + '"Jim<12><[U:1:42]><Unassigned>" joined team "Red"')
        self.assertEqual(e, TeamChange(make_player("Jim", "12", "[U:1:42]", "Unassigned"), "Red",
                                       "Unassigned", log_time=t))
        self.assertEqual(parse(TF2 + 'World triggered "Round_Win" (winner "Red")'),
                         RoundEnd("Red", None, log_time=t))
        self.assertEqual(parse(TF2 + 'Team "Red" current score "1" with "12" players'),
                         TeamScore("Red", 1, 12, log_time=t))
        self.assertEqual(parse(TF2 + 'Team "Blue" final score "0" with "12" players'),
                         TeamScore("Blue", 0, 12, log_time=t))
        self.assertEqual(parse(TF2 + 'World triggered "Game_Over" reason "Reached Win Limit"'),
                         MatchEnd("Reached Win Limit", log_time=t))
        self.assertEqual(parse(TF2 + 'World triggered "Round_Length" (seconds "312.45")'),
                         WorldTriggered("Round_Length", (("seconds", "312.45"),), log_time=t))

    def test_role_pickup_rename(self) -> None:
        """changed role, picked up item, changed name."""
        e = parse(TF2 + f'{self.RED} changed role to "scout"')
        assert isinstance(e, PlayerTriggered)
        self.assertEqual(e.properties, (("role", "scout"),))
        e = parse(TF2 + f'{self.RED} spawned as "Soldier"')
        assert isinstance(e, PlayerTriggered)
        self.assertEqual((e.action, e.properties), ("spawned", (("role", "Soldier"),)))
        e = parse(TF2 + 'Team "Red" triggered "pointcaptured" (cp "0") (cpname "#Gravel_cap_A") '
                  '(numcappers "1") (player1 "Jim<12><[U:1:42]><Red>") (position1 "1 2 3")')
        assert isinstance(e, PointCaptured)
        self.assertEqual((e.team, e.point, [p.key for p in e.cappers]),
                         ("Red", "#Gravel_cap_A", ["[U:1:42]"]))
        e = parse(TF2 + f'{self.RED} picked up item "medkit_small" (healing "40")')
        self.assertEqual(e, ItemPickup(make_player("Jim", "12", "[U:1:42]", "Red"),
                                       "medkit_small", (("healing", "40"),),
                                       log_time="2013-01-02T20:15:12"))
        e = parse(TF2 + f'{self.RED} changed name to "Jimmy "the" <Kid>"')
        assert isinstance(e, NameChange)
        self.assertEqual(e.new_name, 'Jimmy "the" <Kid>')

    def test_hostile_names(self) -> None:
        """Names with quotes, angle brackets, markup and non-ASCII keep their identity."""
        e = parse(TF2 + '""><script>alert(1)</script><14><[U:1:44]><Blue>" say '
                  '"<b>hi</b> "quoted""')
        assert isinstance(e, Chat)
        self.assertEqual((e.player.name, e.player.key, e.text),
                         ('"><script>alert(1)</script>', "[U:1:44]", '<b>hi</b> "quoted"'))
        e = parse(TF2 + '"Ⓐnn 😀 <3><15><[U:1:45]><Red>" killed "a<b>c<16><[U:1:46]><Blue>" '
                  'with "tf_projectile_rocket" (attacker_position "1 2 3") '
                  '(victim_position "4 5 6")')
        assert isinstance(e, Kill)
        self.assertEqual((e.killer.name, e.killer.slot, e.victim.name, e.victim.slot),
                         ("Ⓐnn 😀 <3>", 15, "a<b>c", 16))

    def test_suicide_world(self) -> None:
        """A fall: committed suicide with "world" is a death without a killer."""
        e = parse(TF2 + f'{self.RED} committed suicide with "world" '
                  '(attacker_position "7 8 9")')
        assert isinstance(e, WorldKill)
        self.assertEqual((e.victim.key, e.cause, e.cause_name), ("[U:1:42]", "world", "world"))

    def test_latin1_decoded(self) -> None:
        """A Latin-1 line (not UTF-8) decodes to the right characters, then parses."""
        raw = (TF2.encode() + b'"J\xe9r\xf4me<17><[U:1:47]><Red>" say "caf\xe9"')
        e = parse(decode_line(raw))
        assert isinstance(e, Chat)
        self.assertEqual((e.player.name, e.player.key, e.text), ("Jérôme", "[U:1:47]", "café"))


EXPECTED: dict[str, type | tuple[type, ...]] = {
    " killed \"": Kill, " attacked \"": Damage, "\" say \"": Chat, "\" say_team \"": Chat,
    " entered the game": Entered, " connected, address ": Connected,
    "\" disconnected": Disconnected, 'World triggered "Round_Start"': RoundStart,
    " committed suicide with ": (Suicide, WorldKill), "\" changed name to ": NameChange,
}


class RecordedSourceTests(SynchronousTestCase):
    """Recorded Source lines in ../shared/fixtures/source/, when present."""

    def test_recorded_lines(self) -> None:
        """Every recorded line parses; kill, chat, connect... lines give their types."""
        folder = fixture("source")
        seen = 0
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix == ".md":
                continue
            for raw in path.read_bytes().splitlines():
                if raw.startswith(b"#"):
                    continue  # the fixture's header, not log content
                line = decode_line(raw)
                event = parse(line)
                seen += 1
                for needle, cls in EXPECTED.items():
                    if needle in line and " killed other " not in line and "\"" in line[:40]:
                        self.assertIsInstance(event, cls, line)
                        break
        self.assertGreater(seen, 0)


PLAYERS = st.sampled_from([
    '"Ann<2><STEAM_1:1:12345678><CT>"', '"Bot<3><BOT><TERRORIST>"', '"x<1><[U:1:5]><>"',
    '"Console<0><Console><Console>"', '""<<9><STEAM_ID_PENDING><Red>"', '"a"', "",
])
VERBS = st.sampled_from([
    " killed ", " attacked ", " say ", " say_team ", " triggered ", " connected, address ",
    " entered the game", " disconnected (reason ", " switched from team ", " joined team ",
    " committed suicide with ", " assisted killing ", " changed name to ", " with ",
    ' (headshot)', ' (damage "x")', " [1 2 3]", "World triggered ", 'Team "CT" scored ',
    "Game Over: ", "Loading map ", "Started map ", "server_cvar: ", '" = "', "rcon from ",
    "Bad Rcon: ", " against ",
])
PREFIXES = st.sampled_from([CSGO, CS2_HTTP, "L 99/99/9999 - 99:99:99: ", "", "L "])
NOISE = st.text(alphabet='"<>[]() 0123.-:abcéU', max_size=12)


def source_lines() -> st.SearchStrategy[str]:
    """Lines built from real pieces in random order, plus noise."""
    part = st.one_of(PLAYERS, VERBS, NOISE)
    return st.tuples(PREFIXES, part, part, part, part, part).map("".join)


class FuzzTests(SynchronousTestCase):
    """Hypothesis: no input makes the parser raise or return an unbounded event."""

    @FUZZ
    @given(st.one_of(source_lines(), st.text(max_size=200)))
    def test_fuzz(self, line: str) -> None:
        """10,000 generated lines: exactly one known, bounded event each, never an error."""
        check_bounded(parse_line(line), line)


class LimitsTests(SynchronousTestCase):
    """Hostile lengths."""

    def test_overlong_line_unknown(self) -> None:
        """A line over MAX_LINE is Unknown at once, whatever it holds."""
        line = '"a<1><b><c>" killed ' * 300
        self.assertIsInstance(parse_line(line), Unknown)
        self.assertIsInstance(parse_line(CSGO + 'World triggered "Round_Start"' + " " * 5000),
                              Unknown)
