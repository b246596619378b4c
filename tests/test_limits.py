"""Limits under attack (issue 7), over real loopback sockets: slowloris, floods
from one address, a reader that stops, a decompression bomb.

The attackers are plain blocking sockets driven from a thread (they must not
wait on the reactor they attack); the honest clients are Autobahn clients on
the reactor, some from another loopback address (127.0.0.2)."""

from __future__ import annotations

import gc
import resource
import selectors
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogEvent, Logger, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from gamews.api import ReadyState
from gamews.config import WebSocketLimits
from gamews.guard import GuardedChannel, GuardedSite, raise_file_limit
from tests.support import (
    can_connect,
    connect,
    free_port,
    poll_until,
    real_reactor,
    spawn_twistd,
)
from tests.test_websocket import ContractTestBase

log = Logger(namespace="tests.test_limits")

KiB = 1024
MiB = 1024 * KiB
OTHER = "127.0.0.2"
"""Another loopback address: an honest client the attacker's caps must not touch."""

_KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"


def handshake(path: str = "/ws", extra: bytes = b"") -> bytes:
    """A complete WebSocket opening handshake, as raw bytes."""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n").encode() + _KEY + extra + b"\r\n"


@dataclass
class Outcome:
    """What one raw socket saw."""

    data: bytes = b""
    closed_after: float | None = None
    """Seconds from the start of :func:`watch` to EOF or reset (``None``: still open)."""

    @property
    def status(self) -> int | None:
        """The HTTP status of the answer, if one came."""
        if not self.data.startswith(b"HTTP/1.1 "):
            return None
        return int(self.data[9:12])


def open_sockets(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` TCP connections from ``source``, connected (the kernel's part), nothing sent."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        sockets.append(s)
    return sockets


def send_all(sockets: list[socket.socket], data: bytes) -> None:
    """Send ``data`` on every socket; those already closed by the server are skipped."""
    for s in sockets:
        try:
            s.sendall(data)
        except OSError:
            pass


def watch(sockets: list[socket.socket], timeout: float,
          done: Callable[[bytes], bool] = lambda data: False,
          trickle: bytes = b"", every: float = 0.0) -> list[Outcome]:
    """Read every socket until it closes (or ``done(data)``), for at most ``timeout`` s.

    With ``trickle``, its bytes are sent one at a time every ``every`` seconds on
    every socket still open (a slowloris that is never idle)."""
    start = time.monotonic()
    outcomes = [Outcome() for _ in sockets]
    selector = selectors.DefaultSelector()
    for i, s in enumerate(sockets):
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ, i)
    waiting = len(sockets)
    sent, next_byte = 0, start + every
    while waiting and time.monotonic() - start < timeout:
        for key, _ in selector.select(0.02):
            i = key.data
            try:
                chunk = sockets[i].recv(64 * KiB)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            outcomes[i].data += chunk
            if not chunk:
                outcomes[i].closed_after = time.monotonic() - start
            if not chunk or done(outcomes[i].data):
                selector.unregister(sockets[i])
                waiting -= 1
        if trickle and sent < len(trickle) and time.monotonic() >= next_byte:
            for key in list(selector.get_map().values()):
                try:
                    sockets[key.data].send(trickle[sent:sent + 1])
                except OSError:
                    pass
            sent += 1
            next_byte += every
    selector.close()
    return outcomes


def close_all(sockets: list[socket.socket]) -> None:
    for s in sockets:
        s.close()


def answered(data: bytes) -> bool:
    """Whether a whole HTTP response head has arrived."""
    return b"\r\n\r\n" in data


@contextmanager
def traced() -> Iterator[Callable[[], tuple[int, int]]]:
    """Trace Python allocations; yields a function giving (growth now, peak growth)
    in bytes since the start. Everything in the process counts, the server included."""
    tracemalloc.start()
    baseline, _ = tracemalloc.get_traced_memory()
    try:
        def growth() -> tuple[int, int]:
            current, peak = tracemalloc.get_traced_memory()
            return current - baseline, peak - baseline

        yield growth
    finally:
        tracemalloc.stop()


class GuardTestBase(ContractTestBase):
    """A loopback registry, with a view of its port's Site (the per-address counts)."""

    @property
    def site(self) -> GuardedSite:
        site = self.registry.ports()[0].site
        assert isinstance(site, GuardedSite)
        return site

    async def honest_round_trip(self, source: str, text: str) -> None:
        """An Autobahn client from ``source`` opens, is heard, and leaves."""
        client = await connect(self.port, "/ws", source=source)
        client.send_text(text)
        await poll_until(lambda: text in self.named("plugin:message"))
        client.sendClose()
        await client.closed


class SlowlorisTests(GuardTestBase):
    """Sockets that never finish their request: capped per address, cut at the deadline."""

    limits = WebSocketLimits(ping_interval=0, handshake_timeout=2.0, max_pending_per_ip=4,
                             max_connections_per_ip=8)

    def test_half_request_lines_capped_then_cut(self) -> Deferred[None]:
        """7 sockets send half a request line: 3 over the cap close at once, 4 at the
        handshake timeout; a client from another address is served meanwhile."""
        timeout = self.limits.handshake_timeout

        async def run() -> None:
            sockets = await deferToThread(open_sockets, self.port, 7)
            self.addCleanup(close_all, sockets)
            await poll_until(lambda: self.site.refused == 3)
            await deferToThread(send_all, sockets, b"GET /ws HT")
            watching = deferToThread(watch, sockets, 6 * timeout)
            await self.honest_round_trip(OTHER, "meanwhile")
            self.assertEqual(self.site.pending["127.0.0.1"], 4)  # still held, still capped
            outcomes = await watching
            times = sorted(o.closed_after for o in outcomes if o.closed_after is not None)
            self.assertEqual(len(times), 7, "every half-open socket is closed")
            self.assertEqual([o.data for o in outcomes], [b""] * 7)
            self.assertLess(times[2], timeout / 2, "over the cap: closed at once")
            self.assertGreater(times[3], timeout / 2, "under the cap: held until the deadline")
            self.assertLess(times[6], 3 * timeout)
            self.assertEqual(dict(self.site.pending), {})
            await self.honest_round_trip("127.0.0.1", "the cap frees up")

        return ensureDeferred(run())

    def test_trickled_request_cut_at_deadline(self) -> Deferred[None]:
        """A client sending its handshake one byte every timeout/5 (never idle) is cut
        at the handshake timeout, unanswered."""
        timeout = self.limits.handshake_timeout

        async def run() -> None:
            sockets = await deferToThread(open_sockets, self.port, 1)
            self.addCleanup(close_all, sockets)
            [outcome] = await deferToThread(watch, sockets, 6 * timeout,
                                            trickle=handshake(), every=timeout / 5)
            self.assertEqual(outcome.data, b"")
            assert outcome.closed_after is not None, "a trickling client is never cut"
            self.assertGreater(outcome.closed_after, 0.8 * timeout)
            self.assertLess(outcome.closed_after, 3 * timeout)

        return ensureDeferred(run())

    def test_websockets_do_not_count_as_pending(self) -> Deferred[None]:
        """Upgraded sockets leave the pending count: more WebSockets than
        max_pending_per_ip from one address are fine (max_connections_per_ip caps them)."""
        async def run() -> None:
            clients = [await connect(self.port, "/ws") for _ in range(6)]
            self.assertEqual(dict(self.site.pending), {})
            await self.honest_round_trip("127.0.0.1", "a seventh")
            for client in clients:
                client.sendClose()
                await client.closed

        return ensureDeferred(run())


class FloodTests(GuardTestBase):
    """Many handshakes at once from one address."""

    limits = WebSocketLimits(ping_interval=0, handshake_timeout=2.0, max_pending_per_ip=16,
                             max_connections_per_ip=6)

    def test_flood_admits_exactly_the_cap(self) -> Deferred[None]:
        """40 simultaneous handshakes from one address: 24 closed at accept, 16 answered,
        of which exactly 6 (the cap) get 101 and 10 get 503; another address is unaffected."""
        async def run() -> None:
            sockets = await deferToThread(open_sockets, self.port, 40)
            self.addCleanup(close_all, sockets)
            # every socket accepted (or refused) before any handshake is read
            await poll_until(lambda: self.site.refused + self.site.pending["127.0.0.1"] == 40)
            self.assertEqual(self.site.refused, 24)
            await deferToThread(send_all, sockets, handshake())
            outcomes = await deferToThread(watch, sockets, 10, answered)
            statuses = sorted(o.status or 0 for o in outcomes)
            self.assertEqual(statuses, [0] * 24 + [101] * 6 + [503] * 10)
            for outcome in outcomes:
                if outcome.status == 503:
                    self.assertIn(b"too many connections from this address", outcome.data)
            self.assertEqual(
                len([c for c in self.children if c.request.peer_host == "127.0.0.1"
                     and c.ready_state is ReadyState.OPEN]), 6)
            await self.honest_round_trip(OTHER, "unaffected")

        return ensureDeferred(run())


def ws_frame(opcode_byte: int, payload: bytes) -> bytes:
    """A client frame (masked with a zero key, so the payload goes as it is)."""
    size = len(payload)
    if size < 126:
        head = bytes([opcode_byte, 0x80 | size])
    elif size < 65536:
        head = bytes([opcode_byte, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([opcode_byte, 0x80 | 127]) + struct.pack("!Q", size)
    return head + b"\x00\x00\x00\x00" + payload


def deflate_bomb(inflated: int, fragments: int) -> bytes:
    """One binary message of ``inflated`` zero bytes, permessage-deflate compressed,
    as ``fragments`` frames."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    per_fragment = inflated // fragments
    frames = []
    for i in range(fragments):
        chunk = b"".join(compressor.compress(zeros[:min(MiB, per_fragment - done)])
                         for done in range(0, per_fragment, MiB))
        chunk += compressor.flush(zlib.Z_SYNC_FLUSH)
        last = i == fragments - 1
        if last:
            chunk = chunk[:-4]  # the 00 00 ff ff tail is implied (RFC 7692)
        first_byte = (0x80 if last else 0) | ((0x40 | 0x2) if i == 0 else 0)
        frames.append(ws_frame(first_byte, chunk))
    return b"".join(frames)


def send_bomb(port: int, bomb: bytes) -> tuple[int, bytes, float]:
    """Handshake with permessage-deflate, send ``bomb``; return the close code and
    reason the server sends back, and the seconds it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(handshake(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n"))
        head = b""
        while not answered(head):
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"permessage-deflate" in head.lower(), head
        started = time.monotonic()
        s.sendall(bomb)
        data = b""
        while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - started
    assert data[:1] == b"\x88", data
    code = struct.unpack("!H", data[2:4])[0]
    return code, data[4:2 + (data[1] & 0x7F)], elapsed


class DecompressionBombTests(ContractTestBase):
    """permessage-deflate messages that inflate far past max_message_size."""

    limits = WebSocketLimits(ping_interval=0, permessage_deflate=True, max_message_size=MiB,
                             max_frame_size=MiB)

    def check_bomb(self, bomb: bytes) -> Deferred[None]:
        async def run() -> None:
            with traced() as growth:
                code, reason, elapsed = await deferToThread(send_bomb, self.port, bomb)
                _, peak = growth()
            self.assertEqual(code, 1009)
            self.assertIn(b"exceeds payload limit", reason)
            # 64 MiB inflated would show; the server stops near the 1 MiB limit
            self.assertLess(peak, 8 * MiB, f"{peak} bytes allocated")
            self.assertLess(elapsed, 5)
            await poll_until(lambda: bool(self.named("plugin:error")))
            self.assertEqual(self.named("plugin:error")[0].code, 1009)
            self.assertEqual(self.named("plugin:message"), [])

        return ensureDeferred(run())

    def test_one_frame_bomb(self) -> Deferred[None]:
        """One 64 KiB frame inflating to 64 MiB: closed 1009, never inflated past the limit."""
        return self.check_bomb(deflate_bomb(64 * MiB, 1))

    def test_fragmented_bomb(self) -> Deferred[None]:
        """64 frames of 1 MiB each once inflated (each under the limit, not together):
        closed 1009, never inflated past the limit."""
        return self.check_bomb(deflate_bomb(64 * MiB, 64))


class SlowConsumerTests(ContractTestBase):
    """A reader that stops while the server broadcasts to it and to a healthy reader."""

    limits = WebSocketLimits(ping_interval=0, max_message_size=64 * KiB,
                             max_frame_size=64 * KiB, max_send_buffer=512 * KiB,
                             close_timeout=1.0)
    size = 32 * KiB

    def broadcast_until_closed(self, slow: Any) -> Deferred[int]:
        """Broadcast ``size``-byte messages every millisecond until ``slow`` is no
        longer OPEN; fire with how many were sent."""
        async def run() -> int:
            payload = b"x" * self.size
            sent = 0
            while slow.ready_state is ReadyState.OPEN:
                self.assertLess(sent * self.size, 256 * MiB, "the slow reader is never closed")
                self.listener.broadcast(payload)
                sent += 1
                await deferLater(real_reactor(), 0.001)
            return sent

        return ensureDeferred(run())

    def test_stopped_reader_closed_1008_memory_bounded(self) -> Deferred[None]:
        """A reader that stops for good: closed 1008 once max_send_buffer is waiting,
        dropped after close_timeout; server memory stays within the bound meanwhile,
        and a healthy reader gets every byte."""
        frame = self.size + 4  # a binary frame of 32 KiB has a 4-byte header

        async def run() -> None:
            slow = await connect(self.port, "/ws")
            slow.pause_reading()
            fast_socket = (await deferToThread(open_sockets, self.port, 1))[0]
            self.addCleanup(fast_socket.close)
            stop, ready = threading.Event(), threading.Event()
            received = [0]

            def read_fast() -> None:
                """A healthy reader that counts the bytes after its 101 answer."""
                fast_socket.sendall(handshake())
                head = b""
                while not answered(head):
                    head += fast_socket.recv(1)
                ready.set()
                buffer = bytearray(256 * KiB)
                fast_socket.settimeout(0.05)
                while not stop.is_set():
                    try:
                        received[0] += fast_socket.recv_into(buffer)
                    except TimeoutError:
                        pass

            reading = deferToThread(read_fast)
            await poll_until(lambda: ready.is_set() and len(self.named("plugin:open")) == 2)
            slow_child, fast_child = self.children
            with traced() as growth:
                sent = await self.broadcast_until_closed(slow_child)
                await poll_until(lambda: bool(self.named("plugin:disconnect")), timeout=5)
                _, peak = growth()
                # the test's own handles are the last references to the dropped child
                self.children = [fast_child]
                del slow_child
                gc.collect()
                after_drop, _ = growth()
            self.assertEqual(self.named("plugin:error")[0].code, 1008)
            bound = self.limits.max_send_buffer
            # what waits is bounded by max_send_buffer (plus the transport's own 64 KiB);
            # Twisted joins its buffer into one string before a send, briefly twice that
            self.assertGreater(sent * frame, bound, "the bound was never reached")
            self.assertLess(peak, 3 * bound, f"peak {peak} bytes for a bound of {bound}")
            self.assertLess(after_drop, bound // 2, "memory was not given back")
            self.assertEqual(fast_child.ready_state, ReadyState.OPEN)
            await poll_until(lambda: received[0] == sent * frame)
            stop.set()
            await reading
            slow.drop()
            await slow.closed

        return ensureDeferred(run())

    def test_resumed_reader_finds_1008_and_reason(self) -> Deferred[None]:
        """A reader that stops, then reads again, finds close 1008 'reading too slowly'."""
        async def run() -> None:
            slow = await connect(self.port, "/ws")
            slow.pause_reading()
            await poll_until(lambda: bool(self.named("plugin:open")))
            await self.broadcast_until_closed(self.children[0])
            slow.resume_reading()
            _, code, reason = await slow.closed
            self.assertEqual((code, reason), (1008, "reading too slowly"))

        return ensureDeferred(run())


class GuardUnitTests(SynchronousTestCase):
    """GuardedSite's per-address counts and the file limit, without sockets."""

    def site(self, cap: int | None) -> GuardedSite:
        return GuardedSite(Resource(), timeout=5, max_pending_per_ip=cap,
                           reactor=MemoryReactorClock())

    def test_cap_per_address_until_upgrade_or_close(self) -> None:
        """Past the cap an address gets a socket closed at once; an upgrade or a close
        frees its slot; other addresses are counted apart."""
        site = self.site(2)
        a = IPv4Address("TCP", "192.0.2.1", 1000)
        first, second = site.buildProtocol(a), site.buildProtocol(a)
        self.assertIsInstance(first, GuardedChannel)
        refused = site.buildProtocol(a)
        self.assertNotIsInstance(refused, GuardedChannel)
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertTrue(transport.disconnected)
        self.assertEqual(transport.value(), b"")
        self.assertIsInstance(site.buildProtocol(IPv4Address("TCP", "192.0.2.2", 1)),
                              GuardedChannel)
        first.upgraded()
        first.upgraded()  # once only
        third = site.buildProtocol(a)
        self.assertIsInstance(third, GuardedChannel)
        third.makeConnection(StringTransport())
        third.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(site.pending, {"192.0.2.1": 1, "192.0.2.2": 1})
        self.assertEqual(site.refused, 1)
        second.upgraded()

    def test_uncounted_peers(self) -> None:
        """UNIX-socket peers, and every peer when no cap is set (trusted proxies), pass."""
        for site, addr in [(self.site(1), UNIXAddress(b"/tmp/gamews.sock")),
                           (self.site(None), IPv4Address("TCP", "192.0.2.1", 1))]:
            for _ in range(3):
                self.assertIsInstance(site.buildProtocol(addr), GuardedChannel)
            self.assertEqual(site.pending, {})

    def test_raise_file_limit(self) -> None:
        """The soft open-file limit is raised to the hard one; a shortfall is logged."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard < 600:
            raise SkipTest(f"needs a finite hard open-file limit of 600 or more ({hard})")
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.assertEqual(raise_file_limit(hard + 1), hard)
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE), (hard, hard))
        texts = [formatEvent(e) for e in events]
        self.assertIn(f"open-file limit raised from 512 to {hard}", texts)
        self.assertTrue(any("below the" in t and "LimitNOFILE" in t for t in texts), texts)


class Holder(Protocol):
    """A lean WebSocket client: sends its handshake, waits for the answer, holds on."""

    def __init__(self) -> None:
        self.head = b""
        self.upgraded: Deferred[bool] = Deferred()
        """Fires with whether the answer was 101 (``False`` if closed unanswered)."""
        self.lost: Deferred[None] = Deferred()
        self.after = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(handshake("/echo"))

    def dataReceived(self, data: bytes) -> None:
        if self.upgraded.called:
            self.after += data
            return
        self.head += data
        if answered(self.head):
            self.head, _, self.after = self.head.partition(b"\r\n\r\n")
            self.upgraded.callback(self.head.startswith(b"HTTP/1.1 101"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.upgraded.called:
            self.upgraded.callback(False)
        self.lost.callback(None)


def rss_kib(pid: int) -> int:
    """A process's resident set size (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


class TenThousandConnectionsTests(TestCase):
    """A real ``twistd gamews`` holds 10,000 WebSockets at once."""

    timeout = 180
    count = 10_000
    sources = 200
    """Client addresses (127.0.1.1 and up): 50 connections each, under the per-address caps."""

    def setUp(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < self.count + 500:
            raise SkipTest(f"needs an open-file hard limit of {self.count + 500} ({hard})")
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def test_ten_thousand_held(self) -> Deferred[None]:
        """twistd gamews started with a soft open-file limit of 1024 raises it and holds
        10,000 WebSockets from 200 addresses; the 10,001st gets 503; they still echo."""
        port = free_port()
        config = Path(self.mktemp()).resolve()
        config.write_text(f'listen = ["tcp:{port}:interface=127.0.0.1"]\nplugins = ["echo"]\n'
                          'demo = false\n[websocket]\nping_interval = 0\n')
        prelude = ("import resource; _, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
                   "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))")
        process = spawn_twistd(["-n", "gamews", "--config", str(config)], prelude=prelude)
        holders: list[Holder] = []

        async def stop() -> None:
            for holder in holders:
                if holder.transport is not None:
                    holder.transport.abortConnection()  # type: ignore[attr-defined]
            process.signal("KILL")
            await process.ended

        self.addCleanup(lambda: ensureDeferred(stop()))

        async def open_one(i: int) -> bool:
            endpoint = TCP4ClientEndpoint(real_reactor(), "127.0.0.1", port, timeout=30,
                                          bindAddress=(f"127.0.1.{1 + i % self.sources}", 0))
            holder: Holder = await connectProtocol(endpoint, Holder())
            holders.append(holder)
            return await holder.upgraded

        async def run() -> None:
            await poll_until(lambda: can_connect(port) or process.ended.called, timeout=30)
            self.assertFalse(process.ended.called,
                             (process.output + process.errors).decode(errors="replace"))
            self.assertIn(b"open-file limit raised from 1024 to", process.output)
            pid = process.transport.pid  # type: ignore[union-attr]
            idle = rss_kib(pid)
            started = time.monotonic()
            gate = DeferredSemaphore(200)  # handshakes in flight at once
            results = await gatherResults([gate.run(open_one, i) for i in range(self.count)])
            elapsed = time.monotonic() - started
            self.assertEqual(results.count(True), self.count)
            held = rss_kib(pid)
            log.info("10,000 WebSockets opened in {elapsed:.1f} s; server RSS {idle} KiB idle, "
                     "{held} KiB holding them ({per:.1f} KiB each)", elapsed=elapsed,
                     idle=idle, held=held, per=(held - idle) / self.count)
            self.assertLess(held, 512 * 1024, "server RSS above 512 MiB")
            # the 10,001st is refused, by max_connections
            self.assertFalse(await open_one(self.count))
            self.assertIn(b"HTTP/1.1 503", holders[-1].head)
            # time passing is what is tested: they are all still held a second later
            await deferLater(real_reactor(), 1.0)
            self.assertEqual([h for h in holders[:self.count] if h.lost.called], [])
            for holder in (holders[0], holders[self.count - 1]):
                assert holder.transport is not None
                holder.transport.write(ws_frame(0x81, b"ping"))
            await poll_until(lambda: holders[0].after == holders[self.count - 1].after
                             == b"\x81\x04ping")

        return ensureDeferred(run())
