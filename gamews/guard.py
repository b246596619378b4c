"""What keeps a shared port standing under attack, below the WebSocket layer.

* :class:`GuardedSite` counts, per peer address, the sockets that are not (yet)
  WebSockets: page loads and handshakes in progress. Past ``max_pending_per_ip``
  a new socket from that address is closed as soon as it is accepted, before a
  byte of HTTP is read, so one address cannot hold the port's file descriptors
  with half-open requests.
* Its channels (:class:`GuardedChannel`) make the Site's timeout a deadline for
  the whole request instead of an idle timeout, so a client trickling a byte at
  a time (slowloris) is cut like a silent one.
* A WebSocket upgrade is parsed once: a channel's first request whose head is a
  ``GET`` of a WebSocket path (:attr:`GuardedSite.upgrades`) with no body goes
  straight from the bytes the channel read to Autobahn's handshake, before
  twisted.web builds a ``Request`` (:meth:`GuardedChannel.dataReceived`). Every
  other request (pages, a body, a kept-alive connection's next request) goes
  through twisted.web, an upgrade among them to :class:`UpgradeResource`. Both ways
  share the per-address cap (at accept), the deadline (the channel's, until the
  head is whole), and the handshake's checks (Autobahn's, then the registry's
  admission: Origin, caps).
* :func:`raise_file_limit` lifts the process's open-file limit to what
  ``max_connections`` needs.
"""

from __future__ import annotations

import resource
from collections import Counter
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from gamews.websocket import GamewsServerFactory, hand_over

__all__ = ["GuardedChannel", "GuardedSite", "UpgradeResource", "raise_file_limit"]

log = Logger(namespace="gamews.guard")


class GuardedChannel(HTTPChannel):
    """An HTTP/1.1 channel whose requests must arrive whole within the Site's
    timeout, counted against its peer address until it closes or upgrades.

    Twisted's HTTP timeout is an idle timeout that every byte received
    restarts, so a client sending one header byte a second keeps its socket
    forever. Here incoming data does not restart it: it runs from the
    connection (or from the end of the previous response on a kept-alive
    connection) until the request, body included, has arrived. A WebSocket
    upgrade is then Autobahn's, under its own handshake timeout.
    """

    site: GuardedSite
    counted: str | None = None
    """The peer address this socket counts against (``None``: not counted)."""
    _head: bytes | None = b""
    """What arrived of the first request's head while it may be a WebSocket upgrade
    (``None``: it is not, everything goes to twisted.web)."""

    def resetTimeout(self) -> None:
        """Incoming data does not postpone the deadline."""

    def dataReceived(self, data: bytes) -> None:
        """Hand a first request that is a WebSocket upgrade to Autobahn unparsed (see
        :meth:`GuardedSite.upgrade_for`); everything else to twisted.web."""
        head = self._head
        if head is None:
            super().dataReceived(data)  # type: ignore[no-untyped-call]
            return
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0 and len(head) < self.totalHeadersSize and b"GET /".startswith(head[:5]):
            self._head = head  # the head is not whole yet; the deadline runs on
            return
        self._head = None
        factory = None
        # twisted.web's limits on a head hold on both ways: past them it refuses
        if 0 <= end < self.totalHeadersSize and head.count(b"\r\n", 0, end) < self.maxHeaders:
            factory = self.site.upgrade_for(head, end)
        if factory is None:
            super().dataReceived(head)  # type: ignore[no-untyped-call]
            return
        transport, self.transport = self.transport, None
        self.setTimeout(None)  # type: ignore[no-untyped-call]
        self.upgraded()
        hand_over(transport, factory, head)

    def upgraded(self) -> None:
        """The socket became a WebSocket: it no longer counts as pending."""
        if self.counted is not None:
            self.site.settle(self.counted)
            self.counted = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.upgraded()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class _Refused(Protocol):
    """What a socket over the cap gets: closed at once, nothing read or sent."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.abortConnection()


class GuardedSite(Site):
    """A Site of :class:`GuardedChannel` s behind a per-address cap on sockets
    that are not WebSockets.

    ``max_pending_per_ip`` of ``None`` counts nothing (a port behind trusted
    proxies, where every socket comes from the proxy). UNIX-socket peers are
    never counted. HTTP/1.1 only: Twisted's default channel would switch to
    HTTP/2 where TLS negotiates it and the ``h2`` package is installed; these
    ports serve WebSocket upgrades (HTTP/1.1) and small pages, and offer no HTTP/2.
    """

    protocol = GuardedChannel  # type: ignore[assignment]

    def __init__(self, resource: IResource, *, timeout: float,
                 max_pending_per_ip: int | None, reactor: Any = None) -> None:
        super().__init__(resource, timeout=timeout,  # type: ignore[no-untyped-call]
                         reactor=reactor)
        self.max_pending_per_ip = max_pending_per_ip
        self.pending: Counter[str] = Counter()
        """Sockets per peer address that are not WebSockets."""
        self.upgrades: Mapping[bytes, UpgradeResource] = {}
        """The WebSocket paths served here (set by the registry)."""
        self.refused = 0
        """Sockets closed at accept because their address was over the cap."""
        self._over: set[str] = set()

    def buildProtocol(self, addr: IAddress | None) -> Any:
        host = getattr(addr, "host", None)
        cap = self.max_pending_per_ip
        if cap is None or not isinstance(host, str):
            return super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if self.pending[host] >= cap:
            self.refused += 1
            if host not in self._over:
                self._over.add(host)
                log.warn("refusing new sockets from {host}: {cap} of its sockets are "
                         "still in their HTTP phase (max_pending_per_ip)", host=host, cap=cap)
            return _Refused()
        channel: GuardedChannel = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        self.pending[host] += 1
        channel.counted = host
        return channel

    def upgrade_for(self, head: bytes, end: int) -> GamewsServerFactory | None:
        """The WebSocket factory a request's head (whole: ``head[:end]`` ends before
        its empty line) goes to without twisted.web: a ``GET`` of a WebSocket path
        (exactly) without a body. ``None``: twisted.web takes it (pages, bodies to
        cap, 404s, a path under a mount)."""
        if not head.startswith(b"GET /"):
            return None
        target_end = head.find(b" ", 4, end)
        if target_end < 0:
            return None
        path = head[4:target_end].partition(b"?")[0]
        resource = self.upgrades.get(path)
        if resource is None:
            return None
        fields = head[:end].lower()
        if b"\ncontent-length:" in fields or b"\ntransfer-encoding:" in fields:
            return None  # a body: twisted.web caps it first
        return resource.factory

    def settle(self, host: str) -> None:
        """One of ``host``'s counted sockets became a WebSocket or closed."""
        self.pending[host] -= 1
        if self.pending[host] <= 0:
            del self.pending[host]
            self._over.discard(host)


class UpgradeResource(Resource):
    """A WebSocket path as twisted.web sees it: a request that reached it through
    twisted.web (not the channel's fast path) is handed to ``factory``'s protocol
    the same way, its head rebuilt from the parsed request, and the channel told
    its socket was taken over."""

    isLeaf = True

    def __init__(self, factory: GamewsServerFactory) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.factory = factory

    def render(self, request: Request) -> Any:
        channel = request.channel
        transport, channel.transport = channel.transport, None
        uri: bytes = request.uri
        head = [request.method + b" " + uri + b" HTTP/1.1"]
        for name, values in request.requestHeaders.getAllRawHeaders():
            head.append(name + b": " + b",".join(values))
        body = request.content.read() if request.content is not None else b""
        data = b"\r\n".join(head) + b"\r\n\r\n" + body
        hand_over(transport, self.factory, data, paused=True)
        if isinstance(channel, GuardedChannel):
            channel.upgraded()
        return NOT_DONE_YET


def raise_file_limit(wanted: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (logged); warn when
    the result is still below ``wanted``. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log.warn("cannot raise the open-file limit from {soft} to {target}: {error}",
                     soft=soft, target=target, error=e)
        else:
            log.info("open-file limit raised from {soft} to {target}", soft=soft,
                     target=target)
            soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warn("the open-file limit ({soft}) is below the {wanted} that max_connections "
                 "needs: raise the hard limit (ulimit -Hn, systemd LimitNOFILE=)",
                 soft=soft, wanted=wanted)
    return soft
