"""Classes of real lines seen misread in other Source and GoldSrc logs (one test per class).

The lines follow the forms of the HL Log Standard and of the recorded fixtures; each class is
checked with its variants, not one example.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import (
    Assist,
    Chat,
    Damage,
    Envelope,
    EventBus,
    ItemPickup,
    Kill,
    MatchEnd,
    PlayerTriggered,
    PointCaptured,
    RconSeen,
    RoundEnd,
    ServerCvar,
    TeamChange,
    TeamScore,
    WorldKill,
)
from gamews.logs.source import parse_line

L = "L 02/24/2018 - 17:59:44: "
P = '"Ann<2><STEAM_0:0:5><TERRORIST>"'
Q = '"Bob<3><STEAM_0:1:6><CT>"'


class DeathsTests(SynchronousTestCase):
    """Deaths that are not kills, and kills that are not deaths."""

    def test_feign_death_is_no_death(self) -> None:
        """TF2's dead ringer: a player_triggered, not a kill."""
        e = parse_line(f'{L}"S<4><[U:1:9]><Blue>" killed "T<5><[U:1:8]><Red>" with "knife" '
                       '(customkill "feign_death") (attacker_position "1 2 3")')
        assert isinstance(e, PlayerTriggered)
        self.assertEqual((e.action, e.target and e.target.key), ("feign_death", "[U:1:8]"))
        bus = EventBus(Clock())
        bus.publish("s", e)
        state = bus.state("s")
        assert state is not None
        self.assertEqual(sum(p.deaths for p in state.players.values()), 0)

    def test_world_deaths(self) -> None:
        """The bomb and the world kill without a killer; positions and end dots optional."""
        for line in (f"{L}{P} [984 155 -152] was killed by the bomb.",
                     f"{L}{P} was killed by the bomb",
                     f'{L}{P} committed suicide with "worldspawn"',
                     f'{L}{P} [1 2 3] committed suicide with "trigger_hurt"'):
            e = parse_line(line)
            assert isinstance(e, WorldKill), line
            self.assertEqual(e.victim.key, "[U:1:10]")

    def test_killed_other_nobody_died(self) -> None:
        """A chicken or a hostage: a player_triggered with what died and the weapon."""
        e = parse_line(f'{L}{P} [1 2 3] killed other "chicken<412>" [4 5 6] with "knife" '
                       '(penetrated)')
        assert isinstance(e, PlayerTriggered)
        self.assertEqual((e.action, dict(e.properties)),
                         ("killed_other", {"victim": "chicken", "weapon": "knife"}))


class VariantsTests(SynchronousTestCase):
    """Whitespace, console tokens, GoldSrc forms."""

    def test_trailing_spaces(self) -> None:
        """Lines ending in spaces parse as without them."""
        e = parse_line(f"{L}{P} blinded for 1.84 by {Q} from flashbang entindex 140 ")
        assert isinstance(e, PlayerTriggered)
        self.assertEqual((e.action, e.properties), ("blinded", (("duration", "1.84"),)))
        e = parse_line(f'{L}Team "Red" triggered "pointcaptured" (cp "1") (cpname "#cp_b") '
                       '(numcappers "1") (player1 "A<2><[U:1:5]><Red>") (position1 "1 2 3") ')
        assert isinstance(e, PointCaptured)
        self.assertEqual((e.team, e.point, len(e.cappers)), ("Red", "#cp_b", 1))

    def test_game_over_spaces(self) -> None:
        """CS2's two spaces in Game Over still give the mode, the map and the score."""
        e = parse_line(f"{L}Game Over: competitive  de_inferno score 2:13 after 10 min")
        self.assertEqual(e, MatchEnd("competitive", "de_inferno", "2:13",
                                     log_time="2018-02-24T17:59:44"))

    def test_console_tokens(self) -> None:
        """CS2's "Console<0>" and TF2's full console token are the console."""
        for token in ('"Console<0>"', '"Console<0><Console><Console>"'):
            e = parse_line(f'{L}{token} say "hello"')
            assert isinstance(e, Chat)
            self.assertEqual((e.player.key, e.text), ("console", "hello"))

    def test_goldsrc_forms(self) -> None:
        """HLDS: joined team (auto), Server cvar, float team scores."""
        e = parse_line(f'{L}"Ann<2><STEAM_0:0:5><>" joined team "TERRORIST" (auto)')
        assert isinstance(e, TeamChange)
        self.assertEqual(e.team, "TERRORIST")
        self.assertEqual(parse_line(f'{L}Server cvar "mp_timelimit" = "20"'),
                         ServerCvar("mp_timelimit", "20", log_time="2018-02-24T17:59:44"))
        e = parse_line(f'{L}Server cvar "rcon_password" = "hunter2"')
        assert isinstance(e, ServerCvar)
        self.assertEqual(e.value, "<redacted>")
        e = parse_line(f'{L}Team "CT" scored "586.00" with "5" players')
        self.assertEqual(e, TeamScore("CT", 586, 5, log_time="2018-02-24T17:59:44"))

    def test_goldsrc_rcon_line(self) -> None:
        """HLDS's Rcon line is an rcon event with neither challenge, password nor address."""
        for line, command in (
            (f'{L}Rcon: "rcon 1398743 "hunter2" changelevel de_dust2" from "198.51.100.4:27005"',
             "changelevel de_dust2"),
            (f'{L}Rcon: "rcon 1398743 hunter2 status" from "198.51.100.4:27005"', "status"),
            (f'{L}Rcon: "rcon 1398743 "hunter2"" from "198.51.100.4:27005"', ""),
        ):
            e = parse_line(line)
            self.assertEqual(e, RconSeen(command, True, log_time="2018-02-24T17:59:44"), line)
            text = Envelope(1, "s", 0, e).to_json_text()
            for secret in ("hunter2", "1398743", "198.51.100.4"):
                self.assertNotIn(secret, text)


class DataTests(SynchronousTestCase):
    """Events keep their data."""

    def test_tf2_damage_and_assist(self) -> None:
        """TF2 damage and kill assist lines are damage and assist events."""
        e = parse_line(f'{L}"A<2><[U:1:5]><Red>" triggered "damage" against "B<3><[U:1:6]><Blue>" '
                       '(damage "52") (weapon "tf_projectile_rocket")')
        assert isinstance(e, Damage)
        self.assertEqual((e.victim.key, e.weapon, e.damage),
                         ("[U:1:6]", "tf_projectile_rocket", 52))
        e = parse_line(f'{L}"A<2><[U:1:5]><Red>" triggered "kill assist" against '
                       '"B<3><[U:1:6]><Blue>" (assister_position "1 2 3")')
        assert isinstance(e, Assist)
        self.assertEqual((e.assister.key, e.victim.key), ("[U:1:5]", "[U:1:6]"))

    def test_pickup_with_properties(self) -> None:
        """picked up item with (healing "40") keeps the healing."""
        e = parse_line(f'{L}"A<2><[U:1:5]><Red>" picked up item "medkit_small" (healing "40")')
        assert isinstance(e, ItemPickup)
        self.assertEqual((e.item, e.properties), ("medkit_small", (("healing", "40"),)))

    def test_round_end_winner(self) -> None:
        """CS Round_End carries the winner of the team line before it."""
        bus = EventBus(Clock())
        for line in ('Team "TERRORIST" triggered "SFUI_Notice_Terrorists_Win" (CT "1") (T "2")',
                     'World triggered "Round_End"'):
            envelope = bus.publish("s", parse_line(L + line))
        assert isinstance(envelope.event, RoundEnd)
        self.assertEqual(envelope.event.winner, "TERRORIST")
        state = bus.state("s")
        assert state is not None
        self.assertEqual(state.teams, {"CT": 1, "TERRORIST": 2})

    def test_kill_json_has_no_address(self) -> None:
        """Connected lines keep no address: the JSON of every event is free of it."""
        e = parse_line(f'{L}{P} connected, address "203.0.113.7:27005"')
        self.assertNotIn("203.0.113.7", json.dumps(Envelope(1, "s", 0, e).to_json()))
        self.assertIsInstance(parse_line(f'{L}{P} killed {Q} with "ak47"'), Kill)


class AddressTests(SynchronousTestCase):
    """No IP address and no rcon password reaches an event, whatever the line's shape."""

    def test_unknown_lines_masked(self) -> None:
        """An unparsed line keeps its text but not its addresses (v4, v6, with ports)."""
        for line, kept in ((f"{L}Some plugin saw 203.0.113.7:27005 and [2001:db8::7]:27015",
                            "Some plugin saw <address> and <address>"),
                           (f"{L}Started at 17:08:45", "Started at 17:08:45")):
            e = parse_line(line)
            self.assertEqual(e.type, "unknown")
            self.assertIn(kept, json.dumps(Envelope(1, "s", 0, e).to_json()))

    def test_odd_rcon_lines_never_unknown(self) -> None:
        """An rcon line of a shape not foreseen is an rcon event without its text."""
        for line, ok in ((f'{L}Rcon: "rcon 1 "pw "with" quotes" x" from "198.51.100.4:1"', True),
                         (f'{L}Rcon: garbage hunter2', True),
                         (f'{L}Bad Rcon: "rcon 1 hunter2" from nowhere', False),
                         (f'{L}rcon from "198.51.100.4:1" hunter2', True)):
            e = parse_line(line)
            if ok and "pw" in line:
                # the well-formed GoldSrc pattern may take this one: its command, no password
                assert isinstance(e, RconSeen)
                self.assertNotIn("198.51", repr(e))
                continue
            self.assertEqual(e, RconSeen("", ok, log_time="2018-02-24T17:59:44"), line)
