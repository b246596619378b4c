"""Endpoint descriptions and listening on them.

- :func:`normalize_endpoint`: a strports description to the :class:`EndpointKey`
  that says what it binds (``tcp:8080:interface=X`` and
  ``tcp:port=8080:interface=X`` are one);
- :func:`is_loopback_endpoint`: whether a description listens on loopback only;
- :func:`endpoint_setting`: an endpoint setting (``--metrics 9108``, ``--manhole 2222``,
  ``[metrics] listen``, ``[manhole] endpoint``) where a bare port means loopback;
- :class:`Listening`: one listen on an endpoint, and who waits for it (the
  registry's shared ports, the manhole and the metrics port use it);
- :func:`tls_server_endpoint`: ``ssl:`` descriptions served through a
  :class:`gamews.tls.ReloadableTLS`, whose certificate a reload renews.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure

from gamews.tls import ReloadableTLS

__all__ = ["EndpointKey", "Listening", "endpoint_setting", "is_loopback_endpoint",
           "normalize_endpoint", "split_description", "tls_server_endpoint"]

_POSITIONAL: dict[str, tuple[str, ...]] = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "backlog", "interface"),
    "ssl": ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog",
            "extraCertChain", "dhParameters"),
    "unix": ("address", "mode", "backlog", "lockfile"),
}
_TLS_KEYS = ("privateKey", "certKey", "sslmethod", "extraCertChain", "dhParameters")


def split_description(description: str) -> list[str]:
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
    parts = split_description(description)
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



def endpoint_setting(value: object, key: str) -> str:
    """An endpoint description from a setting ``key``: strports syntax, or a bare port
    number (TOML integer or digits) meaning that port on loopback.  Raises
    :class:`gamews.errors.ConfigError` naming ``key``."""
    from gamews.errors import ConfigError

    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "expected an endpoint such as tcp:9108:interface=127.0.0.1, "
                               "or a port number (loopback)")
    if value.isdigit():
        value = f"tcp:{value}:interface=127.0.0.1"
    try:
        normalize_endpoint(value)
    except ValueError as e:
        raise ConfigError(key, str(e)) from None
    return value


def is_loopback_endpoint(description: str) -> bool:
    """Whether a server endpoint description listens on loopback only (or a UNIX socket).

    ``tcp:2222`` (every interface) is not; ``tcp:2222:interface=127.0.0.1``,
    ``tcp6:2222:interface=\\:\\:1`` and ``unix:/path`` are.
    """
    bind = normalize_endpoint(description).bind
    if bind[0] == "unix":
        return True
    if bind[0] not in ("inet", "inet6"):
        return False
    interface = bind[1]
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


# -- listening ------------------------------------------------------------------


class Listening:
    """One listen on an endpoint description with a factory, and the callers
    waiting for it.

    :meth:`start` listens (once ``after`` has fired, when given: a port of the
    same address still stopping); ``on_listening(port)`` or
    ``on_failed(failure)`` are called first, then every :meth:`when_listening`
    waiter. :meth:`stop` stops listening; a listen still under way is stopped
    when it completes, and its waiters fail with ``CancelledError``.
    """

    def __init__(self, reactor: object, description: str, factory: IProtocolFactory, *,
                 on_listening: Callable[[IListeningPort], object] | None = None,
                 on_failed: Callable[[Failure], object] | None = None) -> None:
        self._reactor = reactor
        self.description = description
        self._factory = factory
        self._on_listening = on_listening
        self._on_failed = on_failed
        self.port: IListeningPort | None = None
        """The listening port, once listening (``None`` again once stopped)."""
        self.failure: Failure | None = None
        """Why it could not listen, if it could not."""
        self.tls: ReloadableTLS | None = None
        """The certificate of an ``ssl:`` port, which a reload renews, once listening."""
        self._waiters: list[Deferred[IAddress]] = []
        self._pending = False
        self._stopping = False

    def start(self, after: Deferred[None] | None = None) -> None:
        """Listen now, or once ``after`` has fired."""
        self.port, self.failure, self._stopping, self._pending = None, None, False, True

        def listen(_: object) -> Deferred[IListeningPort]:
            made = tls_server_endpoint(self._reactor, self.description)
            if made is None:
                endpoint = serverFromString(self._reactor, self.description)
            else:
                endpoint, self.tls = made
            listened: Deferred[IListeningPort] = endpoint.listen(self._factory)
            return listened

        ready = after if after is not None else succeed(None)
        ready.addCallback(listen).addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> None:
        self._pending = False
        if self._stopping:  # stopped before it listened
            port.stopListening()
            self._fail_waiters(Failure(CancelledError(f"{self.description}: stopped")))
            return
        self.port = port
        if self._on_listening is not None:
            self._on_listening(port)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(port.getHost())

    def _failed(self, failure: Failure) -> None:
        self._pending = False
        self.failure = failure
        if self._on_failed is not None:
            self._on_failed(failure)
        self._fail_waiters(failure)

    def _fail_waiters(self, failure: Failure) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    def when_listening(self) -> Deferred[IAddress]:
        """Fire with the listening address once listening (or fail if it cannot)."""
        if self.port is not None:
            return succeed(self.port.getHost())
        waiter: Deferred[IAddress] = Deferred()
        if self.failure is not None:
            waiter.errback(self.failure)
        else:
            self._waiters.append(waiter)
        return waiter

    def stop(self) -> Deferred[None]:
        """Stop listening (at once, or as soon as a listen under way completes)."""
        port, self.port = self.port, None
        if port is None:
            self._stopping = self._pending
            return succeed(None)
        stopped = port.stopListening()
        if isinstance(stopped, Deferred):
            return stopped.addCallback(lambda _: None)
        return succeed(None)


def tls_server_endpoint(reactor: Any, description: str) -> tuple[
        IStreamServerEndpoint, ReloadableTLS] | None:
    """An endpoint for an ``ssl:`` ``description`` whose certificate can be reloaded, with its
    :class:`gamews.tls.ReloadableTLS`; ``None`` for other descriptions (use
    ``serverFromString``)."""
    parts = split_description(description)
    if parts[0].lower() != "ssl" or any("=" not in p for p in parts[4:]):
        return None
    key = normalize_endpoint(description)
    options = dict(key.options)
    if "sslmethod" in options:
        return None
    backlog = 50
    for part in parts[1:]:
        name, _, value = part.partition("=")
        if name == "backlog" and value.isdigit():
            backlog = int(value)
    tls = ReloadableTLS(options["privateKey"], options["certKey"],
                        chain=options.get("extraCertChain"),
                        dh_parameters=options.get("dhParameters"))
    _, interface, port = key.bind
    return SSL4ServerEndpoint(reactor, int(port), tls, backlog=backlog,
                              interface=interface), tls
