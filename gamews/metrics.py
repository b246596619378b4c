"""Prometheus metrics: ``--metrics ENDPOINT`` or a ``[metrics]`` table serves ``/metrics``.

Off unless asked for; listens on loopback by default::

    [metrics]
    listen = "tcp:9108:interface=127.0.0.1"   # or a bare port: 9108 (loopback)

Each gamews service has its own ``CollectorRegistry`` (never prometheus_client's global
one), so tests and several services in one process do not collide. The WebSocket message
path only adds to plain integers (:mod:`gamews.stats`); :class:`GamewsCollector` reads
them, the registry's live connections, the RCON links and the log sources' counters
when scraped. RCON commands, which are slow anyway, go to a normal Counter and Histogram.

Labels are URL paths, plugin names, game server names, event types and fixed reason
words: never peer addresses, commands, plugins' free-text reasons or secrets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import EncodingResourceWrapper, IResource, Resource
from twisted.web.server import GzipEncoderFactory, Request

from gamews import __version__
from gamews.config import WebSocketLimits
from gamews.endpoints import Listening, endpoint_setting, is_loopback_endpoint
from gamews.errors import ConfigError
from gamews.fanout.link import FanoutStats
from gamews.guard import GuardedSite
from gamews.logs.service import HttpLogService
from gamews.logs.tail import FileTailService
from gamews.logs.udp import UdpLogService
from gamews.rcon.link import LinkState
from gamews.rcon.server import GameServer
from gamews.registry import Registry

__all__ = [
    "DEFAULT_METRICS_LISTEN",
    "GamewsCollector",
    "GamewsMetrics",
    "MetricsConfig",
    "MetricsResource",
    "MetricsService",
]

log = Logger(namespace="gamews.metrics")

DEFAULT_METRICS_LISTEN: Final = "tcp:9108:interface=127.0.0.1"
"""Where metrics are served when asked for without an endpoint: loopback only."""

_SOURCE_KIND: Final[dict[type, str]] = {UdpLogService: "udp", HttpLogService: "http",
                                        FileTailService: "file"}
_DROPS: Final = (("address", "dropped_address"), ("secret", "dropped_secret"),
                 ("malformed", "dropped_malformed"))


@dataclass(frozen=True)
class MetricsConfig:
    """A validated ``[metrics]`` table."""

    listen: str = DEFAULT_METRICS_LISTEN
    """The endpoint ``/metrics`` is served on."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> MetricsConfig:
        """Validate a ``[metrics]`` table (keys: ``listen``)."""
        for key in table:
            if key != "listen":
                raise ConfigError(f"metrics.{key}", "unknown key (known: listen)")
        if "listen" not in table:
            return cls()
        return cls(endpoint_setting(table["listen"], "metrics.listen"))


# -- reading gamews's state at scrape time ------------------------------------------------


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class GamewsCollector:
    """A prometheus_client collector reading gamews's own counters when scraped."""

    def __init__(self, registry: Registry, servers: Mapping[str, GameServer],
                 log_sources: Mapping[str, object], fanout: FanoutStats | None = None) -> None:
        """Read ``registry``'s connections and counters, ``servers``' links, the
        counters of ``log_sources`` (by game server name) and the fan-out's, if any."""
        self.registry = registry
        self.servers = servers
        self.log_sources = log_sources
        self.fanout = fanout

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the families are built afresh on each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family, from the current state."""
        yield from self._connections()
        yield from self._traffic()
        yield from self._links()
        yield from self._logs()
        yield from self._fanout()

    def _connections(self) -> Iterator[Metric]:
        held: defaultdict[tuple[str, str], int] = defaultdict(int)
        admitted: defaultdict[str, int] = defaultdict(int)
        for port in self.registry.snapshot():
            for route in port.paths:
                admitted[route.path] += route.admitted
                for owner, n in route.held.items():
                    held[route.path, owner] += n
        connections = _gauge("gamews_websocket_connections",
                             "Open WebSocket connections each plugin holds.", ["path", "plugin"])
        for (path, plugin), n in sorted(held.items()):
            connections.add_metric([path, plugin], n)
        children = _gauge("gamews_websocket_admitted_connections",
                          "WebSocket connections admitted on a path, in any state.", ["path"])
        for path, n in sorted(admitted.items()):
            children.add_metric([path], n)
        yield connections
        yield children

    def _traffic(self) -> Iterator[Metric]:
        path_counters = {
            "accepted": _counter("gamews_websocket_connections_accepted",
                                 "WebSocket connections admitted since start.", ["path"]),
            "messages_in": _counter("gamews_websocket_messages_received",
                                    "Whole messages received from browsers.", ["path"]),
            "bytes_in": _counter("gamews_websocket_received_bytes",
                                 "Payload bytes of the messages received.", ["path"]),
            "messages_out": _counter("gamews_websocket_messages_sent",
                                     "Messages sent to browsers (a broadcast counts once per "
                                     "connection reached).", ["path"]),
            "bytes_out": _counter("gamews_websocket_sent_bytes",
                                  "Payload bytes of the messages sent.", ["path"]),
            "slow_consumers": _counter("gamews_websocket_slow_consumers_closed",
                                       "Connections closed with 1008 for reading too slowly.",
                                       ["path"]),
            "skipped": _counter("gamews_websocket_messages_skipped",
                                "STATE-channel messages not sent to a slow reader (it gets the "
                                "latest state when it catches up).", ["path"]),
            "publishes_spread": _counter("gamews_websocket_publishes_spread",
                                         "Channel publishes sent over more than one reactor "
                                         "turn (many subscribers).", ["path"]),
            "publishes_behind": _counter("gamews_websocket_publishes_behind",
                                         "Channel publishes that waited for an earlier one "
                                         "still being sent (the publisher outpaces the "
                                         "channel).", ["path"]),
        }
        failures = _counter("gamews_websocket_handshake_failures",
                            "Opening handshakes refused, by HTTP status and reason.",
                            ["path", "status", "reason"])
        for path, stats in sorted(self.registry.stats.paths.items()):
            for attribute, family in path_counters.items():
                family.add_metric([path], getattr(stats, attribute))
            for (status, reason), n in sorted(stats.handshake_failures.items()):
                failures.add_metric([path, str(status), reason], n)
        yield from path_counters.values()
        yield failures

    def _links(self) -> Iterator[Metric]:
        state = _gauge("gamews_rcon_link_state",
                       "1 for the current state of each game server's RCON link.",
                       ["server", "state"])
        pending = _gauge("gamews_rcon_pending_commands",
                         "RCON commands queued or in flight.", ["server"])
        for name, server in sorted(self.servers.items()):
            current = server.state
            for each in LinkState:
                state.add_metric([name, each.value], 1 if each is current else 0)
            pending.add_metric([name], server.client.pending)
        yield state
        yield pending

    def _logs(self) -> Iterator[Metric]:
        received = _counter("gamews_log_received",
                            "Log datagrams, HTTP posts or file reads taken in.",
                            ["server", "source"])
        dropped = _counter("gamews_log_dropped",
                           "Log datagrams or posts dropped: wrong address, wrong or missing "
                           "secret, or malformed.", ["server", "source", "reason"])
        lines = _counter("gamews_log_lines", "Log lines parsed, by event type.",
                         ["server", "type"])
        misses = _counter("gamews_log_parse_misses",
                          "Log lines no event type fits (parsed as unknown).",
                          ["server", "reason"])
        errors = _counter("gamews_log_errors",
                          "Log lines whose handling failed, or failed reads of a log file.",
                          ["server"])
        bridge = _counter("gamews_log_bridge_dropped",
                          "gamews CHANNEL JSON lines dropped (bad channel, invalid or "
                          "oversized JSON).", ["server"])
        for name, service in sorted(self.log_sources.items()):
            if not isinstance(service, UdpLogService | HttpLogService | FileTailService):
                continue
            stats = service.stats
            kind = _SOURCE_KIND[type(service)]
            received.add_metric([name, kind], stats.received)
            for reason, attribute in _DROPS:
                dropped.add_metric([name, kind, reason], getattr(stats, attribute))
            for event_type, n in sorted(stats.events.items()):
                lines.add_metric([name, event_type], n)
            unknown = stats.events.get("unknown", 0)
            misses.add_metric([name, "no_match"], unknown - stats.too_long)
            misses.add_metric([name, "too_long"], stats.too_long)
            errors.add_metric([name], stats.errors)
            bridge.add_metric([name], stats.bridge_dropped)
        yield from (received, dropped, lines, misses, errors, bridge)

    def _fanout(self) -> Iterator[Metric]:
        if self.fanout is None:
            return
        rejected = _counter("gamews_fanout_rejected_entries",
                            "Entries read from Redis and dropped: not sealed with a fan-out "
                            "key, a replayed request or a heartbeat too old.", ["kind"])
        for kind in ("request", "event", "snapshot", "heartbeat", "reply"):
            rejected.add_metric([kind], self.fanout.rejected[kind])
        yield rejected


# -- the metrics of one service -----------------------------------------------------------


class GamewsMetrics:
    """One gamews service's metrics: its own ``CollectorRegistry``, the collector of its
    live state and the RCON command counters."""

    def __init__(self, registry: Registry, servers: Mapping[str, GameServer],
                 log_sources: Mapping[str, object], fanout: FanoutStats | None = None) -> None:
        """Collect from ``registry``, ``servers``, ``log_sources`` and ``fanout``, and
        observe every RCON command of ``servers``."""
        self.collector_registry = CollectorRegistry()
        self.collector = GamewsCollector(registry, servers, log_sources, fanout)
        self.collector_registry.register(self.collector)
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        ProcessCollector(registry=self.collector_registry)
        build = Gauge("gamews_build_info", "Always 1; the running gamews's version.",
                      ["version"], registry=self.collector_registry)
        build.labels(__version__).set(1)
        self.rcon_commands = Counter(
            "gamews_rcon_commands", "RCON commands finished, by outcome.",
            ["server", "outcome"], registry=self.collector_registry)
        self.rcon_seconds = Histogram(
            "gamews_rcon_command_duration_seconds",
            "Seconds from a successful RCON command's call to its whole reply.",
            ["server"], registry=self.collector_registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
        for name, server in servers.items():
            self.rcon_commands.labels(name, "ok")
            self.rcon_seconds.labels(name)
            server.observe_commands(self._command_observer(name))

    def _command_observer(self, server: str) -> Any:
        commands, seconds = self.rcon_commands, self.rcon_seconds.labels(server)

        def observe(outcome: str, elapsed: float) -> None:
            commands.labels(server, outcome).inc()
            if outcome == "ok":
                seconds.observe(elapsed)

        return observe

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics text for an ``Accept`` header, and its content type (the
        Prometheus text format 0.0.4 unless the scraper asks for another)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.collector_registry), content_type


class MetricsResource(Resource):
    """``GET`` answers the Prometheus exposition of a :class:`GamewsMetrics`."""

    isLeaf = True

    def __init__(self, metrics: GamewsMetrics) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        """The exposition, in the format the scraper's ``Accept`` asks for."""
        accept = request.getHeader("accept") or ""
        body, content_type = self.metrics.exposition(accept)
        request.setHeader("content-type", content_type)
        request.setHeader("cache-control", "no-store")
        return body


class _QuietSite(GuardedSite):
    """A guarded Site without an access log line per scrape."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


def metrics_site(metrics: GamewsMetrics, limits: WebSocketLimits | None = None,
                 reactor: Any = None) -> GuardedSite:
    """A Site serving ``/metrics`` (gzip when asked) and nothing else, behind the same
    guard as the web ports (:mod:`gamews.guard`): the request deadline
    (``handshake_timeout``), the per-address cap on open sockets (``max_pending_per_ip``),
    the body cap and the ``Host`` check (``allowed_hosts``)."""
    limits = limits or WebSocketLimits()
    root = Resource()
    resource: IResource = EncodingResourceWrapper(MetricsResource(metrics), [GzipEncoderFactory()])
    root.putChild(b"metrics", resource)
    return _QuietSite(root, timeout=limits.handshake_timeout,
                      max_pending_per_ip=limits.max_pending_per_ip,
                      allowed_hosts=limits.allowed_hosts, reactor=reactor)


class MetricsService(Service):
    """Serves ``/metrics`` on an endpoint while running."""

    def __init__(self, endpoint: str, metrics: GamewsMetrics, *, reactor: Any,
                 limits: WebSocketLimits | None = None) -> None:
        """Listen on ``endpoint`` (strports syntax) with ``reactor`` when started, guarded
        by ``limits`` (the web ports' request limits)."""
        self.endpoint = endpoint
        self.metrics = metrics
        self.site = metrics_site(metrics, limits, reactor)
        self._listening = Listening(reactor, endpoint, self.site,
                                    on_listening=self._listened, on_failed=self._listen_failed)
        self.setName("metrics")  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        """Start listening; a failure to bind is logged, and fails :meth:`when_listening`."""
        super().startService()  # type: ignore[no-untyped-call]
        if not is_loopback_endpoint(self.endpoint):
            log.warn("metrics: {endpoint} is not a loopback address: anyone who can reach it "
                     "sees the metrics", endpoint=self.endpoint)
        self._listening.start()

    def _listened(self, port: IListeningPort) -> None:
        log.info("metrics on http://{address.host}:{address.port}/metrics",
                 address=port.getHost())

    def _listen_failed(self, failure: Failure) -> None:
        log.error("metrics: cannot listen on {endpoint}: {reason}", endpoint=self.endpoint,
                  reason=failure.getErrorMessage())

    def when_listening(self) -> Deferred[IAddress]:
        """Fire with the listening address once listening (fail if it cannot listen)."""
        return self._listening.when_listening()

    def stopService(self) -> Deferred[None]:
        """Stop listening."""
        super().stopService()  # type: ignore[no-untyped-call]
        return self._listening.stop()
