"""The ``[fanout]`` table: this instance's role, the Redis address and password.

Config::

    [fanout]
    role = "origin"                  # or "edge"
    redis = "tcp:127.0.0.1:6379"     # a client endpoint (tcp:, tls:, unix:); no password in it
    # redis_env = "GAMEWS_REDIS"     # ...or the name of an environment variable holding it
    password_file = "redis.pass"     # or password_env = "REDIS_PASSWORD"; optional
    key_file = "fanout.key"          # or key_env = "GAMEWS_FANOUT_KEY"; required: the key(s)
                                     # every instance seals and checks Redis entries with
    # username = "gamews"            # optional Redis ACL user
    # name = "edge-1"                # this instance, unique (audit log; default host:pid)
    # prefix = "gamews"              # key prefix, for several games on one Redis
    # maxlen = 10000                 # events kept per game server stream (XADD MAXLEN ~);
                                     # the origin sends at most maxlen / 4 events at once
    # stale_after = 3.0              # seconds without the origin's heartbeat: pages say stale
    # servers = ["alpha"]            # edge only, required: the game servers to follow

No ``[fanout]`` table: one instance, as before.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from gamews.errors import ConfigError
from gamews.secret import Secret, secret_from_table

__all__ = ["FanoutConfig", "Role"]

Role = Literal["origin", "edge"]
_KEYS: Final = frozenset({"role", "redis", "redis_env", "password_file", "password_env",
                          "key_file", "key_env", "username", "name", "prefix", "maxlen",
                          "stale_after", "servers"})
MIN_KEY: Final = 32
"""Characters a fan-out key has at least (``secrets.token_urlsafe(32)`` makes 43)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True)
class FanoutConfig:
    """One validated ``[fanout]`` table (the password stays a redacted :class:`Secret`)."""

    role: Role
    redis: str
    """The Redis client endpoint description (it never holds the password)."""
    keys: tuple[Secret, ...] = ()
    """The shared keys sealing Redis entries (:class:`gamews.fanout.codec.Sealer`):
    the first seals, all open."""
    password: Secret | None = None
    username: str | None = None
    name: str = "gamews"
    prefix: str = "gamews"
    maxlen: int = 10_000
    stale_after: float = 3.0
    servers: tuple[str, ...] = ()

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path | None = None,
                   environ: dict[str, str] | None = None) -> FanoutConfig:
        """Validate the table; raises :class:`ConfigError` naming the bad key."""
        for key in table:
            if key not in _KEYS and key not in ("password", "key"):
                raise ConfigError(f"fanout.{key}",
                                  f"unknown key (known: {', '.join(sorted(_KEYS))})")
        role = table.get("role")
        if role not in ("origin", "edge"):
            raise ConfigError("fanout.role", 'must be "origin" or "edge"')
        redis = table.get("redis")
        if "redis_env" in table:
            if redis is not None:
                raise ConfigError("fanout.redis_env", "give redis or redis_env, not both")
            name = table["redis_env"]
            redis = (os.environ if environ is None else environ).get(str(name))
            if not redis:
                raise ConfigError("fanout.redis_env", f"environment variable {name} is not set")
        if not isinstance(redis, str) or ":" not in redis:
            raise ConfigError("fanout.redis", 'must be a client endpoint, "tcp:HOST:PORT"')
        if "@" in redis or "redis://" in redis:
            raise ConfigError("fanout.redis", "give an endpoint such as tcp:HOST:PORT; the "
                                              "password goes in password_file or password_env")
        password = secret_from_table(table, "password", where="fanout", base_dir=base_dir,
                                     required=False, environ=environ)
        keys = _keys(secret_from_table(table, "key", where="fanout", base_dir=base_dir,
                                       environ=environ), "key_env" in table)
        name = table.get("name", f"{socket.gethostname()}:{os.getpid()}")
        prefix = table.get("prefix", "gamews")
        for key, value in (("name", name), ("prefix", prefix)):
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise ConfigError(f"fanout.{key}", "must be 1-64 letters, digits, '_.:-'")
        username = table.get("username")
        if username is not None and (not isinstance(username, str) or not username):
            raise ConfigError("fanout.username", "must be a Redis user name")
        maxlen = table.get("maxlen", 10_000)
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or not 100 <= maxlen:
            raise ConfigError("fanout.maxlen", "must be an integer of at least 100")
        stale = table.get("stale_after", 3.0)
        if isinstance(stale, bool) or not isinstance(stale, int | float) or not 0.5 <= stale:
            raise ConfigError("fanout.stale_after", "must be at least 0.5 seconds")
        servers = table.get("servers", [])
        if not isinstance(servers, list) or not all(isinstance(s, str) and s for s in servers):
            raise ConfigError("fanout.servers", "expected a list of game server names")
        if role == "edge" and not servers:
            raise ConfigError("fanout.servers", "an edge needs the game servers to follow")
        if role == "origin" and servers:
            raise ConfigError("fanout.servers", "only for an edge (an origin publishes its "
                                                "[[server]] tables)")
        return cls(cast(Role, role), redis, keys, password, username, name, prefix, maxlen,
                   float(stale), tuple(servers))

    @property
    def batch(self) -> int:
        """Events the origin sends at once: a quarter of ``maxlen`` (``MAXLEN ~`` trims in
        whole nodes), so that one burst never trims what a healthy edge has not read."""
        return max(1, min(200, self.maxlen // 4))


def _keys(secret: Secret | None, from_env: bool) -> tuple[Secret, ...]:
    """The keys in a key file or variable: one per line (or separated by spaces)."""
    where = "fanout.key_env" if from_env else "fanout.key_file"
    words = secret.reveal().split() if secret is not None else []
    if not words:
        raise ConfigError(where, "holds no key")
    if any(len(w) < MIN_KEY for w in words):
        raise ConfigError(where, f"each key must be at least {MIN_KEY} characters (random: "
                                 "secrets.token_urlsafe(32))")
    return tuple(Secret(w) for w in words)

