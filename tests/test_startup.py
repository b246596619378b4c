"""A port gamews cannot bind stops ``twistd -n gamews`` with one line naming the setting and
exit status 1, for each kind of port: web (``listen``), metrics, manhole and a UDP log port."""

from __future__ import annotations

import socket
from pathlib import Path

from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamews.manhole import hash_password
from gamews.startup import listen_reason
from tests.support import free_port, spawn_twistd


class ReasonTests(SynchronousTestCase):
    """The reason in the line is short and plain."""

    def test_address_in_use(self) -> None:
        """EADDRINUSE reads "address already in use", not a CannotListenError repr."""
        error = CannotListenError("127.0.0.1", 80, OSError(98, "Address already in use"))
        self.assertEqual(listen_reason(Failure(error)), "address already in use")

    def test_permission_denied(self) -> None:
        """EACCES (a port below 1024 without the capability) reads "permission denied"."""
        error = CannotListenError("", 80, PermissionError(13, "Permission denied"))
        self.assertEqual(listen_reason(Failure(error)), "permission denied")


class LoudStartTests(TestCase):
    """``twistd -n gamews`` with a port already taken exits 1 after one line naming it."""

    timeout = 60

    def occupied(self, kind: int = socket.SOCK_STREAM) -> int:
        """A loopback port (TCP listening, or UDP bound) held by someone else for the test."""
        s = socket.socket(socket.AF_INET, kind)
        self.addCleanup(s.close)
        s.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            s.listen()
        port: int = s.getsockname()[1]
        return port

    def config(self, text: str) -> Path:
        """Write a config file (listening on a free web port) in a fresh directory."""
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        path = directory / "gamews.toml"
        path.write_text(f'listen = ["tcp:{free_port()}:interface=127.0.0.1"]\n' + text)
        return path

    async def fails_naming(self, args: list[str], setting: str,
                           env: dict[str, str] | None = None) -> None:
        """Run twistd with ``args``; it must end with status 1 after one line naming
        ``setting``, and no traceback."""
        process = spawn_twistd(["-n", "gamews", *args], env=env)
        code, _ = await process.ended
        output = process.output.decode(errors="replace")
        self.assertEqual(code, 1, output + process.errors.decode(errors="replace"))
        lines = [line for line in output.splitlines() if "gamews cannot start" in line]
        self.assertEqual(len(lines), 1, output)
        self.assertIn(f"gamews cannot start: {setting} = ", lines[0])
        self.assertIn("address already in use", lines[0])
        self.assertNotIn("Traceback", output + process.errors.decode(errors="replace"))

    async def test_web_port(self) -> None:
        """A web port in use (``--listen``/``listen``): exit 1, ``listen[0]`` named."""
        port = self.occupied()
        await self.fails_naming(["--listen", f"tcp:{port}:interface=127.0.0.1"], "listen[0]")

    async def test_metrics_port(self) -> None:
        """A metrics port in use: exit 1, ``metrics.listen`` named."""
        config = self.config(
            f'[metrics]\nlisten = "tcp:{self.occupied()}:interface=127.0.0.1"\n')
        await self.fails_naming(["--config", str(config)], "metrics.listen")

    async def test_manhole_port(self) -> None:
        """A manhole port in use: exit 1, ``manhole.endpoint`` named."""
        config = self.config(
            f'[manhole]\nendpoint = "tcp:{self.occupied()}:interface=127.0.0.1"\n'
            'password_file = "manhole.passwords"\n')
        (config.parent / "manhole.passwords").write_text(
            f"admin:{hash_password('not-a-real-password')}\n")
        await self.fails_naming(["--config", str(config)], "manhole.endpoint")

    async def test_log_port(self) -> None:
        """A UDP log port in use: exit 1, ``server.NAME.log`` named."""
        config = self.config(
            '[[server]]\nname = "alpha"\nkind = "source"\nrcon = "127.0.0.1:27015"\n'
            'password_env = "GAMEWS_TEST_RCON"\n'
            f'log = "udp:{self.occupied(socket.SOCK_DGRAM)}:interface=127.0.0.1"\n')
        await self.fails_naming(["--config", str(config)], "server.alpha.log",
                                env={"GAMEWS_TEST_RCON": "pw"})
