"""A Quake 3-family rcon client over UDP (ioquake3, OpenArena, Urban Terror, ET).

* ``rcon(command)`` sends ``\\xff\\xff\\xff\\xffrcon PASSWORD COMMAND`` and gathers the
  ``print`` datagrams until the server has been quiet for ``quiet`` seconds (there is no end
  marker).  UDP has no request ids, so rcon commands run one at a time.
* ioquake3 answers at most a burst of 10 requests, then 1 per second, per source IP, shared by
  rcon, getstatus and getinfo, and drops the rest *without a reply*.  All requests therefore go
  through one queue paced by a token bucket (``burst`` tokens, one more every ``interval``
  seconds, a little slower than the server's budget), so nothing is silently lost: a request
  is either answered or fails with a clear error (queue full, timeout).  The bucket's burst
  (7) leaves 3 of the server's 10 to other senders from the same address (a launcher, a
  server browser, a second tool): with the full 10, one ``getstatus`` from anyone else just
  before a burst of commands made the server drop one of them (seen in the tests).
* ``Bad rconpassword.`` fails the command with :class:`RconPasswordRejectedError`, logs
  ``rcon password rejected by NAME`` once and puts the link in ``AUTH_FAILED``; further rcon
  commands fail fast for ``auth_failure_delay`` seconds instead of hammering the server.
* A periodic ``getstatus`` (every ``status_interval`` s) keeps the link state and the status
  snapshot (server info, players) fresh.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.ratelimit import TokenBucket
from gamews.rcon.link import (
    LinkState,
    RconPasswordRejectedError,
    RconQueueFullError,
    RconStoppedError,
    RconTimeoutError,
    StateNotifier,
)
from gamews.rcon.quake3_codec import (
    ServerStatus,
    encode_getinfo,
    encode_getstatus,
    encode_rcon,
    is_bad_password,
    parse_datagram,
    parse_info_response,
    parse_status_response,
    print_text,
)
from gamews.reactor import maybe_global_reactor
from gamews.secret import Secret

__all__ = ["Quake3RconClient"]

_Kind = Literal["rcon", "getstatus", "getinfo"]
_EXPECT: dict[str, str] = {
    "rcon": "print", "getstatus": "statusResponse", "getinfo": "infoResponse",
}


@dataclass(eq=False)
class _Request:
    kind: _Kind
    datagram: bytes = field(repr=False)  # holds the password
    deferred: Deferred[Any] = field(repr=False)
    chunks: list[str] = field(default_factory=list)


class _Quake3Protocol(DatagramProtocol):
    def __init__(self, client: Quake3RconClient) -> None:
        self._client = client

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._client._datagram(datagram)

    def connectionRefused(self) -> None:
        self._client._refused()


class Quake3RconClient:
    """An rcon/getstatus/getinfo client for one Quake 3-family server (UDP, paced).

    ``reactor`` (UDP + time + resolver) defaults to the global reactor, resolved when the
    client is made.  ``timeout``: seconds to wait for the first reply datagram once a
    request is sent; ``quiet``: silence that ends an rcon reply; ``max_pending``: bound of
    the queue.  ``burst``/``interval``: the pacing budget (the server allows 10, then one
    per second; the defaults leave 3 requests and a 10 % margin to other senders).
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        password: Secret,
        *,
        reactor: Any = None,
        timeout: float = 3.0,
        quiet: float = 0.15,
        max_pending: int = 30,
        burst: int = 7,
        interval: float = 1.1,
        auth_failure_delay: float = 300.0,
        status_interval: float | None = 30.0,
        log: Logger | None = None,
    ) -> None:
        """Describe the link; nothing is sent until :meth:`start`."""
        self.name = name
        self.host = host
        self.port = port
        self._password = password
        self._reactor = maybe_global_reactor(reactor)
        self.timeout = timeout
        self.quiet = quiet
        self.max_pending = max_pending
        self.auth_failure_delay = auth_failure_delay
        self.status_interval = status_interval
        self._log = log or Logger(namespace="gamews.rcon.quake3", source=self)
        self.notifier = StateNotifier(name, self._reactor, self._log)
        self._bucket = TokenBucket(burst, interval, self._reactor.seconds())
        self._queue: deque[_Request] = deque()
        self._current: _Request | None = None
        self._reply_timer: IDelayedCall | None = None
        self._pump_timer: IDelayedCall | None = None
        self._port: Any = None  # IListeningPort and IUDPTransport
        self._address: str | None = None
        self._rejected_at: float | None = None
        self._poll: LoopingCall | None = None
        self._running = False
        #: The last ``getstatus`` answer, or ``None``.
        self.last_status: ServerStatus | None = None

    def __repr__(self) -> str:
        return f"<Quake3RconClient {self.name!r} {self.host}:{self.port}>"

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        """The link state."""
        return self.notifier.state

    @property
    def pending(self) -> int:
        """Requests queued or in flight."""
        return len(self._queue) + (self._current is not None)

    def start(self) -> None:
        """Open the UDP socket (resolving the host if needed) and start status polling."""
        if self._running:
            return
        self._running = True
        self.notifier.set(LinkState.CONNECTING)
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            self._reactor.resolve(self.host).addCallbacks(self._bind, self._resolve_failed)
        else:
            self._bind(self.host)

    def _resolve_failed(self, failure: Failure) -> None:
        if not self._running:
            return
        self.notifier.set(LinkState.DOWN, f"cannot resolve {self.host}")
        self._log.warn("cannot resolve game server {name} host {host}: {why}",
                       name=self.name, host=self.host, why=failure.getErrorMessage())
        self._pump_timer = self._reactor.callLater(30.0, self._retry_resolve)

    def _retry_resolve(self) -> None:
        self._pump_timer = None
        if self._running:
            self._reactor.resolve(self.host).addCallbacks(self._bind, self._resolve_failed)

    def _bind(self, address: str) -> None:
        if not self._running:
            return
        ip = ipaddress.ip_address(address)
        interface = ("::1" if ip.version == 6 else "127.0.0.1") if ip.is_loopback else (
            "::" if ip.version == 6 else "")
        self._port = self._reactor.listenUDP(0, _Quake3Protocol(self), interface=interface)
        self._port.connect(address, self.port)
        self._address = address
        if self.status_interval:
            self._poll = LoopingCall(self._poll_status)
            self._poll.clock = self._reactor
            self._poll.start(self.status_interval, now=True)
        self._pump()

    def stop(self) -> Deferred[None]:
        """Close the socket; queued and running requests fail with RconStoppedError."""
        self._running = False
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        self._poll = None
        for timer in (self._reply_timer, self._pump_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._reply_timer = self._pump_timer = None
        stopped = RconStoppedError(f"rcon client for {self.name} stopped")
        current, self._current = self._current, None
        queue, self._queue = self._queue, deque()
        for request in ([current] if current is not None else []) + list(queue):
            request.deferred.errback(stopped)
        port, self._port = self._port, None
        self.notifier.set(LinkState.STOPPED)
        if port is not None:
            d = port.stopListening()
            if isinstance(d, Deferred):
                return d.addCallback(lambda _: None)
        return Deferred.fromCoroutine(_nothing())

    # -- requests ------------------------------------------------------------------------------

    def rcon(self, command: str) -> Deferred[str]:
        """Run ``command``; fire with the whole reply text (``print`` chunks joined).

        Fails with ``ValueError`` (unsendable text), :class:`RconPasswordRejectedError`,
        :class:`RconQueueFullError`, :class:`RconTimeoutError` or :class:`RconStoppedError`.
        """
        try:
            datagram = encode_rcon(self._password.reveal(), command)
        except ValueError as e:
            return fail(e)
        if self._rejected_at is not None:
            waited = self._reactor.seconds() - self._rejected_at
            if waited < self.auth_failure_delay:
                return fail(RconPasswordRejectedError(
                    f"rcon password rejected by {self.name} "
                    f"(not retrying for another {self.auth_failure_delay - waited:.0f} s)"
                ))
        return self._enqueue("rcon", datagram)

    def getstatus(self) -> Deferred[ServerStatus]:
        """Ask for the server's info and player list."""
        return self._enqueue("getstatus", encode_getstatus())

    def getinfo(self) -> Deferred[dict[str, str]]:
        """Ask for the server's short info (``infoResponse`` keys)."""
        return self._enqueue("getinfo", encode_getinfo())

    def _enqueue(self, kind: _Kind, datagram: bytes) -> Deferred[Any]:
        if not self._running:
            return fail(RconStoppedError(f"rcon client for {self.name} is not running"))
        if self.pending >= self.max_pending:
            return fail(RconQueueFullError(
                f"{self.max_pending} requests already waiting for {self.name}"
            ))

        def cancel(d: Deferred[Any]) -> None:
            if request in self._queue:
                self._queue.remove(request)

        request = _Request(kind, datagram, Deferred(cancel))
        self._queue.append(request)
        self._pump()
        return request.deferred

    def _pump(self) -> None:
        if self._current is not None or self._port is None or self._pump_timer is not None:
            return
        if not self._queue:
            return
        wait = self._bucket.take(self._reactor.seconds())
        if wait > 0:
            self._pump_timer = self._reactor.callLater(wait, self._pumped)
            return
        request = self._queue.popleft()
        self._current = request
        self._port.write(request.datagram)
        self._reply_timer = self._reactor.callLater(self.timeout, self._no_reply)

    def _pumped(self) -> None:
        self._pump_timer = None
        self._pump()

    def _done(self) -> _Request | None:
        request, self._current = self._current, None
        timer, self._reply_timer = self._reply_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        return request

    def _no_reply(self) -> None:
        self._reply_timer = None
        request = self._done()
        if request is not None:
            self.notifier.set(LinkState.DOWN, f"no reply within {self.timeout} s")
            request.deferred.errback(RconTimeoutError(
                f"no reply from {self.name} within {self.timeout} s to {request.kind}"
            ))
        # Wait one quiet period more so that a very late reply is not taken for the next
        # request's (UDP replies carry no request id).
        if self._running and self._pump_timer is None:
            self._pump_timer = self._reactor.callLater(self.quiet, self._pumped)

    def _refused(self) -> None:
        if self._running:
            self.notifier.set(LinkState.DOWN, "port unreachable")

    def _datagram(self, datagram: bytes) -> None:
        message = parse_datagram(datagram)
        request = self._current
        if message is None or request is None or message.keyword != _EXPECT[request.kind]:
            return  # garbage, or a late answer to a request that timed out
        if request.kind == "rcon":
            request.chunks.append(print_text(message.payload))
            timer = self._reply_timer
            if timer is not None and timer.active():
                timer.cancel()
            self._reply_timer = self._reactor.callLater(self.quiet, self._quiet)
            return
        self._done()
        self._answered()
        if request.kind == "getstatus":
            status = parse_status_response(message.payload)
            self.last_status = status
            request.deferred.callback(status)
        else:
            request.deferred.callback(parse_info_response(message.payload))
        self._pump()

    def _answered(self) -> None:
        if self.notifier.state is not LinkState.AUTH_FAILED:
            self.notifier.set(LinkState.UP)

    def _quiet(self) -> None:
        self._reply_timer = None
        request = self._done()
        if request is None:
            return
        text = "".join(request.chunks)
        if is_bad_password(text):
            if self._rejected_at is None:
                self._log.error(
                    "rcon password rejected by {name}; rcon commands fail for {minutes:.0f} "
                    "minutes (fix its password file or environment variable and restart)",
                    name=self.name, minutes=self.auth_failure_delay / 60,
                )
            self._rejected_at = self._reactor.seconds()
            self.notifier.set(LinkState.AUTH_FAILED, "rcon password rejected")
            request.deferred.errback(RconPasswordRejectedError(
                f"rcon password rejected by {self.name} ({text.strip()})"
            ))
        else:
            self._rejected_at = None
            self.notifier.set(LinkState.UP)
            request.deferred.callback(text)
        self._pump()

    def _poll_status(self) -> None:
        def failed(failure: Failure) -> None:
            self._log.debug("getstatus of {name} failed: {why}",
                            name=self.name, why=failure.getErrorMessage())

        if self.pending < self.max_pending:
            self.getstatus().addErrback(failed)


async def _nothing() -> None:
    return None
