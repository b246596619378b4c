"""What the archive's tests share: a database run in the calling thread, demo events,
and a real PostgreSQL server."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from signal import SIGQUIT
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

from gamews.archive.config import ArchiveConfig
from gamews.archive.db import Conn, connect
from gamews.demo.match import DemoMatch
from gamews.events import EventBus
from gamews.logs.source import parse_line
from tests.support import can_connect, free_port, poll_until, real_reactor

T = TypeVar("T")


class InlineDatabase:
    """:class:`gamews.archive.db.Database`'s interface, each query run at once in the
    calling thread (units: no threads, no waiting)."""

    def __init__(self, path: Path) -> None:
        self.config = ArchiveConfig(f"sqlite:{path}")
        self.conn: Conn = connect(self.config)
        from gamews.archive.db import migrate

        migrate(self.conn)
        self.dialect = "sqlite"
        self.broken = False

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        if self.broken:
            return fail(ConnectionError("database down"))
        self.conn.begin()
        try:
            result = fn(self.conn, *args, **kwargs)
        except BaseException:
            self.conn.rollback()
            return fail(Failure())
        self.conn.commit()
        return succeed(result)

    write = read = _run

    def sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a query now and return its result (``Any``: the tests index into it)."""
        self.conn.begin()
        try:
            return fn(self.conn, *args, **kwargs)
        finally:
            self.conn.commit()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.conn.close()


def demo_bus(clock: Clock, server: str = "demo") -> EventBus:
    """An event bus with ``server`` added."""
    bus = EventBus(clock)
    bus.add_server(server)
    return bus


def play_demo(bus: EventBus, clock: Clock, seconds: float, *, seed: int = 3,
              server: str = "demo", match: DemoMatch | None = None,
              start: float = 1_800_000_000.0) -> DemoMatch:
    """Publish ``seconds`` of the demo match's lines on ``bus``, a second at a time, with
    ``clock`` moving along (so each event's ``received`` is its moment)."""
    demo = match or DemoMatch(seed=seed)
    if clock.seconds() < start:
        clock.advance(start - clock.seconds())
    for _ in range(int(seconds)):
        for line in demo.advance(clock.seconds()):
            bus.publish(server, parse_line(line))
        clock.advance(1.0)
    return demo


# -- PostgreSQL ---------------------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class _Process(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class PostgresServer:
    """A throwaway PostgreSQL (Debian's binaries: ``initdb`` and ``postgres``) on a free
    loopback port in ``directory``, with a password. PostgreSQL refuses to run as
    root: then it runs as ``nobody``."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise SkipTest(f"{PG_BIN}/initdb is missing (Debian: apt-get install postgresql)")
        # outside the checkout: the user it runs as must reach its directory
        self.directory = Path(tempfile.mkdtemp(prefix="gamews-pg-"))
        self.port = free_port()
        self.password = "pw-" + os.urandom(8).hex()
        self.user = "gamews"
        self.process: _Process | None = None
        self.uid: int | None = None
        self.gid: int | None = None
        if os.getuid() == 0:
            try:
                entry = pwd.getpwnam("nobody")
            except KeyError:
                raise SkipTest("running as root and there is no user nobody to run "
                               "PostgreSQL as") from None
            self.uid, self.gid = entry.pw_uid, entry.pw_gid

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/gamews"

    def _own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    async def start(self) -> None:
        """initdb (the first time), then start it and wait until it accepts connections."""
        data = self.directory / "pgdata"
        if not data.exists():
            self._own(self.directory)
            pwfile = self.directory / "pwfile"
            pwfile.write_text(self.password + "\n")
            self._own(pwfile)
            init = _Process()
            real_reactor().spawnProcess(
                init, str(PG_BIN / "initdb"),
                [str(PG_BIN / "initdb"), "-D", str(data), "-U", self.user, "-A",
                 "scram-sha-256", "--pwfile", str(pwfile), "-E", "UTF8", "--no-sync"],
                env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}, path=str(self.directory),
                uid=self.uid, gid=self.gid)
            await init.ended
            if not (data / "PG_VERSION").exists():
                raise RuntimeError(f"initdb failed: {init.output.decode(errors='replace')}")
            (data / "postgresql.auto.conf").write_text(
                "fsync = off\nfull_page_writes = off\n")
        process = self.process = _Process()
        real_reactor().spawnProcess(
            process, str(PG_BIN / "postgres"),
            [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.directory)],
            env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}, path=str(self.directory),
            uid=self.uid, gid=self.gid)
        await poll_until(lambda: can_connect(self.port) or process.ended.called, timeout=30)
        if process.ended.called:
            raise RuntimeError(f"postgres did not start: {process.output.decode(errors='replace')}")
        await poll_until(self._ready, timeout=30, interval=0.2)

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres",
                            password=self.password, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres",
                             password=self.password, autocommit=True) as conn:
            conn.execute("CREATE DATABASE gamews")

    async def stop(self, signal: str = "INT") -> None:
        """Stop it: ``INT`` a fast shutdown, ``QUIT`` an immediate one (as a crash: no
        checkpoint, recovery at the next start)."""
        process = self.process
        if process is None or process.ended.called:
            return
        assert process.transport is not None
        process.transport.signalProcess(SIGQUIT if signal == "QUIT" else signal)
        await process.ended

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
