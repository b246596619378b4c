"""The shared-port registry: many plugins, one listening port per address.

Opening the same endpoint twice (after normalisation: ``tcp:8080:interface=X``
and ``tcp:port=8080:interface=X`` are one) shares one listening port with one
``twisted.web`` Site; each URL path is a ``WebSocketResource`` (or a plain HTTP
resource). Every open returns a handle; the port stops listening when the last
handle on it is closed, and the Deferred of that last close fires only then.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import serverFromString
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
)
from gamews.config import WebSocketLimits
from gamews.guard import MAX_REQUEST_BODY, GuardedSite, UpgradeResource, host_port
from gamews.isolation import call_plugin
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

__all__ = ["MAX_REQUEST_BODY", "EndpointKey", "Listener", "Mount", "Registry", "normalize_endpoint",
           "origin_allowed"]

log = Logger(namespace="gamews.registry")

# -- endpoint descriptions ----------------------------------------------------

_POSITIONAL: dict[str, tuple[str, ...]] = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "backlog", "interface"),
    "ssl": ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog",
            "extraCertChain", "dhParameters"),
    "unix": ("address", "mode", "backlog", "lockfile"),
}
_TLS_KEYS = ("privateKey", "certKey", "sslmethod", "extraCertChain", "dhParameters")


def _split(description: str) -> list[str]:
    """Split a strports description on unescaped colons, unescaping ``\\:``."""
    parts, current, chars = [], [], iter(description)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, "\\"))
        elif ch == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class EndpointKey:
    """A normalised endpoint: ``bind`` says what is listened on, ``options`` how."""

    bind: tuple[str, ...]
    options: tuple[tuple[str, str], ...]


def normalize_endpoint(description: str) -> EndpointKey:
    """Parse a server endpoint description into its :class:`EndpointKey`.

    Raises ``ValueError`` for a description that is not well formed.
    """
    parts = _split(description)
    kind = parts[0].lower()
    if not kind or len(parts) < 2:
        raise ValueError(f"not an endpoint description: {description!r} (try tcp:8080)")
    names = _POSITIONAL.get(kind)
    args: dict[str, str] = {}
    positional = 0
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if sep and (names is None or name in names or not name.isdigit()):
            if name in args:
                raise ValueError(f"{description!r}: {name} given twice")
            args[name] = value
        elif names is not None:
            if positional >= len(names):
                raise ValueError(f"{description!r}: too many positional arguments")
            args[names[positional]] = part
            positional += 1
        else:
            args[f"_{positional}"] = part
            positional += 1
    if kind in ("tcp", "tcp6", "ssl"):
        if "port" not in args or not args["port"].isdigit() or int(args["port"]) > 65535:
            raise ValueError(f"{description!r}: a port number 0-65535 is needed")
        family = "inet6" if kind == "tcp6" else "inet"
        default_if = "::" if kind == "tcp6" else ""
        bind = (family, args.get("interface", default_if), str(int(args["port"])))
        tls = kind == "ssl"
        if tls:
            args.setdefault("privateKey", "server.pem")
            args.setdefault("certKey", args["privateKey"])
        options = (
            ("tls", "yes" if tls else "no"),
            *((k, os.path.abspath(args[k]) if k in ("privateKey", "certKey") else args[k])
              for k in _TLS_KEYS if k in args),
        )
        return EndpointKey(bind, options)
    if kind == "unix":
        if "address" not in args:
            raise ValueError(f"{description!r}: a socket path is needed")
        return EndpointKey(("unix", os.path.abspath(args["address"])),
                           tuple(sorted((k, v) for k, v in args.items() if k != "address")))
    return EndpointKey((kind, *sorted(f"{k}={v}" for k, v in args.items())), ())


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
        self.routes: dict[str, _Route] = {}
        self.mounts: dict[str, Mount] = {}
        self.handles: list[Listener | Mount] = []
        self.children: set[Child] = set()
        self.listening_port: IListeningPort | None = None
        self.failure: Failure | None = None
        self._waiters: list[Deferred[IAddress]] = []
        self.stopped: Deferred[None] | None = None

    def start(self, after: Deferred[None] | None) -> None:
        def listen(_: object) -> Deferred[IListeningPort]:
            endpoint = serverFromString(self.registry.reactor, self.description)
            d: Deferred[IListeningPort] = endpoint.listen(self.site)
            return d

        d = after if after is not None else succeed(None)
        d.addCallback(listen).addCallbacks(self._listening, self._failed)

    def _listening(self, port: IListeningPort) -> None:
        self.listening_port = port
        if self.stopped is not None:  # every handle closed before we got here
            port.stopListening()
            return
        log.info("listening on {endpoint} ({address})", endpoint=self.description,
                 address=port.getHost())
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(port.getHost())

    def _failed(self, failure: Failure) -> None:
        self.failure = failure
        log.error("cannot listen on {endpoint}: {reason}", endpoint=self.description,
                  reason=failure.getErrorMessage())
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.errback(failure)
        for handle in list(self.handles):
            if isinstance(handle, Listener):
                handle.port_failed(failure)

    def when_listening(self) -> Deferred[IAddress]:
        if self.listening_port is not None:
            return succeed(self.listening_port.getHost())
        if self.failure is not None:
            d: Deferred[IAddress] = Deferred()
            d.errback(self.failure)
            return d
        waiter: Deferred[IAddress] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def route_for(self, path: str) -> _Route:
        if path in self.mounts:
            raise EndpointConflictError(f"{path} on {self.description} already serves a page")
        route = self.routes.get(path)
        if route is None:
            route = self.routes[path] = _Route(self, path)
            self.router.routes[path.encode()] = route.resource
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

        def stop_listening(_: object) -> Deferred[None] | None:
            if self.listening_port is None:
                return None
            d: Deferred[None] | None = self.listening_port.stopListening()
            return d

        def done(_: object) -> None:
            if self.listening_port is not None:
                log.info("stopped listening on {endpoint}", endpoint=self.description)

        self.stopped = closing.addCallback(stop_listening).addCallback(done)
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
            self._route.limits.max_message_size, self._route.stats)
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
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.reactor = reactor
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
        port.start(self._stopping.get(key.bind))
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
        if port.failure is not None:
            listener.port_failed(port.failure)
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

    # -- introspection ---------------------------------------------------------

    def ports(self) -> list[_Port]:
        """The open shared ports."""
        return list(self._ports.values())

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
