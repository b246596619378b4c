"""Issue #12 over real loopback sockets: DNS rebinding (Host), foreign local pages
(Origin), the metrics port's guard, the static directory and the pages' headers."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from gamews.config import WebSocketLimits
from gamews.index import IndexPage
from gamews.metrics import GamewsMetrics, MetricsService
from gamews.pages import static_files
from tests.support import LOOPBACK, port_of, real_reactor
from tests.test_limits import answered, close_all, handshake, open_sockets, send_all, watch
from tests.test_websocket import ContractTestBase

MiB = 1024 * 1024


def exchange(port: int, request: bytes, timeout: float = 5.0, *,
             until: bytes | None = None) -> bytes:
    """Send ``request`` on a fresh socket; the answer's head (and what came with it), or
    everything up to ``until``."""
    [s] = open_sockets(port, 1)
    try:
        s.sendall(request)
        [outcome] = watch([s], timeout,
                          done=answered if until is None else lambda data: until in data)
        return outcome.data
    finally:
        s.close()


def status(answer: bytes) -> int:
    return int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0


class HostTests(ContractTestBase):
    """A request for a name this server does not serve gets 421 on every path."""

    limits = WebSocketLimits(ping_interval=0, allowed_hosts=("game.example.org",))

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        d = super().setUp()
        self.registry.mount(LOOPBACK, "/page", Resource(), owner="test")
        self.registry.mount(LOOPBACK, "/sink/", Resource(), owner="test")
        return d

    def test_rebinding_refused(self) -> Deferred[None]:
        """``Host: evil.example:PORT`` gets 421 on a WebSocket path, a page and a POST;
        the address, localhost and an allowlisted name are served."""
        async def run() -> None:
            port = self.port
            evil = f"evil.example:{port}".encode()
            for request in (handshake("/ws").replace(b"127.0.0.1", evil),
                            b"GET /page HTTP/1.1\r\nHost: " + evil + b"\r\n\r\n",
                            b"POST /sink/x HTTP/1.1\r\nHost: " + evil +
                            b"\r\nContent-Length: 2\r\n\r\nhi"):
                answer = await deferToThread(exchange, port, request)
                self.assertEqual(status(answer), 421, answer)
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "game.example.org"):
                answer = await deferToThread(
                    exchange, port, handshake("/ws").replace(b"127.0.0.1", host.encode()))
                self.assertEqual(status(answer), 101, (host, answer))
            answer = await deferToThread(
                exchange, port, handshake("/ws").replace(b"127.0.0.1", b"127.0.0.1:1"))
            self.assertEqual(status(answer), 421, "another port")

        return ensureDeferred(run())

    def test_foreign_local_page(self) -> Deferred[None]:
        """A page served by another local program (loopback, another port) is refused."""
        async def run() -> None:
            host = f"127.0.0.1:{self.port}".encode()
            for origin, wanted in ((b"http://localhost:3000", 403),
                                   (b"http://127.0.0.1:%d" % self.port, 101)):
                request = handshake("/ws", b"Origin: " + origin + b"\r\n").replace(
                    b"Host: 127.0.0.1", b"Host: " + host)
                answer = await deferToThread(exchange, self.port, request)
                self.assertEqual(status(answer), wanted, origin)

        return ensureDeferred(run())


class PagesTests(ContractTestBase):
    """The static directory and the index page."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        d = super().setUp()
        self.registry.mount(LOOPBACK, "/static/", static_files(), owner="test")
        self.registry.mount(LOOPBACK, "/", IndexPage(self.registry, []), owner="test")
        return d

    def get(self, method: str, path: str, until: bytes | None = None) -> Deferred[bytes]:
        request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n"
        return deferToThread(exchange, self.port, request.encode(), until=until)

    def test_static_directory_not_found(self) -> Deferred[None]:
        """``/static/`` and ``/static//`` are 404, not a redirect to one more slash."""
        async def run() -> None:
            for path in ("/static/", "/static//", "/static///"):
                answer = await self.get("GET", path)
                self.assertEqual(status(answer), 404, answer)
                self.assertNotIn(b"location:", answer.lower())
            self.assertEqual(status(await self.get("GET", "/static/gamews.css")), 200)

        return ensureDeferred(run())

    def test_headers_on_index_and_head(self) -> Deferred[None]:
        """The index and HEAD answers carry the CSP with frame-ancestors 'none'; the
        index's own inline script and style run by a per-response nonce."""
        async def run() -> None:
            for method, path in (("GET", "/"), ("HEAD", "/"), ("HEAD", "/static/gamews.js"),
                                 ("HEAD", "/static/gamews.css")):
                raw = await self.get(method, path)
                self.assertEqual(status(raw), 200, (method, path))
                answer = raw.lower()
                self.assertIn(b"content-security-policy:", answer, (method, path))
                self.assertIn(b"frame-ancestors 'none'", answer, (method, path))
            first = await self.get("GET", "/", until=b"</html>")
            second = await self.get("GET", "/")
            nonce = first.split(b"'nonce-")[1].split(b"'")[0]
            self.assertIn(b'<style nonce="' + nonce + b'">', first)
            self.assertNotIn(nonce, second)

        return ensureDeferred(run())


class MetricsGuardTests(TestCase):
    """The metrics port has the web ports' guard."""

    timeout = 30
    limits = WebSocketLimits(handshake_timeout=1.0, max_pending_per_ip=3)

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        metrics = GamewsMetrics(_EmptyRegistry(), {}, {})  # type: ignore[arg-type]
        self.service = MetricsService("tcp:0:interface=127.0.0.1", metrics,
                                      reactor=real_reactor(), limits=self.limits)
        self.service.startService()
        self.addCleanup(self.service.stopService)

        async def listening() -> None:
            self.port = port_of(await self.service.when_listening())

        return ensureDeferred(listening())

    def test_idle_and_trickling_sockets_cut(self) -> Deferred[None]:
        """Silent and trickling sockets are closed at the deadline, and past
        max_pending_per_ip more from one address are closed at once."""
        async def run() -> None:
            sockets = await deferToThread(open_sockets, self.port, 5)
            self.addCleanup(close_all, sockets)
            outcomes = await deferToThread(watch, sockets, 10, trickle=b"GET /metrics HTTP/1.1",
                                           every=0.2)
            times = sorted(o.closed_after for o in outcomes if o.closed_after is not None)
            self.assertEqual(len(times), 5)
            self.assertLess(times[1], 0.5, "over the cap: closed at once")
            self.assertLess(times[-1], 4.0, "under the cap: closed at the deadline")
            answer = await deferToThread(
                exchange, self.port,
                f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
            self.assertEqual(status(answer), 200)

        return ensureDeferred(run())

    def test_big_post_refused_before_read(self) -> Deferred[None]:
        """A 30 MiB POST is answered 413 from its Content-Length, its body never read."""
        def post() -> bytes:
            [s] = open_sockets(self.port, 1)
            try:
                s.sendall(f"POST /metrics HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                          f"Content-Length: {30 * MiB}\r\n\r\n".encode())
                send_all([s], b"x" * 65536)
                [outcome] = watch([s], 5, done=answered)
                return outcome.data
            except OSError:
                return b""
            finally:
                s.close()

        async def run() -> None:
            answer = await deferToThread(post)
            self.assertEqual(status(answer), 413, answer)

        return ensureDeferred(run())


class _EmptyRegistry:
    """A registry with no ports (what the collector reads)."""

    stats: Any = type("Stats", (), {"paths": {}})()

    def snapshot(self) -> list[Any]:
        return []

