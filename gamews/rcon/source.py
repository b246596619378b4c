"""A reconnecting Source RCON client: a thin Protocol over the sans-IO codec, driven by
``twisted.application.internet.ClientService``.

* The password is sent in ``prepareConnection``: a connection is used only once authenticated.
* Commands are pipelined, matched to replies by id, and reassembled with the end marker.
* While the link is down, commands wait in a bounded queue; each has a timeout that covers
  waiting and running.  A command sent on a link that then drops fails (it may have run; it is
  never re-sent behind the caller's back).
* Reconnects use exponential backoff with jitter.  After a password rejection the next attempt
  waits minutes (SRCDS bans an address after a few failed auths) and one error is logged:
  ``rcon password rejected by NAME``.
* Malformed input drops the link (and it reconnects); nothing raises into the reactor.
"""

from __future__ import annotations

import random
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from automat import NoTransition
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.rcon.link import (
    LinkState,
    RconLinkLostError,
    RconPasswordRejectedError,
    RconQueueFullError,
    RconStoppedError,
    RconTimeoutError,
    StateNotifier,
)
from gamews.rcon.source_codec import (
    MAX_BODY,
    AuthAccepted,
    AuthRejected,
    ProtocolViolationError,
    Reply,
    SourceRconClientCodec,
)
from gamews.reactor import maybe_global_reactor
from gamews.secret import Secret

__all__ = ["SourceRconClient", "SourceRconProtocol"]

_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

#: Default wait after a password rejection: five minutes (plus up to 20 % jitter).
AUTH_FAILURE_DELAY = 300.0



class SourceRconProtocol(Protocol):
    """One Source RCON connection: feeds bytes to the codec and fires Deferreds."""

    def __init__(self, name: str, clock: IReactorTime, log: Logger) -> None:
        """Make a protocol for the game server called ``name``."""
        self.name = name
        self.codec = SourceRconClientCodec()
        self._clock = clock
        self._log = log
        self._auth: Deferred[SourceRconProtocol] | None = None
        self._auth_timer: IDelayedCall | None = None
        self._waiting: dict[int, Any] = {}
        #: Called with (token, reply text) when the reply to a command sent with ``token``
        #: is complete, and with (token, RconLinkLostError) if the link drops first.
        self.deliver: Callable[[Any, str | Exception], object] = lambda token, result: None
        self.closed = False
        self.on_lost: Callable[[SourceRconProtocol], object] | None = None
        self._socket: socket.socket | None = None

    def connectionMade(self) -> None:
        """Turn off Nagle's algorithm and delayed ACKs: commands are small, latency matters.

        Servers that write a reply in several small ``send`` calls (rconx does: the reply,
        then the mirrored end marker) with Nagle on wait for our ACK of the first piece
        before sending the marker; a delayed ACK makes every command cost ~40 ms.  Linux's
        ``TCP_QUICKACK`` is cleared by the kernel, so it is set again after every read.
        """
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        get_handle = getattr(self.transport, "getHandle", None)
        handle = get_handle() if get_handle is not None else None
        self._socket = handle if isinstance(handle, socket.socket) else None
        self._quick_ack()

    def _quick_ack(self) -> None:
        sock = self._socket
        if sock is not None and _TCP_QUICKACK is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except OSError:
                self._socket = None

    def authenticate(self, password: Secret, timeout: float) -> Deferred[SourceRconProtocol]:
        """Send the password; fire with this protocol once accepted.

        Fails with :class:`RconPasswordRejectedError` (and closes the connection) on a
        rejection, :class:`RconTimeoutError` (connection aborted) after ``timeout`` s, and
        :class:`RconLinkLostError` if the connection drops first.
        """
        transport = self.transport
        assert transport is not None

        def cancel(d: Deferred[SourceRconProtocol]) -> None:
            self._stop_auth_timer()
            self._auth = None
            self._abort()

        d: Deferred[SourceRconProtocol] = Deferred(cancel)
        self._auth = d
        self._auth_timer = self._clock.callLater(timeout, self._auth_timed_out, timeout)
        transport.write(self.codec.authenticate(password.reveal().encode("utf-8")))
        return d

    def _stop_auth_timer(self) -> None:
        timer, self._auth_timer = self._auth_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _auth_timed_out(self, timeout: float) -> None:
        self._auth_timer = None
        d, self._auth = self._auth, None
        self._abort()
        if d is not None:
            d.errback(RconTimeoutError(f"{self.name}: no answer to auth within {timeout} s"))

    def _abort(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            abort = getattr(transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                transport.loseConnection()

    def send(self, command: bytes, token: Any) -> int:
        """Send ``command`` (authenticated links only); return its request id.

        The outcome is passed to :attr:`deliver` with ``token``.
        """
        transport = self.transport
        assert transport is not None
        request_id, data = self.codec.command(command)
        self._waiting[request_id] = token
        transport.write(data)
        return request_id

    def abandon(self, request_id: int) -> None:
        """Stop waiting for ``request_id``; late pieces of its reply are dropped."""
        self._waiting.pop(request_id, None)
        self.codec.abandon(request_id)

    def dataReceived(self, data: bytes) -> None:
        """Feed the codec; on malformed input drop the link (never raise)."""
        if self.closed:
            return
        self._quick_ack()
        try:
            events = self.codec.receive(data)
        except ProtocolViolationError as e:
            self._log.warn(
                "rcon link to {name} dropped: malformed data ({reason})",
                name=self.name, reason=str(e),
            )
            self._abort()
            return
        for event in events:
            if isinstance(event, Reply):
                token = self._waiting.pop(event.request_id, None)
                if token is not None:
                    self.deliver(token, event.text)
            elif isinstance(event, AuthAccepted):
                self._stop_auth_timer()
                auth, self._auth = self._auth, None
                if auth is not None:
                    auth.callback(self)
            elif isinstance(event, AuthRejected):
                self._stop_auth_timer()
                auth, self._auth = self._auth, None
                self._abort()
                if auth is not None:
                    rejected = RconPasswordRejectedError(f"rcon password rejected by {self.name}")
                    auth.errback(rejected)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail the pending auth and every command in flight with RconLinkLostError."""
        self.closed = True
        self._stop_auth_timer()
        lost = RconLinkLostError(f"rcon link to {self.name} lost: {reason.getErrorMessage()}")
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.errback(lost)
        waiting, self._waiting = self._waiting, {}
        for token in waiting.values():
            self.deliver(token, RconLinkLostError(str(lost)))
        if self.on_lost is not None:
            self.on_lost(self)


@implementer(IProtocol)
class _LossGuard:
    """Wraps ClientService's protocol proxy so a connection lost before it was handed out
    does not raise into the reactor.

    ``ClientService`` (Twisted 26.10) has no transition for a disconnect while it is
    *Connecting* (``prepareConnection`` still running) or after it rejected the connection
    (*Waiting*/*Stopped*): the proxy's notification raises ``automat.NoTransition`` from
    ``connectionLost``.  Our protocol has already been told by then; the machine has already
    moved on, so the notification is moot and is swallowed here.
    """

    def __init__(self, inner: IProtocol) -> None:
        self.inner = inner

    def makeConnection(self, transport: ITransport) -> None:
        self.inner.makeConnection(transport)

    def connectionMade(self) -> None:
        """Never called: makeConnection is delegated whole."""

    def dataReceived(self, data: bytes) -> None:
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:
        try:
            self.inner.connectionLost(reason)
        except NoTransition:
            pass

    def logPrefix(self) -> str:
        return "SourceRcon"


@implementer(IProtocolFactory)
class _GuardFactory:
    def __init__(self, inner: IProtocolFactory) -> None:
        self.inner = inner

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        built = self.inner.buildProtocol(addr)
        return None if built is None else _LossGuard(built)

    def doStart(self) -> None:
        self.inner.doStart()

    def doStop(self) -> None:
        self.inner.doStop()


@implementer(IStreamClientEndpoint)
class _ObservedEndpoint:
    """Tells the client about each attempt and failure; installs the loss guard."""

    def __init__(self, endpoint: IStreamClientEndpoint, client: SourceRconClient) -> None:
        self._endpoint = endpoint
        self._client = client

    def __repr__(self) -> str:
        return f"<rcon endpoint of {self._client.name!r}: {self._endpoint!r}>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        self._client._attempt_started()
        d = self._endpoint.connect(_GuardFactory(protocolFactory))

        def unwrap(guard: IProtocol) -> IProtocol:
            return cast(_LossGuard, guard).inner

        def failed(failure: Failure) -> Failure:
            self._client._attempt_failed(failure)
            return failure

        return d.addCallbacks(unwrap, failed)


@dataclass(eq=False, slots=True)
class _Command:
    data: bytes
    deferred: Deferred[str]
    deadline: float
    protocol: SourceRconProtocol | None = None
    request_id: int = 0
    done: bool = False


class SourceRconClient:
    """A Source RCON link to one game server that stays up while started.

    ``endpoint`` is a stream client endpoint (``TCP4ClientEndpoint``/``HostnameEndpoint``);
    ``clock`` defaults to the global reactor, resolved when the client is made.
    ``retry_policy(attempt) -> seconds`` defaults to exponential backoff with jitter
    (1 s doubling to 60 s, + up to 1 s); after a password rejection the wait is
    ``auth_failure_delay`` s (+ up to 20 % jitter) until an authentication succeeds.
    """

    def __init__(
        self,
        name: str,
        endpoint: IStreamClientEndpoint,
        password: Secret,
        *,
        clock: IReactorTime | None = None,
        timeout: float = 10.0,
        max_pending: int = 100,
        retry_policy: Callable[[int], float] | None = None,
        auth_failure_delay: float = AUTH_FAILURE_DELAY,
        jitter: Callable[[], float] = random.random,
        log: Logger | None = None,
    ) -> None:
        """Describe the link; nothing happens until :meth:`start`."""
        self.name = name
        self._password = password
        self._clock = maybe_global_reactor(clock)
        self.timeout = timeout
        self.max_pending = max_pending
        self._jitter = jitter
        self._policy = retry_policy or backoffPolicy(1.0, 60.0, 2.0, jitter)
        self.auth_failure_delay = auth_failure_delay
        self._log = log or Logger(namespace="gamews.rcon.source", source=self)
        self.notifier = StateNotifier(name, self._clock, self._log)
        self._auth_rejected = False
        self._protocol: SourceRconProtocol | None = None
        self._queue: deque[_Command] = deque()
        self._in_flight: dict[int, _Command] = {}
        # Every command, in issue order = deadline order (one timeout for all), swept by
        # one timer instead of a DelayedCall per command; finished ones are skipped.
        self._deadlines: deque[_Command] = deque()
        self._timer: IDelayedCall | None = None
        self._running = False
        factory = Factory.forProtocol(lambda: SourceRconProtocol(name, self._clock, self._log))
        self._service = ClientService(
            _ObservedEndpoint(endpoint, self),
            factory,
            retryPolicy=self._retry_delay,
            clock=self._clock,
            prepareConnection=self._prepare,
        )

    def __repr__(self) -> str:
        return f"<SourceRconClient {self.name!r} {self.notifier.state.value}>"

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and keep the link up until :meth:`stop`."""
        if self._running:
            return
        self._running = True
        self.notifier.set(LinkState.CONNECTING)
        self._service.startService()

    def stop(self) -> Deferred[None]:
        """Close the link; waiting commands fail with :class:`RconStoppedError`."""
        self._running = False
        queue, self._queue = self._queue, deque()
        for command in queue:
            self._finish(command, RconStoppedError(f"rcon client for {self.name} stopped"))
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        d: Deferred[None] = self._service.stopService()

        def stopped(result: object) -> None:
            self._protocol = None
            self.notifier.set(LinkState.STOPPED)

        return d.addBoth(stopped)

    @property
    def state(self) -> LinkState:
        """The link state."""
        return self.notifier.state

    @property
    def pending(self) -> int:
        """Commands queued or in flight."""
        return len(self._queue) + len(self._in_flight)

    # -- commands ------------------------------------------------------------------------------

    def rcon(self, command: str) -> Deferred[str]:
        """Run ``command``; the Deferred fires with the whole reply text.

        Fails with ``ValueError`` (NUL or too long), :class:`RconQueueFullError`,
        :class:`RconTimeoutError`, :class:`RconLinkLostError`, :class:`RconStoppedError`, or
        :class:`RconPasswordRejectedError` (queued commands too) while the server rejects
        the password.
        """
        data = command.encode("utf-8")
        if b"\0" in data or len(data) > MAX_BODY:
            return fail(ValueError(f"an RCON command is at most {MAX_BODY} bytes without NUL"))
        if not self._running:
            return fail(RconStoppedError(f"rcon client for {self.name} is not running"))
        if self._auth_rejected:
            return fail(RconPasswordRejectedError(
                f"rcon password rejected by {self.name} (retrying every "
                f"{self.auth_failure_delay / 60:.0f} minutes)"
            ))
        if self.pending >= self.max_pending:
            return fail(RconQueueFullError(
                f"{self.max_pending} rcon commands already waiting for {self.name}"
            ))

        def cancel(d: Deferred[str]) -> None:
            self._forget(entry)

        entry = _Command(data, Deferred(cancel), self._clock.seconds() + self.timeout)
        self._deadlines.append(entry)
        if self._timer is None:
            self._timer = self._clock.callLater(self.timeout, self._expire)
        protocol = self._protocol
        if protocol is not None and not self._queue:
            self._send(protocol, entry)
        else:
            self._queue.append(entry)
        return entry.deferred

    def _send(self, protocol: SourceRconProtocol, entry: _Command) -> None:
        entry.protocol = protocol
        entry.request_id = protocol.send(entry.data, entry)
        self._in_flight[entry.request_id] = entry

    def _deliver(self, entry: _Command, result: str | Exception) -> None:
        self._in_flight.pop(entry.request_id, None)
        self._finish(entry, result)

    def _finish(self, entry: _Command, result: str | Exception) -> None:
        entry.done = True
        deadlines = self._deadlines
        while deadlines and deadlines[0].done:
            deadlines.popleft()
        if isinstance(result, str):
            entry.deferred.callback(result)
        else:
            entry.deferred.errback(result)

    def _expire(self) -> None:
        """Time out every command past its deadline; re-arm for the next one."""
        self._timer = None
        now = self._clock.seconds()
        deadlines = self._deadlines
        while deadlines and (deadlines[0].done or deadlines[0].deadline <= now):
            entry = deadlines.popleft()
            if not entry.done:
                self._timed_out(entry)
        while deadlines and deadlines[0].done:
            deadlines.popleft()
        if deadlines and self._timer is None:
            self._timer = self._clock.callLater(
                max(0.0, deadlines[0].deadline - now), self._expire)

    def _forget(self, entry: _Command) -> None:
        """Take ``entry`` out of the queue or out of flight, without firing it."""
        entry.done = True
        if entry.protocol is None:
            try:
                self._queue.remove(entry)
            except ValueError:
                pass
        else:
            self._in_flight.pop(entry.request_id, None)
            entry.protocol.abandon(entry.request_id)

    def _timed_out(self, entry: _Command) -> None:
        where = "queued" if entry.protocol is None else "sent"
        self._forget(entry)
        entry.deferred.errback(RconTimeoutError(
            f"no reply from {self.name} within {self.timeout} s (command was {where})"
        ))

    def _flush(self) -> None:
        protocol = self._protocol
        while protocol is not None and self._queue and self._protocol is protocol:
            self._send(protocol, self._queue.popleft())

    # -- connection management -----------------------------------------------------------------

    def _attempt_started(self) -> None:
        if self.notifier.state is not LinkState.AUTH_FAILED:
            self.notifier.set(LinkState.CONNECTING)

    def _attempt_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            return
        if self.notifier.state is not LinkState.AUTH_FAILED:
            self.notifier.set(LinkState.DOWN, failure.getErrorMessage())

    def _retry_delay(self, attempt: int) -> float:
        if self._auth_rejected:
            return self.auth_failure_delay * (1.0 + 0.2 * self._jitter())
        return self._policy(attempt)

    def _prepare(self, protocol: Any) -> Deferred[None]:
        d: Deferred[SourceRconProtocol] = protocol.authenticate(self._password, self.timeout)
        return d.addCallbacks(self._authenticated, self._not_authenticated)

    def _authenticated(self, protocol: SourceRconProtocol) -> None:
        self._auth_rejected = False
        self._protocol = protocol
        protocol.on_lost = self._connection_lost
        protocol.deliver = self._deliver
        self.notifier.set(LinkState.UP)
        self._log.info("rcon link to {name} up", name=self.name)
        self._flush()

    def _not_authenticated(self, failure: Failure) -> Failure:
        if failure.check(RconPasswordRejectedError):
            if not self._auth_rejected:
                self._log.error(
                    "rcon password rejected by {name}; not retrying for {minutes:.0f} minutes "
                    "(fix its password file or environment variable and restart)",
                    name=self.name, minutes=self.auth_failure_delay / 60,
                )
            self._auth_rejected = True
            self.notifier.set(LinkState.AUTH_FAILED, "rcon password rejected")
            queue, self._queue = self._queue, deque()
            for command in queue:
                self._finish(command, RconPasswordRejectedError(
                    f"rcon password rejected by {self.name}"))
        elif not failure.check(CancelledError) and not self._auth_rejected:
            self.notifier.set(LinkState.DOWN, failure.getErrorMessage())
        return failure

    def _connection_lost(self, protocol: SourceRconProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None
            if self._running:
                self.notifier.set(LinkState.DOWN, "connection lost")
