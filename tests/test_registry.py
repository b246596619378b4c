"""The shared-port registry: sharing, routing, reference-counted close, isolation."""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.static import Data
from zope.interface import implementer

from gamews.api import (
    ConnectionRequest,
    EndpointConflictError,
    IConnection,
    IListener,
    IListenerHandler,
)
from gamews.config import WebSocketLimits
from gamews.endpoints import normalize_endpoint
from gamews.registry import MAX_REQUEST_BODY, Registry, origin_allowed
from gamews.websocket import Child
from tests.support import LOOPBACK, connect, free_port, poll_until, port_of, real_reactor


class NormalizeEndpointTests(SynchronousTestCase):
    """Endpoint descriptions are normalised into one key per listening address."""

    def test_positional_and_keyword_port_are_one_key(self) -> None:
        """``tcp:8080:interface=X`` and ``tcp:port=8080:interface=X`` are the same key."""
        self.assertEqual(normalize_endpoint("tcp:8080:interface=127.0.0.1"),
                         normalize_endpoint("tcp:port=8080:interface=127.0.0.1"))

    def test_positional_interface(self) -> None:
        """A positional interface equals the keyword form."""
        self.assertEqual(normalize_endpoint("tcp:8080:127.0.0.1"),
                         normalize_endpoint("tcp:interface=127.0.0.1:port=8080"))

    def test_different_interfaces_differ(self) -> None:
        """Two interfaces on one port number are two keys."""
        self.assertNotEqual(normalize_endpoint("tcp:8080:interface=127.0.0.1").bind,
                            normalize_endpoint("tcp:8080:interface=127.0.0.2").bind)

    def test_tls_options_part_of_key(self) -> None:
        """ssl and tcp on one address share ``bind`` but differ in options."""
        tcp = normalize_endpoint("tcp:8443:interface=127.0.0.1")
        tls = normalize_endpoint("ssl:8443:privateKey=k.pem:certKey=c.pem:interface=127.0.0.1")
        self.assertEqual(tcp.bind, tls.bind)
        self.assertNotEqual(tcp.options, tls.options)

    def test_unix_path_absolute(self) -> None:
        """UNIX socket paths are made absolute."""
        key = normalize_endpoint("unix:sock")
        self.assertTrue(key.bind[1].startswith("/"))

    def test_escaped_colon(self) -> None:
        """A backslash-escaped colon stays in the value."""
        key = normalize_endpoint(r"tcp6:8080:interface=\:\:1")
        self.assertEqual(key.bind, ("inet6", "::1", "8080"))

    def test_malformed(self) -> None:
        """Descriptions without a valid port raise ValueError."""
        for bad in ("tcp", "tcp:http", "tcp:99999", "", "unix:mode=600"):
            self.assertRaises(ValueError, normalize_endpoint, bad)


class OriginTests(SynchronousTestCase):
    """The default Origin policy: same origin and loopback pages only."""

    def test_no_origin_allowed(self) -> None:
        """Non-browser clients (no Origin header) pass."""
        self.assertTrue(origin_allowed(None, "example.org", ()))

    def test_same_origin(self) -> None:
        """A page served by this host may connect."""
        self.assertTrue(origin_allowed("https://game.example.org", "game.example.org", ()))
        self.assertTrue(origin_allowed("http://game.example.org:8080", "game.example.org:8080",
                                       ()))

    def test_loopback_pages(self) -> None:
        """Pages from localhost, 127.0.0.0/8 and ::1 may connect on the port asked for only:
        another local program's page (another port) is refused unless allowlisted."""
        for origin, host in (("http://localhost:3000", "127.0.0.1:3000"),
                             ("http://127.0.0.5", "localhost"),
                             ("http://[::1]:8000", "[::1]:8000")):
            self.assertTrue(origin_allowed(origin, host, ()), origin)
        for origin, host in (("http://localhost:3000", "127.0.0.1:18080"),
                             ("http://127.0.0.5", "localhost:8080"),
                             ("http://[::1]:8000", "game.example.org")):
            self.assertFalse(origin_allowed(origin, host, ()), origin)
        self.assertTrue(origin_allowed("http://localhost:3000", "127.0.0.1:18080",
                                       ("http://localhost:3000",)))

    def test_foreign_origin_refused(self) -> None:
        """Another site's page is refused, as are null and odd schemes."""
        for origin in ("https://evil.example", "null", "file://", "chrome-extension://x"):
            self.assertFalse(origin_allowed(origin, "game.example.org", ()), origin)

    def test_allowlist(self) -> None:
        """An allowlisted origin passes; ``*`` allows all."""
        self.assertTrue(origin_allowed("https://Fans.Example/", "x", ("https://fans.example",)))
        self.assertTrue(origin_allowed("https://evil.example", "x", ("*",)))


class MemoryRegistryTests(SynchronousTestCase):
    """Registry bookkeeping against a MemoryReactorClock (no real I/O)."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.registry = Registry(reactor=self.reactor)

    def test_one_port_for_equal_endpoints(self) -> None:
        """Two opens of one endpoint (spelled two ways) make one listenTCP call."""
        a = self.registry.open("tcp:8080:interface=127.0.0.1", "/a", owner="a")
        b = self.registry.open("tcp:port=8080:interface=127.0.0.1", "/b", owner="b")
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.assertEqual(len(self.registry.ports()), 1)
        self.assertEqual(port_of(self.successResultOf(a.when_listening())), 8080)
        self.assertEqual(port_of(self.successResultOf(b.when_listening())), 8080)

    def test_snapshot_is_a_read_only_view(self) -> None:
        """snapshot() shows each port's endpoint, address, paths (plugins, children
        admitted, OPEN children held) and pages, as frozen copies."""
        self.registry.open("tcp:8080:interface=127.0.0.1", "/ws", owner="a")
        self.registry.open("tcp:8080:interface=127.0.0.1", "/ws", owner="b")
        self.registry.mount("tcp:8080:interface=127.0.0.1", "/page", Data(b"x", "text/plain"),
                            owner="c")
        [port] = self.registry.snapshot()
        self.assertEqual(port.endpoint, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(port_of(port.address), 8080)
        [path] = port.paths
        self.assertEqual((path.path, path.plugins, path.admitted, dict(path.held)),
                         ("/ws", ("a", "b"), 0, {"a": 0, "b": 0}))
        self.assertEqual(dict(port.pages), {"/page": "c"})
        with self.assertRaises(AttributeError):
            port.endpoint = "elsewhere"  # type: ignore[misc]
        with self.assertRaises(TypeError):
            path.held["a"] = 1  # type: ignore[index]

    def test_tls_conflict_raises_at_open(self) -> None:
        """A second open with different TLS options on a bound address raises."""
        self.registry.open("tcp:8443:interface=127.0.0.1", "/a", owner="a")
        with self.assertRaises(EndpointConflictError):
            self.registry.open("ssl:8443:privateKey=k.pem:interface=127.0.0.1", "/b", owner="b")

    def test_path_used_by_page_conflicts(self) -> None:
        """A WebSocket path cannot also be a page."""
        self.registry.mount("tcp:8080", "/x", Data(b"x", "text/plain"), owner="a")
        with self.assertRaises(EndpointConflictError):
            self.registry.open("tcp:8080", "/x", owner="b")

    def test_bad_path(self) -> None:
        """A path must start with / and carry no query."""
        self.assertRaises(ValueError, self.registry.open, "tcp:8080", "echo", owner="a")
        self.assertRaises(ValueError, self.registry.open, "tcp:8080", "/e?x=1", owner="a")

    def test_port_stays_until_last_close(self) -> None:
        """Closing one of two handles keeps the port; the last close removes it."""
        a = self.registry.open("tcp:8080", "/a", owner="a")
        b = self.registry.open("tcp:8080", "/a", owner="b")
        self.successResultOf(a.close())
        self.assertEqual(len(self.registry.ports()), 1)
        self.assertFalse(a.active)
        self.assertTrue(b.active)
        self.successResultOf(b.close())
        self.assertEqual(self.registry.ports(), [])

    def test_close_is_idempotent(self) -> None:
        """A second close of one handle does not release the port twice."""
        a = self.registry.open("tcp:8080", "/a", owner="a")
        b = self.registry.open("tcp:8080", "/a", owner="b")
        self.successResultOf(a.close())
        self.successResultOf(a.close())
        self.assertEqual(len(self.registry.ports()), 1)
        self.assertTrue(b.active)

    def test_reopen_after_close_waits_for_stop(self) -> None:
        """A fresh open of a just-closed endpoint listens again."""
        a = self.registry.open("tcp:8080", "/a", owner="a")
        self.successResultOf(a.close())
        b = self.registry.open("tcp:8080", "/a", owner="b")
        self.successResultOf(b.when_listening())
        self.assertEqual(len(self.reactor.tcpServers), 2)

    def test_handler_object(self) -> None:
        """An object's incoming/error/closed methods serve as callbacks."""
        seen: list[str] = []

        @implementer(IListenerHandler)
        class Handler:
            def incoming(self, child: IConnection) -> None:
                seen.append("incoming")

            def error(self, listener: IListener, failure: Failure) -> None:
                seen.append("error")

            def closed(self, listener: IListener) -> None:
                seen.append("closed")

        self.registry.open("tcp:8080", "/a", owner="a", handler=Handler())
        self.successResultOf(self.registry.shutdown())
        self.assertEqual(seen, ["closed"])

    def test_handler_and_callbacks_exclusive(self) -> None:
        """Giving both a handler and callbacks is a TypeError."""
        self.assertRaises(TypeError, self.registry.open, "tcp:8080", "/a", owner="a",
                          handler=object(), incoming=lambda c: None)

    def test_open_after_shutdown_refused(self) -> None:
        """No new port opens once the registry is shutting down."""
        self.successResultOf(self.registry.shutdown())
        self.assertRaises(RuntimeError, self.registry.open, "tcp:8080", "/a", owner="a")


class AdmissionTests(SynchronousTestCase):
    """Connection caps and shutdown refusal, on the registry's books."""

    def child(self, host: str, origin: str | None = None) -> Child:
        request = ConnectionRequest(path="/", query={}, headers={"host": "127.0.0.1:8080"},
                                    peer=f"tcp4:{host}:1", peer_host=host, origin=origin)
        return cast(Child, SimpleNamespace(request=request, admitted=True))

    def test_total_and_per_ip_caps(self) -> None:
        """The total cap and the per-address cap refuse with 503; a release frees a slot."""
        registry = Registry(WebSocketLimits(max_connections=3, max_connections_per_ip=2),
                            reactor=MemoryReactorClock())
        a1, a2, a3 = self.child("10.0.0.1"), self.child("10.0.0.1"), self.child("10.0.0.1")
        self.assertIsNone(registry.admit(a1))
        self.assertIsNone(registry.admit(a2))
        self.assertEqual(registry.admit(a3), (503, "too many connections from this address"))
        self.assertIsNone(registry.admit(self.child("10.0.0.2")))
        self.assertEqual(registry.admit(self.child("10.0.0.3")), (503, "too many connections"))
        registry.release(a1)
        self.assertIsNone(registry.admit(self.child("10.0.0.1")))

    def test_origin_and_shutdown(self) -> None:
        """A foreign Origin gets 403; during shutdown everything gets 503."""
        registry = Registry(reactor=MemoryReactorClock())
        self.assertEqual(registry.admit(self.child("10.0.0.1", "https://evil.example")),
                         (403, "origin not allowed"))
        registry.shutting_down = True
        self.assertEqual(registry.admit(self.child("10.0.0.1"))[0], 503)  # type: ignore[index]


class LoopbackRegistryTests(TestCase):
    """The registry on real loopback sockets with real clients."""

    timeout = 20

    def setUp(self) -> None:
        self.registry = Registry(WebSocketLimits(ping_interval=0), reactor=real_reactor())
        self.addCleanup(self.registry.shutdown)

    async def _port_of(self, listener: IListener) -> int:
        address: Any = await listener.when_listening()
        port: int = address.port
        return port

    def test_two_plugins_share_a_port_one_closes(self) -> Deferred[None]:
        """Two plugins on one port and path: after one closes, the other keeps receiving."""
        got: dict[str, list[str | bytes]] = {"a": [], "b": []}

        def plugin(name: str) -> Any:
            def incoming(child: IConnection) -> None:
                child.hook(on_message=lambda c, data: got[name].append(data))
            return incoming

        async def run() -> None:
            a = self.registry.open(LOOPBACK, "/chat", owner="a", incoming=plugin("a"))
            port = await self._port_of(a)
            b = self.registry.open(LOOPBACK, "/chat", owner="b", incoming=plugin("b"))
            self.assertEqual(await self._port_of(b), port)
            client = await connect(port, "/chat")
            client.send_text("one")
            await poll_until(lambda: len(got["a"]) == 1 and len(got["b"]) == 1)
            await a.close()
            client.send_text("two")
            await poll_until(lambda: len(got["b"]) == 2)
            self.assertEqual(got, {"a": ["one"], "b": ["one", "two"]})
            self.assertEqual(len(self.registry.ports()), 1)
            client.sendClose()
            await client.closed

        return ensureDeferred(run())

    def test_last_close_frees_the_port(self) -> Deferred[None]:
        """After the last close's Deferred fires, a fresh bind of the port succeeds."""
        async def run() -> None:
            number = free_port()
            endpoint = f"tcp:{number}:interface=127.0.0.1"
            a = self.registry.open(endpoint, "/a", owner="a", incoming=lambda c: c.hook())
            b = self.registry.open(endpoint, "/b", owner="b")
            await a.when_listening()
            client = await connect(number, "/a")
            await b.close()
            self.assertRaises(OSError, _bind, number)
            await a.close()
            _bind(number)  # would raise if the port were still open
            await client.closed

        return ensureDeferred(run())

    def test_paths_are_routed_and_pages_share_the_port(self) -> Deferred[None]:
        """Two WebSocket paths and a page on one port each get their own traffic."""
        hits: list[str] = []

        async def run() -> None:
            def hold(name: str) -> Callable[[IConnection], None]:
                def incoming(child: IConnection) -> None:
                    hits.append(name)
                    child.hook()
                return incoming

            a = self.registry.open(LOOPBACK, "/a", owner="a", incoming=hold("a"))
            self.registry.open(LOOPBACK, "/b", owner="b", incoming=hold("b"))
            static = Resource()
            static.putChild(b"app.js", Data(b"// js", "text/javascript"))
            self.registry.mount(LOOPBACK, "/page", Data(b"<p>hi</p>", "text/html"), owner="w")
            self.registry.mount(LOOPBACK, "/static/", static, owner="w")
            port = await self._port_of(a)
            for path in ("/b", "/a"):
                client = await connect(port, path)
                client.sendClose()
                await client.closed
            self.assertEqual(hits, ["b", "a"])
            agent = Agent(real_reactor())
            for page, body in ((b"/page", b"<p>hi</p>"), (b"/static/app.js", b"// js")):
                response = await agent.request(b"GET", b"http://127.0.0.1:%d%s" % (port, page))
                self.assertEqual(response.code, 200)
                self.assertEqual(await readBody(response), body)
            response = await agent.request(b"GET", b"http://127.0.0.1:%d/nothing" % port)
            self.assertEqual(response.code, 404)
            await readBody(response)

        return ensureDeferred(run())

    def test_request_bodies_bounded(self) -> Deferred[None]:
        """A body past MAX_REQUEST_BODY gets 413 before any resource sees it, whether
        announced by Content-Length or sent chunked; a body within it is served."""
        seen: list[int] = []

        class Sink(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                seen.append(len(request.content.read()))
                return b"ok"

        def post(port: int, head: bytes, body_chunks: list[bytes]) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST /sink HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n")
                try:
                    for chunk in body_chunks:
                        s.sendall(chunk)
                except OSError:
                    pass  # the server closed the connection, as it should
                answer = b""
                while not answer.endswith(b"\r\n\r\n") and b"ok" not in answer:
                    data = s.recv(4096)
                    if not data:
                        break
                    answer += data
                return answer

        async def run() -> None:
            mount = self.registry.mount(LOOPBACK, "/sink", Sink(), owner="w")
            address: Any = await mount.when_listening()
            big = MAX_REQUEST_BODY + 1
            declared = await deferToThread(
                post, address.port, b"Content-Length: %d\r\n" % big, [])
            self.assertTrue(declared.startswith(b"HTTP/1.1 413"), declared)
            chunk = b"x" * 65536
            chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 17 + [b"0\r\n\r\n"]
            chunked = await deferToThread(
                post, address.port, b"Transfer-Encoding: chunked\r\n", chunks)
            self.assertTrue(chunked.startswith(b"HTTP/1.1 413"), chunked)
            small = await deferToThread(
                post, address.port, b"Content-Length: 5\r\n", [b"hello"])
            self.assertTrue(small.startswith(b"HTTP/1.1 200"), small)
            self.assertEqual(seen, [5])

        return ensureDeferred(run())

    def test_bind_failure_reaches_error_callback(self) -> Deferred[None]:
        """A port that cannot be bound fails when_listening and calls the error callback."""
        errors: list[Failure] = []

        async def run() -> None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                s.listen()
                busy = s.getsockname()[1]
                listener = self.registry.open(f"tcp:{busy}:interface=127.0.0.1", "/x",
                                              owner="p", error=lambda lst, f: errors.append(f))
                with self.assertRaises(CannotListenError):
                    await listener.when_listening()
            self.assertEqual(len(errors), 1)
            self.assertTrue(errors[0].check(CannotListenError))
            await listener.close()

        return ensureDeferred(run())


def _bind(port: int) -> None:
    """Listen on ``port`` as any server would (SO_REUSEADDR, like Twisted)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
