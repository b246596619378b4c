"""The seed's plugin contract over real loopback sockets with real clients."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

import websockets
import websockets.sync.client
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from websockets.typing import Origin
from zope.interface.verify import verifyObject

from gamews.api import IConnection, IListener, ReadyState, WebSocketError
from gamews.config import WebSocketLimits
from gamews.registry import Registry
from tests.support import LOOPBACK, Client, connect, echo, poll_until, real_reactor

MiB = 1024 * 1024


class ContractTestBase(TestCase):
    """A registry on a loopback port with one listener at ``/ws``."""

    timeout = 30
    limits = WebSocketLimits(ping_interval=0)

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        self.registry = Registry(self.limits, reactor=real_reactor())
        self.addCleanup(self.registry.shutdown)
        self.children: list[IConnection] = []
        self.events: list[tuple[str, Any]] = []
        self.listener = self.open("plugin")
        # a page keeps the port open while tests swap listeners
        self.registry.mount(LOOPBACK, "/keep", Resource(), owner="test")

        async def port() -> None:
            address: Any = await self.listener.when_listening()
            self.port: int = address.port

        return ensureDeferred(port())

    def open(self, owner: str, incoming: Callable[[IConnection], Any] | None = None,
             path: str = "/ws") -> IListener:
        """Open a listener recording events; ``incoming`` defaults to hooking everything."""
        def record_incoming(child: IConnection) -> Any:
            self.children.append(child)
            self.events.append((f"{owner}:incoming", child.ready_state))
            if incoming is not None:
                return incoming(child)
            child.hook(
                on_open=lambda c: self.events.append((f"{owner}:open", c.ready_state)),
                on_message=lambda c, d: self.events.append((f"{owner}:message", d)),
                on_error=lambda c, f: self.events.append((f"{owner}:error", f.value)),
                on_disconnect=lambda c, code, r: self.events.append(
                    (f"{owner}:disconnect", (code, c.ready_state))),
            )
            return None

        return self.registry.open(LOOPBACK, path, owner=owner, incoming=record_incoming)

    def named(self, name: str) -> list[Any]:
        """Values of the recorded events called ``name``."""
        return [v for n, v in self.events if n == name]

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


class ContractTests(ContractTestBase):
    """Every native of the seed, in its Python form."""

    def test_handle_provides_interfaces(self) -> None:
        """Listener and child handles provide the public interfaces."""
        verifyObject(IListener, self.listener)

        async def run() -> None:
            client = await connect(self.port, "/ws")
            verifyObject(IConnection, self.children[0])
            client.sendClose()
            await client.closed

        return ensureDeferred(run())  # type: ignore[return-value]

    def test_request_details(self) -> Deferred[None]:
        """The plugin sees path, query, headers, peer and offered subprotocols."""
        async def run() -> None:
            client = await connect(self.port, "/ws?room=1&room=2&x=y",
                                   protocols=["v2.gamews", "v1.gamews"],
                                   headers={"X-Player": "Sarge"})
            request = self.children[0].request
            self.assertEqual(request.path, "/ws")
            self.assertEqual(dict(request.query), {"room": ["1", "2"], "x": ["y"]})
            self.assertEqual(request.headers["x-player"], "Sarge")
            self.assertEqual(request.peer_host, "127.0.0.1")
            self.assertTrue(request.peer.startswith("tcp4:127.0.0.1:"))
            self.assertEqual(request.protocols, ("v2.gamews", "v1.gamews"))
            self.assertIsNone(client.subprotocol)
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_subprotocol_choice(self) -> Deferred[None]:
        """A plugin picks one offered subprotocol; another may not pick a different one."""
        conflicts: list[Exception] = []

        def second(child: IConnection) -> None:
            try:
                child.select_subprotocol("v1.gamews")
            except ValueError as e:
                conflicts.append(e)
            self.assertRaises(ValueError, child.select_subprotocol, "not-offered")

        self.children.clear()
        self.listener.close()
        def first(child: IConnection) -> None:
            child.select_subprotocol("v2.gamews")
            child.hook()

        self.open("first", incoming=first)
        self.open("second", incoming=second)

        async def run() -> None:
            client = await connect(self.port, "/ws", protocols=["v1.gamews", "v2.gamews"])
            self.assertEqual(client.subprotocol, "v2.gamews")
            self.assertEqual(len(conflicts), 1)
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_text_and_binary_types(self) -> Deferred[None]:
        """Text arrives as str, binary as bytes; sends keep their type."""
        async def run() -> None:
            client = await connect(self.port, "/ws")
            client.send_text("héllo")
            client.send_binary(b"\x00\xffbin")
            await poll_until(lambda: len(self.named("plugin:message")) == 2)
            self.assertEqual(self.named("plugin:message"), ["héllo", b"\x00\xffbin"])
            child = self.children[0]
            self.assertTrue(child.send_text("zwölf"))
            self.assertTrue(child.send_binary(b"\x01\x02"))
            self.assertEqual(await client.wait_messages(2), ["zwölf", b"\x01\x02"])
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_every_byte_value_round_trips(self) -> Deferred[None]:
        """Binary with every byte value (and NULs) is byte-exact both ways."""
        payload = bytes(range(256)) * 64 + b"\x00\x00"
        self.listener.close()
        self.open("echo", incoming=lambda c: c.hook(on_message=echo))

        async def run() -> None:
            client = await connect(self.port, "/ws")
            client.send_binary(payload)
            self.assertEqual(await client.wait_messages(1), [payload])
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_large_messages_fragmented_both_ways(self) -> Deferred[None]:
        """A fragmented 900 KiB message arrives whole; a large send goes out in frames."""
        payload = os.urandom(900 * 1024)
        self.listener.close()
        self.open("echo", incoming=lambda c: c.hook(on_message=echo))
        frames: list[int] = []

        async def run() -> None:
            client = await connect(self.port, "/ws")
            def frame_begin(length: int) -> None:
                frames.append(length)
                Client.onMessageFrameBegin(client, length)

            client.onMessageFrameBegin = frame_begin  # type: ignore[method-assign]
            client.sendMessage(payload, isBinary=True, fragmentSize=4096)
            self.assertEqual(await client.wait_messages(1), [payload])
            self.assertGreater(len(frames), 1)  # the server fragmented on the way out
            self.assertEqual(sum(frames), len(payload))
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_all_four_ready_states(self) -> Deferred[None]:
        """A child goes CONNECTING (offered), OPEN, CLOSING (close sent), CLOSED."""
        async def run() -> None:
            client = await connect(self.port, "/ws")
            await poll_until(lambda: bool(self.named("plugin:open")))
            child = self.children[0]
            self.assertEqual(self.named("plugin:incoming"), [ReadyState.CONNECTING])
            self.assertEqual(self.named("plugin:open"), [ReadyState.OPEN])
            self.assertEqual(child.ready_state, ReadyState.OPEN)
            client.pause_reading()  # the client will not answer the close yet
            child.close(1000, "bye")
            self.assertEqual(child.ready_state, ReadyState.CLOSING)
            self.assertFalse(child.send_text("too late"))
            client.resume_reading()
            await client.closed
            await poll_until(lambda: bool(self.named("plugin:disconnect")))
            self.assertEqual(self.named("plugin:disconnect"), [(1000, ReadyState.CLOSED)])
            self.assertEqual(child.ready_state, ReadyState.CLOSED)
            self.assertFalse(child.send_text("gone"))

        return ensureDeferred(run())

    def test_unhook_by_last_plugin_closes_1000(self) -> Deferred[None]:
        """When the last plugin unhooks, the child is closed with 1000."""
        second = self.open("second")

        async def run() -> None:
            client = await connect(self.port, "/ws")
            first_view, second_view = self.children
            self.assertEqual(first_view.id, second_view.id)
            first_view.unhook()
            self.assertFalse(first_view.hooked)
            client.send_text("still here")
            await poll_until(lambda: bool(self.named("second:message")))
            self.assertEqual(self.named("plugin:message"), [])
            second_view.unhook()
            clean, code, _ = await client.closed
            self.assertEqual((clean, code), (True, 1000))
            await second.close()

        return ensureDeferred(run())

    def test_rejection_answers_http_403(self) -> Deferred[None]:
        """A rejecting plugin answers HTTP 403 before the handshake, not a half-open socket."""
        self.listener.close()
        self.open("gate", incoming=lambda c: c.reject(403, "no token"))

        def attempt() -> str:
            try:
                websockets.sync.client.connect(self.ws_url(), open_timeout=5).close()
            except websockets.exceptions.InvalidStatus as e:
                return str(e.response.status_code)
            return "connected"

        return deferToThread(attempt).addCallback(self.assertEqual, "403")

    def test_nobody_hooks_means_403(self) -> Deferred[None]:
        """A child no plugin hooks is refused with 403."""
        self.listener.close()
        self.open("idle", incoming=lambda c: None)

        def attempt() -> int:
            try:
                websockets.sync.client.connect(self.ws_url(), open_timeout=5).close()
            except websockets.exceptions.InvalidStatus as e:
                return int(e.response.status_code)
            return 101

        return deferToThread(attempt).addCallback(self.assertEqual, 403)

    def test_asynchronous_incoming_decision(self) -> Deferred[None]:
        """An incoming callback may return a Deferred; the handshake waits for it."""
        decisions: list[Deferred[None]] = []

        def later(child: IConnection) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            d.addCallback(lambda _: child.hook())
            decisions.append(d)
            real_reactor().callLater(0.05, d.callback, None)
            return d

        self.listener.close()
        self.open("slow", incoming=later)

        async def run() -> None:
            client = await connect(self.port, "/ws")
            self.assertTrue(decisions[0].called)
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_bad_handshake_400_and_port_keeps_serving(self) -> Deferred[None]:
        """A malformed upgrade gets HTTP 400 and the next client is served."""
        def raw() -> bytes:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
                return s.recv(100)

        async def run() -> None:
            answer = await deferToThread(raw)
            self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
            client = await connect(self.port, "/ws")
            client.sendClose()
            await client.closed

        return ensureDeferred(run())


class IsolationTests(ContractTestBase):
    """A raising plugin is logged and isolated; protocol errors close one child."""

    def test_raising_plugin_does_not_break_its_neighbour(self) -> Deferred[None]:
        """A plugin raising in incoming and on_message leaves the other plugin working."""
        def bad_incoming(child: IConnection) -> None:
            child.hook(on_message=lambda c, d: 1 / 0)
            raise RuntimeError("plugin bug in incoming")

        self.open("buggy", incoming=bad_incoming)

        async def run() -> None:
            client = await connect(self.port, "/ws")
            client.send_text("ping")
            await poll_until(lambda: bool(self.named("plugin:message")))
            self.assertEqual(self.named("plugin:message"), ["ping"])
            errors = self.flushLoggedErrors(RuntimeError, ZeroDivisionError)
            self.assertEqual(len(errors), 2)
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_oversize_message_closes_1009(self) -> Deferred[None]:
        """A message above max_message_size closes that child with 1009; others go on."""
        async def run() -> None:
            other = await connect(self.port, "/ws")
            client = await connect(self.port, "/ws")
            client.sendMessage(b"x" * (MiB + 1), isBinary=True, fragmentSize=64 * 1024)
            _, code, _ = await client.closed
            self.assertEqual(code, 1009)
            await poll_until(lambda: bool(self.named("plugin:error")))
            error = self.named("plugin:error")[0]
            self.assertIsInstance(error, WebSocketError)
            self.assertEqual(error.code, 1009)
            other.send_text("fine")
            await poll_until(lambda: "fine" in self.named("plugin:message"))
            other.sendClose()
            await other.closed

        return ensureDeferred(run())

    def _raw_frame(self, frame: bytes) -> Deferred[tuple[int, bytes]]:
        """Send one raw masked frame after a handshake; return the close code sent back."""
        def run() -> tuple[int, bytes]:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    head += s.recv(1)
                s.sendall(frame)
                data = b""
                while len(data) < 4:
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    data += chunk
                return struct.unpack("!H", data[2:4])[0], data[:2]

        return deferToThread(run)

    @staticmethod
    def _masked(first: int, payload: bytes) -> bytes:
        mask = b"\x01\x02\x03\x04"
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bytes([first, 0x80 | len(payload)]) + mask + body

    def test_invalid_utf8_closes_1007(self) -> Deferred[None]:
        """A text frame with invalid UTF-8 closes that child with 1007."""
        d = self._raw_frame(self._masked(0x81, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80"))
        return d.addCallback(lambda r: self.assertEqual(r[0], 1007))

    def test_protocol_violation_closes_1002(self) -> Deferred[None]:
        """A frame with reserved bits set closes that child with 1002."""
        d = self._raw_frame(self._masked(0x81 | 0x40, b"hi"))
        return d.addCallback(lambda r: self.assertEqual(r[0], 1002))

    def test_unmasked_client_frame_closes_1002(self) -> Deferred[None]:
        """An unmasked client frame is a protocol error (1002)."""
        return self._raw_frame(b"\x81\x02hi").addCallback(lambda r: self.assertEqual(r[0], 1002))


class ListenerCloseTests(ContractTestBase):
    """Closing a listener stops its plugin's callbacks at once."""

    def test_close_stops_callbacks_and_closes_orphans(self) -> Deferred[None]:
        """After close, the plugin's callbacks stop; a child nobody holds closes 1000."""
        async def run() -> None:
            client = await connect(self.port, "/ws")
            await self.listener.close()
            self.assertFalse(self.listener.active)
            _, code, _ = await client.closed
            self.assertEqual(code, 1000)
            self.assertEqual(self.named("plugin:message"), [])

        return ensureDeferred(run())

    def test_shutdown_closes_children_1001_and_calls_closed(self) -> Deferred[None]:
        """Registry shutdown sends 1001 to each child and tells open listeners."""
        closed: list[IListener] = []
        listener = self.registry.open(LOOPBACK, "/other", owner="x",
                                      closed=closed.append, incoming=lambda c: c.hook())

        async def run() -> None:
            client = await connect(self.port, "/ws")
            await self.registry.shutdown()
            _, code, _ = await client.closed
            self.assertEqual(code, 1001)
            self.assertEqual(closed, [listener])
            self.assertEqual(self.registry.ports(), [])

        return ensureDeferred(run())

    def test_listener_connections(self) -> Deferred[None]:
        """A listener lists the children its plugin holds."""
        async def run() -> None:
            client = await connect(self.port, "/ws")
            self.assertEqual([c.id for c in self.listener.connections()],
                             [self.children[0].id])
            client.sendClose()
            await client.closed
            await poll_until(lambda: not self.listener.connections())

        return ensureDeferred(run())


class LimitTests(ContractTestBase):
    """Origin allowlist, connection caps, handshake timeout, keepalive, deflate
    (the slow reader and the decompression bomb: tests/test_limits.py)."""

    limits = WebSocketLimits(ping_interval=0.2, ping_timeout=0.3, handshake_timeout=0.5,
                             max_connections_per_ip=2, permessage_deflate=True,
                             max_message_size=MiB, max_frame_size=MiB)

    def test_foreign_origin_refused(self) -> Deferred[None]:
        """A page from another site is refused with 403, as is a loopback page on another
        port; a loopback page on this port is let in."""
        def attempt(origin: str) -> int:
            try:
                websockets.sync.client.connect(self.ws_url(), origin=Origin(origin),
                                               open_timeout=5).close()
            except websockets.exceptions.InvalidStatus as e:
                return int(e.response.status_code)
            return 101

        async def run() -> None:
            self.assertEqual(await deferToThread(attempt, "https://evil.example"), 403)
            self.assertEqual(await deferToThread(attempt, "http://localhost:3000"), 403)
            self.assertEqual(await deferToThread(
                attempt, self.ws_url().replace("ws://", "http://").rsplit("/", 1)[0]), 101)

        return ensureDeferred(run())

    def test_per_ip_cap(self) -> Deferred[None]:
        """A third child from one address is refused with 503 until one leaves."""
        async def run() -> None:
            a = await connect(self.port, "/ws")
            b = await connect(self.port, "/ws")
            with self.assertRaises(ConnectionError):
                await connect(self.port, "/ws")
            a.sendClose()
            await a.closed
            await poll_until(lambda: len([c for c in self.children
                                          if c.ready_state is ReadyState.OPEN]) == 1)
            c = await connect(self.port, "/ws")
            for client in (b, c):
                client.sendClose()
                await client.closed

        return ensureDeferred(run())

    def test_open_child_outlives_handshake_timeout(self) -> Deferred[None]:
        """An open child that answers pings stays up well past the handshake timeout."""
        async def run() -> None:
            client = await connect(self.port, "/ws")
            # time passing is what is tested here: 4x the handshake timeout
            await deferLater(real_reactor(), 4 * self.limits.handshake_timeout)
            client.send_text("still open")
            await poll_until(lambda: "still open" in self.named("plugin:message"))
            self.assertEqual(self.named("plugin:disconnect"), [])
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_handshake_timeout(self) -> Deferred[None]:
        """A client that opens TCP and never finishes the handshake is dropped."""
        def silent() -> bytes:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes
                return s.recv(100)

        return deferToThread(silent).addCallback(self.assertEqual, b"")

    def test_dead_peer_dropped_by_keepalive(self) -> Deferred[None]:
        """A peer that stops answering pings is dropped after ping_timeout."""
        async def run() -> None:
            client = await connect(self.port, "/ws")
            client.pause_reading()  # stops reading: no pongs go back
            await poll_until(lambda: bool(self.named("plugin:disconnect")), timeout=10)
            self.assertEqual(self.named("plugin:error")[0].code, 1006)
            client.drop()
            await client.closed

        return ensureDeferred(run())

    def test_deflate_round_trip(self) -> Deferred[None]:
        """With permessage-deflate negotiated, messages arrive intact."""
        async def talk() -> str:
            async with websockets.connect(self.ws_url(), compression="deflate",
                                          ping_interval=None) as ws:
                await ws.send("compress me " * 100)
                await asyncio.sleep(0)
            return "sent"

        async def run() -> None:
            await deferToThread(lambda: asyncio.run(talk()))
            await poll_until(lambda: bool(self.named("plugin:message")))
            self.assertEqual(self.named("plugin:message"), ["compress me " * 100])

        return ensureDeferred(run())
