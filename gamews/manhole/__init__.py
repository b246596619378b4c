"""The manhole: an authenticated SSH shell (a Python REPL) into the running service.

Built the Twisted way, from ``twisted.conch.manhole_ssh``: a
``ConchFactory`` whose ``Portal`` holds a ``TerminalRealm`` and the configured
credential checkers; each SSH session gets a
``twisted.conch.manhole.ColoredManhole`` over a namespace built afresh for
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

The package: :mod:`gamews.manhole.credentials` (password hashes, the password
file, ``authorized_keys`` and their ``twisted.cred`` checkers),
:mod:`gamews.manhole.shell` (the REPL, its session namespace, the redacted
config) and :mod:`gamews.manhole.service` (the ``[manhole]`` config, the host
key, the SSH factory and the service).

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
``KEY`` (32 bytes) in standard base64: scrypt (RFC 7914) from ``hashlib``,
no extra dependency. Passwords are checked in constant time in a thread, so a
slow hash never blocks the reactor.
"""

from gamews.manhole.credentials import (
    AuthorizedKeys,
    ScryptPasswordChecker,
    hash_password,
    load_authorized_keys,
    load_password_file,
    main,
    verify_password,
)
from gamews.manhole.service import (
    DEFAULT_ENDPOINT,
    HOST_KEY_NAME,
    NO_CREDENTIALS,
    ManholeConfig,
    ManholeService,
    load_host_key,
    make_manhole_service,
)
from gamews.manhole.shell import REDACTED, default_banner, redact_config, service_namespace

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
    "load_authorized_keys",
    "load_host_key",
    "load_password_file",
    "main",
    "make_manhole_service",
    "redact_config",
    "service_namespace",
    "verify_password",
]
