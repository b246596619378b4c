"""Admin console tokens: a file of hashed tokens with roles, checked in constant time.

The file holds one token per line, ``USER:ROLE:sha256:HEX`` (``#`` starts a comment),
where ``HEX`` is the SHA-256 of the token. Tokens are long random strings made by
``python -m gamews.auth new-token USER ROLE``, which prints the token once (give it to
the user) and the line to add to the file; the file itself holds no usable secret.
A plain hash suffices because tokens carry 256 bits of randomness (unlike passwords,
they cannot be guessed from a dictionary). Roles: ``viewer``, ``moderator``, ``admin``.

A fan-out edge forwards its users' requests to the origin with a :class:`TokenProof`, not a
claimed role: an HMAC of the request keyed by the token's stored form, which the origin
checks against its own file (:meth:`TokenStore.verify`), so the role is decided there.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gamews.errors import ConfigError

__all__ = ["ROLES", "TokenProof", "TokenStore", "User", "hash_token", "new_token", "prove"]

ROLES: Final = ("viewer", "moderator", "admin")


@dataclass(frozen=True)
class User:
    """Who a token belongs to."""

    name: str
    role: str
    credential: str = field(default="", repr=False, compare=False)
    """The stored form of the token that logged in (set by :meth:`TokenStore.check`; empty
    otherwise): what an edge proves the token with (:func:`prove`). Never sent anywhere."""


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


class TokenStore:
    """The users and their token hashes; :meth:`check` compares in constant time."""

    def __init__(self, entries: list[tuple[User, str]]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, path: str | Path, *, key: str = "tokens_file") -> TokenStore:
        """Read a tokens file; a bad line is a :class:`ConfigError` naming ``key`` and the line."""
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as e:
            raise ConfigError(key, f"cannot read {p}: {e.strerror}") from None
        entries: list[tuple[User, str]] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(":")
            if (len(parts) != 4 or not parts[0] or parts[1] not in ROLES
                    or parts[2] != "sha256" or len(parts[3]) != 64):
                raise ConfigError(key, f"{p} line {number}: expected USER:ROLE:sha256:HEX "
                                       f"with ROLE one of {', '.join(ROLES)}")
            entries.append((User(parts[0], parts[1]), f"sha256:{parts[3].lower()}"))
        return cls(entries)

    def check(self, token: str) -> User | None:
        """The user holding ``token``, or None; every entry is compared, in constant time."""
        digest = hash_token(token).encode()
        found: User | None = None
        for user, stored in self._entries:
            if hmac.compare_digest(digest, stored.encode()) and found is None:
                found = User(user.name, user.role, stored)
        return found

    def verify(self, proof: TokenProof | None) -> User | None:
        """The user whose token made ``proof`` (:func:`prove`), or None; every entry is
        tried, in constant time."""
        if proof is None:
            return None
        given = proof.mac.encode("utf-8", "surrogatepass")
        found: User | None = None
        for user, stored in self._entries:
            if hmac.compare_digest(given, prove(stored, proof.message).encode()) and found is None:
                found = user
        return found

    def __repr__(self) -> str:
        return f"<TokenStore {len(self._entries)} users>"


def main(argv: list[str]) -> int:
    """``python -m gamews.auth new-token USER ROLE``."""
    if len(argv) != 3 or argv[0] != "new-token" or argv[2] not in ROLES or ":" in argv[1]:
        print(f"usage: python -m gamews.auth new-token USER {{{','.join(ROLES)}}}",
              file=sys.stderr)
        return 2
    token = new_token()
    print(f"token (give it to {argv[1]}; it is not stored): {token}")
    print(f"line for the tokens file: {argv[1]}:{argv[2]}:{hash_token(token)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
