"""One gamews instance for ``python -m bench.fanout``: the real ``GamewsService`` with a
fan-out role (or none) and one benchmark plugin.

On an origin (or a single instance) the plugin publishes one event a tick at 64 Hz to the
event bus, as a log source would; on every instance it broadcasts each event of the bus to
its spectators on ``/broadcast`` as ``"SEQ SENDTIME xxx…"`` (the event's ``seq`` and the
time the origin published it), the message ``bench/ws/loadgen.c`` measures. So on an edge
the latency includes the trip through Redis.
"""

from __future__ import annotations

import argparse
import os

from twisted.internet import epollreactor

epollreactor.install()  # type: ignore[no-untyped-call]

from twisted.application.service import IService, Service  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.interfaces import IAddress  # noqa: E402
from twisted.internet.task import LoopingCall  # noqa: E402
from zope.interface import implementer  # noqa: E402

from bench.ws.common import BROADCAST_HZ, BROADCAST_PATH, BROADCAST_SIZE, raise_nofile, ready  # noqa: E402
from gamews.api import IConnection, IGamewsPlugin, IListener, IPluginContext  # noqa: E402
from gamews.config import GamewsConfig, WebSocketLimits  # noqa: E402
from gamews.events import Envelope, Unknown  # noqa: E402
from gamews.fanout.config import FanoutConfig  # noqa: E402
from gamews.secret import Secret  # noqa: E402
from gamews.service import GamewsService  # noqa: E402
from gamews.settings import PluginSettings, Settings  # noqa: E402

SERVER = "bench"


def hook_spectator(child: IConnection) -> None:
    child.hook()


class FanoutBench(Service):
    def __init__(self, context: IPluginContext, publish: bool) -> None:
        self.context = context
        self.publish = publish
        self.spectators: IListener | None = None
        self.ticker = LoopingCall(self.tick)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.spectators = self.context.open(BROADCAST_PATH, incoming=hook_spectator)
        self.spectators.when_listening().addCallback(self.announce)
        self.context.events.subscribe(self.event, queue_size=100_000, name="bench")
        if self.publish:
            self.ticker.start(1 / BROADCAST_HZ, now=False)

    @staticmethod
    def announce(address: IAddress) -> None:
        ready(getattr(address, "port", 0))

    def tick(self) -> None:
        self.context.events.publish(SERVER, Unknown(raw="tick"))

    def event(self, envelope: Envelope) -> None:
        assert self.spectators is not None
        head = f"{envelope.seq} {envelope.received:.6f} "
        self.spectators.broadcast(head + "x" * (BROADCAST_SIZE - len(head)))


@implementer(IGamewsPlugin)
class FanoutBenchPlugin:
    name = "bench"
    description = "Fan-out benchmark: 64 Hz events, broadcast to /broadcast"
    settings_type = None

    def __init__(self, publish: bool) -> None:
        self.publish = publish

    def make_service(self, context: IPluginContext) -> IService:
        return FanoutBench(context, self.publish)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--role", choices=["single", "origin", "edge"], required=True)
    parser.add_argument("--redis", default=None, help="Redis client endpoint")
    parser.add_argument("--name", default="bench")
    args = parser.parse_args()
    raise_nofile()
    config = GamewsConfig(
        listen=(f"tcp:{args.port}:interface=127.0.0.1",), plugins=(), demo=False,
        websocket=WebSocketLimits(max_connections=20000, max_connections_per_ip=20000,
                                  ping_interval=0))
    fanout = None
    if args.role != "single":
        key = os.environ["GAMEWS_BENCH_FANOUT_KEY"]  # set by bench.fanout.run
        fanout = FanoutConfig(args.role, args.redis, (Secret(key),), name=args.name,
                              servers=(SERVER,) if args.role == "edge" else ())
    plugin = PluginSettings.of(FanoutBenchPlugin(args.role != "edge"))
    service = GamewsService(Settings(config, (plugin,), fanout=fanout), reactor=reactor)
    service.events.add_server(SERVER)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
