"""Plain Autobahn on Twisted (epoll reactor, no gamews): echo on /echo, 64 Hz broadcast
on /broadcast framed once with ``prepareMessage`` / ``sendPreparedMessage``."""

from __future__ import annotations

from twisted.internet import epollreactor

epollreactor.install()  # type: ignore[no-untyped-call]

from typing import Any  # noqa: E402

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import reactor  # noqa: E402
from twisted.internet.task import LoopingCall  # noqa: E402

from .common import (  # noqa: E402
    BROADCAST_HZ,
    BROADCAST_PATH,
    parse_port,
    payload,
    raise_nofile,
    ready,
)


class Server(WebSocketServerProtocol):
    factory: Factory
    spectator = False

    def onConnect(self, request: Any) -> None:
        self.spectator = request.path == BROADCAST_PATH

    def onOpen(self) -> None:
        if self.spectator:
            self.factory.spectators.add(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not self.spectator:
            self.sendMessage(payload, isBinary)  # type: ignore[no-untyped-call]

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.spectators.discard(self)


class Factory(WebSocketServerFactory):
    protocol = Server  # type: ignore[assignment]

    def __init__(self, url: str) -> None:
        super().__init__(url)  # type: ignore[no-untyped-call]
        self.spectators: set[Server] = set()
        self.seq = 0

    def tick(self) -> None:
        if self.spectators:
            self.seq += 1
            prepared = self.prepareMessage(payload(self.seq).encode(), False)
            for proto in self.spectators:
                proto.sendPreparedMessage(prepared)


def main(port: int) -> None:
    factory = Factory(f"ws://127.0.0.1:{port}")
    factory.setProtocolOptions(autoPingInterval=0)  # type: ignore[no-untyped-call]
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    LoopingCall(factory.tick).start(1 / BROADCAST_HZ, now=False)
    ready(port)
    reactor.run()


if __name__ == "__main__":
    raise_nofile()
    main(parse_port(__doc__ or ""))
