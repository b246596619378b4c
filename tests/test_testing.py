"""gamews.testing: the plugin test kit keeps the interfaces it stands in for."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from gamews.api import (
    ChannelKind,
    Custom,
    Envelope,
    IChannel,
    IConnection,
    IGameServer,
    IListener,
    IMount,
    IPluginContext,
    Kill,
    LinkState,
    Player,
    ReadyState,
)
from gamews.testing import FakeBrowser, PluginTestContext


class KitTests(SynchronousTestCase):
    """Each fake provides its interface; scripted servers and browsers behave as documented."""

    def setUp(self) -> None:
        self.context = PluginTestContext("kit", {"x": 1})
        self.game = self.context.add_server("alpha")

    def test_interfaces(self) -> None:
        """The context, server, browser, listener, channel and mount verify against gamews.api."""
        listener = self.context.open("/kit", incoming=lambda c: c.hook())
        verifyObject(IPluginContext, self.context)
        verifyObject(IGameServer, self.game)
        verifyObject(IListener, listener)
        verifyObject(IChannel, listener.channel("c"))
        verifyObject(IConnection, FakeBrowser())
        verifyObject(IMount, self.context.mount("/p", object()))  # type: ignore[arg-type]

    def test_feed_typed_events_and_bridge_lines(self) -> None:
        """feed publishes typed events on the context's bus; feed_log parses log lines."""
        seen: list[Envelope] = []
        self.context.events.subscribe(seen.append)
        kill = Kill(Player("A", "bot:1"), Player("B", "bot:2"), "ak47")
        self.game.feed(kill)
        self.game.feed_log('L 11/28/2026 - 12:00:00: gamews bomb {"site":"A"}',
                           "L 11/28/2026 - 12:00:00: gamews bomb {oops")
        self.assertEqual([e.event for e in seen],
                         [kill, Custom("bomb", {"site": "A"}, log_time="2026-11-28T12:00:00")])
        self.assertEqual([e.seq for e in seen], [1, 2])

    def test_rcon_answers_and_link_states(self) -> None:
        """Scripted commands answer at once, others wait; link changes reach subscribers."""
        self.game.answer("status", "hostname: kit")
        self.game.answer("kick x", ValueError("no"))
        self.assertEqual(self.successResultOf(self.game.rcon("status")), "hostname: kit")
        self.failureResultOf(self.game.rcon("kick x"), ValueError)
        pending = self.game.rcon("say hi")
        self.assertNoResult(pending)
        self.game.replies[0].callback("ok")
        self.assertEqual(self.successResultOf(pending), "ok")
        self.assertEqual(self.game.commands, ["status", "kick x", "say hi"])
        states: list[LinkState] = []
        self.game.subscribe(states.append)
        self.game.set_state(LinkState.DOWN)
        self.assertEqual((states, self.game.status().state), ([LinkState.DOWN], LinkState.DOWN))

    def test_browser_records_frames(self) -> None:
        """A connected browser records text and binary frames; a channel publishes to it."""
        def incoming(child: IConnection) -> None:
            child.hook(on_message=lambda c, data: c.send_binary(b"\x00" + bytes(data, "ascii")
                                                               if isinstance(data, str)
                                                               else b"\x00" + data))
            listener.channel("all", ChannelKind.STATE).subscribe(child)

        listener = self.context.open("/kit", incoming=incoming)
        browser = self.context.connect("/kit", query={"team": ["red"]})
        self.assertEqual((browser.ready_state, browser.request.query), (ReadyState.OPEN,
                                                                         {"team": ["red"]}))
        browser.receive(b"\x01")
        self.assertEqual(listener.channel("all", ChannelKind.STATE).publish('{"a":1}'), 1)
        self.assertEqual(browser.frames, [b"\x00\x01", '{"a":1}'])
        self.assertEqual(browser.sent, [{"a": 1}])
        browser.drop()
        self.assertEqual(listener.channel("all", ChannelKind.STATE).publish("x"), 0)

    def test_clock(self) -> None:
        """The context's reactor is a Clock the test advances."""
        fired: list[float] = []
        self.context.reactor.callLater(5, lambda: fired.append(self.context.reactor.seconds()))
        self.context.reactor.advance(5)
        self.assertEqual(fired, [5.0])
