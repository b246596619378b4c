"""TOML config: defaults, validation, errors that name the key."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from gamews.config import DEFAULT_LISTEN, GamewsConfig, WebSocketLimits, load_config, parse_config
from gamews.errors import ConfigError


class ConfigTests(SynchronousTestCase):
    """parse_config and load_config."""

    def key_of(self, data: dict[str, object]) -> str:
        with self.assertRaises(ConfigError) as raised:
            parse_config(data)
        key: str = raised.exception.key
        return key

    def test_safe_defaults(self) -> None:
        """Defaults: loopback only, 1 MiB messages, origin check on, deflate off."""
        config = GamewsConfig()
        self.assertEqual(config.listen, (DEFAULT_LISTEN,))
        self.assertIn("interface=127.0.0.1", DEFAULT_LISTEN)
        limits = config.websocket
        self.assertLessEqual(limits.max_message_size, 1024 * 1024)
        self.assertEqual(limits.allowed_origins, ())
        self.assertFalse(limits.permessage_deflate)
        self.assertGreater(limits.ping_interval, 0)
        self.assertGreater(limits.handshake_timeout, 0)

    def test_full_file(self) -> None:
        """A complete file is read into typed values."""
        path = Path(self.mktemp())
        path.write_text('listen = ["tcp:9000:interface=127.0.0.1"]\nplugins = ["echo"]\n'
                        '[plugin.echo]\npath = "/e"\n'
                        '[websocket]\nmax_message_size = 2048\nmax_frame_size = 1024\n'
                        'allowed_origins = ["https://Fans.Example/"]\nping_interval = 0\n'
                        'permessage_deflate = true\n')
        config = load_config(path)
        self.assertEqual(config.listen, ("tcp:9000:interface=127.0.0.1",))
        self.assertEqual(config.plugin_config["echo"], {"path": "/e"})
        self.assertEqual(config.websocket, WebSocketLimits(
            max_message_size=2048, max_frame_size=1024, allowed_origins=("https://fans.example",),
            ping_interval=0.0, permessage_deflate=True))
        self.assertEqual(config.base_dir, path.resolve().parent)

    def test_errors_name_the_key(self) -> None:
        """Each bad value is reported with its dotted key."""
        cases: list[tuple[dict[str, object], str]] = [
            ({"bogus": 1}, "bogus"),
            ({"listen": 8080}, "listen"),
            ({"listen": []}, "listen"),
            ({"plugins": ["echo", "echo"]}, "plugins"),
            ({"websocket": {"max_message_size": 0}}, "websocket.max_message_size"),
            ({"websocket": {"max_message_size": True}}, "websocket.max_message_size"),
            ({"websocket": {"ping_timeout": "10"}}, "websocket.ping_timeout"),
            ({"websocket": {"nope": 1}}, "websocket.nope"),
            ({"websocket": {"max_pending_per_ip": 0}}, "websocket.max_pending_per_ip"),
            ({"websocket": {"max_frame_size": 10, "max_message_size": 5}},
             "websocket.max_frame_size"),
            ({"websocket": {"allowed_origins": [""]}}, "websocket.allowed_origins"),
            ({"shutdown_timeout": 100}, "shutdown_timeout"),
            ({"plugin": {"echo": 3}}, "plugin.echo"),
            ({"manhole": "on"}, "manhole"),
            ({"demo": "yes"}, "demo"),
            ({"metrics": "on"}, "metrics"),
        ]
        for data, key in cases:
            self.assertEqual(self.key_of(data), key, data)

    def test_unreadable_and_invalid_files(self) -> None:
        """A missing file or broken TOML is a ConfigError, not a traceback."""
        self.assertRaises(ConfigError, load_config, "/nonexistent/gamews.toml")
        path = Path(self.mktemp())
        path.write_text("listen = [\n")
        self.assertRaises(ConfigError, load_config, path)
