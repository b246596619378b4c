"""The shared-port registry: many plugins, one listening port per address.

Opening the same endpoint twice (after normalisation: ``tcp:8080:interface=X``
and ``tcp:port=8080:interface=X`` are one) shares one listening port with one
``twisted.web`` Site; each URL path is a WebSocket path (its upgrades skip
twisted.web, see :mod:`gamews.guard`) or a plain HTTP resource. Every open
returns a handle; the port stops listening when the last handle on it is
closed, and the Deferred of that last close fires only then.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import Request
from zope.interface import implementer

from gamews.api import (
    ChannelKind,
    EndpointConflictError,
    IChannel,
    IConnection,
    IListener,
    IListenerHandler,
    IMount,
    IncomingCallback,
    ReadyState,
)
from gamews.config import WebSocketLimits
from gamews.endpoints import EndpointKey, Listening, normalize_endpoint
from gamews.guard import MAX_REQUEST_BODY, GuardedSite, UpgradeResource, host_port
from gamews.isolation import call_plugin
from gamews.reactor import maybe_global_reactor
from gamews.stats import WebSocketStats
from gamews.websocket import (
    Channel,
    Child,
    GamewsServerFactory,
    ListenerLike,
    OutgoingMessage,
    UnfinishedBudget,
    send_to_many,
)

__all__ = ["MAX_REQUEST_BODY", "Listener", "Mount", "PathView", "PortView", "Registry",
           "origin_allowed"]

log = Logger(namespace="gamews.registry")

# -- origins ------------------------------------------------------------------


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a handshake's ``Origin`` passes: no Origin (not a browser), an
    allowed origin (or ``*``), the same origin as the ``Host`` asked for, or a
    page served from a loopback address on the same port as ``Host`` (another local
    program's page, on another port, is not let in)."""
    if origin is None:
        return True
    value = origin.strip().lower().rstrip("/")
    if "*" in allowed or value in allowed:
        return True
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not hostname:
        return False
    if host is not None and parts.netloc == host.strip().lower():
        return True
    try:
        loopback = hostname == "localhost" or ipaddress.ip_address(hostname).is_loopback
        origin_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    asked = host_port(host or "", 443 if parts.scheme == "https" else 80)
    return loopback and asked is not None and asked[1] == origin_port


# -- the read-only view ---------------------------------------------------------


@dataclass(frozen=True)
class PathView:
    """A WebSocket path of a shared port, as it was when looked at."""

    path: str
    plugins: tuple[str, ...]
    """The owners of the open listeners on the path."""
    admitted: int
    """Children admitted on the path, in any state."""
    held: Mapping[str, int]
    """OPEN children by plugin holding them (every listening plugin, 0 included)."""


@dataclass(frozen=True)
class PortView:
    """A shared port, as it was when looked at (:meth:`Registry.snapshot`)."""

    endpoint: str
    """The endpoint description it was opened with."""
    address: IAddress | None
    """Where it listens; ``None`` before it listens (or when it could not)."""
    paths: tuple[PathView, ...]
    """Its WebSocket paths, sorted."""
    pages: Mapping[str, str]
    """Its HTTP pages: path -> owner."""


# -- routing ------------------------------------------------------------------


class _Router(Resource):
    """The root of a shared port's Site: dispatches on the full URL path."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.routes: dict[bytes, IResource] = {}

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        full = request.path
        target = self.routes.get(full)
        mount = full
        if target is None:
            for prefix in sorted(self.routes, key=len, reverse=True):
                if len(prefix) > 1 and prefix.endswith(b"/") and full.startswith(prefix):
                    target, mount = self.routes[prefix], prefix
                    break
        if target is None:
            return NoResource("No such page.")
        segments = mount.strip(b"/").split(b"/") if mount != b"/" else [b""]
        request.prepath = [s for s in segments if s] or [b""]
        rest = full[len(mount):].lstrip(b"/")
        request.postpath = rest.split(b"/") if rest else []
        return target


class _Route:
    """One WebSocket path on a port: its listeners, its Autobahn factory, its children."""

    def __init__(self, port: _Port, path: str) -> None:
        self.port = port
        self.path = path
        self.limits = port.registry.limits
        self._listeners: list[Listener] = []
        self.children: set[Child] = set()
        self.stats = port.registry.stats.path(path)
        self.budget = port.registry.unfinished
        self.factory = GamewsServerFactory(self, port.registry.reactor)
        self.resource = UpgradeResource(self.factory)

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def discard(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def listeners(self) -> list[ListenerLike]:
        return [lst for lst in self._listeners if lst.active]

    @property
    def empty(self) -> bool:
        return not self._listeners

    def admit(self, child: Child) -> tuple[int, str] | None:
        verdict = self.port.registry.admit(child)
        if verdict is None:
            self.stats.accepted += 1
            self.children.add(child)
            self.port.children.add(child)
        return verdict

    def release(self, child: Child) -> None:
        self.children.discard(child)
        self.port.children.discard(child)
        self.port.registry.release(child)

    def view(self) -> PathView:
        held = dict.fromkeys((lst.owner for lst in self._listeners if lst.active), 0)
        for child in self.children:
            if child.ready_state is ReadyState.OPEN:
                for owner in child.holders():
                    held[owner] = held.get(owner, 0) + 1
        return PathView(self.path, tuple(lst.owner for lst in self.listeners()),
                        len(self.children), MappingProxyType(held))

    def broadcast(self, data: str | bytes, children: Iterable[Child]) -> int:
        """Send ``data`` to ``children`` of this path, framed once."""
        message = OutgoingMessage(data, self.limits.max_message_size, self.factory.prepareMessage)
        return send_to_many(children, message, self.stats)


class _Port:
    """One listening port shared by every handle opened on its endpoint."""

    def __init__(self, registry: Registry, key: EndpointKey, description: str) -> None:
        self.registry = registry
        self.key = key
        self.description = description
        self.router = _Router()
        # an HTTP request (a WebSocket upgrade included) must arrive whole within
        # the handshake timeout; idle page connections are dropped as fast
        # (and one address may have only so many sockets in that phase at once)
        limits = registry.limits
        self.site = GuardedSite(
            self.router, timeout=limits.handshake_timeout,
            max_pending_per_ip=None if limits.trusted_proxies else limits.max_pending_per_ip,
            allowed_hosts=limits.allowed_hosts)
        self.site.displayTracebacks = False
        self.upgrades: dict[bytes, UpgradeResource] = {}
        self.site.upgrades = self.upgrades  # WebSocket upgrades skip twisted.web
        self.routes: dict[str, _Route] = {}
        self.mounts: dict[str, Mount] = {}
        self.handles: list[Listener | Mount] = []
        self.children: set[Child] = set()
        self.listening = Listening(registry.reactor, description, self.site,
                                   on_listening=self._listening, on_failed=self._failed)
        self.stopped: Deferred[None] | None = None

    def _listening(self, port: IListeningPort) -> None:
        log.info("listening on {endpoint} ({address})", endpoint=self.description,
                 address=port.getHost())

    def _failed(self, failure: Failure) -> None:
        log.error("cannot listen on {endpoint}: {reason}", endpoint=self.description,
                  reason=failure.getErrorMessage())
        for handle in list(self.handles):
            if isinstance(handle, Listener):
                handle.port_failed(failure)

    def when_listening(self) -> Deferred[IAddress]:
        return self.listening.when_listening()

    def view(self) -> PortView:
        port = self.listening.port
        return PortView(
            self.description, port.getHost() if port is not None else None,
            tuple(route.view() for _, route in sorted(self.routes.items())),
            MappingProxyType({path: mount.owner for path, mount in sorted(self.mounts.items())}))

    def route_for(self, path: str) -> _Route:
        if path in self.mounts:
            raise EndpointConflictError(f"{path} on {self.description} already serves a page")
        route = self.routes.get(path)
        if route is None:
            route = self.routes[path] = _Route(self, path)
            self.router.routes[path.encode()] = self.upgrades[path.encode()] = route.resource
        return route

    def mount(self, mount: Mount) -> None:
        if mount.path in self.routes or mount.path in self.mounts:
            raise EndpointConflictError(f"{mount.path} on {self.description} is already in use")
        self.mounts[mount.path] = mount
        self.router.routes[mount.path.encode()] = mount.resource

    def release(self, handle: Listener | Mount) -> Deferred[None]:
        """Forget ``handle``; stop listening when it was the last one."""
        self.handles.remove(handle)
        if isinstance(handle, Mount):
            del self.mounts[handle.path]
            del self.router.routes[handle.path.encode()]
        else:
            route = self.routes[handle.path]
            route.discard(handle)
            if route.empty:
                del self.routes[handle.path]
                del self.router.routes[handle.path.encode()]
                del self.upgrades[handle.path.encode()]
        if self.handles:
            return succeed(None)
        return self.registry.stop_port(self)

    def stop(self, code: int, reason: str) -> Deferred[None]:
        """Close every child with ``code``, then stop listening."""
        if self.stopped is not None:
            return self.stopped
        for handle in list(self.handles):
            if isinstance(handle, Listener):
                handle.port_closed()
        closing = self.registry.close_children(list(self.children), code, reason)

        def stop_listening(_: object) -> Deferred[None]:
            if self.listening.port is not None:
                log.info("stopped listening on {endpoint}", endpoint=self.description)
            return self.listening.stop()

        self.stopped = closing.addCallback(stop_listening)
        return self.stopped


# -- handles ------------------------------------------------------------------


@implementer(IListener)
class Listener:
    """One plugin's handle on a WebSocket path of a shared port."""

    def __init__(
        self,
        port: _Port,
        route: _Route,
        endpoint: str,
        path: str,
        owner: str,
        incoming: IncomingCallback | None,
        error: Callable[[IListener, Failure], object] | None,
        closed: Callable[[IListener], object] | None,
    ) -> None:
        self._port = port
        self._route = route
        self.endpoint = endpoint
        self.path = path
        self.owner = owner
        self._incoming = incoming
        self._error = error
        self._closed = closed
        self._active = True
        self._channels: dict[str, Channel] = {}

    def __repr__(self) -> str:
        state = "" if self.active else " closed"
        return f"<Listener {self.owner} {self.endpoint} {self.path}{state}>"

    @property
    def active(self) -> bool:
        return self._active

    def offer(self, child: IConnection) -> Deferred[None] | None:
        """Hand ``child`` to the plugin's incoming callback (isolated)."""
        if self._incoming is None:
            return None
        return call_plugin(self.owner, "incoming", self._incoming, child)

    def when_listening(self) -> Deferred[IAddress]:
        return self._port.when_listening()

    def connections(self) -> list[IConnection]:
        return [c.handle_for(self) for c in self._route.children if c.is_hooked(self)]

    def broadcast(self, data: str | bytes, to: Iterable[IConnection] | None = None) -> int:
        if to is None:
            children = [c for c in self._route.children if c.is_hooked(self)]
        else:
            ids = {c.id for c in to}
            children = [c for c in self._route.children if c.id in ids]
        return self._route.broadcast(data, children)

    def channel(self, name: str, kind: ChannelKind = ChannelKind.EVENTS, *,
                catch_up: Callable[[IConnection], object] | None = None) -> IChannel:
        existing = self._channels.get(name)
        if existing is not None:
            if existing.kind is not kind:
                raise ValueError(f"channel {name!r} is already a {existing.kind.name} channel")
            return existing
        if not self._active:
            raise ValueError("this plugin's listener is closed")
        made = self._channels[name] = Channel(
            self, name, kind, catch_up, self._route.factory.prepareMessage,
            self._route.limits.max_message_size, self._route.stats,
            self._route.port.registry.reactor)
        return made

    def close(self) -> Deferred[None]:
        if not self._active:
            return succeed(None)
        self._active = False
        for child in list(self._route.children):
            child.unhook(self)
        self._channels.clear()
        return self._port.release(self)

    def port_failed(self, failure: Failure) -> None:
        if self._active and self._error is not None:
            call_plugin(self.owner, "error", self._error, self, failure)

    def port_closed(self) -> None:
        if self._active:
            self._active = False
            if self._closed is not None:
                call_plugin(self.owner, "closed", self._closed, self)


@implementer(IMount)
class Mount:
    """A plain HTTP resource mounted on a shared port."""

    def __init__(self, port: _Port, endpoint: str, path: str, resource: IResource,
                 owner: str) -> None:
        self._port = port
        self.endpoint = endpoint
        self.path = path
        self.resource = resource
        self.owner = owner
        self._active = True

    def __repr__(self) -> str:
        return f"<Mount {self.owner} {self.endpoint} {self.path}>"

    def when_listening(self) -> Deferred[IAddress]:
        return self._port.when_listening()

    def close(self) -> Deferred[None]:
        if not self._active:
            return succeed(None)
        self._active = False
        return self._port.release(self)


# -- the registry ---------------------------------------------------------------


class Registry:
    """Every listening port of one gamews instance, shared by its plugins."""

    def __init__(self, limits: WebSocketLimits | None = None, *, reactor: Any = None,
                 shutdown_timeout: float = 3.0) -> None:
        self.reactor = maybe_global_reactor(reactor)
        self.limits = limits or WebSocketLimits()
        self.shutdown_timeout = shutdown_timeout
        self._ports: dict[tuple[str, ...], _Port] = {}
        self._stopping: dict[tuple[str, ...], Deferred[None]] = {}
        self._per_host: Counter[str] = Counter()
        self._admitted = 0
        self.shutting_down = False
        self.stats = WebSocketStats()
        """Per-path message, byte and handshake counters (read by :mod:`gamews.metrics`)."""
        self.unfinished = UnfinishedBudget(self.limits.max_unfinished_bytes)
        """The bytes all children hold in unfinished messages (``max_unfinished_bytes``)."""

    # -- opening ---------------------------------------------------------------

    def _port_for(self, endpoint: str) -> _Port:
        if self.shutting_down:
            raise RuntimeError("gamews is shutting down")
        key = normalize_endpoint(endpoint)
        port = self._ports.get(key.bind)
        if port is not None:
            if port.key != key:
                raise EndpointConflictError(
                    f"{endpoint!r} clashes with {port.description!r}, already open on the "
                    "same address with other options (TLS keys, mode)"
                )
            return port
        port = self._ports[key.bind] = _Port(self, key, endpoint)
        port.listening.start(self._stopping.get(key.bind))
        return port

    def open(
        self,
        endpoint: str,
        path: str,
        *,
        owner: str,
        incoming: IncomingCallback | None = None,
        error: Callable[[IListener, Failure], object] | None = None,
        closed: Callable[[IListener], object] | None = None,
        handler: IListenerHandler | None = None,
    ) -> Listener:
        """Listen for WebSocket children on ``path`` of ``endpoint`` for plugin ``owner``.

        Raises ``ValueError`` for a malformed endpoint or path and
        :class:`EndpointConflictError` when the endpoint clashes with an open
        port; bind errors come later, through ``error`` and ``when_listening``.
        """
        if handler is not None:
            if any(f is not None for f in (incoming, error, closed)):
                raise TypeError("give callbacks or a handler, not both")
            incoming, error, closed = handler.incoming, handler.error, handler.closed
        _check_path(path)
        port = self._port_for(endpoint)
        try:
            route = port.route_for(path)
        except EndpointConflictError:
            if not port.handles:
                self.stop_port(port)
            raise
        listener = Listener(port, route, endpoint, path, owner, incoming, error, closed)
        route.add(listener)
        port.handles.append(listener)
        if port.listening.failure is not None:
            listener.port_failed(port.listening.failure)
        return listener

    def mount(self, endpoint: str, path: str, resource: IResource, *, owner: str) -> Mount:
        """Serve ``resource`` at ``path`` on ``endpoint``'s shared port.

        A path ending in ``/`` serves the whole subtree below it.
        """
        _check_path(path)
        port = self._port_for(endpoint)
        mount = Mount(port, endpoint, path, resource, owner)
        try:
            port.mount(mount)
        except EndpointConflictError:
            if not port.handles:
                self.stop_port(port)
            raise
        port.handles.append(mount)
        return mount

    # -- admission -------------------------------------------------------------

    def admit(self, child: Child) -> tuple[int, str] | None:
        """Vet a child's handshake: shutdown, Origin, connection caps."""
        request = child.request
        assert request is not None
        if self.shutting_down:
            return 503, "server shutting down"
        if not origin_allowed(request.origin, request.headers.get("host"),
                              self.limits.allowed_origins):
            log.info("refused {peer}: origin {origin} not allowed", peer=request.peer,
                     origin=request.origin)
            return 403, "origin not allowed"
        if self._admitted >= self.limits.max_connections:
            return 503, "too many connections"
        if self._per_host[request.peer_host] >= self.limits.max_connections_per_ip:
            return 503, "too many connections from this address"
        self._admitted += 1
        self._per_host[request.peer_host] += 1
        return None

    def release(self, child: Child) -> None:
        """Forget an admitted child whose connection is gone."""
        if child.admitted and child.request is not None:
            child.admitted = False
            self._admitted -= 1
            host = child.request.peer_host
            self._per_host[host] -= 1
            if self._per_host[host] <= 0:
                del self._per_host[host]

    def allow_hosts(self, hosts: tuple[str, ...]) -> None:
        """Serve requests for these ``Host`` names (besides the local address) from now on,
        on every port (a reload's ``[websocket] allowed_hosts``); open sockets stay."""
        self.limits = replace(self.limits, allowed_hosts=hosts)
        for port in self._ports.values():
            port.site.allowed_hosts = hosts

    # -- introspection ---------------------------------------------------------

    def ports(self) -> list[_Port]:
        """The open shared ports (the registry's own objects; see :meth:`snapshot`)."""
        return list(self._ports.values())

    def snapshot(self) -> tuple[PortView, ...]:
        """What every open shared port serves, as it is now: a read-only copy for
        the index page, the metrics and the manhole."""
        return tuple(port.view() for port in self._ports.values())

    def children(self) -> list[Child]:
        """Every child connection, on every port."""
        return [c for port in self._ports.values() for c in port.children]

    def broadcast(self, path: str, data: str | bytes) -> int:
        """Send ``data`` to every child on ``path`` (on every port), framed once per
        port; the number of children it was sent to."""
        return sum(route.broadcast(data, list(route.children))
                   for port in list(self._ports.values())
                   for route in [port.routes.get(path)] if route is not None)

    # -- closing ---------------------------------------------------------------

    def close_children(self, children: list[Child], code: int, reason: str) -> Deferred[None]:
        """Start the closing handshake on ``children``; fire once they are gone
        (aborting those still there after ``shutdown_timeout``)."""
        waits: list[Deferred[None]] = []
        for child in children:
            if child.lost:
                continue
            gone: Deferred[None] = Deferred()
            waits.append(gone)
            child.on_lost(gone)
            child.close(code, reason)
        if not waits:
            return succeed(None)

        def abort() -> None:
            for child in children:
                if not child.lost:
                    child.wire.drop()

        timer = self.reactor.callLater(self.shutdown_timeout, abort)
        done: Deferred[None] = DeferredList(waits).addCallback(lambda _: None)

        def cancel_timer(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        return done.addCallback(cancel_timer)

    def stop_port(self, port: _Port) -> Deferred[None]:
        bind = port.key.bind
        if self._ports.get(bind) is port:
            del self._ports[bind]
        stopped = port.stop(1001, "going away")
        self._stopping[bind] = stopped

        def forget(_: None) -> None:
            if self._stopping.get(bind) is stopped:
                del self._stopping[bind]

        stopped.addCallback(forget)
        return stopped

    def shutdown(self) -> Deferred[None]:
        """Refuse new children, close every child with 1001 and stop every port."""
        self.shutting_down = True
        stops = [self.stop_port(p) for p in list(self._ports.values())]
        stops.extend(self._stopping.values())
        return DeferredList(stops).addCallback(lambda _: None)


def _check_path(path: str) -> None:
    if not path.startswith("/") or any(c in path for c in "?# \t\r\n"):
        raise ValueError(f"a URL path must start with / and hold no query: {path!r}")
