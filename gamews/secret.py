"""Secrets (RCON passwords, tokens, log secrets): loaded from files or the
environment, never printed, compared in constant time.

A :class:`Secret` hides its value from ``repr``/``str`` so that it cannot leak
into logs, tracebacks, the manhole's view of the config or a browser.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any, Final

from gamews.errors import ConfigError

__all__ = ["Secret", "secret_from_table"]

_REDACTED: Final = "<redacted>"


class Secret:
    """A secret value that never shows itself in ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret text; call only where it is put on the wire."""
        return self._value

    def matches(self, candidate: str | bytes) -> bool:
        """Compare ``candidate`` with the secret in constant time."""
        if isinstance(candidate, str):
            candidate = candidate.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(self._value.encode("utf-8", "surrogateescape"), candidate)

    def __repr__(self) -> str:
        return f"Secret({_REDACTED})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(Secret)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def secret_from_table(
    table: dict[str, Any],
    key: str,
    *,
    where: str,
    base_dir: Path | None = None,
    required: bool = True,
    environ: dict[str, str] | None = None,
) -> Secret | None:
    """Read the secret named ``key`` from ``KEY_file`` or ``KEY_env`` in ``table``.

    An inline ``key`` is refused with a message saying where to put it, so a
    secret never has to live in the (often world-readable, often committed)
    config file. ``where`` names the table in error messages (``server.alpha``).
    A file's trailing newline is stripped. Returns ``None`` when neither is
    given and ``required`` is false.
    """
    env = os.environ if environ is None else environ
    if key in table:
        raise ConfigError(
            f"{where}.{key}",
            f"inline secrets are refused; put it in a file named by {key}_file "
            f"or an environment variable named by {key}_env",
        )
    file_key, env_key = f"{key}_file", f"{key}_env"
    if file_key in table and env_key in table:
        raise ConfigError(f"{where}.{file_key}", f"give {file_key} or {env_key}, not both")
    if file_key in table:
        raw = table[file_key]
        if not isinstance(raw, str) or not raw:
            raise ConfigError(f"{where}.{file_key}", "must be a file path")
        path = Path(raw).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            text = path.read_text("utf-8")
        except OSError as e:
            raise ConfigError(f"{where}.{file_key}", f"cannot read {path}: {e.strerror}") from None
        value = text.rstrip("\r\n")
        if not value:
            raise ConfigError(f"{where}.{file_key}", f"{path} is empty")
        return Secret(value)
    if env_key in table:
        name = table[env_key]
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.{env_key}", "must name an environment variable")
        if not env.get(name):
            raise ConfigError(f"{where}.{env_key}", f"environment variable {name} is not set")
        return Secret(env[name])
    if required:
        raise ConfigError(f"{where}.{key}_file", f"missing: set {file_key} or {env_key}")
    return None
