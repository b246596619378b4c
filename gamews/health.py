"""``/healthz`` on every web port, for load balancers and uptime checks.

``GET /healthz`` answers ``200`` with a small JSON object while the service runs, and ``503``
once it is stopping (so a balancer stops sending new clients before the port closes)::

    {"status": "ok", "links": {"alpha": "up", "beta": "down"}}

``links`` holds each game server's RCON link state (the words of
:class:`gamews.rcon.link.LinkState`); a link that is down does not make the service
unhealthy (gamews keeps serving pages and retries the link), so alert on the state if it
matters to you.  Nothing secret, no reasons (they can name hosts), no client data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = ["HealthResource"]


class HealthResource(Resource):
    """The ``/healthz`` resource of one gamews service."""

    isLeaf = True

    def __init__(self, stopping: Callable[[], bool], servers: Mapping[str, Any]) -> None:
        """``stopping()`` says whether the service is stopping; ``servers`` are its game
        servers by name (anything with a ``state`` whose ``value`` is a word)."""
        super().__init__()  # type: ignore[no-untyped-call]
        self._stopping = stopping
        self._servers = servers

    def render_GET(self, request: Request) -> bytes:
        """200 and the link states while running; 503 while stopping."""
        stopping = self._stopping()
        links = {name: str(getattr(server.state, "value", server.state))
                 for name, server in sorted(self._servers.items())}
        request.setResponseCode(503 if stopping else 200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = {"status": "stopping" if stopping else "ok", "links": links}
        return json.dumps(body, separators=(",", ":")).encode("utf-8")
