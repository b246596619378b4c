"""Sans-IO codec for Valve's Source RCON protocol (client side).

Pure: bytes in, events out; requests in, bytes out.  No Twisted, no sockets, no clocks, so
it is tested byte by byte and fuzzed.

Wire format (all integers little-endian signed 32-bit)::

    size | id | type | body | 0x00 | 0x00

``size`` counts everything after itself, so the smallest packet has ``size`` 10.  Types:
``SERVERDATA_AUTH`` 3, ``SERVERDATA_AUTH_RESPONSE`` 2, ``SERVERDATA_EXECCOMMAND`` 2,
``SERVERDATA_RESPONSE_VALUE`` 0.

Replies longer than one packet (SRCDS splits at ~4 KB, not at line breaks) are reassembled
with the standard end marker: after each command the client sends an empty
``RESPONSE_VALUE`` with its own id; the server mirrors it back after the last piece of the
command's reply (and then sends one more packet with that id and body ``00 00 00 01 00 00 00
00``, which is skipped).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_BODY",
    "MAX_PACKET_SIZE",
    "MAX_REPLY_SIZE",
    "MIN_PACKET_SIZE",
    "RECEIVE_SIZE_LIMIT",
    "SERVERDATA_AUTH",
    "SERVERDATA_AUTH_RESPONSE",
    "SERVERDATA_EXECCOMMAND",
    "SERVERDATA_RESPONSE_VALUE",
    "AuthAccepted",
    "AuthRejected",
    "Event",
    "Packet",
    "PacketDecoder",
    "ProtocolViolationError",
    "Reply",
    "SourceRconClientCodec",
    "encode_packet",
]

SERVERDATA_AUTH: Final = 3
SERVERDATA_AUTH_RESPONSE: Final = 2
SERVERDATA_EXECCOMMAND: Final = 2
SERVERDATA_RESPONSE_VALUE: Final = 0

#: Smallest legal ``size`` field: id + type + two NULs.
MIN_PACKET_SIZE: Final = 10
#: The protocol's packet bound: the ``size`` field of a packet is at most 4096.
MAX_PACKET_SIZE: Final = 4096
#: Margin accepted on receive above :data:`MAX_PACKET_SIZE`: Minecraft-derived servers send
#: up to 4096 body bytes in one packet (``size`` 4106).  Anything larger drops the link.
SIZE_MARGIN: Final = 10
#: The largest ``size`` field accepted from a server.
RECEIVE_SIZE_LIMIT: Final = MAX_PACKET_SIZE + SIZE_MARGIN
#: The longest command or password body that fits in one request packet.
MAX_BODY: Final = MAX_PACKET_SIZE - MIN_PACKET_SIZE
#: A reassembled reply larger than this drops the link (a 100 KB ``cvarlist`` is fine).
MAX_REPLY_SIZE: Final = 4 * 1024 * 1024

_HEADER = struct.Struct("<iii")
_SIZE = struct.Struct("<i")
_INT32_MAX: Final = 2**31 - 1


class ProtocolViolationError(Exception):
    """The peer sent something that is not Source RCON; the link must be dropped."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One RCON packet: ``id``, ``type`` and ``body`` (without the two trailing NULs)."""

    id: int
    type: int
    body: bytes


def encode_packet(packet: Packet) -> bytes:
    """Return the wire bytes for ``packet``.

    Raises ``ValueError`` if the body holds a NUL or the packet exceeds the protocol bound,
    or if ``id``/``type`` do not fit in a signed 32-bit integer.
    """
    if b"\0" in packet.body:
        raise ValueError("an RCON request body cannot contain NUL")
    if len(packet.body) > MAX_BODY:
        raise ValueError(f"an RCON request body is at most {MAX_BODY} bytes")
    for value in (packet.id, packet.type):
        if not -_INT32_MAX - 1 <= value <= _INT32_MAX:
            raise ValueError("id and type must fit in a signed 32-bit integer")
    size = MIN_PACKET_SIZE + len(packet.body)
    return _HEADER.pack(size, packet.id, packet.type) + packet.body + b"\0\0"


class PacketDecoder:
    """Split a byte stream into packets; the buffer never holds more than one packet.

    :meth:`feed` raises :class:`ProtocolViolationError` on a size field outside
    ``[MIN_PACKET_SIZE, max_size]``, a missing terminator or a type not in ``types``.  After
    a violation the decoder is unusable (drop the connection).
    """

    def __init__(
        self,
        *,
        max_size: int = RECEIVE_SIZE_LIMIT,
        types: frozenset[int] = frozenset({SERVERDATA_RESPONSE_VALUE, SERVERDATA_AUTH_RESPONSE}),
    ) -> None:
        """Accept packets whose ``size`` field is at most ``max_size`` and type is in ``types``."""
        self._max_size = max_size
        self._types = types
        self._buffer = bytearray()
        self._broken = False

    def feed(self, data: bytes) -> list[Packet]:
        """Add received bytes; return the packets now complete, in order."""
        if self._broken:
            raise ProtocolViolationError("decoder used after a protocol violation")
        self._buffer += data
        packets: list[Packet] = []
        buf = self._buffer
        offset = 0
        try:
            while len(buf) - offset >= _SIZE.size:
                (size,) = _SIZE.unpack_from(buf, offset)
                if size < MIN_PACKET_SIZE or size > self._max_size:
                    raise ProtocolViolationError(
                        f"packet size {size} outside {MIN_PACKET_SIZE}..{self._max_size}"
                    )
                end = offset + _SIZE.size + size
                if len(buf) < end:
                    break
                _, packet_id, packet_type = _HEADER.unpack_from(buf, offset)
                if buf[end - 2:end] != b"\0\0":
                    raise ProtocolViolationError("packet not terminated by two NULs")
                if packet_type not in self._types:
                    raise ProtocolViolationError(f"unexpected packet type {packet_type}")
                packets.append(Packet(packet_id, packet_type, bytes(buf[offset + 12:end - 2])))
                offset = end
        except ProtocolViolationError:
            self._broken = True
            self._buffer = bytearray()
            raise
        del buf[:offset]
        return packets

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a packet (never above ``max_size + 4``)."""
        return len(self._buffer)


@dataclass(frozen=True, slots=True)
class AuthAccepted:
    """The server accepted the password."""


@dataclass(frozen=True, slots=True)
class AuthRejected:
    """The server rejected the password (AUTH_RESPONSE with id -1)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The whole reply (all pieces, in order) to the command sent with ``request_id``."""

    request_id: int
    body: bytes

    @property
    def text(self) -> str:
        """The reply decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")


Event = AuthAccepted | AuthRejected | Reply


class SourceRconClientCodec:
    """The client side of one Source RCON connection, as a pure state machine.

    Call :meth:`authenticate` once, then :meth:`command` any number of times (pipelined);
    feed every received chunk to :meth:`receive` and act on the returned events.  Replies
    are matched to commands by id; pieces for ids no longer wanted (see :meth:`abandon`) are
    dropped without being stored.
    """

    def __init__(self, *, max_reply_size: int = MAX_REPLY_SIZE) -> None:
        """Make a codec for a fresh connection."""
        self._decoder = PacketDecoder()
        self._next_id = 1
        self._auth_id: int | None = None
        self.authenticated = False
        self._max_reply_size = max_reply_size
        # command id -> (end-marker id, pieces so far, size so far)
        self._pending: dict[int, tuple[int, list[bytes], int]] = {}
        self._by_marker: dict[int, int] = {}

    def _new_id(self) -> int:
        packet_id = self._next_id
        self._next_id = 1 if packet_id >= _INT32_MAX else packet_id + 1
        return packet_id

    def authenticate(self, password: bytes) -> bytes:
        """Return the SERVERDATA_AUTH packet for ``password``."""
        if self._auth_id is not None:
            raise RuntimeError("authenticate() may be called once per connection")
        self._auth_id = self._new_id()
        return encode_packet(Packet(self._auth_id, SERVERDATA_AUTH, password))

    def command(self, command: bytes) -> tuple[int, bytes]:
        """Return ``(request_id, bytes)`` for ``command`` followed by its end marker.

        Raises ``ValueError`` for a NUL or an over-long command, ``RuntimeError`` before
        authentication.
        """
        if not self.authenticated:
            raise RuntimeError("not authenticated")
        if b"\0" in command:
            raise ValueError("an RCON request body cannot contain NUL")
        if len(command) > MAX_BODY:
            raise ValueError(f"an RCON request body is at most {MAX_BODY} bytes")
        request_id = self._new_id()
        marker_id = self._new_id()
        data = b"".join((
            _HEADER.pack(MIN_PACKET_SIZE + len(command), request_id, SERVERDATA_EXECCOMMAND),
            command,
            b"\0\0",
            _HEADER.pack(MIN_PACKET_SIZE, marker_id, SERVERDATA_RESPONSE_VALUE),
            b"\0\0",
        ))
        self._pending[request_id] = (marker_id, [], 0)
        self._by_marker[marker_id] = request_id
        return request_id, data

    def abandon(self, request_id: int) -> None:
        """Forget ``request_id`` (timed out or cancelled); its late pieces are dropped."""
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            self._by_marker.pop(entry[0], None)

    @property
    def pending(self) -> int:
        """Commands sent whose reply is not complete yet."""
        return len(self._pending)

    def receive(self, data: bytes) -> list[Event]:
        """Feed received bytes; return the events they complete.

        Raises :class:`ProtocolViolationError` for anything that is not valid Source RCON in
        this connection's state; the connection must then be dropped.
        """
        events: list[Event] = []
        for packet in self._decoder.feed(data):
            event = self._packet(packet)
            if event is not None:
                events.append(event)
        return events

    def _packet(self, packet: Packet) -> Event | None:
        if not self.authenticated:
            if self._auth_id is None:
                raise ProtocolViolationError("data received before authentication was sent")
            if packet.type == SERVERDATA_RESPONSE_VALUE:
                # SRCDS sends an empty RESPONSE_VALUE before AUTH_RESPONSE.
                return None
            if packet.id == -1:
                return AuthRejected()
            if packet.id == self._auth_id:
                self.authenticated = True
                return AuthAccepted()
            raise ProtocolViolationError(f"AUTH_RESPONSE for unknown id {packet.id}")
        if packet.type != SERVERDATA_RESPONSE_VALUE:
            # SERVERDATA_AUTH_RESPONSE after authentication: not a valid reply.
            raise ProtocolViolationError(f"unexpected packet type {packet.type} after auth")
        request_id = self._by_marker.pop(packet.id, None)
        if request_id is not None:
            _, pieces, _ = self._pending.pop(request_id)
            return Reply(request_id, b"".join(pieces))
        entry = self._pending.get(packet.id)
        if entry is not None:
            marker_id, pieces, size = entry
            size += len(packet.body)
            if size > self._max_reply_size:
                raise ProtocolViolationError(f"reply larger than {self._max_reply_size} bytes")
            pieces.append(packet.body)
            self._pending[packet.id] = (marker_id, pieces, size)
            return None
        # A mirrored marker's trailing packet, or a piece for an abandoned command: skip it.
        return None
