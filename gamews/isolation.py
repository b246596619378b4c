"""Calling into plugins without letting them hurt anyone else.

A plugin callback that raises (or returns a Deferred that fails) is logged
with its traceback and the plugin's name; the caller carries on. The same error
(plugin, callback, exception type and message) is logged once a minute at most,
with a count of the repeats (:class:`gamews.quietlog.RepeatLimiter`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from gamews.quietlog import RepeatLimiter

__all__ = ["call_plugin"]

log = Logger(namespace="gamews.plugin")
_limiter = RepeatLimiter(log)


def _log_failure(failure: Failure, owner: str, what: str) -> None:
    kind = (owner, what, failure.type, str(failure.value)[:200])
    _limiter.emit(LogLevel.critical, "plugin {plugin} raised in {callback}", kind=kind,
                  failure=failure, plugin=owner, callback=what)


def call_plugin(owner: str, what: str, fn: Callable[..., Any], *args: Any) -> Deferred[None] | None:
    """Call ``fn(*args)`` on behalf of plugin ``owner``, isolating its errors.

    Returns ``None`` for a synchronous call, or, when ``fn`` returned a
    Deferred, a Deferred that fires with ``None`` once it is done and never
    fails (its failure is logged instead).
    """
    try:
        result = fn(*args)
    except Exception:
        _log_failure(Failure(), owner, what)
        return None
    if isinstance(result, Deferred):
        done: Deferred[None] = result.addCallbacks(
            lambda _: None, lambda f: _log_failure(f, owner, what)
        )
        return done
    return None
