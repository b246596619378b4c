"""The gamews application service: the registry, the plugins and their pages."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.plugin import getPlugins
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
from gamews.config import GamewsConfig
from gamews.errors import ConfigError
from gamews.events import EventBus
from gamews.fanout.config import FanoutConfig
from gamews.fanout.link import RedisLink
from gamews.guard import raise_file_limit
from gamews.index import IndexPage
from gamews.logs.service import log_source_from_table
from gamews.manhole import ManholeConfig, make_manhole_service, service_namespace
from gamews.metrics import GamewsMetrics, MetricsConfig, MetricsService
from gamews.pages import static_files
from gamews.rcon.server import GameServer, GameServerConfig, IGameServer
from gamews.registry import Listener, Mount, Registry
from gamews.spectator import PublicEvents, SpectatorConfig
from gamews.websocket import tune_autobahn

if TYPE_CHECKING:
    from gamews.demo.setup import DemoGame

__all__ = ["GamewsService", "PluginContext", "available_plugins", "select_plugins"]

log = Logger(namespace="gamews.service")


def available_plugins() -> dict[str, IGamewsPlugin]:
    """Every gamews plugin Twisted's plugin system finds, by name."""
    found: dict[str, IGamewsPlugin] = {}
    for plugin in getPlugins(IGamewsPlugin):
        name = getattr(plugin, "name", None)
        if not isinstance(name, str) or not name:
            log.warn("ignoring a gamews plugin without a name: {plugin!r}", plugin=plugin)
        elif name in found:
            log.warn("two gamews plugins are named {name}; keeping the first", name=name)
        else:
            found[name] = plugin
    return found


def select_plugins(names: tuple[str, ...], found: Mapping[str, IGamewsPlugin]) -> list[
        IGamewsPlugin]:
    """The plugins named in the config, or a :class:`ConfigError` naming a missing one."""
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError("plugins", f"no plugin named {missing[0]!r} is installed "
                                     f"(found: {', '.join(sorted(found)) or 'none'})")
    return [found[n] for n in names]


@implementer(IPluginContext)
class PluginContext:
    """What one plugin gets from gamews; remembers the plugin's handles so
    that whatever it leaves open is closed when it stops."""

    def __init__(self, name: str, registry: Registry, endpoints: tuple[str, ...],
                 config: Mapping[str, Any], *, servers: Mapping[str, IGameServer] | None = None,
                 events: EventBus | None = None, public_events: PublicEvents | None = None,
                 base_dir: Path | None = None) -> None:
        self.name = name
        self.registry = registry
        self.endpoints = endpoints
        self.config = config
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
        listener = self.registry.open(
            endpoint or self.endpoints[0], path, owner=self.name,
            incoming=incoming, error=error, closed=closed, handler=handler,
        )
        self._handles.append(listener)
        return listener

    def mount(self, path: str, resource: IResource, *, endpoint: str | None = None) -> IMount:
        mount = self.registry.mount(endpoint or self.endpoints[0], path, resource,
                                    owner=self.name)
        self._handles.append(mount)
        return mount

    def close_all(self) -> Deferred[None]:
        """Close every handle the plugin still holds."""
        handles, self._handles = self._handles, []
        return DeferredList([h.close() for h in handles]).addCallback(lambda _: None)


class _PluginHost(Service):
    """Runs one plugin's service, keeping its failures away from everyone else.

    The plugin's service is built at once, so that a :class:`ConfigError` in its
    table stops gamews at start-up with one line; any other error building,
    starting or stopping it is logged and the plugin is left out.
    """

    def __init__(self, plugin: IGamewsPlugin, context: PluginContext) -> None:
        self.plugin = plugin
        self.context = context
        self.setName(f"plugin:{plugin.name}")  # type: ignore[no-untyped-call]
        self.service: IService | None = None
        try:
            self.service = plugin.make_service(context)
        except ConfigError:
            raise
        except Exception:
            log.failure("plugin {plugin} failed to build its service", plugin=plugin.name)

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

    def __init__(self, config: GamewsConfig, plugins: list[IGamewsPlugin], *,
                 reactor: Any = None, demo: DemoGame | None = None,
                 manhole: ManholeConfig | None = None,
                 metrics: MetricsConfig | None = None,
                 fanout: FanoutConfig | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.config = config
        tune_autobahn()
        self.registry = Registry(config.websocket, reactor=reactor,
                                 shutdown_timeout=config.shutdown_timeout)
        reactor = self.registry.reactor
        self.events = EventBus(reactor)
        self.public_events = PublicEvents(self.events, SpectatorConfig.from_tables(
            config.spectator, config.plugin_config.get("live")))
        """The events as every public view shows them (:mod:`gamews.spectator`)."""
        self.servers: dict[str, IGameServer] = {}
        self.log_sources: dict[str, Service] = {}
        """Each game server's log source service, by server name."""
        self.plugins = plugins
        self.demo = demo
        self.fanout = fanout
        self._index_mounts: list[Mount] = []
        if fanout is not None:
            self._add_fanout(fanout)
        for i, table in enumerate(config.servers):
            self._add_server(i, table, GameServerConfig.from_table(dict(table),
                                                                 base_dir=config.base_dir))
        if demo is not None:
            # after its log source (which must listen before the first lines are sent)
            self._add_server(len(config.servers), demo.table, demo.game, demo.environ)
            demo.service.setServiceParent(self)  # type: ignore[no-untyped-call]
        for plugin in plugins:
            plugin_config = dict(config.plugin_config.get(plugin.name, {}))
            if demo is not None:
                plugin_config = {**demo.plugin_defaults.get(plugin.name, {}), **plugin_config}
            context = PluginContext(plugin.name, self.registry, config.listen, plugin_config,
                                    servers=self.servers, events=self.events,
                                    public_events=self.public_events,
                                    base_dir=config.base_dir)
            _PluginHost(plugin, context).setServiceParent(self)  # type: ignore[no-untyped-call]
        if fanout is not None and fanout.role == "origin":
            from gamews.fanout.origin import RequestServer

            requests = RequestServer(fanout, self._link("requests"), self._link("write"),
                                     self.request_handler, clock=reactor)
            requests.setServiceParent(self)  # type: ignore[no-untyped-call]
        if manhole is not None:
            def rcon(server: str, command: str) -> Deferred[str]:
                """rcon(server, command): run an RCON command; yields its reply."""
                return self.servers[server].rcon(command)

            namespace = service_namespace(self, servers=self.servers, events=self.events,
                                          rcon=rcon)
            make_manhole_service(manhole, namespace, reactor=reactor).setServiceParent(self)
        self.metrics: GamewsMetrics | None = None
        """This instance's Prometheus metrics, when served (``metrics`` given)."""
        if metrics is not None:
            links = {n: s for n, s in self.servers.items() if isinstance(s, GameServer)}
            # an edge's stand-ins hold no RCON link: the origin's metrics have them
            self.metrics = GamewsMetrics(self.registry, links, self.log_sources)
            metrics_service = MetricsService(metrics.listen, self.metrics, reactor=reactor,
                                             limits=config.websocket)
            metrics_service.setServiceParent(self)  # type: ignore[no-untyped-call]

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
                                        clock=reactor)
            publisher.setServiceParent(self)  # type: ignore[no-untyped-call]
            return
        if self.config.servers or self.demo is not None:
            raise ConfigError("fanout.role", "an edge holds no game link: give it no [[server]] "
                                             "and no demo (the origin has them)")
        from gamews.fanout.edge import EdgeFeed

        feed = EdgeFeed(fanout, self.events, self._link("read"), self._link("write"),
                        clock=reactor)
        self.servers.update(feed.servers)
        feed.setServiceParent(self)  # type: ignore[no-untyped-call]

    def request_handler(self, plugin: str) -> IRequestHandler | None:
        """The running plugin ``plugin``'s service if it applies forwarded user requests."""
        host = self.namedServices.get(f"plugin:{plugin}")
        service = host.service if isinstance(host, _PluginHost) else None
        return service if IRequestHandler.providedBy(service) else None

    def _add_server(self, index: int, table: Mapping[str, Any], game_config: GameServerConfig,
                    environ: dict[str, str] | None = None) -> None:
        """A game server: its RCON link and its log source (from ``table``), as child services."""
        if game_config.name in self.servers:
            raise ConfigError(f"server.{game_config.name}.name",
                              f"another [[server]] is already called {game_config.name!r}")
        endpoint = self.config.listen[0]

        def mount(path: str, resource: IResource) -> Mount:
            return self.registry.mount(endpoint, path, resource, owner=f"log:{game_config.name}")

        self.events.add_server(game_config.name)
        log_service = log_source_from_table(
            table, bus=self.events, reactor=self.registry.reactor,
            where=f"server.{game_config.name}",
            base_dir=self.config.base_dir, environ=environ, mount=mount)
        if log_service is not None:
            log_service.setServiceParent(self)
            self.log_sources[game_config.name] = log_service
        game = GameServer(game_config, reactor=self.registry.reactor)
        game.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.servers[game_config.name] = game

    def startService(self) -> None:
        # a socket per connection, and room for pages, handshakes and game links
        raise_file_limit(self.config.websocket.max_connections + 1024)
        page = IndexPage(self.registry, self.plugins)
        for endpoint in self.config.listen:
            self._index_mounts.append(self.registry.mount(endpoint, "/", page, owner="gamews"))
            self._index_mounts.append(self.registry.mount(endpoint, "/static/", static_files(),
                                                          owner="gamews"))
        super().startService()  # type: ignore[no-untyped-call]
        if self.demo is not None:
            self.demo.announce()
        # the modules and objects of start-up live as long as the process: keep them out
        # of the cyclic collector's full passes (an eighth of a handshake's cost before)
        gc.freeze()

    def stopService(self) -> Deferred[None]:
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
