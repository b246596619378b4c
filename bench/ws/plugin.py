"""The benchmark plugin of ``bench/ws/gamews_server.py`` (and of ``bench/soak.py``, which
runs it under ``twistd gamews``): echo on /echo (``child.hook`` and ``send_text``/
``send_binary``) and a 64 Hz ``channel.publish`` of sequence-numbered messages to every
spectator on /broadcast (an EVENTS channel: every message counts). Imports no reactor:
whoever runs it has chosen one."""

from __future__ import annotations

from twisted.application.service import IService, Service
from twisted.internet.interfaces import IAddress
from twisted.internet.task import LoopingCall
from twisted.plugin import IPlugin
from zope.interface import implementer

from gamews.api import IChannel, IConnection, IGamewsPlugin, IPluginContext

from .common import BROADCAST_HZ, BROADCAST_PATH, ECHO_PATH, payload, ready

__all__ = ["BenchPlugin", "BenchService"]


def echo(child: IConnection, data: str | bytes) -> None:
    if isinstance(data, str):
        child.send_text(data)
    else:
        child.send_binary(data)


def hook_echo(child: IConnection) -> None:
    child.hook(on_message=echo)


def announce(address: IAddress) -> None:
    ready(getattr(address, "port", 0))


class BenchService(Service):
    def __init__(self, context: IPluginContext) -> None:
        self.context = context
        self.seq = 0
        self.spectators: IChannel | None = None
        self.ticker = LoopingCall(self.tick)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.context.open(ECHO_PATH, incoming=hook_echo)
        listener = self.context.open(BROADCAST_PATH, incoming=self.spectator)
        self.spectators = listener.channel("spectators")
        listener.when_listening().addCallback(announce)
        self.ticker.start(1 / BROADCAST_HZ, now=False)

    def spectator(self, child: IConnection) -> None:
        assert self.spectators is not None
        child.hook()
        self.spectators.subscribe(child)

    def tick(self) -> None:
        assert self.spectators is not None
        self.seq += 1
        if self.spectators.publish(payload(self.seq)) == 0:
            self.seq -= 1  # nobody watching: keep the sequence dense for the clients


@implementer(IPlugin, IGamewsPlugin)
class BenchPlugin:
    name = "bench"
    description = "Benchmark echo and 64 Hz broadcast"
    settings_type = None

    def make_service(self, context: IPluginContext) -> IService:
        return BenchService(context)
