"""Build a game server's log source from its ``[[server]]`` table.

Keys read (others are ignored)::

    [[server]]
    name = "alpha"                         # required: the name events carry
    rcon = "203.0.113.5:27015"             # the game server's address: logs only from its host
    log = "udp:27500:interface=0.0.0.0"    # or "http:/logs/alpha", "file:/srv/oa/games.log"
    log_secret_file = "/etc/gamews/alpha.logsecret"   # or log_secret_env = "ALPHA_LOGSECRET"
    kind = "source"                        # "source" or "quake3" (the RCON keys): the parser
    log_format = "auto"                    # overrides kind: "source", "quake3" or "auto"
    log_replay = false                     # file: at start, true reads the lines already
                                           # there, "map" those since the last InitGame
    log_poll_interval = 0.1                # file: seconds between polls
    kill_feed_size = 20                    # match state backlogs
    chat_size = 50

:meth:`LogSourceConfig.from_table` checks the keys (while settings are parsed), and
:func:`build_log_source` (or both at once, :func:`log_source_from_table`) returns a
service to parent under gamews's service. The
``http:`` kind needs a ``mount`` callable (the shared-port registry's ``mount`` bound to
gamews's web endpoint); its service mounts the resource when started and unmounts it when
stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import IResource

from gamews.errors import ConfigError
from gamews.events import Event, EventBus
from gamews.logs import quake3, source
from gamews.logs.bridge import Rejected, parse_bridge_line
from gamews.logs.common import MAX_LINE, AllowedHosts, LogStats
from gamews.logs.http import SourceHttpLogResource
from gamews.logs.joins import JoinHold
from gamews.logs.tail import FileTailer, FileTailService
from gamews.logs.udp import SourceLogReceiver, UdpLogService
from gamews.secret import Secret, secret_from_table

__all__ = [
    "PARSERS",
    "HttpLogService",
    "LinePipeline",
    "LogSourceConfig",
    "MountFunction",
    "build_log_source",
    "log_source_from_table",
    "parse_any",
    "parse_log_spec",
]

_log = Logger(namespace="gamews.logs")

_SOURCE_STAMP: Final = re.compile(r"(?:L )?\d\d/\d\d/\d{4} - \d\d:\d\d:\d\d")


def parse_any(line: str) -> Event:
    """Parse a Source line (recognised by its date stamp) or else a Quake 3 line."""
    if _SOURCE_STAMP.match(line):
        return source.parse_line(line)
    return quake3.parse_line(line)


PARSERS: Final[Mapping[str, Callable[[str], Event]]] = {
    "source": source.parse_line, "quake3": quake3.parse_line, "auto": parse_any,
}
"""The parsers by ``log_format`` name."""


class LinePipeline:
    """A line sink: parse each line and publish the event as ``server`` on ``bus``.

    With a ``clock``, Quake 3 joins wait briefly for the player's name
    (:class:`gamews.logs.joins.JoinHold`).
    """

    def __init__(self, bus: EventBus, server: str,
                 parser: Callable[[str], Event] = parse_any, *,
                 stats: LogStats | None = None, clock: IReactorTime | None = None) -> None:
        """Publish ``parser(line)`` for each line, counting event types in ``stats``."""
        self.bus = bus
        self.server = server
        self.parser = parser
        self.stats = stats if stats is not None else LogStats()
        self.joins = JoinHold(bus, server, clock) if clock is not None else None

    def __call__(self, line: str) -> None:
        """Parse and publish one line (a bridge line, :mod:`gamews.logs.bridge`, is a
        ``custom`` event, or dropped and counted when malformed)."""
        bridged = parse_bridge_line(line) if len(line) <= MAX_LINE else None
        if isinstance(bridged, Rejected):
            self.stats.bridge_dropped += 1
            _log.warn("{server}: bridge line dropped: {reason}", server=self.server,
                      reason=bridged.reason)
            return
        event = bridged if bridged is not None else self.parser(line)
        self.stats.events[event.type] += 1
        if len(line) > MAX_LINE:
            self.stats.too_long += 1
        if self.joins is not None:
            self.joins(event)
        else:
            self.bus.publish(self.server, event)


class _Unmount(Protocol):
    def close(self) -> Deferred[None]: ...


MountFunction = Callable[[str, IResource], _Unmount]
"""Mounts a resource at a path of gamews's web port; the result's ``close()`` unmounts it."""


class HttpLogService(Service):
    """Holds a CS2 HTTP log resource; mounts it at ``path`` (and below) while running."""

    def __init__(self, path: str, resource: SourceHttpLogResource,
                 mount: MountFunction | None, reactor: Any) -> None:
        """Mount ``resource`` with ``mount`` when started (``None``: the caller mounts it)."""
        self.path = path
        self.resource = resource
        self.mount = mount
        self.reactor = reactor
        self._mounts: list[_Unmount] = []

    @property
    def stats(self) -> LogStats:
        """The resource's counters."""
        return self.resource.stats

    def set_secret(self, secret: Secret | None) -> None:
        """Require ``secret`` from the next post on (a reload)."""
        self.resource.secret = secret

    @property
    def paths(self) -> tuple[str, str]:
        """The exact path and the subtree (``PATH/``, for a secret in the path)."""
        base = self.path.rstrip("/") or "/"
        return (base, base.rstrip("/") + "/")

    def startService(self) -> None:
        """Mount the resource and resolve the game server's host name, if it has one."""
        super().startService()  # type: ignore[no-untyped-call]
        self.resource.allowed.resolve(self.reactor)
        if self.mount is not None:
            for path in dict.fromkeys(self.paths):
                self._mounts.append(self.mount(path, self.resource))

    def stopService(self) -> Deferred[None]:
        """Unmount the resource."""
        super().stopService()  # type: ignore[no-untyped-call]
        mounts, self._mounts = self._mounts, []
        if not mounts:
            return succeed(None)
        return gatherResults([m.close() for m in mounts]).addCallback(lambda _: None)


_UDP: Final = re.compile(r"udp:(\d{1,5})(?::interface=(.+))?\Z")


def parse_log_spec(spec: str, key: str) -> tuple[str, str, int, str]:
    """Split a ``log`` value into (kind, path, port, interface); raise ``ConfigError``."""
    if spec.startswith("udp:"):
        m = _UDP.match(spec)
        if m is None or not 0 <= int(m[1]) <= 65535:
            raise ConfigError(key, "expected udp:PORT or udp:PORT:interface=ADDRESS")
        return "udp", "", int(m[1]), m[2] or ""
    if spec.startswith("http:"):
        path = spec[5:]
        if not path.startswith("/") or any(c in path for c in " ?#"):
            raise ConfigError(key, "expected http:/PATH (a path on gamews's web port)")
        return "http", path, 0, ""
    if spec.startswith("file:"):
        if not spec[5:]:
            raise ConfigError(key, "expected file:/path/to/games.log")
        return "file", spec[5:], 0, ""
    raise ConfigError(key, "expected udp:PORT[:interface=ADDR], http:/PATH or file:/path")


def _host_of(rcon: object, key: str) -> str:
    if not isinstance(rcon, str) or not rcon:
        raise ConfigError(key, "udp and http logs need rcon = \"host:port\" (the game "
                          "server's address, the only one logs are accepted from)")
    if rcon.startswith("["):
        host = rcon[1:].split("]", 1)[0]
    else:
        host = rcon.rsplit(":", 1)[0] if rcon.count(":") == 1 else rcon
    if not host:
        raise ConfigError(key, "expected host:port")
    return host


@dataclass(frozen=True)
class LogSourceConfig:
    """One ``[[server]]`` table's log source, checked (built by :func:`build_log_source`)."""

    name: str
    """The server's name, which its events carry."""
    kind: str
    """``udp``, ``http`` or ``file``."""
    parser: str
    """The line format: a key of :data:`PARSERS`."""
    sizes: Mapping[str, int]
    """The match state's backlog sizes (``kill_feed_size``, ``chat_size``) given."""
    port: int = 0
    """``udp``: the port to listen on."""
    interface: str = ""
    """``udp``: the address to listen on."""
    path: str = ""
    """``http``: the path on gamews's web port."""
    file: Path | None = None
    """``file``: the log file."""
    replay: bool | Literal["map"] = False
    """``file``: read the lines already there (``True``), or those since the last map."""
    interval: float = 0.1
    """``file``: seconds between polls."""
    secret: Secret | None = None
    """``udp``/``http``: the log secret (``sv_logsecret``), if any."""
    host: str = ""
    """``udp``/``http``: the only host logs are accepted from."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str = "server",
                   base_dir: Path | None = None,
                   environ: dict[str, str] | None = None) -> LogSourceConfig | None:
        """Check one ``[[server]]`` table's log keys (``None`` if it has no ``log``);
        ``where`` names the table in errors (``server[0]``); relative file paths are taken
        from ``base_dir``. Raises :class:`gamews.errors.ConfigError` naming the key."""
        spec = table.get("log")
        if spec is None:
            return None
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name", "a [[server]] with a log needs a name")
        if not isinstance(spec, str):
            raise ConfigError(f"{where}.log", "expected a string")
        kind, path, port, interface = parse_log_spec(spec, f"{where}.log")
        kind_key = table.get("kind")
        fmt = table.get("log_format", kind_key if kind_key in PARSERS else "auto")
        if fmt not in PARSERS:
            raise ConfigError(f"{where}.log_format", f"expected one of {', '.join(PARSERS)}")
        sizes: dict[str, int] = {}
        for key in ("kill_feed_size", "chat_size"):
            if key in table:
                value = table[key]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"{where}.{key}", "expected an integer, 0 or more")
                sizes[key] = value
        if kind == "file":
            file_path = Path(path).expanduser()
            if base_dir is not None and not file_path.is_absolute():
                file_path = base_dir / file_path
            replay = table.get("log_replay", False)
            if not isinstance(replay, bool) and replay != "map":
                raise ConfigError(f"{where}.log_replay", 'expected true, false or "map"')
            interval = table.get("log_poll_interval", 0.1)
            if (isinstance(interval, bool) or not isinstance(interval, int | float)
                    or interval <= 0):
                raise ConfigError(f"{where}.log_poll_interval", "expected seconds, more than 0")
            return cls(name, kind, fmt, sizes, file=file_path, replay=replay,
                       interval=float(interval))
        secret = secret_from_table(dict(table), "log_secret", where=where, base_dir=base_dir,
                                   required=False, environ=environ)
        host = _host_of(table.get("rcon"), f"{where}.rcon")
        return cls(name, kind, fmt, sizes, port=port, interface=interface, path=path,
                   secret=secret, host=host)


def build_log_source(config: LogSourceConfig, *, bus: EventBus, reactor: Any,
                     mount: MountFunction | None = None) -> Service:
    """The log-source service of ``config``; registers the server's match state on ``bus``.

    ``reactor`` provides ``listenUDP``, ``resolve`` and the clock; the ``http`` kind needs
    ``mount``.
    """
    bus.add_server(config.name, **config.sizes)
    stats = LogStats()
    sink = LinePipeline(bus, config.name, PARSERS[config.parser], stats=stats,
                        clock=reactor if config.parser != "source" else None)
    service: Service
    if config.kind == "file":
        assert config.file is not None
        tailer = FileTailer(config.file, sink, replay=config.replay, stats=stats)
        service = FileTailService(tailer, clock=reactor, interval=config.interval)
    else:
        allowed = AllowedHosts([config.host])
        if config.kind == "udp":
            receiver = SourceLogReceiver(sink, allowed=allowed, secret=config.secret,
                                         stats=stats)
            service = UdpLogService(reactor, config.port, receiver, interface=config.interface)
        else:
            resource = SourceHttpLogResource(sink, allowed=allowed, secret=config.secret,
                                             stats=stats)
            service = HttpLogService(config.path, resource, mount, reactor)
    service.setName(f"log:{config.name}")  # type: ignore[no-untyped-call]
    return service


def log_source_from_table(
    table: Mapping[str, Any],
    *,
    bus: EventBus,
    reactor: Any,
    where: str = "server",
    base_dir: Path | None = None,
    environ: dict[str, str] | None = None,
    mount: MountFunction | None = None,
) -> Service | None:
    """:meth:`LogSourceConfig.from_table` then :func:`build_log_source` (``None`` without
    a ``log``)."""
    config = LogSourceConfig.from_table(table, where=where, base_dir=base_dir, environ=environ)
    return None if config is None else build_log_source(config, bus=bus, reactor=reactor,
                                                        mount=mount)
