"""A plugin's settings: its ``[plugin.NAME]`` table checked into a frozen dataclass.

A plugin declares its settings as a frozen dataclass (``settings_type`` of
:class:`gamews.api.IGamewsPlugin`): each field is a key of the table, its annotation
the type the value must have, its default what an absent key means (a field without
one is required). :func:`setting` adds a bound; ``__post_init__`` may check the rest,
raising ``ConfigError(key, message)`` with the bare key. gamews prefixes the keys with
``plugin.NAME.`` (:func:`plugin_settings`). Exported through :mod:`gamews.api`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from gamews.errors import ConfigError

__all__ = ["plugin_settings", "setting", "settings_from_table"]

T = TypeVar("T")

_ABOVE: Final = "gamews.above"
_AT_LEAST: Final = "gamews.at_least"


def setting(default: Any = dataclasses.MISSING, *, above: float | None = None,
            at_least: float | None = None) -> Any:
    """A settings field with ``default`` (none: the key is required) and an optional
    lower bound: the value must be greater than ``above``, or at least ``at_least``."""
    metadata = {_ABOVE: above, _AT_LEAST: at_least}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings_from_table(settings_type: type[T], table: Mapping[str, Any], *,
                        base_dir: Path | None = None) -> T:
    """Check ``table`` against the dataclass ``settings_type`` and build it.

    Keys must be fields; values must have the field's type: ``bool``, ``int``,
    ``float`` (an integer is taken), ``str``, ``Path`` (relative paths are taken from
    ``base_dir``, the config file's directory), ``tuple[X, ...]`` (a list of one of
    those), ``Literal[...]`` of strings, or ``X | None``. Raises
    :class:`gamews.errors.ConfigError` with the bare key (``rate``).
    """
    if not dataclasses.is_dataclass(settings_type):
        raise TypeError(f"{settings_type!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(settings_type) if f.init}
    hints = typing.get_type_hints(settings_type)
    for key in table:
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(str(key), f"unknown key (known: {known})")
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in table:
            if (spec.default is dataclasses.MISSING
                    and spec.default_factory is dataclasses.MISSING):
                raise ConfigError(name, f"required: {_describe(hints[name])}")
            continue
        value = _convert(table[name], hints[name], name, base_dir)
        _bound(value, spec, name)
        values[name] = value
    return settings_type(**values)


def plugin_settings(name: str, settings_type: type[T], table: Mapping[str, Any], *,
                    base_dir: Path | None = None) -> T:
    """:func:`settings_from_table` for plugin ``name``: every error names its key in full
    (``plugin.NAME.KEY``), including errors the dataclass itself raises, and anything
    else the plugin raises is a :class:`ConfigError` on ``plugin.NAME``."""
    try:
        return settings_from_table(settings_type, table, base_dir=base_dir)
    except ConfigError as e:
        raise ConfigError(f"plugin.{name}.{e.key}", e.message) from None
    except Exception as e:
        raise ConfigError(f"plugin.{name}",
                          f"its settings failed to load: {type(e).__name__}: {e}") from None


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        return _describe(next(a for a in args if a is not type(None)))
    if origin is tuple:
        return f"a list, each {_describe(args[0])}"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            Path: "a file path"}.get(kind, getattr(kind, "__name__", str(kind)))


def _convert(value: Any, kind: Any, key: str, base_dir: Path | None) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"settings field {key}: only X | None unions are supported")
        return _convert(value, inner[0], key, base_dir)
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"settings field {key}: tuples must be tuple[X, ...]")
        if not isinstance(value, list):
            raise ConfigError(key, f"expected {_describe(kind)}")
        return tuple(_convert(item, args[0], key, base_dir) for item in value)
    if origin is typing.Literal:
        if value not in args or not isinstance(value, str):
            raise ConfigError(key, f"expected {_describe(kind)}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, "expected true or false")
        return value
    if kind is int or kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                kind is int and not isinstance(value, int)):
            raise ConfigError(key, f"expected {_describe(kind)}, got {_got(value)}")
        return kind(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {_got(value)}")
        return value
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(key, "expected a file path")
        path = Path(value).expanduser()
        return path if path.is_absolute() or base_dir is None else base_dir / path
    raise TypeError(f"settings field {key}: unsupported type {kind!r}")


def _got(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _bound(value: Any, spec: dataclasses.Field[Any], key: str) -> None:
    above, at_least = spec.metadata.get(_ABOVE), spec.metadata.get(_AT_LEAST)
    if above is not None and not value > above:
        raise ConfigError(key, f"must be greater than {above:g}")
    if at_least is not None and not value >= at_least:
        raise ConfigError(key, f"must be at least {at_least:g}")
