"""Experiment, not a peer: ``gamews_server`` with three candidate fixes patched in at run
time, to measure what they would move (nothing in ``gamews/`` changes). Run it side by
side with ``python -m bench.ws --servers websockets,gamews,gamews-fixes``.

1. ``log``: Autobahn formats debug-log arguments eagerly (``hltype``/``hlval`` in every
   ``sendData`` and ``dataReceived``, ``pformat`` of every option in every
   ``_connectionMade``); the names are replaced by pass-throughs, so a debug line that is
   not emitted costs nothing.
2. ``write``: ``Listener.broadcast`` writes the prepared frame with ``socket.send`` when
   the transport has nothing queued (one syscall), instead of ``transport.write``, which
   registers for writability, writes on the next reactor turn and unregisters (three).
   What ``send`` leaves (or any error) goes through ``transport.write`` as before.
3. ``mem``: Autobahn's options are set once on the protocol class (``_connectionMade``
   then skips copying them onto every instance) and the handshake's strings are dropped
   once the connection is open.

``GAMEWS_FIXES=log,write`` (default: all three) selects some of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import autobahn.twisted.websocket as ab_twisted
import autobahn.websocket.protocol as ab_protocol

from gamews import registry, websocket
from gamews.api import IConnection

from . import gamews_server
from .common import parse_port, raise_nofile

FIXES = set(os.environ.get("GAMEWS_FIXES", "log,write,mem").split(","))


def _same(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


def fix_log() -> None:
    for module in (ab_protocol, ab_twisted):
        for name in ("hltype", "hlval", "pformat"):
            if hasattr(module, name):
                setattr(module, name, _same)


def _broadcast(self: registry.Listener, data: str | bytes,
               to: Iterable[IConnection] | None = None) -> int:
    is_binary = isinstance(data, bytes)
    payload = data if isinstance(data, bytes) else data.encode("utf-8")
    route: Any = self._route
    if len(payload) > route.limits.max_message_size:
        raise ValueError("message too big")
    if to is None:
        children = [c for c in route.children if c.is_hooked(self)]
    else:
        ids = {c.id for c in to}
        children = [c for c in route.children if c.id in ids]
    frame: bytes | None = None
    sent = 0
    for child in children:
        if not child.reserve(len(payload)):
            continue
        if frame is None:
            frame = route.factory.prepareMessage(payload, is_binary).payloadHybi
            assert frame is not None
        transport: Any = child.protocol.transport
        idle = (not transport._tempDataLen
                and len(transport.dataBuffer) == transport.offset
                and not transport.disconnecting)
        written = 0
        if idle:
            try:
                written = transport.socket.send(frame)
            except OSError:  # would block, or the peer is gone: Twisted sees to it
                written = 0
        if written < len(frame):
            transport.write(frame[written:])
        sent += 1
    return sent


def fix_write() -> None:
    setattr(registry.Listener, "broadcast", _broadcast)  # noqa: B010


_HANDSHAKE_ATTRS = ("http_request_data", "http_response_data", "http_headers",
                    "http_request_uri", "http_request_path", "http_request_params",
                    "http_status_line", "http_request_host")


def fix_mem() -> None:
    protocol_class: Any = websocket.GamewsServerProtocol
    factory_class: Any = websocket.GamewsServerFactory
    on_open = protocol_class.onOpen
    factory_init = factory_class.__init__

    def onOpen(self: Any) -> None:
        for name in _HANDSHAKE_ATTRS:
            self.__dict__.pop(name, None)
        on_open(self)

    def init(self: Any, route: Any, reactor: Any) -> None:
        factory_init(self, route, reactor)
        # every route has the same limits in this benchmark, so class-wide is exact here
        for name in protocol_class.CONFIG_ATTRS:
            setattr(protocol_class, name, getattr(self, name))

    protocol_class.onOpen = onOpen
    factory_class.__init__ = init


if __name__ == "__main__":
    raise_nofile()
    if "log" in FIXES:
        fix_log()
    if "write" in FIXES:
        fix_write()
    if "mem" in FIXES:
        fix_mem()
    gamews_server.main(parse_port(__doc__ or ""))
