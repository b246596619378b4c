"""The Autobahn protocol under every child connection: :class:`GamewsServerProtocol`
(the :class:`gamews.websocket._child.Wire` of a child), its :class:`SendBuffer`,
its factory and Autobahn's timers on the injected reactor.

This is the one module of gamews that touches Autobahn's or Twisted's private
attributes (``tests/test_boundaries.py`` checks it). Each such use says
``PRIVATE`` and the versions it was checked against: Twisted 26.10.0 and
Autobahn 26.11.1 (``pyproject.toml`` bounds both to their major version).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.protocol import TrafficStats
from autobahn.websocket.types import ConnectionDeny
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.api import ConnectionRequest, ReadyState
from gamews.config import WebSocketLimits
from gamews.websocket._child import Child, Refused, Route

if TYPE_CHECKING:
    from autobahn.websocket.types import ConnectionRequest as AutobahnRequest

__all__ = ["GamewsServerFactory", "GamewsServerProtocol", "SendBuffer", "hand_over", "peer_host"]

_LOST = Failure(ConnectionDone())
_OPEN = WebSocketServerProtocol.STATE_OPEN
_KEEP = object()  # no value at rest is this
_READY_STATES = {
    WebSocketServerProtocol.STATE_OPEN: ReadyState.OPEN,
    WebSocketServerProtocol.STATE_CLOSING: ReadyState.CLOSING,
    WebSocketServerProtocol.STATE_CLOSED: ReadyState.CLOSED,
}
_CONNECTING = ReadyState.CONNECTING  # a module constant: faster than through the Enum
# the transport whose socket gamews may write to directly (not TLS, not wrapped)
_PLAIN_TCP = frozenset({tcp.Server})
# Autobahn 26.11.1: what a protocol keeps of the opening handshake, not needed once
# the child is open (its ConnectionRequest has what plugins need)
_HANDSHAKE_ATTRS = frozenset({
    "http_request_data", "http_response_data", "http_headers", "http_request_uri",
    "http_request_path", "http_request_params", "http_status_line", "http_request_host",
    "_wskey", "websocket_protocols", "websocket_extensions", "websocket_origin"})
# header names and values most handshakes carry: a child's ConnectionRequest holds these
# shared strings instead of its own copies (about 60 bytes each)
_COMMON = {text: text for text in (
    "host", "upgrade", "connection", "origin", "user-agent", "pragma", "cache-control",
    "accept-encoding", "accept-language", "cookie", "x-forwarded-for", "sec-websocket-key",
    "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol",
    "websocket", "Upgrade", "keep-alive, Upgrade", "13", "no-cache",
    "gzip, deflate", "gzip, deflate, br", "gzip, deflate, br, zstd",
    "permessage-deflate; client_max_window_bits")}
# Autobahn 26.11.1: the attributes WebSocketProtocol._connectionMade sets on every
# protocol, at their starting values, which are also those they rest at while a
# connection is open and idle. They are class attributes of GamewsServerProtocol, whose
# _connectionMade does not set them; Autobahn sets a protocol's own when it changes one,
# and an open protocol's own copy is dropped while it holds the same value again
_AT_REST: dict[str, object] = dict.fromkeys((
    "_perMessageCompress", "trackedTimings", "wasNotCleanReason", "localCloseCode",
    "localCloseReason", "remoteCloseCode", "remoteCloseReason", "openHandshakeTimeoutCall",
    "closeHandshakeTimeoutCall", "autoPingTimeoutCall", "autoPingPending",
    "autoPingPendingCall", "autoPingPendingSent", "current_frame",
    "websocket_protocol_in_use"), None)
_AT_REST.update(dict.fromkeys((
    "triggered", "wasMaxFramePayloadSizeExceeded", "wasMaxMessagePayloadSizeExceeded",
    "closedByMe", "failedByMe", "droppedByMe", "wasClean", "wasServerConnectionDropTimeout",
    "wasOpenHandshakeTimeout", "wasCloseHandshakeTimeout", "wasServingFlashSocketPolicyFile",
    "inside_message", "paused"), False))
_AT_REST.update(autoPingPendingSeq=0, send_state=WebSocketServerProtocol.SEND_STATE_GROUND,
                data=b"")


def peer_host(address: IAddress) -> str:
    """The host part of a transport address (``unix`` for UNIX sockets)."""
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else "unix"


@implementer(IPushProducer)
class SendBuffer:
    """Tells a protocol and its child when the socket's buffer is full.

    Registered as the transport's producer, it is paused when the kernel and
    the transport hold more than the transport will buffer, and resumed when
    they have drained; meanwhile the protocol is ``paused`` and the child counts
    what is sent (what a slow reader costs). On resuming the child catches up
    the STATE channels it skipped.
    """

    def __init__(self, protocol: GamewsServerProtocol) -> None:
        self.protocol = protocol

    def pauseProducing(self) -> None:
        # the transport calls this on every write while its buffer is full
        protocol = self.protocol
        if not protocol.paused:
            protocol.paused = True
            protocol.child.buffer_full()

    def resumeProducing(self) -> None:
        self.protocol.paused = False
        self.protocol.child.drained()

    def stopProducing(self) -> None:
        self.protocol.paused = False


def _refused(failure: Failure) -> None:
    """A child's :class:`Refused` as the answer Autobahn gives (an HTTP status)."""
    failure.trap(Refused)
    refusal = failure.value
    assert isinstance(refusal, Refused)
    raise ConnectionDeny(refusal.status, refusal.reason)


class GamewsServerProtocol(WebSocketServerProtocol):
    """Autobahn's server protocol, handing each event to its :class:`Child`; the
    child's :class:`gamews.websocket._child.Wire`."""

    factory: GamewsServerFactory
    child: Child
    openHandshakeTimeout: float  # an option: a class attribute of each factory's protocol
    paused = False
    """Whether the socket's buffer is full (set by the :class:`SendBuffer`)."""

    # -- the Wire ------------------------------------------------------------------

    @property
    def ready_state(self) -> ReadyState:
        return _READY_STATES.get(self.state, _CONNECTING)

    # Autobahn's own methods (their second argument is isBinary), without a call more
    send = WebSocketServerProtocol.sendMessage
    send_prepared = WebSocketServerProtocol.sendPreparedMessage

    def send_now(self, prepared: Any) -> bool:
        # what sendPreparedMessage and sendData come to for an open connection without
        # compression, its send buffer empty, outside a read: one call per child.
        # PRIVATE (Autobahn 26.11.1): WebSocketProtocol._perMessageCompress, set when
        # permessage-deflate was agreed (sendPreparedMessage then compresses)
        if (self.state != _OPEN or self._perMessageCompress is not None
                or self.paused or self.send_queue or self._replies is not None):
            return False
        self._write(prepared.payloadHybi)
        return True

    def close(self, code: int, reason: bytes | None) -> None:
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code, reason)
            if code == 1008 and self.transport is not None:
                # a policy violation (a peer sending in a tight loop): read nothing more,
                # or its frames are parsed until the close timeout drops it
                cast(IPushProducer, self.transport).pauseProducing()
        elif self.ready_state is _CONNECTING and self.transport is not None:
            self.transport.loseConnection()

    def drop(self) -> None:
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()

    # -- Autobahn's events -----------------------------------------------------------

    def connectionMade(self) -> None:
        self.child = Child(self, self.factory.route)
        transport: Any = self.transport
        # the HTTP channel that parsed the upgrade is still the transport's producer
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(SendBuffer(self), True)
        super().connectionMade()

    def _connectionMade(self) -> None:
        # PRIVATE (Autobahn 26.11.1): WebSocketServerProtocol._connectionMade and
        # WebSocketProtocol._connectionMade, replaced: they copy every option the
        # protocol lacks from the factory (here all are class attributes: nothing) and
        # set 35 attributes to their starting values (here their class values,
        # _AT_REST, the traffic counters and the send queue): what is left is this
        self.state = self.STATE_CONNECTING
        self.utf8validator = Utf8Validator()
        if self.trackTimings:
            self.setTrackTimings(True)
        if self.openHandshakeTimeout > 0:
            # PRIVATE (Autobahn 26.11.1): WebSocketServerFactory._batched_timer
            self.openHandshakeTimeoutCall = self.factory._batched_timer.call_later(
                self.openHandshakeTimeout, self.onOpenHandshakeTimeout)
        self.factory.countConnections += 1

    def onConnect(  # type: ignore[override]  # Autobahn also takes a Deferred
        self, request: AutobahnRequest
    ) -> Deferred[str | None] | str | None:
        transport = self.transport
        assert transport is not None
        host = peer_host(transport.getPeer())
        if self.factory.route.limits.trusted_proxies and "x-forwarded-for" in request.headers:
            host = str(request.peer)
        offered = ConnectionRequest(
            path=request.path,
            query={k: list(v) for k, v in request.params.items()},
            headers={_COMMON.get(k, k): _COMMON.get(v, v) for k, v in request.headers.items()},
            peer=str(request.peer),
            peer_host=host,
            origin=request.headers.get("origin"),
            protocols=tuple(request.protocols),
        )
        try:
            decided = self.child.offer(offered)
        except Refused as refusal:
            raise ConnectionDeny(refusal.status, refusal.reason) from None
        if isinstance(decided, Deferred):
            return decided.addErrback(_refused)
        return decided

    send_queue: Any = ()
    """Autobahn's queue of chopped or synchronous sends: a deque only once a
    connection has had one (an empty deque is 760 bytes per idle connection)."""
    trafficStats = TrafficStats()
    """Autobahn's byte and frame counters, read by nobody in gamews: every connection
    counts into this one, shared, instead of its own."""

    def onOpen(self) -> None:
        self._shed()
        self.child.opened()

    def _shed(self) -> None:
        """Rebuild this protocol's attributes without the handshake's leftovers and
        the values at rest its class holds (a compact dict of about 20 entries)."""
        self.__dict__ = {name: value for name, value in self.__dict__.items()
                         if name not in _HANDSHAKE_ATTRS
                         and _AT_REST.get(name, _KEEP) is not value}

    _replies: list[bytes] | None = None
    """While this protocol handles bytes it read: what it sends meanwhile, written
    together when the read is handled (an echo of 16 messages is one ``send``)."""

    def dataReceived(self, data: bytes) -> None:
        # not Autobahn's: that one first formats a debug line even with debug off
        replies: list[bytes] = []
        self._replies = replies
        try:
            # PRIVATE (Autobahn 26.11.1): WebSocketProtocol._dataReceived, what
            # Autobahn's own dataReceived calls after its debug line
            self._dataReceived(data)
        finally:
            self._replies = None
            if replies:
                self._write(b"".join(replies))

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Write ``data`` at once (or with the other replies to the read being handled).

        Twisted's ``transport.write`` always queues, registers the socket for
        writability and sends on the next reactor turn: three system calls per
        child per broadcast, where a child that keeps up takes the bytes in one
        ``send``. What the kernel does not take goes through ``transport.write``.
        Autobahn's own ``sendData`` adds only debug logging and statistics.
        """
        if sync or chopsize or self.send_queue:
            if not self.send_queue:
                self.send_queue = deque()
            super().sendData(data, sync, chopsize)
        elif self._replies is not None:
            self._replies.append(data)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        transport: Any = self.transport
        # write to the socket only when the transport holds nothing: its write buffer
        # is dataBuffer[offset:] plus _tempDataLen bytes not yet joined into it
        if (type(transport) not in _PLAIN_TCP
                # PRIVATE (Twisted 26.10.0): FileDescriptor._tempDataLen
                or transport._tempDataLen or len(transport.dataBuffer) != transport.offset
                or not transport.connected or transport.disconnecting
                # PRIVATE (Twisted 26.10.0): set by FileDescriptor.loseWriteConnection
                or transport._writeDisconnected):
            transport.write(data)
            return
        try:
            written = transport.socket.send(data)
        except OSError:  # would block, or the peer is gone: Twisted's write path sees to it
            written = 0
        if written < len(data):
            transport.write(data[written:])

    unfinished = 0
    """Bytes of the message being received, counted in the route's
    :class:`gamews.websocket._child.UnfinishedBudget` until it ends or the
    connection does."""

    def onMessageFrameData(self, payload: bytes) -> None:
        if not self.failedByMe:
            if not self.factory.route.budget.take(len(payload)):
                # PRIVATE (Autobahn 26.11.1): WebSocketProtocol._fail_connection, how
                # Autobahn itself closes on a limit (close frame, then drop)
                self._fail_connection(1008, "too many unfinished messages on this server")
                self._release_message()
                return
            self.unfinished += len(payload)
        super().onMessageFrameData(payload)

    def _release_message(self) -> None:
        """Forget the message being received: its bytes leave the budget and memory."""
        if self.unfinished:
            self.factory.route.budget.give(self.unfinished)
            self.unfinished = 0
        self.message_data = None  # type: ignore[assignment]
        self.frame_data = None  # type: ignore[assignment]

    def onMessageEnd(self) -> None:
        # Autobahn's also fires a "message" observable event through a Deferred per
        # message (nobody observes it here): hand the message straight to the child
        if self.unfinished:
            self.factory.route.budget.give(self.unfinished)
            self.unfinished = 0
        if not self.failedByMe:
            payload = b"".join(self.message_data)
            stats = self.factory.route.stats
            stats.messages_in += 1
            stats.bytes_in += len(payload)
            self.child.message(payload if self.message_is_binary else payload.decode("utf-8"))
        self.message_data = None  # type: ignore[assignment]  # as Autobahn does

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        self.factory.route.stats.handshake_failed(code, reason)
        super().failHandshake(reason, code, responseHeaders)

    def onOpenHandshakeTimeout(self) -> None:
        if self.state == self.STATE_CONNECTING:
            self.factory.route.stats.handshake_failed(408, "timeout")
        super().onOpenHandshakeTimeout()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.child.lost:
            self.child.closed(wasClean, code, reason, self.localCloseCode,
                              self.localCloseReason or self.wasNotCleanReason)

    def connectionLost(self, reason: Failure = _LOST) -> None:
        super().connectionLost(reason)
        self.factory.timers.cancel_all(self)
        if not self.child.lost:  # Autobahn skips onClose for some early failures
            self.child.closed(False, None, "connection lost")
        self.factory.route.release(self.child)
        # give everything back now, not at the next cyclic collection: the partial
        # message, the bytes not parsed yet, the inflater; and cut the cycle through
        # the transport's producer (transport -> send buffer -> protocol)
        self._release_message()
        # Autobahn 26.11.1: public attributes of WebSocketProtocol
        self.data = b""
        self.current_frame = None  # type: ignore[assignment]
        self.control_frame_data = None  # type: ignore[assignment]
        # PRIVATE (Autobahn 26.11.1): WebSocketProtocol._perMessageCompress, the inflater
        self._perMessageCompress = None
        transport: Any = self.transport
        producer = getattr(transport, "producer", None)
        if isinstance(producer, SendBuffer) and producer.protocol is self:
            transport.unregisterProducer()


for _name, _value in _AT_REST.items():
    setattr(GamewsServerProtocol, _name, _value)


def _class_attribute(value: Any) -> Any:
    return staticmethod(value) if callable(value) else value


def _accept_deflate(limits: WebSocketLimits) -> Callable[[list[Any]], Any]:
    def accept(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                return PerMessageDeflateOfferAccept(offer, max_message_size=limits.max_message_size)
        return None

    return accept


class _ReactorTimers:
    """Autobahn's timer source, on the injected reactor.

    Autobahn batches its timers on txaio's global loop; gamews runs them on the
    reactor (or test clock) the factory was given, so tests can drive them, and
    cancels a connection's timers when it is gone so nothing is left pending.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._pending: dict[object, set[IDelayedCall]] = {}
        """The pending timers of each protocol that has any (none: no entry)."""

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any,
                   **kwargs: Any) -> _Timer:
        owner = getattr(func, "__self__", None)

        def fire() -> None:
            self.forget(owner, call)
            func(*args, **kwargs)

        call = self._clock.callLater(delay, fire)
        self._pending.setdefault(owner, set()).add(call)
        return _Timer(self, owner, call)

    def forget(self, owner: object, call: IDelayedCall) -> None:
        """``call`` of ``owner`` fired or was cancelled."""
        calls = self._pending.get(owner)
        if calls is not None:
            calls.discard(call)
            if not calls:  # an idle connection keeps no empty set
                del self._pending[owner]

    def cancel_all(self, owner: object) -> None:
        """Cancel every timer Autobahn set for ``owner`` (a protocol)."""
        for call in self._pending.pop(owner, ()):
            if call.active():
                call.cancel()


class _Timer:
    """A pending timer that tolerates a late ``cancel``."""

    __slots__ = ("_call", "_owner", "_timers")

    def __init__(self, timers: _ReactorTimers, owner: object, call: IDelayedCall) -> None:
        self._timers = timers
        self._owner = owner
        self._call = call

    def cancel(self) -> None:
        self._timers.forget(self._owner, self._call)
        if self._call.active():
            self._call.cancel()


class GamewsServerFactory(WebSocketServerFactory):
    """An Autobahn factory for one URL path of a shared port, with gamews's limits."""

    protocol = GamewsServerProtocol  # type: ignore[assignment]

    def __init__(self, route: Route, reactor: Any) -> None:
        super().__init__(reactor=reactor)  # type: ignore[no-untyped-call]
        self.route = route
        # PRIVATE (Autobahn 26.11.1): WebSocketServerFactory._batched_timer, where
        # every protocol of the factory sets its timers
        self.timers = self._batched_timer = _ReactorTimers(reactor)
        limits = route.limits
        options: dict[str, Any] = {
            "maxMessagePayloadSize": limits.max_message_size,
            "maxFramePayloadSize": limits.max_frame_size,
            "autoFragmentSize": limits.fragment_size,
            "openHandshakeTimeout": limits.handshake_timeout,
            "closeHandshakeTimeout": limits.close_timeout,
            "autoPingInterval": limits.ping_interval,
            "autoPingTimeout": limits.ping_timeout if limits.ping_interval else 0,
            # echo what came before a bad frame and close with the RFC's code
            # instead of dropping TCP (Autobahn's default gives NON-STRICT)
            "failByDrop": False,
            "trustXForwardedFor": limits.trusted_proxies,
            "webStatus": False,
        }
        if limits.permessage_deflate:
            options["perMessageCompressionAccept"] = _accept_deflate(limits)
        self.setProtocolOptions(**options)  # type: ignore[no-untyped-call]
        # Autobahn copies every option onto every protocol instance (3 KB each) unless
        # the protocol already has it: give this factory's protocols them as class
        # attributes (functions as staticmethods, so they are not bound to the protocol)
        self.protocol = cast("type[GamewsServerProtocol]", type(
            "GamewsServerProtocol", (GamewsServerProtocol,),
            {name: _class_attribute(getattr(self, name))
             for name in GamewsServerProtocol.CONFIG_ATTRS}))


def hand_over(transport: Any, factory: GamewsServerFactory, data: bytes, *,
              paused: bool = False) -> None:
    """Give a connection whose HTTP head asked for a WebSocket to a new protocol of
    ``factory`` and feed it ``data`` (the head, and whatever the client sent after it):
    Autobahn's handshake parses the head, once.

    What Autobahn's ``WebSocketResource.render`` does after twisted.web has parsed a
    request, for both ways an upgrade arrives: straight from the channel that read
    its head (``paused`` false), or from twisted.web's ``Request`` (``paused``: the
    channel paused the transport while the request was served).
    """
    protocol: Any = factory.buildProtocol(transport.getPeer())
    if isinstance(transport, ProtocolWrapper):  # TLS: the wrapper delivers to us now
        transport.wrappedProtocol = protocol
    elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    if paused:  # the channel paused its transport (an IPushProducer) for the request
        transport.resumeProducing()
    protocol.dataReceived(data)
