"""Helpers for the tests: real loopback servers and real WebSocket clients."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from gamews.api import IConnection

LOOPBACK = "tcp:0:interface=127.0.0.1"


def real_reactor() -> Any:
    """The global reactor (integration tests run on real loopback sockets)."""
    return _reactor


def capture_logs(case: Any) -> list[LogEvent]:
    """Every log event from now to the end of ``case`` (a trial TestCase)."""
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


def logged_errors(events: list[LogEvent]) -> list[str]:
    """The events among ``events`` that are errors (a failure or ``isError``), formatted."""
    return [formatEvent(e) for e in events if "log_failure" in e or e.get("isError")]


def echo(child: IConnection, data: str | bytes) -> None:
    """Send ``data`` back to ``child`` as it came."""
    if isinstance(data, str):
        child.send_text(data)
    else:
        child.send_binary(data)


def parse_options(case: Any, argv: list[str]) -> Any:
    """``twistd gamews ARGV``'s Options, parsed (nothing is built)."""
    from gamews.tap import Options

    options = Options()
    options.parseOptions(argv)
    return options


def service_of(case: Any, argv: list[str]) -> Any:
    """The service ``twistd gamews ARGV`` builds; the demo's temporary directory is
    removed when test ``case`` ends."""
    from gamews.service import GamewsService
    from gamews.tap import makeService

    service = makeService(parse_options(case, argv))
    assert isinstance(service, GamewsService)
    if service.demo is not None:
        case.addCleanup(service.demo.cleanup)
    return service


def port_of(address: Any) -> int:
    """The port number of a listening address."""
    port: int = address.port
    return port


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def poll_until(predicate: Callable[[], bool], timeout: float = 5.0,
               interval: float = 0.01) -> Deferred[None]:
    """Fire once ``predicate()`` is true; fail with ``TimeoutError`` after ``timeout``."""
    clock: IReactorCore = _reactor
    elapsed = 0.0

    async def wait() -> None:
        nonlocal elapsed
        while not predicate():
            if elapsed >= timeout:
                raise TimeoutError(f"condition not met within {timeout}s")
            await deferLater(clock, interval)  # type: ignore[arg-type]
            elapsed += interval

    return Deferred.fromCoroutine(wait())


class Client(WebSocketClientProtocol):
    """An Autobahn client that records what happens, with Deferreds to wait on."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[tuple[bool, int | None, str | None]] = Deferred()
        self.messages: list[str | bytes] = []
        self._waiting: list[tuple[int, Deferred[list[str | bytes]]]] = []
        self.subprotocol: str | None = None

    def onConnect(self, response: Any) -> None:
        self.subprotocol = response.protocol

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append(payload if isBinary else payload.decode("utf-8"))
        ready = [(n, d) for n, d in self._waiting if len(self.messages) >= n]
        self._waiting = [(n, d) for n, d in self._waiting if len(self.messages) < n]
        for _, d in ready:
            d.callback(list(self.messages))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"closed before open: {code} {reason}"))
        self.closed.callback((wasClean, code, reason))

    def wait_messages(self, n: int) -> Deferred[list[str | bytes]]:
        """Fire with all messages once ``n`` have arrived."""
        d: Deferred[list[str | bytes]] = Deferred()
        if len(self.messages) >= n:
            d.callback(list(self.messages))
        else:
            self._waiting.append((n, d))
        return d

    def pause_reading(self) -> None:
        """Stop reading from the socket (a client that stops answering)."""
        cast(Any, self.transport).pauseProducing()

    def resume_reading(self) -> None:
        """Read from the socket again."""
        cast(Any, self.transport).resumeProducing()

    def drop(self) -> None:
        """Close the TCP connection without a closing handshake."""
        cast(Any, self.transport).loseConnection()

    def send_text(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def send_binary(self, data: bytes) -> None:
        self.sendMessage(data, isBinary=True)


async def connect(port: int, path: str = "/echo", *, protocols: list[str] | None = None,
                  headers: dict[str, str] | None = None, origin: str | None = None,
                  source: str | None = None, tls: Any = None, **options: Any) -> Client:
    """Open an Autobahn client on ``ws://127.0.0.1:PORT/PATH`` (from the loopback
    address ``source`` if given; ``wss://`` with ``tls``, a client TLS connection creator
    such as ``optionsForClientTLS(...)``) and wait for the handshake."""
    factory = WebSocketClientFactory(
        f"{'wss' if tls is not None else 'ws'}://127.0.0.1:{port}{path}",
        protocols=protocols or [], headers=headers, origin=origin, reactor=_reactor,
    )
    factory.protocol = Client
    factory.setProtocolOptions(autoPingInterval=0, **options)
    bind = f":bindAddress={source}" if source else ""
    endpoint = clientFromString(_reactor, f"tcp:127.0.0.1:{port}:timeout=5{bind}")
    if tls is not None:
        endpoint = wrapClientTLS(tls, endpoint)
    proto = factory.buildProtocol(None)
    client: Client = await connectProtocol(endpoint, proto)
    await client.opened
    return client


class TwistdProcess(ProcessProtocol):
    """``twistd -n gamews ...`` (or any twistd command) run as a child process."""

    def __init__(self) -> None:
        self.output = b""
        self.errors = b""
        self.ended: Deferred[tuple[int | None, int | None]] = Deferred()
        """Fires with (exit code, signal) when the process ends."""

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback((getattr(reason.value, "exitCode", None),
                             getattr(reason.value, "signal", None)))

    def stopped_cleanly(self) -> bool:
        """Whether twistd logged its orderly shutdown (after SIGTERM it then
        re-raises the signal, so the exit status is 'killed by 15')."""
        return b"Server Shut Down." in self.output

    def signal(self, name: str) -> None:
        """Send a signal (``TERM``, ``KILL``) if the process is still running."""
        if not self.ended.called and self.transport is not None:
            cast(Any, self.transport).signalProcess(name)


REPO = Path(__file__).resolve().parents[1]


def spawn_twistd(args: list[str], *, pythonpath: list[str] | None = None,
                 cwd: str | None = None, prelude: str = "",
                 env: dict[str, str] | None = None) -> TwistdProcess:
    """Start ``twistd --pidfile= ARGS`` with the repository on ``PYTHONPATH`` (and ``env``
    added to the environment), after running the Python statements ``prelude`` in the
    new process."""
    return spawn_python(["-c", f"{prelude}\nfrom twisted.scripts.twistd import run; run()",
                         "--pidfile=", *args], pythonpath=pythonpath, cwd=cwd, env=env)


def spawn_python(args: list[str], *, pythonpath: list[str] | None = None,
                 cwd: str | None = None, env: dict[str, str] | None = None) -> TwistdProcess:
    """Start ``python ARGS`` (``-m gamews ...``) with the repository on ``PYTHONPATH``."""
    process = TwistdProcess()
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([*(pythonpath or []), str(REPO)])
    _reactor.spawnProcess(process, sys.executable, [sys.executable, *args], env=env,
                          path=cwd or str(REPO))
    return process


def can_connect(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
