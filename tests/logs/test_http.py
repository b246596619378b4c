"""Tests for the CS2 HTTP log resource (``logaddress_add_http``)."""

from __future__ import annotations

from io import BytesIO
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from gamews.events import Chat, Envelope, EventBus, Kill, RoundStart
from gamews.logs.common import AllowedHosts
from gamews.logs.http import SourceHttpLogResource
from gamews.logs.service import HttpLogService, log_source_from_table
from gamews.secret import Secret

# A CS2 POST body: several lines, HTTP time stamps (milliseconds, " - " separator).
BODY = (
    b'11/28/2026 - 09:30:01.264 - World triggered "Round_Start"\n'
    b'11/28/2026 - 09:30:05.101 - "Ann<2><[U:1:24691357]><CT>" [100 200 10] killed '
    b'"Zed<5><[U:1:654321]><TERRORIST>" [150 250 12] with "ak47" (headshot)\n'
    b'11/28/2026 - 09:30:06.002 - "Zed<5><[U:1:654321]><TERRORIST>" say "n1 \xc3\xa9"\n'
)


def post(body: bytes = BODY, host: str = "203.0.113.5", postpath: list[bytes] | None = None,
         headers: dict[bytes, bytes] | None = None, method: bytes = b"POST") -> DummyRequest:
    """A request as the resource sees it after routing."""
    request = DummyRequest(postpath or [])
    request.method = method
    request.client = IPv4Address("TCP", host, 40000)
    request.content = BytesIO(body)  # type: ignore[attr-defined]
    for k, v in (headers or {}).items():
        request.requestHeaders.setRawHeaders(k, [v])
    return request


def render(resource: SourceHttpLogResource, request: DummyRequest) -> bytes:
    """Render a dummy request (it stands in for a twisted.web Request)."""
    return resource.render(cast(Request, request))


class ResourceTests(SynchronousTestCase):
    """Checks and hand-off, without sockets."""

    def resource(self, secret: str | None = None, max_body: int = 4096
                 ) -> tuple[SourceHttpLogResource, list[str]]:
        """A resource for 203.0.113.5 collecting lines."""
        lines: list[str] = []
        return SourceHttpLogResource(lines.append, allowed=AllowedHosts(["203.0.113.5"]),
                                     secret=Secret(secret) if secret else None,
                                     max_body=max_body), lines

    def test_lines_handed_on(self) -> None:
        """Each body line reaches the sink; the answer is 200."""
        res, lines = self.resource()
        req = post()
        self.assertEqual(render(res, req), b"")
        self.assertEqual(req.responseCode, 200)
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[2].endswith('say "n1 é"'))

    def test_other_address_refused(self) -> None:
        """A POST from another address gets 403 and is not read."""
        res, lines = self.resource()
        req = post(host="198.51.100.1")
        render(res, req)
        self.assertEqual((req.responseCode, lines, res.stats.dropped_address), (403, [], 1))

    def test_secret_in_path_or_header(self) -> None:
        """With a secret, it must be the path segment or a Bearer token, compared exactly."""
        res, lines = self.resource("tok3n")
        for req in (post(), post(postpath=[b"tok3x"]), post(postpath=[b"tok3n", b"x"]),
                    post(headers={b"authorization": b"Bearer nope"})):
            render(res, req)
            self.assertEqual(req.responseCode, 403)
        self.assertEqual((lines, res.stats.dropped_secret), ([], 4))
        render(res, post(postpath=[b"tok3n"]))
        render(res, post(headers={b"authorization": b"bearer tok3n"}))
        self.assertEqual(len(lines), 6)

    def test_secret_redacted_from_uri(self) -> None:
        """The path below the mount point is replaced before the access log sees it."""
        res, _ = self.resource("tok3n")
        req = post(postpath=[b"tok3n"])
        req.prepath = [b"logs", b"cs2"]
        req.uri = b"/logs/cs2/tok3n"
        render(res, req)
        self.assertEqual(req.uri, b"/logs/cs2/<redacted>")

    def test_no_secret_extra_path(self) -> None:
        """Without a secret, paths below the mount point are not found."""
        res, lines = self.resource()
        req = post(postpath=[b"x"])
        render(res, req)
        self.assertEqual((req.responseCode, lines), (404, []))

    def test_too_big_and_wrong_method(self) -> None:
        """An over-long body gets 413; a GET gets 405 with Allow: POST."""
        res, lines = self.resource(max_body=10)
        req = post()
        render(res, req)
        self.assertEqual((req.responseCode, lines), (413, []))
        get = post(method=b"GET")
        render(res, get)
        self.assertEqual(get.responseCode, 405)
        self.assertEqual(get.responseHeaders.getRawHeaders(b"allow"), [b"POST"])
        self.assertEqual(res.stats.dropped_malformed, 2)


class FakeMount:
    """What a mount function returns."""

    def __init__(self, log: list[str], path: str) -> None:
        self.log, self.path = log, path

    def close(self) -> Deferred[None]:
        """Unmount."""
        self.log.append(f"close {self.path}")
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


class HttpServiceTests(SynchronousTestCase):
    """The service mounts the resource while running."""

    def test_mounts_exact_and_subtree(self) -> None:
        """Both /PATH and /PATH/ are mounted on start and closed on stop."""
        log: list[str] = []

        def mount(path: str, resource: Any) -> FakeMount:
            log.append(f"mount {path}")
            return FakeMount(log, path)

        res = SourceHttpLogResource(print, allowed=AllowedHosts([]), secret=None)
        svc = HttpLogService("/logs/cs2", res, mount, reactor=None)
        svc.startService()
        self.assertEqual(log, ["mount /logs/cs2", "mount /logs/cs2/"])
        self.successResultOf(svc.stopService())
        self.assertEqual(log[2:], ["close /logs/cs2", "close /logs/cs2/"])


@implementer(IBodyProducer)
class Body:
    """A fixed request body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        """Write it all."""
        consumer.write(self.data)
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d

    def pauseProducing(self) -> None:
        """Nothing to pause."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


class LoopbackTests(TestCase):
    """A real POST in the CS2 format, through gamews's shared-port registry, to the bus."""

    timeout = 10

    async def test_post_reaches_bus(self) -> None:
        """A CS2 POST to /logs/cs2/SECRET gives round_start, kill and chat on the bus."""
        from gamews.registry import Registry
        from tests.support import real_reactor

        reactor = real_reactor()
        registry = Registry(reactor=reactor)
        self.addCleanup(registry.shutdown)
        endpoint = "tcp:0:interface=127.0.0.1"
        mounts: list[Any] = []

        def mount(path: str, resource: Any) -> Any:
            m = registry.mount(endpoint, path, resource, owner="logs")
            mounts.append(m)
            return m

        bus = EventBus(reactor)
        svc = log_source_from_table(
            {"name": "cs2", "rcon": "127.0.0.1:27015", "log": "http:/logs/cs2",
             "log_secret_env": "CS2_LOG"},
            bus=bus, reactor=reactor, where="server[0]", environ={"CS2_LOG": "s3cr3t"},
            mount=mount,
        )
        assert svc is not None
        got: list[Envelope] = []
        three: Deferred[None] = Deferred()

        def collect(envelope: Envelope) -> None:
            got.append(envelope)
            if len(got) == 3:
                three.callback(None)

        bus.subscribe(collect, server="cs2")
        logged: list[str] = []
        observer = cast(ILogObserver, lambda event: logged.append(formatEvent(event)))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        svc.startService()
        self.addCleanup(svc.stopService)
        address: Any = await mounts[0].when_listening()
        base = f"http://127.0.0.1:{address.port}/logs/cs2"
        agent = Agent(reactor)
        headers = Headers({b"content-type": [b"text/plain"]})
        wrong = await agent.request(b"POST", f"{base}/nope".encode(), headers, Body(BODY))
        await readBody(wrong)
        self.assertEqual(wrong.code, 403)
        response = await agent.request(b"POST", f"{base}/s3cr3t".encode(), headers, Body(BODY))
        await readBody(response)
        self.assertEqual(response.code, 200)
        await three
        self.assertEqual([type(e.event) for e in got], [RoundStart, Kill, Chat])
        self.assertEqual([e.seq for e in got], [1, 2, 3])
        kill = got[1].event
        assert isinstance(kill, Kill)
        self.assertEqual((kill.killer.key, kill.log_time), ("[U:1:24691357]",
                                                             "2026-11-28T09:30:05.101"))
        self.assertEqual(svc.stats.dropped_secret, 1)  # type: ignore[attr-defined]
        await registry.shutdown()
        access = [line for line in logged if "POST" in line]
        self.assertEqual(len(access), 2, logged)
        self.assertTrue(all("/logs/cs2/<redacted>" in line for line in access), access)
        self.assertFalse(any("s3cr3t" in line for line in logged))
