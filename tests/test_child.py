"""The child model's sending rules on a fake wire and a Clock: no Autobahn, no socket.

The fake wire stands for a socket that holds ``capacity`` bytes and drains
``rate`` bytes a second as the clock moves: past ``capacity`` it pauses (as
Twisted pauses a transport's producer), and it resumes once half empty.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from gamews.api import ChannelKind, IConnection, ReadyState
from gamews.config import WebSocketLimits
from gamews.stats import PathStats
from gamews.websocket import Channel, Child, ConnectionHandle, ListenerLike, UnfinishedBudget, Wire
from gamews.websocket._child import PUBLISH_BACKLOG, PUBLISH_SLICE

TICK = 0.1


class FakeWire:
    """A :class:`Wire` over a socket of ``capacity`` bytes draining ``rate`` bytes/s."""

    def __init__(self, clock: Clock, capacity: int, rate: float) -> None:
        self.state = ReadyState.OPEN
        self.capacity = capacity
        self.rate = rate
        self.sent: list[bytes] = []
        self.in_socket = 0.0
        self.most = 0.0
        self.closed_with: tuple[int, bytes | None] | None = None
        self.dropped = False
        self.child: Child | None = None
        self._paused = False
        self._drain = LoopingCall(self._tick)
        self._drain.clock = clock
        self._drain.start(TICK, now=False)

    @property
    def ready_state(self) -> ReadyState:
        return self.state

    @property
    def paused(self) -> bool:
        return self._paused

    def _take(self, payload: bytes) -> None:
        self.sent.append(payload)
        self.in_socket += len(payload)
        self.most = max(self.most, self.in_socket)
        if self.in_socket > self.capacity and not self._paused:
            self._paused = True
            assert self.child is not None
            self.child.buffer_full()

    def send(self, payload: bytes, is_binary: bool) -> None:
        self._take(payload)

    def send_prepared(self, prepared: Any) -> None:
        assert isinstance(prepared, bytes)
        self._take(prepared)

    def send_now(self, prepared: Any) -> bool:
        if self.state is not ReadyState.OPEN or self._paused:
            return False
        self.send_prepared(prepared)
        return True

    def close(self, code: int, reason: bytes | None) -> None:
        self.state = ReadyState.CLOSING
        self.closed_with = (code, reason)

    def drop(self) -> None:
        self.dropped = True

    def _tick(self) -> None:
        self.in_socket = max(0.0, self.in_socket - self.rate * TICK)
        if self._paused and self.in_socket <= self.capacity / 2:
            self._paused = False
            assert self.child is not None
            self.child.drained()

    def stop(self) -> None:
        self._drain.stop()


class FakeListener:
    owner = "p"
    active = True

    def offer(self, child: IConnection) -> Deferred[None] | None:
        return None


class FakeRoute:
    def __init__(self, limits: WebSocketLimits) -> None:
        self.limits = limits
        self.stats = PathStats()
        self.budget = UnfinishedBudget(limits.max_unfinished_bytes)

    def listeners(self) -> list[ListenerLike]:
        return []

    def admit(self, child: Child) -> tuple[int, str] | None:
        return None

    def release(self, child: Child) -> None:
        pass


def frame(payload: bytes, is_binary: bool) -> bytes:
    """The fake ``prepareMessage``: the payload stands for its frame."""
    return payload


class SendingRuleTests(SynchronousTestCase):
    """Slow readers: closed with 1008 on EVENTS and direct sends, caught up on STATE."""

    # a child may have max(max_send_buffer, 2 * max_message_size) = 1,000 bytes waiting
    limits = WebSocketLimits(max_send_buffer=1000, max_message_size=100, max_frame_size=100)

    def setUp(self) -> None:
        self.clock = Clock()
        self.route = FakeRoute(self.limits)
        self.listener = FakeListener()
        self.wires: list[FakeWire] = []

    def child(self, capacity: int = 500, rate: float = 0) -> tuple[ConnectionHandle, FakeWire]:
        wire = FakeWire(self.clock, capacity, rate)
        self.addCleanup(wire.stop)
        as_wire: Wire = wire  # FakeWire is a Wire
        child = Child(as_wire, self.route)
        wire.child = child
        handle = child.handle_for(self.listener)
        handle.hook(on_message=lambda c, d: None)
        return handle, wire

    def channel(self, kind: ChannelKind, catch_up: Any = None) -> Channel:
        return Channel(self.listener, "c", kind, catch_up, frame,
                       self.limits.max_message_size, self.route.stats, self.clock)

    def test_events_closes_a_slow_reader_past_the_limit(self) -> None:
        """EVENTS: once paused, a subscriber may have 1,000 bytes sent; the next
        message closes it with 1008, while a reader that keeps up gets everything."""
        channel = self.channel(ChannelKind.EVENTS)
        slow, slow_wire = self.child(capacity=500)
        fast, fast_wire = self.child(capacity=10**6)
        channel.subscribe(slow)
        channel.subscribe(fast)
        counts = [channel.publish(b"x" * 100) for _ in range(20)]
        # 6 fill the socket past 500 bytes (paused), 10 more are 1,000 waiting, the 17th closes
        self.assertEqual(counts, [2] * 16 + [1] * 4)
        self.assertEqual(slow_wire.closed_with, (1008, b"reading too slowly"))
        self.assertEqual(len(slow_wire.sent), 16)
        self.assertEqual(len(fast_wire.sent), 20)
        self.assertEqual(self.route.stats.slow_consumers, 1)
        self.assertEqual(self.route.stats.messages_out, 36)

    def test_direct_send_and_broadcast_count_against_the_same_limit(self) -> None:
        """send_text follows the same rule: a paused child past the limit is closed."""
        handle, wire = self.child(capacity=500)
        results = [handle.send_text("y" * 100) for _ in range(20)]
        self.assertEqual(results, [True] * 16 + [False] * 4)
        self.assertEqual(wire.closed_with, (1008, b"reading too slowly"))

    def test_a_reader_that_drains_is_never_closed(self) -> None:
        """The count starts afresh each time the wire pauses: a reader that
        drains 1,000 bytes/s is never closed by 800 bytes/s of events."""
        channel = self.channel(ChannelKind.EVENTS)
        handle, wire = self.child(capacity=300, rate=1000)
        channel.subscribe(handle)
        for _ in range(200):
            self.assertEqual(channel.publish(b"z" * 80), 1)
            self.clock.advance(TICK)
        self.assertIsNone(wire.closed_with)
        self.assertEqual(len(wire.sent), 200)

    def test_state_skips_then_catches_up_with_the_last_message(self) -> None:
        """STATE: a paused subscriber is never closed and gets nothing more (at
        most one message past the pause is held for it); when the wire drains it
        gets the last message published."""
        channel = self.channel(ChannelKind.STATE)
        handle, wire = self.child(capacity=250, rate=1000)
        channel.subscribe(handle)
        for n in range(50):
            channel.publish(b"%03d" % n + b"s" * 97)
        self.assertIsNone(wire.closed_with)
        self.assertEqual(len(wire.sent), 3)  # 300 bytes: past 250, paused
        self.assertLessEqual(wire.most, wire.capacity + self.limits.max_message_size)
        self.assertEqual(self.route.stats.skipped, 47)
        self.assertEqual(handle.ready_state, ReadyState.OPEN)
        self.clock.pump([TICK] * 2)  # drained to 100 bytes: resumed
        self.assertEqual(wire.sent[-1][:3], b"049")
        self.assertEqual(len(wire.sent), 4)
        self.assertEqual(self.route.stats.messages_out, 4)
        channel.publish(b"050")
        self.assertEqual(wire.sent[-1], b"050")

    def test_state_catch_up_callback_runs_once_drained(self) -> None:
        """STATE with ``catch_up``: the plugin is called once when the subscriber
        drains, and what it sends goes out."""
        caught: list[IConnection] = []

        def catch_up(child: IConnection) -> None:
            caught.append(child)
            child.send_text("snapshot")

        channel = self.channel(ChannelKind.STATE, catch_up)
        handle, wire = self.child(capacity=150, rate=1000)
        channel.subscribe(handle)
        for _ in range(10):
            channel.publish(b"s" * 100)
        self.clock.advance(TICK)  # 100 bytes still in the socket: paused
        self.assertEqual(caught, [])
        self.clock.advance(TICK)
        self.assertEqual(caught, [handle])
        self.assertEqual(wire.sent[-1], b"snapshot")
        self.clock.pump([TICK] * 10)
        self.assertEqual(caught, [handle])

    def test_unsubscribed_child_is_not_caught_up(self) -> None:
        """A subscriber that leaves while behind is not caught up on that channel."""
        channel = self.channel(ChannelKind.STATE)
        handle, wire = self.child(capacity=150, rate=1000)
        channel.subscribe(handle)
        for _ in range(5):
            channel.publish(b"s" * 100)
        channel.unsubscribe(handle)
        sent = len(wire.sent)
        self.clock.pump([TICK] * 5)
        self.assertEqual(len(wire.sent), sent)

    def test_closing_child_is_skipped(self) -> None:
        """Only OPEN children are sent to; the count says how many were."""
        channel = self.channel(ChannelKind.EVENTS)
        a, _ = self.child()
        b, b_wire = self.child()
        channel.subscribe(a)
        channel.subscribe(b)
        b_wire.state = ReadyState.CLOSING
        self.assertEqual(channel.publish("hi"), 1)
        self.assertEqual(b_wire.sent, [])


class Socket:
    """A :class:`Wire` that always keeps up and records what it was sent."""

    ready_state = ReadyState.OPEN
    paused = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, payload: bytes, is_binary: bool) -> None:
        self.sent.append(payload)

    def send_prepared(self, prepared: Any) -> None:
        self.sent.append(prepared)

    def send_now(self, prepared: Any) -> bool:
        self.sent.append(prepared)
        return True

    def close(self, code: int, reason: bytes | None) -> None:
        self.ready_state = ReadyState.CLOSING

    def drop(self) -> None:
        pass


class BusyClock(Clock):
    """A clock on which every look takes ``step`` seconds: sending is slow."""

    step = PUBLISH_SLICE / 4

    def seconds(self) -> float:
        self.rightNow += self.step
        return self.rightNow


class SpreadTests(SynchronousTestCase):
    """A publish to many subscribers is spread over reactor turns: it never holds the
    reactor much past PUBLISH_SLICE, a later publish waits its turn, order is kept."""

    def setUp(self) -> None:
        self.clock = BusyClock()
        self.route = FakeRoute(WebSocketLimits())
        self.listener = FakeListener()
        self.sockets: list[Socket] = []

    def channel(self, kind: ChannelKind, subscribers: int = 1000) -> Channel:
        channel = Channel(self.listener, "c", kind, None, frame, 1000, self.route.stats,
                          self.clock)
        for _ in range(subscribers):
            socket = Socket()
            as_wire: Wire = socket
            handle = Child(as_wire, self.route).handle_for(self.listener)
            handle.hook()
            channel.subscribe(handle)
            self.sockets.append(socket)
        return channel

    def turns(self) -> int:
        """Run reactor turns until no call is pending; how many it took."""
        turns = 0
        while self.clock.getDelayedCalls():
            self.clock.advance(0)
            turns += 1
            self.assertLess(turns, 1000)
        return turns

    def test_publish_spread_over_turns(self) -> None:
        """1,000 subscribers: some get the message at once, the rest over the next
        turns, each exactly once; the publish counts as spread."""
        channel = self.channel(ChannelKind.EVENTS)
        self.assertEqual(channel.publish(b"one"), 1000)
        reached = sum(1 for s in self.sockets if s.sent)
        self.assertGreater(reached, 0)
        self.assertLess(reached, 1000)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # the rest, next turn
        self.turns()
        self.assertTrue(all(s.sent == [b"one"] for s in self.sockets))
        self.assertEqual(self.route.stats.publishes_spread, 1)
        self.assertEqual(self.route.stats.publishes_behind, 0)

    def test_later_publish_waits_its_turn(self) -> None:
        """EVENTS: publishes made while one is being sent go after it, in order,
        every message to every subscriber."""
        channel = self.channel(ChannelKind.EVENTS)
        for message in (b"1", b"2", b"3"):
            channel.publish(message)
        self.assertEqual(self.route.stats.publishes_behind, 2)
        self.turns()
        self.assertTrue(all(s.sent == [b"1", b"2", b"3"] for s in self.sockets))

    def test_state_keeps_only_the_latest_waiting(self) -> None:
        """STATE: a waiting state is replaced by a newer one; every subscriber ends on
        the latest, none gets the replaced one or anything twice."""
        channel = self.channel(ChannelKind.STATE)
        for message in (b"s1", b"s2", b"s3"):
            channel.publish(message)
        self.turns()
        for socket in self.sockets:
            self.assertIn(socket.sent, ([b"s1", b"s3"], [b"s3"]))
        self.assertTrue(any(s.sent == [b"s3"] for s in self.sockets))

    def test_backlog_past_the_cap_sent_at_once(self) -> None:
        """More waiting publishes than PUBLISH_BACKLOG: all are sent at once, in
        order, and nothing is left for later turns."""
        channel = self.channel(ChannelKind.EVENTS)
        messages = [str(i).encode() for i in range(PUBLISH_BACKLOG + 1)]
        for message in messages:
            channel.publish(message)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(all(s.sent == messages for s in self.sockets))

    def test_small_channel_in_one_go(self) -> None:
        """A few subscribers: sent at once, nothing scheduled, not counted as spread."""
        channel = self.channel(ChannelKind.EVENTS, subscribers=10)
        self.assertEqual(channel.publish(b"x"), 10)
        self.assertEqual([s.sent for s in self.sockets], [[b"x"]] * 10)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.route.stats.publishes_spread, 0)
