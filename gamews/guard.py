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
* Both ways answer 421 (Misdirected Request) to a request whose ``Host`` is not the address
  the connection came in on (``localhost`` for loopback) on its port, nor one of
  ``allowed_hosts``: a page of another site whose name an attacker pointed at this
  address (DNS rebinding) reaches nothing.
* Its requests (:class:`BoundedRequest`) may not carry a body past
  :data:`MAX_REQUEST_BODY`.
* :func:`raise_file_limit` lifts the process's open-file limit to what
  ``max_connections`` needs.
"""

from __future__ import annotations

import ipaddress
import resource
from collections import Counter
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IAddress, ISSLTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from gamews.websocket import GamewsServerFactory, hand_over

__all__ = ["MAX_REQUEST_BODY", "BoundedRequest", "GuardedChannel", "GuardedSite",
           "UpgradeResource", "host_allowed", "host_port", "raise_file_limit"]

log = Logger(namespace="gamews.guard")

MAX_REQUEST_BODY = 1024 * 1024
"""The largest HTTP request body a guarded port takes (a CS2 log POST is far smaller)."""

_TOO_LARGE = (b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\n"
              b"Content-Length: 0\r\n\r\n")


class BoundedRequest(Request):
    """A request whose body may not pass :data:`MAX_REQUEST_BODY`: a larger one is
    answered 413 and its connection closed as soon as it is known (from the
    ``Content-Length``, or while a chunked body arrives), before it is stored and
    before any resource sees it."""

    _refused = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_REQUEST_BODY:
            self._refuse()
            length = 0
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_REQUEST_BODY:
            self._refuse()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]

    def _refuse(self) -> None:
        self._refused = True
        transport: Any = self.channel.transport
        transport.write(_TOO_LARGE)
        transport.loseConnection()



def host_port(value: str, default_port: int | None) -> tuple[str, int | None] | None:
    """A ``Host`` header's lower-case host name (IPv6 without brackets) and port
    (``default_port`` when it has none), or ``None`` if it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:]
    else:
        host, _, port_text = value.partition(":")
    host = host.rstrip(".")
    if not host:
        return None
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)


def host_allowed(host_header: str | None, local: IAddress, *, secure: bool,
                 allowed_hosts: tuple[str, ...]) -> bool:
    """Whether a request for ``Host: host_header`` that came in on ``local`` is for us:
    the local address itself (or ``localhost`` on a loopback address) on the local port
    (if the header names a port; no name can be rebound to an address literal), or a
    name (``name`` or ``name:port``) in ``allowed_hosts`` (``*``: any). Requests on a
    UNIX socket (behind a proxy) pass unless ``allowed_hosts`` is given."""
    local_host, local_port = getattr(local, "host", None), getattr(local, "port", None)
    if "*" in allowed_hosts or (not isinstance(local_host, str) and not allowed_hosts):
        return True
    parsed = host_port(host_header or "", None)
    if parsed is None:
        return False
    host, port = parsed
    if host in allowed_hosts or f"{host}:{port or (443 if secure else 80)}" in allowed_hosts:
        return True
    if not isinstance(local_host, str) or port not in (None, local_port):
        return False
    if host == local_host.lower().split("%")[0]:
        return True
    try:
        return host == "localhost" and ipaddress.ip_address(local_host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _field(fields: bytes, name: bytes) -> str | None:
    """The value of header ``name`` (lower case) in a lower-cased request head, or
    ``None`` (absent, or not ASCII)."""
    start = fields.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    stop = fields.find(b"\r\n", start)
    try:
        return fields[start:stop if stop >= 0 else len(fields)].strip().decode("ascii")
    except UnicodeDecodeError:
        return None


class _Misdirected(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(421, b"Misdirected Request")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"connection", b"close")
        return b"Misdirected Request: this server does not serve that host name.\n"



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
            transport = self.transport
            assert transport is not None  # data arrives on a connected channel
            factory = self.site.upgrade_for(head, end, transport.getHost(),
                                            secure=ISSLTransport.providedBy(transport))
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

    requestFactory = BoundedRequest
    displayTracebacks = False

    def __init__(self, resource: IResource, *, timeout: float,
                 max_pending_per_ip: int | None, reactor: Any = None,
                 allowed_hosts: tuple[str, ...] = ()) -> None:
        super().__init__(resource, timeout=timeout,  # type: ignore[no-untyped-call]
                         reactor=reactor)
        self.max_pending_per_ip = max_pending_per_ip
        self.allowed_hosts = allowed_hosts
        """Host names (``name`` or ``name:port``) served besides the local address."""
        self.misdirected = 0
        """Requests answered 421 for their ``Host``."""
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

    def upgrade_for(self, head: bytes, end: int, local: IAddress, *,
                    secure: bool) -> GamewsServerFactory | None:
        """The WebSocket factory a request's head (whole: ``head[:end]`` ends before
        its empty line), come in on ``local``, goes to without twisted.web: a ``GET``
        of a WebSocket path (exactly) without a body, for a ``Host`` of ours
        (:func:`host_allowed`). ``None``: twisted.web takes it (pages, bodies to cap,
        404s, a path under a mount, and the 421 for a foreign ``Host``)."""
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
        if not host_allowed(_field(fields, b"host"), local, secure=secure,
                            allowed_hosts=self.allowed_hosts):
            return None  # twisted.web answers 421 (getResourceFor), counted there
        return resource.factory

    def getResourceFor(self, request: Request) -> IResource:
        """The resource for ``request``, or a 421 when its ``Host`` is not ours."""
        host: str | None = request.getHeader("host")
        if not host_allowed(host,
                            request.getHost(), secure=request.isSecure(),
                            allowed_hosts=self.allowed_hosts):
            self.misdirected += 1
            return _Misdirected()  # type: ignore[no-untyped-call]
        resource: IResource = super().getResourceFor(request)  # type: ignore[no-untyped-call]
        return resource

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
