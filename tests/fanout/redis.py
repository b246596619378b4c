"""A real ``redis-server`` for the tests: a free loopback port, a password, no
persistence, stopped in cleanup."""

from __future__ import annotations

import secrets
import shutil
import signal
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

from gamews.secret import Secret
from tests.support import can_connect, free_port, poll_until, real_reactor

REDIS_SERVER = shutil.which("redis-server")
FANOUT_KEY = secrets.token_urlsafe(32)
"""The instances' shared fan-out key in the tests."""
FANOUT_KEYS = (Secret(FANOUT_KEY),)


class _Process(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


def operator_acl() -> list[str]:
    """The ``user gamews-...`` lines of the Redis ACL recipe (docs/operator.md)."""
    guide = Path(__file__).resolve().parents[2] / "docs" / "operator.md"
    return [line.strip() for line in guide.read_text("utf-8").splitlines()
            if line.startswith("user gamews-")]


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` with ``password``; :meth:`start` it again after
    :meth:`kill` to simulate a restart (it comes back empty: no persistence).

    With ``acl``, the default user is off and the users are the operator guide's recipe (their
    passwords ``password``) and ``admin`` (for the tests' own look at the ACL log)."""

    def __init__(self, directory: Path, *, acl: bool = False) -> None:
        if REDIS_SERVER is None:
            raise SkipTest("redis-server is not installed (Debian: apt-get install redis-server)")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.acl = acl
        self.process: _Process | None = None

    @property
    def admin(self) -> str | None:
        """The user the tests' own links log in as (``None``: the default user)."""
        return "admin" if self.acl else None

    @property
    def endpoint(self) -> str:
        """The client endpoint gamews's config takes."""
        return f"tcp:127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start it and wait until it accepts connections."""
        assert REDIS_SERVER is not None
        process = self.process = _Process()
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        if self.acl:
            users = [line.replace("ORIGIN_PASSWORD", self.password)
                     .replace("EDGE_PASSWORD", self.password) for line in operator_acl()]
            if len(users) != 2:
                raise RuntimeError(f"the operator guide's ACL recipe has {len(users)} users, not 2")
            aclfile = self.directory / "users.acl"
            aclfile.write_text("\n".join(["user default off",
                                          f"user admin on >{self.password} ~* &* +@all",
                                          *users]) + "\n")
            args += ["--aclfile", str(aclfile)]
        else:
            args += ["--requirepass", self.password]
        real_reactor().spawnProcess(process, REDIS_SERVER, args, env={})
        await poll_until(lambda: can_connect(self.port) or process.ended.called, timeout=10)
        if process.ended.called:
            raise RuntimeError(f"redis-server did not start: {process.output!r}")

    def pause(self) -> None:
        """SIGSTOP it: connections stay open, nothing answers (a hung Redis)."""
        assert self.process is not None and self.process.transport is not None
        self.process.transport.signalProcess(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT it after :meth:`pause`."""
        assert self.process is not None and self.process.transport is not None
        self.process.transport.signalProcess(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL it (its data is gone) and wait until it has exited."""
        await self._signal("KILL")

    async def stop(self) -> None:
        """Stop it if it runs (cleanup)."""
        await self._signal("TERM")

    async def _signal(self, name: str) -> None:
        process = self.process
        if process is None or process.ended.called:
            return
        assert process.transport is not None
        process.transport.signalProcess(name)
        await process.ended
