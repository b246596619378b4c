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
* The socket is connected to the server once it has answered (until then datagrams from any
  other address are dropped here), so when the server goes away an ICMP "port unreachable"
  reaches us and the reactor closes the port.  That is a link event: the link goes ``DOWN``
  ("port unreachable"), the request in flight fails with :class:`RconLinkLostError` (it
  never reached a server), a new, unconnected port is opened at once (it gets no ICMP
  errors, so it is not closed again while the server is away), and the server is probed
  with ``getstatus`` after a backoff (1 s doubling to 60 s, with jitter) until it answers;
  the link is then up and the port connected again.  Requests sent meanwhile fail with
  :class:`RconTimeoutError` after ``timeout`` seconds; a request that cannot be sent (no
  port: the host name does not resolve) fails the same way once it has waited that long.
* One log line per change (``rcon link to alpha down: port unreachable; retrying in 8 s``,
  ``rcon link to alpha up``), through :class:`gamews.rcon.link.StateNotifier`, and two of
  Twisted's per outage (the old port closed, the new one opened), not per probe.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.ratelimit import TokenBucket
from gamews.rcon.link import (
    LinkState,
    RconError,
    RconLinkLostError,
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
    queued_at: float
    chunks: list[str] = field(default_factory=list)


class _Quake3Protocol(DatagramProtocol):
    noisy = False

    def __init__(self, client: Quake3RconClient) -> None:
        self._client = client

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._client._datagram(datagram, addr)

    def connectionRefused(self) -> None:
        self._client._port_lost(self, "port unreachable", close=True)

    def stopProtocol(self) -> None:
        # The reactor closes a connected UDP port on an ICMP error (our own stop and
        # _port_lost forget the protocol first, so this is then ignored).
        self._client._port_lost(self, "port unreachable", close=False)


class Quake3RconClient:
    """An rcon/getstatus/getinfo client for one Quake 3-family server (UDP, paced).

    ``reactor`` (UDP + time + resolver) defaults to the global reactor, resolved when the
    client is made.  ``timeout``: seconds to wait for the first reply datagram once a
    request is sent; ``quiet``: silence that ends an rcon reply; ``max_pending``: bound of
    the queue.  ``burst``/``interval``: the pacing budget (the server allows 10, then one
    per second; the defaults leave 3 requests and a 10 % margin to other senders).
    ``retry_policy(attempt) -> seconds`` spaces the probes of a server that does not answer
    (default: 1 s doubling to 60 s, + up to 1 s of jitter); probes are ``getstatus``, sent
    only with a ``status_interval``.
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
        retry_policy: Callable[[int], float] | None = None,
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
        self.notifier = StateNotifier(name, self._reactor, self._log,
                                      label=f"rcon link to {name}")
        self._policy = retry_policy or backoffPolicy(1.0, 60.0, 2.0, random.random)
        self._failures = 0
        self._expiry: IDelayedCall | None = None
        self._probe_timer: IDelayedCall | None = None
        self._protocol: _Quake3Protocol | None = None
        self._connected = False
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
        self.notifier.set(LinkState.DOWN, f"cannot resolve {self.host}", retry_in=30.0)
        self._pump_timer = self._reactor.callLater(30.0, self._retry_resolve)
        self._arm_expiry()

    def _retry_resolve(self) -> None:
        self._pump_timer = None
        if self._running:
            self._reactor.resolve(self.host).addCallbacks(self._bind, self._resolve_failed)

    def _bind(self, address: str) -> None:
        if not self._running:
            return
        self._address = address
        if self.status_interval and self._poll is None:
            self._poll = LoopingCall(self._poll_status)
            self._poll.clock = self._reactor
            self._poll.start(self.status_interval, now=False)
        self._open()

    def _open(self, *, probe: bool = True) -> bool:
        """Open a UDP port for the server (connected once the server answers) and, with
        ``probe``, ask for its status now; False if the port could not be opened (retried
        after a backoff)."""
        self._pump_timer = None
        address = self._address
        if not self._running or address is None or self._port is not None:
            return False
        ip = ipaddress.ip_address(address)
        interface = ("::1" if ip.version == 6 else "127.0.0.1") if ip.is_loopback else (
            "::" if ip.version == 6 else "")
        protocol = _Quake3Protocol(self)
        try:
            port = self._reactor.listenUDP(0, protocol, interface=interface)
        except Exception as e:
            self._retry_later(f"cannot open a UDP socket: {e}")
            return False
        self._port, self._protocol, self._connected = port, protocol, False
        if probe and self.status_interval and not self._queue:
            self._poll_status()  # the link is up when the server answers
        self._pump()
        return True

    def _port_lost(self, protocol: _Quake3Protocol, reason: str, *, close: bool) -> None:
        """The port of ``protocol`` got an ICMP error (``close`` it) or was closed under us:
        fail the request in flight, open an unconnected port at once and probe the server
        after a backoff."""
        if protocol is not self._protocol or not self._running:
            return
        port, self._port, self._protocol = self._port, None, None
        if port is not None and close:
            port.stopListening()
        request = self._done()
        if self._open(probe=False):
            self._link_down(reason)
        if request is not None:  # told after the link's new state, which its caller may read
            request.deferred.errback(RconLinkLostError(
                f"{self.name} unreachable ({reason}): the {request.kind} request never "
                "reached a server"))

    def _link_down(self, reason: str) -> None:
        """Say the link is down because of ``reason`` and probe the server with backoff."""
        delay = self._schedule_probe()
        if self.notifier.state is not LinkState.AUTH_FAILED:
            self.notifier.set(LinkState.DOWN, reason, retry_in=delay)

    def _schedule_probe(self) -> float | None:
        """Probe the server after the next backoff delay (None: no probes, no status
        interval); return that delay."""
        timer, self._probe_timer = self._probe_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if not self.status_interval:
            return None
        self._failures += 1
        delay = self._policy(self._failures)
        self._probe_timer = self._reactor.callLater(delay, self._probe)
        return delay

    def _probe(self) -> None:
        self._probe_timer = None
        if not self._running or self._port is None or self.notifier.state is LinkState.UP:
            return
        current = self._current
        if not any(r.kind == "getstatus" for r in self._queue) and (
                current is None or current.kind != "getstatus"):
            self._poll_status()
        self._schedule_probe()

    def _connect(self) -> None:
        """The server answered: connect the port to it, so that ICMP errors reach us."""
        if self._connected or self._port is None or self._address is None:
            return
        self._port.connect(self._address, self.port)
        self._connected = True

    def _from_server(self, addr: Any) -> bool:
        try:
            return (ipaddress.ip_address(addr[0]) == ipaddress.ip_address(self._address or "")
                    and addr[1] == self.port)
        except (ValueError, TypeError, IndexError):
            return False

    def _retry_later(self, reason: str) -> None:
        self._failures += 1
        delay = self._policy(self._failures)
        timer = self._pump_timer
        if timer is not None and timer.active():
            timer.cancel()
        self._pump_timer = self._reactor.callLater(delay, self._open)
        if self.notifier.state is not LinkState.AUTH_FAILED:
            self.notifier.set(LinkState.DOWN, reason, retry_in=delay)
        self._arm_expiry()

    def stop(self) -> Deferred[None]:
        """Close the socket; queued and running requests fail with RconStoppedError."""
        self._running = False
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        self._poll = None
        for timer in (self._reply_timer, self._pump_timer, self._expiry, self._probe_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._reply_timer = self._pump_timer = self._expiry = self._probe_timer = None
        stopped = RconStoppedError(f"rcon client for {self.name} stopped")
        current, self._current = self._current, None
        queue, self._queue = self._queue, deque()
        for request in ([current] if current is not None else []) + list(queue):
            request.deferred.errback(stopped)
        port, self._port, self._protocol = self._port, None, None
        self.notifier.set(LinkState.STOPPED)
        if port is not None:
            d = port.stopListening()
            if isinstance(d, Deferred):
                return d.addCallback(lambda _: None)
        return Deferred.fromCoroutine(_nothing())

    def set_password(self, password: Secret) -> None:
        """Use ``password`` for the rcon commands sent from now on (a reload); a rejected
        password's wait is over."""
        self._password = password
        if self._rejected_at is not None:
            self._rejected_at = None
            self.notifier.set(LinkState.CONNECTING)

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

        request = _Request(kind, datagram, Deferred(cancel), self._reactor.seconds())
        self._queue.append(request)
        self._pump()
        self._arm_expiry()
        return request.deferred

    def _arm_expiry(self) -> None:
        """While there is no port to send on, fail each queued request when it has waited
        ``timeout`` seconds (with a port, each request is sent in turn and has its own
        reply timeout; pacing and the queue bound limit the wait)."""
        if self._expiry is not None or not self._queue or self._port is not None:
            return
        wait = self._queue[0].queued_at + self.timeout - self._reactor.seconds()
        self._expiry = self._reactor.callLater(max(0.0, wait), self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if self._port is None:
            now = self._reactor.seconds()
            why = self.notifier.status.detail or self.notifier.state.value
            while self._queue and self._queue[0].queued_at + self.timeout <= now:
                request = self._queue.popleft()
                request.deferred.errback(RconTimeoutError(
                    f"{self.name} unreachable ({why}): the {request.kind} request waited "
                    f"{self.timeout} s unsent"))
        self._arm_expiry()

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
        if self._connected:
            self._port.write(request.datagram)
        else:
            self._port.write(request.datagram, (self._address, self.port))
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
            if self.notifier.state is not LinkState.DOWN:
                self._link_down(f"no reply to {request.kind} within {self.timeout:g} s")
            elif self._probe_timer is None:
                self._schedule_probe()  # keep probing; the reason given stays
            request.deferred.errback(RconTimeoutError(
                f"no reply from {self.name} within {self.timeout} s to {request.kind}"
            ))
        # Wait one quiet period more so that a very late reply is not taken for the next
        # request's (UDP replies carry no request id).
        if self._running and self._pump_timer is None:
            self._pump_timer = self._reactor.callLater(self.quiet, self._pumped)

    def _datagram(self, datagram: bytes, addr: Any) -> None:
        if not self._connected and not self._from_server(addr):
            return  # not the game server (a connected port gets nothing else)
        message = parse_datagram(datagram)
        request = self._current
        if message is None or request is None or message.keyword != _EXPECT[request.kind]:
            return  # garbage, or a late answer to a request that timed out
        self._connect()
        self._up()
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

    def _up(self) -> None:
        """The server answered: the backoff starts over, probing stops."""
        self._failures = 0
        timer, self._probe_timer = self._probe_timer, None
        if timer is not None and timer.active():
            timer.cancel()

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
            # A poll that fails for the link's sake moved the link DOWN, and that was logged
            # once with its reason; anything else is a bug worth a traceback.
            if not failure.check(RconError):
                self._log.failure("getstatus of {name} failed", failure, name=self.name)

        if self.pending < self.max_pending:
            self.getstatus().addErrback(failed)


async def _nothing() -> None:
    return None
