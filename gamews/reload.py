"""Reload without dropping anyone: ``SIGHUP`` re-reads the config and applies what can change
while gamews runs; ``python -m gamews check-config FILE`` checks a config without starting.

A reload checks the whole new configuration first (:func:`gamews.settings.load_settings`,
the same one-line errors as at start); an invalid one is refused with one log line and the
running configuration stays.  A valid one is applied where it can be, live, without closing
any WebSocket:

* ``[websocket] allowed_origins`` and ``allowed_hosts``: new handshakes and requests are
  checked against the new lists;
* a ``[[server]]``'s RCON password: the link re-authenticates (Source: reconnects);
* a ``[[server]]``'s log secret (``log_secret_file``/``log_secret_env``): the next datagram
  or post must carry the new one;
* the certificate and key files of ``ssl:`` web ports: new connections get the new
  certificate, open ones keep theirs (files that do not load are logged, the old stay);
* a plugin's ``[plugin.NAME]`` table, when its service provides
  :class:`gamews.api.ISettingsReloadable` (the chat's rate limits and backlog);
* console and live tokens need no reload: their file is re-read when it changes (see
  :mod:`gamews.auth`).

Everything else that changed (``listen``, the other ``[websocket]`` limits, the plugin list,
other plugins' tables, servers added, removed or moved, ``[manhole]``, ``[metrics]``, ``[fanout]``)
is named in one log line as needing a restart, and keeps its running value.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Any

from twisted.logger import Logger

from gamews.api import ISettingsReloadable
from gamews.errors import ConfigError
from gamews.secret import Secret
from gamews.settings import (
    CommandLine,
    PluginSettings,
    ServerSettings,
    Settings,
    available_plugins,
    load_settings,
)

__all__ = ["Reloader", "check_config", "restart_needed"]

log = Logger(namespace="gamews.reload")
_NO_SECRET = Secret("")


def _server_shape(server: ServerSettings) -> tuple[Any, ...]:
    """What of a ``[[server]]`` a reload cannot change (its secrets left out)."""
    log_config = server.log if server.log is None else replace(server.log, secret=None)
    return (replace(server.game, password=_NO_SECRET), log_config)


def restart_needed(old: Settings, new: Settings) -> list[str]:
    """The settings that differ between ``old`` and ``new`` and only a restart applies."""
    keys: list[str] = []
    if old.config.listen != new.config.listen:
        keys.append("listen")
    if replace(old.config.websocket, allowed_origins=(), allowed_hosts=()) != replace(
            new.config.websocket, allowed_origins=(), allowed_hosts=()):
        keys.append("websocket")
    if old.config.shutdown_timeout != new.config.shutdown_timeout:
        keys.append("shutdown_timeout")
    if old.demo != new.demo:
        keys.append("demo")
    old_plugins = {p.plugin.name: dict(p.table) for p in old.plugins}
    new_plugins = {p.plugin.name: dict(p.table) for p in new.plugins}
    if list(old_plugins) != list(new_plugins):
        keys.append("plugins")
    keys += [f"plugin.{name}" for name, table in new_plugins.items()
             if name in old_plugins and old_plugins[name] != table]
    old_servers = {s.game.name: s for s in old.servers}
    new_servers = {s.game.name: s for s in new.servers}
    if list(old_servers) != list(new_servers):
        keys.append("server")
    keys += [f"server.{name}" for name, server in new_servers.items()
             if name in old_servers and _server_shape(old_servers[name]) != _server_shape(server)]
    for key in ("manhole", "metrics", "fanout", "spectator"):
        if getattr(old, key) != getattr(new, key):
            keys.append(key)
    return keys


class Reloader:
    """Re-reads the configuration of a running ``service`` on :meth:`reload` (``SIGHUP``
    once :meth:`install` ed) and applies what can change live."""

    def __init__(self, service: Any, cli: CommandLine, *,
                 load: Callable[[], Settings] | None = None) -> None:
        """``service`` is the running :class:`gamews.service.GamewsService`; ``cli`` the
        command line it was started with (its ``--config`` is read again); ``load``
        stands in for reading and checking the config (tests)."""
        self.service = service
        self.cli = cli
        self._load = load or (lambda: load_settings(cli, available_plugins()))
        self._previous: Any = None

    def install(self) -> None:
        """Reload on ``SIGHUP`` (from the main thread only; elsewhere, nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return
        reactor = self.service.registry.reactor

        def on_hup(signum: int, frame: FrameType | None) -> None:
            reactor.callFromThread(self.reload)

        self._previous = signal.signal(signal.SIGHUP, on_hup)

    def uninstall(self) -> None:
        """Give ``SIGHUP`` back to whoever had it."""
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def reload(self) -> bool:
        """Read and check the config; apply it if valid (True), else keep the running one
        and log why in one line (False)."""
        try:
            new = self._load()
        except ConfigError as e:
            log.error("reload refused, the running configuration stays: {error}",
                      error=str(e))
            return False
        old: Settings = self.service.settings
        later = restart_needed(old, new)
        applied = self._apply(old, new)
        later = [key for key in later if key not in applied]
        log.info("configuration reloaded{applied}{later}",
                 applied=f"; applied: {', '.join(applied)}" if applied else "; no live change",
                 later=f"; needs a restart to change: {', '.join(later)}" if later else "")
        return True

    def _apply(self, old: Settings, new: Settings) -> list[str]:
        """Apply what can change live; record the settings now running; name what changed."""
        applied: list[str] = []
        websocket = self._origins(old, new, applied)
        servers = self._servers(old, new, applied)
        self._tls(applied)
        plugins = self._plugins(old, new, applied)
        self.service.settings = replace(old, config=replace(old.config, websocket=websocket),
                                        servers=servers, plugins=plugins)
        return applied

    def _origins(self, old: Settings, new: Settings, applied: list[str]) -> Any:
        registry = self.service.registry
        origins = new.config.websocket.allowed_origins
        if registry.limits.allowed_origins != origins:
            registry.limits = replace(registry.limits, allowed_origins=origins)
            applied.append("websocket.allowed_origins")
        hosts = new.config.websocket.allowed_hosts
        if registry.limits.allowed_hosts != hosts:
            registry.allow_hosts(hosts)
            applied.append("websocket.allowed_hosts")
        return replace(old.config.websocket, allowed_origins=origins, allowed_hosts=hosts)

    def _servers(self, old: Settings, new: Settings, applied: list[str]
                 ) -> tuple[ServerSettings, ...]:
        news = {s.game.name: s for s in new.servers}
        servers: list[ServerSettings] = []
        for was in old.servers:
            name = was.game.name
            now = news.get(name)
            if now is None or _server_shape(was) != _server_shape(now):
                servers.append(was)  # removed or moved: needs a restart
                continue
            servers.append(now)
            game = self.service.servers.get(name)
            if was.game.password != now.game.password and game is not None:
                game.set_password(now.game.password)
                applied.append(f"server.{name}.password")
            source = self.service.log_sources.get(name)
            old_secret = was.log.secret if was.log is not None else None
            new_secret = now.log.secret if now.log is not None else None
            if old_secret != new_secret and hasattr(source, "set_secret"):
                source.set_secret(new_secret)
                applied.append(f"server.{name}.log_secret")
        return tuple(servers)

    def _tls(self, applied: list[str]) -> None:
        for port in self.service.registry.ports():
            tls = port.listening.tls
            if tls is None:
                continue
            why = tls.reload()
            if why is None:
                applied.append(f"TLS files of {port.description}")
            else:
                log.error("TLS files of {endpoint} not reloaded, the running certificate "
                          "stays: {why}", endpoint=port.description, why=why)

    def _plugins(self, old: Settings, new: Settings, applied: list[str]
                 ) -> tuple[PluginSettings, ...]:
        plugins = list(old.plugins)
        if [p.plugin.name for p in old.plugins] != [p.plugin.name for p in new.plugins]:
            return old.plugins  # the plugin list changed: needs a restart
        for i, (was, now) in enumerate(zip(old.plugins, new.plugins, strict=True)):
            if dict(was.table) == dict(now.table):
                continue
            host = self.service.namedServices.get(f"plugin:{now.plugin.name}")
            running = getattr(host, "service", None)
            if ISettingsReloadable.providedBy(running):
                running.reload_settings(now.settings)
                plugins[i] = now
                applied.append(f"plugin.{now.plugin.name}")
        return tuple(plugins)


def check_config(path: str) -> int:
    """``python -m gamews check-config FILE``: check FILE as a start would (every table,
    every plugin's, secrets readable); print one line; return 0 (valid) or 2."""
    try:
        load_settings(CommandLine(config=path), available_plugins())
    except ConfigError as e:
        sys.stderr.write(f"gamews check-config: error: config: {e}\n")
        return 2
    sys.stdout.write(f"{path}: valid\n")
    return 0
