"""Units and fuzzing of the sans-IO Source RCON codec."""

from __future__ import annotations

import itertools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from gamews.rcon.source_codec import (
    MAX_BODY,
    RECEIVE_SIZE_LIMIT,
    SERVERDATA_AUTH,
    SERVERDATA_AUTH_RESPONSE,
    SERVERDATA_EXECCOMMAND,
    SERVERDATA_RESPONSE_VALUE,
    AuthAccepted,
    AuthRejected,
    Packet,
    PacketDecoder,
    ProtocolViolationError,
    Reply,
    SourceRconClientCodec,
    encode_packet,
)

MARKER_TAIL = b"\x00\x00\x00\x01\x00\x00\x00\x00"


def raw(size: int, packet_id: int, packet_type: int, body: bytes, tail: bytes = b"\0\0") -> bytes:
    """Bytes of a packet with a chosen (possibly wrong) size field and terminator."""
    return struct.pack("<iii", size, packet_id, packet_type) + body + tail


def response(packet_id: int, body: bytes = b"") -> bytes:
    """A well-formed RESPONSE_VALUE packet (server side: the body may hold NULs)."""
    return raw(10 + len(body), packet_id, SERVERDATA_RESPONSE_VALUE, body)


def auth_ok(auth_id: int) -> bytes:
    """What SRCDS sends after a good password: empty RESPONSE_VALUE then AUTH_RESPONSE."""
    return response(auth_id) + encode_packet(Packet(auth_id, SERVERDATA_AUTH_RESPONSE, b""))


def authenticated() -> SourceRconClientCodec:
    """A codec that has authenticated (auth id 1)."""
    codec = SourceRconClientCodec()
    codec.authenticate(b"pw")
    assert codec.receive(auth_ok(1)) == [AuthAccepted()]
    return codec


def server_reply(request_id: int, marker_id: int, body: bytes, chunk: int = 4086) -> bytes:
    """A reply split SRCDS-style into ``chunk``-byte pieces, then the mirrored end marker."""
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    return (b"".join(response(request_id, p) for p in pieces)
            + response(marker_id) + response(marker_id, MARKER_TAIL))


class EncodeTests(unittest.SynchronousTestCase):
    """Request packets."""

    def test_layout(self) -> None:
        """A packet is size, id, type (little-endian), body and two NULs."""
        data = encode_packet(Packet(7, SERVERDATA_AUTH, b"pw"))
        self.assertEqual(data, b"\x0c\0\0\0\x07\0\0\0\x03\0\0\0pw\0\0")

    def test_nul_refused(self) -> None:
        """A body with a NUL could smuggle a second command and is refused."""
        self.assertRaises(ValueError, encode_packet, Packet(1, SERVERDATA_EXECCOMMAND, b"a\0b"))

    def test_too_long_refused(self) -> None:
        """A body beyond the 4096-byte packet bound is refused; the longest legal one passes."""
        self.assertEqual(len(encode_packet(Packet(1, 2, b"x" * MAX_BODY))), 4100)
        self.assertRaises(ValueError, encode_packet, Packet(1, 2, b"x" * (MAX_BODY + 1)))

    def test_command_carries_end_marker(self) -> None:
        """A command is followed by an empty RESPONSE_VALUE with the next id."""
        codec = authenticated()
        request_id, data = codec.command(b"status")
        self.assertEqual(request_id, 2)
        self.assertEqual(data, encode_packet(Packet(2, SERVERDATA_EXECCOMMAND, b"status"))
                         + response(3))

    def test_command_before_auth_refused(self) -> None:
        """Commands cannot be built before authentication succeeded."""
        codec = SourceRconClientCodec()
        self.assertRaises(RuntimeError, codec.command, b"status")


class DecodeTests(unittest.SynchronousTestCase):
    """Received packets and replies."""

    def test_auth_with_leading_empty_response(self) -> None:
        """The empty RESPONSE_VALUE SRCDS sends before AUTH_RESPONSE is skipped."""
        codec = SourceRconClientCodec()
        codec.authenticate(b"pw")
        self.assertEqual(codec.receive(response(1)), [])
        self.assertFalse(codec.authenticated)
        self.assertEqual(codec.receive(encode_packet(Packet(1, 2, b""))), [AuthAccepted()])
        self.assertTrue(codec.authenticated)

    def test_auth_rejected(self) -> None:
        """AUTH_RESPONSE with id -1 is a rejected password."""
        codec = SourceRconClientCodec()
        codec.authenticate(b"bad")
        events = codec.receive(response(1) + encode_packet(Packet(-1, 2, b"")))
        self.assertEqual(events, [AuthRejected()])
        self.assertFalse(codec.authenticated)

    def test_split_at_every_byte_boundary(self) -> None:
        """Auth and a multi-packet reply give the same events however the bytes are cut."""
        auth = auth_ok(1)
        for cut in range(len(auth) + 1):
            codec = SourceRconClientCodec()
            codec.authenticate(b"pw")
            events = codec.receive(auth[:cut]) + codec.receive(auth[cut:])
            self.assertEqual(events, [AuthAccepted()], f"auth cut at {cut}")
        body = bytes(range(256)) * 40  # 10 KiB: three packets
        stream = server_reply(2, 3, body)
        for cut in range(len(stream) + 1):
            codec = authenticated()
            codec.command(b"cvarlist")
            events = codec.receive(stream[:cut]) + codec.receive(stream[cut:])
            self.assertEqual(events, [Reply(2, body)], f"reply cut at {cut}")

    def test_every_single_byte(self) -> None:
        """Feeding one byte at a time reassembles a 100 KB reply whole and in order."""
        codec = authenticated()
        request_id, _ = codec.command(b"cvarlist")
        body = b"".join(b"cvar_%06d 1\n" % i for i in range(8000))
        self.assertGreater(len(body), 100_000)
        stream = server_reply(request_id, request_id + 1, body)
        events = []
        for i in range(len(stream)):
            events += codec.receive(stream[i:i + 1])
        self.assertEqual(events, [Reply(request_id, body)])

    def test_out_of_order_ids(self) -> None:
        """Pipelined replies are matched by id, whichever finishes first."""
        codec = authenticated()
        a, _ = codec.command(b"a")
        b, _ = codec.command(b"b")
        events = codec.receive(response(b, b"B1") + response(a, b"A1") + response(b + 1)
                               + response(a, b"A2") + response(a + 1))
        self.assertEqual(events, [Reply(b, b"B1"), Reply(a, b"A1A2")])
        self.assertEqual(codec.pending, 0)

    def test_marker_tail_and_abandoned_ids_skipped(self) -> None:
        """The marker's trailing packet and pieces of abandoned commands are dropped."""
        codec = authenticated()
        a, _ = codec.command(b"slow")
        codec.abandon(a)
        b, _ = codec.command(b"fast")
        events = codec.receive(response(a, b"late" * 100) + response(a + 1)
                               + response(a + 1, MARKER_TAIL) + server_reply(b, b + 1, b"ok"))
        self.assertEqual(events, [Reply(b, b"ok")])

    def test_empty_reply(self) -> None:
        """A command with no output gives an empty reply."""
        codec = authenticated()
        request_id, _ = codec.command(b"sv_cheats 0")
        self.assertEqual(codec.receive(server_reply(request_id, request_id + 1, b"")),
                         [Reply(request_id, b"")])

    def test_size_margin(self) -> None:
        """A size field up to 4096+10 (Minecraft-style 4096-byte bodies) is accepted, not more."""
        decoder = PacketDecoder()
        body = b"x" * (RECEIVE_SIZE_LIMIT - 10)
        self.assertEqual(len(decoder.feed(raw(RECEIVE_SIZE_LIMIT, 5, 0, body))), 1)
        self.assertRaises(ProtocolViolationError, PacketDecoder().feed,
                          raw(RECEIVE_SIZE_LIMIT + 1, 5, 0, body + b"x"))

    def test_malformed(self) -> None:
        """Small or huge sizes, a missing terminator and unknown types are violations."""
        cases = {
            "size below 10": raw(9, 1, 0, b"", b"\0"),
            "negative size": struct.pack("<i", -5),
            "huge size": struct.pack("<i", 2**31 - 1),
            "no terminator": raw(12, 1, 0, b"ab", b"xy"),
            "unknown type": raw(10, 1, 7, b""),
            "auth type from a server": raw(10, 1, 3, b""),
        }
        for name, data in cases.items():
            codec = authenticated()
            with self.assertRaises(ProtocolViolationError, msg=name):
                codec.receive(data)

    def test_huge_size_does_not_buffer(self) -> None:
        """A size announcing gigabytes is refused at once, not buffered."""
        decoder = PacketDecoder()
        self.assertRaises(ProtocolViolationError, decoder.feed, struct.pack("<i", 10**9))
        self.assertEqual(decoder.buffered, 0)

    def test_auth_response_after_auth(self) -> None:
        """An AUTH_RESPONSE after authentication is a violation."""
        codec = authenticated()
        self.assertRaises(ProtocolViolationError, codec.receive, encode_packet(Packet(9, 2, b"")))

    def test_unknown_auth_id(self) -> None:
        """An AUTH_RESPONSE for an id we never sent is a violation."""
        codec = SourceRconClientCodec()
        codec.authenticate(b"pw")
        self.assertRaises(ProtocolViolationError, codec.receive, encode_packet(Packet(42, 2, b"")))

    def test_reply_size_bounded(self) -> None:
        """A reply beyond max_reply_size drops the link instead of growing without bound."""
        codec = SourceRconClientCodec(max_reply_size=10_000)
        codec.authenticate(b"pw")
        codec.receive(auth_ok(1))
        request_id, _ = codec.command(b"flood")
        with self.assertRaises(ProtocolViolationError):
            for _ in range(10):
                codec.receive(response(request_id, b"x" * 4000))

    def test_text_decoding(self) -> None:
        """Reply text is UTF-8 with invalid bytes replaced, never an exception."""
        self.assertEqual(Reply(1, "é".encode() + b"\xff").text, "é\ufffd")


# -- fuzzing --------------------------------------------------------------------------------

FUZZ = settings(max_examples=2500, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def valid_packets() -> st.SearchStrategy[list[tuple[int, bytes]]]:
    """Lists of (id, body) replies."""
    return st.lists(st.tuples(st.integers(2, 50), st.binary(max_size=300)), max_size=6)


class FuzzTests(unittest.SynchronousTestCase):
    """Hypothesis: no exception but ProtocolViolationError escapes; memory stays bounded."""

    @FUZZ
    @given(chunks=st.lists(st.binary(max_size=64), max_size=8), pre_auth=st.booleans())
    def test_garbage(self, chunks: list[bytes], pre_auth: bool) -> None:
        """Random bytes never raise anything but ProtocolViolationError; the buffer stays small."""
        codec = SourceRconClientCodec()
        codec.authenticate(b"pw")
        if not pre_auth:
            codec.receive(auth_ok(1))
            codec.command(b"status")
        try:
            for chunk in chunks:
                codec.receive(chunk)
                self.assertLessEqual(codec._decoder.buffered, RECEIVE_SIZE_LIMIT + 4)
        except ProtocolViolationError:
            pass

    @settings(max_examples=2000, derandomize=True, deadline=None, database=None)
    @given(
        size=st.integers(-(2**31), 2**31 - 1),
        packet_id=st.integers(-(2**31), 2**31 - 1),
        packet_type=st.integers(-(2**31), 2**31 - 1),
        body=st.binary(max_size=40),
    )
    def test_headers(self, size: int, packet_id: int, packet_type: int, body: bytes) -> None:
        """Any header values are either a packet or a ProtocolViolationError."""
        decoder = PacketDecoder()
        try:
            packets = decoder.feed(struct.pack("<iii", size, packet_id, packet_type) + body)
        except ProtocolViolationError:
            return
        for packet in packets:
            self.assertIn(packet.type, (0, 2))
        self.assertLessEqual(decoder.buffered, RECEIVE_SIZE_LIMIT + 4)

    @settings(max_examples=800, derandomize=True, deadline=None, database=None)
    @given(body=st.binary(max_size=9000), cuts=st.lists(st.integers(0, 9200), max_size=6))
    def test_reassembly(self, body: bytes, cuts: list[int]) -> None:
        """Any reply, cut anywhere, comes out whole."""
        codec = authenticated()
        request_id, _ = codec.command(b"x")
        stream = server_reply(request_id, request_id + 1, body)
        bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
        events = []
        for start, end in itertools.pairwise(bounds):
            events += codec.receive(stream[start:end])
        self.assertEqual(events, [Reply(request_id, body)])
