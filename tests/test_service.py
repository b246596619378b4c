"""The application service: plugin hosting, isolation at start and stop, ordering."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, ensureDeferred, fail
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gamews import api
from gamews.api import IGamewsPlugin, IPluginContext
from gamews.config import GamewsConfig, WebSocketLimits
from gamews.errors import ConfigError
from gamews.plugins.echo import EchoPlugin
from gamews.service import GamewsService, PluginContext
from gamews.settings import PluginSettings, Settings, available_plugins, select_plugins
from tests.support import connect, port_of, real_reactor


@implementer(IGamewsPlugin)
class BrokenPlugin:
    """A plugin whose service fails to start (or to stop)."""

    description = "breaks"
    settings_type = None

    def __init__(self, name: str, where: str) -> None:
        self.name = name
        self.where = where

    def make_service(self, context: IPluginContext) -> IService:
        if self.where == "make":
            raise RuntimeError("cannot build")
        if self.where == "config":
            raise ConfigError("size", "too big")
        where = self.where

        class Broken(Service):
            def startService(self) -> None:
                if where == "start":
                    raise RuntimeError("cannot start")
                context.open("/leak", incoming=lambda c: c.hook())

            def stopService(self) -> Deferred[None]:
                return fail(RuntimeError("cannot stop"))

        return Broken()


class DiscoveryTests(SynchronousTestCase):
    """Built-in plugins are found through Twisted's plugin system."""

    def test_echo_is_found(self) -> None:
        """getPlugins finds the echo plugin, which provides IGamewsPlugin."""
        found = available_plugins()
        self.assertIn("echo", found)
        verifyObject(IGamewsPlugin, found["echo"])

    def test_select_unknown(self) -> None:
        """Selecting a missing plugin names it."""
        with self.assertRaises(ConfigError) as raised:
            select_plugins(("echo", "chat9"), available_plugins())
        self.assertIn("chat9", str(raised.exception))

    def test_api_is_the_public_surface(self) -> None:
        """gamews.api exports exactly what __all__ names, and the context provides its interface."""
        for name in api.__all__:
            self.assertTrue(hasattr(api, name), name)
        context = PluginContext("x", GamewsService(Settings()).registry,
                                ("tcp:8080",), {})
        verifyObject(IPluginContext, context)


class ServiceTests(TestCase):
    """A GamewsService on a loopback port."""

    timeout = 20

    def make(self, plugins: list[Any]) -> GamewsService:
        config = GamewsConfig(listen=("tcp:0:interface=127.0.0.1",),
                              websocket=WebSocketLimits(ping_interval=0))
        service = GamewsService(Settings(config, tuple(PluginSettings.of(p) for p in plugins)),
                                reactor=real_reactor())
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service

    def test_broken_plugins_isolated(self) -> Deferred[None]:
        """Plugins failing to start or stop are logged; echo still works."""
        service = self.make([BrokenPlugin("b", "start"), BrokenPlugin("c", "stop"),
                             EchoPlugin()])

        async def run() -> None:
            port = port_of(await service.registry.ports()[0].when_listening())
            client = await connect(port, "/echo")
            client.send_text("alive")
            self.assertEqual(await client.wait_messages(1), ["alive"])
            await service.stopService()
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
            self.assertEqual(service.registry.ports(), [])  # c's leaked /leak was closed too

        return ensureDeferred(run())

    async def test_healthz(self) -> None:
        """/healthz answers 200 with the link states while running, 503 once stopping."""
        import json

        from twisted.web.client import Agent, readBody

        from gamews.rcon.link import LinkState
        from gamews.testing import ScriptedGameServer

        service = self.make([EchoPlugin()])
        game = ScriptedGameServer("alpha")
        game.state = LinkState.DOWN
        service.servers["alpha"] = game
        port = port_of(await service.registry.ports()[0].when_listening())
        agent = Agent(real_reactor())
        url = f"http://127.0.0.1:{port}/healthz".encode()
        response = await agent.request(b"GET", url)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"application/json"])
        self.assertEqual(json.loads(await readBody(response)),
                         {"status": "ok", "links": {"alpha": "down"}})
        service.registry.shutting_down = True  # what stopService does first
        response = await agent.request(b"GET", url)
        self.assertEqual(response.code, 503)
        self.assertEqual(json.loads(await readBody(response))["status"], "stopping")
        service.registry.shutting_down = False

    def test_plugin_failing_to_build_stops_startup(self) -> None:
        """A plugin whose make_service raises is a ConfigError naming it, not an absence."""
        with self.assertRaises(ConfigError) as raised:
            self.make([EchoPlugin(), BrokenPlugin("a", "make")])
        self.assertEqual(raised.exception.key, "plugin.a")
        self.assertIn("RuntimeError: cannot build", str(raised.exception))

    def test_plugin_config_error_named_in_full(self) -> None:
        """A ConfigError a plugin raises on its own key while building names plugin.NAME.KEY."""
        with self.assertRaises(ConfigError) as raised:
            self.make([BrokenPlugin("a", "config")])
        self.assertEqual(raised.exception.key, "plugin.a.size")

    def test_stop_sends_1001_first(self) -> Deferred[None]:
        """Stopping the service closes children with 1001 before plugins stop."""
        service = self.make([EchoPlugin()])

        async def run() -> None:
            port = port_of(await service.registry.ports()[0].when_listening())
            client = await connect(port, "/echo")
            await service.stopService()
            _, code, _ = await client.closed
            self.assertEqual(code, 1001)

        return ensureDeferred(run())


class MemoryServiceTests(SynchronousTestCase):
    """Service start and stop with a MemoryReactorClock."""

    def test_start_listens_on_each_endpoint(self) -> None:
        """Each --listen endpoint gets one port with the index page and echo."""
        reactor = MemoryReactorClock()
        config = GamewsConfig(listen=("tcp:8080:interface=127.0.0.1", "tcp:8081"))
        service = GamewsService(Settings(config, (PluginSettings.of(EchoPlugin()),)),
                                reactor=reactor)
        service.startService()
        self.assertEqual(sorted(p[0] for p in reactor.tcpServers), [8080, 8081])
        for port in service.registry.ports():
            self.assertEqual(set(port.routes), {"/echo"})
            self.assertEqual(set(port.mounts), {"/", "/healthz", "/static/"})
        self.successResultOf(service.stopService())
        self.assertEqual(service.registry.ports(), [])
