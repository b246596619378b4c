"""picows: echo on /echo, 64 Hz broadcast on /broadcast."""

from __future__ import annotations

import asyncio

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from .common import BROADCAST_PATH, broadcast_forever, parse_port, payload, raise_nofile, ready

spectators: set[WSTransport] = set()


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_bytes())


class Spectator(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        spectators.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        spectators.discard(transport)


def listener_for(request: WSUpgradeRequest) -> WSListener:
    return Spectator() if request.path == BROADCAST_PATH.encode() else Echo()


def send_all(seq: int) -> None:
    message = payload(seq).encode()
    for transport in spectators:
        transport.send(WSMsgType.TEXT, message)


async def main(port: int) -> None:
    server = await ws_create_server(listener_for, "127.0.0.1", port)
    async with server:
        ready(port)
        await broadcast_forever(send_all, lambda: bool(spectators))


if __name__ == "__main__":
    raise_nofile()
    asyncio.run(main(parse_port(__doc__ or "")))
