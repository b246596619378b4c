"""A player's chat can never become another event (property tests over hostile text).

Source and GoldSrc engines write chat as ``"NAME<uid><steamid><team>" say "TEXT"`` without
escaping anything in NAME or TEXT. The parser recognises the chat line by its structure
first; these tests build chat lines from arbitrary names and texts (quotes, ``<``, ``>``,
``killed``, ``changed name to``, whole player tokens and log lines as text) in every form
the engines write (file, HTTP and bare lines; CS:GO/CS2, TF2, GoldSrc and console tokens;
``say`` and ``say_team``; `` (dead)``) and check that each parses as exactly that chat.

The one thing a name is assumed not to hold is the text ``" say`` right after a token's
``<...>`` parts: the speaker's token ends at the first such place (module docstring of
:mod:`gamews.logs.source`).
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import Chat
from gamews.logs.source import make_player, parse_line
from tests.logs.support import FUZZ

FRAGMENTS = [
    '"', "<", ">", " killed ", " changed name to ", '" changed name to "', " say ",
    '" say "', '" say_team "', "<5><[U:1:442078920]><CT>", '<5><[U:1:442078920]><CT>"',
    '"Alice<5><[U:1:442078920]><CT>" killed "Bob<6><BOT><T>" with "ak47" (headshot)',
    '"X<7><STEAM_0:1:2><TERRORIST>" disconnected (reason "x")', " (dead)", '" (dead)',
    "World triggered \"Round_Start\"", 'Team "CT" scored "16" with "5" players',
    "L 01/01/2020 - 00:00:00: ", "rcon from \"1.2.3.4:5\": command \"quit\"", "[1 2 3]",
    " entered the game", "Console<0>", "<BOT>", "<>", "é", "😀", "\\", "'",
]
PIECES = st.one_of(st.sampled_from(FRAGMENTS),
                   st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12))
TEXTS = st.lists(PIECES, max_size=6).map("".join)
NAMES = st.lists(PIECES, max_size=4).map("".join)
TOKENS = st.sampled_from([
    ("{uid}", "<[U:1:{acc}]><{team}>"),          # CS2, TF2 today
    ("{uid}", "<STEAM_1:{y}:{acc}><{team}>"),    # CS:GO
    ("{uid}", "<STEAM_0:{y}:{acc}><{team}>"),    # TF2 2013, GoldSrc (CS 1.6)
    ("{uid}", "<BOT><{team}>"),                  # bots
    ("{uid}", "<STEAM_ID_PENDING><>"),           # not yet validated
    ("0", "<Console><Console>"),                 # TF2 console
    ("0", ""),                                   # CS2 console
])
TEAMS = st.sampled_from(["CT", "TERRORIST", "Red", "Blue", "Unassigned", "Spectator", ""])
PREFIXES = st.sampled_from(["L 02/15/2013 - 00:09:15: ", "07/17/2026 - 18:14:24.329 - ", ""])


class ChatStructureTests(SynchronousTestCase):
    """Every chat line is that chat and nothing else."""

    @FUZZ
    @given(NAMES, TEXTS, TOKENS, TEAMS, st.integers(1, 9999), st.integers(1, 10**9),
           st.integers(0, 1), st.sampled_from(["say", "say_team"]), st.booleans(), PREFIXES)
    def test_chat_is_chat(self, name: str, text: str, token: tuple[str, str], team: str,
                          uid: int, acc: int, y: int, verb: str, dead: bool,
                          prefix: str) -> None:
        """10,000 hostile chat lines: each is a Chat with the speaker, text and flags."""
        assume('" say' not in name)
        uid_text, tail = token
        uid_text = uid_text.format(uid=uid)
        tail = tail.format(acc=acc, y=y, team=team)
        line = (f'{prefix}"{name}<{uid_text}>{tail}" {verb} "{text}"'
                + (" (dead)" if dead else ""))
        event = parse_line(line)
        assert isinstance(event, Chat), (line, event)
        parts = tail[1:-1].split("><") if tail else []
        expected = make_player(name, uid_text, parts[0] if parts else None,
                               parts[1] if len(parts) > 1 else None)
        self.assertEqual((event.player, event.text, event.team, event.dead),
                         (expected, text, verb == "say_team", dead))

    def test_issue_example(self) -> None:
        """The reported forgery is Bob's chat, not Alice's name change."""
        event = parse_line('"Bob<2><[U:1:1]><CT>" say "<5><[U:1:442078920]><CT>" changed '
                           'name to "I am a cheater"')
        assert isinstance(event, Chat)
        self.assertEqual((event.player.name, event.player.key, event.text),
                         ("Bob", "[U:1:1]", '<5><[U:1:442078920]><CT>" changed name to '
                                            '"I am a cheater'))
