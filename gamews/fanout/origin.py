"""The origin's side: events out to Redis Streams, snapshots and heartbeats, and the
requests edges forward, applied by the origin's own plugins.

:class:`OriginPublisher` appends each event of the bus to its game server's stream
(``XADD ... MAXLEN ~ N EPOCH-SEQ``, sealed) in ``seq`` order, keeping what Redis has not
taken yet (Redis down) in a bounded queue and sending it again once the link is back. An
XADD refused because the stream already holds that ID or a higher one is checked: the
origin's own entry (stored before its reply was lost) counts as sent; any other (someone
else wrote to the stream) makes the origin delete the stream and go on in a new epoch,
logged, so edges take a fresh snapshot instead of following a forged numbering. Every tick
it writes each server's heartbeat (which expires: edges then mark their pages stale) and,
when the state moved, its snapshot with the ``(epoch, seq)`` it reflects, both sealed.

:class:`RequestServer` reads the requests stream, drops what is not sealed by an instance
(counted) or was seen before, and hands each request to the plugin it names (an
:class:`gamews.api.IRequestHandler`): the plugin applies the same checks, rate limits and
audit as for a browser of its own, naming the edge, and finds the user, if any, from the
token proof in its own token store; the reply goes back, sealed, on the edge's replies
stream.
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
from gamews.auth import TokenProof
from gamews.events import Envelope, EventBus, Subscription
from gamews.fanout.codec import dumps, parse_id, stream_fields
from gamews.fanout.config import FanoutConfig
from gamews.fanout.link import (
    FanoutService,
    FanoutStats,
    RedisLink,
    read_streams,
    redis_time_id,
)
from gamews.rcon.server import IGameServer

__all__ = ["REQUEST_TTL", "OriginPublisher", "RequestServer", "decode_request"]

log = Logger(namespace="gamews.fanout")

REQUEST_TTL: Final = 10.0
"""Seconds a forwarded request stays valid: an edge gives up after it, the origin skips
older ones (so a command never runs long after its user was told it failed)."""
_SNAPSHOT_REFRESH: Final = 2.0
_DUPLICATE: Final = "equal or smaller"
"""In Redis's refusal of an XADD whose ID is not above the stream's last."""


def event_place(key: str, entry_id: str) -> str:
    """Where an event entry is sealed for: its stream and its ID."""
    return f"{key}/{entry_id}"


class OriginPublisher(FanoutService):
    """Events out: the bus's events to Redis Streams, with snapshots and heartbeats."""

    def __init__(self, config: FanoutConfig, bus: EventBus, servers: Mapping[str, IGameServer],
                 link: RedisLink, *, clock: Any, buffer: int = 100_000,
                 stats: FanoutStats | None = None) -> None:
        super().__init__(config, clock=clock, stats=stats)
        self.bus = bus
        self.servers = servers
        self.link = link
        self.buffer = buffer
        self.epoch = bus.run
        self.recoveries = 0
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
        # (only after an origin's own entries: a stream ending in one someone else wrote,
        # which could hold the largest ID, is deleted)
        for server in self.bus.servers():
            key = self.keys.events(server)
            last = await self.retry(self.link, "XREVRANGE", partial(
                self.link.execute, "XREVRANGE", key, "+", "-", "COUNT", "1"))
            epoch = self.epoch
            if last and self.sealer.open(event_place(key, str(last[0][0])), stream_fields(
                    list(last[0][1])).get("s", "")) is None:
                log.warn("fanout origin: {key} ends with an entry no origin wrote ({id}): "
                         "deleting the stream", key=key, id=str(last[0][0]))
                await self.retry(self.link, "DEL", partial(self.link.execute, "DEL", key))
                self.recoveries += 1
            elif last:
                epoch = max(epoch, parse_id(str(last[0][0]))[0] + 1)
            self.epochs[server] = epoch
            # the run the pages show is the stream's epoch, as on the edges
            self.bus.add_server(server).run = epoch
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

    def _entry(self, envelope: Envelope) -> tuple[str, str, str, str]:
        """``(server, key, id, sealed text)`` of an event's stream entry."""
        key = self.keys.events(envelope.server)
        entry_id = f"{self.epoch_of(envelope.server)}-{envelope.seq}"
        return envelope.server, key, entry_id, self.sealer.seal(event_place(key, entry_id),
                                                                envelope.to_json_text())

    async def _send(self) -> None:
        while self.queue and self.running:
            batch = [self._entry(e) for e in islice(self.queue, self.config.batch)]
            results = await DeferredList([
                self.link.execute("XADD", key, "MAXLEN", "~", self.config.maxlen, entry_id,
                                  "s", sealed)
                for _, key, entry_id, sealed in batch], consumeErrors=True)
            taken = 0
            for (ok, value), (server, key, entry_id, sealed) in zip(results, batch, strict=True):
                if not ok and _DUPLICATE in value.getErrorMessage():
                    if not await self._ours(server, key, entry_id, sealed):
                        break
                elif not ok:
                    self.link.failed("XADD", value)
                    break
                taken += 1
            for _ in range(taken):
                self.queue.popleft()
            self.sent += taken
            if taken < len(batch):
                await deferLater(self.clock, 0.2)

    async def _ours(self, server: str, key: str, entry_id: str, sealed: str) -> bool:
        """After an XADD refused as not above the stream's last ID: whether the entry at
        ``entry_id`` is this one (sent before, its reply lost). If not, the stream holds an
        entry this origin did not write: delete the stream and go on in a new epoch."""
        found = await self.link.execute("XRANGE", key, entry_id, entry_id)
        if found and stream_fields(list(found[0][1])).get("s") == sealed:
            return True
        top = await self.link.execute("XREVRANGE", key, "+", "-", "COUNT", "1")
        top_id = str(top[0][0]) if top else "?"
        epoch = max(int(self.clock.seconds() * 1000), self.epoch_of(server) + 1)
        log.warn("fanout origin: {key} holds an entry this origin did not write (at {id}, "
                 "the stream's last is {top}): deleting the stream and going on in a new "
                 "epoch {epoch} (edges take a fresh snapshot)", key=key,
                 id=entry_id if found else "a higher ID", top=top_id, epoch=epoch)
        await self.link.execute("DEL", key)
        self.epochs[server] = epoch
        self._written.pop(server, None)  # a snapshot in the new epoch at the next tick
        self.recoveries += 1
        return False

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
            key = self.keys.heartbeat(server)
            self._write("SET", key, self.sealer.seal(key, dumps(beat)), "PX", ttl)
            state = self.bus.state(server)
            if state is None:
                continue
            seq, at = self._written.get(server, (-1, 0.0))
            if seq != state.seq or now - at >= _SNAPSHOT_REFRESH:
                self._written[server] = (state.seq, now)
                key = self.keys.snapshot(server)
                self._write("SET", key, self.sealer.seal(key, dumps(
                    {"epoch": epoch, "seq": state.seq, "state": state.snapshot()})))

    def _write(self, *args: Any) -> None:
        self.link.execute_now(*args).addErrback(lambda f: self.link.failed(str(args[0]), f))


def decode_request(text: str, now: float) -> tuple[str, str, str, str, Request] | str:
    """``(id, edge, plugin, server, request)`` of a forwarded request's payload (its seal
    checked already), or why it is refused.

    Only the shape is checked here; the plugin checks what the user may do.
    """
    try:
        outer = json.loads(text)
        inner = outer["r"] if isinstance(outer, dict) else None
        msg = json.loads(inner) if isinstance(inner, str) else None
    except (ValueError, KeyError):
        return "not JSON"
    if not isinstance(msg, dict):
        return "not an object"
    assert isinstance(inner, str)
    strings = ("id", "edge", "plugin", "server", "peer", "conn")
    if not all(isinstance(msg.get(k), str) and msg[k] for k in strings):
        return f"needs the strings {', '.join(strings)}"
    if not isinstance(msg.get("body"), dict) or not isinstance(msg.get("sent"), int | float):
        return "needs a body object and a sent time"
    if abs(now - float(msg["sent"])) > REQUEST_TTL:
        return "expired"
    mac = outer.get("proof")
    if mac is not None and not isinstance(mac, str):
        return "a proof is a string"
    proof = None if mac is None else TokenProof(inner.encode("utf-8", "surrogatepass"), mac)
    request = Request(msg["body"], msg["peer"], f"{msg['edge']}/{msg['conn']}",
                      via=msg["edge"], proof=proof)
    return msg["id"], msg["edge"], msg["plugin"], msg["server"], request


class RequestServer(FanoutService):
    """Commands back: requests forwarded by edges, applied by the origin's plugins."""

    def __init__(self, config: FanoutConfig, reader: RedisLink, writer: RedisLink,
                 handlers: Callable[[str], IRequestHandler | None], *, clock: Any,
                 stats: FanoutStats | None = None) -> None:
        super().__init__(config, clock=clock, stats=stats)
        self.reader = reader
        self.writer = writer
        self.handlers = handlers
        self.position = "$"
        self.handled = 0
        self._seen: dict[str, float] = {}

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.spawn("request server", self._run())

    async def _run(self) -> None:
        self.position = await self.retry(self.reader, "TIME", lambda: redis_time_id(self.reader))
        await read_streams(self.reader, self.clock, lambda: bool(self.running),
                           lambda: {self.keys.requests(): self.position}, self._entry)

    async def _entry(self, key: str, entry_id: str, fields: dict[str, str]) -> None:
        self.position = entry_id
        text = self.sealer.open(key, fields.get("s", ""))
        if text is None:
            self.rejected("request", f"{key} {entry_id}", "not sealed with a fan-out key")
            return
        now = self.clock.seconds()
        decoded = decode_request(text, now)
        if isinstance(decoded, str):
            log.warn("fanout origin: dropping a forwarded request: {why}", why=decoded)
            return
        ident, edge, plugin, server, request = decoded
        if ident in self._seen:
            self.rejected("request", f"{key} {entry_id}", "a request seen before (replayed)")
            return
        if len(self._seen) > 10_000:  # older than REQUEST_TTL: refused as expired anyway
            self._seen = {i: t for i, t in self._seen.items() if now - t <= REQUEST_TTL}
        self._seen[ident] = now
        handler = self.handlers(plugin)
        if handler is None:
            self._reply(edge, ident, {"error": f"no plugin {plugin} on the origin"})
            return
        self.handled += 1
        handler.apply(server, request).addCallback(
            lambda reply: self._reply(edge, ident, reply))

    def _reply(self, edge: str, ident: str, reply: dict[str, Any]) -> None:
        key = self.keys.replies(edge)
        sealed = self.sealer.seal(key, dumps({"id": ident, "reply": reply}))
        self.writer.execute_now("XADD", key, "MAXLEN", "~", 1000, "*", "s", sealed).addErrback(
            lambda f: self.writer.failed("XADD reply", f))
