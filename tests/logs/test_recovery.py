"""Log sources keep working when the game server goes away and comes back (real peers on
loopback): a UDP log sender that restarts on another source port, a tailed ``games.log``
that disappears while OpenArena is down and is written again by the restarted server, and
an HTTP log sender whose connection dies in the middle of a POST."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from gamews.events import Envelope, EventBus, Kill
from gamews.logs.common import AllowedHosts, LogStats
from gamews.logs.service import LinePipeline, log_source_from_table
from gamews.logs.source import parse_line
from gamews.logs.tail import FileTailer, FileTailService
from gamews.logs.udp import SourceLogReceiver, UdpLogService
from tests.logs.test_http import BODY, Body
from tests.logs.test_udp import LINE, packet
from tests.openarena import OpenArenaServer, free_udp_port, require_openarena
from tests.rcon.peers import poll_until
from tests.support import capture_logs, logged_errors, real_reactor


class UdpSenderRestartTests(TestCase):
    """The UDP log port keeps taking lines from a game server that restarted."""

    timeout = 20

    async def test_sender_restarts_on_another_port(self) -> None:
        """Lines from a first sender, then (after it closed) from a new one on another source
        port of the same host, all reach the bus; no error is logged."""
        reactor = real_reactor()
        events = capture_logs(self)
        bus = EventBus(reactor)
        got: list[Envelope] = []
        bus.subscribe(got.append, server="cs")
        receiver = SourceLogReceiver(LinePipeline(bus, "cs", parse_line),
                                     allowed=AllowedHosts(["127.0.0.1"]), secret=None,
                                     stats=LogStats())
        service = UdpLogService(reactor, 0, receiver, interface="127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        address: Any = await service.when_listening()
        for n in (1, 2):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.bind(("127.0.0.1", 0))
                sender.sendto(packet(LINE.replace(b"ak47", f"gun{n}".encode())),
                              ("127.0.0.1", address.port))
                await poll_until(reactor, lambda n=n: len(got) == n)  # type: ignore[misc]
        self.assertEqual([e.event.weapon for e in got if isinstance(e.event, Kill)],
                         ["gun1", "gun2"])
        self.assertEqual(logged_errors(events), [])


class TailedFileComesBackTests(TestCase):
    """``games.log`` followed across an OpenArena stop, removal of the file, and restart."""

    timeout = 60

    async def test_file_removed_and_written_again(self) -> None:
        """The first server's InitGame is read; the file is removed while the server is
        down; the restarted server's InitGame in the new file is read too."""
        require_openarena()
        reactor = real_reactor()
        events = capture_logs(self)
        home = Path(self.mktemp()).resolve()
        port = free_udp_port()
        lines: list[str] = []
        tailer = FileTailer(home / "baseoa" / "games.log", lines.append)
        service = FileTailService(tailer, clock=reactor, interval=0.05)
        service.startService()
        self.addCleanup(service.stopService)

        def inits() -> int:
            return sum(" InitGame: " in line for line in lines)

        first = OpenArenaServer(rcon_password="tailtest", bots=("Sarge",), port=port, home=home)
        self.addCleanup(first.stop)
        first.start()
        await poll_until(reactor, lambda: inits() == 1)
        first.stop()
        (home / "baseoa" / "games.log").unlink()
        second = OpenArenaServer(rcon_password="tailtest", bots=("Sarge",), port=port,
                                 home=home)
        self.addCleanup(second.stop)
        second.start()
        await poll_until(reactor, lambda: inits() == 2)
        self.assertEqual(tailer.stats.rotations, 1)  # the new file, read from its start
        self.assertEqual(logged_errors(events), [])


class _Abandon(Protocol):
    """Sends half a POST and drops the connection."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"POST /logs/cs2/s3cr3t HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 1000\r\n\r\nL 11/28/2026")
        self.transport.abortConnection()  # type: ignore[attr-defined]


class HttpSenderDiesTests(TestCase):
    """The HTTP log resource takes the next POST after a sender died mid-request."""

    timeout = 20

    async def test_post_after_aborted_post(self) -> None:
        """A POST cut off in the middle changes nothing; the next whole POST is read."""
        from gamews.registry import Registry

        reactor = real_reactor()
        events = capture_logs(self)
        registry = Registry(reactor=reactor)
        self.addCleanup(registry.shutdown)
        mounts: list[Any] = []

        def mount(path: str, resource: Any) -> Any:
            m = registry.mount("tcp:0:interface=127.0.0.1", path, resource, owner="logs")
            mounts.append(m)
            return m

        bus = EventBus(reactor)
        got: list[Envelope] = []
        bus.subscribe(got.append, server="cs2")
        service = log_source_from_table(
            {"name": "cs2", "rcon": "127.0.0.1:27015", "log": "http:/logs/cs2",
             "log_secret_env": "CS2_LOG"},
            bus=bus, reactor=reactor, where="server[0]", environ={"CS2_LOG": "s3cr3t"},
            mount=mount)
        assert service is not None
        service.startService()
        self.addCleanup(service.stopService)
        address: Any = await mounts[0].when_listening()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), _Abandon())
        response = await Agent(reactor).request(
            b"POST", f"http://127.0.0.1:{address.port}/logs/cs2/s3cr3t".encode(),
            Headers({b"content-type": [b"text/plain"]}), Body(BODY))
        await readBody(response)
        self.assertEqual(response.code, 200)
        await poll_until(reactor, lambda: len(got) == 3)
        self.assertEqual(logged_errors(events), [])
