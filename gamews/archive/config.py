"""The ``[archive]`` table: where the match archive lives, what it keeps.

Config::

    [archive]
    database = "sqlite:archive.sqlite"   # default: sqlite under the data directory
    # database = "postgresql://gamews@127.0.0.1:5432/gamews"   # no password in it:
    # password_file = "pg.pass"          # or password_env = "PGPASSWORD"
    keep_days = 90                        # 0: keep matches whatever their age
    keep_matches = 10000                  # 0: keep any number of matches
    # prune_every = 3600                  # seconds between retention passes
    # flush_every = 0.5                   # seconds between batched writes (at most 1)
    # record = true                       # false: serve the archive, record nothing

A top-level ``archive = false`` turns the archive off (no recording, no pages).
The data directory is ``$GAMEWS_DATA``, else ``$XDG_DATA_HOME/gamews``, else
``~/.local/share/gamews``; gamews makes it with mode 0700.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from gamews.errors import ConfigError
from gamews.secret import Secret, secret_from_table

__all__ = ["DEFAULT_DATABASE", "ArchiveConfig", "data_dir"]

DEFAULT_DATABASE: Final = "sqlite:archive.sqlite"
_KEYS: Final = frozenset({"database", "password_file", "password_env", "keep_days",
                          "keep_matches", "prune_every", "flush_every", "record"})


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where gamews keeps its data by default (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("GAMEWS_DATA"):
        return Path(env["GAMEWS_DATA"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(base) / "gamews"


@dataclass(frozen=True)
class ArchiveConfig:
    """One validated ``[archive]`` table."""

    database: str
    """``sqlite:/absolute/path`` or ``postgresql://...`` (without a password)."""
    password: Secret | None = None
    keep_days: float = 90.0
    keep_matches: int = 10_000
    prune_every: float = 3600.0
    flush_every: float = 0.5
    record: bool = True

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or ``None`` for PostgreSQL."""
        return Path(self.database[len("sqlite:"):]) if self.database.startswith("sqlite:") \
            else None

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, base_dir: Path | None = None,
                   environ: dict[str, str] | None = None) -> ArchiveConfig:
        """Validate the table; raises :class:`ConfigError` naming the bad key."""
        for key in table:
            if key not in _KEYS and key != "password":
                raise ConfigError(f"archive.{key}",
                                  f"unknown key (known: {', '.join(sorted(_KEYS))})")
        database = table.get("database", DEFAULT_DATABASE)
        if not isinstance(database, str):
            raise ConfigError("archive.database", "expected a string")
        if database.startswith("sqlite:"):
            raw = database[len("sqlite:"):]
            if not raw:
                raise ConfigError("archive.database", 'expected "sqlite:PATH"')
            path = Path(raw).expanduser()
            if not path.is_absolute():
                # relative to the data directory when the default, else to the config file
                anchor = data_dir(environ) if "database" not in table or base_dir is None \
                    else base_dir
                path = anchor / path
            database = f"sqlite:{path}"
        elif database.startswith(("postgresql://", "postgres://")):
            parts = urlsplit(database)
            if parts.password is not None:
                raise ConfigError("archive.database", "no password in the URL: put it in a "
                                                      "file named by password_file or an "
                                                      "environment variable named by "
                                                      "password_env")
        else:
            raise ConfigError("archive.database",
                              'expected "sqlite:PATH" or "postgresql://USER@HOST:PORT/DB"')
        password = secret_from_table(dict(table), "password", where="archive",
                                     base_dir=base_dir, required=False, environ=environ)
        values: dict[str, Any] = {}
        for key, kind, low in (("keep_days", (int, float), 0), ("keep_matches", int, 0),
                               ("prune_every", (int, float), 1), ("flush_every", (int, float),
                                                                  0.01)):
            if key not in table:
                continue
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, kind) or value < low:
                raise ConfigError(f"archive.{key}", f"expected a number of at least {low}")
            values[key] = value
        if values.get("flush_every", 0) > 1:
            raise ConfigError("archive.flush_every", "at most 1 second (a crash loses at most "
                                                     "that much)")
        record = table.get("record", True)
        if not isinstance(record, bool):
            raise ConfigError("archive.record", "expected true or false")
        return cls(database, password, keep_days=float(values.get("keep_days", 90.0)),
                   keep_matches=int(values.get("keep_matches", 10_000)),
                   prune_every=float(values.get("prune_every", 3600.0)),
                   flush_every=float(values.get("flush_every", 0.5)), record=record)
