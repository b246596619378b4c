"""Drive Debian's OpenSSH client (``ssh``, ``ssh-keyscan``) from trial tests.

Everything runs as a child process of the reactor (``spawnProcess``) with a
time limit; nothing sleeps. Keys are generated per test, never stored in the
repository.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

__all__ = ["END_MARK", "SSHProcess", "SSHResult", "make_client_key", "run_ssh_shell",
           "ssh_keyscan", "ssh_program", "start_ssh"]

END_MARK = b"===end"
"""What the last line a session types prints; the input echo cannot contain it."""
_END_LINE = 'print("=" * 3 + "end")'


def ssh_program(name: str = "ssh") -> str:
    """The path of an OpenSSH client program, or an AssertionError saying how to get it."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} not found: apt-get install -y openssh-client")
    return path


def make_client_key(directory: Path, name: str = "id_ed25519") -> tuple[Path, str]:
    """Write a fresh Ed25519 private key (mode 0600, as ssh demands) under
    ``directory``; return its path and its ``authorized_keys`` line."""
    private = ed25519.Ed25519PrivateKey.generate()
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption()))
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
    return path, public.decode("ascii") + f" test-{name}"


@dataclass
class SSHResult:
    """How an ``ssh`` run ended and what it printed."""

    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    signal: int | None = field(default=None)


class SSHProcess(ProcessProtocol):
    """A running ``ssh``: collects its output, types into it, and (unless told to
    stay) leaves the shell with Ctrl-D once :data:`END_MARK` shows."""

    def __init__(self, reactor: Any, feed: bytes | None, timeout: float,
                 leave_at_end: bool = True) -> None:
        self.reactor = reactor
        self.feed = feed
        self.timeout = timeout
        self.out = bytearray()
        self.err = bytearray()
        self.finished: Deferred[SSHResult] = Deferred()
        """Fires with the :class:`SSHResult` when ``ssh`` exits."""
        self.ended = not leave_at_end
        self.timed_out = False
        self.timer: Any = None
        self._waiting: list[tuple[bytes, Deferred[None]]] = []

    def type_line(self, line: str) -> None:
        """Type ``line`` and Enter into the shell."""
        assert self.transport is not None
        self.transport.write(line.encode() + b"\r")

    def close_stdin(self) -> None:
        """Close ssh's standard input (the client then sends EOF on the channel)."""
        assert self.transport is not None
        self.transport.closeStdin()

    def wait_for(self, text: bytes) -> Deferred[None]:
        """Fire once ``text`` has appeared in the output (at once if it already has)."""
        d: Deferred[None] = Deferred()
        if text in self.out:
            d.callback(None)
        else:
            self._waiting.append((text, d))
        return d

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.timer = self.reactor.callLater(self.timeout, self._kill)
        if self.feed is None:
            self.transport.closeStdin()
        else:
            self.transport.write(self.feed)

    def _kill(self) -> None:
        self.timed_out = True
        if self.transport is not None:
            self.transport.signalProcess("KILL")

    def outReceived(self, data: bytes) -> None:
        self.out += data
        waiting, self._waiting = self._waiting, []
        for text, d in waiting:
            if text in self.out:
                d.callback(None)
            else:
                self._waiting.append((text, d))
        if self.feed is not None and not self.ended and END_MARK in self.out:
            self.ended = True
            assert self.transport is not None
            self.transport.write(b"\x04")  # Ctrl-D on an empty line: leave the manhole

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        value = reason.value
        code: int | None = None
        signal: int | None = None
        if isinstance(value, ProcessDone):
            code = 0
        elif isinstance(value, ProcessTerminated):
            code, signal = value.exitCode, value.signal
        self.finished.callback(SSHResult(code, bytes(self.out), bytes(self.err),
                                         self.timed_out, signal))


def _base_args(port: int, home: Path) -> list[str]:
    return [
        ssh_program(), "-F", "/dev/null", "-p", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        "-o", f"IdentityAgent={'none'}", "-o", "IdentitiesOnly=yes",
    ]


def run_ssh_shell(
    reactor: Any,
    port: int,
    lines: list[str],
    *,
    home: Path,
    user: str = "operator",
    key: Path | None = None,
    password: str | None = None,
    command: str | None = None,
    timeout: float = 20.0,
) -> Deferred[SSHResult]:
    """Run ``ssh -tt`` against 127.0.0.1:``port`` and type ``lines`` into the shell.

    Logs in with ``key`` (public key only, BatchMode) or ``password`` (through
    an ``SSH_ASKPASS`` script, so no ``sshpass`` is needed). A final line
    printing :data:`END_MARK` is added; when it shows, Ctrl-D ends the session.
    With ``command``, runs it instead of a shell and types nothing.
    """
    return start_ssh(reactor, port, lines, home=home, user=user, key=key, password=password,
                     command=command, timeout=timeout).finished


def start_ssh(
    reactor: Any,
    port: int,
    lines: list[str],
    *,
    home: Path,
    user: str = "operator",
    key: Path | None = None,
    password: str | None = None,
    command: str | None = None,
    timeout: float = 20.0,
    leave_at_end: bool = True,
) -> SSHProcess:
    """Start ``ssh`` as :func:`run_ssh_shell` does and return the running process;
    with ``leave_at_end=False`` the session stays open after :data:`END_MARK`."""
    args = _base_args(port, home)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    if key is not None:
        args += ["-i", str(key), "-o", "BatchMode=yes",
                 "-o", "PreferredAuthentications=publickey"]
    else:
        assert password is not None
        askpass = home / "askpass.sh"
        secret = home / "askpass.secret"
        secret.write_text(password + "\n")
        askpass.write_text(f"#!/bin/sh\nexec cat '{secret}'\n")
        askpass.chmod(0o700)
        args += ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                 "-o", "NumberOfPasswordPrompts=1"]
        env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force")
    feed: bytes | None
    if command is None:
        args += ["-tt", f"{user}@127.0.0.1"]
        feed = b"".join(line.encode() + b"\r" for line in [*lines, _END_LINE])
    else:
        args += ["-T", f"{user}@127.0.0.1", command]
        feed = None
    proto = SSHProcess(reactor, feed, timeout, leave_at_end)
    reactor.spawnProcess(proto, args[0], args, env=env, usePTY=False)
    return proto


def ssh_keyscan(reactor: Any, port: int, *, timeout: float = 20.0) -> Deferred[SSHResult]:
    """Run ``ssh-keyscan -t ed25519`` against 127.0.0.1:``port``."""
    args = [ssh_program("ssh-keyscan"), "-T", "10", "-t", "ed25519", "-p", str(port),
            "127.0.0.1"]
    proto = SSHProcess(reactor, None, timeout)
    reactor.spawnProcess(proto, args[0], args,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, usePTY=False)
    return proto.finished
