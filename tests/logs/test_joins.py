"""Quake 3 joins wait (briefly, on an injected clock) for the player's name."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import Connected, Envelope, EventBus
from gamews.logs.quake3 import parse_line
from gamews.logs.service import LinePipeline


class JoinHoldTests(SynchronousTestCase):
    """A human's ClientConnect comes before the line that names them."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.bus = EventBus(self.clock)
        self.seen: list[Envelope] = []
        self.bus.subscribe(self.seen.append)
        self.sink = LinePipeline(self.bus, "oa", parse_line, clock=self.clock)

    def joins(self) -> list[str]:
        return [e.event.player.name for e in self.seen if isinstance(e.event, Connected)]

    def test_join_waits_for_the_name(self) -> None:
        """ClientConnect then ClientUserinfoChanged: the join is published with the name."""
        self.sink("  0:10 ClientConnect: 5")
        self.assertEqual(self.joins(), [])
        self.sink(r"  0:10 ClientUserinfoChanged: 5 n\Alice\t\0\model\sarge")
        self.assertEqual(self.joins(), ["Alice"])
        self.assertEqual([e.event.type for e in self.seen], ["player_info", "player_connected"])

    def test_bot_order_not_held(self) -> None:
        """A bot's user info comes first: its join goes out at once, named."""
        self.sink(r"  0:00 ClientUserinfoChanged: 1 n\Sarge\t\0\skill\ 3.00")
        self.sink("  0:00 ClientConnect: 1")
        self.assertEqual(self.joins(), ["Sarge"])

    def test_released_after_the_hold(self) -> None:
        """With no name line, the join goes out nameless after the hold (1 s)."""
        self.sink("  0:10 ClientConnect: 6")
        self.clock.advance(0.9)
        self.assertEqual(self.joins(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.joins(), [""])

    def test_other_line_of_that_client_releases(self) -> None:
        """Any other line of the client first releases the join, keeping the order."""
        self.sink("  0:10 ClientConnect: 7")
        self.sink("  0:10 ClientDisconnect: 7")
        self.assertEqual([e.event.type for e in self.seen],
                         ["player_connected", "player_disconnected"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
