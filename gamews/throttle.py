"""Slowing down password and token guessing, per peer address.

:class:`LoginThrottle` lets an address fail a few times freely, then makes it wait
exponentially longer before each next try, and locks it out for a while after many
failures; a success forgets its failures. Callers ask :meth:`LoginThrottle.wait` before
they verify anything, so a throttled address costs no verification at all.
:class:`VerificationGate` caps how many (expensive) verifications run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime

__all__ = ["LoginThrottle", "ThrottleConfig", "VerificationGate", "throttle_config"]

FREE_FAILURES: Final = 3
"""Failures an address may have before it must wait."""
BASE_DELAY: Final = 1.0
MAX_DELAY: Final = 60.0
MAX_ADDRESSES: Final = 100_000
"""Addresses remembered at most (the oldest forgotten first)."""


@dataclass(frozen=True)
class ThrottleConfig:
    """How failed logins are throttled."""

    lockout_after: int = 10
    """Failures in a row after which an address is locked out."""
    lockout: float = 900.0
    """Seconds a locked-out address is refused without a check."""


def throttle_config(table: Any, where: str) -> ThrottleConfig:
    """The ``lockout_after`` and ``lockout`` keys of a config table (defaults otherwise);
    a bad value raises :class:`gamews.errors.ConfigError` naming ``where.KEY``."""
    from gamews.errors import ConfigError

    after, seconds = table.get("lockout_after", 10), table.get("lockout", 900.0)
    if isinstance(after, bool) or not isinstance(after, int) or after < 1:
        raise ConfigError(f"{where}.lockout_after", "expected an integer of 1 or more")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ConfigError(f"{where}.lockout", "expected seconds (0 or more)")
    return ThrottleConfig(after, float(seconds))


class _Record:
    __slots__ = ("failures", "until")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0


class LoginThrottle:
    """Failed logins per address: delays of 1, 2, 4 … 60 s after the first
    :data:`FREE_FAILURES`, and a lockout after ``config.lockout_after``."""

    def __init__(self, clock: IReactorTime, config: ThrottleConfig | None = None) -> None:
        self.clock = clock
        self.config = config or ThrottleConfig()
        self._records: dict[str, _Record] = {}

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before its next try (0: it may try now)."""
        record = self._records.get(address)
        if record is None:
            return 0.0
        return max(0.0, record.until - self.clock.seconds())

    def locked(self, address: str) -> bool:
        """Whether ``address`` is locked out now."""
        record = self._records.get(address)
        return (record is not None and record.failures >= self.config.lockout_after
                and self.wait(address) > 0)

    def failed(self, address: str) -> float:
        """Count a failure of ``address``; return how long it must now wait."""
        record = self._records.pop(address, None) or _Record()
        self._records[address] = record  # most recent last
        if len(self._records) > MAX_ADDRESSES:
            del self._records[next(iter(self._records))]
        record.failures += 1
        now = self.clock.seconds()
        if record.failures >= self.config.lockout_after:
            delay = self.config.lockout
        elif record.failures > FREE_FAILURES:
            delay = min(BASE_DELAY * 2 ** (record.failures - FREE_FAILURES - 1), MAX_DELAY)
        else:
            delay = 0.0
        record.until = now + delay
        return delay

    def succeeded(self, address: str) -> None:
        """Forget ``address``'s failures."""
        self._records.pop(address, None)


class VerificationGate:
    """At most ``limit`` verifications at once; the others wait their turn."""

    def __init__(self, limit: int) -> None:
        self._semaphore = DeferredSemaphore(limit)

    def run(self, verify: Any, *args: Any) -> Deferred[Any]:
        """Run ``verify(*args)`` (which may return a Deferred) once a place is free."""
        return self._semaphore.run(verify, *args)
