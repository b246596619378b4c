"""An origin publisher and an edge feed in this process, over a real ``redis-server``:
an edge away while its stream is trimmed past what it has takes a fresh snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import TestCase

from gamews.events import EventBus, RoundStart
from gamews.fanout.config import FanoutConfig
from gamews.fanout.edge import EdgeFeed
from gamews.fanout.link import RedisLink
from gamews.fanout.origin import OriginPublisher
from gamews.secret import Secret
from tests.fanout.redis import FANOUT_KEYS, RedisServer
from tests.support import poll_until, real_reactor


class GapTests(TestCase):
    """Entries trimmed (``MAXLEN ~``) while an edge cannot read."""

    timeout = 60

    def link(self, name: str) -> RedisLink:
        link = RedisLink(name, self.redis.endpoint, password=Secret(self.redis.password),
                         reactor=real_reactor())
        link.startService()
        self.addCleanup(link.stopService)
        return link

    def test_gap_past_retained_length_takes_snapshot(self) -> Deferred[None]:
        """The edge logs the gap, takes the snapshot and ends with the origin's state,
        having delivered no event twice and none out of order."""
        async def run() -> None:
            self.redis = RedisServer(Path(self.mktemp()).resolve())
            self.addCleanup(lambda: ensureDeferred(self.redis.stop()))
            await self.redis.start()
            logged: list[dict[str, Any]] = []
            observer = cast(ILogObserver, logged.append)
            globalLogPublisher.addObserver(observer)
            self.addCleanup(globalLogPublisher.removeObserver, observer)
            reactor = real_reactor()
            origin_bus, edge_bus = EventBus(reactor), EventBus(reactor)
            origin_bus.add_server("demo")
            publisher = OriginPublisher(
                FanoutConfig("origin", self.redis.endpoint, FANOUT_KEYS, name="o", maxlen=100),
                origin_bus,
                {}, self.link("o"), clock=reactor)
            publisher.startService()
            self.addCleanup(publisher.stopService)
            reader = self.link("e/read")
            feed = EdgeFeed(FanoutConfig("edge", self.redis.endpoint, FANOUT_KEYS, name="e",
                                         servers=("demo",)),
                            edge_bus, reader, self.link("e/write"), clock=reactor)
            feed.startService()
            self.addCleanup(feed.stopService)
            seen: list[int] = []
            edge_bus.subscribe(lambda e: seen.append(e.seq), server="demo")
            for _ in range(10):
                origin_bus.publish("demo", RoundStart())
            await poll_until(lambda: cast(Any, edge_bus.state("demo")).seq == 10, timeout=10)
            before = feed.snapshots
            await reader.stopService()  # the edge cannot read
            for _ in range(1000):
                origin_bus.publish("demo", RoundStart())
            await poll_until(lambda: publisher.sent == 1010, timeout=20)
            reader.startService()
            origin_state = cast(Any, origin_bus.state("demo"))
            await poll_until(lambda: cast(Any, edge_bus.state("demo")).seq == 1010,
                             timeout=20)
            self.assertEqual(cast(Any, edge_bus.state("demo")).snapshot(),
                             origin_state.snapshot())
            self.assertEqual(seen, sorted(set(seen)))  # none twice, in order
            self.assertLess(len(seen), 1010)  # the trimmed ones came as a snapshot
            self.assertGreater(feed.snapshots, before)
            self.assertTrue(any("gap in" in str(e.get("log_format")) for e in logged))

        return ensureDeferred(run())
