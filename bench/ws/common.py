"""What every benchmark server shares: the broadcast payload, the fd limit, the ready line."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from collections.abc import Awaitable, Callable

BROADCAST_HZ = 64
BROADCAST_SIZE = 200
ECHO_PATH = "/echo"
BROADCAST_PATH = "/broadcast"


async def broadcast_forever(send: Callable[[int], Awaitable[None] | None],
                            active: Callable[[], bool]) -> None:
    """Call ``send(seq)`` at ``BROADCAST_HZ`` while ``active()``, on the grid Twisted's
    ``LoopingCall`` keeps (a late tick skips to the next slot), for the asyncio peers."""
    seq = 0
    period = 1 / BROADCAST_HZ
    start = time.monotonic()
    slot = 0
    while True:
        slot += 1
        now = time.monotonic()
        if now > start + slot * period:
            slot = int((now - start) / period) + 1
        await asyncio.sleep(start + slot * period - now)
        if active():
            seq += 1
            sent = send(seq)
            if sent is not None:
                await sent


def payload(seq: int) -> str:
    """A 200-byte game-state message: sequence number and send time (``time.time()``)."""
    head = f"{seq} {time.time():.6f} "
    return head + "x" * (BROADCAST_SIZE - len(head))


def raise_nofile() -> tuple[int, int]:
    """Raise the soft fd limit to the hard one; return (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def parse_port(description: str) -> int:
    """The ``--port`` argument every server takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    port: int = parser.parse_args().port
    return port


def ready(port: int) -> None:
    """Tell the runner the server listens (it waits for this line). Written to file
    descriptor 1 itself: under ``twistd`` ``sys.stdout`` is redirected to the log."""
    os.write(1, f"READY {os.getpid()} {port}\n".encode())
