"""Exceptions shared across gamews; the public ones are re-exported by :mod:`gamews.api`."""

from __future__ import annotations

__all__ = ["ConfigError", "EndpointConflictError"]


class ConfigError(Exception):
    """A configuration value is wrong; ``key`` names it (``websocket.max_message_size``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class EndpointConflictError(ValueError):
    """Two opens of one listening address asked for incompatible options (say, two TLS keys)."""
