"""python-websockets (asyncio API): echo on /echo, 64 Hz broadcast on /broadcast."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

from .common import BROADCAST_PATH, broadcast_forever, parse_port, payload, raise_nofile, ready

spectators: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    if ws.request is not None and ws.request.path == BROADCAST_PATH:
        spectators.add(ws)
        try:
            await ws.wait_closed()
        finally:
            spectators.discard(ws)
        return
    async for message in ws:
        await ws.send(message)


def send_all(seq: int) -> None:
    broadcast(spectators, payload(seq))


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, ping_interval=None, compression=None,
                     max_size=2**20):
        ready(port)
        await broadcast_forever(send_all, lambda: bool(spectators))


if __name__ == "__main__":
    raise_nofile()
    asyncio.run(main(parse_port(__doc__ or "")))
