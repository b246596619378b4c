"""A reconnecting Source RCON client: a thin Protocol over the sans-IO codec.

* The password is sent in ``prepareConnection``: a connection is used only once authenticated.
* Commands are pipelined, matched to replies by id, and reassembled with the end marker.
* While the link is down, commands wait in a bounded queue; each has a timeout that covers
  waiting and running.  A command sent on a link that then drops fails (it may have run; it is
  never re-sent behind the caller's back).
* Reconnects use exponential backoff with jitter.  After a password rejection the next attempt
  waits minutes (SRCDS bans an address after a few failed auths) and one error is logged:
  ``rcon password rejected by NAME``.
* One log line per change an admin should know of (``rcon link to alpha down: connection
  refused; retrying in 8 s``, then ``rcon link to alpha up``), none per repeated failure; the
  reason is also the link's ``detail``.  (The retry loop is ours rather than ClientService's,
  which logs a line of its own per retry and raises ``automat.NoTransition`` when a
  connection closes during ``prepareConnection``.)
* Malformed input drops the link (and it reconnects); nothing raises into the reactor.
"""

from __future__ import annotations

import random
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.rcon.link import (
    LinkState,
    RconLinkLostError,
    RconPasswordRejectedError,
    RconQueueFullError,
    RconStoppedError,
    RconTimeoutError,
    StateNotifier,
    describe_failure,
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
        self.lost_reason: Failure | None = None
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
            d.errback(RconTimeoutError(f"no answer to the password within {timeout} s"))

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
        self.lost_reason = reason
        self._stop_auth_timer()
        lost = RconLinkLostError(f"rcon link to {self.name} lost: {reason.getErrorMessage()}")
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.errback(RconLinkLostError(
                f"connection closed during authentication ({describe_failure(reason)})"))
        waiting, self._waiting = self._waiting, {}
        for token in waiting.values():
            self.deliver(token, RconLinkLostError(str(lost)))
        if self.on_lost is not None:
            self.on_lost(self)


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
        self.notifier = StateNotifier(name, self._clock, self._log,
                                      label=f"rcon link to {name}")
        self._auth_rejected = False
        self._endpoint = endpoint
        self._factory = Factory.forProtocol(
            lambda: SourceRconProtocol(name, self._clock, self._log))
        self._factory.noisy = False
        #: The connection being authenticated, or the authenticated one.
        self._connection: SourceRconProtocol | None = None
        #: The authenticated connection commands go to.
        self._protocol: SourceRconProtocol | None = None
        self._connecting: Deferred[None] | None = None
        self._retry: IDelayedCall | None = None
        self._failures = 0
        self._closed_waiters: list[Deferred[None]] = []
        self._queue: deque[_Command] = deque()
        self._in_flight: dict[int, _Command] = {}
        # Every command, in issue order = deadline order (one timeout for all), swept by
        # one timer instead of a DelayedCall per command; finished ones are skipped.
        self._deadlines: deque[_Command] = deque()
        self._timer: IDelayedCall | None = None
        self._running = False

    def __repr__(self) -> str:
        return f"<SourceRconClient {self.name!r} {self.notifier.state.value}>"

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and keep the link up until :meth:`stop`."""
        if self._running:
            return
        self._running = True
        self._failures = 0
        self._attempt()

    def stop(self) -> Deferred[None]:
        """Close the link; waiting commands fail with :class:`RconStoppedError`.  Fires once
        the connection (if any) is closed."""
        self._running = False
        queue, self._queue = self._queue, deque()
        for command in queue:
            self._finish(command, RconStoppedError(f"rcon client for {self.name} stopped"))
        for timer in (self._timer, self._retry):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._retry = None
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()  # the endpoint's attempt, or the authentication (aborts)
        connection = self._connection
        d: Deferred[None] = succeed(None)
        if connection is not None and not connection.closed:
            d = Deferred()
            self._closed_waiters.append(d)
            if connection.transport is not None:
                connection.transport.loseConnection()

        def stopped(result: object) -> None:
            self._protocol = None
            self.notifier.set(LinkState.STOPPED)

        return d.addBoth(stopped)

    def set_password(self, password: Secret) -> None:
        """Use ``password`` from now on (a reload): the link re-authenticates at once (an
        open connection is closed; commands in flight on it fail with RconLinkLostError),
        and a rejected password's long wait is over."""
        self._password = password
        self._auth_rejected = False
        if not self._running:
            return
        connection = self._connection
        if connection is not None and connection.transport is not None:
            connection.transport.loseConnection()
        elif self._retry is not None and self._retry.active():
            self._retry.cancel()
            self._attempt()

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

    def _attempt(self) -> None:
        self._retry = None
        if not self._running:
            return
        if self.notifier.state is not LinkState.AUTH_FAILED:
            self.notifier.set(LinkState.CONNECTING)
        d: Deferred[Any] = self._endpoint.connect(self._factory)
        d.addCallback(self._connected)
        connecting: Deferred[None] = d.addCallbacks(self._authenticated, self._attempt_failed)
        if self._retry is None and self._protocol is None and self._running:
            self._connecting = connecting  # still under way

    def _connected(self, protocol: IProtocol) -> Deferred[SourceRconProtocol]:
        assert isinstance(protocol, SourceRconProtocol)
        self._connection = protocol
        protocol.on_lost = self._connection_lost
        return protocol.authenticate(self._password, self.timeout)

    def _retry_delay(self, attempt: int) -> float:
        if self._auth_rejected:
            return self.auth_failure_delay * (1.0 + 0.2 * self._jitter())
        return self._policy(attempt)

    def _schedule_retry(self) -> float:
        self._failures += 1
        delay = self._retry_delay(self._failures)
        self._retry = self._clock.callLater(delay, self._attempt)
        return delay

    def _attempt_failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self._running or failure.check(CancelledError):
            return
        rejected = failure.check(RconPasswordRejectedError) is not None
        if rejected and not self._auth_rejected:
            self._log.error(
                "rcon password rejected by {name}; not retrying for {minutes:.0f} minutes "
                "(fix its password file or environment variable and restart)",
                name=self.name, minutes=self.auth_failure_delay / 60,
            )
        self._auth_rejected = self._auth_rejected or rejected
        delay = self._schedule_retry()
        if rejected:
            self.notifier.set(LinkState.AUTH_FAILED, "rcon password rejected")
            queue, self._queue = self._queue, deque()
            for command in queue:
                self._finish(command, RconPasswordRejectedError(
                    f"rcon password rejected by {self.name}"))
        elif not self._auth_rejected:
            self.notifier.set(LinkState.DOWN, describe_failure(failure), retry_in=delay)

    def _authenticated(self, protocol: SourceRconProtocol) -> None:
        self._connecting = None
        self._failures = 0
        self._auth_rejected = False
        self._protocol = protocol
        protocol.deliver = self._deliver
        self.notifier.set(LinkState.UP)
        self._flush()

    def _connection_lost(self, protocol: SourceRconProtocol) -> None:
        if self._connection is protocol:
            self._connection = None
            waiters, self._closed_waiters = self._closed_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        if self._protocol is protocol:
            self._protocol = None
            if self._running:
                delay = self._schedule_retry()
                reason = protocol.lost_reason
                self.notifier.set(LinkState.DOWN, "connection lost" if reason is None
                                  else describe_failure(reason), retry_in=delay)
