"""gamews.endpoints' Listening (the "fire when listening" of the registry, the
manhole and the metrics port) and gamews.reactor, on a MemoryReactor."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gamews.endpoints import Listening
from gamews.reactor import maybe_global_reactor


class RefusingReactor(MemoryReactor):
    """A MemoryReactor on which every port is already taken."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError("in use"))


class ListeningTests(SynchronousTestCase):
    """One listen, its callbacks and its waiters."""

    def setUp(self) -> None:
        self.seen: list[object] = []
        self.factory = Factory.forProtocol(Protocol)

    def listening(self, reactor: Any) -> Listening:
        return Listening(reactor, "tcp:8080:interface=127.0.0.1", self.factory,
                         on_listening=self.seen.append, on_failed=self.seen.append)

    def test_waiters_before_and_after(self) -> None:
        """Waiters from before and after the listen get the address; on_listening ran first."""
        reactor = MemoryReactor()
        listening = self.listening(reactor)
        early = listening.when_listening()
        self.assertNoResult(early)
        listening.start()
        self.assertEqual(self.successResultOf(early).port, 8080)  # type: ignore[attr-defined]
        self.assertEqual(self.successResultOf(listening.when_listening()).port,  # type: ignore[attr-defined]
                         8080)
        self.assertEqual(len(self.seen), 1)
        self.assertTrue(IListeningPort.providedBy(self.seen[0]))
        self.assertEqual(reactor.tcpServers[0][:2], (8080, self.factory))

    def test_failure_reaches_every_waiter(self) -> None:
        """A port that cannot listen: on_failed, then every waiter fails with it."""
        listening = self.listening(RefusingReactor())
        early = listening.when_listening()
        listening.start()
        self.failureResultOf(early, CannotListenError)
        self.failureResultOf(listening.when_listening(), CannotListenError)
        [failure] = self.seen
        assert isinstance(failure, Failure)
        self.assertIsInstance(failure.value, CannotListenError)

    def test_stop_before_listening(self) -> None:
        """Stopped while waiting to listen: the port is closed as soon as it
        listens and waiters fail with CancelledError."""
        reactor = MemoryReactor()
        listening = self.listening(reactor)
        after: Deferred[None] = Deferred()
        listening.start(after)
        waiter = listening.when_listening()
        self.successResultOf(listening.stop())
        after.callback(None)
        self.failureResultOf(waiter, CancelledError)
        self.assertEqual(self.seen, [])
        self.assertIsNone(listening.port)

    def test_stop_then_start_again(self) -> None:
        """A stopped listen can start again (a service restarted)."""
        reactor = MemoryReactor()
        listening = self.listening(reactor)
        listening.start()
        self.successResultOf(listening.stop())
        self.assertIsNone(listening.port)
        listening.start()
        self.successResultOf(listening.when_listening())
        self.assertEqual(len(reactor.tcpServers), 2)


class MaybeGlobalReactorTests(SynchronousTestCase):
    """maybe_global_reactor: the one given, else Twisted's global reactor."""

    def test_given_or_global(self) -> None:
        """A given reactor is kept; None means the global one."""
        from twisted.internet import reactor

        mine = MemoryReactor()
        self.assertIs(maybe_global_reactor(mine), mine)
        self.assertIs(maybe_global_reactor(None), reactor)
