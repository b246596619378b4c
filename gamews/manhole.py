"""The manhole: an authenticated SSH shell (a Python REPL) into the running service.

Built the Twisted way, from :mod:`twisted.conch.manhole_ssh`: a
``ConchFactory`` whose ``Portal`` holds a ``TerminalRealm`` and the configured
credential checkers; each SSH session gets a
:class:`~twisted.conch.manhole.ColoredManhole` over a namespace built afresh for
that session by calling ``namespace()``.

Safe by default:

* it listens on loopback unless told otherwise (``tcp:2222:interface=127.0.0.1``)
  and logs a warning when it listens anywhere else;
* it refuses to run without credentials: public keys from an
  ``authorized_keys`` file (preferred), or users from a password file holding
  scrypt hashes (never plain text, never a default password);
* the SSH host key is generated on first start (Ed25519) in ``data_dir`` with
  mode 0600, reused afterwards, and refused if others can read it;
* errors typed in the shell stay in the shell.

The ``[manhole]`` table of the config file::

    [manhole]
    endpoint = "tcp:2222:interface=127.0.0.1"   # strports syntax; the default
    authorized_keys = "manhole_authorized_keys"  # OpenSSH public key lines
    password_file = "manhole_passwords"          # lines USER:scrypt$...
    data_dir = "gamews-data"                     # holds the host key

Relative paths are resolved against the config file's directory. A key from
``authorized_keys`` is accepted for any user name (the name is logged). The
password file holds one ``USER:HASH`` line per user (``#`` comments and blank
lines are ignored); make a line with::

    python -m gamews.manhole hash-password USER

``HASH`` is ``scrypt$ln=LOG2N,r=R,p=P$SALT$KEY`` with ``SALT`` (16 bytes) and
``KEY`` (32 bytes) in standard base64: scrypt (RFC 7914) from :mod:`hashlib`,
no extra dependency. Passwords are checked in constant time in a thread, so a
slow hash never blocks the reactor.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import getpass
import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application.service import IService, Service
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser
from twisted.conch.manhole import ColoredManhole
from twisted.conch.manhole_ssh import (
    ConchFactory,
    TerminalRealm,
    TerminalSession,
    TerminalSessionTransport,
)
from twisted.conch.ssh import keys
from twisted.conch.ssh.transport import SSHServerTransport
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gamews.errors import ConfigError
from gamews.registry import normalize_endpoint
from gamews.secret import Secret

__all__ = [
    "DEFAULT_ENDPOINT",
    "HOST_KEY_NAME",
    "NO_CREDENTIALS",
    "REDACTED",
    "AuthorizedKeys",
    "ManholeConfig",
    "ManholeService",
    "ScryptPasswordChecker",
    "default_banner",
    "hash_password",
    "is_loopback_endpoint",
    "load_authorized_keys",
    "load_host_key",
    "load_password_file",
    "main",
    "make_manhole_service",
    "redact_config",
    "service_namespace",
    "verify_password",
]

log = Logger(namespace="gamews.manhole")

DEFAULT_ENDPOINT: Final = "tcp:2222:interface=127.0.0.1"
"""Where the manhole listens unless told otherwise: loopback only."""
HOST_KEY_NAME: Final = "manhole_host_ed25519_key"
"""File name of the host key inside ``data_dir`` (its public half gets ``.pub``)."""
REDACTED: Final = "<redacted>"
"""What :func:`redact_config` puts in place of a secret."""
NO_CREDENTIALS: Final = "no credentials configured: set authorized_keys or password_file"
"""The message of the error for a manhole without credentials (key ``manhole``)."""

_KEYS: Final = ("endpoint", "authorized_keys", "password_file", "data_dir")


# -- configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class ManholeConfig:
    """A validated ``[manhole]`` table. Building one without credentials raises
    :class:`~gamews.errors.ConfigError` (``manhole: no credentials configured...``)."""

    endpoint: str = DEFAULT_ENDPOINT
    """Where to listen (strports syntax)."""
    authorized_keys: Path | None = None
    """An OpenSSH ``authorized_keys`` file; its keys may log in as any user name."""
    password_file: Path | None = None
    """A file of ``USER:scrypt$...`` lines (see :func:`hash_password`)."""
    data_dir: Path = Path("gamews-data")
    """Directory holding the host key (created with mode 0700 if missing)."""

    def __post_init__(self) -> None:
        if self.authorized_keys is None and self.password_file is None:
            raise ConfigError("manhole", NO_CREDENTIALS)
        try:
            normalize_endpoint(self.endpoint)
        except ValueError as e:
            raise ConfigError("manhole.endpoint", str(e)) from None

    @property
    def host_key_path(self) -> Path:
        """The host key file inside :attr:`data_dir`."""
        return self.data_dir / HOST_KEY_NAME

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, base_dir: Path | None) -> ManholeConfig:
        """Validate the ``[manhole]`` TOML table; relative paths are taken from ``base_dir``
        (the config file's directory), or the working directory when it is ``None``.

        Raises :class:`~gamews.errors.ConfigError` naming the key at fault.
        """
        if not isinstance(table, Mapping):
            raise ConfigError("manhole", "expected a table")
        for key in table:
            if key not in _KEYS:
                raise ConfigError(f"manhole.{key}", f"unknown key (known: {', '.join(_KEYS)})")

        def path(key: str) -> Path | None:
            if key not in table:
                return None
            raw = table[key]
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"manhole.{key}", "expected a file path")
            p = Path(raw).expanduser()
            if not p.is_absolute():
                p = (base_dir if base_dir is not None else Path.cwd()) / p
            return p

        endpoint = table.get("endpoint", DEFAULT_ENDPOINT)
        if not isinstance(endpoint, str) or not endpoint:
            raise ConfigError("manhole.endpoint", "expected an endpoint string such as "
                                                  f"{DEFAULT_ENDPOINT!r}")
        data_dir = path("data_dir") or (base_dir if base_dir is not None else Path.cwd()) / (
            "gamews-data")
        return cls(endpoint=endpoint, authorized_keys=path("authorized_keys"),
                   password_file=path("password_file"), data_dir=data_dir)


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


# -- passwords ----------------------------------------------------------------------

_SCRYPT_LN: Final = 14
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_MAX_SCRYPT_MEMORY: Final = 256 * 1024 * 1024


@dataclass(frozen=True)
class _ScryptHash:
    ln: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def derive(self, password: bytes) -> bytes:
        n = 1 << self.ln
        return hashlib.scrypt(password, salt=self.salt, n=n, r=self.r, p=self.p,
                              maxmem=_MAX_SCRYPT_MEMORY + 1024 * 1024, dklen=len(self.key))

    def matches(self, password: bytes) -> bool:
        return hmac.compare_digest(self.derive(password), self.key)

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        key = base64.b64encode(self.key).decode("ascii")
        return f"scrypt$ln={self.ln},r={self.r},p={self.p}${salt}${key}"

    @classmethod
    def parse(cls, text: str) -> _ScryptHash:
        parts = text.split("$")
        if len(parts) != 4 or parts[0] != "scrypt":
            raise ValueError("expected scrypt$ln=N,r=R,p=P$SALT$KEY "
                             "(make one with: python -m gamews.manhole hash-password USER)")
        try:
            params = dict(item.split("=", 1) for item in parts[1].split(","))
            ln, r, p = int(params["ln"]), int(params["r"]), int(params["p"])
            salt = base64.b64decode(parts[2], validate=True)
            key = base64.b64decode(parts[3], validate=True)
        except (ValueError, KeyError):
            raise ValueError("malformed scrypt parameters, salt or key") from None
        if not (1 <= ln <= 24 and 1 <= r <= 64 and 1 <= p <= 16):
            raise ValueError("scrypt parameters out of range")
        if 128 * r * (1 << ln) > _MAX_SCRYPT_MEMORY:
            raise ValueError("scrypt parameters need too much memory")
        if len(salt) < 8 or len(key) < 16:
            raise ValueError("scrypt salt or key too short")
        return cls(ln, r, p, salt, key)


def hash_password(password: str) -> str:
    """Hash ``password`` with scrypt and a fresh salt; returns the ``scrypt$...`` text."""
    entry = _ScryptHash(_SCRYPT_LN, _SCRYPT_R, _SCRYPT_P, secrets.token_bytes(16), b"\0" * 32)
    key = entry.derive(password.encode("utf-8"))
    return dataclasses.replace(entry, key=key).encode()


def verify_password(password: str | bytes, encoded: str) -> bool:
    """Whether ``password`` matches an ``scrypt$...`` hash (constant-time compare)."""
    if isinstance(password, str):
        password = password.encode("utf-8")
    return _ScryptHash.parse(encoded).matches(password)


def _check_user(user: str) -> None:
    if not user or any(c in user for c in ": \t\r\n") or not user.isprintable():
        raise ValueError(f"not a usable user name: {user!r}")


def load_password_file(path: Path) -> dict[bytes, str]:
    """Read a password file into ``{user: "scrypt$..."}``.

    Raises :class:`~gamews.errors.ConfigError` (``manhole.password_file``) for an
    unreadable file, a malformed line (its number is given, its hash is not), a
    user listed twice, or a file with no users.
    """
    key = "manhole.password_file"
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(key, f"cannot read {path}: {getattr(e, 'strerror', None) or e}"
                          ) from None
    users: dict[bytes, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        try:
            if not sep:
                raise ValueError("expected USER:scrypt$...")
            _check_user(user)
            _ScryptHash.parse(encoded)
        except ValueError as e:
            raise ConfigError(key, f"{path} line {number}: {e}") from None
        name = user.encode("utf-8")
        if name in users:
            raise ConfigError(key, f"{path} line {number}: user {user!r} is listed twice")
        users[name] = encoded
    if not users:
        raise ConfigError(key, f"{path} holds no users")
    return users


@implementer(ICredentialsChecker)
class ScryptPasswordChecker:
    """A ``twisted.cred`` checker for user names and passwords against scrypt hashes.

    Runs scrypt in the reactor's thread pool. An unknown user costs as much as
    a known one (a dummy hash is checked), and digests are compared in constant
    time, so timing tells nothing about which users exist.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users: Mapping[bytes, str], reactor: Any) -> None:
        self._users = {name: _ScryptHash.parse(h) for name, h in users.items()}
        self._dummy = _ScryptHash.parse(hash_password(secrets.token_hex(16)))
        self._reactor = reactor

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        """Fire with the user name, or fail with ``UnauthorizedLogin``."""
        username: bytes = credentials.username
        password: bytes = credentials.password
        known = username in self._users
        entry = self._users.get(username, self._dummy)

        def check() -> bool:
            return entry.matches(password)

        d: Deferred[bool] = deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                              check)

        def verdict(ok: bool) -> bytes | tuple[()]:
            if ok and known:
                return username
            raise UnauthorizedLogin("wrong user name or password")

        return d.addCallback(verdict)


# -- public keys ----------------------------------------------------------------------

_KEY_TYPES: Final = ("ssh-", "ecdsa-", "sk-")


def load_authorized_keys(path: Path) -> list[keys.Key]:
    """Read the public keys of an OpenSSH ``authorized_keys`` file.

    Raises :class:`~gamews.errors.ConfigError` (``manhole.authorized_keys``) for an
    unreadable file, a line that is not a key, a line with key options
    (``from=``, ``command=``: not enforced here, so refused rather than ignored),
    or a file with no keys.
    """
    key = "manhole.authorized_keys"
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(key, f"cannot read {path}: {getattr(e, 'strerror', None) or e}"
                          ) from None
    found: list[keys.Key] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if not fields[0].startswith(_KEY_TYPES):
            raise ConfigError(key, f"{path} line {number}: key options are not supported; "
                                   "give 'TYPE BASE64 [COMMENT]' lines")
        if len(fields) < 2:
            raise ConfigError(key, f"{path} line {number}: not a public key")
        try:
            public: keys.Key = keys.Key.fromString(  # type: ignore[no-untyped-call]
                f"{fields[0]} {fields[1]}".encode("ascii"))
        except (keys.BadKeyError, ValueError, UnicodeEncodeError):
            raise ConfigError(key, f"{path} line {number}: not a public key") from None
        if not public.isPublic():  # type: ignore[no-untyped-call]
            raise ConfigError(key, f"{path} line {number}: not a public key")
        found.append(public)
    if not found:
        raise ConfigError(key, f"{path} holds no keys")
    return found


@implementer(IAuthorizedKeysDB)
class AuthorizedKeys:
    """The keys of one ``authorized_keys`` file, accepted for any user name
    (as ``sshd`` does for one account); for ``SSHPublicKeyChecker``."""

    def __init__(self, authorized: Iterable[keys.Key]) -> None:
        self.keys = tuple(authorized)

    def getAuthorizedKeys(self, username: bytes) -> Iterable[keys.Key]:
        """Every configured key, whatever ``username`` is."""
        return self.keys


# -- the host key -----------------------------------------------------------------------


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file at ``path`` with ``mode``, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_host_key(data_dir: Path) -> keys.Key:
    """Return the host key in ``data_dir``, generating an Ed25519 one on first use.

    A new key is written with mode 0600 (its public half beside it as
    ``.pub``); ``data_dir`` is created with mode 0700 if missing. An existing key
    that group or others can access is refused, as OpenSSH does.
    """
    key_name = "manhole.data_dir"
    path = data_dir / HOST_KEY_NAME
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            private = ed25519.Ed25519PrivateKey.generate()
            data = private.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.OpenSSH,
                                         serialization.NoEncryption())
            _write_private(path, data, 0o600)
            public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                       serialization.PublicFormat.OpenSSH)
            path.with_name(path.name + ".pub").write_bytes(public + b" gamews-manhole\n")
            log.info("manhole: generated a new host key in {path}", path=str(path))
        mode = path.stat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise ConfigError(key_name, f"host key {path} is accessible by others (mode "
                                        f"{stat.S_IMODE(mode):04o}); chmod 600 it")
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(key_name, f"cannot use host key {path}: {e.strerror or e}") from None
    try:
        key: keys.Key = keys.Key.fromString(data)  # type: ignore[no-untyped-call]
    except (keys.BadKeyError, keys.EncryptedKeyError, ValueError):
        raise ConfigError(key_name, f"{path} is not an unencrypted SSH private key") from None
    if key.isPublic():  # type: ignore[no-untyped-call]
        raise ConfigError(key_name, f"{path} is not an SSH private key")
    return key


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


class _GamewsManhole(ColoredManhole):
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
class _ManholeRealm(TerminalRealm):
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


class _ManholeTransport(SSHServerTransport):
    factory: _ManholeFactory

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        self.factory.transports.add(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        super().connectionLost(reason)
        self.factory.transport_lost(self)


class _ManholeFactory(ConchFactory):
    protocol = _ManholeTransport

    def __init__(self, portal: Portal, host_key: keys.Key) -> None:
        super().__init__(portal)  # type: ignore[no-untyped-call]
        self.host_key = host_key
        # ConchFactory's key dicts are class attributes: give this one its own.
        key_type: bytes = host_key.sshType()  # type: ignore[no-untyped-call]
        public: keys.Key = host_key.public()  # type: ignore[no-untyped-call]
        self.publicKeys = {key_type: public}  # type: ignore[dict-item]
        self.privateKeys = {key_type: host_key}  # type: ignore[dict-item]
        self.transports: set[_ManholeTransport] = set()
        self._gone: dict[_ManholeTransport, Deferred[None]] = {}

    def transport_lost(self, transport: _ManholeTransport) -> None:
        self.transports.discard(transport)
        waiter = self._gone.pop(transport, None)
        if waiter is not None:
            waiter.callback(None)

    def close_all(self) -> Deferred[None]:
        """Disconnect every SSH client; fire once they are gone."""
        waits: list[Deferred[None]] = []
        for transport in list(self.transports):
            waiter: Deferred[None] = Deferred()
            self._gone[transport] = waiter
            waits.append(waiter)
            transport.loseConnection()  # type: ignore[no-untyped-call]
        return DeferredList(waits).addCallback(lambda _: None)


# -- the service -----------------------------------------------------------------------


class ManholeService(Service):
    """Listens for SSH manhole clients while running; stopping it stops listening
    and disconnects every session."""

    def __init__(self, config: ManholeConfig, factory: _ManholeFactory, reactor: Any) -> None:
        self.config = config
        self.factory = factory
        digest: str = factory.host_key.fingerprint(  # type: ignore[no-untyped-call]
            keys.FingerprintFormats.SHA256_BASE64)
        self.host_key_fingerprint = f"SHA256:{digest.rstrip('=')}"
        """The host key's ``SHA256:...`` fingerprint, as ``ssh`` shows it."""
        self._reactor = reactor
        self._port: IListeningPort | None = None
        self._failure: Failure | None = None
        self._listening: Deferred[IListeningPort] | None = None
        self._waiters: list[Deferred[IAddress]] = []
        self.setName("manhole")  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        endpoint_text = self.config.endpoint
        if not is_loopback_endpoint(endpoint_text):
            log.warn("manhole: {endpoint} is not a loopback address: anyone who can reach it "
                     "may try to log in", endpoint=endpoint_text)
        self._port, self._failure = None, None
        endpoint = serverFromString(self._reactor, endpoint_text)
        self._listening = endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, self._listen_failed)

    def _listened(self, port: IListeningPort) -> None:
        self._port, self._listening = port, None
        log.info("manhole listening on {address} (host key {fingerprint})",
                 address=port.getHost(), fingerprint=self.host_key_fingerprint)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(port.getHost())

    def _listen_failed(self, failure: Failure) -> None:
        self._listening = None
        self._failure = failure
        log.error("manhole: cannot listen on {endpoint}: {reason}",
                  endpoint=self.config.endpoint, reason=failure.getErrorMessage())
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.errback(failure)

    def when_listening(self) -> Deferred[IAddress]:
        """Fire with the listening address once listening (or fail if it cannot)."""
        if self._port is not None:
            return succeed(self._port.getHost())
        if self._failure is not None:
            failed: Deferred[IAddress] = Deferred()
            failed.errback(self._failure)
            return failed
        waiter: Deferred[IAddress] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
        port, self._port = self._port, None
        stopping: list[Deferred[Any]] = [self.factory.close_all()]
        if port is not None:
            stopped = port.stopListening()
            if isinstance(stopped, Deferred):
                stopping.append(stopped)
        return DeferredList(stopping).addCallback(lambda _: None)


def make_manhole_service(
    config: ManholeConfig,
    namespace: Callable[[], dict[str, object]],
    *,
    reactor: object | None = None,
    banner: Callable[[Mapping[str, object]], str] | None = None,
) -> IService:
    """Build the SSH manhole service for ``config``.

    ``namespace()`` is called once per session; its dict is that session's
    globals (should it raise, the error is logged and the session gets a
    namespace holding only ``namespace_error``). ``banner(namespace)`` makes
    the text shown on login (default: :func:`default_banner`).

    Reads the credentials and loads (or creates) the host key now, raising
    :class:`~gamews.errors.ConfigError` for any problem, so a bad manhole
    config stops gamews before it listens anywhere. The result is a
    :class:`ManholeService`.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    checkers: list[ICredentialsChecker] = []
    if config.authorized_keys is not None:
        checkers.append(SSHPublicKeyChecker(AuthorizedKeys(
            load_authorized_keys(config.authorized_keys))))
    if config.password_file is not None:
        checkers.append(ScryptPasswordChecker(load_password_file(config.password_file),
                                              reactor))
    host_key = load_host_key(config.data_dir)
    make_banner = banner or default_banner

    def shell() -> insults.ServerProtocol:
        try:
            names = namespace()
        except Exception as e:  # still give the operator a shell to look around with
            log.failure("manhole: building the session namespace failed")
            names = {"namespace_error": f"{type(e).__name__}: {e}"}
        protocol: insults.ServerProtocol = insults.ServerProtocol(  # type: ignore[no-untyped-call]
            _GamewsManhole, names, make_banner(names))
        return protocol

    portal = Portal(_ManholeRealm(shell), checkers)
    return ManholeService(config, _ManholeFactory(portal, host_key), reactor)


# -- the config, redacted -------------------------------------------------------------

_SECRET_SUFFIXES: Final = ("password", "passwd", "secret", "token")


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().endswith(_SECRET_SUFFIXES)


def redact_config(obj: object) -> object:
    """A copy of a config tree safe to show: every :class:`~gamews.secret.Secret`,
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
            for port in registry.ports():
                listening = port.listening_port
                rows.append({
                    "endpoint": port.description,
                    "address": str(listening.getHost()) if listening is not None else None,
                    "paths": {
                        path: {"plugins": [lst.owner for lst in route.listeners()],
                               "children": len(route.children)}
                        for path, route in sorted(port.routes.items())
                    },
                    "pages": sorted(port.mounts),
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


# -- command line --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m gamews.manhole hash-password USER``: print a password file line.

    The password is asked for twice on a terminal, or read as the first line of
    standard input otherwise.
    """
    parser = argparse.ArgumentParser(prog="python -m gamews.manhole",
                                     description="Manhole helpers.")
    sub = parser.add_subparsers(dest="command", required=True)
    hp = sub.add_parser("hash-password", help="print a USER:scrypt$... line for password_file")
    hp.add_argument("user")
    args = parser.parse_args(argv)
    try:
        _check_user(args.user)
    except ValueError as e:
        parser.error(str(e))
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            sys.stderr.write("passwords differ\n")
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        sys.stderr.write("empty password refused\n")
        return 1
    sys.stdout.write(f"{args.user}:{hash_password(password)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
