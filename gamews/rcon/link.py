"""What the RCON clients share: link states, errors, and state-change notification."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import error
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

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
    "describe_failure",
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


_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (error.ConnectionRefusedError, "connection refused"),
    (error.TCPTimedOutError, "connection timed out"),
    (error.TimeoutError, "connection timed out"),
    (error.DNSLookupError, "cannot resolve the host name"),
    (error.NoRouteError, "no route to host"),
    (error.ConnectionDone, "connection closed by the server"),
    (error.ConnectionLost, "connection lost"),
)


def describe_failure(failure: Failure | BaseException) -> str:
    """A short, secret-free reason for a failed link attempt (``connection refused``,
    ``cannot resolve the host name``, ...); our own :class:`RconError` messages as they are."""
    value = failure.value if isinstance(failure, Failure) else failure
    for kind, reason in _REASONS:
        if isinstance(value, kind):
            return reason
    if isinstance(value, RconError):
        return str(value)
    text = str(value).strip() or type(value).__name__
    return text[:200]


class StateNotifier:
    """Holds a :class:`LinkStatus` and tells subscribers when the state changes.

    With a ``label`` (``"rcon link to alpha"``), it also logs one line per change of what an
    admin should know, not per retry: ``LABEL up`` when the link comes up, and
    ``LABEL down: REASON; retrying in 8 s`` when it goes down or the reason changes
    (attempts that fail the same way again stay quiet).
    """

    def __init__(
        self, name: str, clock: IReactorTime, log: Logger, *, label: str | None = None
    ) -> None:
        """Start in :attr:`LinkState.STOPPED`; ``name`` labels log lines."""
        self._name = name
        self._clock = clock
        self._log = log
        self._label = label
        self._logged: tuple[LinkState, str | None] | None = None
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

    def set(
        self, state: LinkState, detail: str | None = None, *, retry_in: float | None = None
    ) -> None:
        """Move to ``state`` because of ``detail``; subscribers are called only if the state
        changed.  ``retry_in``: seconds until the next attempt (for the log line)."""
        old = self._status.state
        if state is LinkState.CONNECTING and detail is None and old is not LinkState.STOPPED:
            detail = self._status.detail  # a retry: the last reason still explains it
        if old is state and detail == self._status.detail:
            return
        self._status = LinkStatus(state, self._clock.seconds(), detail)
        self._log_change(state, detail, retry_in)
        if old is not state:
            self.announce()

    def _log_change(self, state: LinkState, detail: str | None, retry_in: float | None) -> None:
        if self._label is None:
            return
        if state is LinkState.UP:
            if self._logged is None or self._logged[0] is not LinkState.UP:
                self._log.info("{label} up", label=self._label)
            self._logged = (state, None)
        elif state is LinkState.DOWN:
            if self._logged == (state, detail):
                return
            self._logged = (state, detail)
            retry = "" if retry_in is None else (
                f"; retrying in {retry_in:.0f} s" if retry_in >= 1 else
                f"; retrying in {retry_in:.1f} s")
            self._log.warn("{label} down: {reason}{retry}", label=self._label,
                           reason=detail or "unreachable", retry=retry)
        elif state is LinkState.STOPPED:
            self._logged = None
        elif state is LinkState.AUTH_FAILED:
            self._logged = (state, detail)  # the client logs its own, more useful, line

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
