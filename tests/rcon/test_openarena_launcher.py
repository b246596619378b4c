"""The OpenArena launcher in ``tests/openarena.py`` against the real server (skipped if absent)."""

from __future__ import annotations

from twisted.trial import unittest

from tests.openarena import OpenArenaServer, require_openarena


class LauncherTests(unittest.TestCase):
    """Start, query and stop a real OpenArena dedicated server on loopback."""

    def test_start_rcon_stop(self) -> None:
        """The server answers rcon with its bots and leaves ``ShutdownGame:`` after SIGTERM."""
        require_openarena()
        oa = OpenArenaServer(rcon_password="launcher-pw", bots=("Sarge",))
        self.addCleanup(oa.stop)
        oa.start()
        self.assertTrue(oa.running())
        self.assertEqual(oa.address[0], "127.0.0.1")
        self.assertIn("Sarge", oa.rcon("status"))
        log = oa.games_log
        lines_before_stop = log.read_text("utf-8", "replace")
        self.assertIn("InitGame:", lines_before_stop)
        home = oa.home
        self.addCleanup(oa.cleanup)
        oa.stop(remove_home=False)
        self.assertFalse(oa.running())
        final = log.read_text("utf-8", "replace").splitlines()
        self.assertTrue(any("ShutdownGame:" in line for line in final[-3:]), final[-3:])
        oa.cleanup()
        self.assertFalse(home.exists(), "temporary home left behind")

    def test_unsafe_password_refused(self) -> None:
        """A password that would break the cfg/command line is refused before launch."""
        with self.assertRaises(ValueError):
            OpenArenaServer(rcon_password="two words")
