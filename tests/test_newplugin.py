"""``python -m gamews new-plugin``: the package it writes installs, passes its own tests
and runs in ``twistd gamews``."""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamews.__main__ import main
from gamews.newplugin import check_name, write_plugin
from tests.support import REPO, can_connect, connect, free_port, poll_until, spawn_twistd
from tests.test_discovery import pip_install, probe


class TemplateTests(SynchronousTestCase):
    """Names, refusals and the files written."""

    def test_names(self) -> None:
        """Lower-case identifiers only; built-in plugins' names and keywords are taken."""
        self.assertIsNone(check_name("kill_feed2"))
        for bad in ("KillFeed", "2fast", "kill-feed", "", "x" * 32, "chat", "class", "twisted"):
            self.assertIsNotNone(check_name(bad), bad)

    def test_files_and_refusals(self) -> None:
        """The package's files; an existing directory or a bad name is exit status 2."""
        target = Path(self.mktemp())
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(main(["new-plugin", "kill_feed", "--directory", str(target)]), 0)
        self.assertEqual(sorted(p.relative_to(target).as_posix() for p in target.rglob("*")
                                if p.is_file()),
                         ["README.md", "kill_feed/__init__.py", "kill_feed/test/__init__.py",
                          "kill_feed/test/test_kill_feed.py", "pyproject.toml",
                          "twisted/plugins/kill_feed_gamews.py"])
        module = (target / "kill_feed" / "__init__.py").read_text()
        self.assertIn("settings_type = KillFeedSettings", module)
        self.assertIn("from gamews.api import (", module)
        self.assertNotIn("import gamews.", module.replace("from gamews.api", ""))
        self.assertIn('kill_feed = "kill_feed:KillFeedPlugin"',
                      (target / "pyproject.toml").read_text())
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertEqual(main(["new-plugin", "kill_feed", "--directory", str(target)]), 2)
            self.assertEqual(main(["new-plugin", "Bad-Name"]), 2)
        self.assertIn("already exists", err.getvalue())
        with self.assertRaises(ValueError):
            write_plugin("echo", Path(self.mktemp()))


class RoundTripTests(TestCase):
    """Generated, installed editable (into a temporary prefix), tested, run."""

    timeout = 120

    def test_generate_install_test_run(self) -> Deferred[None]:
        """The template's own trial tests pass, and twistd gamews serves it."""
        root = Path(self.mktemp()).resolve()
        package = root / "killfeed"
        write_plugin("killfeed", package)
        prefix = root / "prefix"

        async def run() -> None:
            await pip_install(self, "--prefix", str(prefix), "-e", str(package))
            site_dir = str(next(prefix.glob("lib/python*/site-packages")))
            self.assertIn("killfeed", (await probe(self, site_dir))["found"])
            out, err, code = await getProcessOutputAndValue(
                sys.executable,
                ["-c", "import site, sys; site.addsitedir(sys.argv[1]); "
                       "from twisted.scripts.trial import run; "
                       "sys.argv = ['trial', '--temp-directory', sys.argv[2], 'killfeed']; run()",
                 site_dir, str(root / "_trial")],
                env={"PYTHONPATH": str(REPO)}, path=str(package))
            self.assertEqual(code, 0, (out + err).decode(errors="replace"))
            self.assertIn(b"PASSED (successes=3)", out)
            await self.serve(site_dir, root)

        return ensureDeferred(run())

    async def serve(self, site_dir: str, root: Path) -> None:
        config = root / "gamews.toml"
        config.write_text('plugins = ["killfeed"]\n[plugin.killfeed]\nheadshots_only = true\n')
        port = free_port()
        process = spawn_twistd(["-n", "gamews", "--listen", f"tcp:{port}:interface=127.0.0.1",
                                "--config", str(config)],
                               prelude=f"import site; site.addsitedir({site_dir!r})")

        async def stop() -> None:
            process.signal("KILL")
            await process.ended

        self.addCleanup(stop)
        await poll_until(lambda: can_connect(port) or process.ended.called, timeout=20)
        self.assertFalse(process.ended.called, process.errors.decode(errors="replace"))
        client = await connect(port, "/killfeed/ws")
        self.assertEqual([json.loads(m) for m in await client.wait_messages(1)],
                         [{"type": "hello", "plugin": "killfeed"}])
        client.sendClose()
        await client.closed
