"""The manhole's credentials: scrypt password hashes and the password file,
``authorized_keys`` public keys, and the ``twisted.cred`` checkers over them.

Passwords are checked in constant time in a thread, so a slow hash never blocks
the reactor; an unknown user costs as much as a known one. ``python -m
gamews.manhole hash-password USER`` (:func:`main`) prints a password file line.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import getpass
import hashlib
import hmac
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from twisted.conch.checkers import IAuthorizedKeysDB
from twisted.conch.ssh import keys
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from gamews.errors import ConfigError
from gamews.throttle import VerificationGate

__all__ = ["AuthorizedKeys", "ScryptPasswordChecker", "hash_password", "load_authorized_keys",
           "load_password_file", "main", "verify_password"]

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

    Raises :class:`gamews.errors.ConfigError` (``manhole.password_file``) for an
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


MAX_VERIFYING: Final = 2
"""Password verifications (scrypt) running at once at most."""


@implementer(ICredentialsChecker)
class ScryptPasswordChecker:
    """A ``twisted.cred`` checker for user names and passwords against scrypt hashes.

    Runs scrypt in the reactor's thread pool, at most :data:`MAX_VERIFYING` at once
    (each takes tens of MiB), the others waiting their turn. An unknown user costs as
    much as a known one (a dummy hash is checked), and digests are compared in constant
    time, so timing tells nothing about which users exist.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users: Mapping[bytes, str], reactor: Any) -> None:
        self._users = {name: _ScryptHash.parse(h) for name, h in users.items()}
        self._dummy = _ScryptHash.parse(hash_password(secrets.token_hex(16)))
        self._reactor = reactor
        self.gate = VerificationGate(MAX_VERIFYING)

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        """Fire with the user name, or fail with ``UnauthorizedLogin``."""
        username: bytes = credentials.username
        password: bytes = credentials.password
        known = username in self._users
        entry = self._users.get(username, self._dummy)

        def check() -> bool:
            return entry.matches(password)

        def verify() -> Deferred[bool]:
            return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), check)

        d: Deferred[bool] = self.gate.run(verify)

        def verdict(ok: bool) -> bytes | tuple[()]:
            if ok and known:
                return username
            raise UnauthorizedLogin("wrong user name or password")

        return d.addCallback(verdict)


# -- public keys ----------------------------------------------------------------------

_KEY_TYPES: Final = ("ssh-", "ecdsa-", "sk-")


def load_authorized_keys(path: Path) -> list[keys.Key]:
    """Read the public keys of an OpenSSH ``authorized_keys`` file.

    Raises :class:`gamews.errors.ConfigError` (``manhole.authorized_keys``) for an
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
