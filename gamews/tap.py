"""``twistd gamews``: command-line options and the service they build."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.python import usage

from gamews.config import DEFAULT_LISTEN, GamewsConfig, load_config
from gamews.demo.setup import make_demo
from gamews.endpoints import normalize_endpoint
from gamews.errors import ConfigError
from gamews.fanout.config import FanoutConfig
from gamews.logjson import use_file
from gamews.manhole import ManholeConfig
from gamews.metrics import MetricsConfig, metrics_endpoint
from gamews.service import GamewsService, available_plugins, select_plugins

__all__ = ["Options", "makeService"]



class Options(usage.Options):
    """Options of ``twistd gamews``."""

    synopsis = "[options]"
    longdesc = ("Serve WebSockets for game-server plugins. With no options, listen on "
                f"{DEFAULT_LISTEN} and run the echo plugin (/echo) and an index page (/).")
    optParameters: ClassVar[list[list[str | None]]] = [
        ["config", "c", None, "A TOML config file."],
        ["manhole", None, None, "Run an SSH manhole on this endpoint (credentials from the "
                                "config's [manhole] table) [default: off]."],
        ["log-format", None, "text", "text, or json: JSON lines (twistd's --logfile still "
                                     "says where)."],
    ]
    optFlags: ClassVar[list[list[str | None]]] = [
        ["demo", None, "Run the built-in demo game (the default when no [[server]] is "
                       "configured)."],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["metrics"] = None
        self.config: GamewsConfig = GamewsConfig()
        self.service: GamewsService | None = None

    def opt_listen(self, description: str) -> None:
        """Listen on an endpoint (strports syntax; repeatable)
        [default: tcp:8080:interface=127.0.0.1]."""
        try:
            normalize_endpoint(description)
        except ValueError as e:
            raise usage.UsageError(f"--listen: {e}") from None
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_metrics(self, description: str) -> None:
        """Serve Prometheus metrics at /metrics on an endpoint (a bare port number means
        loopback) [default: off, or the config's [metrics] table]."""
        try:
            self["metrics"] = metrics_endpoint(description, "--metrics")
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def parseOptions(self, options: Any = None) -> None:
        """Parse, printing a bad option or config as one line (not a usage dump)."""
        try:
            super().parseOptions(options)  # type: ignore[no-untyped-call]
        except usage.UsageError as e:
            sys.stderr.write(f"twistd gamews: error: {e}\n")
            raise SystemExit(2) from None

    def postOptions(self) -> None:
        """Read and check the config, and build the service (so every error shows now)."""
        try:
            config = load_config(self["config"]) if self["config"] else GamewsConfig()
            if self["listen"]:
                config = config.with_listen(tuple(self["listen"]))
            for i, endpoint in enumerate(config.listen):
                try:
                    normalize_endpoint(endpoint)
                except ValueError as e:
                    raise ConfigError(f"listen[{i}]", str(e)) from None
            demo = self["demo"] or config.runs_demo()
            plugins = select_plugins(config.plugin_names(demo=demo), available_plugins())
            manhole = None
            if self["manhole"] is not None or config.manhole is not None:
                table = dict(config.manhole or {})
                if self["manhole"] is not None:
                    table["endpoint"] = self["manhole"]
                manhole = ManholeConfig.from_table(table, base_dir=config.base_dir)
            metrics = None
            if self["metrics"] is not None or config.metrics is not None:
                table = dict(config.metrics or {})
                if self["metrics"] is not None:
                    table["listen"] = self["metrics"]
                metrics = MetricsConfig.from_table(table)
            fanout = (FanoutConfig.from_table(dict(config.fanout), base_dir=config.base_dir)
                      if config.fanout is not None else None)
            self.service = GamewsService(config, plugins, demo=make_demo() if demo else None,
                                         manhole=manhole, metrics=metrics, fanout=fanout)
        except ConfigError as e:
            raise usage.UsageError(f"config: {e}") from None
        self.config = config
        self._log_format()

    def _log_format(self) -> None:
        """``--log-format json``: have twistd log through :mod:`gamews.logjson`."""
        if self["log-format"] not in ("text", "json"):
            raise usage.UsageError("--log-format: expected text or json")
        twistd = getattr(self, "parent", None)
        if self["log-format"] == "text":
            return
        if twistd is None:
            raise usage.UsageError("--log-format json works under twistd; in a .tac file, "
                                   "set ILogObserver to gamews.logjson.observer()")
        if twistd.get("logger") or twistd.get("syslog"):
            raise usage.UsageError("--log-format json: twistd's --logger or --syslog is "
                                   "given too")
        logfile = twistd.get("logfile")
        if not logfile and not twistd.get("nodaemon"):
            logfile = "twistd.log"
        if logfile == "-" and not twistd.get("nodaemon"):
            raise usage.UsageError("--log-format json: daemons cannot log to stdout")
        use_file(logfile)
        twistd["logger"] = "gamews.logjson.observer"


def makeService(options: Options) -> IService:
    """The gamews service built from parsed :class:`Options`."""
    assert options.service is not None, "parseOptions() first"
    return options.service
