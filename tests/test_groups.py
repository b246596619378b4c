"""context.open and context.mount without endpoint=: one handle over every web endpoint."""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.static import Data
from zope.interface.verify import verifyObject

from gamews.api import ChannelKind, IConnection, IListener, IMount
from gamews.groups import ListenerGroup, MountGroup
from gamews.registry import Registry
from gamews.service import PluginContext
from tests.support import connect, free_port, real_reactor


class GroupTests(TestCase):
    """Two real loopback endpoints behind one listener and one mount."""

    timeout = 20

    def test_one_handle_serves_both_endpoints(self) -> Deferred[None]:
        """Children on either port reach the plugin; broadcast, channels, connections span
        both; endpoint= opens one only; closing releases both ports."""
        ports = [free_port(), free_port()]
        endpoints = tuple(f"tcp:{p}:interface=127.0.0.1" for p in ports)
        registry = Registry(reactor=real_reactor())
        context = PluginContext("grouped", registry, endpoints, {})
        held: list[IConnection] = []

        def incoming(child: IConnection) -> None:
            child.hook(on_open=held.append)
            listener.channel("all", ChannelKind.EVENTS).subscribe(child)

        listener = context.open("/g", incoming=incoming)
        mount = context.mount("/page", Data(b"hi", "text/plain"))
        single = context.open("/one", endpoint=endpoints[1], incoming=lambda c: c.hook())
        self.assertIsInstance(listener, ListenerGroup)
        self.assertIsInstance(mount, MountGroup)
        self.assertNotIsInstance(single, ListenerGroup)
        verifyObject(IListener, listener)
        verifyObject(IMount, mount)

        async def run() -> None:
            await listener.when_listening()
            clients = [await connect(port, "/g") for port in ports]
            self.assertEqual(len(listener.connections()), 2)
            self.assertEqual(listener.channel("all").publish("to all"), 2)
            self.assertEqual(listener.broadcast("again"), 2)
            self.assertEqual(listener.broadcast("one", to=held[:1]), 1)
            for client in clients:
                await client.wait_messages(2)
            self.assertEqual([c.messages[:2] for c in clients], [["to all", "again"]] * 2)
            for port in ports:
                response = await Agent(real_reactor()).request(
                    b"GET", b"http://127.0.0.1:%d/page" % port)
                self.assertEqual(await readBody(response), b"hi")
            with self.assertRaises(ConnectionError):
                await connect(ports[0], "/one")
            for client in clients:
                client.sendClose()
                await client.closed
            await context.close_all()
            self.assertEqual(registry.ports(), [])

        return ensureDeferred(run())
