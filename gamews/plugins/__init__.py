"""Built-in gamews plugins (echo, chat, live, overlay, console, bridge).

They are found like any third-party plugin, through ``twisted/plugins/``, where
each is a :class:`BuiltinPlugin`: a light stand-in that imports the plugin's
module only when gamews builds its service.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from twisted.python.reflect import namedAny
from zope.interface import implementer

from gamews.api import IGamewsPlugin

if TYPE_CHECKING:
    from twisted.application.service import IService

    from gamews.api import IPluginContext

__all__ = ["BuiltinPlugin"]


@implementer(IGamewsPlugin)
class BuiltinPlugin:
    """A plugin named ``name`` whose real object is the class at dotted path ``target``."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target

    def __repr__(self) -> str:
        return f"<BuiltinPlugin {self.name} ({self.target})>"

    @cached_property
    def plugin(self) -> IGamewsPlugin:
        """The real plugin object (imported on first use)."""
        plugin: IGamewsPlugin = namedAny(self.target)()  # type: ignore[no-untyped-call]
        return plugin

    @property
    def description(self) -> str:
        description: str = self.plugin.description
        return description

    @property
    def settings_type(self) -> type | None:
        settings_type: type | None = getattr(self.plugin, "settings_type", None)
        return settings_type

    def make_service(self, context: IPluginContext) -> IService:
        return self.plugin.make_service(context)
