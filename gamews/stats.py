"""Plain counters kept on the WebSocket hot path, read by :mod:`gamews.metrics` at scrape time.

Nothing here imports ``prometheus_client``: the registry and the child protocol only add
to integers, so a message costs two additions, and the exposition is built when scraped.
Counters are kept per URL path for the life of the :class:`gamews.registry.Registry`,
so they survive a path being closed and opened again (they only ever grow).
"""

from __future__ import annotations

from collections import Counter
from typing import Final

__all__ = ["HANDSHAKE_REASONS", "PathStats", "WebSocketStats", "handshake_reason"]

HANDSHAKE_REASONS: Final[dict[str, str]] = {
    "server shutting down": "shutting_down",
    "origin not allowed": "origin",
    "too many connections": "max_connections",
    "too many connections from this address": "max_connections_per_ip",
    "no plugin accepted the connection": "not_hooked",
}
"""Reasons gamews itself refuses a handshake with, and their metric label."""

_BY_STATUS: Final[dict[int, str]] = {400: "bad_request", 408: "timeout", 500: "internal_error"}


def handshake_reason(status: int, reason: str) -> str:
    """A bounded label for a failed handshake: gamews's own reasons by name, a bad
    request, or ``plugin`` for a plugin's rejection (whose free text is never a label)."""
    known = HANDSHAKE_REASONS.get(reason)
    if known is not None:
        return known
    return _BY_STATUS.get(status, "plugin")


class PathStats:
    """The counters of one URL path (over every port it is open on)."""

    __slots__ = ("accepted", "bytes_in", "bytes_out", "handshake_failures", "messages_in",
                 "messages_out", "skipped", "slow_consumers")

    def __init__(self) -> None:
        self.accepted = 0
        """Children admitted (their handshake passed the registry's checks)."""
        self.messages_in = 0
        """Whole messages received from browsers."""
        self.bytes_in = 0
        """Payload bytes of those messages."""
        self.messages_out = 0
        """Messages sent to browsers (a broadcast counts once per child reached)."""
        self.bytes_out = 0
        """Payload bytes of those messages."""
        self.slow_consumers = 0
        """Children closed with 1008 because they read too slowly."""
        self.skipped = 0
        """STATE-channel messages not sent to a child whose socket was full."""
        self.handshake_failures: Counter[tuple[int, str]] = Counter()
        """Failed opening handshakes by (HTTP status, :func:`handshake_reason`)."""

    def handshake_failed(self, status: int, reason: str) -> None:
        """Count a handshake answered with ``status`` for ``reason``."""
        self.handshake_failures[status, handshake_reason(status, reason)] += 1


class WebSocketStats:
    """Every path's :class:`PathStats`, created on first use and kept."""

    def __init__(self) -> None:
        self.paths: dict[str, PathStats] = {}

    def path(self, path: str) -> PathStats:
        """The counters of ``path`` (the same object every time)."""
        stats = self.paths.get(path)
        if stats is None:
            stats = self.paths[path] = PathStats()
        return stats
