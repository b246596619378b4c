"""Refuse to run without a port: a web, metrics, manhole or log port that cannot be bound
stops the start with one line naming its setting, and a non-zero exit (so systemd and
``twistd`` see the failure instead of a process that runs without the port).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ListenCheck", "StartFailedError", "check_listening", "listen_reason"]

log = Logger(namespace="gamews.startup")


class StartFailedError(SystemExit):
    """gamews cannot start (a port could not be bound); the process exits with status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class ListenCheck:
    """One port gamews must hold: the setting that asked for it, its endpoint, and a
    Deferred that fires once it listens (or fails if it cannot)."""

    setting: str
    endpoint: str
    listening: Deferred[Any]


def listen_reason(failure: Failure) -> str:
    """Why a port could not be bound, short: ``address already in use``, ``permission
    denied`` (a port below 1024 without the capability), ...; never a traceback."""
    value = failure.value
    if isinstance(value, CannotListenError):
        cause = value.socketError
        number = getattr(cause, "errno", None)
        if number is None and isinstance(getattr(cause, "args", None), tuple) and cause.args:
            first = cause.args[0]
            number = first if isinstance(first, int) else None
        if isinstance(number, int) and number in errno.errorcode:
            return os.strerror(number).lower()
        return str(cause)
    return failure.getErrorMessage()


def check_listening(checks: Iterable[ListenCheck], *,
                    later: Callable[[str], object]) -> None:
    """Raise :class:`StartFailedError` (after logging one line naming the setting) if a
    port already failed to bind; a port that fails later (an endpoint that binds
    asynchronously) is reported the same way to ``later(message)``, which should stop."""
    failed: list[str] = []
    pending = True

    def failure_of(check: ListenCheck) -> Callable[[Failure], None]:
        def report(failure: Failure) -> None:
            message = (f"gamews cannot start: {check.setting} = {check.endpoint!r} cannot be "
                       f"bound: {listen_reason(failure)}")
            if pending:
                failed.append(message)
            else:
                log.critical("{message}", message=message)
                later(message)
        return report

    for check in checks:
        check.listening.addErrback(failure_of(check))
    pending = False
    if failed:
        log.critical("{message}", message=failed[0])
        raise StartFailedError(failed[0])
