"""The origin's side: events out to Redis Streams, snapshots and heartbeats, and the
requests edges forward, applied by the origin's own plugins.

:class:`OriginPublisher` appends each event of the bus to its game server's stream
(``XADD ... MAXLEN ~ N EPOCH-SEQ``) in ``seq`` order, keeping what Redis has not taken
yet (Redis down) in a bounded queue and sending it again once the link is back; an
entry stored before its reply was lost is refused as a duplicate, which counts as sent.
Every tick it writes each server's heartbeat (which expires: edges then mark their
pages stale) and, when the state moved, its snapshot with the ``(epoch, seq)`` it reflects.

:class:`RequestServer` reads the requests stream and hands each request to the plugin it
names (an :class:`gamews.api.IRequestHandler`): the plugin applies the same checks, rate
limits and audit as for a browser of its own, naming the edge; the reply goes back on the
edge's replies stream.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from itertools import islice
from typing import Any, Final

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.api import IRequestHandler, Request
from gamews.auth import ROLES, User
from gamews.events import Envelope, EventBus, Subscription
from gamews.fanout.codec import dumps, parse_id
from gamews.fanout.config import FanoutConfig
from gamews.fanout.link import FanoutService, RedisLink, read_streams, redis_time_id
from gamews.rcon.server import IGameServer

__all__ = ["REQUEST_TTL", "OriginPublisher", "RequestServer", "decode_request"]

log = Logger(namespace="gamews.fanout")

REQUEST_TTL: Final = 10.0
"""Seconds a forwarded request stays valid: an edge gives up after it, the origin skips
older ones (so a command never runs long after its user was told it failed)."""
_BATCH: Final = 200
_SNAPSHOT_REFRESH: Final = 2.0


class OriginPublisher(FanoutService):
    """Events out: the bus's events to Redis Streams, with snapshots and heartbeats."""

    def __init__(self, config: FanoutConfig, bus: EventBus, servers: Mapping[str, IGameServer],
                 link: RedisLink, *, clock: Any, buffer: int = 100_000) -> None:
        super().__init__(config, clock=clock)
        self.bus = bus
        self.servers = servers
        self.link = link
        self.buffer = buffer
        self.epoch = int(clock.seconds() * 1000)
        self.epochs: dict[str, int] = {}
        self.queue: deque[Envelope] = deque()
        self.sent = 0
        self.dropped = 0
        self._sending = False
        self._written: dict[str, tuple[int, float]] = {}
        self._subscription: Subscription | None = None
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = clock

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._subscription = self.bus.subscribe(self._event, queue_size=self.buffer,
                                                name="fanout:origin")
        self.spawn("origin publisher", self._start())

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._subscription is not None:
            self._subscription.cancel()
        if self._ticker.running:
            self._ticker.stop()

    async def _start(self) -> None:
        # a new run numbers its stream IDs after every earlier run's (even if the clock
        # went back), so that edges see the restart and no XADD is refused as a duplicate
        for server in self.bus.servers():
            last = await self.retry(self.link, "XREVRANGE", partial(
                self.link.execute, "XREVRANGE", self.keys.events(server), "+", "-", "COUNT", "1"))
            epoch = self.epoch
            if last:
                epoch = max(epoch, parse_id(str(last[0][0]))[0] + 1)
            self.epochs[server] = epoch
        log.info("fanout origin {name}: publishing {servers} (run {epoch})",
                 name=self.config.name, servers=", ".join(self.bus.servers()), epoch=self.epoch)
        self._ticker.start(min(0.5, self.config.stale_after / 3), now=True)
        self._pump()

    def epoch_of(self, server: str) -> int:
        """The run number in ``server``'s stream IDs."""
        return self.epochs.setdefault(server, self.epoch)

    def _event(self, envelope: Envelope) -> None:
        self.queue.append(envelope)
        if len(self.queue) > self.buffer:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warn("fanout origin: Redis is behind; {n} events dropped (edges take a "
                         "fresh snapshot)", n=self.dropped)
        self._pump()

    def _pump(self) -> None:
        if self._sending or not self.queue or not self._ticker.running:
            return
        self._sending = True

        def done(result: object) -> None:
            self._sending = False
            if isinstance(result, Failure) and self.running:
                log.failure("fanout origin: sending events", result)

        Deferred.fromCoroutine(self._send()).addBoth(done)

    async def _send(self) -> None:
        while self.queue and self.running:
            batch = list(islice(self.queue, _BATCH))
            results = await DeferredList([
                self.link.execute("XADD", self.keys.events(e.server), "MAXLEN", "~",
                                  self.config.maxlen, f"{self.epoch_of(e.server)}-{e.seq}",
                                  "e", e.to_json_text())
                for e in batch], consumeErrors=True)
            taken = 0
            for ok, value in results:
                if not ok and "equal or smaller" not in value.getErrorMessage():
                    self.link.failed("XADD", value)
                    break
                taken += 1
            for _ in range(taken):
                self.queue.popleft()
            self.sent += taken
            if taken < len(batch):
                await deferLater(self.clock, 0.2)

    def _tick(self) -> None:
        if not self.link.connected:
            return
        now = self.clock.seconds()
        ttl = int(self.config.stale_after * 1000)
        for server in self.bus.servers():
            epoch = self.epoch_of(server)
            game = self.servers.get(server)
            beat = {"origin": self.config.name, "epoch": epoch, "time": now,
                    "kind": game.kind if game is not None else None,
                    "link": game.state.value if game is not None else None}
            self._write("SET", self.keys.heartbeat(server), dumps(beat), "PX", ttl)
            state = self.bus.state(server)
            if state is None:
                continue
            seq, at = self._written.get(server, (-1, 0.0))
            if seq != state.seq or now - at >= _SNAPSHOT_REFRESH:
                self._written[server] = (state.seq, now)
                self._write("SET", self.keys.snapshot(server),
                            dumps({"epoch": epoch, "seq": state.seq,
                                   "state": state.snapshot()}))

    def _write(self, *args: Any) -> None:
        self.link.execute_now(*args).addErrback(lambda f: self.link.failed(str(args[0]), f))


def decode_request(text: str, now: float) -> tuple[str, str, str, str, Request] | str:
    """``(id, edge, plugin, server, request)`` of a forwarded request, or why it is refused.

    Only the shape is checked here; the plugin checks what the user may do.
    """
    try:
        msg = json.loads(text)
    except ValueError:
        return "not JSON"
    if not isinstance(msg, dict):
        return "not an object"
    strings = ("id", "edge", "plugin", "server", "peer", "conn")
    if not all(isinstance(msg.get(k), str) and msg[k] for k in strings):
        return f"needs the strings {', '.join(strings)}"
    if not isinstance(msg.get("body"), dict) or not isinstance(msg.get("sent"), int | float):
        return "needs a body object and a sent time"
    if abs(now - float(msg["sent"])) > REQUEST_TTL:
        return "expired"
    user = msg.get("user")
    if user is not None and not (isinstance(user, dict) and isinstance(user.get("name"), str)
                                 and user.get("role") in ROLES):
        return "a user needs a name and a known role"
    request = Request(msg["body"], msg["peer"], f"{msg['edge']}/{msg['conn']}",
                      None if user is None else User(user["name"], user["role"]),
                      via=msg["edge"])
    return msg["id"], msg["edge"], msg["plugin"], msg["server"], request


class RequestServer(FanoutService):
    """Commands back: requests forwarded by edges, applied by the origin's plugins."""

    def __init__(self, config: FanoutConfig, reader: RedisLink, writer: RedisLink,
                 handlers: Callable[[str], IRequestHandler | None], *, clock: Any) -> None:
        super().__init__(config, clock=clock)
        self.reader = reader
        self.writer = writer
        self.handlers = handlers
        self.position = "$"
        self.handled = 0

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.spawn("request server", self._run())

    async def _run(self) -> None:
        self.position = await self.retry(self.reader, "TIME", lambda: redis_time_id(self.reader))
        await read_streams(self.reader, self.clock, lambda: bool(self.running),
                           lambda: {self.keys.requests(): self.position}, self._entry)

    async def _entry(self, key: str, entry_id: str, fields: dict[str, str]) -> None:
        self.position = entry_id
        decoded = decode_request(fields.get("r", ""), self.clock.seconds())
        if isinstance(decoded, str):
            log.warn("fanout origin: dropping a forwarded request: {why}", why=decoded)
            return
        ident, edge, plugin, server, request = decoded
        handler = self.handlers(plugin)
        if handler is None:
            self._reply(edge, ident, {"error": f"no plugin {plugin} on the origin"})
            return
        self.handled += 1
        handler.apply(server, request).addCallback(
            lambda reply: self._reply(edge, ident, reply))

    def _reply(self, edge: str, ident: str, reply: dict[str, Any]) -> None:
        self.writer.execute_now("XADD", self.keys.replies(edge), "MAXLEN", "~", 1000, "*",
                                "r", dumps({"id": ident, "reply": reply})).addErrback(
            lambda f: self.writer.failed("XADD reply", f))
