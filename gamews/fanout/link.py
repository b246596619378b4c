"""A reconnecting link to Redis: txredisapi's protocol under a ``ClientService``.

Each link is one connection (a blocking ``XREAD`` holds its connection, so readers get
their own link). The address is a client endpoint description; the password, when
there is one, is sent with ``AUTH`` before the connection is handed out and never
logged. A link logs its state changes (connected, lost, credentials refused), once each,
not its retries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from txredisapi import RedisProtocol, ResponseError

from gamews.fanout.codec import Keys, Sealer, stream_fields
from gamews.fanout.config import FanoutConfig
from gamews.reactor import maybe_global_reactor
from gamews.secret import Secret

__all__ = ["FanoutService", "FanoutStats", "RedisLink", "RedisUnavailableError",
           "read_streams", "redis_time_id", "retrying", "stream_entries"]

log = Logger(namespace="gamews.fanout")
T = TypeVar("T")


@dataclass
class FanoutStats:
    """What an instance's fan-out services count (``/metrics``)."""

    rejected: Counter[str] = field(default_factory=Counter)
    """Entries read from Redis and dropped because their seal did not verify (or a request
    was replayed, or a heartbeat was too old), by kind: ``request``, ``event``,
    ``snapshot``, ``heartbeat``, ``reply``."""


class RedisUnavailableError(Exception):
    """The link is not connected (for calls that must not wait)."""


class _RedisFactory(Factory):
    noisy = False  # no "Starting factory" line at each reconnection

    def __init__(self, reply_timeout: float | None, clock: Any) -> None:
        self.reply_timeout = reply_timeout
        self.clock = clock

    def buildProtocol(self, addr: Any) -> RedisProtocol:
        # numbers stay text: stream IDs and JSON values are not to be converted
        proto = RedisProtocol(charset="utf-8", convertNumbers=False,
                              replyTimeout=self.reply_timeout)
        proto.factory = self
        proto.callLater = self.clock.callLater  # reply timeouts on our clock
        return proto


class RedisLink(ClientService):
    """One Redis connection, kept up with exponential backoff and jitter.

    ``name`` labels log lines; ``redis`` is the endpoint description (``tcp:HOST:PORT``);
    ``reply_timeout`` drops a connection whose reply takes longer (a dead network),
    so it is made again.
    """

    # ClientService (Twisted 26.10) logs every retry at info level through this class
    # attribute ("Scheduling retry N to connect ..."): the link logs its state changes
    # itself, so only ClientService's warnings and errors go on to the log.
    _log = Logger(observer=FilteringLogObserver(
        globalLogPublisher, [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)]))

    def __init__(self, name: str, redis: str, *, password: Secret | None = None,
                 username: str | None = None, reactor: Any = None,
                 reply_timeout: float | None = 10.0) -> None:
        reactor = maybe_global_reactor(reactor)
        self.link_name = name
        self.where = redis
        self._password = password
        self._username = username
        self._proto: RedisProtocol | None = None
        self._down_logged = False
        self._refusals = 0
        self._closing: Any = None
        self._clock = reactor
        super().__init__(clientFromString(reactor, redis), _RedisFactory(reply_timeout, reactor),
                         retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=5.0, factor=2.0),
                         clock=reactor, prepareConnection=self._prepare)

    @property
    def connected(self) -> bool:
        """Whether a ready connection is up now."""
        return self._proto is not None

    async def _authenticate(self, proxy: RedisProtocol) -> None:
        # ``proxy`` is ClientService's wrapper; commands and whenConnected() use the
        # protocol inside it
        proto: RedisProtocol = await proxy.whenConnected()
        if self._password is not None:
            args = ([self._username] if self._username else []) + [self._password.reveal()]
            try:
                await proto.execute_command("AUTH", *args)
            except ResponseError as e:
                # Not raised: ClientService (26.10) leaves a rejected connection open and
                # cannot take its loss later. It is closed after a growing delay instead (and
                # reconnected); meanwhile commands fail at once (see _execute).
                self._refusals += 1
                delay = min(30.0, 0.5 * 2 ** (self._refusals - 1))
                log.error("redis link {name}: {where} refused the credentials ({why}); "
                          "trying again in {delay:g} s", name=self.link_name, where=self.where,
                          why=type(e).__name__, delay=delay)
                self._closing = self._clock.callLater(delay, proto.transport.loseConnection)
                return
            except Exception as e:
                # no answer (a hung Redis: the reply timeout dropped the connection) or the
                # connection lost: ClientService sees the loss and connects again
                self.failed("AUTH", Failure(e))
                return
        self._refusals = 0
        self._proto = proto
        self._down_logged = False
        log.info("redis link {name}: connected to {where}", name=self.link_name,
                 where=self.where)
        proto.whenDisconnected().addCallback(self._lost)

    def _prepare(self, proto: RedisProtocol) -> Deferred[None]:
        return Deferred.fromCoroutine(self._authenticate(proto))

    def _lost(self, proto: RedisProtocol) -> None:
        if self._proto is proto:
            self._proto = None
        if self.running and not self._down_logged:
            self._down_logged = True
            log.warn("redis link {name}: lost {where}; reconnecting", name=self.link_name,
                     where=self.where)

    def failed(self, what: str, failure: Any) -> None:
        """Log a failed command once per outage (not once per retry): the first failure
        after the link was up, until it is up again."""
        if not self._down_logged:
            self._down_logged = True
            log.warn("redis link {name}: {what} failed ({why}); retrying",
                     name=self.link_name, what=what, why=failure.getErrorMessage())

    async def _execute(self, args: tuple[Any, ...]) -> Any:
        proto: RedisProtocol = await self.whenConnected()
        ready = self._proto
        if ready is None or proto is not ready:
            raise RedisUnavailableError(f"{self.where} refused the credentials")
        return await ready.execute_command(*args)

    def stopService(self) -> Deferred[None]:
        """Close the connection; no reconnecting."""
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        stopped: Deferred[None] = super().stopService()
        return stopped

    def execute(self, *args: Any) -> Deferred[Any]:
        """Run one command, waiting for the connection if it is down; fires with the reply."""
        return Deferred.fromCoroutine(self._execute(args))

    def execute_now(self, *args: Any) -> Deferred[Any]:
        """Run one command if connected now, else fail with :class:`RedisUnavailableError`."""
        if self._proto is None:
            return fail(RedisUnavailableError(f"no connection to {self.where}"))
        return maybeDeferred(self._proto.execute_command, *args)


def stream_entries(reply: Any) -> list[tuple[str, str, dict[str, str]]]:
    """``(key, id, fields)`` of each entry of an ``XREAD`` reply (``None``: none)."""
    return [(str(key), str(entry_id), stream_fields(list(flat or [])))
            for key, entries in (reply or []) for entry_id, flat in entries]


async def retrying(link: RedisLink, clock: Any, running: Callable[[], bool], what: str,
                   attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``'s result, trying again (once the link is back) while it fails and the
    service is ``running()``; a failure while stopping is raised."""
    while True:
        try:
            return await attempt()
        except Exception:
            if not running():
                raise
            link.failed(what, Failure())
            await deferLater(clock, 0.2)


async def read_streams(link: RedisLink, clock: Any, running: Callable[[], bool],
                       positions: Callable[[], Mapping[str, str]],
                       handle: Callable[[str, str, dict[str, str]], Awaitable[None]],
                       *, block_ms: int = 2000, count: int = 500) -> None:
    """Read ``positions()`` (stream key to the ID read up to) with ``XREAD BLOCK`` while
    ``running()``, handing each entry to ``handle`` in order; a failed read (Redis down)
    is retried after the link reconnects, from the same positions."""
    def read() -> Deferred[Any]:
        where = positions()
        return link.execute("XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS",
                            *where.keys(), *where.values())

    while running():
        reply = await retrying(link, clock, running, "XREAD", read)
        for key, entry_id, fields in stream_entries(reply):
            await handle(key, entry_id, fields)


async def redis_time_id(link: RedisLink) -> str:
    """A stream ID for "from now on", in the Redis server's clock (``TIME``)."""
    seconds, micros = await link.execute("TIME")
    return f"{int(seconds) * 1000 + int(micros) // 1000}-0"


class FanoutService(Service):
    """What the fan-out's services share: the config, the key names, the clock, and
    background loops whose failure is logged (unless the service was stopping)."""

    def __init__(self, config: FanoutConfig, *, clock: Any,
                 stats: FanoutStats | None = None) -> None:
        self.config = config
        self.keys = Keys(config.prefix)
        self.sealer = Sealer(config.keys)
        self.clock = clock
        self.stats = FanoutStats() if stats is None else stats

    def rejected(self, kind: str, where: str, why: str) -> None:
        """Count a dropped entry of ``kind``; log the first of each kind, then every 1000th
        (whoever writes them must not fill the log)."""
        self.stats.rejected[kind] += 1
        n = self.stats.rejected[kind]
        if n == 1 or n % 1000 == 0:
            log.warn("fanout {name}: dropped a {kind} at {where}: {why} ({n} so far; is "
                     "something else writing to Redis, or another key in use?)",
                     name=self.config.name, kind=kind, where=where, why=why, n=n)

    async def retry(self, link: RedisLink, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """:func:`retrying` while this service runs."""
        return await retrying(link, self.clock, lambda: bool(self.running), what, attempt)

    def spawn(self, what: str, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the background; log its failure as ``what``."""
        def failed(failure: Failure) -> None:
            if self.running:
                log.failure("fanout {what} failed", failure, what=what)

        Deferred.fromCoroutine(coroutine).addErrback(failed)
