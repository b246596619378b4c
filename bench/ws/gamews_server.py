"""gamews itself, built in-process as ``twistd gamews`` would build it (shared-port Site,
plugin layer, per-IP caps), with the benchmark plugin of ``bench/ws/plugin.py``."""

from __future__ import annotations

from twisted.internet import epollreactor

epollreactor.install()  # type: ignore[no-untyped-call]

from twisted.internet import reactor  # noqa: E402

from gamews.config import GamewsConfig, WebSocketLimits  # noqa: E402
from gamews.service import GamewsService  # noqa: E402
from gamews.settings import PluginSettings, Settings  # noqa: E402

from .common import parse_port, raise_nofile  # noqa: E402
from .plugin import BenchPlugin  # noqa: E402


def main(port: int) -> None:
    config = GamewsConfig(
        listen=(f"tcp:{port}:interface=127.0.0.1",), plugins=(), demo=False,
        websocket=WebSocketLimits(max_connections=20000, max_connections_per_ip=20000,
                                  max_pending_per_ip=20000, ping_interval=0),
    )
    service = GamewsService(Settings(config, (PluginSettings.of(BenchPlugin()),)))
    service.startService()
    reactor.run()


if __name__ == "__main__":
    raise_nofile()
    main(parse_port(__doc__ or ""))
