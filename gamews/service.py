"""The gamews application service: the registry, the plugins and their pages."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from zope.interface import implementer

from gamews.api import (
    IGamewsPlugin,
    IListener,
    IListenerHandler,
    IMount,
    IncomingCallback,
    IPluginContext,
    IRequestHandler,
)
from gamews.demo.setup import DemoGame, make_demo
from gamews.errors import ConfigError
from gamews.events import EventBus
from gamews.fanout.config import FanoutConfig
from gamews.fanout.link import FanoutStats, RedisLink
from gamews.groups import ListenerGroup, MountGroup
from gamews.guard import raise_file_limit
from gamews.health import HealthResource
from gamews.index import IndexPage
from gamews.logs.service import LogSourceConfig, build_log_source
from gamews.manhole import make_manhole_service, service_namespace
from gamews.metrics import GamewsMetrics, MetricsService
from gamews.pages import static_files
from gamews.rcon.server import GameServer, IGameServer
from gamews.rcon.status import StatusPoller
from gamews.registry import Listener, Mount, Registry
from gamews.reload import Reloader
from gamews.settings import CommandLine, PluginSettings, ServerSettings, Settings
from gamews.spectator import PublicEvents
from gamews.startup import ListenCheck, check_listening
from gamews.websocket import tune_autobahn

__all__ = ["GamewsService", "PluginContext"]

log = Logger(namespace="gamews.service")


@implementer(IPluginContext)
class PluginContext:
    """What one plugin gets from gamews; remembers the plugin's handles so
    that whatever it leaves open is closed when it stops."""

    def __init__(self, name: str, registry: Registry, endpoints: tuple[str, ...],
                 config: Mapping[str, Any], *, settings: Any = None,
                 servers: Mapping[str, IGameServer] | None = None,
                 events: EventBus | None = None, public_events: PublicEvents | None = None,
                 base_dir: Path | None = None) -> None:
        self.name = name
        self.registry = registry
        self.endpoints = endpoints
        self.config = config
        self.settings = settings
        self.reactor = registry.reactor
        self.servers: Mapping[str, IGameServer] = servers or {}
        self.events = events if events is not None else EventBus(self.reactor)
        self.public_events = (public_events if public_events is not None
                              else PublicEvents(self.events))
        self.spectator_delay = self.public_events.delay
        self.base_dir = base_dir
        self._handles: list[Listener | Mount] = []

    def open(
        self,
        path: str,
        *,
        endpoint: str | None = None,
        incoming: IncomingCallback | None = None,
        error: Callable[[IListener, Failure], object] | None = None,
        closed: Callable[[IListener], object] | None = None,
        handler: IListenerHandler | None = None,
    ) -> IListener:
        listeners: list[IListener] = []
        for where in self._where(endpoint):
            listener = self.registry.open(where, path, owner=self.name, incoming=incoming,
                                          error=error, closed=closed, handler=handler)
            self._handles.append(listener)  # closed when the plugin stops, even on a failure
            listeners.append(listener)
        return listeners[0] if len(listeners) == 1 else ListenerGroup(listeners)

    def mount(self, path: str, resource: IResource, *, endpoint: str | None = None) -> IMount:
        mounts: list[IMount] = []
        for where in self._where(endpoint):
            mount = self.registry.mount(where, path, resource, owner=self.name)
            self._handles.append(mount)
            mounts.append(mount)
        return mounts[0] if len(mounts) == 1 else MountGroup(mounts)

    def _where(self, endpoint: str | None) -> tuple[str, ...]:
        """The endpoints a handle is opened on: ``endpoint``, or else every web endpoint."""
        return (endpoint,) if endpoint is not None else self.endpoints

    def close_all(self) -> Deferred[None]:
        """Close every handle the plugin still holds."""
        handles, self._handles = self._handles, []
        return DeferredList([h.close() for h in handles]).addCallback(lambda _: None)


class _PluginHost(Service):
    """Runs one plugin's service, keeping its failures away from everyone else.

    The plugin's service is built at once: an error building it is a
    :class:`ConfigError` on ``plugin.NAME`` (a ``ConfigError`` the plugin raises on
    one of its keys gets that prefix) that stops gamews at start-up with one line.
    An error starting or stopping it is logged and the plugin is left out.
    """

    def __init__(self, plugin: IGamewsPlugin, context: PluginContext) -> None:
        self.plugin = plugin
        self.context = context
        self.setName(f"plugin:{plugin.name}")  # type: ignore[no-untyped-call]
        self.service: IService | None = None
        prefix = f"plugin.{plugin.name}"
        try:
            self.service = plugin.make_service(context)
        except ConfigError as e:
            if e.key == prefix or e.key.startswith(f"{prefix}."):
                raise
            raise ConfigError(f"{prefix}.{e.key}", e.message) from None
        except Exception as e:
            raise ConfigError(prefix, f"failed to build its service: "
                                      f"{type(e).__name__}: {e}") from e

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self.service is None:
            return
        try:
            self.service.startService()
        except Exception:
            log.failure("plugin {plugin} failed to start", plugin=self.plugin.name)
            self.service = None

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        service, self.service = self.service, None
        stopped: Deferred[None] = (
            maybeDeferred(service.stopService) if service is not None else succeed(None)
        )

        def failed(failure: Failure) -> None:
            log.failure("plugin {plugin} failed to stop", failure, plugin=self.plugin.name)

        return stopped.addErrback(failed).addBoth(lambda _: self.context.close_all())


class GamewsService(MultiService):
    """One gamews instance: the shared-port registry with its plugins.

    Start order: index pages, then each plugin, then the manhole and the metrics
    port. Stop order: every child connection is closed with 1001 (going away),
    then the metrics port, the manhole and the plugins stop, then every port
    stops listening.
    """

    def __init__(self, settings: Settings, *, reactor: Any = None,
                 cli: CommandLine | None = None) -> None:
        """Build every part from ``settings``; with ``cli`` (the command line it came
        from), ``SIGHUP`` reloads the configuration while running (:mod:`gamews.reload`)."""
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings
        self.reloader = Reloader(self, cli) if cli is not None else None
        self.config = config = settings.config
        tune_autobahn()
        self.registry = Registry(config.websocket, reactor=reactor,
                                 shutdown_timeout=config.shutdown_timeout)
        reactor = self.registry.reactor
        self.events = EventBus(reactor)
        self.public_events = PublicEvents(self.events, settings.spectator)
        """The events as every public view shows them (:mod:`gamews.spectator`)."""
        self.servers: dict[str, IGameServer] = {}
        self.log_sources: dict[str, Service] = {}
        """Each game server's log source service, by server name."""
        self.plugins = [p.plugin for p in settings.plugins]
        self.demo: DemoGame | None = make_demo() if settings.demo else None
        self.fanout = settings.fanout
        self.fanout_stats = FanoutStats()
        self._index_mounts: list[Mount] = []
        # (setting, endpoint, service with when_listening()): ports gamews must hold
        self._must_listen: list[tuple[str, str, Any]] = []
        try:
            self._build(settings, reactor)
        except BaseException:
            if self.demo is not None:
                self.demo.cleanup()
            raise

    def _build(self, settings: Settings, reactor: Any) -> None:
        """Every child service, in start order."""
        config, demo, fanout = settings.config, self.demo, settings.fanout
        if fanout is not None:
            self._add_fanout(fanout)
        for server in settings.servers:
            self._add_server(server)
        if demo is not None:
            # after its log source (which must listen before the first lines are sent)
            log = LogSourceConfig.from_table(demo.table, where=f"server.{demo.game.name}",
                                             environ=demo.environ)
            self._add_server(ServerSettings(demo.table, demo.game, log))
            demo.service.setServiceParent(self)  # type: ignore[no-untyped-call]
        for chosen in settings.plugins:
            name = chosen.plugin.name
            if demo is not None and name in demo.plugin_defaults:
                # the demo's keys, now with its real directory (see parse_settings)
                table = {**demo.plugin_defaults[name], **config.plugin_config.get(name, {})}
                chosen = PluginSettings.of(chosen.plugin, table, base_dir=config.base_dir)
            context = PluginContext(name, self.registry, config.listen, chosen.table,
                                    settings=chosen.settings, servers=self.servers,
                                    events=self.events, public_events=self.public_events,
                                    base_dir=config.base_dir)
            host = _PluginHost(chosen.plugin, context)
            host.setServiceParent(self)  # type: ignore[no-untyped-call]
        if settings.archive is not None:
            from gamews.archive.service import ArchiveService

            context = PluginContext("archive", self.registry, config.listen, {},
                                    servers=self.servers, events=self.events,
                                    base_dir=config.base_dir)
            archive = ArchiveService(settings.archive, context, record=not config.edge)
            archive.setServiceParent(self)  # type: ignore[no-untyped-call]
        if fanout is not None and fanout.role == "origin":
            from gamews.fanout.origin import RequestServer

            requests = RequestServer(fanout, self._link("requests"), self._link("write"),
                                     self.request_handler, clock=reactor,
                                     stats=self.fanout_stats)
            requests.setServiceParent(self)  # type: ignore[no-untyped-call]
        if settings.manhole is not None:
            def rcon(server: str, command: str) -> Deferred[str]:
                """rcon(server, command): run an RCON command; yields its reply."""
                return self.servers[server].rcon(command)

            namespace = service_namespace(self, servers=self.servers, events=self.events,
                                          rcon=rcon)
            manhole_service = make_manhole_service(settings.manhole, namespace, reactor=reactor)
            manhole_service.setServiceParent(self)
            self._must_listen.append(("manhole.endpoint", settings.manhole.endpoint,
                                      manhole_service))
        self.metrics: GamewsMetrics | None = None
        """This instance's Prometheus metrics, when served (``metrics`` given)."""
        if settings.metrics is not None:
            links = {n: s for n, s in self.servers.items() if isinstance(s, GameServer)}
            # an edge's stand-ins hold no RCON link: the origin's metrics have them
            self.metrics = GamewsMetrics(self.registry, links, self.log_sources,
                                         self.fanout_stats if settings.fanout else None)
            metrics_service = MetricsService(settings.metrics.listen, self.metrics,
                                             reactor=reactor, limits=config.websocket)
            metrics_service.setServiceParent(self)  # type: ignore[no-untyped-call]
            self._must_listen.append(("metrics.listen", settings.metrics.listen,
                                      metrics_service))

    def _link(self, role: str) -> RedisLink:
        """This instance's Redis link for ``role`` (one connection each), made once."""
        assert self.fanout is not None
        name = f"{self.fanout.name}/{role}"
        link = self.namedServices.get(name)
        if link is None:
            link = RedisLink(name, self.fanout.redis, password=self.fanout.password,
                             username=self.fanout.username, reactor=self.registry.reactor)
            link.setName(name)  # type: ignore[no-untyped-call]
            link.setServiceParent(self)  # type: ignore[no-untyped-call]
        assert isinstance(link, RedisLink)
        return link

    def _add_fanout(self, fanout: FanoutConfig) -> None:
        """The Redis links and, on an origin, the publisher (subscribed before any event);
        on an edge, the feed and its stand-ins for the origin's game servers."""
        reactor = self.registry.reactor
        if fanout.role == "origin":
            from gamews.fanout.origin import OriginPublisher

            publisher = OriginPublisher(fanout, self.events, self.servers, self._link("write"),
                                        clock=reactor, stats=self.fanout_stats)
            publisher.setServiceParent(self)  # type: ignore[no-untyped-call]
            return
        from gamews.fanout.edge import EdgeFeed

        feed = EdgeFeed(fanout, self.events, self._link("read"), self._link("write"),
                        clock=reactor, stats=self.fanout_stats)
        self.servers.update(feed.servers)
        feed.setServiceParent(self)  # type: ignore[no-untyped-call]

    def request_handler(self, plugin: str) -> IRequestHandler | None:
        """The running plugin ``plugin``'s service if it applies forwarded user requests."""
        host = self.namedServices.get(f"plugin:{plugin}")
        service = host.service if isinstance(host, _PluginHost) else None
        return service if IRequestHandler.providedBy(service) else None

    def _add_server(self, server: ServerSettings) -> None:
        """A game server: its RCON link and its log source, as child services."""
        name = server.game.name
        endpoint = self.config.listen[0]

        def mount(path: str, resource: IResource) -> Mount:
            return self.registry.mount(endpoint, path, resource, owner=f"log:{name}")

        self.events.add_server(name)
        if server.log is not None:
            log_service = build_log_source(server.log, bus=self.events,
                                           reactor=self.registry.reactor, mount=mount)
            log_service.setServiceParent(self)
            self.log_sources[name] = log_service
            if hasattr(log_service, "when_listening"):
                self._must_listen.append((f"server.{name}.log", str(server.table.get("log")),
                                          log_service))
        game = GameServer(server.game, reactor=self.registry.reactor)
        game.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.servers[name] = game
        if server.game.status_interval:
            StatusPoller(game, self.events, server.game.status_interval,
                         clock=self.registry.reactor).setServiceParent(self)  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        # a socket per connection, and room for pages, handshakes and game links
        raise_file_limit(self.config.websocket.max_connections + 1024)
        page = IndexPage(self.registry, self.plugins)
        health = HealthResource(lambda: self.registry.shutting_down, self.servers)
        checks: list[ListenCheck] = []
        for i, endpoint in enumerate(self.config.listen):
            index = self.registry.mount(endpoint, "/", page, owner="gamews")
            self._index_mounts += [
                index,
                self.registry.mount(endpoint, "/healthz", health, owner="gamews"),
                self.registry.mount(endpoint, "/static/", static_files(), owner="gamews"),
            ]
            checks.append(ListenCheck(f"listen[{i}]", endpoint, index.when_listening()))
        super().startService()  # type: ignore[no-untyped-call]
        checks += [ListenCheck(setting, endpoint, service.when_listening())
                   for setting, endpoint, service in self._must_listen]
        check_listening(checks, later=self._stop_reactor)
        if self.reloader is not None:
            self.reloader.install()
        if self.demo is not None:
            self.demo.announce()
        # the modules and objects of start-up live as long as the process: keep them out
        # of the cyclic collector's full passes (an eighth of a handshake's cost before)
        gc.freeze()

    def _stop_reactor(self, message: str) -> None:
        """A port failed after the start (an endpoint that binds asynchronously): stop."""
        self.registry.reactor.stop()

    def stopService(self) -> Deferred[None]:
        if self.reloader is not None:
            self.reloader.uninstall()
        registry = self.registry
        registry.shutting_down = True
        going_away = registry.close_children(registry.children(), 1001, "server shutting down")

        def stop_plugins(_: object) -> Deferred[None]:
            d: Deferred[None] = maybeDeferred(super(GamewsService, self).stopService)
            return d

        def unmount(_: object) -> Deferred[None]:
            mounts, self._index_mounts = self._index_mounts, []
            return DeferredList([m.close() for m in mounts]).addCallback(lambda _: None)

        def cleanup(result: object) -> object:
            self.public_events.drop_held()
            if self.demo is not None:
                self.demo.cleanup()
            return result

        return (going_away.addCallback(stop_plugins).addCallback(unmount)
                .addCallback(lambda _: registry.shutdown()).addBoth(cleanup))
