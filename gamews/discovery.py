"""Finding the installed gamews plugins, by name.

A plugin is found either way, and both may be used by one package:

- **Twisted's plugin system**: an object providing :class:`gamews.api.IGamewsPlugin` at
  module level in a module of a ``twisted/plugins/`` directory on ``sys.path`` (found with
  ``twisted.plugin.getPlugins``). A plain ``pip install`` (or an editable one in
  ``editable_mode=compat``) puts it there.
- **The ``gamews.plugins`` entry-point group** (``importlib.metadata``): in the package's
  ``pyproject.toml``::

      [project.entry-points."gamews.plugins"]
      shout = "shout_plugin:Shout"

  naming the plugin object or its class (called without arguments). This works with
  every kind of install, setuptools' default editable one (``pip install -e .``)
  included, where ``twisted/plugins/`` is not on ``sys.path``.

When both find a plugin of the same name, the one from Twisted's plugin system is kept
(the same plugin, found twice, is the usual reason).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points

from twisted.logger import Logger
from twisted.plugin import getPlugins

from gamews.api import IGamewsPlugin
from gamews.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "HOW_PLUGINS_ARE_FOUND", "available_plugins", "select_plugins"]

ENTRY_POINT_GROUP = "gamews.plugins"
"""The entry-point group gamews reads plugins from."""

HOW_PLUGINS_ARE_FOUND = (
    "plugins are found through a module in a twisted/plugins/ directory on sys.path "
    f"(Twisted's plugin system) or through the {ENTRY_POINT_GROUP!r} entry-point group "
    "of an installed package (works with pip install -e)"
)
"""The hint a missing plugin's error ends with."""

log = Logger(namespace="gamews.discovery")


def _from_entry_point(entry: EntryPoint) -> IGamewsPlugin | None:
    """The plugin an entry point names (an instance, or a class to call), or ``None``
    (logged) when it cannot be loaded or is not a gamews plugin."""
    try:
        target = entry.load()
        plugin = target if IGamewsPlugin.providedBy(target) else target()
    except Exception:
        log.failure("cannot load gamews plugin entry point {entry} = {value}",
                    entry=entry.name, value=entry.value)
        return None
    if not IGamewsPlugin.providedBy(plugin):
        log.warn("entry point {entry} = {value} is not a gamews plugin (IGamewsPlugin)",
                 entry=entry.name, value=entry.value)
        return None
    result: IGamewsPlugin = plugin
    return result


def _entry_point_plugins() -> Iterable[IGamewsPlugin]:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        plugin = _from_entry_point(entry)
        if plugin is None:
            continue
        if getattr(plugin, "name", None) != entry.name:
            log.warn("entry point {entry} names a plugin called {name!r}; it is known by "
                     "its own name", entry=entry.name, name=getattr(plugin, "name", None))
        yield plugin


def available_plugins() -> dict[str, IGamewsPlugin]:
    """Every installed gamews plugin, by name: those of Twisted's plugin system, then
    those of the ``gamews.plugins`` entry-point group."""
    found: dict[str, IGamewsPlugin] = {}
    twisted_found: list[IGamewsPlugin] = list(getPlugins(IGamewsPlugin))
    for way, plugins in (("twisted/plugins", twisted_found),
                         ("entry point", _entry_point_plugins())):
        for plugin in plugins:
            name = getattr(plugin, "name", None)
            if not isinstance(name, str) or not name:
                log.warn("ignoring a gamews plugin without a name: {plugin!r}", plugin=plugin)
            elif name in found:
                if found[name] is not plugin and way == "twisted/plugins":
                    log.warn("two gamews plugins are named {name}; keeping the first",
                             name=name)
            else:
                found[name] = plugin
    return found


def select_plugins(names: tuple[str, ...], found: Mapping[str, IGamewsPlugin]) -> list[
        IGamewsPlugin]:
    """The plugins named in the config, or a :class:`ConfigError` naming a missing one,
    the installed ones, and both ways plugins are found."""
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError("plugins", f"no plugin named {missing[0]!r} is installed "
                                     f"(installed: {', '.join(sorted(found)) or 'none'}); "
                                     f"{HOW_PLUGINS_ARE_FOUND}")
    return [found[n] for n in names]
