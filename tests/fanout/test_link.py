"""The Redis link against a real ``redis-server``: AUTH, reconnecting, no password logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from gamews.fanout.link import RedisLink
from gamews.secret import Secret
from tests.fanout.redis import RedisServer
from tests.support import poll_until, real_reactor


class RedisLinkTests(TestCase):
    """One reconnecting connection with its password."""

    timeout = 30

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        self.redis = RedisServer(Path(self.mktemp()).resolve())
        self.addCleanup(lambda: ensureDeferred(self.redis.stop()))
        self.logged: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return ensureDeferred(self.redis.start())

    def link(self, password: str) -> RedisLink:
        link = RedisLink("test", self.redis.endpoint, password=Secret(password),
                         reactor=real_reactor())
        link.startService()
        self.addCleanup(link.stopService)
        return link

    def test_commands_survive_a_redis_restart(self) -> Deferred[None]:
        """Commands run once authenticated; after Redis restarts, the link comes back."""
        async def run() -> None:
            link = self.link(self.redis.password)
            self.assertEqual(await link.execute("PING"), "PONG")
            await self.redis.kill()
            await poll_until(lambda: not link.connected)
            pending = link.execute("SET", "k", "v")  # waits for the connection
            await self.redis.start()
            self.assertEqual(await pending, "OK")
            self.assertEqual(await link.execute("GET", "k"), "v")

        return ensureDeferred(run())

    def test_outage_logged_once_per_state_change(self) -> Deferred[None]:
        """Redis down through several retries, then back: one line for the loss, one for
        the reconnection, none per retry (Twisted's own retry lines included)."""
        async def run() -> None:
            link = self.link(self.redis.password)
            self.assertEqual(await link.execute("PING"), "PONG")
            await self.redis.kill()
            await poll_until(lambda: not link.connected)
            waiting = link.execute("GET", "k")
            await deferLater(real_reactor(), 2.5)  # retries at 0.1, 0.2, 0.4, 0.8 s...
            await self.redis.start()
            self.assertIsNone(await waiting)
            texts = [formatEvent(e) for e in self.logged]
            self.assertEqual(sum("lost" in t for t in texts), 1, texts)
            self.assertEqual(sum("connected to" in t for t in texts), 2, texts)
            self.assertFalse([t for t in texts if "retry" in t.lower()], texts)

        return ensureDeferred(run())

    def test_wrong_password_logged_without_it(self) -> Deferred[None]:
        """A refused password is logged (not the password) and the link keeps trying."""
        async def run() -> None:
            link = self.link("not-the-password")

            def refused() -> bool:
                return any("refused the credentials" in str(e.get("log_format"))
                           for e in self.logged)

            await poll_until(refused)
            self.assertFalse(link.connected)
            self.assertNotIn("not-the-password", repr(self.logged))

        return ensureDeferred(run())
