"""gamews itself, built in-process as ``twistd gamews`` would build it (shared-port Site,
plugin layer, per-IP caps), with one benchmark plugin: echo on /echo (``child.hook`` and
``send_text``/``send_binary``) and a 64 Hz ``channel.publish`` to every spectator on
/broadcast (an EVENTS channel: every message counts)."""

from __future__ import annotations

from twisted.internet import epollreactor

epollreactor.install()  # type: ignore[no-untyped-call]

from twisted.application.service import IService, Service  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.interfaces import IAddress  # noqa: E402
from twisted.internet.task import LoopingCall  # noqa: E402
from twisted.plugin import IPlugin  # noqa: E402
from zope.interface import implementer  # noqa: E402

from gamews.api import IChannel, IConnection, IGamewsPlugin, IPluginContext  # noqa: E402
from gamews.config import GamewsConfig, WebSocketLimits  # noqa: E402
from gamews.service import GamewsService  # noqa: E402

from .common import (  # noqa: E402
    BROADCAST_HZ,
    BROADCAST_PATH,
    ECHO_PATH,
    parse_port,
    payload,
    raise_nofile,
    ready,
)


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

    def make_service(self, context: IPluginContext) -> IService:
        return BenchService(context)


def main(port: int) -> None:
    config = GamewsConfig(
        listen=(f"tcp:{port}:interface=127.0.0.1",), plugins=(), demo=False,
        websocket=WebSocketLimits(max_connections=20000, max_connections_per_ip=20000,
                                  ping_interval=0),
    )
    service = GamewsService(config, [BenchPlugin()])
    service.startService()
    reactor.run()


if __name__ == "__main__":
    raise_nofile()
    main(parse_port(__doc__ or ""))
