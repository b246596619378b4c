"""Channels (topics) over real loopback sockets: membership, one framing per
message, and the slow-subscriber policy of EVENTS and STATE channels."""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from zope.interface.verify import verifyObject

from gamews.api import ChannelKind, IChannel, IConnection, ReadyState
from gamews.config import WebSocketLimits
from tests.support import Client, connect, poll_until
from tests.test_websocket import ContractTestBase, MiB

CHUNK = 64 * 1024


def numbered(n: int) -> bytes:
    """A 64 KiB binary message carrying ``n`` in its first four bytes."""
    return struct.pack("!I", n) + b"x" * (CHUNK - 4)


def number_of(message: str | bytes) -> int:
    assert isinstance(message, bytes)
    return int(struct.unpack("!I", message[:4])[0])


class ChannelTests(ContractTestBase):
    """A plugin sends to "everyone watching X" in one call."""

    limits = WebSocketLimits(ping_interval=0, max_message_size=MiB, max_frame_size=MiB,
                             max_send_buffer=MiB)

    async def clients(self, n: int) -> list[Client]:
        clients = [await connect(self.port, "/ws") for _ in range(n)]
        await poll_until(lambda: len(self.named("plugin:open")) == n)
        return clients

    async def close_all(self, clients: list[Client]) -> None:
        for client in clients:
            if client.state == client.STATE_OPEN:
                client.sendClose()
            await client.closed

    def test_membership(self) -> Deferred[None]:
        """Only subscribers get a channel's messages; unhooked or gone children leave it."""
        channel = self.listener.channel("server:alpha")
        verifyObject(IChannel, channel)
        self.assertIs(self.listener.channel("server:alpha"), channel)
        with self.assertRaises(ValueError):
            self.listener.channel("server:alpha", ChannelKind.STATE)

        async def run() -> None:
            a, b, c = await self.clients(3)
            first, second, third = self.children
            channel.subscribe(first)
            channel.subscribe(second)
            self.assertEqual(channel.publish("kill"), 2)
            await a.wait_messages(1)
            await b.wait_messages(1)
            self.assertEqual((a.messages, b.messages), (["kill"], ["kill"]))
            second.unhook()  # closes it (nobody else holds it) and leaves the channel
            channel.subscribe(third)
            channel.unsubscribe(third)
            await poll_until(lambda: channel.subscribers() == [first])
            self.assertEqual(channel.publish(b"\x00\xff"), 1)
            await a.wait_messages(2)
            self.assertEqual(a.messages[1], b"\x00\xff")
            a.drop()
            await poll_until(lambda: channel.subscribers() == [])
            self.assertEqual(c.messages, [])
            await self.close_all([b, c])

        return ensureDeferred(run())

    def test_subscribe_needs_a_hook(self) -> Deferred[None]:
        """A child this plugin has not hooked cannot be subscribed."""
        other = self.open("other", incoming=lambda child: None)

        async def run() -> None:
            [client] = await self.clients(1)
            view = next(c for c in self.children if not c.hooked)
            with self.assertRaises(ValueError):
                other.channel("x").subscribe(view)
            await self.close_all([client])
            await other.close()

        return ensureDeferred(run())

    def test_framed_once(self) -> Deferred[None]:
        """A message for many subscribers is framed once, whatever their number."""
        factory: Any = self.listener._route.factory  # type: ignore[attr-defined]
        prepared: list[bytes] = []
        original = factory.prepareMessage

        def counting(payload: bytes, is_binary: bool = False) -> Any:
            prepared.append(payload)
            return original(payload, is_binary)

        self.patch(factory, "prepareMessage", counting)
        channel = self.listener.channel("everyone")

        async def run() -> None:
            clients = await self.clients(20)
            for child in self.children:
                channel.subscribe(child)
            self.assertEqual(channel.publish("tick"), 20)
            for client in clients:
                await client.wait_messages(1)
            self.assertEqual(prepared, [b"tick"])
            stats = self.registry.stats.path("/ws")  # what the metrics report
            self.assertEqual((stats.messages_out, stats.bytes_out), (20, 80))
            await self.close_all(clients)

        return ensureDeferred(run())

    def test_events_channel_closes_a_slow_subscriber_1008(self) -> Deferred[None]:
        """EVENTS: a subscriber that stops reading is closed with 1008 once
        ``max_send_buffer`` is waiting; a subscriber that reads gets every message."""
        channel = self.listener.channel("events")

        async def run() -> None:
            slow, fast = await self.clients(2)
            for child in self.children:
                channel.subscribe(child)
            slow.pause_reading()
            published = 0
            while channel.publish(numbered(published)) == 2:
                published += 1
                self.assertLess(published, 1024, "the slow subscriber was never closed")
                await fast.wait_messages(published)  # the fast one keeps up
            self.assertEqual(self.children[0].ready_state, ReadyState.CLOSING)
            slow.resume_reading()
            _, code, reason = await slow.closed
            self.assertEqual((code, reason), (1008, "reading too slowly"))
            await fast.wait_messages(published + 1)
            self.assertEqual([number_of(m) for m in fast.messages], list(range(published + 1)))
            await self.close_all([fast])

        return ensureDeferred(run())

    def test_state_channel_coalesces_a_slow_subscriber(self) -> Deferred[None]:
        """STATE: a subscriber that stops reading skips messages (the server holds
        a bounded amount for it, and does not close it) and, once it reads again,
        gets the latest message; a subscriber that reads gets every message.
        (How much is held for it: ``tests.test_child``, on a fake wire.)"""
        channel = self.listener.channel("state", ChannelKind.STATE)
        total = 200  # 12.5 MiB, far past max_send_buffer

        async def run() -> None:
            slow, fast = await self.clients(2)
            slow_child = self.children[0]
            for child in self.children:
                channel.subscribe(child)
            slow.pause_reading()
            for n in range(total):
                channel.publish(numbered(n))
                await fast.wait_messages(n + 1)
            self.assertEqual(slow_child.ready_state, ReadyState.OPEN)
            slow.resume_reading()
            await poll_until(lambda: bool(slow.messages) and number_of(slow.messages[-1])
                             == total - 1)
            numbers = [number_of(m) for m in slow.messages]
            self.assertLess(len(numbers), total / 2)
            # what the metrics report: every message not sent to it
            self.assertEqual(self.registry.stats.path("/ws").skipped,
                             total - len(numbers) + 1)
            self.assertEqual(numbers, sorted(numbers))
            self.assertEqual([number_of(m) for m in fast.messages], list(range(total)))
            await self.close_all([slow, fast])

        return ensureDeferred(run())

    def test_state_channel_catch_up_callback(self) -> Deferred[None]:
        """STATE with ``catch_up``: the plugin is called once the slow subscriber
        drains, and sends what it likes (here a snapshot)."""
        caught: list[IConnection] = []

        def catch_up(child: IConnection) -> None:
            caught.append(child)
            child.send_text("snapshot")

        channel = self.listener.channel("live", ChannelKind.STATE, catch_up=catch_up)

        async def run() -> None:
            [slow] = await self.clients(1)
            child = self.children[0]
            channel.subscribe(child)
            slow.pause_reading()
            n = 0
            while not child._child.behind:  # type: ignore[attr-defined]
                channel.publish(numbered(n))
                n += 1
                self.assertLess(n, 1024, "the subscriber never fell behind")
            slow.resume_reading()
            await poll_until(lambda: "snapshot" in slow.messages)
            self.assertEqual(caught, [child])
            self.assertEqual(slow.messages[-1], "snapshot")
            await self.close_all([slow])

        return ensureDeferred(run())
