"""The smallest gamews plugin: echo every message back to its sender.

It shows the whole plugin contract in a few lines: a plugin object providing
:class:`gamews.api.IGamewsPlugin` (found through ``twisted/plugins/``), whose
service opens a listener when started and closes it when stopped; each
incoming child is hooked and its messages sent back, text as text and binary
as binary.

Config (optional)::

    [plugin.echo]
    path = "/echo"
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from gamews.api import ConfigError, IConnection, IGamewsPlugin, IListener, IPluginContext

__all__ = ["EchoPlugin", "EchoService", "EchoSettings"]


@dataclass(frozen=True)
class EchoSettings:
    """The ``[plugin.echo]`` table."""

    path: str = "/echo"
    """The URL path to echo on."""

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ConfigError("path", "expected a URL path such as /echo")


class EchoService(Service):
    """Listens on ``path`` of every web endpoint and echoes each message."""

    def __init__(self, context: IPluginContext) -> None:
        self.context = context
        settings: EchoSettings = context.settings
        self.path = settings.path
        self.listener: IListener | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        # no endpoint=: one listener over every web endpoint
        self.listener = self.context.open(self.path, incoming=self.incoming)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        listener, self.listener = self.listener, None
        return listener.close() if listener is not None else succeed(None)

    def incoming(self, child: IConnection) -> None:
        """Hold every child that asks."""
        child.hook(on_message=self.message)

    def message(self, child: IConnection, data: str | bytes) -> None:
        """Send ``data`` back as it came."""
        if isinstance(data, str):
            child.send_text(data)
        else:
            child.send_binary(data)


@implementer(IGamewsPlugin)
class EchoPlugin:
    """Echoes every message back (``/echo``)."""

    name = "echo"
    description = "Sends every message back to its sender (the smallest plugin)."
    settings_type = EchoSettings

    def make_service(self, context: IPluginContext) -> IService:
        return EchoService(context)
