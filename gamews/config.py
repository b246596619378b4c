"""The gamews configuration: a TOML file parsed into validated, frozen objects.

Every error is a :class:`gamews.errors.ConfigError` naming the key at fault,
so ``twistd gamews`` can print one line and exit.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from gamews.errors import ConfigError

__all__ = [
    "DEFAULT_LISTEN",
    "GamewsConfig",
    "WebSocketLimits",
    "load_config",
    "parse_config",
    "read_config_text",
    "toml_document",
]

DEFAULT_LISTEN: Final = "tcp:8080:interface=127.0.0.1"
MiB: Final = 1024 * 1024


@dataclass(frozen=True)
class WebSocketLimits:
    """Limits applied to every WebSocket child; the defaults suit a public server."""

    max_message_size: int = 1 * MiB
    """Largest message (after reassembly and decompression) in bytes; bigger closes 1009."""
    max_frame_size: int = 1 * MiB
    """Largest single frame payload in bytes."""
    max_unfinished_bytes: int = 256 * MiB
    """Bytes all connections together may hold in messages not finished yet (fragments
    waiting for their last frame); a connection adding bytes past it is closed with
    1008. The default lets 256 of the 10,000 connections each hold a whole 1 MiB
    message at once on a small machine."""
    fragment_size: int = 64 * 1024
    """Outgoing messages larger than this are sent as several frames."""
    max_send_buffer: int = 2 * MiB
    """Bytes a child may have waiting to be sent once its socket is full; a browser that
    reads slower than that is closed with 1008 (at least twice ``max_message_size``
    is used)."""
    handshake_timeout: float = 5.0
    """Seconds a client has to finish the opening handshake."""
    close_timeout: float = 2.0
    """Seconds to wait for the peer's half of the closing handshake."""
    ping_interval: float = 30.0
    """Seconds between keepalive pings (0 disables them)."""
    ping_timeout: float = 10.0
    """Seconds without a pong before a peer is declared dead and dropped."""
    allowed_origins: tuple[str, ...] = ()
    """Origins (``https://example.org``) allowed besides same-origin pages and
    loopback pages on the same port; ``*`` allows all."""
    allowed_hosts: tuple[str, ...] = ()
    """``Host`` names (``example.org`` or ``example.org:443``) served besides the
    address a request came in on (and ``localhost`` on loopback); any other gets 421.
    Needed behind a proxy or a NAT, or to serve a domain name; ``*`` allows all."""
    max_connections: int = 10_000
    """Children open at once over the whole process."""
    max_connections_per_ip: int = 64
    """Children open at once from one peer address."""
    max_pending_per_ip: int = 32
    """Sockets from one peer address that are not WebSockets (yet): page loads and
    handshakes in progress. Past it a new socket from that address is closed as
    soon as it is accepted. Not applied when ``trusted_proxies`` is set (the
    peer is then the proxy)."""
    permessage_deflate: bool = False
    """Accept the permessage-deflate extension (opt-in; inflation is bounded
    by ``max_message_size``)."""
    trusted_proxies: int = 0
    """How many ``X-Forwarded-For`` hops to trust for the peer address (0: none)."""


_LIMIT_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "max_message_size": int,
    "max_frame_size": int,
    "max_unfinished_bytes": int,
    "fragment_size": int,
    "max_send_buffer": int,
    "handshake_timeout": (int, float),
    "close_timeout": (int, float),
    "ping_interval": (int, float),
    "ping_timeout": (int, float),
    "allowed_origins": list,
    "allowed_hosts": list,
    "max_connections": int,
    "max_connections_per_ip": int,
    "max_pending_per_ip": int,
    "permessage_deflate": bool,
    "trusted_proxies": int,
}


@dataclass(frozen=True)
class GamewsConfig:
    """The whole configuration of one gamews instance."""

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    """Endpoint descriptions the web port listens on (strports syntax)."""
    plugins: tuple[str, ...] | None = None
    """Names of the plugins to run (``None``: the built-ins, see :meth:`plugin_names`)."""
    plugin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Each plugin's ``[plugin.NAME]`` table."""
    websocket: WebSocketLimits = field(default_factory=WebSocketLimits)
    """Limits for every WebSocket child."""
    shutdown_timeout: float = 3.0
    """Seconds children get to finish their closing handshake at shutdown."""
    servers: tuple[Mapping[str, Any], ...] = ()
    """The raw ``[[server]]`` tables (game servers)."""
    manhole: Mapping[str, Any] | None = None
    """The raw ``[manhole]`` table (validated by :mod:`gamews.manhole`), if any."""
    metrics: Mapping[str, Any] | None = None
    """The raw ``[metrics]`` table (validated by :mod:`gamews.metrics`), if any."""
    demo: bool | None = None
    """Run the demo game (``None``: when no ``[[server]]`` is configured)."""
    base_dir: Path | None = None
    """Directory relative paths in the file are resolved against."""
    fanout: Mapping[str, Any] | None = None
    """The raw ``[fanout]`` table (validated by :mod:`gamews.fanout.config`), if any."""
    spectator: Mapping[str, Any] | None = None
    """The raw ``[spectator]`` table (validated by :mod:`gamews.spectator`), if any."""
    archive: Mapping[str, Any] | bool | None = None
    """The raw ``[archive]`` table (validated by :mod:`gamews.archive.config`), ``False``
    for ``archive = false``, or ``None`` (the default archive; none on an edge)."""

    @property
    def edge(self) -> bool:
        """Whether this instance is a fan-out edge (it holds no game link)."""
        return self.fanout is not None and self.fanout.get("role") == "edge"

    def plugin_names(self, *, demo: bool) -> tuple[str, ...]:
        """The plugins to run: the configured list, or by default ``echo``, ``chat``,
        ``live``, ``overlay``, and ``console`` when it has a ``[plugin.console]`` table or the
        demo runs."""
        if self.plugins is not None:
            return self.plugins
        console = ("console",) if demo or "console" in self.plugin_config else ()
        return ("echo", "chat", "live", "overlay", *console)

    def runs_demo(self) -> bool:
        """Whether the demo game runs: as configured, or when no game server is."""
        if self.edge:
            return False
        return self.demo if self.demo is not None else not self.servers

    def with_listen(self, listen: tuple[str, ...]) -> GamewsConfig:
        """Return a copy listening on ``listen`` instead (command-line override)."""
        return replace(self, listen=listen)


def _check(value: object, kind: type | tuple[type, ...], key: str) -> None:
    if isinstance(value, bool) and kind is not bool and not (
        isinstance(kind, tuple) and bool in kind
    ):
        raise ConfigError(key, f"expected {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise ConfigError(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", list: "a list",
             str: "a string", dict: "a table"}
    if isinstance(kind, tuple):
        return names.get(kind[-1], kind[-1].__name__)
    return names.get(kind, kind.__name__)


def _parse_limits(table: Mapping[str, Any]) -> WebSocketLimits:
    values: dict[str, Any] = {}
    for key, value in table.items():
        full = f"websocket.{key}"
        if key not in _LIMIT_TYPES:
            raise ConfigError(full, f"unknown key (known: {', '.join(sorted(_LIMIT_TYPES))})")
        _check(value, _LIMIT_TYPES[key], full)
        if key == "allowed_origins":
            if not all(isinstance(o, str) and o for o in value):
                raise ConfigError(full, "expected a list of origins such as 'https://example.org'")
            value = tuple(o.rstrip("/").lower() for o in value)
        elif key == "allowed_hosts":
            if not all(isinstance(h, str) and h and "/" not in h for h in value):
                raise ConfigError(full, "expected a list of host names such as 'example.org'")
            value = tuple(h.strip().lower().rstrip(".") for h in value)
        elif key in ("permessage_deflate",):
            pass
        elif key == "trusted_proxies":
            if value < 0:
                raise ConfigError(full, "must be 0 or more")
        elif key == "ping_interval":
            if value < 0:
                raise ConfigError(full, "must be 0 (off) or more")
        elif value <= 0:
            raise ConfigError(full, "must be greater than 0")
        values[key] = float(value) if _LIMIT_TYPES[key] == (int, float) else value
    limits = WebSocketLimits(**values)
    if limits.max_frame_size > limits.max_message_size:
        raise ConfigError("websocket.max_frame_size", "must not exceed max_message_size")
    return limits


_TOP_KEYS: Final = frozenset({"listen", "plugins", "plugin", "websocket", "shutdown_timeout",
                              "server", "manhole", "metrics", "demo", "fanout",
                              "spectator", "archive"})


def parse_config(data: Mapping[str, Any], *, base_dir: Path | None = None) -> GamewsConfig:
    """Validate a parsed TOML document into a :class:`GamewsConfig`."""
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(key, f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    kwargs: dict[str, Any] = {"base_dir": base_dir}
    for table in ("manhole", "metrics", "fanout", "spectator"):
        if table in data:
            _check(data[table], dict, table)
            kwargs[table] = dict(data[table])
    if "archive" in data:
        value = data["archive"]
        if value is not False and not isinstance(value, dict):
            raise ConfigError("archive", "expected an [archive] table or archive = false")
        kwargs["archive"] = value if value is False else dict(value)
    if "demo" in data:
        _check(data["demo"], bool, "demo")
        kwargs["demo"] = data["demo"]
    if "listen" in data:
        listen = data["listen"]
        if isinstance(listen, str):
            listen = [listen]
        _check(listen, list, "listen")
        if not listen or not all(isinstance(x, str) and x for x in listen):
            raise ConfigError("listen", "expected one or more endpoint strings")
        kwargs["listen"] = tuple(listen)
    if "plugins" in data:
        plugins = data["plugins"]
        _check(plugins, list, "plugins")
        if not all(isinstance(x, str) and x for x in plugins):
            raise ConfigError("plugins", "expected a list of plugin names")
        if len(set(plugins)) != len(plugins):
            raise ConfigError("plugins", "a plugin is listed twice")
        kwargs["plugins"] = tuple(plugins)
    if "plugin" in data:
        tables = data["plugin"]
        _check(tables, dict, "plugin")
        for name, table in tables.items():
            _check(table, dict, f"plugin.{name}")
        kwargs["plugin_config"] = dict(tables)
    if "websocket" in data:
        _check(data["websocket"], dict, "websocket")
        kwargs["websocket"] = _parse_limits(data["websocket"])
    if "shutdown_timeout" in data:
        value = data["shutdown_timeout"]
        _check(value, (int, float), "shutdown_timeout")
        if not 0 < value <= 60:
            raise ConfigError("shutdown_timeout", "must be between 0 and 60 seconds")
        kwargs["shutdown_timeout"] = float(value)
    if "server" in data:
        servers = data["server"]
        _check(servers, list, "server")
        for i, table in enumerate(servers):
            _check(table, dict, f"server[{i}]")
        kwargs["servers"] = tuple(servers)
    return GamewsConfig(**kwargs)


def read_config_text(path: Path) -> str:
    """The text of the config file at ``path`` (a :class:`ConfigError` on ``--config``)."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError("--config", f"{path} is not valid TOML: {e}") from None


def toml_document(text: str, path: Path | str | None) -> dict[str, Any]:
    """The TOML ``text`` of the config file ``path`` as a document."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", f"{path} is not valid TOML: {e}") from None


def load_config(path: str | Path) -> GamewsConfig:
    """Read and validate the TOML file at ``path``."""
    p = Path(path)
    return parse_config(toml_document(read_config_text(p), p), base_dir=p.resolve().parent)
