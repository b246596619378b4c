"""Log lines that an attacker can repeat at will, at most once per window.

:class:`RepeatLimiter` lets the first event of a kind through and counts the ones that
follow within ``window`` seconds; the next one after the window is logged with the
count of those it stood for (``repeated`` in the event, and in its text). A kind is the
log format with the values that identify it (say, the plugin and exception type), so a
flood of identical errors writes one line a minute instead of one per frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, Final

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

__all__ = ["RepeatLimiter"]

MAX_KINDS: Final = 10_000


class RepeatLimiter:
    """Rate-limits repeated identical log events of one ``twisted.logger.Logger``."""

    def __init__(self, log: Logger, *, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.window = window
        self.clock = clock
        self._kinds: dict[Hashable, list[float | int]] = {}

    def _admit(self, kind: Hashable) -> int | None:
        """``None`` to skip this event, else the number of events it stands for besides
        itself."""
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.window:
            seen[1] += 1
            return None
        repeated = int(seen[1]) if seen is not None else 0
        if len(self._kinds) >= MAX_KINDS:
            self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.window}
        self._kinds[kind] = [now, 0]
        return repeated

    def emit(self, level: LogLevel, format: str, *, kind: Hashable = (),
             failure: Failure | None = None, **fields: Any) -> bool:
        """Log ``format`` at ``level`` unless an event of the same ``format`` and ``kind``
        was logged within the window; returns whether it was logged."""
        repeated = self._admit((format, kind))
        if repeated is None:
            return False
        if repeated:
            format += " ({repeated} more like it not logged)"
        if failure is not None:
            self.log.failure(format, failure, level=level, repeated=repeated, **fields)
        else:
            self.log.emit(level, format, repeated=repeated, **fields)
        return True
