"""The fan-out under attack and under faults, with real ``twistd -n gamews`` processes over a
real ``redis-server``: whoever writes to Redis gets no RCON and cannot steer the edges, an
edge's flooding browser does not stall the others, and every fault ends in the right state."""

from __future__ import annotations

import json
import secrets
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.utils import getProcessOutput

from gamews.api import IRequestForwarder, Request
from gamews.auth import User, hash_token
from gamews.events import EventBus
from gamews.fanout.codec import Sealer, dumps
from gamews.fanout.config import FanoutConfig
from gamews.fanout.edge import EdgeFeed
from gamews.fanout.link import RedisLink
from gamews.secret import Secret
from tests.fanout.redis import FANOUT_KEYS
from tests.fanout.test_integration import (
    ADMIN,
    MODERATOR,
    FanoutTestCase,
    Instance,
    events,
    frames,
)
from tests.support import REPO, Client, connect, poll_until, real_reactor

FORGER = Sealer((Secret(secrets.token_urlsafe(32)),))
"""Seals with a key the instances do not have (right shape, wrong authentication)."""


class RedisWriterTestCase(FanoutTestCase):
    """With a connection of the tests' own to Redis, as whoever can write to it."""

    def redis_link(self) -> RedisLink:
        link = RedisLink("attacker", self.redis.endpoint, password=Secret(self.redis.password),
                         username=self.redis.admin, reactor=real_reactor())
        link.startService()
        self.addCleanup(link.stopService)
        return link

    def log_of(self, instance: Instance) -> str:
        assert instance.process is not None
        return instance.process.output.decode(errors="replace")


class ForgedRequestTests(RedisWriterTestCase):
    """Requests written to Redis by anyone but an edge."""

    def test_forged_requests_not_executed_and_counted(self) -> Deferred[None]:
        """Requests of the right shape without a valid seal (the old unsealed format with
        a claimed admin, and one sealed by another key) run nothing, are counted on the
        origin's /metrics, and the origin goes on serving the edges' real requests."""
        async def run() -> None:
            origin = await self.origin.console()
            self.clients.append(origin)
            link = self.redis_link()
            request = {"id": "f1", "edge": "edge-1", "plugin": "console", "server": "demo",
                       "body": {"command": "say FORGED"}, "peer": "10.9.9.9", "conn": "1",
                       "user": {"name": "mallory", "role": "admin"}, "sent": time.time()}
            await link.execute("XADD", "gamews:requests", "*", "r", dumps(request))
            inner = dumps({**request, "id": "f2"})
            await link.execute("XADD", "gamews:requests", "*", "s",
                               FORGER.seal("gamews:requests", dumps({"r": inner,
                                                                     "proof": "00" * 32})))
            await poll_until(lambda: b"dropped a request" in (self.origin.process.output
                                                              if self.origin.process else b""),
                             timeout=10)
            edge = await self.edges[0].console(MODERATOR)
            self.clients.append(edge)
            await self.commands(edge, 1)  # a real one after them: served
            self.assertEqual(
                await self.origin.metric('gamews_fanout_rejected_entries_total{kind="request"}'),
                2.0)
            audit = self.origin.audit.read_text()
            self.assertNotIn("mallory", audit)
            self.assertNotIn("FORGED", audit)
            self.assertEqual([json.loads(line)["user"] for line in audit.splitlines()], ["mo"])
            self.assertFalse(any("FORGED" in line for _, line in events(origin)))

        return ensureDeferred(run())


    def test_plugin_on_an_edge_cannot_claim_a_role(self) -> Deferred[None]:
        """A plugin on an edge forwarding a console command for a user it made up (admin)
        through IRequestForwarder gets it refused by the origin, audited as refused: the
        forwarder sends no role, and a made-up user has no token to prove."""
        async def run() -> None:
            reactor = real_reactor()
            links = []
            for role in ("read", "write"):
                link = RedisLink(f"plugin/{role}", self.redis.endpoint,
                                 password=Secret(self.redis.password), reactor=reactor)
                link.startService()
                self.addCleanup(link.stopService)
                links.append(link)
            feed = EdgeFeed(FanoutConfig("edge", self.redis.endpoint, FANOUT_KEYS,
                                         name="edge-plugin", servers=("demo",)),
                            EventBus(reactor), links[0], links[1], clock=reactor)
            feed.startService()
            self.addCleanup(feed.stopService)
            await poll_until(lambda: feed.replies_position != "$")  # reading its replies
            game = feed.servers["demo"]
            self.assertTrue(IRequestForwarder.providedBy(game))
            reply = await game.forward("console", "demo", Request(
                {"command": "say CLAIMED"}, "127.0.0.1", "1", User("mallory", "admin")))
            self.assertEqual(reply["status"], "refused")
            (record,) = [json.loads(line) for line in self.origin.audit.read_text().splitlines()]
            self.assertEqual((record["user"], record["via"], record["status"]),
                             (None, "edge-plugin", "refused"))

        return ensureDeferred(run())


class ForgedStreamTests(RedisWriterTestCase):
    """Stream entries written by anyone but the origin."""

    async def forge(self, link: RedisLink, ahead: int, text: str) -> str:
        """Add a chat event ``ahead`` IDs past the origin's last entry (retrying while the
        origin takes that ID first); return the forged entry's ID."""
        key = "gamews:demo:events"
        while True:
            (top, _), = await link.execute("XREVRANGE", key, "+", "-", "COUNT", "1")
            epoch, seq = (int(part) for part in str(top).split("-"))
            entry_id = f"{epoch}-{seq + ahead}"
            event = {"type": "chat", "server": "demo", "seq": seq + ahead,
                     "received": time.time(), "log_time": None, "game_clock": None,
                     "player": {"name": "Mallory", "id": "7", "slot": 7, "team": None,
                                "bot": False},
                     "text": text, "team": False, "dead": False, "target": None}
            try:
                return str(await link.execute(
                    "XADD", key, entry_id, "s", FORGER.seal(f"{key}/{entry_id}", dumps(event))))
            except Exception as e:
                if "equal or smaller" not in str(e):
                    raise

    def origin_recovered(self, times: int) -> bool:
        return self.log_of(self.origin).count("did not write") >= times

    def test_forged_and_far_ahead_entries(self) -> Deferred[None]:
        """A forged entry at the next ID and one a million IDs ahead are shown by no edge
        (dropped and counted); the origin finds each when its next XADD is refused, logs
        why and goes on in a new epoch by itself; the edges follow the origin's events."""
        async def run() -> None:
            origin, *edges = await self.consoles()
            link = self.redis_link()
            await self.commands(origin, 3)
            await self.caught_up(edges, origin)
            for n, (ahead, text) in enumerate(((1, "FORGED-NEXT"), (1_000_000, "FORGED-AHEAD")),
                                              1):
                await self.forge(link, ahead, text)
                await self.commands(origin, 3)
                await poll_until(partial(self.origin_recovered, n), timeout=15)
                await self.commands(origin, 3)
                await self.caught_up(edges, origin)
            for client in (origin, *edges):
                self.assertFalse(any("FORGED" in line for _, line in events(client)))
            for edge_instance, edge in zip(self.edges, edges, strict=True):
                self.assertGreaterEqual(await edge_instance.metric(
                    'gamews_fanout_rejected_entries_total{kind="event"}'), 1.0)
                reference = dict(events(origin))  # what the edge shows is the origin's
                common = [(s, line) for s, line in events(edge) if s in reference]
                self.assertEqual(common, [(s, reference[s]) for s, _ in common])
                self.assertIn("gap in", self.log_of(edge_instance))

        return ensureDeferred(run())


class ForwardedTokenTests(FanoutTestCase):
    """An edge whose tokens file says more than the origin's."""

    def instances(self, directory: Path) -> tuple[Instance, list[Instance]]:
        edge_tokens = directory / "edge-tokens.txt"
        edge_tokens.write_text(f"eve:admin:{hash_token('eve-token')}\n"
                               f"mo:admin:{hash_token(MODERATOR)}\n")
        return (Instance(directory, "origin", "origin", self.redis),
                [Instance(directory, "edge-1", "edge", self.redis, tokens=edge_tokens)])

    def test_unknown_token_and_missing_role_refused_and_audited(self) -> Deferred[None]:
        """A token the origin does not know is refused there; a token the edge's file makes
        admin runs as the origin's moderator; both audited as refused on the origin."""
        async def run() -> None:
            eve = await self.edges[0].console("eve-token")
            mo = await self.edges[0].console(MODERATOR)
            self.clients += [eve, mo]
            self.assertEqual(frames(eve, "welcome")[0]["role"], "admin")  # the edge's view
            eve.send_text(json.dumps({"type": "command", "id": 1, "command": "status"}))
            mo.send_text(json.dumps({"type": "command", "id": 2, "command": "rcon_password x"}))
            await poll_until(lambda: bool(frames(eve, "result") and frames(mo, "result")),
                             timeout=15)
            self.assertEqual((frames(eve, "result")[0]["status"],
                              frames(mo, "result")[0]["status"]), ("refused", "refused"))
            self.assertIn("unknown token", frames(eve, "result")[0]["output"])
            self.assertIn("moderators", frames(mo, "result")[0]["output"])
            audit = [json.loads(line) for line in self.origin.audit.read_text().splitlines()]
            self.assertEqual(sorted((r["user"] or "", r["role"] or "", r["command"], r["status"],
                                     r["via"]) for r in audit),
                             [("", "", "status", "refused", "edge-1"),
                              ("mo", "moderator", "rcon_password <redacted>", "refused",
                               "edge-1")])  # secrets never reach the audit log
            self.assertNotIn("eve-token", self.origin.audit.read_text())

        return ensureDeferred(run())


class FloodTests(FanoutTestCase):
    """A browser flooding one edge with chat lines."""

    def instances(self, directory: Path) -> tuple[Instance, list[Instance]]:
        origin, (edge, _) = super().instances(directory)
        return origin, [edge]

    def test_chat_flood_keeps_other_spectators_fast(self) -> Deferred[None]:
        """While a browser sends ``say`` frames in a tight loop to an edge for 15 s
        (connecting again each time it is closed), another console spectator of that edge
        keeps getting events (over 100), within 100 ms at p99 (or 4 times the quiet p99 when
        the shared machine is loaded past that), the edge's Redis links never go stale, its
        memory grows by less than 40 MB, and the requests stream is not filled."""
        async def run() -> None:
            edge = self.edges[0]
            spectator = await edge.console(ADMIN)
            self.clients.append(spectator)
            live = await connect(edge.port, "/live/ws")
            self.clients.append(live)
            arrivals = timed(spectator)
            origin = await self.origin.console()
            self.clients.append(origin)
            await self.commands(origin, 3)
            await poll_until(lambda: len(frames(spectator, "console")) > 3, timeout=10)
            ticker = LoopingCall(origin.send_text, json.dumps(  # more events than the demo's
                {"type": "command", "id": 0, "command": "status"}))
            ticker.clock = real_reactor()
            ticker.start(0.05)
            try:
                start = len(spectator.messages)
                await deferLater(real_reactor(), 5)
                quiet = latency(spectator, arrivals, start)
                rss_before = edge.rss()
                links = len(frames(live, "link"))
                start = len(spectator.messages)
                flood = (await getProcessOutput(
                    sys.executable, ["-m", "tests.fanout.flood", str(edge.port), "15"],
                    env={"PYTHONPATH": str(REPO)}, path=str(REPO),
                    reactor=real_reactor())).decode()
                rss_after = edge.rss()
                flooded = latency(spectator, arrivals, start)
            finally:
                ticker.stop()
            sent = int(flood.split()[-1])
            report = (f"flood: {flood.strip()!r}; spectator without flood: {quiet}; during "
                      f"the flood: {flooded}; edge RSS {rss_before / 2**20:.1f} -> "
                      f"{rss_after / 2**20:.1f} MiB")
            print(report)
            p99 = flooded[2]
            self.assertGreater(sent, 10_000, flood)
            self.assertGreater(flooded[0], 100)
            # 100 ms, unless the shared machine is so loaded that even the quiet phase's p99
            # comes near it (then: the flood may not make it more than 4 times worse; before
            # issue 16 a flood let 3 events of 300 through, p99 over a second)
            self.assertLess(p99, max(100.0, 4 * quiet[2]), report)
            self.assertLess(rss_after - rss_before, 40 * 2**20, report)
            self.assertFalse(any(f["stale"] for f in frames(live, "link")[links:]))
            self.assertLess(int(await self.redis_xlen("gamews:requests")), 200)

        return ensureDeferred(run())

    async def redis_xlen(self, key: str) -> Any:
        link = RedisLink("test", self.redis.endpoint, password=Secret(self.redis.password),
                         reactor=real_reactor())
        link.startService()
        try:
            return await link.execute("XLEN", key)
        finally:
            await link.stopService()


def latency(client: Client, arrivals: dict[int, float],
            start: int) -> tuple[int, float, float]:
    """``(n, p50, p99)``: how many ``console`` frames ``client`` received since message
    ``start``, and the milliseconds from their event's time at the origin to arrival."""
    delays = sorted(
        arrivals[i] - frame["time"]
        for i, frame in enumerate((json.loads(m) for m in client.messages[start:]), start)
        if frame.get("type") == "console" and i in arrivals)
    if not delays:
        return 0, float("inf"), float("inf")
    return (len(delays), round(delays[len(delays) // 2] * 1000, 1),
            round(delays[int(len(delays) * 0.99)] * 1000, 1))


def timed(client: Client) -> dict[int, float]:
    """Record when each message reaches ``client``, by its index in ``client.messages``."""
    arrivals: dict[int, float] = {}
    received = client.onMessage

    def on_message(payload: bytes, is_binary: bool) -> None:
        received(payload, is_binary)
        arrivals[len(client.messages) - 1] = time.time()

    client.onMessage = on_message  # type: ignore[method-assign,assignment]
    return arrivals
