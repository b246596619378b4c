"""Follow a growing log file like ``tail -F`` (ioquake3 / OpenArena ``games.log``).

The file is polled every ``interval`` seconds on the given clock. At start only lines
written from then on are read (unless ``replay``: all of them, or ``"map"``: those of the
current map); a file that appears later, or replaces
the followed one (rotation: another inode at the path), is read from its beginning once
the old one is drained; a file that shrinks (truncation) is read again from its start.
A line is handed on only once its newline has been written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Final, Literal

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gamews.logs.common import LineSink, LogStats, decode_line

__all__ = ["FileTailService", "FileTailer"]

MAX_LINE: Final = 64 * 1024
"""A partial line longer than this is handed on as it is (a file without newlines)."""

_NOT_A_FILE: Final = -1
_log = Logger(namespace="gamews.logs.tail")


class FileTailer:
    """The polling logic, without a timer: call :meth:`poll` to read what is new."""

    def __init__(self, path: Path, sink: LineSink, *, replay: bool | Literal["map"] = False,
                 stats: LogStats | None = None, max_read: int = 4 * 1024 * 1024) -> None:
        """Follow ``path``; ``replay`` reads the lines already there at the first poll.

        ``replay="map"`` reads from the last ``InitGame:`` line in the file's last
        ``max_read`` bytes (the current map's events, so a late start still learns the
        players, names and teams), or from the end if there is none.
        """
        self.path = path
        self.sink = sink
        self.replay = replay
        self.stats = stats if stats is not None else LogStats()
        self.max_read = max_read
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._pos = 0
        self._partial = b""
        self._first = True
        self._last_errno: int | None = None

    def close(self) -> None:
        """Close the followed file (the next :meth:`poll` opens it again)."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._identity = None
        self._partial = b""

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            self._first = False
            if e.errno != self._last_errno:
                self._last_errno = e.errno
                if isinstance(e, FileNotFoundError):
                    _log.info("waiting for {path} to appear", path=str(self.path))
                else:
                    _log.error("cannot open {path}: {why}", path=str(self.path),
                               why=e.strerror)
            return False
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._first = False
            if self._last_errno != _NOT_A_FILE:
                self._last_errno = _NOT_A_FILE
                _log.error("cannot follow {path}: not a regular file", path=str(self.path))
            return False
        self._last_errno = None
        self._fd = fd
        self._identity = (st.st_dev, st.st_ino)
        if not self._first or self.replay is True:
            self._pos = 0
        elif self.replay == "map":
            self._pos = self._last_map_start(fd, st.st_size)
        else:
            self._pos = st.st_size
        self._partial = b""
        self._first = False
        return True

    def _last_map_start(self, fd: int, size: int) -> int:
        start = max(0, size - self.max_read)
        window = os.pread(fd, size - start, start)
        at = window.rfind(b" InitGame:")
        if at < 0:
            return size
        return start + window.rfind(b"\n", 0, at) + 1

    def poll(self) -> int:
        """Read what was added since the last poll; return how many lines were handed on."""
        count = 0
        if self._fd is None and not self._open():
            return 0
        count += self._drain()
        # Rotation: another file now at the path. The old one was drained above.
        try:
            st = os.stat(self.path)
        except OSError:
            return count  # gone for now; keep the old one until a new one appears
        if (st.st_dev, st.st_ino) != self._identity:
            self.close()
            self.stats.rotations += 1
            if self._open():
                count += self._drain()
        return count

    def _drain(self) -> int:
        fd = self._fd
        assert fd is not None
        size = os.fstat(fd).st_size
        if size < self._pos:
            # Truncated: start again at the beginning.
            self.stats.rotations += 1
            self._pos = 0
            self._partial = b""
        if size == self._pos:
            return 0
        data = os.pread(fd, min(size - self._pos, self.max_read), self._pos)
        self.stats.received += 1
        self._pos += len(data)
        return self._feed(data)

    def _feed(self, data: bytes) -> int:
        buf = self._partial + data
        lines = buf.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        count = 0
        for raw in lines:
            line = raw.rstrip(b"\r\x00")
            if not line:
                continue
            count += 1
            self.stats.lines += 1
            try:
                self.sink(decode_line(line))
            except Exception:
                self.stats.errors += 1
                _log.failure("log line handler failed")
        self.stats.accepted += count
        return count


class FileTailService(Service):
    """Polls a :class:`FileTailer` every ``interval`` seconds of ``clock`` while running."""

    def __init__(self, tailer: FileTailer, *, clock: IReactorTime, interval: float = 0.1) -> None:
        """Poll ``tailer`` on ``clock``."""
        if interval <= 0:
            raise ValueError("interval must be greater than 0")
        self.tailer = tailer
        self.clock = clock
        self.interval = interval
        self._loop: LoopingCall | None = None
        self._loop_done: Deferred[Any] | None = None

    @property
    def stats(self) -> LogStats:
        """The tailer's counters."""
        return self.tailer.stats

    def _tick(self) -> None:
        try:
            self.tailer.poll()
        except Exception:
            self.tailer.stats.errors += 1
            _log.failure("polling {path} failed", path=str(self.tailer.path))

    def startService(self) -> None:
        """Poll now (the file's current end is the starting point) and every interval."""
        super().startService()  # type: ignore[no-untyped-call]
        loop = LoopingCall(self._tick)
        loop.clock = self.clock
        self._loop = loop
        self._loop_done = loop.start(self.interval, now=True)

    def stopService(self) -> Deferred[None]:
        """Stop polling and close the file."""
        super().stopService()  # type: ignore[no-untyped-call]
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        self.tailer.close()
        return succeed(None)
