"""The shared port's two ways in (issue 19): a WebSocket upgrade goes from the bytes the
HTTP channel read straight to Autobahn's handshake (one parse, no twisted.web
``Request``); every other request goes through twisted.web with its guards. Driven by
hand: the port's own Site, StringTransport and MemoryReactorClock."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.static import Data

from gamews.api import IConnection, ReadyState
from gamews.config import WebSocketLimits
from gamews.guard import GuardedChannel, GuardedSite
from gamews.registry import Registry
from gamews.websocket import GamewsServerProtocol
from tests.test_websocket_units import Transport, handshake, masked

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
HOST = IPv4Address("TCP", "127.0.0.1", 8080)  # the port the requests name in Host


class Socket(Transport):
    """A transport that, like Twisted's TCP transports, knows its protocol (and is
    told when a WebSocket takes it over)."""

    protocol: Any = None
ENDPOINT = "tcp:8080:interface=127.0.0.1"


class UpgradeRoutingTests(SynchronousTestCase):
    """Which requests skip twisted.web, and that the others keep its guards."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.limits = WebSocketLimits(handshake_timeout=5, ping_interval=0)
        self.registry = Registry(self.limits, reactor=self.clock)
        self.seen: list[object] = []
        self.children: list[IConnection] = []

        def incoming(child: IConnection) -> None:
            self.children.append(child)
            child.hook(on_message=lambda c, d: self.seen.append(d))

        self.listener = self.registry.open(ENDPOINT, "/ws", owner="p", incoming=incoming)
        self.registry.mount(ENDPOINT, "/page", Data(b"a page", "text/plain"), owner="p")
        site = self.registry.ports()[0].site
        assert isinstance(site, GuardedSite)
        self.site = site
        self.requests: list[Any] = []
        make_request = site.requestFactory

        def counted(*args: Any, **kwargs: Any) -> Any:
            request = make_request(*args, **kwargs)
            self.requests.append(request)
            return request

        site.requestFactory = counted  # type: ignore[assignment]

    def connect(self) -> Socket:
        """A socket accepted by the port's Site, on the test's clock."""
        pending = self.site.pending["127.0.0.1"]
        channel = self.site.buildProtocol(PEER)
        assert isinstance(channel, GuardedChannel)
        # the deadline, on the test's clock
        channel.callLater = self.clock.callLater  # type: ignore[method-assign,assignment]
        transport = Socket(peerAddress=PEER, hostAddress=HOST)
        transport.protocol = channel
        channel.makeConnection(transport)
        self.assertEqual(self.site.pending["127.0.0.1"], pending + 1)
        return transport

    def status(self, transport: Transport) -> int:
        data = transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 "), data[:60])
        return int(data[9:12])

    # -- the upgrade's own way ---------------------------------------------------

    def test_upgrade_skips_twisted_web(self) -> None:
        """A whole upgrade in one read: 101 from Autobahn, no twisted.web Request built,
        the socket no longer pending, the deadline timer gone, the child OPEN."""
        transport = self.connect()
        transport.protocol.dataReceived(handshake())
        self.assertEqual(self.status(transport), 101)
        self.assertEqual(self.requests, [])
        self.assertIsInstance(transport.protocol, GamewsServerProtocol)
        self.assertEqual(dict(self.site.pending), {})
        self.assertEqual(self.children[0].ready_state, ReadyState.OPEN)
        # what is left on the clock is Autobahn's (none with pings off): not the channel's
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_upgrade_in_pieces(self) -> None:
        """The head arriving a byte at a time is gathered, then handed over whole."""
        transport = self.connect()
        channel = transport.protocol
        for i, byte in enumerate(handshake()):
            self.assertIs(transport.protocol, channel, f"handed over early, at byte {i}")
            channel.dataReceived(bytes([byte]))
        self.assertEqual(self.status(transport), 101)
        self.assertEqual(self.requests, [])

    def test_frames_after_the_head_are_kept(self) -> None:
        """A frame sent in the same read as the head reaches the plugin."""
        transport = self.connect()
        transport.protocol.dataReceived(handshake() + masked(0x1, b"first"))
        self.assertEqual(self.status(transport), 101)
        self.assertEqual(self.seen, ["first"])

    def test_query_string(self) -> None:
        """/ws?x=1 is /ws: the upgrade goes the same way, the plugin sees the query."""
        transport = self.connect()
        transport.protocol.dataReceived(handshake("/ws?token=abc"))
        self.assertEqual(self.status(transport), 101)
        self.assertEqual(self.requests, [])
        self.assertEqual(self.children[0].request.query, {"token": ["abc"]})

    def test_foreign_origin_refused(self) -> None:
        """The registry's admission (Origin) answers the upgrade's way too: 403."""
        transport = self.connect()
        transport.protocol.dataReceived(handshake(extra=b"Origin: https://evil.example\r\n"))
        self.assertEqual(self.status(transport), 403)
        self.assertEqual(self.children, [])
        self.assertEqual(self.requests, [])

    def test_not_an_upgrade_answered_as_before(self) -> None:
        """A GET of a WebSocket path that is no upgrade is Autobahn's to refuse (426
        Upgrade Required), as when it came through twisted.web."""
        transport = self.connect()
        transport.protocol.dataReceived(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        self.assertEqual(self.status(transport), 426)
        self.assertEqual(self.requests, [])
        kept_alive = self.connect()
        kept_alive.protocol.dataReceived(b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        kept_alive.clear()
        kept_alive.protocol.dataReceived(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        self.assertEqual(len(self.requests), 2)
        self.assertEqual(self.status(kept_alive), 426)

    def test_deadline_while_the_head_is_gathered(self) -> None:
        """Half a head is held under the channel's deadline (the handshake timeout),
        then the socket is closed unanswered."""
        transport = self.connect()
        transport.protocol.dataReceived(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1")
        self.clock.advance(self.limits.handshake_timeout - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_closed_listener_path_not_routed(self) -> None:
        """Once the path's last listener closes, its upgrades meet twisted.web's 404."""
        self.listener.close()
        transport = self.connect()
        transport.protocol.dataReceived(handshake())
        self.assertEqual(self.status(transport), 404)
        self.assertEqual(len(self.requests), 1)

    # -- everything else through twisted.web ---------------------------------------

    def test_page_through_twisted_web(self) -> None:
        """A page load is a twisted.web Request, answered by its resource."""
        transport = self.connect()
        transport.protocol.dataReceived(b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        self.assertEqual(self.status(transport), 200)
        self.assertTrue(transport.value().endswith(b"a page"))
        self.assertEqual(len(self.requests), 1)

    def test_post_not_held(self) -> None:
        """A request that is not a GET goes to twisted.web from its first bytes."""
        transport = self.connect()
        channel = transport.protocol
        assert isinstance(channel, GuardedChannel)
        channel.dataReceived(b"POST /page HTTP/1.1\r\n")
        self.assertIsNone(channel._head)
        self.assertEqual(len(self.requests), 1)

    def test_upgrade_with_a_body_is_capped(self) -> None:
        """An upgrade announcing a body past the cap is twisted.web's: 413, no 101."""
        transport = self.connect()
        transport.protocol.dataReceived(handshake(extra=b"Content-Length: 99999999\r\n"))
        self.assertEqual(self.status(transport), 413)
        self.assertEqual(self.children, [])

    def test_upgrade_with_a_small_body_through_twisted_web(self) -> None:
        """An upgrade with a (small) body goes through twisted.web, which hands it to
        the same protocol: 101."""
        transport = self.connect()
        transport.protocol.dataReceived(handshake(extra=b"Content-Length: 0\r\n"))
        self.assertEqual(self.status(transport), 101)
        self.assertEqual(len(self.requests), 1)
        self.assertIsInstance(transport.protocol, GamewsServerProtocol)
        self.assertEqual(dict(self.site.pending), {})

    def test_upgrade_after_a_page_on_the_same_connection(self) -> None:
        """A kept-alive connection's second request, an upgrade, goes through
        twisted.web's Request and is handed over the same way: 101."""
        transport = self.connect()
        channel = transport.protocol
        channel.dataReceived(b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        self.assertEqual(self.status(transport), 200)
        transport.clear()
        channel.dataReceived(handshake())
        self.assertEqual(self.status(transport), 101)
        self.assertEqual(len(self.requests), 2)
        transport.protocol.dataReceived(masked(0x1, b"later"))
        self.assertEqual(self.seen, ["later"])

    def test_oversized_head_refused(self) -> None:
        """A head that passes twisted.web's size limit without ending is twisted.web's
        to refuse (the connection closed), not held."""
        transport = self.connect()
        transport.protocol.dataReceived(b"GET /ws HTTP/1.1\r\nX-Big: " + b"a" * 20000)
        self.assertTrue(transport.disconnecting)
        self.assertNotIsInstance(transport.protocol, GamewsServerProtocol)
        self.assertEqual(self.children, [])


    def test_head_past_twisted_webs_limits_refused(self) -> None:
        """A whole upgrade head larger than twisted.web takes, or with more header
        lines, arriving in one read, is twisted.web's to refuse, not Autobahn's to take."""
        for extra in (b"X-Big: " + b"a" * 20000 + b"\r\n", b"X-A: 1\r\n" * 600):
            transport = self.connect()
            transport.protocol.dataReceived(handshake(extra=extra))
            self.assertNotIsInstance(transport.protocol, GamewsServerProtocol)
            self.assertFalse(transport.value().startswith(b"HTTP/1.1 101"))
        self.assertEqual(self.children, [])


class UpgradePathsTests(SynchronousTestCase):
    """The Site's table of WebSocket paths follows the registry's routes."""

    def test_paths_follow_listeners(self) -> None:
        registry = Registry(WebSocketLimits(), reactor=MemoryReactorClock())
        first = registry.open(ENDPOINT, "/a", owner="p")
        registry.open(ENDPOINT, "/b", owner="p")
        registry.mount(ENDPOINT, "/page", Resource(), owner="p")
        site = registry.ports()[0].site
        self.assertEqual(sorted(site.upgrades), [b"/a", b"/b"])
        first.close()
        self.assertEqual(sorted(site.upgrades), [b"/b"])
