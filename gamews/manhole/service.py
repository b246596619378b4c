"""The manhole's service: the ``[manhole]`` config, the host key, the SSH factory
and :class:`ManholeService`, built by :func:`make_manhole_service`."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application.service import IService, Service
from twisted.conch.checkers import SSHPublicKeyChecker
from twisted.conch.insults import insults
from twisted.conch.manhole_ssh import ConchFactory
from twisted.conch.ssh import keys
from twisted.conch.ssh.transport import SSHServerTransport
from twisted.conch.ssh.userauth import SSHUserAuthServer
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from gamews.endpoints import (
    Listening,
    endpoint_setting,
    is_loopback_endpoint,
    normalize_endpoint,
)
from gamews.errors import ConfigError
from gamews.manhole.credentials import (
    AuthorizedKeys,
    ScryptPasswordChecker,
    load_authorized_keys,
    load_password_file,
)
from gamews.manhole.shell import GamewsManhole, ManholeRealm, default_banner
from gamews.quietlog import RepeatLimiter
from gamews.reactor import maybe_global_reactor
from gamews.throttle import LoginThrottle, ThrottleConfig, throttle_config

__all__ = ["DEFAULT_ENDPOINT", "HOST_KEY_NAME", "NO_CREDENTIALS", "ManholeConfig",
           "ManholeService", "load_host_key", "make_manhole_service"]

log = Logger(namespace="gamews.manhole")

DEFAULT_ENDPOINT: Final = "tcp:2222:interface=127.0.0.1"
"""Where the manhole listens unless told otherwise: loopback only."""
HOST_KEY_NAME: Final = "manhole_host_ed25519_key"
"""File name of the host key inside ``data_dir`` (its public half gets ``.pub``)."""
NO_CREDENTIALS: Final = "no credentials configured: set authorized_keys or password_file"
"""The message of the error for a manhole without credentials (key ``manhole``)."""

_KEYS: Final = ("endpoint", "authorized_keys", "password_file", "data_dir", "lockout_after",
                 "lockout")


# -- configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class ManholeConfig:
    """A validated ``[manhole]`` table. Building one without credentials raises
    :class:`gamews.errors.ConfigError` (``manhole: no credentials configured...``)."""

    endpoint: str = DEFAULT_ENDPOINT
    """Where to listen (strports syntax)."""
    authorized_keys: Path | None = None
    """An OpenSSH ``authorized_keys`` file; its keys may log in as any user name."""
    password_file: Path | None = None
    """A file of ``USER:scrypt$...`` lines (see :func:`hash_password`)."""
    data_dir: Path = Path("gamews-data")
    """Directory holding the host key (created with mode 0700 if missing)."""
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    """Failed passwords per address before a lockout, and its length (``lockout_after``,
    ``lockout``); delays of 1, 2, 4 … s come before it."""

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

        Raises :class:`gamews.errors.ConfigError` naming the key at fault.
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

        endpoint = endpoint_setting(table.get("endpoint", DEFAULT_ENDPOINT), "manhole.endpoint")
        data_dir = path("data_dir") or (base_dir if base_dir is not None else Path.cwd()) / (
            "gamews-data")
        return cls(endpoint=endpoint, authorized_keys=path("authorized_keys"),
                   password_file=path("password_file"), data_dir=data_dir,
                   throttle=throttle_config(table, "manhole"))


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


class ThrottledUserAuth(SSHUserAuthServer):
    """SSH user authentication whose password tries are throttled per peer address
    (:class:`gamews.throttle.LoginThrottle`): a throttled address is refused without a
    check; failures are logged at warning level with the address."""

    transport: _ManholeTransport

    def auth_password(self, packet: bytes) -> Deferred[Any]:
        factory = self.transport.factory
        socket: Any = self.transport.transport
        host = str(getattr(socket.getPeer(), "host", "unix"))
        if factory.throttle.wait(host) > 0:
            factory.quiet.emit(LogLevel.warn, "manhole: password refused from {address}: "
                               "too many failures", kind=host, address=host)
            return fail(UnauthorizedLogin("too many failures, try again later"))
        d: Deferred[Any] = super().auth_password(packet)  # type: ignore[no-untyped-call]

        def succeeded(result: Any) -> Any:
            factory.throttle.succeeded(host)
            return result

        def failed(failure: Failure) -> Failure:
            if failure.check(UnauthorizedLogin):
                factory.throttle.failed(host)
                factory.quiet.emit(LogLevel.warn, "manhole: wrong password from {address}",
                                   kind=("wrong", host), address=host)
            return failure

        return d.addCallbacks(succeeded, failed)


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

    def __init__(self, portal: Portal, host_key: keys.Key, *, clock: Any,
                 throttle: ThrottleConfig) -> None:
        super().__init__(portal)  # type: ignore[no-untyped-call]
        self.host_key = host_key
        self.services = {**self.services, b"ssh-userauth": ThrottledUserAuth}
        self.throttle = LoginThrottle(clock, throttle)
        self.quiet = RepeatLimiter(log)
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
        self._listening = Listening(reactor, config.endpoint, factory,
                                    on_listening=self._listened, on_failed=self._listen_failed)
        self.setName("manhole")  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        endpoint_text = self.config.endpoint
        if not is_loopback_endpoint(endpoint_text):
            log.warn("manhole: {endpoint} is not a loopback address: anyone who can reach it "
                     "may try to log in", endpoint=endpoint_text)
        self._listening.start()

    def _listened(self, port: IListeningPort) -> None:
        log.info("manhole listening on {address} (host key {fingerprint})",
                 address=port.getHost(), fingerprint=self.host_key_fingerprint)

    def _listen_failed(self, failure: Failure) -> None:
        log.error("manhole: cannot listen on {endpoint}: {reason}",
                  endpoint=self.config.endpoint, reason=failure.getErrorMessage())

    def when_listening(self) -> Deferred[IAddress]:
        """Fire with the listening address once listening (or fail if it cannot)."""
        return self._listening.when_listening()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        stopping = [self.factory.close_all(), self._listening.stop()]
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
    :class:`gamews.errors.ConfigError` for any problem, so a bad manhole
    config stops gamews before it listens anywhere. The result is a
    :class:`ManholeService`.
    """
    reactor = maybe_global_reactor(reactor)
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
            GamewsManhole, names, make_banner(names))
        return protocol

    portal = Portal(ManholeRealm(shell), checkers)
    factory = _ManholeFactory(portal, host_key, clock=reactor, throttle=config.throttle)
    return ManholeService(config, factory, reactor)
