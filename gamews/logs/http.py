"""Receive CS2's HTTP log (``logaddress_add_http "http://HOST:PORT/PATH"``).

CS2 POSTs batches of log lines (``MM/DD/YYYY - HH:MM:SS.mmm - message``, one per line) to
the URL. :class:`SourceHttpLogResource` is mounted on gamews's own web port; it accepts a
POST only from the game server's address and, when a secret is configured, only with the
secret as the path segment after the mount point (``/PATH/SECRET``, since CS2 cannot add
headers) or in an ``Authorization: Bearer SECRET`` header. Everything else is answered
403 (405 for other methods, 413 for bodies over the limit) and counted.

The web server writes each request's URI to its access log: the resource replaces the
part below its mount point with ``<redacted>`` before the request ends, so the secret is
not logged.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from gamews.logs.common import AllowedHosts, LineSink, LogStats, split_lines
from gamews.secret import Secret

__all__ = ["MAX_BODY", "SourceHttpLogResource"]

MAX_BODY: Final = 1024 * 1024
"""Largest POST body accepted by default (bytes)."""

_log = Logger(namespace="gamews.logs.http")


class SourceHttpLogResource(Resource):
    """A leaf resource taking CS2 log POSTs (see the module docstring)."""

    isLeaf = True

    def __init__(self, sink: LineSink, *, allowed: AllowedHosts, secret: Secret | None,
                 stats: LogStats | None = None, max_body: int = MAX_BODY) -> None:
        """Hand lines of accepted POSTs to ``sink``."""
        super().__init__()  # type: ignore[no-untyped-call]
        self.sink = sink
        self.allowed = allowed
        self.secret = secret
        self.stats = stats if stats is not None else LogStats()
        self.max_body = max_body

    def _token(self, request: Request) -> bytes | None:
        auth = request.getHeader(b"authorization")
        if auth is not None and auth[:7].lower() == b"bearer ":
            return auth[7:].strip()
        segments = [s for s in (request.postpath or []) if s]
        if len(segments) == 1:
            return segments[0]
        return None

    def render_POST(self, request: Request) -> bytes:
        """Check the sender and the secret, then pass the body's lines on."""
        stats = self.stats
        stats.received += 1
        client: Any = request.getClientAddress()
        host = getattr(client, "host", None)
        if host is None or not self.allowed.allows(str(host)):
            stats.dropped_address += 1
            request.setResponseCode(403)
            return b""
        if self.secret is not None:
            token = self._token(request)
            if token is None or not self.secret.matches(token):
                stats.dropped_secret += 1
                request.setResponseCode(403)
                return b""
        elif [s for s in (request.postpath or []) if s]:
            stats.dropped_malformed += 1
            request.setResponseCode(404)
            return b""
        content = request.content
        body = content.read(self.max_body + 1) if content is not None else b""
        if len(body) > self.max_body:
            stats.dropped_malformed += 1
            request.setResponseCode(413)
            return b""
        stats.accepted += 1
        for line in split_lines(body):
            stats.lines += 1
            try:
                self.sink(line)
            except Exception:
                stats.errors += 1
                _log.failure("log line handler failed")
        request.setResponseCode(200)
        return b""

    def render(self, request: Request) -> bytes:
        """Answer POST; anything else gets 405. A path below the mount point is redacted."""
        if request.postpath and any(request.postpath):
            # The web server writes request.uri to its access log when the request ends:
            # never let the secret (or a near miss of it) get there.
            mount = b"/".join(request.prepath or [])
            request.uri = b"/" + mount + b"/<redacted>"
        if request.method == b"POST":
            return self.render_POST(request)
        self.stats.received += 1
        self.stats.dropped_malformed += 1
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        return b""
