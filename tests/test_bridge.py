"""The bridge from game-side plugins: ``gamews CHANNEL JSON`` lines become ``custom``
events, reach plugins, and (with the bridge plugin) browsers on ``/bridge/ws``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from gamews.api import ConfigError, Custom, Envelope, IGamewsPlugin, IPluginContext, Kill
from gamews.events import EventBus
from gamews.logs.bridge import MAX_DEPTH, MAX_JSON, Rejected, parse_bridge_line
from gamews.logs.service import LinePipeline
from gamews.logs.udp import UdpLogService
from gamews.plugins.bridge import BridgePlugin
from gamews.service import GamewsService
from gamews.settings import parse_settings
from gamews.testing import PluginTestContext
from tests.support import LOOPBACK, connect, free_port, poll_until, port_of, real_reactor
from tests.test_metrics import log_packet

STAMP = "L 11/28/2026 - 12:00:00: "


class ParseTests(SynchronousTestCase):
    """What is a bridge line, and which are dropped."""

    def test_valid_lines(self) -> None:
        """A Source or Quake 3 stamped line gives a Custom event with its time stamp."""
        self.assertEqual(parse_bridge_line(STAMP + 'gamews bomb {"site": "A", "n": [1, 2]}'),
                         Custom("bomb", {"site": "A", "n": [1, 2]},
                                log_time="2026-11-28T12:00:00"))
        self.assertEqual(parse_bridge_line(' 12:34 gamews score.v2 {"red":1}\r\n'),
                         Custom("score.v2", {"red": 1}, game_clock=754))

    def test_not_bridge_lines(self) -> None:
        """Lines that do not start with ``gamews `` are the game parser's."""
        for line in (STAMP + '"Sarge<2><BOT><CT>" say "gamews x {}"', STAMP + "gamewsx {}",
                     "Kill: 1 2 3: A killed B by MOD_RAILGUN", "gamewsbomb {}"):
            self.assertIsNone(parse_bridge_line(line), line)

    def test_rejected(self) -> None:
        """Bad channel names, invalid, non-object, oversized or deep JSON are rejected."""
        deep = "{\"a\":" * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
        for line in ("gamews Bomb {}", "gamews {}", "gamews " + "x" * 33 + " {}",
                     "gamews b<script> {}", "gamews bomb {oops", "gamews bomb [1, 2]",
                     "gamews bomb", 'gamews bomb {"a": 1} trailing',
                     'gamews bomb {"a": "' + "é" * (MAX_JSON // 2) + '"}',
                     "gamews bomb " + deep, "gamews bomb " + "[" * 5000,
                     'gamews bomb {"a": NaN}', 'gamews bomb {"a": -Infinity}',
                     'gamews bomb {"a": 1e400}'):
            self.assertIsInstance(parse_bridge_line(STAMP + line), Rejected, line[:60])

    def test_reason_never_quotes_the_line(self) -> None:
        """A rejection's reason says why without repeating hostile text."""
        rejected = parse_bridge_line(STAMP + "gamews bomb {<script>")
        assert isinstance(rejected, Rejected)
        self.assertNotIn("script", rejected.reason)

    def test_pipeline_counts_drops(self) -> None:
        """The line pipeline publishes good bridge lines and counts bad ones, publishing
        nothing for them; other lines go to the game's parser."""
        bus = EventBus(Clock())
        seen: list[Envelope] = []
        bus.subscribe(seen.append)
        pipeline = LinePipeline(bus, "alpha")
        for line in ('gamews bomb {"a":1}', "gamews bomb {bad", "gamews BAD {}",
                     '"A<2><BOT><CT>" [1 2 3] killed "B<3><BOT><TERRORIST>" [4 5 6] with "ak47"'):
            pipeline(STAMP + line)
        self.assertEqual([e.event.type for e in seen], ["custom", "kill"])
        self.assertIsInstance(seen[1].event, Kill)
        self.assertEqual((pipeline.stats.bridge_dropped, pipeline.stats.events["custom"]),
                         (2, 1))


class RelayTests(SynchronousTestCase):
    """The bridge plugin, on gamews.testing: who may follow what, read-only."""

    def make(self, config: dict[str, Any] | None = None) -> PluginTestContext:
        context = PluginTestContext.for_plugin(BridgePlugin(), config)
        self.alpha = context.add_server("alpha")
        self.beta = context.add_server("beta")
        BridgePlugin().make_service(context).startService()
        return context

    def test_relayed_to_followers_of_the_channel(self) -> None:
        """A browser gets the custom events of its channels (of its server, if given) as
        the event's JSON; other events and channels are not sent."""
        context = self.make()
        both = context.connect("/bridge/ws", query={"channel": ["bomb", "score"]})
        alpha_only = context.connect("/bridge/ws", query={"channel": ["bomb"],
                                                          "server": ["alpha"]})
        self.alpha.feed(Custom("bomb", {"site": "A"}), Custom("chat", {"x": 1}))
        self.beta.feed(Custom("bomb", {"site": "B"}), Custom("score", {"ct": 3}))
        self.alpha.feed_log(STAMP + '"A<2><BOT><CT>" say "gamews bomb {}"')
        self.assertEqual([(f["server"], f["channel"], f["data"]) for f in both.sent],
                         [("alpha", "bomb", {"site": "A"}), ("beta", "bomb", {"site": "B"}),
                          ("beta", "score", {"ct": 3})])
        self.assertEqual([(f["server"], f["data"]) for f in alpha_only.sent],
                         [("alpha", {"site": "A"})])
        self.assertEqual((both.sent[0]["type"], both.sent[0]["seq"]), ("custom", 1))

    def test_refused_requests(self) -> None:
        """No channel, a bad name, too many, an unknown server, a channel not allowed."""
        context = self.make({"channels": ["bomb"]})
        for query, status in (({}, 400), ({"channel": ["Bad!"]}, 400),
                              ({"channel": [f"c{i}" for i in range(17)]}, 400),
                              ({"channel": ["bomb"], "server": ["nope"]}, 404),
                              ({"channel": ["score"]}, 403)):
            browser = context.connect("/bridge/ws", query=query)
            self.assertFalse(browser.hooked, query)
            self.assertEqual(browser.closed and browser.closed[0], status, query)

    def test_read_only(self) -> None:
        """A browser that sends anything is closed with 1008."""
        browser = self.make().connect("/bridge/ws", query={"channel": ["bomb"]})
        browser.receive('{"type": "custom"}')
        self.assertEqual(browser.closed, (1008, "read-only"))

    def test_bad_channels_setting(self) -> None:
        """A bad ``channels`` setting names its key."""
        for bad in ("bomb", ["Bomb"], [1]):
            with self.assertRaises(ConfigError) as raised:
                PluginTestContext.for_plugin(BridgePlugin(), {"channels": bad})
            self.assertEqual(raised.exception.key, "plugin.bridge.channels")


@implementer(IGamewsPlugin)
class Recorder:
    """A third-party-like plugin that records the custom events it is given."""

    name = "recorder"
    description = "Records custom events."
    settings_type = None

    def __init__(self) -> None:
        self.events: list[Custom] = []

    def make_service(self, context: IPluginContext) -> IService:
        def record(envelope: Envelope) -> None:
            if isinstance(envelope.event, Custom):
                self.events.append(envelope.event)

        context.events.subscribe(record)
        return Service()


class Sender(DatagramProtocol):
    """Sends log datagrams from 127.0.0.1."""


class EndToEndTests(TestCase):
    """Real UDP log packets into a GamewsService, a real browser on /bridge/ws."""

    timeout = 30

    def test_udp_line_to_plugin_and_browser(self) -> Deferred[None]:
        """A ``gamews`` line reaches a plugin and the browser; oversized and invalid JSON
        lines are dropped, counted, and reach neither."""
        reactor = real_reactor()
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        (base / "alpha.rcon").write_text("secret-password\n")
        (base / "alpha.logsecret").write_text("4242\n")
        recorder = Recorder()
        settings = parse_settings({
            "listen": [LOOPBACK], "plugins": ["bridge", "recorder"],
            "server": [{"name": "alpha", "kind": "source", "rcon": f"127.0.0.1:{free_port()}",
                        "password_file": "alpha.rcon", "log": "udp:0:interface=127.0.0.1",
                        "log_secret_file": "alpha.logsecret"}],
        }, plugins={"bridge": BridgePlugin(), "recorder": recorder}, base_dir=base)
        service = GamewsService(settings, reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        log_service = service.log_sources["alpha"]
        assert isinstance(log_service, UdpLogService) and log_service.listening is not None
        target = ("127.0.0.1", log_service.listening.getHost().port)  # type: ignore[attr-defined]
        sender = Sender()
        self.addCleanup(reactor.listenUDP(0, sender, interface="127.0.0.1").stopListening)

        def send(line: str) -> None:
            assert sender.transport is not None
            sender.transport.write(log_packet(STAMP + line, "4242"), target)

        async def run() -> None:
            port = port_of(await service.registry.ports()[0].when_listening())
            browser = await connect(port, "/bridge/ws?channel=score&server=alpha")
            send('gamews score {"ct": 1, "t": 0}')
            send('gamews score {"pad": "' + "x" * MAX_JSON + '"}')
            send("gamews score {not json")
            send('gamews score {"ct": 2, "t": 0}')
            frames = await browser.wait_messages(2)
            self.assertEqual([json.loads(f)["data"] for f in frames],
                             [{"ct": 1, "t": 0}, {"ct": 2, "t": 0}])
            self.assertEqual([json.loads(f)["seq"] for f in frames], [1, 2])
            self.assertEqual([e.data for e in recorder.events],
                             [{"ct": 1, "t": 0}, {"ct": 2, "t": 0}])
            self.assertEqual(log_service.stats.bridge_dropped, 2)
            await poll_until(lambda: log_service.stats.received == 4)
            browser.sendClose()
            await browser.closed

        return ensureDeferred(run())
