"""``twistd gamews``: options, config errors, the .tac file, discovery, SIGTERM."""

from __future__ import annotations

import gc
import io
import sys
import textwrap
import time
from pathlib import Path

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from gamews.service import GamewsService
from gamews.tap import Options, makeService
from tests.support import (
    REPO,
    can_connect,
    connect,
    free_port,
    parse_options,
    poll_until,
    real_reactor,
    spawn_python,
    spawn_twistd,
)


class OptionsTests(SynchronousTestCase):
    """Command-line parsing, with one-line errors."""

    def test_help_footer_is_true(self) -> None:
        """The --help footer names what runs with no options: the demo and its plugins."""
        text = Options().getUsage()
        for word in ("demo", "echo", "chat", "live", "console", "python -m gamews"):
            self.assertIn(word, text)
        self.assertNotIn("run the echo plugin (/echo) and an index page", text)

    def test_manhole_bare_port(self) -> None:
        """``--manhole 9022`` is port 9022 on loopback, as ``--metrics 9108`` is."""
        from gamews.manhole import hash_password

        passwords = Path(self.mktemp())
        passwords.write_text(f"admin:{hash_password('not-a-real-password')}\n")
        config = Path(self.mktemp())
        config.write_text(f'[manhole]\npassword_file = "{passwords.resolve()}"\n'
                          f'data_dir = "{Path(self.mktemp()).resolve()}"\n')
        options = self.parse("--config", str(config), "--manhole", "9022")
        service = makeService(options)
        assert isinstance(service, GamewsService)
        manhole = service.getServiceNamed("manhole")
        self.assertEqual(manhole.config.endpoint, "tcp:9022:interface=127.0.0.1")

    def parse(self, *argv: str) -> Options:
        options: Options = parse_options(self, list(argv))
        return options

    def error_of(self, *argv: str) -> str:
        """Parse ``argv`` expecting failure; return what went to stderr."""
        # garbage of earlier tests (a timed-out test's coroutine) reports to stderr when
        # collected: collect it now, not while stderr is captured
        gc.collect()
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as raised:
            self.parse(*argv)
        self.assertEqual(raised.exception.code, 2)
        return err.getvalue()

    def test_defaults(self) -> None:
        """No options: loopback port 8080, the demo game and every built-in plugin."""
        options = self.parse()
        self.assertEqual(options.config.listen, ("tcp:8080:interface=127.0.0.1",))
        service = makeService(options)
        assert isinstance(service, GamewsService)
        self.assertEqual([p.name for p in service.plugins], ["echo", "chat", "live", "overlay",
                                                               "console"])
        assert service.demo is not None
        self.addCleanup(service.demo.cleanup)
        self.assertTrue(service.demo.tokens_path.exists())
        self.assertEqual(list(service.servers), ["demo"])

    def test_listen_repeatable(self) -> None:
        """--listen may be given several times."""
        options = self.parse("--listen", "tcp:1234:interface=127.0.0.1", "-l", "unix:/tmp/g.s")
        self.assertEqual(options.config.listen, ("tcp:1234:interface=127.0.0.1", "unix:/tmp/g.s"))

    def test_bad_listen_one_line(self) -> None:
        """A malformed --listen is one line naming the option."""
        message = self.error_of("--listen", "tcp:notaport")
        self.assertEqual(message.count("\n"), 1)
        self.assertIn("--listen", message)

    def test_bad_metrics_one_line(self) -> None:
        """A malformed --metrics endpoint is one line naming the option."""
        message = self.error_of("--metrics", "tcp:notaport")
        self.assertEqual(message.count("\n"), 1)
        self.assertIn("--metrics", message)

    def test_manhole_without_credentials(self) -> None:
        """--manhole with no credentials configured is refused in one line."""
        message = self.error_of("--manhole", "tcp:2222:interface=127.0.0.1")
        self.assertEqual(message.count("\n"), 1)
        self.assertIn("no credentials configured", message)

    def test_config_error_names_key(self) -> None:
        """A bad config value gives one line naming the key."""
        path = Path(self.mktemp())
        path.write_text("[websocket]\nmax_message_size = -1\n")
        message = self.error_of("--config", str(path))
        self.assertEqual(message.count("\n"), 1)
        self.assertIn("websocket.max_message_size", message)

    def test_unknown_plugin(self) -> None:
        """Enabling a plugin that is not installed names it."""
        path = Path(self.mktemp())
        path.write_text('plugins = ["echo", "nosuch"]\n')
        self.assertIn("nosuch", self.error_of("--config", str(path)))

    def test_fanout_roles(self) -> None:
        """A [fanout] edge runs no demo and stands in for the origin's servers; an origin runs
        its game servers as usual; an edge given a [[server]] is refused."""
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "k").write_text("k" * 43 + "\n")
        path = directory / "gamews.toml"
        path.write_text('[fanout]\nrole = "edge"\nredis = "tcp:127.0.0.1:6379"\nkey_file = "k"\n'
                        'name = "edge-1"\nservers = ["alpha", "beta"]\n')
        service = makeService(self.parse("--config", str(path)))
        assert isinstance(service, GamewsService)
        self.assertIsNone(service.demo)
        self.assertEqual([(name, game.stale) for name, game in service.servers.items()],
                         [("alpha", True), ("beta", True)])
        self.assertEqual([p.name for p in service.plugins], ["echo", "chat", "live", "overlay"])
        path.write_text('[fanout]\nrole = "origin"\nredis = "tcp:127.0.0.1:6379"\nkey_file = "k"\n')
        origin = makeService(self.parse("--config", str(path)))
        assert isinstance(origin, GamewsService) and origin.demo is not None
        self.addCleanup(origin.demo.cleanup)
        self.assertEqual(list(origin.servers), ["demo"])
        path.write_text('[fanout]\nrole = "edge"\nredis = "tcp:127.0.0.1:6379"\nkey_file = "k"\n'
                        'servers = ["a"]\n[[server]]\nname = "a"\nkind = "source"\n'
                        'rcon = "127.0.0.1:1"\npassword_env = "X"\n')
        self.assertIn("fanout.role", self.error_of("--config", str(path)))
        path.write_text('[fanout]\nrole = "edge"\nredis = "tcp:127.0.0.1:6379"\nkey_file = "k"\n'
                        'password = "inline"\nservers = ["a"]\n')
        self.assertIn("fanout.password", self.error_of("--config", str(path)))

    def test_make_service(self) -> None:
        """makeService builds a GamewsService with the configured plugins, no demo if off."""
        path = Path(self.mktemp())
        path.write_text('demo = false\nplugins = ["echo"]\n')
        service = makeService(self.parse("--listen", "tcp:0:interface=127.0.0.1",
                                         "--config", str(path)))
        assert isinstance(service, GamewsService)
        self.assertEqual([p.name for p in service.plugins], ["echo"])
        self.assertEqual(service.config.listen, ("tcp:0:interface=127.0.0.1",))
        self.assertIsNone(service.demo)


class TwistdTests(TestCase):
    """``twistd -n gamews`` as a real process on a loopback port."""

    timeout = 60

    async def serve(self, *args: str, pythonpath: list[str] | None = None) -> int:
        port = free_port()
        process = spawn_twistd(["-n", "gamews", "--listen", f"tcp:{port}:interface=127.0.0.1",
                                *args], pythonpath=pythonpath)
        self.process = process
        self.addCleanup(self.stop)
        await poll_until(lambda: can_connect(port) or process.ended.called, timeout=20)
        self.assertFalse(process.ended.called, process.output.decode(errors="replace"))
        return port

    async def stop(self) -> None:
        self.process.signal("KILL")
        await self.process.ended

    def test_serves_index_and_echo_then_stops_on_sigterm(self) -> Deferred[None]:
        """The index lists the pages; /echo answers; SIGTERM closes children 1001 within 5 s."""
        async def run() -> None:
            port = await self.serve()
            response = await Agent(real_reactor()).request(
                b"GET", b"http://127.0.0.1:%d/" % port)
            self.assertEqual(response.code, 200)
            index = await readBody(response)
            for page in (b'href="/chat"', b'href="/live"', b'href="/console"', b"/echo"):
                self.assertIn(page, index)
            client = await connect(port, "/echo")
            client.send_text("ping")
            self.assertEqual(await client.wait_messages(1), ["ping"])
            started = time.monotonic()
            self.process.signal("TERM")
            _, code, _ = await client.closed
            self.assertEqual(code, 1001)
            await poll_until(lambda: self.process.ended.called, timeout=5)
            self.assertLess(time.monotonic() - started, 5)
            self.assertIn(await self.process.ended, [(0, None), (None, 15)])
            self.assertTrue(self.process.stopped_cleanly())

        return ensureDeferred(run())

    async def test_version(self) -> None:
        """``twistd gamews --version`` prints gamews's version (not only Twisted's), exit 0."""
        from gamews import __version__

        process = spawn_twistd(["gamews", "--version"])
        self.assertEqual(await process.ended, (0, None))
        self.assertIn(f"gamews {__version__} ", process.output.decode())

    async def test_python_m_gamews(self) -> None:
        """``python -m gamews --listen ...`` serves the same index and echo, in the
        foreground, and stops cleanly on SIGTERM."""
        port = free_port()
        process = spawn_python(["-m", "gamews", "--listen", f"tcp:{port}:interface=127.0.0.1"])
        self.process = process
        self.addCleanup(self.stop)
        await poll_until(lambda: can_connect(port) or process.ended.called, timeout=20)
        response = await Agent(real_reactor()).request(b"GET", b"http://127.0.0.1:%d/" % port)
        self.assertIn(b'href="/console"', await readBody(response))
        client = await connect(port, "/echo")
        client.send_text("ping")
        self.assertEqual(await client.wait_messages(1), ["ping"])
        process.signal("TERM")
        await process.ended
        self.assertTrue(process.stopped_cleanly())

    def test_bad_config_one_line_nonzero(self) -> Deferred[None]:
        """twistd with a bad config prints one line naming the key and exits non-zero."""
        config = Path(self.mktemp()).resolve()
        config.write_text('[websocket]\nping_timeout = "soon"\n')
        process = spawn_twistd(["-n", "gamews", "--config", str(config)])

        async def run() -> None:
            code, _ = await process.ended
            self.assertNotIn(code, (0, None))
            lines = process.errors.decode().strip().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertIn("websocket.ping_timeout", lines[0])
            self.assertNotIn("Traceback", process.output.decode())

        return ensureDeferred(run())


    def test_bad_plugin_settings_one_line_exit_2(self) -> Deferred[None]:
        """A bad value or unknown key in a plugin's table, and a plugin that raises while
        building, each stop twistd with one line naming the key and exit status 2."""
        root = Path(self.mktemp()).resolve()
        (root / "twisted" / "plugins").mkdir(parents=True)
        (root / "twisted" / "plugins" / "boom_gamews.py").write_text(textwrap.dedent('''
            from zope.interface import implementer
            from gamews.api import IGamewsPlugin

            @implementer(IGamewsPlugin)
            class Boom:
                name = "boom"
                description = "Fails to build."
                settings_type = None
                def make_service(self, context):
                    raise RuntimeError("no room at the inn")

            boom = Boom()
        '''))
        cases = [('[plugin.chat]\nrate = "fast"\n', "plugin.chat.rate"),
                 ("[plugin.chat]\nrate = 0\n", "plugin.chat.rate"),
                 ("[plugin.live]\nspeed = 2\n", "plugin.live.speed"),
                 ('plugins = ["echo", "boom"]\n', "plugin.boom")]

        async def run() -> None:
            for i, (text, key) in enumerate(cases):
                config = root / f"case{i}.toml"
                config.write_text(text)
                process = spawn_twistd(["-n", "gamews", "--listen",
                                        f"tcp:{free_port()}:interface=127.0.0.1",
                                        "--config", str(config)], pythonpath=[str(root)])
                code, _ = await process.ended
                lines = process.errors.decode().strip().splitlines()
                self.assertEqual((code, len(lines)), (2, 1), (text, lines))
                self.assertIn(f"{key}:", lines[0])
                self.assertNotIn("Traceback", process.output.decode())

        return ensureDeferred(run())


class DefaultPortTests(TestCase):
    """``twistd -n gamews`` with no options, and ``twistd -ny tapfiles/gamews.tac``."""

    timeout = 60

    def setUp(self) -> None:
        if can_connect(8080):
            self.skipTest("port 8080 is in use on this machine")

    def check(self, args: list[str]) -> Deferred[None]:
        process = spawn_twistd(args)

        async def run() -> None:
            try:
                await poll_until(lambda: can_connect(8080) or process.ended.called, timeout=20)
                client = await connect(8080, "/echo")
                client.send_binary(b"\x00\x01")
                self.assertEqual(await client.wait_messages(1), [b"\x00\x01"])
            finally:
                process.signal("TERM")
                await process.ended
                self.assertTrue(process.stopped_cleanly())

        return ensureDeferred(run())

    def test_no_options(self) -> Deferred[None]:
        """``twistd -n gamews`` alone serves echo on 127.0.0.1:8080."""
        return self.check(["-n", "gamews"])

    def test_tac_file(self) -> Deferred[None]:
        """``twistd -ny tapfiles/gamews.tac`` builds the same service."""
        return self.check(["-ny", str(REPO / "tapfiles" / "gamews.tac")])
