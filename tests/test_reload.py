"""Reload without dropping anyone (SIGHUP on a real ``twistd -n gamews``), a password change
re-authenticating a link, and ``python -m gamews check-config``."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamews.auth import hash_token
from gamews.rcon.link import LinkState
from gamews.rcon.source_codec import SERVERDATA_AUTH
from gamews.reload import check_config, restart_needed
from gamews.secret import Secret
from gamews.settings import CommandLine, available_plugins, load_settings
from tests.rcon.test_source_client import ClientTestCase
from tests.support import Client, can_connect, connect, free_port, poll_until, spawn_twistd

ORIGIN = "https://fans.example.org"


def config_text(port: int, origins: list[str]) -> str:
    """A config with the demo, the console and ``origins`` allowed."""
    return (f'listen = ["tcp:{port}:interface=127.0.0.1"]\ndemo = true\n'
            f'[websocket]\nallowed_origins = {json.dumps(origins)}\n'
            '[plugin.console]\ntokens_file = "tokens.txt"\naudit_log = "audit.jsonl"\n')


class SighupTests(TestCase):
    """SIGHUP re-reads the config of a running twistd gamews."""

    timeout = 60

    async def login(self, port: int, token: str) -> Client:
        """A console WebSocket that sent a login with ``token`` and got an answer."""
        client = await connect(port, "/console/ws")
        client.send_text(json.dumps({"type": "login", "token": token}))
        await client.wait_messages(1)
        return client

    async def test_reload(self) -> None:
        """A token added and one revoked count at the next login, an allowed origin added
        counts at the next handshake, an open console stays open and working; a bad config
        is refused in one line and the old one stays."""
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        port = free_port()
        tokens = base / "tokens.txt"
        tokens.write_text(f"ann:admin:{hash_token('tok-ann')}\n")
        config = base / "gamews.toml"
        config.write_text(config_text(port, []))
        process = spawn_twistd(["-n", "gamews", "--config", str(config)])

        async def stop() -> None:
            process.signal("KILL")
            await process.ended

        self.addCleanup(stop)
        await poll_until(lambda: can_connect(port) or process.ended.called, timeout=20)
        first = await self.login(port, "tok-ann")
        self.assertIn('"welcome"', str(first.messages[0]))
        with self.assertRaises(ConnectionError):
            await connect(port, "/chat/ws", origin=ORIGIN)

        tokens.write_text(f"bo:viewer:{hash_token('tok-bo')}\n")  # ann revoked, bo added
        config.write_text(config_text(port, [ORIGIN]))
        process.signal("HUP")
        await poll_until(lambda: b"configuration reloaded" in process.output, timeout=10)
        self.assertIn(b"applied: websocket.allowed_origins", process.output)
        self.assertIn('"welcome"', str((await self.login(port, "tok-bo")).messages[0]))
        self.assertIn('"denied"', str((await self.login(port, "tok-ann")).messages[0]))
        chat = await connect(port, "/chat/ws", origin=ORIGIN)
        chat.sendClose()

        config.write_text(config_text(port, [ORIGIN]) + "[websocket]\nping_timeout = -1\n")
        process.signal("HUP")
        await poll_until(lambda: b"reload refused" in process.output, timeout=10)
        refused = [line for line in process.output.decode().splitlines()
                   if "reload refused" in line]
        self.assertEqual(len(refused), 1)
        self.assertIn("the running configuration stays", refused[0])
        self.assertFalse(process.ended.called)
        chat = await connect(port, "/chat/ws", origin=ORIGIN)  # the old config stays
        chat.sendClose()

        count = len(first.messages)
        first.send_text(json.dumps({"type": "command", "id": 1, "server": "demo",
                                    "command": "status"}))
        await first.wait_messages(count + 1)
        self.assertFalse(first.closed.called)


class TlsReloadTests(TestCase):
    """An ssl: web port serves a renewed certificate to new connections after a reload."""

    timeout = 20

    async def test_new_connections_get_the_new_certificate(self) -> None:
        """After the files are replaced and the service reloads, a new wss:// connection
        sees the new certificate; one opened before stays open with the old one; files that
        do not load are refused and the certificate in use stays."""
        from gamews.reload import Reloader
        from gamews.service import GamewsService
        from tests.test_tls import make_certificate

        base = Path(self.mktemp()).resolve()
        (base / "old").mkdir(parents=True)
        (base / "new").mkdir()
        key, cert = make_certificate(base / "old")
        port = free_port()
        path = base / "gamews.toml"
        path.write_text(f'listen = ["ssl:{port}:interface=127.0.0.1:privateKey={key}:'
                        f'certKey={cert}"]\nplugins = ["echo"]\ndemo = false\n')
        cli = CommandLine(config=str(path))
        service = GamewsService(load_settings(cli, available_plugins()))
        service.startService()
        self.addCleanup(service.stopService)
        await service.registry.ports()[0].listening.when_listening()

        old_pem = cert.read_bytes()
        before = await connect(port, "/echo", tls=trust_pem(old_pem))
        new_key, new_cert = make_certificate(base / "new")
        key.write_bytes(new_key.read_bytes())
        cert.write_bytes(new_cert.read_bytes())
        self.assertTrue(Reloader(service, cli).reload())
        after = await connect(port, "/echo", tls=trust_pem(new_cert.read_bytes()))
        after.send_text("renewed")
        self.assertEqual(await after.wait_messages(1), ["renewed"])
        with self.assertRaises(ConnectionError):  # the old certificate is no longer served
            await connect(port, "/echo", tls=trust_pem(old_pem))
        before.send_text("still here")
        self.assertEqual(await before.wait_messages(1), ["still here"])

        key.write_bytes(b"not a key")
        self.assertTrue(Reloader(service, cli).reload())  # the config is fine: TLS refused
        self.flushLoggedErrors()
        again = await connect(port, "/echo", tls=trust_pem(new_cert.read_bytes()))
        again.sendClose()
        for client in (before, after):
            client.sendClose()


def trust_pem(pem: bytes) -> object:
    """Client TLS options trusting only the certificate ``pem`` (for localhost)."""
    from twisted.internet.ssl import Certificate, optionsForClientTLS

    return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(pem))


class PasswordReloadTests(ClientTestCase):
    """A new rcon password makes a Source link authenticate again with it."""

    def test_set_password_reauthenticates(self) -> None:
        """On an up link: the connection is closed and the next one sends the new password;
        after a rejection: an attempt at once, not after the five-minute wait."""
        client = self.make()
        self.endpoint.peer.answer()
        self.assertEqual(client.state, LinkState.UP)
        client.set_password(Secret("new-pw"))
        self.clock.advance(0)
        self.clock.advance(2.0)
        [auth] = self.endpoint.peer.requests()
        self.assertEqual((auth.type, auth.body), (SERVERDATA_AUTH, b"new-pw"))

    def test_after_rejection_retries_at_once(self) -> None:
        """A link waiting minutes after a rejected password tries the new one at once."""
        client = self.make(password="wrong")
        self.endpoint.peer.answer()
        self.clock.advance(0)
        self.assertEqual(client.state, LinkState.AUTH_FAILED)
        attempts = len(self.endpoint.attempts)
        client.set_password(Secret("hunter2-rcon"))
        self.assertEqual(len(self.endpoint.attempts), attempts + 1)
        self.endpoint.peer.answer()
        self.assertEqual(client.state, LinkState.UP)


class CheckConfigTests(SynchronousTestCase):
    """``python -m gamews check-config FILE``: 0 and one line, or 2 naming the key."""

    def run_check(self, text: str) -> tuple[int, str, str]:
        """Check a config file holding ``text``."""
        path = Path(self.mktemp())
        path.write_text(text)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            status = check_config(str(path))
        return status, out.getvalue(), err.getvalue()

    def test_valid(self) -> None:
        """A valid file: exit 0, one line."""
        status, out, err = self.run_check('listen = ["tcp:8080:interface=127.0.0.1"]\n')
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(len(out.splitlines()), 1)

    def test_invalid(self) -> None:
        """A bad value, a bad plugin table, bad TOML: exit 2, one line naming the key."""
        for text, key in (("[websocket]\nping_timeout = -1\n", "websocket.ping_timeout"),
                          ("[plugin.chat]\nrate = \"fast\"\n", "plugin.chat.rate"),
                          ("listen = [\n", "--config")):
            status, out, err = self.run_check(text)
            self.assertEqual(status, 2, text)
            self.assertEqual(out, "")
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertIn(key, err)


class PluginReloadTests(SynchronousTestCase):
    """A plugin that provides ISettingsReloadable takes its new table live."""

    def test_chat_settings_live_live_delay_needs_restart(self) -> None:
        """The chat's new rate and backlog apply without a restart; the live view's new
        delay (no ISettingsReloadable) is named as needing one."""
        from twisted.internet.testing import MemoryReactorClock

        from gamews.reload import Reloader
        from gamews.service import GamewsService
        from tests.support import capture_logs

        path = Path(self.mktemp())
        text = ('listen = ["tcp:8080:interface=127.0.0.1"]\ndemo = false\narchive = false\n'
                'plugins = ["chat", "live"]\n[plugin.chat]\nrate = 1.0\n')
        path.write_text(text)
        cli = CommandLine(config=str(path))
        service = GamewsService(load_settings(cli, available_plugins()),
                                reactor=MemoryReactorClock())
        service.startService()
        self.addCleanup(service.stopService)
        events = capture_logs(self)
        path.write_text(text.replace("rate = 1.0", "rate = 5.0\nbacklog = 2")
                        + "[plugin.live]\ndelay = 30\n")
        self.assertTrue(Reloader(service, cli).reload())
        chat = service.getServiceNamed("plugin:chat").service
        self.assertEqual((chat.rate, chat.backlog_size), (5.0, 2))
        [line] = [formatEvent(e) for e in events if "configuration reloaded" in formatEvent(e)]
        self.assertIn("applied: plugin.chat", line)
        self.assertIn("needs a restart to change: plugin.live", line)
        self.assertTrue(Reloader(service, cli).reload())  # nothing changed since
        self.assertIn("no live change", formatEvent(events[-1]))


class RestartNeededTests(SynchronousTestCase):
    """What a reload cannot apply is named."""

    def test_named(self) -> None:
        """listen and a plugin's table need a restart; allowed origins do not."""
        plugins = available_plugins()
        old = load_settings(CommandLine(), plugins)
        path = Path(self.mktemp())
        path.write_text('listen = ["tcp:9999:interface=127.0.0.1"]\n'
                        '[websocket]\nallowed_origins = ["https://x.example"]\n'
                        '[plugin.chat]\nrate = 5.0\n')
        new = load_settings(CommandLine(config=str(path)), plugins)
        self.assertEqual(restart_needed(old, new), ["listen", "plugin.chat"])


class AllowedHostsTests(SynchronousTestCase):
    """``[websocket] allowed_hosts`` changes live: no restart, every port's Site checks
    new requests against the new names."""

    def test_not_a_restart(self) -> None:
        plugins = available_plugins()
        old = load_settings(CommandLine(), plugins)
        path = Path(self.mktemp())
        path.write_text('[websocket]\nallowed_hosts = ["games.example.org"]\n')
        new = load_settings(CommandLine(config=str(path)), plugins)
        self.assertEqual(new.config.websocket.allowed_hosts, ("games.example.org",))
        self.assertEqual(restart_needed(old, new), [])

    def test_every_port_gets_the_new_names(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        from gamews.config import WebSocketLimits
        from gamews.registry import Registry

        registry = Registry(WebSocketLimits(), reactor=MemoryReactorClock())
        for port in (8080, 8081):
            registry.open(f"tcp:{port}:interface=127.0.0.1", "/ws", owner="p",
                          incoming=lambda child: None)
        registry.allow_hosts(("games.example.org",))
        self.assertEqual(registry.limits.allowed_hosts, ("games.example.org",))
        self.assertEqual([p.site.allowed_hosts for p in registry.ports()],
                         [("games.example.org",)] * 2)
