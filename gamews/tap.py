"""``twistd gamews``: command-line options and the service they build."""

from __future__ import annotations

import sys
from typing import Any, ClassVar, NoReturn

from twisted.application.service import IService
from twisted.python import usage

from gamews.config import DEFAULT_LISTEN, GamewsConfig
from gamews.endpoints import endpoint_setting, normalize_endpoint
from gamews.errors import ConfigError
from gamews.logjson import use_file
from gamews.service import GamewsService
from gamews.settings import CommandLine, Settings, available_plugins, load_settings

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    """Options of ``twistd gamews``."""

    synopsis = "[options]"
    longdesc = ("Serve WebSockets for game-server plugins. With no options: listen on "
                f"{DEFAULT_LISTEN} and run the built-in demo game with the echo, chat, live "
                "and console plugins (an index page at /; the log says which file holds the "
                "console's tokens). `python -m gamews` runs the same in the foreground.")
    optParameters: ClassVar[list[list[str | None]]] = [
        ["config", "c", None, "A TOML config file."],
        ["manhole", None, None, "Run an SSH manhole on this endpoint (a bare port number "
                                "means loopback; credentials from the config's [manhole] "
                                "table, which alone turns it on too) [default: off]."],
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
        self.settings = Settings()
        self.command_line = CommandLine()

    def opt_listen(self, description: str) -> None:
        """Listen on an endpoint (strports syntax; repeatable)
        [default: tcp:8080:interface=127.0.0.1]."""
        try:
            normalize_endpoint(description)
        except ValueError as e:
            raise usage.UsageError(f"--listen: {e}") from None
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_version(self) -> None:
        """Display gamews's version (and Twisted's) and exit."""
        import twisted
        from gamews import __version__

        sys.stdout.write(f"gamews {__version__} (Twisted {twisted.__version__})\n")
        raise SystemExit(0)

    def opt_metrics(self, description: str) -> None:
        """Serve Prometheus metrics at /metrics on an endpoint (a bare port number means
loopback) [default: off, or the config's [metrics] table]."""
        try:
            self["metrics"] = endpoint_setting(description, "--metrics")
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def parseOptions(self, options: Any = None) -> None:
        """Parse, printing a bad option or config as one line (not a usage dump)."""
        try:
            super().parseOptions(options)  # type: ignore[no-untyped-call]
        except usage.UsageError as e:
            _exit_with(str(e))

    def postOptions(self) -> None:
        """Check the whole configuration (command line, file, every plugin's table) into
        :attr:`settings`, so every bad setting shows now, as one line."""
        cli = CommandLine(config=self["config"], listen=tuple(self["listen"]),
                          manhole=self["manhole"], metrics=self["metrics"], demo=self["demo"])
        self.command_line = cli
        try:
            self.settings = load_settings(cli, available_plugins())
        except ConfigError as e:
            raise usage.UsageError(f"config: {e}") from None
        self._log_format()

    @property
    def config(self) -> GamewsConfig:
        """The top-level part of :attr:`settings`."""
        return self.settings.config

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
    """The gamews service built from parsed :class:`Options`; a part that fails to build
    (a plugin whose ``make_service`` raises) is one line and exit status 2."""
    try:
        return GamewsService(options.settings, cli=options.command_line)
    except ConfigError as e:
        _exit_with(str(e))


def _exit_with(message: str) -> NoReturn:
    """Stop ``twistd gamews`` with one line on stderr and exit status 2."""
    sys.stderr.write(f"twistd gamews: error: {message}\n")
    raise SystemExit(2)
