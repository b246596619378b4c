"""Wiring the demo into gamews: a simulated server, and the config that points at it.

gamews connects to the demo exactly as to a real game server (a ``[[server]]`` of
kind ``source`` with a UDP log stream and a log secret); only the secrets are made up
at start instead of read from files, and the console gets throwaway tokens, printed
once in the log, with its audit log in a temporary directory.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from gamews.auth import ROLES, hash_token, new_token
from gamews.demo.server import DemoGameService
from gamews.rcon.server import GameServerConfig
from gamews.secret import Secret

__all__ = ["DEMO_SERVER", "DemoGame", "demo_plugin_defaults", "make_demo"]

DEMO_SERVER = "demo"
# the name under which the log secret is handed over in-process (never in os.environ)
_LOG_SECRET_ENV = "GAMEWS_DEMO_LOG_SECRET"  # noqa: S105

log = Logger(namespace="gamews.demo")


@dataclass
class DemoGame:
    """The demo's service and what gamews needs to talk to it."""

    service: DemoGameService
    game: GameServerConfig
    table: dict[str, Any]
    environ: dict[str, str]
    tokens_path: Path
    directory: Path
    plugin_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cleanup(self) -> None:
        """Remove the run's temporary directory (tokens, audit log)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def announce(self) -> None:
        """Log where the console tokens are (the tokens themselves never go to the log)."""
        log.info("demo game {name} on 127.0.0.1:{port}; console tokens for this run are in "
                 "{path}", name=self.game.name, port=self.game.port, path=self.tokens_path)


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_demo(*, reactor: Any = None, seed: int | None = None) -> DemoGame:
    """A demo game on free loopback ports, with fresh secrets and console tokens."""
    rcon_port = _free_port(socket.SOCK_STREAM)
    log_port = _free_port(socket.SOCK_DGRAM)
    password = Secret(secrets.token_urlsafe(24))
    log_secret = secrets.token_hex(16)
    service = DemoGameService(
        rcon_endpoint=f"tcp:{rcon_port}:interface=127.0.0.1", password=password,
        log_port=log_port, log_secret=Secret(log_secret), reactor=reactor,
        seed=secrets.randbits(32) if seed is None else seed)
    game = GameServerConfig(DEMO_SERVER, "source", "127.0.0.1", rcon_port, password)
    table = {"name": DEMO_SERVER, "kind": "source", "rcon": f"127.0.0.1:{rcon_port}",
             "log": f"udp:{log_port}:interface=127.0.0.1", "log_secret_env": _LOG_SECRET_ENV}
    directory = Path(tempfile.mkdtemp(prefix="gamews-demo-"))
    tokens = {role: new_token() for role in ROLES}
    tokens_file = directory / "tokens.txt"
    tokens_file.write_text("".join(f"demo-{role}:{role}:{hash_token(token)}\n"
                                   for role, token in tokens.items()))
    tokens_file.chmod(0o600)
    tokens_path = directory / "console-tokens.txt"
    tokens_path.touch(mode=0o600)
    tokens_path.write_text("".join(f"{role}: {token}\n" for role, token in tokens.items()))
    return DemoGame(service, game, table, {_LOG_SECRET_ENV: log_secret}, tokens_path,
                    directory, demo_plugin_defaults(directory))


def demo_plugin_defaults(directory: Path) -> dict[str, dict[str, Any]]:
    """The demo's keys in plugin tables (under the config's own), for a demo whose files
    are in ``directory``: the console's and live view's tokens, the console's audit log."""
    tokens_file = str(directory / "tokens.txt")
    return {
        "console": {"tokens_file": tokens_file, "audit_log": str(directory / "audit.jsonl")},
        "live": {"tokens_file": tokens_file},
    }
