"""Start a real OpenArena (ioquake3) dedicated server on loopback for integration tests.

Usage from a trial test::

    from tests.openarena import OpenArenaServer, require_openarena

    class MyTest(unittest.TestCase):
        def setUp(self) -> None:
            require_openarena()                      # SkipTest when the binary is absent
            self.oa = OpenArenaServer(rcon_password="s3cret", bots=("Sarge", "Grism"))
            self.oa.start()                          # bounded wait until getstatus answers
            self.addCleanup(self.oa.stop)            # SIGTERM; games.log then ends "ShutdownGame:"

        def test_x(self) -> None:
            self.oa.port, self.oa.games_log, self.oa.rcon("status")

Facts this relies on (measured, see the project's notes on peers):

* ioquake3 keeps at most ~31 ``+cmd`` items from its command line (the Debian wrapper already
  uses 7), so only engine-level cvars go on the command line; the map, bots and game cvars go
  in a ``gamews.cfg`` executed with ``+exec``.
* ``dedicated 1`` is LAN mode (no master-server heartbeats); ``net_ip 127.0.0.1`` binds
  loopback only; ``net_enabled 1`` is IPv4 only.
* ``g_log games.log`` with ``g_logsync 1`` writes whole lines within milliseconds to
  ``<home>/baseoa/games.log``.  Time stamps are game clock ``M:SS`` from map start.
* The server rate-limits rcon, getstatus and getinfo together per source IP: a burst of 10,
  then 1 per second; the rest are dropped silently.  :meth:`OpenArenaServer.start` spends one
  or a few getstatus requests of that budget; :meth:`OpenArenaServer.rcon` spends one each.
* SIGTERM shuts the server down cleanly: ``games.log`` ends with ``ShutdownGame:``.

The server runs under ``timeout`` (``lifetime`` seconds) in its own session, so a crashed test
run cannot leave it behind for long.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO
from unittest import SkipTest

__all__ = [
    "OPENARENA_BINARY",
    "OpenArenaServer",
    "free_udp_port",
    "require_openarena",
]

#: Where the Debian package ``openarena-server`` installs its start script.
OPENARENA_BINARY = Path("/usr/games/openarena-server")

_OOB = b"\xff\xff\xff\xff"
_LOOPBACK = "127.0.0.1"


def require_openarena(binary: Path = OPENARENA_BINARY) -> None:
    """Raise ``SkipTest`` unless the OpenArena dedicated server is installed."""
    if not (binary.exists() and os.access(binary, os.X_OK)):
        raise SkipTest(
            f"{binary} not installed (apt-get install --no-install-recommends openarena-server)"
        )
    if shutil.which("timeout") is None:
        raise SkipTest("coreutils timeout(1) not found")


def free_udp_port() -> int:
    """Return a UDP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((_LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


class OpenArenaServer:
    """A headless OpenArena dedicated server on 127.0.0.1, with bots, logging to ``games.log``.

    Nothing happens until :meth:`start`; :meth:`stop` is safe to call more than once.  Usable
    as a context manager.  All waits are bounded.
    """

    def __init__(
        self,
        *,
        rcon_password: str,
        map_name: str = "oa_dm1",
        bots: Sequence[str] = ("Sarge", "Grism", "Kyonshi", "Major"),
        bot_skill: int = 3,
        port: int | None = None,
        home: Path | None = None,
        hostname: str = "gamews-test",
        extra_cfg: Sequence[str] = (),
        timescale: float = 1.0,
        lifetime: float = 600.0,
        binary: Path = OPENARENA_BINARY,
    ) -> None:
        """Describe the server; ``home`` defaults to a fresh temporary directory;
        ``rcon_password`` must be one word (no spaces, quotes, semicolons).

        ``extra_cfg`` lines are appended to ``gamews.cfg`` after the bots.  ``timescale`` > 1
        runs the game clock faster (more kills and chat per wall second); it needs cheats,
        so the map is then loaded with ``devmap``.  ``lifetime`` is a hard cap enforced by
        ``timeout(1)``.
        """
        for word in (rcon_password, map_name, hostname, *bots):
            if not word or any(c in word for c in ' \t\r\n";\\\0'):
                raise ValueError(f"unsafe word for a server cfg: {word!r}")
        self.rcon_password = rcon_password
        self.map_name = map_name
        self.bots = tuple(bots)
        self.bot_skill = bot_skill
        self.hostname = hostname
        self.extra_cfg = tuple(extra_cfg)
        if not 0 < timescale <= 20:
            raise ValueError("timescale must be in (0, 20]")
        self.timescale = timescale
        self.lifetime = lifetime
        self.binary = binary
        self._requested_port = port
        self._requested_home = home
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None
        self.port: int = 0
        self.home: Path = Path()

    # -- paths ---------------------------------------------------------------------------------

    @property
    def games_log(self) -> Path:
        """The ``g_log`` file (``<home>/baseoa/games.log``); exists (empty) once started."""
        return self.home / "baseoa" / "games.log"

    @property
    def console_log(self) -> Path:
        """The server's stdout/stderr (``Rcon from ...``, ``Kill:``, ``say:`` lines)."""
        return self.home / "console.log"

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)`` of the running server."""
        return (_LOOPBACK, self.port)

    @property
    def pid(self) -> int | None:
        """Process id of the ``timeout`` wrapper (its session leader), or ``None``."""
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self._process is not None and self._process.poll() is None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Launch the server and wait (at most ``timeout`` s) until it answers ``getstatus``.

        Raises ``SkipTest`` if the binary is absent and ``RuntimeError`` (after stopping the
        process) if it does not answer in time.
        """
        require_openarena(self.binary)
        if self._process is not None:
            raise RuntimeError("already started")
        if self._requested_home is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="gamews-oa-")
            self.home = Path(self._tempdir.name)
        else:
            self.home = self._requested_home
        self.port = self._requested_port or free_udp_port()
        (self.home / "baseoa").mkdir(parents=True, exist_ok=True)
        self.games_log.write_bytes(b"")
        (self.home / "baseoa" / "gamews.cfg").write_text(self._cfg_text(), "ascii")
        args = [
            "timeout", "--signal=TERM", "--kill-after=5", str(self.lifetime),
            str(self.binary),
            "+set", "ttycon", "0",
            "+set", "fs_homepath", str(self.home),
            "+set", "dedicated", "1",
            "+set", "net_enabled", "1",
            "+set", "net_ip", _LOOPBACK,
            "+set", "net_port", str(self.port),
            "+set", "sv_master1", "",
            "+set", "rconpassword", self.rcon_password,
            "+exec", "gamews.cfg",
        ]
        console = self.console_log.open("wb")
        self._console = console
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            cwd=self.home, start_new_session=True,
        )
        if not self._wait_for_status(timeout):
            tail = self.console_log.read_text("utf-8", "replace")[-2000:]
            self.stop()
            raise RuntimeError(
                f"openarena-server did not answer getstatus on 127.0.0.1:{self.port} within "
                f"{timeout}s; console tail:\n{tail}"
            )

    def stop(self, timeout: float = 10.0, *, remove_home: bool = True) -> int | None:
        """Stop the server with SIGTERM (SIGKILL after ``timeout`` s); return its exit code.

        With ``remove_home`` (the default) the temporary home directory, if this object made
        one, is removed; pass ``False`` to read the final ``games.log`` (which then ends with
        ``ShutdownGame:``) and call :meth:`cleanup` afterwards.
        """
        process, self._process = self._process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                # The process group is the session we started (timeout + the engine).
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    code = process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    code = process.wait(timeout)
            else:
                code = process.returncode
        console = self._console
        self._console = None
        if console is not None:
            console.close()
        if remove_home:
            self.cleanup()
        return code

    def cleanup(self) -> None:
        """Remove the temporary home directory this object made (idempotent)."""
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> OpenArenaServer:
        """Start the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # -- talking to it (blocking, for test set-up; each call spends one rate-limit token) ------

    def query(self, request: bytes, *, timeout: float = 2.0, quiet: float = 0.2) -> list[bytes]:
        """Send one out-of-band ``request`` and return the datagrams received until quiet.

        Returns an empty list if nothing came back within ``timeout`` (a rate-limited request
        gets no reply at all).
        """
        replies: list[bytes] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((_LOOPBACK, 0))
            s.sendto(_OOB + request, self.address)
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                s.settimeout(min(remaining, quiet) if replies else remaining)
                try:
                    data, _ = s.recvfrom(65535)
                except (TimeoutError, ConnectionRefusedError):
                    break
                replies.append(data)
        return replies

    def rcon(self, command: str, *, timeout: float = 2.0) -> str:
        """Run ``command`` with the right password; return the reply text (``print`` bodies)."""
        datagrams = self.query(
            f"rcon {self.rcon_password} {command}".encode("latin-1"), timeout=timeout
        )
        header = _OOB + b"print\n"
        return "".join(
            d[len(header):].decode("latin-1") for d in datagrams if d.startswith(header)
        )

    # -- internals -----------------------------------------------------------------------------

    def _cfg_text(self) -> str:
        lines = [
            f"set sv_hostname {self.hostname}",
            "set g_log games.log",
            "set g_logsync 1",
            "set g_gametype 0",
            "set fraglimit 0",
            "set timelimit 0",
            "set g_doWarmup 0",
            "set bot_enable 1",
            "set bot_nochat 0",
            "set g_inactivity 0",
            *((f"map {self.map_name}",) if self.timescale == 1 else
              (f"devmap {self.map_name}", f"set timescale {self.timescale:g}")),
            *(f"addbot {bot} {self.bot_skill}" for bot in self.bots),
            *self.extra_cfg,
        ]
        return "\n".join(lines) + "\n"

    def _wait_for_status(self, timeout: float) -> bool:
        """Poll ``getstatus`` (bounded) until a ``statusResponse`` arrives."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((_LOOPBACK, 0))
            while time.monotonic() < deadline:
                if not self.running():
                    return False
                s.sendto(_OOB + b"getstatus", self.address)
                # The receive timeout paces the polls: at most 4 requests a second, well
                # inside the server's 10-then-1/s budget for the first seconds.
                s.settimeout(0.25)
                try:
                    data, _ = s.recvfrom(65535)
                except (TimeoutError, ConnectionRefusedError):
                    continue
                if data.startswith(_OOB + b"statusResponse"):
                    return True
        return False
