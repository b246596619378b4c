"""kill -9 of a recording ``twistd -n gamews --demo`` mid-match: after a restart every
event older than one second before the kill is in the archive, and the match it was
recording is marked ``interrupted``."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from urllib.request import urlopen

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.support import (
    Client,
    TwistdProcess,
    can_connect,
    connect,
    free_port,
    poll_until,
    spawn_twistd,
)


class CrashTests(TestCase):
    """The archive survives a crash of the process recording it."""

    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.database = self.dir / "data" / "archive.sqlite"
        self.processes: list[TwistdProcess] = []

    async def start(self) -> TwistdProcess:
        process = spawn_twistd(
            ["-n", "gamews", "--demo", "--listen", f"tcp:{self.port}:interface=127.0.0.1"],
            env={"GAMEWS_DATA": str(self.dir / "data")})
        self.processes.append(process)
        self.addCleanup(self._stop, process)
        await poll_until(lambda: can_connect(self.port) or process.ended.called, timeout=30)
        self.assertFalse(process.ended.called, process.output.decode(errors="replace"))
        return process

    async def _stop(self, process: TwistdProcess) -> None:
        if not process.ended.called:
            process.signal("KILL")
            await process.ended

    def get(self, path: str) -> str:
        """``path`` on gamews, as text."""
        with urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            body: bytes = response.read()
        return body.decode()

    def rows(self) -> list[tuple[int, int, str]]:
        """``(match_id, seq, status)`` of every recorded event, read as another process
        would (WAL: no lock against the writer)."""
        with sqlite3.connect(self.database) as db:
            return list(db.execute("SELECT e.match_id, e.seq, m.status FROM events e "
                                   "JOIN matches m ON m.id = e.match_id"))

    def test_kill_9_mid_match(self) -> Deferred[None]:
        """Every event published more than 1 s before the kill is there after the restart,
        and the match is interrupted."""
        async def run() -> None:
            process = await self.start()
            client: Client = await connect(self.port, "/live/ws", protocols=["gamews.v1"])
            seen: dict[int, float] = {}

            def note() -> int:
                """Note when each delta arrived (the live page gets each event as it is
                published); how many so far."""
                for message in client.messages:
                    frame = json.loads(message)
                    if frame.get("type") == "delta":
                        seen.setdefault(int(frame["seq"]), time.monotonic())
                return len(seen)

            await poll_until(lambda: note() >= 25, timeout=60, interval=0.05)
            note()
            killed = time.monotonic()
            process.signal("KILL")
            await process.ended
            client.drop()
            old = [seq for seq, at in seen.items() if at < killed - 1.0]
            self.assertGreater(len(old), 10)
            before = self.rows()
            live = {m for m, _, status in before if status == "live"}
            self.assertEqual(len(live), 1, "the match recorded at the kill is live")
            recorded = {seq for m, seq, _ in before}
            self.assertEqual(sorted(set(old) - recorded), [])

            await self.start()
            (match,) = live
            await poll_until(lambda: any(m == match and status == "interrupted"
                                         for m, _, status in self.rows()), timeout=20)
            after = {seq for m, seq, _ in self.rows() if m <= max(m for m, _, _ in before)}
            self.assertEqual(sorted(set(old) - after), [])
            # the match's events over HTTP (NDJSON, streamed): the same, in seq order
            body = await deferToThread(self.get, f"/api/v1/matches/{match}/events")
            streamed = [json.loads(line)["seq"] for line in body.splitlines()]
            self.assertEqual(streamed, sorted(s for m, s, _ in self.rows() if m == match))

        return Deferred.fromCoroutine(run())
