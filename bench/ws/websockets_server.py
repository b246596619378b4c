"""python-websockets (asyncio API): echo on /echo, 64 Hz broadcast on /broadcast."""

from __future__ import annotations

import asyncio
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve

from .common import BROADCAST_HZ, BROADCAST_PATH, parse_port, payload, raise_nofile, ready

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
            broadcast(spectators, payload(seq))


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, ping_interval=None, compression=None,
                     max_size=2**20):
        ready(port)
        await ticker()


if __name__ == "__main__":
    raise_nofile()
    asyncio.run(main(parse_port(__doc__ or "")))
