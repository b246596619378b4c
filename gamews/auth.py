"""Admin console tokens: a file of hashed tokens with roles, checked in constant time.

The file holds one token per line (``#`` starts a comment)::

    USER:ROLE:sha256:HEX
    USER:ROLE:sha256:HEX:expires=20270105T120000Z
    USER:alpha=moderator,beta=viewer:sha256:HEX

``HEX`` is the SHA-256 of the token; ``ROLE`` is ``viewer``, ``moderator`` or ``admin`` on
every game server, or a role per game server (``SERVER=ROLE,...``: the token sees and acts
on those servers only, as Pterodactyl scopes its tokens per server); ``expires=`` (UTC,
``YYYYMMDDTHHMMSSZ``) ends the token.  Tokens are long random strings made by
``python -m gamews.auth new-token`` (see :func:`main`), which prints the token once; the file
itself holds no usable secret.  A plain hash suffices because tokens carry 256 bits of
randomness (unlike passwords, they cannot be guessed from a dictionary).

:class:`TokenStore` re-reads its file when it changes (on the next login), so a token added
or revoked with the tool takes effect without a restart; a file that became invalid is
logged and the tokens read before stay.

A fan-out edge forwards its users' requests to the origin with a :class:`TokenProof`, not a
claimed role: an HMAC of the request keyed by the token's stored form, which the origin
checks against its own file (:meth:`TokenStore.verify`), so the role (its scope and expiry
included) is decided there.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import hmac
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from twisted.logger import Logger

from gamews.errors import ConfigError

__all__ = ["ROLES", "TokenLine", "TokenProof", "TokenStore", "User", "hash_token", "new_token",
           "prove"]

ROLES: Final = ("viewer", "moderator", "admin")
_SERVER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_USER: Final = re.compile(r"[^:\s#][^:\s]{0,63}")
_EXPIRES: Final = re.compile(r"\d{8}T\d{6}Z")
_DURATION: Final = re.compile(r"(\d{1,6})([smhdw])")
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_log = Logger(namespace="gamews.auth")


@dataclass(frozen=True)
class User:
    """Who a token belongs to: ``role`` on every server, or (``scope``) a role per server.

    For a scoped user ``role`` is the highest of its roles (what a page shows); what it may
    do on one server is :meth:`on` that server's.
    """

    name: str
    role: str
    credential: str = field(default="", repr=False, compare=False)
    """The stored form of the token that logged in (set by :meth:`TokenStore.check`; empty
    otherwise): what an edge proves the token with (:func:`prove`). Never sent anywhere."""
    scope: tuple[tuple[str, str], ...] | None = None
    """``((server, role), ...)`` for a token limited to some servers, else ``None``."""
    expires: float | None = None
    """When the token ends (seconds since the epoch), or ``None``."""

    def role_on(self, server: str) -> str | None:
        """The user's role on ``server``, or ``None`` if its token does not reach it."""
        if self.scope is None:
            return self.role
        return dict(self.scope).get(server)

    def on(self, server: str) -> User | None:
        """This user as it acts on ``server`` (a plain role, no scope), or ``None``."""
        role = self.role_on(server)
        return None if role is None else User(self.name, role, credential=self.credential)

    def servers(self, every: Sequence[str]) -> list[str]:
        """The servers among ``every`` this user's token reaches."""
        return [s for s in every if self.role_on(s) is not None]


@dataclass(frozen=True)
class TokenProof:
    """That whoever sent ``message`` held a token: ``mac`` is :func:`prove` of it."""

    message: bytes
    mac: str


def hash_token(token: str) -> str:
    """The stored form of ``token``: ``sha256:HEX``."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def prove(credential: str, message: bytes) -> str:
    """The proof (hex HMAC-SHA256 of ``message`` keyed by ``credential``, a token's stored
    form) that the sender of ``message`` holds that token."""
    return hmac.new(credential.encode(), message, hashlib.sha256).hexdigest()


def new_token() -> str:
    """A fresh random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def format_expiry(when: float) -> str:
    """``YYYYMMDDTHHMMSSZ`` (UTC) for the tokens file."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))


def parse_roles(text: str) -> tuple[str, tuple[tuple[str, str], ...] | None]:
    """``ROLE`` or ``SERVER=ROLE,...`` to (shown role, scope); raises ``ValueError``."""
    if text in ROLES:
        return text, None
    scope: list[tuple[str, str]] = []
    for item in text.split(","):
        server, sep, role = item.partition("=")
        if not sep or not _SERVER.fullmatch(server) or role not in ROLES:
            raise ValueError(f"{text!r}: expected a role ({', '.join(ROLES)}) or "
                             "SERVER=ROLE,... (one role per game server)")
        if any(s == server for s, _ in scope):
            raise ValueError(f"{text!r}: server {server} given twice")
        scope.append((server, role))
    shown = max((role for _, role in scope), key=ROLES.index)
    return shown, tuple(scope)


def _roles_text(user: User) -> str:
    if user.scope is None:
        return user.role
    return ",".join(f"{server}={role}" for server, role in user.scope)


@dataclass(frozen=True)
class TokenLine:
    """One line of a tokens file: its user and the token's stored hash."""

    user: User
    digest: str

    @classmethod
    def parse(cls, line: str) -> TokenLine:
        """Parse ``USER:ROLES:sha256:HEX[:expires=...]``; raise ``ValueError`` saying why."""
        parts = line.split(":")
        if len(parts) < 4 or parts[2] != "sha256":
            raise ValueError("expected USER:ROLE:sha256:HEX[:expires=YYYYMMDDTHHMMSSZ]")
        name, roles, _, hexdigest, *extras = parts
        if not _USER.fullmatch(name):
            raise ValueError(f"bad user name {name!r}")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", hexdigest):
            raise ValueError("the hash must be 64 hex digits")
        role, scope = parse_roles(roles)
        expires: float | None = None
        for extra in extras:
            key, _, value = extra.partition("=")
            if key != "expires" or not _EXPIRES.fullmatch(value) or expires is not None:
                raise ValueError(f"unknown field {extra!r} (known: expires=YYYYMMDDTHHMMSSZ)")
            expires = float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
        return cls(User(name, role, scope=scope, expires=expires),
                   f"sha256:{hexdigest.lower()}")

    def text(self) -> str:
        """The line as written in the file."""
        expiry = "" if self.user.expires is None else f":expires={format_expiry(self.user.expires)}"
        return f"{self.user.name}:{_roles_text(self.user)}:{self.digest}{expiry}"


def read_lines(path: Path, key: str) -> list[TokenLine]:
    """Every token line of ``path``; a bad line is a :class:`ConfigError` naming ``key``,
    the file and the line."""
    try:
        text = path.read_text("utf-8")
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None
    lines: list[TokenLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            lines.append(TokenLine.parse(line))
        except ValueError as e:
            raise ConfigError(key, f"{path} line {number}: {e}") from None
    return lines


class TokenStore:
    """The users and their token hashes; :meth:`check` compares in constant time.

    Loaded from a file, it re-reads the file on :meth:`check` when the file changed (its
    size, modification time or inode), so tokens added or revoked need no restart.
    """

    def __init__(self, entries: list[TokenLine], *, path: Path | None = None,
                 key: str = "tokens_file") -> None:
        self._entries = entries
        self._path = path
        self._key = key
        self._signature = self._stat()

    @classmethod
    def load(cls, path: str | Path, *, key: str = "tokens_file") -> TokenStore:
        """Read a tokens file; a bad line is a :class:`ConfigError` naming ``key`` and the line."""
        p = Path(path)
        return cls(read_lines(p, key), path=p, key=key)

    def _stat(self) -> tuple[int, int, int, int] | None:
        if self._path is None:
            return None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def refresh(self) -> None:
        """Re-read the file if it changed; keep the tokens read before if it is now bad."""
        if self._path is None:
            return
        signature = self._stat()
        if signature == self._signature:
            return
        self._signature = signature
        try:
            entries = read_lines(self._path, self._key)
        except ConfigError as e:
            _log.error("tokens not reloaded, the old ones stay: {why}", why=str(e))
            return
        self._entries = entries
        _log.info("tokens reloaded from {path} ({n} users)", path=str(self._path),
                  n=len(entries))

    def check(self, token: str, *, now: float) -> User | None:
        """The user holding ``token`` (unexpired at ``now``), or None; every entry is
        compared, in constant time."""
        self.refresh()
        digest = hash_token(token).encode()
        found: User | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest.encode()) and found is None:
                found = replace(entry.user, credential=entry.digest)
        return self._unexpired(found, now)

    def verify(self, proof: TokenProof | None, *, now: float) -> User | None:
        """The user whose token made ``proof`` (:func:`prove`), unexpired at ``now``, or
        None; every entry is tried, in constant time."""
        if proof is None:
            return None
        self.refresh()
        given = proof.mac.encode("utf-8", "surrogatepass")
        found: User | None = None
        for entry in self._entries:
            if (hmac.compare_digest(given, prove(entry.digest, proof.message).encode())
                    and found is None):
                found = entry.user
        return self._unexpired(found, now)

    @staticmethod
    def _unexpired(user: User | None, now: float) -> User | None:
        if user is not None and user.expires is not None and user.expires <= now:
            _log.info("token of {user} expired at {when}", user=user.name,
                      when=format_expiry(user.expires))
            return None
        return user

    def users(self) -> list[User]:
        """Every token's user, in file order."""
        self.refresh()
        return [entry.user for entry in self._entries]

    def __repr__(self) -> str:
        return f"<TokenStore {len(self._entries)} users>"


# -- the command line -------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` to seconds; raise ``ValueError``."""
    m = _DURATION.fullmatch(text)
    if m is None or int(m[1]) == 0:
        raise ValueError(f"{text!r}: expected a duration such as 30d, 12h, 90m, 2w")
    return int(m[1]) * _SECONDS[m[2]]


def _write_lines(path: Path, lines: list[str]) -> None:
    """Replace ``path`` with ``lines`` at once (mode 0600), never half-written."""
    fd, temp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gamews.auth",
        description="Manage the console's tokens file (USER:ROLE:sha256:HEX lines).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    new = commands.add_parser(
        "new-token", help="make a token: the token goes to stdout alone, the file line to "
                          "stderr (or, with --file, into the file)")
    new.add_argument("user", help="the user's name (no ':' or spaces)")
    new.add_argument("role", help=f"{', '.join(ROLES)}; or SERVER=ROLE,... to limit the "
                                  "token to those game servers, with a role on each")
    new.add_argument("--expires", metavar="DURATION",
                     help="the token ends after this long (30d, 12h, 2w)")
    new.add_argument("--file", type=Path, help="append the line to this tokens file")
    listing = commands.add_parser("list", help="users, roles and expiry of a tokens file")
    listing.add_argument("file", type=Path)
    revoke = commands.add_parser("revoke", help="remove every token of a user")
    revoke.add_argument("user")
    revoke.add_argument("file", type=Path)
    expiring = commands.add_parser("expiring", help="tokens expired or ending soon")
    expiring.add_argument("file", type=Path)
    expiring.add_argument("--within", default="7d", metavar="DURATION",
                          help="how soon (default 7d)")
    return parser


def main(argv: list[str], *, now: float | None = None) -> int:
    """``python -m gamews.auth COMMAND ...``; returns the exit status (2: bad input)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    clock = time.time() if now is None else now

    def fail(reason: str) -> int:
        print(f"python -m gamews.auth {args.command}: error: {reason}", file=sys.stderr)
        return 2

    try:
        if args.command == "new-token":
            if not _USER.fullmatch(args.user):
                return fail(f"bad user name {args.user!r}: no ':', spaces or '#', at most 64 "
                            "characters")
            role, scope = parse_roles(args.role)
            expires = None if args.expires is None else clock + parse_duration(args.expires)
            token = new_token()
            line = TokenLine(User(args.user, role, scope=scope, expires=expires),
                             hash_token(token)).text()
            if args.file is not None:
                if args.file.exists():
                    read_lines(args.file, str(args.file))  # do not append to a broken file
                _append_line(args.file, line)
                print(f"added to {args.file}: {line}", file=sys.stderr)
            else:
                print(f"line for the tokens file: {line}", file=sys.stderr)
            print(token)
            return 0
        lines = read_lines(args.file, str(args.file))
        if args.command == "list":
            for entry in lines:
                print(_describe(entry.user, clock))
            return 0
        if args.command == "revoke":
            kept = [entry for entry in lines if entry.user.name != args.user]
            if len(kept) == len(lines):
                return fail(f"no token of {args.user!r} in {args.file}")
            _write_lines(args.file, _kept_text(args.file, args.user))
            print(f"revoked {len(lines) - len(kept)} token(s) of {args.user}; open sessions "
                  "stay until they close, new logins are refused", file=sys.stderr)
            return 0
        within = parse_duration(args.within)
        for entry in lines:
            if entry.user.expires is not None and entry.user.expires <= clock + within:
                print(_describe(entry.user, clock))
        return 0
    except ValueError as e:
        return fail(str(e))
    except ConfigError as e:
        return fail(e.message)


def _kept_text(path: Path, user: str) -> list[str]:
    """The file's lines (comments kept) without ``user``'s tokens."""
    kept = []
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and TokenLine.parse(line).user.name == user:
            continue
        kept.append(raw)
    return kept


def _describe(user: User, now: float) -> str:
    if user.expires is None:
        expiry = "never expires"
    elif user.expires <= now:
        expiry = f"EXPIRED {format_expiry(user.expires)}"
    else:
        expiry = f"expires {format_expiry(user.expires)}"
    return f"{user.name}\t{_roles_text(user)}\t{expiry}"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

