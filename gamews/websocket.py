"""The Autobahn protocol behind every child connection, and the child handles
plugins hold (:class:`ConnectionHandle`, one per plugin per child)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pprint import pformat
from typing import TYPE_CHECKING, Any, Protocol, cast

import autobahn.twisted.websocket as ab_twisted
import autobahn.websocket.protocol as ab_protocol
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import tcp
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.api import (
    ChildCallback,
    ConnectionRequest,
    DisconnectCallback,
    ErrorCallback,
    IChildHandler,
    IConnection,
    MessageCallback,
    ReadyState,
    WebSocketError,
)
from gamews.channels import encode_message
from gamews.config import WebSocketLimits
from gamews.isolation import call_plugin
from gamews.stats import PathStats

if TYPE_CHECKING:
    from autobahn.websocket.types import ConnectionRequest as AutobahnRequest

    from gamews.channels import Channel

__all__ = ["Child", "ConnectionHandle", "GamewsServerFactory", "GamewsServerProtocol", "Route"]

log = Logger(namespace="gamews.websocket")

_LOST = Failure(ConnectionDone())
_SENDABLE_CODES = frozenset({1000, 1001, 1008, 1011})
_ERROR_CODES = frozenset({1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011})
_ids = itertools.count(1)
_OPEN = WebSocketServerProtocol.STATE_OPEN
# the transport whose socket gamews may write to directly (not TLS, not wrapped)
_PLAIN_TCP = frozenset({tcp.Server})
# what Autobahn keeps of the opening handshake, not needed once the child is open
_HANDSHAKE_ATTRS = ("http_request_data", "http_response_data", "http_headers",
                    "http_request_uri", "http_request_path", "http_request_params",
                    "http_status_line", "http_request_host")


class ListenerLike(Protocol):
    """What a child needs of a listener (the registry's ``Listener``)."""

    owner: str

    @property
    def active(self) -> bool: ...

    def offer(self, child: IConnection) -> Deferred[None] | None: ...


class Route(Protocol):
    """What a child needs of the path it arrived on (the registry's route)."""

    limits: WebSocketLimits
    stats: PathStats

    def listeners(self) -> list[ListenerLike]: ...

    def admit(self, child: Child) -> tuple[int, str] | None: ...

    def release(self, child: Child) -> None: ...


@dataclass
class _Hook:
    handle: ConnectionHandle
    on_message: MessageCallback | None
    on_disconnect: DisconnectCallback | None
    on_error: ErrorCallback | None
    on_open: ChildCallback | None


def peer_host(address: IAddress) -> str:
    """The host part of a transport address (``unix`` for UNIX sockets)."""
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else "unix"


class Child:
    """The state of one child connection shared by every plugin's handle."""

    def __init__(self, protocol: GamewsServerProtocol, route: Route) -> None:
        self.id = next(_ids)
        self.protocol = protocol
        self.route = route
        self.request: ConnectionRequest | None = None
        self.subprotocol: str | None = None
        self._subprotocol_owner: str | None = None
        self._rejection: tuple[int, str] | None = None
        self._handles: dict[ListenerLike, ConnectionHandle] = {}
        self._hooks: dict[ListenerLike, _Hook] = {}
        self.lost = False
        self.admitted = False
        self._lost_waiters: list[Deferred[None]] = []
        self.channels: set[Channel] = set()
        # STATE channels whose messages this child missed while its socket was full
        self.behind: dict[Channel, None] = {}

    # -- state ---------------------------------------------------------------

    @property
    def ready_state(self) -> ReadyState:
        """The RFC 6455 ready state, read from the protocol."""
        if self.lost:
            return ReadyState.CLOSED
        state = self.protocol.state
        if state == WebSocketServerProtocol.STATE_OPEN:
            return ReadyState.OPEN
        if state == WebSocketServerProtocol.STATE_CLOSING:
            return ReadyState.CLOSING
        if state == WebSocketServerProtocol.STATE_CLOSED:
            return ReadyState.CLOSED
        return ReadyState.CONNECTING

    def holders(self) -> list[str]:
        """Names of the plugins holding this child."""
        return [listener.owner for listener in self._hooks]

    def handle_for(self, listener: ListenerLike) -> ConnectionHandle:
        """The handle ``listener``'s plugin sees for this child."""
        handle = self._handles.get(listener)
        if handle is None:
            handle = self._handles[listener] = ConnectionHandle(self, listener)
        return handle

    # -- the handshake ---------------------------------------------------------

    def offer(self, request: AutobahnRequest) -> Deferred[str | None] | str | None:
        """Offer the child to every plugin on its path, then answer the handshake."""
        transport = self.protocol.transport
        assert transport is not None
        host = peer_host(transport.getPeer())
        if self.route.limits.trusted_proxies and "x-forwarded-for" in request.headers:
            host = str(request.peer)
        self.request = ConnectionRequest(
            path=request.path,
            query={k: list(v) for k, v in request.params.items()},
            headers=dict(request.headers),
            peer=str(request.peer),
            peer_host=host,
            origin=request.headers.get("origin"),
            protocols=tuple(request.protocols),
        )
        denied = self.route.admit(self)
        if denied is not None:
            raise ConnectionDeny(*denied)
        self.admitted = True
        waits: list[Deferred[None]] = []
        for listener in self.route.listeners():
            waiting = listener.offer(self.handle_for(listener))
            if waiting is not None:
                waits.append(waiting)
        if waits:
            decided: Deferred[str | None] = DeferredList(waits).addCallback(
                lambda _: self._decide()
            )
            return decided
        return self._decide()

    def _decide(self) -> str | None:
        if self._rejection is not None:
            raise ConnectionDeny(*self._rejection)
        if not self._hooks:
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "no plugin accepted the connection")
        return self.subprotocol

    def select_subprotocol(self, listener: ListenerLike, name: str) -> None:
        if self.ready_state is not ReadyState.CONNECTING or self.request is None:
            raise ValueError("a subprotocol can only be chosen while CONNECTING")
        if name not in self.request.protocols:
            raise ValueError(f"subprotocol {name!r} was not offered by the client")
        if self.subprotocol is not None and self.subprotocol != name:
            raise ValueError(
                f"subprotocol {self.subprotocol!r} was already chosen by {self._subprotocol_owner}"
            )
        self.subprotocol, self._subprotocol_owner = name, listener.owner

    def reject(self, status: int, reason: str) -> None:
        if not 400 <= status <= 599:
            raise ValueError("a rejection needs an HTTP status 400-599")
        if self.ready_state is not ReadyState.CONNECTING:
            raise ValueError("only a CONNECTING child can be rejected; close it instead")
        if self._rejection is None:
            self._rejection = (status, reason or "rejected")

    # -- hooks ---------------------------------------------------------------

    def hook(self, listener: ListenerLike, hook: _Hook) -> None:
        if self.ready_state in (ReadyState.CLOSING, ReadyState.CLOSED):
            raise ValueError("cannot hook a closing or closed child")
        self._hooks[listener] = hook

    def is_hooked(self, listener: ListenerLike) -> bool:
        return listener in self._hooks

    def unhook(self, listener: ListenerLike) -> None:
        """Drop ``listener``'s hook; close (1000) when nobody holds the child."""
        if self._hooks.pop(listener, None) is None:
            return
        for channel in [c for c in self.channels if c.listener is listener]:
            channel.drop(self)
        if not self._hooks and self.ready_state is ReadyState.OPEN:
            self.close(1000, "no plugin holds this connection")

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (1000, 1001, 1008, 1011 or 3000-4999),
        or drop a child still CONNECTING."""
        if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} cannot be sent (use 1000 or 3000-4999)")
        state = self.ready_state
        if state is ReadyState.OPEN:
            raw = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
            self.protocol.sendCloseFrame(code, raw or None)
            if code == 1008 and self.protocol.transport is not None:
                # a policy violation (a peer sending in a tight loop): read nothing more,
                # or its frames are parsed until the close timeout drops it
                cast(IPushProducer, self.protocol.transport).pauseProducing()
        elif state is ReadyState.CONNECTING and self.protocol.transport is not None:
            self.protocol.transport.loseConnection()

    def reserve(self, size: int) -> bool:
        """Whether ``size`` more bytes may be sent now: the child is OPEN and not
        too far behind. A child past ``max_send_buffer`` is closed with 1008."""
        protocol = self.protocol
        if self.lost or protocol.state != _OPEN:
            return False
        buffer = protocol.send_buffer
        if buffer.paused:
            buffer.queued += size
            limits = self.route.limits
            if buffer.queued > max(limits.max_send_buffer, 2 * limits.max_message_size):
                log.info("closing {peer}: it reads too slowly ({queued} bytes waiting)",
                         peer=self.request.peer if self.request else "?",
                         queued=buffer.queued)
                self.close(1008, "reading too slowly")
                self.route.stats.slow_consumers += 1
                return False
        return True

    def drained(self) -> None:
        """The socket can take more: catch up the STATE channels it fell behind on."""
        while self.behind and not self.protocol.send_buffer.paused and not self.lost:
            channel = next(iter(self.behind))
            del self.behind[channel]
            channel.catch_up(self)

    def on_lost(self, waiter: Deferred[None]) -> None:
        """Fire ``waiter`` once the connection is gone."""
        if self.lost:
            waiter.callback(None)
        else:
            self._lost_waiters.append(waiter)

    def _dispatch(self, name: str, *args: Any) -> None:
        """Call each holder's ``name`` callback (``on_message``, …), isolated; a
        holder that unhooks or closes its listener meanwhile is skipped."""
        hooks = self._hooks
        for listener, hook in tuple(hooks.items()):
            fn = getattr(hook, name)
            if fn is not None and listener.active and hooks.get(listener) is hook:
                call_plugin(listener.owner, name, fn, hook.handle, *args)

    def opened(self) -> None:
        self._dispatch("on_open")

    def message(self, data: str | bytes) -> None:
        self._dispatch("on_message", data)

    def closed(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        """The connection is gone: tell every holder once, then forget them."""
        self.lost = True
        local = self.protocol.localCloseCode
        if not was_clean or code in _ERROR_CODES or local in _ERROR_CODES:
            err_code = local if isinstance(local, int) and local in _ERROR_CODES else (code or 1006)
            text = reason or self.protocol.localCloseReason or self.protocol.wasNotCleanReason
            failure = Failure(WebSocketError(err_code, str(text or "connection lost")))
            self._dispatch("on_error", failure)
        self._dispatch("on_disconnect", code, reason or "")
        self._hooks.clear()
        for channel in list(self.channels):
            channel.drop(self)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)


@implementer(IConnection)
class ConnectionHandle:
    """One plugin's view of a child connection (see :class:`gamews.api.IConnection`)."""

    def __init__(self, child: Child, listener: ListenerLike) -> None:
        self._child = child
        self._listener = listener

    def __repr__(self) -> str:
        req = self._child.request
        return (f"<ConnectionHandle #{self.id} {req.path if req else '?'} "
                f"{req.peer if req else '?'} {self.ready_state.name} for {self._listener.owner}>")

    @property
    def id(self) -> int:
        return self._child.id

    @property
    def request(self) -> ConnectionRequest:
        assert self._child.request is not None
        return self._child.request

    @property
    def ready_state(self) -> ReadyState:
        return self._child.ready_state

    @property
    def subprotocol(self) -> str | None:
        return self._child.subprotocol

    @property
    def hooked(self) -> bool:
        return self._child.is_hooked(self._listener)

    def hook(
        self,
        on_message: MessageCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        on_error: ErrorCallback | None = None,
        on_open: ChildCallback | None = None,
        *,
        handler: IChildHandler | None = None,
    ) -> None:
        if handler is not None:
            if any(f is not None for f in (on_message, on_disconnect, on_error, on_open)):
                raise TypeError("give callbacks or a handler, not both")
            on_message, on_disconnect = handler.on_message, handler.on_disconnect
            on_error, on_open = handler.on_error, handler.on_open
        if not self._listener.active:
            raise ValueError("this plugin's listener is closed")
        self._child.hook(self._listener, _Hook(self, on_message, on_disconnect, on_error, on_open))

    def unhook(self) -> None:
        self._child.unhook(self._listener)

    def select_subprotocol(self, name: str) -> None:
        self._child.select_subprotocol(self._listener, name)

    def reject(self, status: int = 403, reason: str = "") -> None:
        self._child.reject(status, reason)

    def _send(self, data: str | bytes) -> bool:
        payload, is_binary = encode_message(data, self._child.route.limits.max_message_size)
        if not self._child.reserve(len(payload)):
            return False
        stats = self._child.route.stats
        stats.messages_out += 1
        stats.bytes_out += len(payload)
        self._child.protocol.sendMessage(payload, isBinary=is_binary)  # type: ignore[no-untyped-call]
        return True

    def send_text(self, text: str) -> bool:
        return self._send(text)

    def send_binary(self, data: bytes) -> bool:
        return self._send(bytes(data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.ready_state is ReadyState.CONNECTING:
            self._child.reject(403, reason or "closed by plugin")
        else:
            self._child.close(code, reason)


@implementer(IPushProducer)
class SendBuffer:
    """Counts what is sent to a child while its socket's buffer is full.

    Registered as the transport's producer, it is paused when the kernel and
    the transport hold more than the transport will buffer, and resumed when
    they have drained; bytes sent in between are what a slow reader costs.
    Resuming catches the child up on the STATE channels it skipped meanwhile.
    """

    def __init__(self, child: Child) -> None:
        self.child = child
        self.paused = False
        self.queued = 0

    def pauseProducing(self) -> None:
        # the transport calls this on every write while its buffer is full
        if not self.paused:
            self.paused = True
            self.queued = 0

    def resumeProducing(self) -> None:
        self.paused = False
        self.queued = 0
        if self.child.behind:
            self.child.drained()

    def stopProducing(self) -> None:
        self.paused = False


class GamewsServerProtocol(WebSocketServerProtocol):
    """Autobahn's server protocol, handing each event to the child's plugins."""

    factory: GamewsServerFactory
    child: Child

    def connectionMade(self) -> None:
        self.child = Child(self, self.factory.route)
        self.send_buffer = SendBuffer(self.child)
        transport: Any = self.transport
        # the HTTP channel that parsed the upgrade is still the transport's producer
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(self.send_buffer, True)
        super().connectionMade()

    def onConnect(  # type: ignore[override]  # Autobahn also takes a Deferred
        self, request: AutobahnRequest
    ) -> Deferred[str | None] | str | None:
        return self.child.offer(request)

    def onOpen(self) -> None:
        for name in _HANDSHAKE_ATTRS:  # the child's ConnectionRequest has what plugins need
            self.__dict__.pop(name, None)
        self.child.opened()

    _replies: list[bytes] | None = None
    """While this protocol handles bytes it read: what it sends meanwhile, written
    together when the read is handled (an echo of 16 messages is one ``send``)."""

    def dataReceived(self, data: bytes) -> None:
        # not Autobahn's: that one first formats a debug line even with debug off
        replies: list[bytes] = []
        self._replies = replies
        try:
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
            super().sendData(data, sync, chopsize)
        elif self._replies is not None:
            self._replies.append(data)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        transport: Any = self.transport
        if (type(transport) not in _PLAIN_TCP
                or transport._tempDataLen or len(transport.dataBuffer) != transport.offset
                or not transport.connected or transport.disconnecting
                or transport._writeDisconnected):
            transport.write(data)
            return
        try:
            written = transport.socket.send(data)
        except OSError:  # would block, or the peer is gone: Twisted's write path sees to it
            written = 0
        if written < len(data):
            transport.write(data[written:])

    def onMessageEnd(self) -> None:
        # Autobahn's also fires a "message" observable event through a Deferred per
        # message (nobody observes it here): hand the message straight to the child
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
            self.child.closed(wasClean, code, reason)

    def connectionLost(self, reason: Failure = _LOST) -> None:
        super().connectionLost(reason)
        self.factory.timers.cancel_all(self)
        if not self.child.lost:  # Autobahn skips onClose for some early failures
            self.child.closed(False, None, "connection lost")
        self.factory.route.release(self.child)


class _LazyText:
    """A debug-log argument formatted only if the line is emitted."""

    __slots__ = ("_args", "_format")

    def __init__(self, format_: Callable[..., str], *args: Any) -> None:
        self._format = format_
        self._args = args

    def __str__(self) -> str:
        return self._format(*self._args)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _lazy(format_: Callable[..., str]) -> Callable[..., _LazyText]:
    def deferred(*args: Any) -> _LazyText:
        return _LazyText(format_, *args)

    deferred.lazy_of = format_  # type: ignore[attr-defined]
    return deferred


def tune_autobahn() -> None:
    """Remove two per-message costs found by profiling Autobahn (``bench/README.md``).

    1. Autobahn calls ``hltype``/``hlval``/``pformat`` on every debug line's
       arguments before the logger drops the line (a third of a handshake's cost,
       from ``pformat`` of every option); its modules get lazy versions that give
       the same text when a debug line is written.
    2. Unmasking a client frame builds a CFFI masker (or loops over the bytes in
       Python) per frame: a fifth of the echo path. :class:`XorMasker` does it with
       two integer conversions.

    Idempotent; called when gamews builds its first factory.
    """
    for module in (ab_protocol, ab_twisted):
        for name in ("hltype", "hlval", "pformat"):
            current = getattr(module, name, None)
            if current is not None and not hasattr(current, "lazy_of"):
                setattr(module, name, _lazy(current))
    # the one use of pformat that is not a log argument: Timings.__str__
    ab_protocol.Timings.__str__ = _timings_text  # type: ignore[method-assign]
    ab_protocol.create_xor_masker = XorMasker  # type: ignore[attr-defined]


class XorMasker:
    """RFC 6455 masking (XOR with a 4-byte key), Autobahn's masker interface.

    ``process`` may be called on consecutive pieces of one payload; the key
    position carries over between them.
    """

    __slots__ = ("_key", "_ptr")

    def __init__(self, mask: bytes, length: int | None = None) -> None:
        if len(mask) != 4:
            raise ValueError("a mask is 4 bytes")
        self._key = bytes(mask) * 2
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        start = self._ptr & 3
        self._ptr += n
        key = self._key[start:start + 4] * ((n >> 2) + 1)
        return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(
            n, "little")


def _timings_text(timings: Any) -> str:
    return pformat(timings._timings)


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

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any,
                   **kwargs: Any) -> _Timer:
        owner = getattr(func, "__self__", None)
        calls = self._pending.setdefault(owner, set())

        def fire() -> None:
            calls.discard(call)
            func(*args, **kwargs)

        call = self._clock.callLater(delay, fire)
        calls.add(call)
        return _Timer(call, calls)

    def cancel_all(self, owner: object) -> None:
        """Cancel every timer Autobahn set for ``owner`` (a protocol)."""
        for call in self._pending.pop(owner, ()):
            if call.active():
                call.cancel()


class _Timer:
    """A pending timer that tolerates a late ``cancel``."""

    __slots__ = ("_call", "_calls")

    def __init__(self, call: IDelayedCall, calls: set[IDelayedCall]) -> None:
        self._call = call
        self._calls = calls

    def cancel(self) -> None:
        self._calls.discard(self._call)
        if self._call.active():
            self._call.cancel()


class GamewsServerFactory(WebSocketServerFactory):
    """An Autobahn factory for one URL path of a shared port, with gamews's limits."""

    protocol = GamewsServerProtocol  # type: ignore[assignment]

    def __init__(self, route: Route, reactor: Any) -> None:
        tune_autobahn()
        super().__init__(reactor=reactor)  # type: ignore[no-untyped-call]
        self.route = route
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
