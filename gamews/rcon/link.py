"""What the RCON clients share: link states, errors, and state-change notification."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = [
    "LinkState",
    "LinkStatus",
    "RconError",
    "RconLinkLostError",
    "RconPasswordRejectedError",
    "RconQueueFullError",
    "RconStoppedError",
    "RconTimeoutError",
    "StateNotifier",
    "command_outcome",
]


class LinkState(enum.Enum):
    """The state of the link to one game server."""

    #: Not started, or stopped.
    STOPPED = "stopped"
    #: Connecting or authenticating (first attempt or after a drop).
    CONNECTING = "connecting"
    #: Authenticated (Source) or answering (Quake 3): commands go out now.
    UP = "up"
    #: Unreachable or dropped; retrying with exponential backoff and jitter.
    DOWN = "down"
    #: The server rejected the rcon password; retrying only every few minutes.
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """A snapshot of a link: ``state``, when it began (clock seconds) and why."""

    state: LinkState
    since: float
    detail: str | None = None


class RconError(Exception):
    """Base class of the errors a ``rcon(command)`` Deferred fails with."""


class RconTimeoutError(RconError):
    """No (complete) reply within the command timeout; the command may have run."""


class RconQueueFullError(RconError):
    """Too many commands waiting: the command was not sent."""


class RconLinkLostError(RconError):
    """The link dropped after the command was sent; it may have run."""


class RconPasswordRejectedError(RconError):
    """The game server rejected the rcon password."""


class RconStoppedError(RconError):
    """The client was stopped before the command could be sent."""


_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (RconTimeoutError, "timeout"),
    (RconQueueFullError, "queue_full"),
    (RconLinkLostError, "link_lost"),
    (RconPasswordRejectedError, "password_rejected"),
    (RconStoppedError, "stopped"),
    (ValueError, "invalid"),
)


def command_outcome(error: BaseException | None) -> str:
    """A short name for how a command ended: ``ok`` (``error`` is ``None``), ``timeout``,
    ``queue_full``, ``link_lost``, ``password_rejected``, ``stopped``, ``invalid`` (an
    unsendable command) or ``error``."""
    if error is None:
        return "ok"
    for kind, name in _OUTCOMES:
        if isinstance(error, kind):
            return name
    return "error"


class StateNotifier:
    """Holds a :class:`LinkStatus` and tells subscribers when the state changes."""

    def __init__(self, name: str, clock: IReactorTime, log: Logger) -> None:
        """Start in :attr:`LinkState.STOPPED`; ``name`` labels log lines."""
        self._name = name
        self._clock = clock
        self._log = log
        self._status = LinkStatus(LinkState.STOPPED, clock.seconds())
        self._subscribers: list[Callable[[LinkState], object]] = []

    @property
    def status(self) -> LinkStatus:
        """The current snapshot."""
        return self._status

    @property
    def state(self) -> LinkState:
        """The current state."""
        return self._status.state

    def set(self, state: LinkState, detail: str | None = None) -> None:
        """Move to ``state``; subscribers are called only if the state changed."""
        old = self._status.state
        if old is state and detail == self._status.detail:
            return
        self._status = LinkStatus(state, self._clock.seconds(), detail)
        if old is not state:
            self.announce()

    def announce(self) -> None:
        """Call every subscriber with the current state (for a change beside the state)."""
        state = self._status.state
        for callback in list(self._subscribers):
            try:
                callback(state)
            except Exception:
                self._log.failure(
                    "state subscriber of game server {name} raised", name=self._name
                )

    def subscribe(self, callback: Callable[[LinkState], object]) -> Callable[[], None]:
        """Call ``callback(new_state)`` on every change; return a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe
