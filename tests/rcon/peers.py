"""Real peers for integration tests: an ``rconx`` Source RCON server in a thread, and polling.

The rconx server is ``AsyncRconServer`` on its own asyncio loop in a daemon thread, bound to
127.0.0.1.  (asyncio listeners set SO_REUSEADDR, so a peer can come back on the same port
right after going away; rconx's blocking ``RconServer`` does not.)
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

__all__ = ["RconxPeer", "free_tcp_port", "poll_until"]


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def poll_until(reactor: Any, predicate: Callable[[], bool], timeout: float = 10.0,
               interval: float = 0.02) -> Deferred[None]:
    """Fire once ``predicate()`` is true; fail with ``TimeoutError`` after ``timeout`` s."""

    async def wait() -> None:
        deadline = reactor.seconds() + timeout
        while not predicate():
            if reactor.seconds() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await deferLater(reactor, interval)

    return Deferred.fromCoroutine(wait())


class RconxPeer:
    """An ``rconx.AsyncRconServer`` on 127.0.0.1:``port`` with a fixed password."""

    def __init__(self, password: str, handler: Callable[[str], str], port: int | None = None,
                 ) -> None:
        """Describe the peer; ``handler(command) -> reply`` runs in the peer's thread."""
        self.password = password.encode()
        self.handler = handler
        self.port = port or free_tcp_port()
        self.auth_attempts = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; return once listening (bounded wait)."""
        from rconx import AsyncRconServer

        async def authenticate(content: Any, info: Any) -> bool:
            self.auth_attempts += 1
            return hmac.compare_digest(content.content, self.password)

        async def command(content: Any, info: Any) -> str:
            return self.handler(content.text)

        loop = asyncio.new_event_loop()
        started = threading.Event()
        server = AsyncRconServer("127.0.0.1", self.port, authentication=authenticate,
                                 command_handler=command)

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.serve(on_started=started.set))
            finally:
                loop.close()

        self._loop, self._server = loop, server
        self._thread = threading.Thread(target=run, name=f"rconx-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise RuntimeError(f"rconx server did not start on 127.0.0.1:{self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down (abort every connection) and wait for the thread (bounded)."""
        loop, server, thread = self._loop, self._server, self._thread
        self._loop = self._server = self._thread = None
        if loop is None or thread is None:
            return
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(timeout)
        thread.join(timeout)
