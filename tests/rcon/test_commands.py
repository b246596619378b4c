"""Command builders against hostile browser text."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from gamews.rcon.commands import MAX_TEXT, change_map, clean_text, kick, kick_slot, quote, say

HOSTILE = [
    'hi"; rcon_password owned; say "',
    "hi\nquit",
    "hi\r\nexec evil.cfg",
    "a\0b",
    "line\u2028sep\u2029para\u0085nel",
    "\u202eright-to-left override",
    "back\\slash `tick` $var %s",
    ";;;;",
    '"',
    "x" * 10_000,
]


def injection_free(command: str, prefix: str) -> None:
    """Assert ``command`` is ``prefix "..."`` with nothing that ends the command."""
    assert command.startswith(prefix + ' "') and command.endswith('"'), command
    inner = command[len(prefix) + 2:-1]
    assert '"' not in inner and ";" not in inner, command
    assert all(unicodedata.category(c)[0] != "C" for c in inner), command
    assert all(unicodedata.category(c) not in ("Zl", "Zp") for c in inner), command


class CommandTests(unittest.SynchronousTestCase):
    """say, kick, kick_slot, change_map."""

    def test_say_hostile(self) -> None:
        """Every hostile string becomes one quoted argument of one say command."""
        for text in HOSTILE:
            command = say(text)
            injection_free(command, "say")
            self.assertLessEqual(len(command), MAX_TEXT + 6)

    def test_say_keeps_normal_text(self) -> None:
        """Ordinary chat, accents and colour codes pass unchanged."""
        self.assertEqual(say("gg ^1well^7 played, René!"), 'say "gg ^1well^7 played, René!"')

    def test_clean_text(self) -> None:
        """Quotes, semicolons and newlines become single spaces; ends are trimmed."""
        self.assertEqual(clean_text(' a";b\n\nc '), "a b c")
        self.assertEqual(quote("\0"), '""')

    def test_kick(self) -> None:
        """Names are cleaned and quoted; an empty name is refused."""
        injection_free(kick('bob"; quit'), "kick")
        self.assertRaises(ValueError, kick, ";\n")

    def test_kick_slot(self) -> None:
        """Slots must be small integers; each engine gets its own command."""
        self.assertEqual(kick_slot("quake3", 4), "clientkick 4")
        self.assertEqual(kick_slot("source", 12), "kickid 12")
        injection_free(kick_slot("source", 12, 'spam"; quit'), "kickid 12")
        for bad in (-1, 10**6, True):
            self.assertRaises(ValueError, kick_slot, "source", bad)
        self.assertRaises(ValueError, kick_slot, "quake3", "4; quit")

    def test_change_map(self) -> None:
        """Map names are validated, not cleaned."""
        self.assertEqual(change_map("oa_dm2"), "map oa_dm2")
        for bad in ("oa_dm2; quit", "../../etc/passwd", "", "a b", "x\n"):
            self.assertRaises(ValueError, change_map, bad)

    @settings(max_examples=1500, derandomize=True, deadline=None, database=None)
    @given(text=st.text(max_size=200))
    def test_say_fuzz(self, text: str) -> None:
        """No generated text escapes the quoted argument of say."""
        injection_free(say(text), "say")
