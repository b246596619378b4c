"""picows: echo on /echo, 64 Hz broadcast on /broadcast."""

from __future__ import annotations

import asyncio
import time

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from .common import BROADCAST_HZ, BROADCAST_PATH, parse_port, payload, raise_nofile, ready

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


async def ticker() -> None:
    seq = 0
    period = 1 / BROADCAST_HZ
    start = time.monotonic()
    slot = 0
    while True:
        # the 64 Hz grid of Twisted's LoopingCall: a late tick skips to the next slot
        slot += 1
        now = time.monotonic()
        if now > start + slot * period:
            slot = int((now - start) / period) + 1
        await asyncio.sleep(start + slot * period - now)
        if spectators:
            seq += 1
            message = payload(seq).encode()
            for transport in spectators:
                transport.send(WSMsgType.TEXT, message)


async def main(port: int) -> None:
    server = await ws_create_server(listener_for, "127.0.0.1", port)
    async with server:
        ready(port)
        await ticker()


if __name__ == "__main__":
    raise_nofile()
    asyncio.run(main(parse_port(__doc__ or "")))
