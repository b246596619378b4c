"""A browser that floods a chat socket: ``python -m tests.fanout.flood PORT SECONDS``.

Run as its own process (so the test's reactor, which measures the other spectators,
is not the one busy sending). It opens ``ws://127.0.0.1:PORT/chat/ws``, then sends
``say`` frames as fast as the socket takes them, reading and discarding whatever the
server answers; when the server drops it, it connects again, until SECONDS have passed.
It prints how many connections it made and how many frames it sent.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import sys
import threading
import time


def frame(payload: bytes) -> bytes:
    """One masked text frame (clients must mask)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked


def flood(port: int, end: float) -> int:
    """One connection flooding until it is dropped or ``end``; the frames it sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /chat/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    if b" 101 " not in answer.split(b"\r\n", 1)[0]:
        sock.close()
        return 0

    def drain() -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    message = frame(b'{"type":"say","name":"flood","text":"spam spam spam"}') * 64
    sent = 0
    try:
        while time.monotonic() < end:
            sock.sendall(message)
            sent += 64
    except OSError:
        pass
    sock.close()
    return sent


def main(port: int, seconds: float) -> int:
    end = time.monotonic() + seconds
    connections = sent = 0
    while time.monotonic() < end:
        connections += 1
        sent += flood(port, end)
    print(f"{connections} connections, sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]), float(sys.argv[2])))
