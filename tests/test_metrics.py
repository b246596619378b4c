"""Prometheus metrics and JSON-lines logs: units on a clock, scrapes of a live service over
loopback after real WebSocket, RCON and log traffic, and a real ``twistd`` run."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from gamews import logjson
from gamews.api import IConnection
from gamews.config import WebSocketLimits
from gamews.endpoints import endpoint_setting, is_loopback_endpoint
from gamews.errors import ConfigError
from gamews.events import EventBus
from gamews.logs.common import MAX_LINE, LogStats
from gamews.logs.service import LinePipeline
from gamews.logs.source import parse_line
from gamews.logs.udp import OOB, UdpLogService
from gamews.metrics import (
    DEFAULT_METRICS_LISTEN,
    GamewsMetrics,
    MetricsConfig,
    MetricsService,
)
from gamews.plugins.echo import EchoPlugin
from gamews.rcon.link import LinkState, RconTimeoutError
from gamews.rcon.server import GameServer, GameServerConfig
from gamews.registry import Registry
from gamews.secret import Secret
from gamews.service import GamewsService
from gamews.settings import parse_settings
from gamews.stats import handshake_reason
from gamews.tap import Options
from gamews.websocket import GamewsServerProtocol
from tests.rcon.peers import RconxPeer
from tests.support import (
    LOOPBACK,
    connect,
    free_port,
    poll_until,
    port_of,
    real_reactor,
    service_of,
    spawn_twistd,
)
from tests.test_websocket_units import Transport, handshake, masked

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PASSWORD = "hunter2-rcon-7f3a"
LOG_SECRET = "80211"
KILL = ('L 11/28/2026 - 09:30:01: "Ann<2><[U:1:5]><CT>" [1 2 3] killed '
        '"Bot<3><BOT><TERRORIST>" [4 5 6] with "ak47" (headshot)')


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or ``None`` if it is not there."""
    return found.get((name, frozenset(labels.items())))


def check_rcon(test: SynchronousTestCase, found: Samples, outcomes: dict[str, int], *,
               timed: int) -> float:
    """Assert game server alpha's command counts by outcome, how many were timed and that
    its link is up; return the seconds the timed commands took in all."""
    for outcome, n in outcomes.items():
        test.assertEqual(value(found, "gamews_rcon_commands_total", server="alpha",
                               outcome=outcome), n, outcome)
    test.assertEqual(value(found, "gamews_rcon_command_duration_seconds_count",
                           server="alpha"), timed)
    test.assertEqual(value(found, "gamews_rcon_link_state", server="alpha", state="up"), 1)
    total = value(found, "gamews_rcon_command_duration_seconds_sum", server="alpha")
    assert total is not None
    return total


def log_packet(line: str, secret: str | None = None) -> bytes:
    """A Source log datagram (``S`` with a secret, else ``R``)."""
    head = OOB + (b"R" if secret is None else b"S" + secret.encode())
    return head + line.encode() + b"\n\x00"


# -- units ------------------------------------------------------------------------------


class EndpointTests(SynchronousTestCase):
    """Where metrics are served: off unless asked, loopback by default."""

    def test_default_is_loopback(self) -> None:
        """A [metrics] table without listen serves on loopback port 9108."""
        config = MetricsConfig.from_table({})
        self.assertEqual(config.listen, DEFAULT_METRICS_LISTEN)
        self.assertTrue(is_loopback_endpoint(config.listen))

    def test_bare_port_is_loopback(self) -> None:
        """A bare port number (string or TOML integer) means that port on loopback."""
        self.assertEqual(endpoint_setting("9200", "k"), "tcp:9200:interface=127.0.0.1")
        self.assertEqual(MetricsConfig.from_table({"listen": 9201}).listen,
                         "tcp:9201:interface=127.0.0.1")

    def test_bad_values_name_the_key(self) -> None:
        """A malformed endpoint or an unknown key is a ConfigError naming the key."""
        cases: list[tuple[dict[str, Any], str]] = [({"listen": "tcp:nope"}, "metrics.listen"),
                                                   ({"listen": True}, "metrics.listen"),
                                                   ({"port": 1}, "metrics.port")]
        for table, key in cases:
            with self.assertRaises(ConfigError) as raised:
                MetricsConfig.from_table(table)
            self.assertEqual(raised.exception.key, key)

    def test_off_unless_asked(self) -> None:
        """Without --metrics or [metrics], no metrics service is built."""
        gamews = service_of(self, ["--listen", "tcp:0:interface=127.0.0.1", "--config",
                                   self.config_file("")])
        self.assertIsNone(gamews.metrics)
        self.assertNotIn("metrics", [s.name for s in gamews])

    def test_option_and_table(self) -> None:
        """--metrics PORT serves on loopback and overrides the [metrics] table's listen."""
        path = self.config_file('[metrics]\nlisten = "tcp:9300:interface=127.0.0.1"\n')
        for argv, expected in [([], "tcp:9300:interface=127.0.0.1"),
                               (["--metrics", "9301"], "tcp:9301:interface=127.0.0.1")]:
            service = service_of(self, ["--config", path, *argv]).getServiceNamed("metrics")
            assert isinstance(service, MetricsService)
            self.assertEqual(service.endpoint, expected)

    def test_default_binds_loopback(self) -> None:
        """The default metrics endpoint binds 127.0.0.1:9108, nothing wider."""
        reactor = MemoryReactorClock()
        settings = parse_settings({"listen": "tcp:8080:interface=127.0.0.1", "demo": False,
                                   "plugins": [], "metrics": {}, "archive": False},
                                  plugins={})
        service = GamewsService(settings, reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        bound = {(port, interface) for port, _, _, interface in reactor.tcpServers}
        self.assertEqual(bound, {(8080, "127.0.0.1"), (9108, "127.0.0.1")})

    def config_file(self, text: str) -> str:
        """A config file without the demo, with ``text`` appended."""
        path = Path(self.mktemp())
        path.write_text('demo = false\nplugins = ["echo"]\n' + text)
        return str(path)


class HandshakeReasonTests(SynchronousTestCase):
    """Handshake failure labels are bounded words."""

    def test_reasons(self) -> None:
        """gamews's own refusals by name; a plugin's free text never becomes a label."""
        self.assertEqual(handshake_reason(403, "origin not allowed"), "origin")
        self.assertEqual(handshake_reason(503, "too many connections from this address"),
                         "max_connections_per_ip")
        self.assertEqual(handshake_reason(400, "HTTP Upgrade header missing"), "bad_request")
        self.assertEqual(handshake_reason(408, "timeout"), "timeout")
        self.assertEqual(handshake_reason(403, "token alice-secret invalid"), "plugin")


class CollectorUnitTests(SynchronousTestCase):
    """The collector over a registry driven by hand on a MemoryReactorClock."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.registry = Registry(WebSocketLimits(handshake_timeout=5, ping_interval=0),
                                 reactor=self.clock)
        self.metrics = GamewsMetrics(self.registry, {}, {})
        self.children: list[IConnection] = []

        def incoming(child: IConnection) -> None:
            self.children.append(child)
            child.hook(on_message=lambda c, d: c.send_text(str(d) * 2))

        self.registry.open("tcp:8080:interface=127.0.0.1", "/ws", owner="p", incoming=incoming)

    def protocol(self) -> tuple[GamewsServerProtocol, Transport]:
        factory = self.registry.ports()[0].routes["/ws"].factory
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        protocol = factory.buildProtocol(address)
        assert isinstance(protocol, GamewsServerProtocol)
        transport = Transport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def scrape(self) -> Samples:
        body, content_type = self.metrics.exposition()
        self.assertTrue(content_type.startswith("text/plain; version=0.0.4"), content_type)
        return samples(body.decode())

    def test_messages_and_connections(self) -> None:
        """A message in and its reply out are counted with their payload bytes; the open
        child shows in the connection gauge of its path and plugin."""
        protocol, _ = self.protocol()
        protocol.dataReceived(handshake())
        protocol.dataReceived(masked(0x1, b"abc"))
        found = self.scrape()
        self.assertEqual(value(found, "gamews_websocket_connections", path="/ws", plugin="p"), 1)
        self.assertEqual(value(found, "gamews_websocket_admitted_connections", path="/ws"), 1)
        self.assertEqual(value(found, "gamews_websocket_connections_accepted_total",
                               path="/ws"), 1)
        self.assertEqual(value(found, "gamews_websocket_messages_received_total", path="/ws"), 1)
        self.assertEqual(value(found, "gamews_websocket_received_bytes_total", path="/ws"), 3)
        self.assertEqual(value(found, "gamews_websocket_messages_sent_total", path="/ws"), 1)
        self.assertEqual(value(found, "gamews_websocket_sent_bytes_total", path="/ws"), 6)
        protocol.connectionLost()
        found = self.scrape()
        self.assertEqual(value(found, "gamews_websocket_connections", path="/ws", plugin="p"), 0)
        self.assertEqual(value(found, "gamews_websocket_admitted_connections", path="/ws"), 0)

    def test_bad_request_and_timeout(self) -> None:
        """A malformed upgrade counts as bad_request (400), a silent client as timeout."""
        protocol, _ = self.protocol()
        protocol.dataReceived(handshake().replace(b"Version: 13", b"Version: 99"))
        self.protocol()
        self.clock.advance(5.1)
        found = self.scrape()
        bad = [v for (name, labels), v in found.items()
               if name == "gamews_websocket_handshake_failures_total"
               and ("reason", "bad_request") in labels]
        self.assertEqual(bad, [1])
        self.assertEqual(value(found, "gamews_websocket_handshake_failures_total", path="/ws",
                               status="408", reason="timeout"), 1)

    def test_broadcast_counts_each_child(self) -> None:
        """A broadcast reaching two children counts two messages and twice the bytes."""
        for _ in range(2):
            protocol, _ = self.protocol()
            protocol.dataReceived(handshake())
        listener = self.registry.ports()[0].handles[0]
        self.assertEqual(listener.broadcast("hello"), 2)  # type: ignore[union-attr]
        found = self.scrape()
        self.assertEqual(value(found, "gamews_websocket_messages_sent_total", path="/ws"), 2)
        self.assertEqual(value(found, "gamews_websocket_sent_bytes_total", path="/ws"), 10)

    def test_counters_outlive_the_path(self) -> None:
        """Closing the last listener of a path keeps its counters (they never go back)."""
        protocol, _ = self.protocol()
        protocol.dataReceived(handshake())
        protocol.dataReceived(masked(0x1, b"abc"))
        self.registry.ports()[0].handles[0].close()
        self.assertEqual(value(self.scrape(), "gamews_websocket_messages_received_total",
                               path="/ws"), 1)


class FakeClient:
    """Stands in for a game server's RCON client: replies when the test says."""

    state = LinkState.UP
    pending = 0

    def __init__(self) -> None:
        self.waiting: list[Deferred[str]] = []

    def rcon(self, command: str) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.waiting.append(d)
        return d


class RconUnitTests(SynchronousTestCase):
    """RCON commands counted by outcome, successful ones timed on the clock."""

    def test_outcomes_and_latency(self) -> None:
        """Two replies after 0.25 s and 1.5 s and a timeout: counts by outcome, a latency
        sum of 1.75 s, and never the command text."""
        clock = Clock()
        config = GameServerConfig("alpha", "source", "127.0.0.1", 27015, Secret(PASSWORD))
        server = GameServer(config, reactor=clock)
        fake = FakeClient()
        server.client = fake  # type: ignore[assignment]
        metrics = GamewsMetrics(Registry(reactor=MemoryReactorClock()), {"alpha": server}, {})
        results: list[object] = []
        for delay in (0.25, 1.5):
            server.rcon(f"rcon_password {PASSWORD}").addCallback(results.append)
            clock.advance(delay)
            fake.waiting.pop().callback("ok")
        server.rcon("status").addErrback(results.append)
        fake.waiting.pop().errback(RconTimeoutError("slow"))
        self.assertEqual(results[:2], ["ok", "ok"])
        text = metrics.exposition()[0].decode()
        self.assertNotIn(PASSWORD, text)
        found = samples(text)
        label_values = {v for _, labels in found for _, v in labels}
        self.assertFalse(label_values & {"status", "rcon_password"}, label_values)
        self.assertEqual(check_rcon(self, found, {"ok": 2, "timeout": 1}, timed=2), 1.75)
        self.assertEqual(value(found, "gamews_rcon_link_state", server="alpha", state="down"), 0)

    def test_build_info_and_process(self) -> None:
        """gamews_build_info carries the version; the process collector reports CPU, memory
        and open file descriptors."""
        from gamews import __version__

        metrics = GamewsMetrics(Registry(reactor=MemoryReactorClock()), {}, {})
        found = samples(metrics.exposition()[0].decode())
        self.assertEqual(value(found, "gamews_build_info", version=__version__), 1)
        names = {name for name, _ in found}
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                     "process_open_fds"):
            self.assertIn(name, names)

    def test_registries_are_per_service(self) -> None:
        """Two services' metrics in one process do not collide (no global registry)."""
        first = GamewsMetrics(Registry(reactor=MemoryReactorClock()), {}, {})
        second = GamewsMetrics(Registry(reactor=MemoryReactorClock()), {}, {})
        self.assertIsNot(first.collector_registry, second.collector_registry)


class LinePipelineTests(SynchronousTestCase):
    """Log lines counted by event type, with parse misses."""

    def test_types_and_misses(self) -> None:
        """A kill, an unknown line and an over-long line: lines by type, too_long counted."""
        stats = LogStats()
        pipeline = LinePipeline(EventBus(Clock()), "alpha", parse_line, stats=stats)
        pipeline(KILL)
        pipeline("L 11/28/2026 - 09:30:02: nothing we know")
        pipeline("L 11/28/2026 - 09:30:03: " + "x" * MAX_LINE)
        self.assertEqual(dict(stats.events), {"kill": 1, "unknown": 2})
        self.assertEqual(stats.too_long, 1)
        self.assertNotIn("events", stats.as_dict())


class JsonLogUnitTests(SynchronousTestCase):
    """The JSON-lines observer and the options that switch it on."""

    def test_one_json_object_per_line(self) -> None:
        """Each event is one line of JSON with log_text; a failure's traceback is in it."""
        out = io.StringIO()
        log = Logger(namespace="gamews.test", observer=logjson.json_lines_observer(out))
        log.info("hello {who}", who="world", secret=Secret(PASSWORD))
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.failure("it broke")
        lines = out.getvalue().splitlines(keepends=True)
        self.assertEqual(len(lines), 2)
        self.assertNotIn("\x1e", out.getvalue())
        first, second = (json.loads(line) for line in lines)
        self.assertEqual(first["log_text"], "hello world")
        self.assertEqual(first["who"], "world")
        self.assertEqual(first["log_namespace"], "gamews.test")
        self.assertEqual(first["log_level"]["name"], "info")
        self.assertNotIn("log_logger", first)
        self.assertIn("ZeroDivisionError", second["log_text"])
        self.assertNotIn(PASSWORD, out.getvalue())

    def test_observer_file_from_environment(self) -> None:
        """``--logger gamews.logjson.observer`` writes to $GAMEWS_LOG_FILE when set."""
        path = Path(self.mktemp())
        self.patch(logjson, "_destination", None)
        self.patch(os, "environ", {**os.environ, logjson.LOG_FILE_VARIABLE: str(path)})
        observer = logjson.observer()
        Logger(namespace="gamews.test", observer=observer).info("to the file")
        self.addCleanup(observer.file.close)
        self.assertEqual(json.loads(path.read_text())["log_text"], "to the file")

    def test_log_format_option(self) -> None:
        """--log-format json makes twistd use gamews.logjson.observer on its --logfile."""
        self.patch(logjson, "_destination", None)
        options = Options()
        twistd = usage.Options()
        twistd.update({"logger": None, "logfile": "gamews.log", "nodaemon": False})
        options.parent = twistd
        options.parseOptions(["--log-format", "json", "--config", self.plain_config()])
        self.assertEqual(twistd["logger"], "gamews.logjson.observer")
        self.assertEqual(logjson._destination, "gamews.log")

    def test_log_format_conflicts(self) -> None:
        """--log-format json with twistd's --logger or outside twistd, or a bad format, is
        one error line."""
        cases: list[tuple[dict[str, Any] | None, list[str]]] = [
            (None, ["--log-format", "json"]),
            ({"logger": "x.y", "nodaemon": True}, ["--log-format", "json"]),
            ({"logger": None, "nodaemon": True}, ["--log-format", "xml"]),
        ]
        for twistd, argv in cases:
            err = io.StringIO()
            self.patch(sys, "stderr", err)
            options = Options()
            if twistd is not None:
                options.parent = usage.Options()
                options.parent.update(twistd)
            with self.assertRaises(SystemExit):
                options.parseOptions([*argv, "--config", self.plain_config()])
            self.assertIn("--log-format", err.getvalue())

    def plain_config(self) -> str:
        """A config file: echo only on an ephemeral loopback port."""
        path = Path(self.mktemp())
        path.write_text('demo = false\nplugins = ["echo"]\nlisten = "tcp:0:interface=127.0.0.1"\n')
        return str(path)


# -- a live service, scraped over loopback ------------------------------------------------


class Sender(DatagramProtocol):
    """Sends datagrams from an address of the test's choosing."""


class LiveMetricsTests(TestCase):
    """A GamewsService with echo, a game server (rconx peer, UDP log) and metrics on
    loopback; real clients, real datagrams, a real HTTP scrape."""

    timeout = 60

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        self.reactor = real_reactor()
        self.peer = RconxPeer(PASSWORD, lambda command: f"ran {command}")
        self.peer.start()
        self.addCleanup(self.peer.stop)
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        (base / "alpha.rcon").write_text(PASSWORD + "\n")
        (base / "alpha.logsecret").write_text(LOG_SECRET + "\n")
        settings = parse_settings({
            "listen": [LOOPBACK], "plugins": ["echo"],
            "metrics": {"listen": "tcp:0:interface=127.0.0.1"},
            "websocket": {"ping_interval": 0, "max_connections_per_ip": 3,
                          "max_message_size": 65536, "max_frame_size": 65536,
                          "max_send_buffer": 131072},
            "server": [{"name": "alpha", "kind": "source", "rcon": f"127.0.0.1:{self.peer.port}",
                        "password_file": "alpha.rcon", "log": "udp:0:interface=127.0.0.1",
                        "log_secret_file": "alpha.logsecret"}],
        }, plugins={"echo": EchoPlugin()}, base_dir=base)
        self.service = GamewsService(settings, reactor=self.reactor)
        self.flooded: list[IConnection] = []

        def flood(child: IConnection) -> None:
            child.hook(on_open=self.flooded.append)

        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.service.registry.open(LOOPBACK, "/flood", owner="flooder", incoming=flood)

        async def ready() -> None:
            self.port = port_of(await self.service.registry.ports()[0].when_listening())
            metrics = self.service.getServiceNamed("metrics")
            self.metrics_port = port_of(await metrics.when_listening())
            alpha = self.service.servers["alpha"]
            await poll_until(lambda: alpha.state is LinkState.UP, timeout=10)

        return ensureDeferred(ready())

    async def scrape(self) -> Samples:
        """GET /metrics over loopback with a real HTTP client."""
        agent = Agent(self.reactor)
        url = f"http://127.0.0.1:{self.metrics_port}/metrics".encode()
        response = await agent.request(b"GET", url, Headers({}))
        self.assertEqual(response.code, 200)
        [content_type] = response.headers.getRawHeaders(b"content-type")
        self.assertTrue(content_type.startswith(b"text/plain; version=0.0.4"), content_type)
        return samples((await readBody(response)).decode())

    def test_connections_messages_and_bytes(self) -> Deferred[None]:
        """Two echo clients: connections by path and plugin, messages and bytes both ways."""
        async def run() -> None:
            clients = [await connect(self.port, "/echo") for _ in range(2)]
            for client in clients:
                client.send_text("hello")
                client.send_binary(b"\x00\x01\x02")
            for client in clients:
                await client.wait_messages(2)
            found = await self.scrape()
            self.assertEqual(value(found, "gamews_websocket_connections", path="/echo",
                                   plugin="echo"), 2)
            self.assertEqual(value(found, "gamews_websocket_connections", path="/flood",
                                   plugin="flooder"), 0)
            for direction in ("received", "sent"):
                self.assertEqual(value(found, f"gamews_websocket_messages_{direction}_total",
                                       path="/echo"), 4)
                self.assertEqual(value(found, f"gamews_websocket_{direction}_bytes_total",
                                       path="/echo"), 16)
            clients[0].sendClose()
            await clients[0].closed
            await poll_until(lambda: len(self.service.registry.children()) == 1)
            found = await self.scrape()
            self.assertEqual(value(found, "gamews_websocket_connections", path="/echo",
                                   plugin="echo"), 1)
            self.assertEqual(value(found, "gamews_websocket_connections_accepted_total",
                                   path="/echo"), 2)

        return ensureDeferred(run())

    def test_handshake_failures_by_reason(self) -> Deferred[None]:
        """A foreign Origin (403) and one connection over the per-address cap (503) are
        counted by status and reason."""
        async def run() -> None:
            with self.assertRaises(ConnectionError):
                await connect(self.port, "/echo", origin="https://evil.example")
            clients = [await connect(self.port, "/echo") for _ in range(3)]
            with self.assertRaises(ConnectionError):
                await connect(self.port, "/echo")
            found = await self.scrape()
            failures = "gamews_websocket_handshake_failures_total"
            self.assertEqual(value(found, failures, path="/echo", status="403",
                                   reason="origin"), 1)
            self.assertEqual(value(found, failures, path="/echo", status="503",
                                   reason="max_connections_per_ip"), 1)
            self.assertEqual(value(found, "gamews_websocket_connections", path="/echo",
                                   plugin="echo"), 3)
            for client in clients:
                client.sendClose()
                await client.closed

        return ensureDeferred(run())

    def test_slow_consumer_disconnect(self) -> Deferred[None]:
        """A client that stops reading is closed with 1008 and counted on its path."""
        chunk = b"x" * 32768

        async def run() -> None:
            client = await connect(self.port, "/flood")
            await poll_until(lambda: bool(self.flooded))
            client.pause_reading()
            sent = 0
            while self.flooded[0].send_binary(chunk):
                sent += 1
                self.assertLess(sent, 2000, "the send buffer is not bounded")
            client.resume_reading()
            _, code, _ = await client.closed
            self.assertEqual(code, 1008)
            found = await self.scrape()
            self.assertEqual(value(found, "gamews_websocket_slow_consumers_closed_total",
                                   path="/flood"), 1)
            self.assertEqual(value(found, "gamews_websocket_messages_sent_total",
                                   path="/flood"), sent)

        return ensureDeferred(run())

    def test_rcon_commands_and_latency(self) -> Deferred[None]:
        """Commands to the rconx peer: counted by outcome, timed, link state up."""
        async def run() -> None:
            alpha = self.service.servers["alpha"]
            self.assertEqual(await alpha.rcon("status"), "ran status")
            self.assertEqual(await alpha.rcon("users"), "ran users")
            with self.assertRaises(ValueError):
                await alpha.rcon("bad\0command")
            found = await self.scrape()
            self.assertGreater(check_rcon(self, found, {"ok": 2, "invalid": 1}, timed=2), 0)

        return ensureDeferred(run())

    def test_log_lines_misses_and_drops(self) -> Deferred[None]:
        """Real datagrams: lines by type, parse misses, drops by reason, bad bridge lines."""
        log_service = self.service.log_sources["alpha"]
        assert isinstance(log_service, UdpLogService) and log_service.listening is not None
        target = ("127.0.0.1", log_service.listening.getHost().port)  # type: ignore[attr-defined]
        home, stranger = Sender(), Sender()
        ports = [self.reactor.listenUDP(0, home, interface="127.0.0.1"),
                 self.reactor.listenUDP(0, stranger, interface="127.0.0.2")]
        for port in ports:
            self.addCleanup(port.stopListening)
        assert home.transport is not None and stranger.transport is not None
        for data in (log_packet(KILL, LOG_SECRET),
                     log_packet("L 11/28/2026 - 09:30:02: nothing we know", LOG_SECRET),
                     log_packet("L 11/28/2026 - 09:30:03: " + "x" * MAX_LINE, LOG_SECRET),
                     log_packet(KILL, "99999"),
                     log_packet("L 11/28/2026 - 09:30:04: gamews bomb {not json", LOG_SECRET),
                     b"not a log packet"):
            home.transport.write(data, target)
        stranger.transport.write(log_packet(KILL, LOG_SECRET), target)

        async def run() -> None:
            await poll_until(lambda: log_service.stats.received == 7)
            found = await self.scrape()
            lines = "gamews_log_lines_total"
            self.assertEqual(value(found, lines, server="alpha", type="kill"), 1)
            self.assertEqual(value(found, lines, server="alpha", type="unknown"), 2)
            misses = "gamews_log_parse_misses_total"
            self.assertEqual(value(found, misses, server="alpha", reason="no_match"), 1)
            self.assertEqual(value(found, misses, server="alpha", reason="too_long"), 1)
            dropped = "gamews_log_dropped_total"
            for reason in ("address", "secret", "malformed"):
                self.assertEqual(value(found, dropped, server="alpha", source="udp",
                                       reason=reason), 1, reason)
            self.assertEqual(value(found, "gamews_log_received_total", server="alpha",
                                   source="udp"), 7)
            self.assertEqual(value(found, "gamews_log_bridge_dropped_total", server="alpha"), 1)

        return ensureDeferred(run())

    def test_only_metrics_path(self) -> Deferred[None]:
        """The metrics port answers /metrics only."""
        async def run() -> None:
            agent = Agent(self.reactor)
            url = f"http://127.0.0.1:{self.metrics_port}/".encode()
            response = await agent.request(b"GET", url)
            await readBody(response)
            self.assertEqual(response.code, 404)

        return ensureDeferred(run())


# -- a real twistd ---------------------------------------------------------------------


class TwistdTests(TestCase):
    """``twistd -n gamews --log-format json --metrics PORT`` as a child process."""

    timeout = 60

    def test_json_logs_and_metrics(self) -> Deferred[None]:
        """JSON lines with gamews's events on stdout, never the RCON password, and /metrics
        on the loopback port given as a bare number."""
        peer = RconxPeer("not-" + PASSWORD, lambda command: "")  # rejects gamews's password
        peer.start()
        self.addCleanup(peer.stop)
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        (base / "alpha.rcon").write_text(PASSWORD + "\n")
        (base / "gamews.toml").write_text(
            f'listen = "{LOOPBACK}"\ndemo = false\nplugins = ["echo"]\n'
            f'[[server]]\nname = "alpha"\nkind = "source"\nrcon = "127.0.0.1:{peer.port}"\n'
            'password_file = "alpha.rcon"\n')
        metrics_port = free_port()
        process = spawn_twistd(["-n", "gamews", "--config", str(base / "gamews.toml"),
                                "--log-format", "json", "--metrics", str(metrics_port)])

        def rejected() -> bool:
            return b"rcon password rejected by alpha" in process.output or process.ended.called

        async def run() -> None:
            try:
                await poll_until(rejected, timeout=20)
                agent = Agent(real_reactor())
                response = await agent.request(
                    b"GET", f"http://127.0.0.1:{metrics_port}/metrics".encode())
                found = samples((await readBody(response)).decode())
                self.assertEqual(value(found, "gamews_rcon_link_state", server="alpha",
                                       state="auth_failed"), 1)
            finally:
                process.signal("TERM")
                await process.ended
            self.assertTrue(process.stopped_cleanly())
            events = list(self.parse(process.output.decode().splitlines()))
            texts = [e["log_text"] for e in events]
            self.assertTrue(any(t.startswith("rcon password rejected by alpha") for t in texts),
                            texts)
            self.assertIn(f"metrics on http://127.0.0.1:{metrics_port}/metrics", texts)
            namespaces = {e.get("log_namespace", "") for e in events}
            self.assertTrue({"gamews.registry", "gamews.metrics"} <= namespaces, namespaces)
            self.assertNotIn(PASSWORD.encode(), process.output + process.errors)

        return ensureDeferred(run())

    def parse(self, lines: Iterable[str]) -> Iterable[dict[str, Any]]:
        """Each line as a JSON object (failing the test on any other line)."""
        for line in lines:
            event = json.loads(line)
            self.assertIsInstance(event, dict)
            yield event

