"""The benchmark plugin of ``bench/ws/gamews_server.py`` (and of ``bench/soak.py``, which
runs it under ``twistd gamews``): echo on /echo (``child.hook`` and ``send_text``/
``send_binary``) and a 64 Hz ``listener.broadcast`` of sequence-numbered messages on
/broadcast. Imports no reactor: whoever runs it has chosen one."""

from __future__ import annotations

from twisted.application.service import IService, Service
from twisted.internet.interfaces import IAddress
from twisted.internet.task import LoopingCall
from twisted.plugin import IPlugin
from zope.interface import implementer

from gamews.api import IConnection, IGamewsPlugin, IListener, IPluginContext

from .common import BROADCAST_HZ, BROADCAST_PATH, ECHO_PATH, payload, ready

__all__ = ["BenchPlugin", "BenchService"]


def echo(child: IConnection, data: str | bytes) -> None:
    if isinstance(data, str):
        child.send_text(data)
    else:
        child.send_binary(data)


def hook_echo(child: IConnection) -> None:
    child.hook(on_message=echo)


def hook_spectator(child: IConnection) -> None:
    child.hook()


def announce(address: IAddress) -> None:
    ready(getattr(address, "port", 0))


class BenchService(Service):
    def __init__(self, context: IPluginContext) -> None:
        self.context = context
        self.seq = 0
        self.spectators: IListener | None = None
        self.ticker = LoopingCall(self.tick)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.context.open(ECHO_PATH, incoming=hook_echo)
        self.spectators = self.context.open(BROADCAST_PATH, incoming=hook_spectator)
        self.spectators.when_listening().addCallback(announce)
        self.ticker.start(1 / BROADCAST_HZ, now=False)

    def tick(self) -> None:
        assert self.spectators is not None
        self.seq += 1
        if self.spectators.broadcast(payload(self.seq)) == 0:
            self.seq -= 1  # nobody watching: keep the sequence dense for the clients


@implementer(IPlugin, IGamewsPlugin)
class BenchPlugin:
    name = "bench"
    description = "Benchmark echo and 64 Hz broadcast"

    def make_service(self, context: IPluginContext) -> IService:
        return BenchService(context)
