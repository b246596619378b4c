"""The archive on a real PostgreSQL (Debian's ``postgresql``: ``initdb`` and ``postgres``
started by the tests on a free loopback port): the same answers as SQLite for the same
match, recovery when the database restarts, and a fan-out origin recording while an edge
serves ``/matches`` from the same database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from gamews.archive.config import ArchiveConfig
from gamews.archive.db import Database
from gamews.archive.recorder import Recorder
from gamews.archive.store import list_matches, list_players, seek, summary
from gamews.events import EventBus
from tests.archive.support import InlineDatabase, PostgresServer, play_demo
from tests.fanout.redis import FANOUT_KEY, RedisServer
from tests.support import (
    TwistdProcess,
    can_connect,
    free_port,
    poll_until,
    real_reactor,
    spawn_twistd,
)


class PostgresTests(TestCase):
    """The archive's queries and recorder against a real PostgreSQL."""

    timeout = 120

    async def start_postgres(self) -> PostgresServer:
        server = PostgresServer()
        self.addCleanup(server.cleanup)
        self.addCleanup(server.stop)
        await server.start()
        server.create_database()
        return server

    def database(self, server: PostgresServer) -> Database:
        password = self.mktemp()
        Path(password).write_text(server.password + "\n")
        config = ArchiveConfig.from_table({"database": server.url, "password_file": password})
        db = Database(config, reactor=real_reactor())
        db.start()
        self.addCleanup(db.stop)
        return db

    def test_same_answers_as_sqlite(self) -> Deferred[None]:
        """A demo match recorded into PostgreSQL lists, summarises, seeks and ranks players
        exactly as the same match recorded into SQLite."""
        async def run() -> None:
            server = await self.start_postgres()
            pg = self.database(server)
            lite = InlineDatabase(Path(self.mktemp()))
            clock = Clock()
            bus = EventBus(clock)
            bus.add_server("demo")
            recorders = [Recorder(db, bus, ["demo"], clock=clock,  # type: ignore[arg-type]
                                  checkpoint_every=40) for db in (pg, lite)]
            for recorder in recorders:
                recorder.startService()
            play_demo(bus, clock, 300)
            for recorder in recorders:
                await recorder.stopService()
            on_pg = await pg.read(list_matches)
            on_lite = lite.sync(list_matches)
            self.assertGreater(on_pg["total"], 2)
            self.assertEqual(_without_ids(on_pg), _without_ids(on_lite))
            pairs = zip(on_pg["matches"], on_lite["matches"], strict=True)
            for a, b in pairs:
                self.assertEqual(_without_ids(await pg.read(summary, a["id"])),
                                 _without_ids(lite.sync(summary, b["id"])))
                state, _ = await pg.read(seek, a["id"], a["duration"] / 3, "demo")
                self.assertEqual(state.snapshot(),
                                 lite.sync(seek, b["id"], b["duration"] / 3, "demo")[0].snapshot())
            self.assertEqual(await pg.read(list_players), lite.sync(list_players))

        return Deferred.fromCoroutine(run())

    def test_database_restart_loses_nothing(self) -> Deferred[None]:
        """While PostgreSQL is down the batches wait; once it is back they are written, once."""
        async def run() -> None:
            server = await self.start_postgres()
            db = self.database(server)
            clock = Clock()
            bus = EventBus(clock)
            bus.add_server("demo")
            recorder = Recorder(db, bus, ["demo"], clock=clock)
            recorder.startService()
            demo = play_demo(bus, clock, 30)
            await poll_until(lambda: recorder._writing is None, timeout=10)
            await server.stop("QUIT")  # immediate shutdown: no checkpoint, as a crash
            play_demo(bus, clock, 30, match=demo)  # flushes fail meanwhile
            await poll_until(lambda: recorder._writing is None, timeout=20)
            await server.start()
            play_demo(bus, clock, 5, match=demo)
            await recorder.stopService()
            await poll_until(lambda: recorder.accountant.retry is None
                             and recorder._writing is None, timeout=20)
            self.assertTrue(self.flushLoggedErrors(), "the outage was seen")
            rows = await db.read(lambda c: c.execute(
                "SELECT seq FROM events ORDER BY seq").fetchall())
            seqs = [r[0] for r in rows]
            self.assertEqual(seqs, list(range(1, bus.add_server("demo").seq + 1)))

        return Deferred.fromCoroutine(run())


def _without_ids(value: Any) -> Any:
    """``value`` with match ids left out (each database numbers its own)."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


class OriginEdgeTests(TestCase):
    """An origin records the demo game into PostgreSQL; an edge serves it."""

    timeout = 180

    def test_edge_serves_matches_the_origin_records(self) -> Deferred[None]:
        """/api/v1/matches and /matches on the edge list the matches the origin records."""
        async def run() -> None:
            pg = PostgresServer()
            self.addCleanup(pg.cleanup)
            self.addCleanup(pg.stop)
            await pg.start()
            pg.create_database()
            redis = RedisServer(Path(self.mktemp()).resolve())
            self.addCleanup(redis.stop)
            await redis.start()
            directory = Path(self.mktemp()).resolve()
            directory.mkdir(parents=True)
            (directory / "pg.pass").write_text(pg.password + "\n")
            ports: dict[str, int] = {}
            for role in ("origin", "edge"):
                ports[role] = free_port()
                lines = [f'listen = "tcp:{ports[role]}:interface=127.0.0.1"',
                         *(["demo = true"] if role == "origin" else []),
                         "[fanout]", f'role = "{role}"', f'redis = "{redis.endpoint}"',
                         'password_env = "GAMEWS_TEST_REDIS"', 'key_env = "GAMEWS_TEST_KEY"',
                         f'name = "{role}"',
                         *(['servers = ["demo"]'] if role == "edge" else []),
                         "[archive]", f'database = "{pg.url}"', 'password_file = "pg.pass"',
                         "flush_every = 0.2"]
                (directory / f"{role}.toml").write_text("\n".join(lines) + "\n")
            processes: list[TwistdProcess] = []
            for role in ("origin", "edge"):
                process = spawn_twistd(["-n", "gamews", "--config",
                                        str(directory / f"{role}.toml")],
                                       env={"GAMEWS_TEST_REDIS": redis.password,
                                            "GAMEWS_TEST_KEY": FANOUT_KEY})
                processes.append(process)
                port = ports[role]

                def up(port: int = port, process: TwistdProcess = process) -> bool:
                    return can_connect(port) or process.ended.called

                await poll_until(up, timeout=30)
                self.assertFalse(process.ended.called,
                                 (process.output + process.errors).decode(errors="replace"))

            async def stop_all() -> None:
                for process in processes:
                    process.signal("TERM")
                    await process.ended

            self.addCleanup(stop_all)

            def get(role: str, path: str) -> Any:
                with urlopen(f"http://127.0.0.1:{ports[role]}{path}", timeout=10) as r:
                    body = r.read().decode()
                return json.loads(body) if path.startswith("/api/") else body

            async def listed() -> dict[str, Any]:
                result: dict[str, Any] = {}

                async def check() -> bool:
                    result.update(await deferToThread(get, "edge", "/api/v1/matches"))
                    return bool(result.get("matches"))

                for _ in range(100):
                    if await check():
                        return result
                    await deferLater(real_reactor(), 0.2)
                self.fail("the edge lists no match")

            on_edge = await listed()
            match = on_edge["matches"][0]
            self.assertEqual(match["server"], "demo")
            on_origin = await deferToThread(get, "origin", f"/api/v1/matches/{match['id']}")
            self.assertEqual(on_origin["match"]["server"], "demo")
            page = await deferToThread(get, "edge", "/matches")
            self.assertIn(f'data-id="{match["id"]}"', page)
            # the edge records nothing of its own: one recording of the demo
            self.assertEqual(len({m["id"] for m in on_edge["matches"]
                                  if m["status"] == "live"}), 1)

        return Deferred.fromCoroutine(run())
