"""What every benchmark server shares: the broadcast payload, the fd limit, the ready line."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

BROADCAST_HZ = 64
BROADCAST_SIZE = 200
ECHO_PATH = "/echo"
BROADCAST_PATH = "/broadcast"


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
    """Tell the runner the server listens (it waits for this line)."""
    sys.stdout.write(f"READY {os.getpid()} {port}\n")
    sys.stdout.flush()
