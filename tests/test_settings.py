"""Settings checked whole before anything is built: plugin settings declared as
dataclasses, errors naming ``plugin.NAME.KEY``, and the whole-settings parse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from twisted.trial.unittest import SynchronousTestCase

from gamews.api import ConfigError, IGamewsPlugin, setting, settings_from_table
from gamews.plugin_settings import plugin_settings
from gamews.plugins.chat import ChatPlugin
from gamews.plugins.console import ConsolePlugin
from gamews.plugins.echo import EchoPlugin
from gamews.settings import CommandLine, PluginSettings, available_plugins, settings_from_text


@dataclass(frozen=True)
class Example:
    """Every kind of field a plugin may declare."""

    name: str
    rate: float = setting(1.0, above=0)
    backlog: int = setting(50, at_least=0)
    commands: tuple[str, ...] = ("status",)
    tokens: Path | None = None
    mode: Literal["fast", "slow"] = "fast"
    loud: bool = False

    def __post_init__(self) -> None:
        if self.loud and self.mode == "slow":
            raise ConfigError("loud", "not with mode = \"slow\"")


@dataclass(frozen=True)
class Raising:
    """Settings whose check has a bug (raises something else than ConfigError)."""

    n: int = 1

    def __post_init__(self) -> None:
        raise ZeroDivisionError("division by zero")


class SettingsFromTableTests(SynchronousTestCase):
    """settings_from_table and plugin_settings."""

    def error(self, table: dict[str, object], settings_type: type = Example) -> ConfigError:
        with self.assertRaises(ConfigError) as raised:
            plugin_settings("demo", settings_type, table)
        error: ConfigError = raised.exception
        return error

    def test_typed_values(self) -> None:
        """Values come out typed: ints as floats, lists as tuples, paths from base_dir."""
        settings = settings_from_table(
            Example, {"name": "n", "rate": 2, "commands": ["kick"], "tokens": "t.txt",
                      "mode": "slow"}, base_dir=Path("/etc/gamews"))
        self.assertEqual(settings, Example("n", 2.0, 50, ("kick",), Path("/etc/gamews/t.txt"),
                                           "slow"))
        self.assertIsInstance(settings.rate, float)

    def test_errors_name_the_full_key(self) -> None:
        """Each bad table is one ConfigError whose key is plugin.NAME.KEY."""
        cases: list[tuple[dict[str, object], str, str]] = [
            ({"name": "n", "rate": "fast"}, "plugin.demo.rate", "expected a number"),
            ({"name": "n", "rate": 0}, "plugin.demo.rate", "greater than 0"),
            ({"name": "n", "backlog": -1}, "plugin.demo.backlog", "at least 0"),
            ({"name": "n", "backlog": 1.5}, "plugin.demo.backlog", "expected an integer"),
            ({"name": "n", "backlog": True}, "plugin.demo.backlog", "expected an integer"),
            ({"name": "n", "speed": 1}, "plugin.demo.speed", "unknown key"),
            ({}, "plugin.demo.name", "required"),
            ({"name": "n", "commands": "kick"}, "plugin.demo.commands", "expected a list"),
            ({"name": "n", "commands": [1]}, "plugin.demo.commands", "expected a string"),
            ({"name": "n", "mode": "warp"}, "plugin.demo.mode", "one of 'fast', 'slow'"),
            ({"name": "n", "tokens": ""}, "plugin.demo.tokens", "expected a file path"),
            ({"name": "n", "loud": "yes"}, "plugin.demo.loud", "true or false"),
            ({"name": "n", "loud": True, "mode": "slow"}, "plugin.demo.loud", "not with"),
        ]
        for table, key, message in cases:
            error = self.error(table)
            self.assertEqual((error.key, message in error.message), (key, True), table)
            self.assertNotIn("\n", str(error))

    def test_plugin_bug_is_a_config_error(self) -> None:
        """A settings check raising anything else is a ConfigError on plugin.NAME."""
        error = self.error({}, Raising)
        self.assertEqual(error.key, "plugin.demo")
        self.assertIn("ZeroDivisionError", error.message)

    def test_builtin_plugins_declare_settings(self) -> None:
        """The built-in plugins' tables are checked: chat's rate, console's required keys,
        echo's path; defaults come from the dataclass."""
        self.assertEqual(PluginSettings.of(ChatPlugin()).settings.rate, 1.0)
        cases: list[tuple[IGamewsPlugin, dict[str, object], str]] = [
            (ChatPlugin(), {"rate": 0}, "plugin.chat.rate"),
            (ChatPlugin(), {"burst": 0.5}, "plugin.chat.burst"),
            (ConsolePlugin(), {"audit_log": "a"}, "plugin.console.tokens_file"),
            (EchoPlugin(), {"path": "echo"}, "plugin.echo.path")]
        for plugin, table, key in cases:
            with self.assertRaises(ConfigError) as raised:
                PluginSettings.of(plugin, table)
            self.assertEqual(raised.exception.key, key)


class WholeSettingsTests(SynchronousTestCase):
    """settings_from_text: the command line and the file, checked before any build."""

    plugins: ClassVar[dict[str, IGamewsPlugin]] = {"echo": EchoPlugin(), "chat": ChatPlugin()}

    def test_pure(self) -> None:
        """The same command line and text give equal settings (what a reload compares)."""
        text = ('plugins = ["echo", "chat"]\ndemo = false\n[plugin.chat]\nrate = 2\n'
                '[metrics]\nlisten = "tcp:9300:interface=127.0.0.1"\n')
        cli = CommandLine(listen=("tcp:0:interface=127.0.0.1",))
        first = settings_from_text(cli, text, plugins=self.plugins)
        self.assertEqual(first, settings_from_text(cli, text, plugins=self.plugins))
        self.assertEqual(first.config.listen, ("tcp:0:interface=127.0.0.1",))
        self.assertEqual([p.settings.rate for p in first.plugins if p.plugin.name == "chat"],
                         [2.0])
        assert first.metrics is not None
        self.assertEqual(first.metrics.listen, "tcp:9300:interface=127.0.0.1")

    def test_every_table_checked(self) -> None:
        """A bad [[server]], [fanout], [metrics] or plugin table fails the parse."""
        cases = [
            ('demo = false\nplugins = ["chat"]\n[plugin.chat]\nrate = 0\n', "plugin.chat.rate"),
            ('[[server]]\nname = "a"\nkind = "source"\nrcon = "127.0.0.1:1"\n'
             'password_file = "pw"\nlog = "udp:nope"\n', "server.a.log"),
            ('[metrics]\nport = 1\n', "metrics.port"),
            ('[fanout]\nrole = "sideways"\n', "fanout.role"),
        ]
        base = Path(self.mktemp())
        base.mkdir()
        (base / "pw").write_text("secret\n")
        for text, key in cases:
            with self.assertRaises(ConfigError) as raised:
                settings_from_text(CommandLine(), text, plugins=available_plugins(),
                                   base_dir=base)
            self.assertEqual(raised.exception.key, key, text)
