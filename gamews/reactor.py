"""The reactor a service runs on: the one given, or else Twisted's global one."""

from __future__ import annotations

from typing import TypeVar, cast

__all__ = ["maybe_global_reactor"]

_R = TypeVar("_R")


def maybe_global_reactor(reactor: _R | None) -> _R:
    """``reactor``, or the global reactor when it is ``None``.

    Imported late, so that importing gamews never installs a reactor (Twisted's
    ``_client_service._maybeGlobalReactor`` does the same; it is private, so
    gamews has its own).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return cast(_R, global_reactor)
    return reactor
