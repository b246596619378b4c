"""Faults that must end in the right state, with real ``twistd -n gamews`` processes over a
real ``redis-server``: an edge restarted, the origin restarted under a spectator delay,
Redis hung, and the operator guide's least-privilege Redis ACL users."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from gamews.fanout.link import RedisLink
from gamews.secret import Secret
from tests.fanout import test_integration
from tests.fanout.test_integration import FanoutTestCase, Instance, frames
from tests.support import Client, connect, poll_until, real_reactor


def chat_lines(client: Client) -> list[tuple[int, str]]:
    """``(seq, text)`` of the lines a chat client holds: its last backlog, then its lines."""
    lines: list[tuple[int, str]] = []
    for message in client.messages:
        frame = json.loads(message)
        if frame.get("type") == "backlog":
            lines = [(line["seq"], line["text"]) for line in frame["lines"]]
        elif frame.get("type") == "line":
            lines.append((frame["line"]["seq"], frame["line"]["text"]))
    return lines


class EdgeRestartTests(FanoutTestCase):
    """An edge restarted while the game goes on."""

    def test_restarted_edge_backlog_equals_the_origins(self) -> Deferred[None]:
        """After an edge restart (events arriving before its first browser), its chat
        backlog is the origin's: the same 50 lines."""
        async def run() -> None:
            origin = await self.origin.console()
            self.clients.append(origin)
            watcher = await self.origin.chat()
            self.clients.append(watcher)
            await poll_until(lambda: len(chat_lines(watcher)) >= 60, timeout=60)
            await self.edges[1].stop()
            await self.edges[1].start()
            await poll_until(lambda: b"following demo" in self.edges[1].output, timeout=10)
            await self.commands(origin, 3)  # events before the edge's first browser
            here, there = await self.origin.chat(), await self.edges[1].chat()
            self.clients += [here, there]

            def same_end() -> bool:
                mine, theirs = chat_lines(here), chat_lines(there)
                return bool(mine) and bool(theirs) and mine[-1] == theirs[-1]

            await poll_until(same_end, timeout=15)
            self.assertEqual(len(chat_lines(there)[-50:]), 50)
            self.assertEqual(chat_lines(there)[-50:], chat_lines(here)[-50:])

        return ensureDeferred(run())


class DelayedOriginRestartTests(FanoutTestCase):
    """A spectator delay on every instance, and the origin restarted."""

    def instances(self, directory: Path) -> tuple[Instance, list[Instance]]:
        delay = ("[plugin.live]", "delay = 2")
        return (Instance(directory, "origin", "origin", self.redis, tables=delay),
                [Instance(directory, "edge-1", "edge", self.redis, tables=delay)])

    def test_delayed_view_resets_after_origin_restart(self) -> Deferred[None]:
        """A delayed /live client on an edge, following docs/protocol.md, gets the new run
        as a snapshot with a new ``run`` and then its deltas in order: it is not frozen."""
        async def run() -> None:
            live = await connect(self.edges[0].port, "/live/ws")
            self.clients.append(live)
            view = ProtocolClient(live)
            await poll_until(lambda: view.applied >= 5, timeout=20)
            old_run = view.run
            await self.origin.stop("KILL")
            await self.origin.start()
            await poll_until(lambda: view.run != old_run and view.applied_in_run >= 10,
                             timeout=30)
            snapshots = [f for f in frames(live, "snapshot") if f["run"] != old_run]
            self.assertEqual(snapshots[0]["delay"], 2)
            self.assertEqual(view.resyncs, 0)

        return ensureDeferred(run())


class ProtocolClient:
    """A /live client as docs/protocol.md says: every snapshot resets the view; a delta
    must have the snapshot's run and the next seq, else it asks for a resync."""

    def __init__(self, client: Client) -> None:
        self.run: Any = None
        self.seq: int | None = None
        self.applied = 0
        self.applied_in_run = 0
        self.resyncs = 0
        self.client = client
        received = client.onMessage

        def on_message(payload: bytes, is_binary: bool) -> None:
            received(payload, is_binary)
            self.frame(json.loads(payload))

        client.onMessage = on_message  # type: ignore[method-assign,assignment]

    def frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "snapshot":
            if frame.get("run") != self.run:
                self.applied_in_run = 0
            self.run, self.seq = frame.get("run"), frame["seq"]
        elif frame["type"] == "delta" and self.seq is not None:
            if frame.get("run") == self.run and frame["seq"] <= self.seq:
                return  # old news
            if frame.get("run") != self.run or frame["seq"] != self.seq + 1:
                self.resyncs += 1
                self.seq = None
                self.client.send_text(json.dumps({"type": "resync"}))
                return
            self.seq = frame["seq"]
            self.applied += 1
            self.applied_in_run += 1


class HungRedisTests(FanoutTestCase):
    """Redis stopped (SIGSTOP): connections open, nothing answers."""

    def test_hung_redis_is_stale_after_stale_after(self) -> Deferred[None]:
        """An edge's pages say stale within stale_after (1.5 s here) and a poll, not after
        the 10 s reply timeout; when Redis answers again, the stale mark goes."""
        async def run() -> None:
            live = await connect(self.edges[0].port, "/live/ws")
            self.clients.append(live)
            await poll_until(lambda: bool(frames(live, "link"))
                             and not frames(live, "link")[-1]["stale"], timeout=10)
            self.redis.pause()
            self.addCleanup(self.redis.resume)
            paused = time.monotonic()
            await poll_until(lambda: frames(live, "link")[-1]["stale"] is True, timeout=10)
            self.assertLess(time.monotonic() - paused, 3.5)
            self.redis.resume()
            await poll_until(lambda: frames(live, "link")[-1]["stale"] is False, timeout=20)

        return ensureDeferred(run())


class AclSameEventsTests(test_integration.SameEventsTests):
    """The same events, commands and chat with each instance logged in to Redis as the
    operator guide's least-privilege ACL user for its role."""

    acl = True

    def test_nothing_refused(self) -> Deferred[None]:
        """After events, a snapshot load, chat and a console command through an edge, the
        ACL log is empty: the recipe grants every command and key the instances use."""
        async def run() -> None:
            origin, edge = await self.origin.console(), await self.edges[0].console()
            chat = await self.edges[1].chat()
            self.clients += [origin, edge, chat]
            await self.commands(edge, 3)
            chat.send_text(json.dumps({"type": "say", "name": "Bob", "text": "acl"}))
            await poll_until(lambda: any(f["line"].get("text") == "acl"
                                         for f in frames(chat, "line")), timeout=15)
            admin = RedisLink("admin", self.redis.endpoint,
                              password=Secret(self.redis.password), username="admin",
                              reactor=real_reactor())
            admin.startService()
            self.addCleanup(admin.stopService)
            self.assertEqual(await admin.execute("ACL", "LOG"), [])
            self.assertEqual(sorted(await admin.execute("ACL", "USERS")),
                             ["admin", "default", "gamews-edge", "gamews-origin"])

        return ensureDeferred(run())
