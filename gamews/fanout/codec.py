"""The fan-out's wire format on Redis, without I/O: key names, stream IDs, the cursor
that keeps an edge's feed gap-free, and the forwarded requests and replies.

A game server's events go to the stream ``PREFIX:SERVER:events`` with the explicit ID
``EPOCH-SEQ``: ``EPOCH`` is the origin's start time in milliseconds (one per run of the
origin), ``SEQ`` the event's ``seq``. So an ID says where an entry sits in the origin's
numbering, a snapshot's ``(epoch, seq)`` is the ID to read on from, and an XADD sent twice
(after a lost reply) is refused by Redis instead of stored twice.

Redis is an untrusted carrier: whoever can write to it must not be able to speak for an
instance. Every value and stream entry the instances write is *sealed* (:class:`Sealer`):
an HMAC-SHA256, by a key the instances share, over the entry's place (its key name and,
for events, its stream ID) and its whole payload. A reader drops what does not verify.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gamews.secret import Secret

__all__ = ["Cursor", "Keys", "Sealer", "Step", "dumps", "parse_id", "stream_fields"]


def dumps(obj: Any) -> str:
    """Compact JSON, as everything on Redis is written."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Keys:
    """The Redis key names under ``prefix``."""

    prefix: str

    def events(self, server: str) -> str:
        """The stream of ``server``'s events."""
        return f"{self.prefix}:{server}:events"

    def snapshot(self, server: str) -> str:
        """The latest match-state snapshot of ``server``, with its epoch and seq."""
        return f"{self.prefix}:{server}:snapshot"

    def heartbeat(self, server: str) -> str:
        """The origin's heartbeat for ``server`` (expires: no origin, stale pages)."""
        return f"{self.prefix}:{server}:origin"

    def requests(self) -> str:
        """The stream of requests edges forward to the origin."""
        return f"{self.prefix}:requests"

    def replies(self, edge: str) -> str:
        """The stream of the origin's replies to ``edge``."""
        return f"{self.prefix}:replies:{edge}"


class Sealer:
    """Seals and opens what the instances write to Redis, with their shared keys.

    The first key seals; every key opens (rotation: add the new key second on every
    instance, then make it first, then drop the old one). A sealed text is
    ``MAC PAYLOAD``: the hex HMAC-SHA256 of ``PLACE`` NUL ``PAYLOAD``, where ``PLACE`` is
    where it is stored (a key name, with the stream ID for events), so an entry copied to
    another key or ID does not open there.
    """

    def __init__(self, keys: Sequence[Secret]) -> None:
        if not keys:
            raise ValueError("the fan-out needs at least one key")
        self._keys = tuple(k.reveal().encode("utf-8") for k in keys)

    def __repr__(self) -> str:
        return f"<Sealer {len(self._keys)} keys>"

    @staticmethod
    def _mac(key: bytes, place: str, payload: str) -> str:
        message = place.encode("utf-8") + b"\0" + payload.encode("utf-8", "surrogatepass")
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def seal(self, place: str, payload: str) -> str:
        """``payload`` sealed for ``place``."""
        return f"{self._mac(self._keys[0], place, payload)} {payload}"

    def open(self, place: str, sealed: str) -> str | None:
        """The payload of ``sealed`` if it was sealed for ``place`` by a key of ours, else None."""
        mac, sep, payload = sealed.partition(" ")
        if not sep or len(mac) != 64:
            return None
        given = mac.encode("utf-8", "surrogatepass")
        good = False
        for key in self._keys:  # every key, so the time does not say which one matched
            good |= hmac.compare_digest(given, self._mac(key, place, payload).encode())
        return payload if good else None


def parse_id(entry_id: str) -> tuple[int, int]:
    """``(epoch, seq)`` of a stream ID ``EPOCH-SEQ``; ``ValueError`` if it is not one."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def stream_fields(flat: list[Any]) -> dict[str, str]:
    """A stream entry's ``[field, value, ...]`` list as a dict."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


class Step(enum.Enum):
    """What an edge does with the next stream entry (:meth:`Cursor.step`)."""

    NEXT = "next"
    """The next event: apply it."""
    OLD = "old"
    """Already applied (or from an older run of the origin): skip it."""
    RESTART = "restart"
    """The first event of a new run of the origin: start from an empty state, apply it."""
    GAP = "gap"
    """Events are missing (trimmed from the stream): take a fresh snapshot."""


@dataclass
class Cursor:
    """Where an edge is in one game server's stream: the origin run and the last seq."""

    epoch: int | None = None
    seq: int = 0

    @property
    def stream_id(self) -> str:
        """The ID to read on from (``XREAD ... STREAMS key ID``)."""
        return "0-0" if self.epoch is None else f"{self.epoch}-{self.seq}"

    def step(self, entry_id: str) -> Step:
        """Classify the entry ``entry_id`` read after this cursor's position."""
        epoch, seq = parse_id(entry_id)
        if self.epoch is None or epoch > self.epoch:
            return Step.RESTART if seq == 1 else Step.GAP
        if epoch < self.epoch or seq <= self.seq:
            return Step.OLD
        return Step.NEXT if seq == self.seq + 1 else Step.GAP

    def advance(self, entry_id: str) -> None:
        """Move past ``entry_id`` (after applying it)."""
        self.epoch, self.seq = parse_id(entry_id)
