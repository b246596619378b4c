"""The manhole's shell: a ``ColoredManhole`` per SSH session over a namespace made
for that session (:func:`service_namespace`), with the service's config shown
redacted (:func:`redact_config`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser
from twisted.conch.manhole import ColoredManhole
from twisted.conch.manhole_ssh import (
    TerminalRealm,
    TerminalSession,
    TerminalSessionTransport,
)
from twisted.cred.portal import IRealm
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.secret import Secret

__all__ = ["REDACTED", "GamewsManhole", "ManholeRealm", "default_banner", "redact_config",
           "service_namespace"]

log = Logger(namespace="gamews.manhole")

REDACTED: Final = "<redacted>"
"""What :func:`redact_config` puts in place of a secret."""

# -- the shell ------------------------------------------------------------------------


def _summary(value: object) -> str:
    doc = getattr(value, "__doc__", None) if callable(value) and not isinstance(
        value, type) else None
    if isinstance(doc, str) and doc.strip():
        return doc.strip().splitlines()[0]
    return type(value).__name__


def default_banner(namespace: Mapping[str, object]) -> str:
    """A banner listing ``namespace``: each name with its docstring's first line
    (callables) or its type."""
    lines = [
        "gamews manhole: a Python shell inside the running service.",
        "Ctrl-D leaves. A Deferred shows its result when it fires. Careful: this is live,",
        "and code runs in the reactor thread (a long loop stalls the whole service).",
        "",
    ]
    width = max((len(n) for n in namespace), default=0)
    for name in sorted(namespace):
        if not name.startswith("_"):
            suffix = "()" if callable(namespace[name]) and not isinstance(
                namespace[name], type) else ""
            lines.append(f"  {(name + suffix).ljust(width + 2)}  {_summary(namespace[name])}")
    return "\n".join(lines) + "\n"


class GamewsManhole(ColoredManhole):
    """ColoredManhole with a banner, where no input (not even ``exit()``) escapes."""

    def __init__(self, namespace: dict[str, object], banner: str) -> None:
        super().__init__(namespace)  # type: ignore[no-untyped-call]
        self._banner = banner

    def initializeScreen(self) -> None:
        self.terminal.reset()
        self.terminal.write(self._banner.encode("utf-8"))
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()  # type: ignore[no-untyped-call]

    def lineReceived(self, line: bytes) -> None:
        try:
            more = self.interpreter.push(line)  # type: ignore[no-untyped-call]
        except SystemExit:
            self.interpreter.resetBuffer()  # type: ignore[no-untyped-call]
            more = False
            self.addOutput(  # type: ignore[no-untyped-call]
                b"SystemExit ignored: press Ctrl-D to leave the manhole\n")
        except Exception as e:  # the line could not even be compiled (bad UTF-8, ...)
            self.interpreter.resetBuffer()  # type: ignore[no-untyped-call]
            more = False
            self.addOutput(f"{type(e).__name__}: {e}\n".encode())  # type: ignore[no-untyped-call]
        self.pn = bool(more)
        written = self.terminal.lastWrite  # ColoredManhole's own test for a fresh line
        if not written.endswith((b"\n", b"\x1bE")):
            self.terminal.nextLine()
        self.terminal.write(self.ps[self.pn])


class _SessionTransport(TerminalSessionTransport):
    """Glues the SSH channel to the terminal; leaving the shell (Ctrl-D) ends the
    session with exit status 0, so ``ssh`` exits 0 rather than 255."""

    def __init__(self, proto: Any, chainedProtocol: Any, avatar: Any, width: int,
                 height: int) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            proto, chainedProtocol, avatar, width, height)

        def leave() -> None:
            proto.processEnded(Failure(ProcessDone(0)))  # type: ignore[no-untyped-call]

        chainedProtocol.transport.loseConnection = leave


class _ManholeSession(TerminalSession):
    """The SSH session: a shell on a (possibly absent) pty; EOF and window changes
    handled; commands refused politely."""

    width = 80
    height = 24
    transportFactory = _SessionTransport

    def getPty(self, term: bytes, windowSize: tuple[int, int, int, int],
               attrs: object) -> None:
        """Take the client's terminal size (keeping 80x24 when it reports none)."""
        rows, columns = windowSize[:2]
        self.height, self.width = rows or 24, columns or 80

    def __init__(self, original: Any) -> None:
        super().__init__(original)  # type: ignore[no-untyped-call]
        self._terminal: insults.ServerProtocol | None = None

    def openShell(self, proto: Any) -> None:
        terminal: insults.ServerProtocol = self.chainedProtocolFactory()  # type: ignore[no-untyped-call]
        self._terminal = terminal
        self.transportFactory(
            proto, terminal, IConchUser(self.original), self.width, self.height)

    def execCommand(self, proto: Any, cmd: bytes) -> None:
        proto.write(b"gamews manhole: commands are not supported; "
                    b"connect without one (ssh -t) for a Python shell\r\n")
        proto.processEnded(Failure(ProcessTerminated(exitCode=1)))  # type: ignore[no-untyped-call]

    def windowChanged(self, newWindowSize: tuple[int, int, int, int]) -> None:
        self.height, self.width = newWindowSize[:2]
        if self._terminal is not None and self._terminal.terminalProtocol is not None:
            self._terminal.terminalProtocol.terminalSize(self.width, self.height)

    def eofReceived(self) -> None:
        if self._terminal is not None:
            self._terminal.loseConnection()  # type: ignore[no-untyped-call]


@implementer(IRealm)
class ManholeRealm(TerminalRealm):
    sessionFactory = _ManholeSession
    transportFactory = _SessionTransport

    def __init__(self, protocol_factory: Callable[[], insults.ServerProtocol]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.chainedProtocolFactory = protocol_factory  # type: ignore[assignment]

    def requestAvatar(self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any) -> Any:
        user = avatarId.decode("utf-8", "replace") if isinstance(avatarId, bytes) else "?"
        log.info("manhole: {user} logged in", user=user)
        return super().requestAvatar(  # type: ignore[no-untyped-call]
            avatarId, mind, *interfaces)


# -- the config, redacted -------------------------------------------------------------

_SECRET_SUFFIXES: Final = ("password", "passwd", "secret", "token")


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().endswith(_SECRET_SUFFIXES)


def redact_config(obj: object) -> object:
    """A copy of a config tree safe to show: every :class:`gamews.secret.Secret`,
    and the value of every key ending in ``password``, ``passwd``, ``secret`` or
    ``token`` (any case), becomes ``"<redacted>"``.

    Mappings become dicts, dataclass instances dicts of their fields, lists
    and tuples keep their type; other values are kept as they are.
    """
    return _redact(obj, set())


def _redact(obj: object, seen: set[int]) -> object:
    if isinstance(obj, Secret):
        return REDACTED
    if isinstance(obj, Mapping) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        if id(obj) in seen:
            return "<cycle>"
        seen = seen | {id(obj)}
        items: Iterable[tuple[object, object]]
        if isinstance(obj, Mapping):
            items = obj.items()
        else:
            items = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
        return {k: REDACTED if _secret_key(k) else _redact(v, seen) for k, v in items}
    if isinstance(obj, (list, tuple)):
        if id(obj) in seen:
            return "<cycle>"
        seen = seen | {id(obj)}
        values = [_redact(v, seen) for v in obj]
        return values if isinstance(obj, list) else tuple(values)
    return obj


# -- the gamews namespace ----------------------------------------------------------------


def service_namespace(root: Any, **extra: object) -> Callable[[], dict[str, object]]:
    """The namespace maker for a running gamews: pass it to :func:`make_manhole_service`.

    ``root`` is the :class:`gamews.service.GamewsService`; ``extra`` names are
    added as given (say, ``rcon=...`` once game servers exist). Each session
    gets ``service``, ``registry``, ``plugins``, ``config`` (secrets redacted),
    ``reactor`` and the helpers ``ports()``, ``connections()``, ``kick()``,
    ``broadcast()``, ``tree()``.
    """

    def make() -> dict[str, object]:
        registry = root.registry

        def ports() -> list[dict[str, object]]:
            """Each shared port: endpoint, address, WebSocket paths (plugins, children), pages."""
            rows: list[dict[str, object]] = []
            for port in registry.snapshot():
                rows.append({
                    "endpoint": port.endpoint,
                    "address": str(port.address) if port.address is not None else None,
                    "paths": {path.path: {"plugins": list(path.plugins), "children": path.admitted}
                              for path in port.paths},
                    "pages": sorted(port.pages),
                })
            return rows

        def connections() -> list[dict[str, object]]:
            """Every WebSocket child: id, path, peer, ready state, holders."""
            rows: list[dict[str, object]] = []
            for child in registry.children():
                request = child.request
                rows.append({
                    "id": child.id,
                    "path": request.path if request else None,
                    "peer": request.peer if request else None,
                    "state": child.ready_state.name,
                    "plugins": child.holders(),
                })
            return rows

        def kick(child_id: int, reason: str = "closed by an operator",
                 code: int = 1008) -> bool:
            """kick(id, reason=..., code=1008): close one child; False if no such id."""
            for child in registry.children():
                if child.id == child_id:
                    child.close(code, reason)
                    return True
            return False

        def broadcast(path: str, text: str) -> int:
            """broadcast(path, text): send a text message to every open child on path."""
            return int(registry.broadcast(path, text))

        def tree() -> None:
            """Print the service tree with each service's state."""
            def walk(service: Any, depth: int) -> None:
                state = "running" if service.running else "stopped"
                print(f"{'  ' * depth}{service.name or type(service).__name__} ({state})")
                for child in getattr(service, "services", []):
                    walk(child, depth + 1)

            walk(root, 0)

        names: dict[str, object] = {
            "service": root,
            "registry": registry,
            "plugins": {p.name: p for p in root.plugins},
            "config": redact_config(root.config),
            "reactor": registry.reactor,
            "connections": connections,
            "ports": ports,
            "kick": kick,
            "broadcast": broadcast,
            "tree": tree,
        }
        names.update(extra)
        return names

    return make
