"""Autobahn made cheaper per message: :func:`tune_autobahn` and :class:`XorMasker`.

Profiling (``bench/README.md``) found two per-message costs in Autobahn that
gamews removes by replacing names in Autobahn's modules. ``GamewsService``
calls :func:`tune_autobahn` once, when it is built; nothing else does, so a
plain ``Registry`` (in tests, say) runs stock Autobahn, only slower.

Should a name it replaces be gone from the installed Autobahn, the tuning
skips it with a warning and returns the names it missed (a test asserts there
are none, so an Autobahn upgrade that moves them fails there first).
"""

from __future__ import annotations

from collections.abc import Callable
from pprint import pformat
from types import ModuleType
from typing import Any

import autobahn.twisted.websocket as ab_twisted
import autobahn.websocket.protocol as ab_protocol
from twisted.logger import Logger

__all__ = ["XorMasker", "tune_autobahn"]

log = Logger(namespace="gamews.websocket")

_LAZY_NAMES: tuple[tuple[ModuleType, tuple[str, ...]], ...] = (
    (ab_protocol, ("hltype", "hlval", "pformat")),
    (ab_twisted, ("hltype", "hlval")),
)
"""The debug-formatting helpers each Autobahn module calls on its log arguments."""


class _LazyText:
    """A debug-log argument formatted only if the line is emitted."""

    __slots__ = ("_args", "_format")

    def __init__(self, format_: Callable[..., str], *args: Any) -> None:
        self._format = format_
        self._args = args

    def __str__(self) -> str:
        return self._format(*self._args)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _lazy(format_: Callable[..., str]) -> Callable[..., _LazyText]:
    def deferred(*args: Any) -> _LazyText:
        return _LazyText(format_, *args)

    deferred.lazy_of = format_  # type: ignore[attr-defined]
    return deferred


def _timings_text(timings: Any) -> str:
    """``Timings.__str__`` without a lazy ``pformat``: the same text, now."""
    return pformat({key: timings[key] for key in timings})


def tune_autobahn() -> list[str]:
    """Remove two per-message costs found by profiling Autobahn (``bench/README.md``).

    1. Autobahn calls ``hltype``/``hlval``/``pformat`` on every debug line's
       arguments before the logger drops the line (a third of a handshake's cost,
       from ``pformat`` of every option); its modules get lazy versions that give
       the same text when a debug line is written.
    2. Unmasking a client frame builds a CFFI masker (or loops over the bytes in
       Python) per frame: a fifth of the echo path. :class:`XorMasker` does it with
       two integer conversions.

    Idempotent. Returns the ``module.name`` of each name it could not replace
    because the installed Autobahn lacks it (each logged as a warning).
    """
    missing: list[str] = []
    for module, names in _LAZY_NAMES:
        for name in names:
            current = getattr(module, name, None)
            if current is None:
                missing.append(f"{module.__name__}.{name}")
            elif not hasattr(current, "lazy_of"):
                setattr(module, name, _lazy(current))
    timings = getattr(ab_protocol, "Timings", None)
    if timings is None:
        missing.append(f"{ab_protocol.__name__}.Timings")
    else:
        # the one use of pformat that is not a log argument
        timings.__str__ = _timings_text
    if not hasattr(ab_protocol, "create_xor_masker"):
        missing.append(f"{ab_protocol.__name__}.create_xor_masker")
    else:
        ab_protocol.create_xor_masker = XorMasker
    for name in missing:
        log.warn("Autobahn has no {name}: that speed-up is skipped (gamews was tested with "
                 "Autobahn 26.11)", name=name)
    return missing


class XorMasker:
    """RFC 6455 masking (XOR with a 4-byte key), Autobahn's masker interface.

    ``process`` may be called on consecutive pieces of one payload; the key
    position carries over between them.
    """

    __slots__ = ("_key", "_ptr")

    def __init__(self, mask: bytes, length: int | None = None) -> None:
        if len(mask) != 4:
            raise ValueError("a mask is 4 bytes")
        self._key = bytes(mask) * 2
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        start = self._ptr & 3
        self._ptr += n
        key = self._key[start:start + 4] * ((n >> 2) + 1)
        return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(
            n, "little")
