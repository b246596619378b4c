"""Token buckets for rate limits (chat lines, console commands, RCON pacing)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``capacity`` tokens, refilled one per ``interval`` seconds; starts full."""

    def __init__(self, capacity: float, interval: float, now: float) -> None:
        """Make a full bucket at time ``now``."""
        self.capacity = capacity
        self.interval = interval
        self._tokens = capacity
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) / self.interval)
        self._at = now

    def take(self, now: float) -> float:
        """Take a token and return 0, or take nothing and return the seconds until one."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) * self.interval

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (so it can be forgotten)."""
        self._refill(now)
        return self._tokens >= self.capacity
