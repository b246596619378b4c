"""Units (on real recorded OpenArena replies) and fuzzing of the Quake 3 OOB codec."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from gamews.rcon.quake3_codec import (
    MAX_REQUEST,
    OOB,
    OobMessage,
    encode_getinfo,
    encode_getstatus,
    encode_rcon,
    is_bad_password,
    parse_datagram,
    parse_info_response,
    parse_info_string,
    parse_status_response,
    print_text,
    strip_colours,
)
from tests.rcon.fixtures import openarena_replies


def joined(datagrams: list[bytes]) -> str:
    """Concatenate the ``print`` payloads of datagrams, as a client does."""
    out = []
    for d in datagrams:
        message = parse_datagram(d)
        assert message is not None and message.keyword == "print"
        out.append(print_text(message.payload))
    return "".join(out)


class EncodeTests(unittest.SynchronousTestCase):
    """Requests."""

    def test_rcon(self) -> None:
        """rcon is OOB + ``rcon PASSWORD COMMAND`` (the exact bytes OpenArena answered)."""
        self.assertEqual(encode_rcon("secret", "status"), b"\xff\xff\xff\xffrcon secret status")

    def test_queries(self) -> None:
        """getstatus and getinfo, with and without a challenge."""
        self.assertEqual(encode_getstatus(), OOB + b"getstatus")
        self.assertEqual(encode_getinfo("xyz"), OOB + b"getinfo xyz")
        self.assertRaises(ValueError, encode_getinfo, "a b")

    def test_unsafe_password(self) -> None:
        """A password the engine would split or mis-parse is refused."""
        for bad in ("", "two words", 'q"uote', "semi;colon", "back\\slash", "tab\tx", "nl\n"):
            self.assertRaises(ValueError, encode_rcon, bad, "status")

    def test_unsafe_command(self) -> None:
        """A newline (the engine reads one line) or NUL in a command is refused."""
        for bad in ("say a\nquit", "say a\rquit", "say \0", "say \x7f"):
            self.assertRaises(ValueError, encode_rcon, "pw", bad)

    def test_too_long(self) -> None:
        """Requests beyond the engine's 1023-byte line are refused, not truncated."""
        self.assertEqual(len(encode_rcon("pw", "x" * (MAX_REQUEST - 8))), MAX_REQUEST + 4)
        self.assertRaises(ValueError, encode_rcon, "pw", "x" * (MAX_REQUEST - 7))
        self.assertRaises(ValueError, encode_rcon, "pw", "say \u20ac")


class RecordedReplyTests(unittest.SynchronousTestCase):
    """Replies recorded from a real OpenArena 0.8.8 server."""

    def setUp(self) -> None:
        """Load the fixtures (skip when absent)."""
        self.replies = openarena_replies()

    def test_status(self) -> None:
        """The rcon status reply is one print datagram listing the bots."""
        text = joined(self.replies["rcon secret status"])
        self.assertTrue(text.startswith("map: oa_dm1\n"))
        for bot in ("Sarge", "Grism", "Kyonshi", "Major"):
            self.assertIn(bot, text)

    def test_cvarlist_chunks_join(self) -> None:
        """Ten datagrams cut mid-line join into the full cvar list."""
        datagrams = self.replies["rcon secret cvarlist"]
        self.assertEqual(len(datagrams), 10)
        text = joined(datagrams)
        self.assertIn(' g_mappools "0\\maps_dm.cfg', text)
        self.assertTrue(text.endswith("286 total cvars\n286 cvar indexes\n"))

    def test_bad_password(self) -> None:
        """Wrong and missing passwords are both ``Bad rconpassword.``."""
        self.assertTrue(is_bad_password(joined(self.replies["rcon wrongpw status"])))
        self.assertTrue(is_bad_password(joined(self.replies["rcon (no password) status"])))
        self.assertFalse(is_bad_password(joined(self.replies["rcon secret say hello"])))
        self.assertTrue(is_bad_password("No rconpassword set on the server.\n"))

    def test_getstatus(self) -> None:
        """getstatus gives the info keys and the four bots with score and ping."""
        [datagram] = self.replies["getstatus"]
        message = parse_datagram(datagram)
        assert message is not None
        self.assertEqual(message.keyword, "statusResponse")
        status = parse_status_response(message.payload)
        self.assertEqual(status.map_name, "oa_dm1")
        self.assertEqual(status.hostname, "gamews-test")
        self.assertEqual([p.name for p in status.players], ["Sarge", "Grism", "Kyonshi", "Major"])
        for player in status.players:
            self.assertIsInstance(player.score, int)
            self.assertIsInstance(player.ping, int)

    def test_getinfo(self) -> None:
        """getinfo echoes the challenge and counts the clients."""
        [datagram] = self.replies["getinfo xyz"]
        message = parse_datagram(datagram)
        assert message is not None and message.keyword == "infoResponse"
        info = parse_info_response(message.payload)
        self.assertEqual(info["challenge"], "xyz")
        self.assertEqual(info["clients"], "4")


class ParseTests(unittest.SynchronousTestCase):
    """Parsing details."""

    def test_colours_stripped_raw_kept(self) -> None:
        """``^N`` codes are stripped from names; the raw name is kept; ``^^`` survives."""
        payload = b'\\sv_hostname\\^1Red ^7Server\n7 48 "^1Gr^2is^7m"\n-3 999 "a^^7b"\n'
        status = parse_status_response(payload)
        self.assertEqual(status.hostname, "Red Server")
        self.assertEqual([(p.score, p.ping, p.name, p.raw_name) for p in status.players],
                         [(7, 48, "Grism", "^1Gr^2is^7m"), (-3, 999, "a^b", "a^^7b")])
        self.assertEqual(strip_colours("^xA^9B^"), "AB^")

    def test_info_string(self) -> None:
        """Info strings pair keys and values; a dangling key gets an empty value."""
        self.assertEqual(parse_info_string("\\a\\1\\b\\\\c"), {"a": "1", "b": "", "c": ""})

    def test_not_oob(self) -> None:
        """Datagrams without the OOB prefix or with an unknown keyword are ignored."""
        self.assertIsNone(parse_datagram(b"print\nhello"))
        self.assertIsNone(parse_datagram(OOB + b"printer\n"))
        self.assertEqual(parse_datagram(OOB + b"print\nhi"), OobMessage("print", b"hi"))


# -- fuzzing --------------------------------------------------------------------------------

class FuzzTests(unittest.SynchronousTestCase):
    """Hypothesis: the parsers never raise on any datagram."""

    @settings(max_examples=3000, derandomize=True, deadline=None, database=None)
    @given(data=st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: OOB + b),
        st.tuples(st.sampled_from([b"print\n", b"statusResponse\n", b"infoResponse\n"]),
                  st.binary(max_size=200)).map(lambda t: OOB + t[0] + t[1]),
    ))
    def test_datagrams(self, data: bytes) -> None:
        """Any datagram parses to None or a message whose payload parses without error."""
        message = parse_datagram(data)
        if message is None:
            return
        self.assertIn(message.keyword, ("print", "statusResponse", "infoResponse"))
        status = parse_status_response(message.payload)
        self.assertIsInstance(status.players, tuple)
        self.assertIsInstance(parse_info_response(message.payload), dict)
        self.assertIsInstance(print_text(message.payload), str)

    @settings(max_examples=1500, derandomize=True, deadline=None, database=None)
    @given(name=st.text(max_size=40), score=st.integers(-999, 99999), ping=st.integers(0, 999))
    def test_player_lines(self, name: str, score: int, ping: int) -> None:
        """A player line round-trips its numbers; names lose only colour codes."""
        raw = name.replace('"', "").replace("\n", "").encode("latin-1", "replace").decode("latin-1")
        payload = f'\\mapname\\x\n{score} {ping} "{raw}"\n'.encode("latin-1")
        [player] = parse_status_response(payload).players
        self.assertEqual((player.score, player.ping, player.raw_name), (score, ping, raw))
        self.assertEqual(player.name, strip_colours(raw))
