"""Game servers as services: one ``[[server]]`` TOML table -> one :class:`GameServer`.

Config (one table per game server; other keys in the table belong to other parts of gamews
and are left alone)::

    [[server]]
    name = "alpha"                # unique; plugins look the server up by this name
    kind = "source"               # or "quake3"
    rcon = "127.0.0.1:27015"      # host:port ([v6]:port for IPv6)
    password_file = "alpha.rcon"  # or password_env = "ALPHA_RCON"; inline passwords refused
    # rcon_timeout = 10.0         # optional, seconds (Quake 3: wait for the first datagram)
    # rcon_queue = 100            # optional, commands waiting at most
    # status_interval = 15        # seconds between status queries (0: none), see
    #                             # gamews.rcon.status; also one at link-up

Plugins get an :class:`IGameServer`: ``rcon(command) -> Deferred[str]``, ``state``,
``subscribe(callback)`` and ``status()``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from gamews.errors import ConfigError
from gamews.rcon.link import LinkState, command_outcome
from gamews.rcon.quake3 import Quake3RconClient
from gamews.rcon.quake3_codec import Player
from gamews.rcon.source import SourceRconClient
from gamews.reactor import maybe_global_reactor
from gamews.secret import Secret, secret_from_table

__all__ = [
    "CommandObserver",
    "GameServer",
    "GameServerConfig",
    "GameServerStatus",
    "IGameServer",
    "LinkState",
]

Kind = Literal["source", "quake3"]
CommandObserver = Callable[[str, float], object]
"""Told of each finished rcon command: its :func:`gamews.rcon.link.command_outcome` and
the seconds from the call to the reply or failure (queueing included)."""
_KINDS: tuple[Kind, ...] = ("source", "quake3")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9_.-]{1,253}")
_log = Logger(namespace="gamews.rcon.server")


@dataclass(frozen=True, slots=True)
class GameServerStatus:
    """A snapshot of one game server for plugins and the admin console (no secrets)."""

    name: str
    kind: Kind
    address: str
    state: LinkState
    since: float
    detail: str | None
    pending: int
    info: dict[str, str] | None = None
    players: tuple[Player, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``state`` as its string value)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "address": self.address,
            "state": self.state.value,
            "since": self.since,
            "detail": self.detail,
            "pending": self.pending,
            "info": self.info,
            "players": None if self.players is None else [
                {"score": p.score, "ping": p.ping, "name": p.name, "raw_name": p.raw_name}
                for p in self.players
            ],
        }


class IGameServer(Interface):
    """A game server a plugin can talk to."""

    name = Attribute("str: the server's name from its [[server]] table, unique per instance")
    kind = Attribute('str: "source" or "quake3"')
    state = Attribute("LinkState: the link's current state (UP means commands go out now)")
    stale = Attribute("bool: true when the state is only as last heard (a fan-out edge whose "
                      "origin is silent); a local link is never stale")

    def rcon(command: str) -> Deferred[str]:
        """Run ``command`` on the game server; fire with the whole reply text.

        Fails with ``ValueError`` (unsendable command) or a ``gamews.rcon.link.RconError``:
        ``RconTimeoutError``, ``RconQueueFullError``, ``RconLinkLostError``,
        ``RconPasswordRejectedError``, ``RconStoppedError``.  Build commands from user text
        with ``gamews.rcon.commands``.
        """

    def subscribe(callback: Callable[[LinkState], object]) -> Callable[[], None]:
        """Call ``callback(new_state)`` on every link state change; return an unsubscriber."""

    def status() -> GameServerStatus:
        """Return a snapshot: state, since when, why, pending commands, players if known."""


def _parse_address(value: object, where: str) -> tuple[str, int]:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.rcon", 'must be "host:port"')
    if value.startswith("["):
        host, sep, port_text = value[1:].partition("]:")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{where}.rcon", f"{value!r}: not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not host or not _HOST.fullmatch(host):
            raise ConfigError(f"{where}.rcon", f'{value!r}: must be "host:port"')
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{where}.rcon", f"{value!r}: needs a port 1-65535")
    return host, int(port_text)


def _positive(table: dict[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ConfigError(f"{where}.{key}", "must be a number of seconds in (0, 3600]")
    return float(value)


@dataclass(frozen=True, slots=True)
class GameServerConfig:
    """One validated ``[[server]]`` table (the password stays a redacted :class:`Secret`)."""

    name: str
    kind: Kind
    host: str
    port: int
    password: Secret
    timeout: float | None = None
    max_pending: int | None = None
    status_interval: float = 15.0

    @property
    def address(self) -> str:
        """``host:port`` (``[v6]:port``)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path | None) -> GameServerConfig:
        """Validate one ``[[server]]`` table; relative ``password_file`` paths use ``base_dir``.

        Raises :class:`gamews.errors.ConfigError` naming the bad key.  Keys it does not
        know (``log``, ``log_secret_file``, ...) are ignored: other parts of gamews read them.
        """
        name = table.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                "server.name", "must be 1-64 letters, digits, '_', '.', '-' (starting with a "
                "letter or digit)"
            )
        where = f"server.{name}"
        kind = table.get("kind")
        if kind not in _KINDS:
            raise ConfigError(f"{where}.kind", 'must be "source" or "quake3"')
        host, port = _parse_address(table.get("rcon"), where)
        password = secret_from_table(table, "password", where=where, base_dir=base_dir)
        assert password is not None  # required=True
        if kind == "quake3":
            try:
                from gamews.rcon.quake3_codec import encode_rcon

                encode_rcon(password.reveal(), "status")
            except ValueError:
                raise ConfigError(
                    f"{where}.password", "a Quake 3 rconpassword must be one word without "
                    "spaces, quotes, backslashes or semicolons"
                ) from None
        timeout = _positive(table, "rcon_timeout", where, 0) if "rcon_timeout" in table else None
        max_pending: int | None = None
        if "rcon_queue" in table:
            value = table["rcon_queue"]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10000:
                raise ConfigError(f"{where}.rcon_queue", "must be an integer 1-10000")
            max_pending = value
        interval = table.get("status_interval", 15)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not (
                interval == 0 or 1 <= interval <= 3600):
            raise ConfigError(f"{where}.status_interval",
                              "must be 0 (no status queries) or seconds in [1, 3600]")
        return cls(name, cast(Kind, kind), host, port, password, timeout, max_pending,
                   float(interval))


@implementer(IGameServer)
class GameServer(Service):
    """A service that keeps the rcon link to one game server up while it runs.

    Its service ``name`` is the game server's name, so a parent ``MultiService`` finds it
    with ``getServiceNamed(name)``.  ``reactor`` defaults to the global reactor, resolved
    here; ``endpoint`` (Source only) replaces the TCP endpoint built from the config.
    """

    def __init__(
        self,
        config: GameServerConfig,
        *,
        reactor: Any = None,
        endpoint: IStreamClientEndpoint | None = None,
        log: Logger | None = None,
    ) -> None:
        """Build the client for ``config.kind``; nothing is sent before ``startService``."""
        reactor = maybe_global_reactor(reactor)
        self.config = config
        self.name: str = config.name
        self.kind: Kind = config.kind
        self._clock = reactor
        self._command_observers: list[CommandObserver] = []
        self.client: SourceRconClient | Quake3RconClient
        options: dict[str, Any] = {}
        if config.timeout is not None:
            options["timeout"] = config.timeout
        if config.max_pending is not None:
            options["max_pending"] = config.max_pending
        if config.kind == "quake3" and config.status_interval:
            # gamews's service adds a StatusPoller (gamews.rcon.status) for this server:
            # its getstatus keeps the link state, so the client sends no probe of its own
            options["status_interval"] = None
        if config.kind == "source":
            if endpoint is None:
                endpoint = _endpoint(reactor, config.host, config.port)
            self.client = SourceRconClient(
                config.name, endpoint, config.password, clock=reactor, log=log, **options
            )
        else:
            self.client = Quake3RconClient(
                config.name, config.host, config.port, config.password,
                reactor=reactor, log=log, **options,
            )

    stale = False

    def __repr__(self) -> str:
        return f"<GameServer {self.name!r} {self.kind} {self.config.address}>"

    @property
    def state(self) -> LinkState:
        """The link state."""
        return self.client.state

    def startService(self) -> None:
        """Start connecting (and keep reconnecting)."""
        super().startService()  # type: ignore[no-untyped-call]
        self.client.start()

    def stopService(self) -> Deferred[None]:
        """Close the link; fire when it is closed."""
        super().stopService()  # type: ignore[no-untyped-call]
        return self.client.stop()

    def set_password(self, password: Secret) -> None:
        """Use a new rcon password (a reload); the link re-authenticates."""
        self.config = replace(self.config, password=password)
        self.client.set_password(password)

    def rcon(self, command: str) -> Deferred[str]:
        """See :meth:`IGameServer.rcon`."""
        if not self._command_observers:
            return self.client.rcon(command)
        started = self._clock.seconds()

        def finished(result: str | Failure) -> str | Failure:
            error = result.value if isinstance(result, Failure) else None
            outcome, elapsed = command_outcome(error), self._clock.seconds() - started
            for observer in list(self._command_observers):
                try:
                    observer(outcome, elapsed)
                except Exception:
                    _log.failure("rcon command observer of {name} raised", name=self.name)
            return result

        return self.client.rcon(command).addBoth(finished)

    def observe_commands(self, observer: CommandObserver) -> Callable[[], None]:
        """Call ``observer(outcome, seconds)`` as each command ends (never with the command
        text, which may hold secrets); return a function that stops it."""
        self._command_observers.append(observer)

        def stop() -> None:
            if observer in self._command_observers:
                self._command_observers.remove(observer)

        return stop

    def subscribe(self, callback: Callable[[LinkState], object]) -> Callable[[], None]:
        """See :meth:`IGameServer.subscribe`."""
        return self.client.notifier.subscribe(callback)

    def status(self) -> GameServerStatus:
        """See :meth:`IGameServer.status`."""
        link = self.client.notifier.status
        info: dict[str, str] | None = None
        players: tuple[Player, ...] | None = None
        if isinstance(self.client, Quake3RconClient) and self.client.last_status is not None:
            info = dict(self.client.last_status.info)
            players = self.client.last_status.players
        return GameServerStatus(
            self.name, self.kind, self.config.address, link.state, link.since, link.detail,
            self.client.pending, info, players,
        )


def _endpoint(reactor: Any, host: str, port: int) -> IStreamClientEndpoint:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=10)
    if ip.version == 6:
        return TCP6ClientEndpoint(reactor, host, port, timeout=10)
    return TCP4ClientEndpoint(reactor, host, port, timeout=10)
