"""Every setting of one gamews instance, checked whole before anything is built.

:func:`settings_from_text` is a pure function from the command line and the TOML
text to a :class:`Settings` (or a :class:`gamews.errors.ConfigError` naming the key
at fault): the config file's tables, each ``[[server]]``, ``[manhole]``, ``[metrics]``,
``[fanout]`` and every enabled plugin's ``[plugin.NAME]`` table, checked against the
plugin's ``settings_type``. :class:`gamews.service.GamewsService` only builds from it.
It is the function a reload would call again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from gamews.api import IGamewsPlugin
from gamews.archive.config import ArchiveConfig
from gamews.config import GamewsConfig, parse_config, read_config_text, toml_document
from gamews.demo.setup import demo_plugin_defaults
from gamews.discovery import available_plugins, select_plugins
from gamews.endpoints import normalize_endpoint
from gamews.errors import ConfigError
from gamews.fanout.config import FanoutConfig
from gamews.logs.service import LogSourceConfig
from gamews.manhole import ManholeConfig
from gamews.metrics import MetricsConfig
from gamews.plugin_settings import plugin_settings
from gamews.rcon.server import GameServerConfig
from gamews.spectator import SpectatorConfig

__all__ = [
    "CommandLine",
    "PluginSettings",
    "ServerSettings",
    "Settings",
    "available_plugins",
    "load_settings",
    "parse_settings",
    "select_plugins",
    "settings_from_text",
]

log = Logger(namespace="gamews.settings")


@dataclass(frozen=True)
class CommandLine:
    """What ``twistd gamews``'s options say (each overrides the file)."""

    config: str | None = None
    """``--config``: the TOML file."""
    listen: tuple[str, ...] = ()
    """``--listen``: the web endpoints (none: the file's, or the default)."""
    manhole: str | None = None
    """``--manhole``: the manhole's endpoint."""
    metrics: str | None = None
    """``--metrics``: the metrics endpoint (already checked)."""
    demo: bool = False
    """``--demo``: run the demo game."""


@dataclass(frozen=True)
class PluginSettings:
    """One enabled plugin with its table and checked settings."""

    plugin: IGamewsPlugin
    table: Mapping[str, Any] = field(default_factory=dict)
    """Its ``[plugin.NAME]`` table as written, under the demo's keys when the demo runs
    (``context.config``)."""
    settings: Any = None
    """Its ``settings_type`` instance (``context.settings``), or ``None`` without one."""

    @classmethod
    def of(cls, plugin: IGamewsPlugin, table: Mapping[str, Any] | None = None, *,
           base_dir: Path | None = None) -> PluginSettings:
        """``plugin`` with ``table`` checked against its ``settings_type``; errors name
        ``plugin.NAME.KEY``."""
        table = dict(table or {})
        settings_type = getattr(plugin, "settings_type", None)
        settings = (plugin_settings(plugin.name, settings_type, table, base_dir=base_dir)
                    if settings_type is not None else None)
        return cls(plugin, table, settings)


@dataclass(frozen=True)
class ServerSettings:
    """One ``[[server]]`` table, checked."""

    table: Mapping[str, Any]
    game: GameServerConfig
    """Its RCON link."""
    log: LogSourceConfig | None
    """Its log source, if it has a ``log``."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, base_dir: Path | None,
                   environ: dict[str, str] | None = None) -> ServerSettings:
        """Check one ``[[server]]`` table; errors name ``server.NAME.KEY``."""
        game = GameServerConfig.from_table(dict(table), base_dir=base_dir)
        where = f"server.{game.name}"
        log = LogSourceConfig.from_table(table, where=where, base_dir=base_dir,
                                         environ=environ)
        return cls(table, game, log)


@dataclass(frozen=True)
class Settings:
    """The whole checked configuration of one gamews instance."""

    config: GamewsConfig = field(default_factory=GamewsConfig)
    """The top-level keys (``listen``, ``websocket``, ...), the command line applied."""
    plugins: tuple[PluginSettings, ...] = ()
    """The enabled plugins, in start order."""
    servers: tuple[ServerSettings, ...] = ()
    """The game servers."""
    demo: bool = False
    """Whether the demo game runs (its plugins' defaults are in :attr:`plugins`)."""
    manhole: ManholeConfig | None = None
    metrics: MetricsConfig | None = None
    fanout: FanoutConfig | None = None
    archive: ArchiveConfig | None = None
    """The match archive (on unless ``archive = false``; on an edge, only with a table)."""
    spectator: SpectatorConfig = field(default_factory=SpectatorConfig)
    """What the public views show, and how late (``[spectator]``)."""


def parse_settings(data: Mapping[str, Any], cli: CommandLine = CommandLine(), *,
                   plugins: Mapping[str, IGamewsPlugin], base_dir: Path | None = None,
                   environ: dict[str, str] | None = None) -> Settings:
    """Check a parsed TOML document and the command line into :class:`Settings`.

    ``plugins`` are the installed plugins by name; ``base_dir`` is the config file's
    directory (relative paths); ``environ`` stands in for ``os.environ``
    (``password_env`` keys). Raises :class:`ConfigError` naming the key at fault.
    """
    config = parse_config(data, base_dir=base_dir)
    if cli.listen:
        config = config.with_listen(cli.listen)
    for i, endpoint in enumerate(config.listen):
        try:
            normalize_endpoint(endpoint)
        except ValueError as e:
            raise ConfigError(f"listen[{i}]", str(e)) from None
    fanout = (FanoutConfig.from_table(dict(config.fanout), base_dir=base_dir, environ=environ)
              if config.fanout is not None else None)
    if fanout is not None and fanout.role == "edge" and (config.servers or cli.demo):
        raise ConfigError("fanout.role", "an edge holds no game link: give it no [[server]] "
                                         "and no demo (the origin has them)")
    servers: list[ServerSettings] = []
    for table in config.servers:
        server = ServerSettings.from_table(table, base_dir=base_dir, environ=environ)
        if any(s.game.name == server.game.name for s in servers):
            raise ConfigError(f"server.{server.game.name}.name",
                              f"another [[server]] is already called {server.game.name!r}")
        servers.append(server)
    demo = cli.demo or config.runs_demo()
    # the demo's own plugin defaults (its tokens) are checked with a stand-in directory:
    # the service takes them again with the directory of the demo it makes
    defaults = demo_plugin_defaults(Path("demo")) if demo else {}
    chosen = tuple(
        PluginSettings.of(plugin, {**defaults.get(plugin.name, {}),
                                   **config.plugin_config.get(plugin.name, {})},
                          base_dir=base_dir)
        for plugin in select_plugins(config.plugin_names(demo=demo), plugins))
    manhole = None
    if cli.manhole is not None or config.manhole is not None:
        table = dict(config.manhole or {})
        if cli.manhole is not None:
            table["endpoint"] = cli.manhole
        manhole = ManholeConfig.from_table(table, base_dir=base_dir)
    metrics = None
    if cli.metrics is not None or config.metrics is not None:
        table = dict(config.metrics or {})
        if cli.metrics is not None:
            table["listen"] = cli.metrics
        metrics = MetricsConfig.from_table(table)
    archive = None
    if config.archive is not False and not (config.edge and config.archive is None):
        archive = ArchiveConfig.from_table(
            config.archive if isinstance(config.archive, dict) else {}, base_dir=base_dir,
            environ=environ)
    spectator = SpectatorConfig.from_tables(config.spectator, config.plugin_config.get("live"),
                                            config.plugin_config.get("overlay"))
    return Settings(config, chosen, tuple(servers), demo, manhole, metrics, fanout, archive,
                    spectator)


def settings_from_text(cli: CommandLine, text: str | None, *,
                       plugins: Mapping[str, IGamewsPlugin], base_dir: Path | None = None,
                       environ: dict[str, str] | None = None) -> Settings:
    """:func:`parse_settings` of the TOML ``text`` (``None``: no config file)."""
    data = toml_document(text, cli.config) if text is not None else {}
    return parse_settings(data, cli, plugins=plugins, base_dir=base_dir, environ=environ)


def load_settings(cli: CommandLine, plugins: Mapping[str, IGamewsPlugin]) -> Settings:
    """Read ``cli.config`` (if given) and check everything: :func:`settings_from_text`."""
    if cli.config is None:
        return settings_from_text(cli, None, plugins=plugins)
    path = Path(cli.config)
    return settings_from_text(cli, read_config_text(path), plugins=plugins,
                              base_dir=path.resolve().parent)
