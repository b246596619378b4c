"""aiohttp: echo on /echo, 64 Hz broadcast on /broadcast."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from .common import (
    BROADCAST_PATH,
    ECHO_PATH,
    broadcast_forever,
    parse_port,
    payload,
    raise_nofile,
    ready,
)

spectators: set[web.WebSocketResponse] = set()


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(autoping=True, heartbeat=None, compress=False)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def watch(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=None, compress=False)
    await ws.prepare(request)
    spectators.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        spectators.discard(ws)
    return ws


async def send_all(seq: int) -> None:
    message = payload(seq)
    for ws in list(spectators):
        if not ws.closed:
            await ws.send_str(message)


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get(ECHO_PATH, echo)
    app.router.add_get(BROADCAST_PATH, watch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    ready(port)
    await broadcast_forever(send_all, lambda: bool(spectators))


if __name__ == "__main__":
    raise_nofile()
    asyncio.run(main(parse_port(__doc__ or "")))
