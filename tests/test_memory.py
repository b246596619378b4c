"""Issue #12, point 1: a connection that ends gives its memory back at once, and unfinished
fragmented messages share one process-wide budget. Real loopback sockets."""

from __future__ import annotations

import gc
import os
import socket
import struct
import tracemalloc
import weakref
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThread

from gamews.config import WebSocketLimits
from tests.support import poll_until
from tests.test_limits import answered, close_all, handshake, open_sockets, watch
from tests.test_websocket import ContractTestBase

MiB = 1024 * 1024


def unfinished_text(size: int) -> bytes:
    """A masked text frame of ``size`` bytes with FIN=0: a message that never ends."""
    header = struct.pack("!BBQ", 0x01, 0x80 | 127, size) + b"\0\0\0\0"  # mask of zeros
    return header + b"a" * size


def attack(port: int, sockets: int, size: int) -> list[bytes]:
    """``sockets`` clients each open a WebSocket, send ``size`` bytes of an unfinished
    message, then close; what each saw after its handshake."""
    clients = open_sockets(port, sockets)
    try:
        for s in clients:
            s.sendall(handshake())
        heads = watch(clients, 10, done=answered)
        for s in clients:
            s.setblocking(True)
            s.sendall(unfinished_text(size))
        return [o.data for o in heads]
    finally:
        close_all(clients)


def send_unfinished(port: int, size: int) -> socket.socket:
    """One client that stays, holding an unfinished ``size``-byte message on the server."""
    [s] = open_sockets(port, 1)
    s.sendall(handshake())
    watch([s], 10, done=answered)
    s.setblocking(True)
    s.sendall(unfinished_text(size))
    return s


class ReleasedOnCloseTests(ContractTestBase):
    """Fragment-then-close, repeated: memory comes back without a cyclic collection."""

    limits = WebSocketLimits(ping_interval=0, max_message_size=2 * MiB, max_frame_size=2 * MiB)
    timeout = 120

    def test_fragment_then_close_repeated(self) -> Deferred[None]:
        """7 rounds of 32 clients holding 1 MiB unfinished each and leaving: the traced
        memory of the process ends within 8 MiB of where it started (the partial
        messages, 224 MiB in all, are freed as each connection ends; no gc.collect())."""
        rounds, clients = int(os.environ.get("GAMEWS_MEMORY_ROUNDS", "7")), 32
        enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        self.addCleanup(lambda: gc.enable() if enabled else None)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)

        async def run() -> None:
            baseline, _ = tracemalloc.get_traced_memory()
            for _ in range(rounds):
                heads = await deferToThread(attack, self.port, clients, MiB)
                self.assertTrue(all(h.startswith(b"HTTP/1.1 101") for h in heads))
                await poll_until(lambda: not self.registry.children(), timeout=20)
                self.assertEqual(self.registry.unfinished.held, 0)
            current, peak = tracemalloc.get_traced_memory()
            self.assertGreater(peak - baseline, 16 * MiB, "the attack held memory meanwhile")
            self.assertLess(current - baseline, 8 * MiB,
                            f"{(current - baseline) / MiB:.1f} MiB still held")

        return ensureDeferred(run())


class FrozenStartTests(ContractTestBase):
    """``gc.freeze()`` at start (as :class:`~gamews.service.GamewsService` does) pins no
    per-connection state: what a closed connection leaves is collectable."""

    limits = WebSocketLimits(ping_interval=0)

    def test_connections_after_freeze_are_collectable(self) -> Deferred[None]:
        """Ten connections made after a freeze: once closed, a collection frees every one
        (their partial messages went at once, before it)."""
        gc.freeze()
        self.addCleanup(gc.unfreeze)

        async def run() -> None:
            refs: list[weakref.ref[Any]] = []
            for _ in range(10):
                s = await deferToThread(send_unfinished, self.port, 64 * 1024)
                await poll_until(lambda: len(self.registry.children()) == 1)
                [child] = self.registry.children()
                # the protocol (the child has slots and no weak references; it is only
                # reachable through the protocol and the registry)
                refs.append(weakref.ref(child.wire))
                del child
                s.close()
                await poll_until(lambda: not self.registry.children())
                self.assertEqual(self.registry.unfinished.held, 0)
            self.children.clear()  # the test's own records of them
            self.events.clear()
            gc.collect()
            self.assertEqual([r for r in refs if r() is not None], [])

        return ensureDeferred(run())


class UnfinishedBudgetTests(ContractTestBase):
    """Bytes of unfinished messages over all connections are capped."""

    limits = WebSocketLimits(ping_interval=0, max_message_size=2 * MiB, max_frame_size=2 * MiB,
                             max_unfinished_bytes=3 * MiB)

    def test_budget(self) -> Deferred[None]:
        """Three clients hold 1 MiB unfinished each; a fourth adding 1 MiB is closed with
        1008 and the three stay; once they leave the budget is whole again."""
        async def run() -> None:
            stayers = [await deferToThread(send_unfinished, self.port, MiB - 4096)
                       for _ in range(3)]
            self.addCleanup(close_all, stayers)
            await poll_until(lambda: self.registry.unfinished.held >= 3 * (MiB - 4096))
            late = await deferToThread(send_unfinished, self.port, MiB)
            self.addCleanup(late.close)
            [outcome] = await deferToThread(watch, [late], 10, lambda data: len(data) >= 4)
            self.assertEqual(outcome.data[0], 0x88, "a close frame")
            self.assertEqual(struct.unpack("!H", outcome.data[2:4])[0], 1008)
            late.close()
            await poll_until(lambda: len(self.registry.children()) == 3)
            self.assertEqual(self.registry.unfinished.held, 3 * (MiB - 4096))
            close_all(stayers)
            await poll_until(lambda: not self.registry.children())
            self.assertEqual(self.registry.unfinished.held, 0)

        return ensureDeferred(run())
