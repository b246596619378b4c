"""Readable weapons on the pages; suicides and world deaths labelled in chat and kill feed."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamews.events import Envelope, EventBus
from gamews.logs.quake3 import parse_line
from gamews.plugins.lines import line_of
from gamews.plugins.live import view_of

KILL = "  2:17 Kill: 0 3 7: Sarge killed Major by MOD_ROCKET_SPLASH"
SUICIDE = "  2:17 Kill: 3 3 7: Major killed Major by MOD_ROCKET_SPLASH"
LAVA = "  1:52 Kill: 1022 2 16: <world> killed Kyonshi by MOD_LAVA"
FALL = "  1:52 Kill: 1022 2 19: <world> killed Kyonshi by MOD_FALLING"


def envelope(line: str, seq: int = 1) -> Envelope:
    return Envelope(seq, "oa", 0.0, parse_line(line))


class WeaponNameTests(SynchronousTestCase):
    """Quake 3 means of death on the live page and in chat."""

    def test_kill_feed(self) -> None:
        """Kill feed entries show readable weapons and label suicides and world deaths."""
        bus = EventBus(Clock())
        for line in (KILL, SUICIDE, LAVA, FALL):
            bus.publish("oa", parse_line(line))
        state = bus.state("oa")
        assert state is not None
        feed = view_of(state, 10)["kill_feed"]
        self.assertEqual([(e["killer"], e["weapon"], e["kind"]) for e in feed],
                         [("Sarge", "rocket launcher (splash)", "kill"),
                          (None, "rocket launcher (splash)", "suicide"),
                          (None, "lava", "world"), (None, "falling", "world")])

    def test_raw_kept(self) -> None:
        """The event keeps the raw MOD_* name beside the readable one."""
        obj = envelope(KILL).to_json()
        self.assertEqual((obj["weapon"], obj["weapon_name"]),
                         ("MOD_ROCKET_SPLASH", "rocket launcher (splash)"))

    def test_chat_lines(self) -> None:
        """The chat page says who killed whom with what, and labels the other deaths."""
        texts = [line_of(envelope(x)) for x in (KILL, SUICIDE, LAVA)]
        self.assertEqual([t["text"] if t else None for t in texts], [
            "Sarge killed Major with rocket launcher (splash)",
            "Major killed themselves (suicide: rocket launcher (splash))",
            "Kyonshi was killed by the world (lava)",
        ])
