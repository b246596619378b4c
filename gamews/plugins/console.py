"""The admin console: log in with a token, watch the game, run RCON commands by role.

Page ``/console``, socket ``/console/ws`` (``docs/protocol.md``). The token is the
first frame a browser sends (never in the URL); tokens and roles come from a file of
hashes (:mod:`gamews.auth`). Browsers must come from the page's own origin (the
registry's Origin check). Every command, refused ones included, is appended to a JSON
lines audit log that survives restarts; on a fan-out origin, commands typed on an edge are
checked here alike and their records name the edge (``"via"``).

Config::

    [plugin.console]
    tokens_file = "tokens.txt"          # required: USER:ROLE:sha256:HEX lines
    audit_log = "audit.jsonl"           # required: append-only JSON lines
    moderator_commands = ["status", "say", "kick", "kickid", "clientkick", "changelevel", "map"]
    rate = 2.0                          # commands per second per user...
    burst = 5                           # ...after a burst of this many (refused ones count)
    audit_max_bytes = 10485760          # the audit log is rotated past this size...
    audit_keep = 5                      # ...keeping this many old files (audit.jsonl.1, ...)
    login_timeout = 10                  # seconds a browser has to send its login frame
    lockout_after = 10                  # failed logins from one address before a lockout...
    lockout = 900                       # ...of this many seconds (delays of 1, 2, 4... s before)

Commands and their output are shown and stored with the values of sensitive settings
removed (:mod:`gamews.redact`); audit records hold at most ``MAX_COMMAND`` characters of a
command (longer ones are cut and marked). The audit log is created with mode 0600.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from twisted.application.service import IService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import LogLevel
from zope.interface import implementer

from gamews.api import (
    Envelope,
    IConnection,
    IGamewsPlugin,
    IPluginContext,
    IRequestHandler,
    LoginThrottle,
    Request,
    ThrottleConfig,
    TokenBucket,
    TokenStore,
    User,
    redact_command,
    setting,
    truncate,
)
from gamews.plugins.lines import console_text
from gamews.plugins.web import FrameSchema, WebPluginService

__all__ = ["AuditLog", "ConsolePlugin", "ConsoleService", "ConsoleSettings"]

MODERATOR_COMMANDS: Final = ("status", "say", "kick", "kickid", "clientkick", "changelevel",
                             "map")
MAX_COMMAND: Final = 512


class AuditLog:
    """An append-only JSON lines file (mode 0600): one object per command, rotated by size.

    Past ``max_bytes`` the file becomes ``NAME.1`` (older ones ``NAME.2`` …, ``keep`` of
    them kept) and a new file is started.
    """

    def __init__(self, path: Path, *, max_bytes: int = 10 * 1024 * 1024, keep: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep

    def write(self, **record: Any) -> None:
        """Append one record (flushed at once, so it survives a crash or restart)."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > self.max_bytes:
            self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        for n in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            newer = self.path if n == 1 else self.path.with_name(f"{self.path.name}.{n - 1}")
            if n == self.keep and older.exists():
                older.unlink()
            if newer.exists():
                newer.rename(older)
        if self.keep == 0:
            self.path.unlink()


@dataclass(frozen=True)
class ConsoleSettings:
    """The ``[plugin.console]`` table."""

    tokens_file: Path
    """``USER:ROLE:sha256:HEX`` lines (:mod:`gamews.auth`)."""
    audit_log: Path
    """The append-only JSON lines audit log."""
    moderator_commands: tuple[str, ...] = MODERATOR_COMMANDS
    """The commands a moderator may run (an admin may run any)."""
    rate: float = setting(2.0, above=0)
    """Commands per second per user..."""
    burst: float = setting(5.0, at_least=1)
    """...after a burst of this many (refused requests count too)."""
    audit_max_bytes: int = setting(10 * 1024 * 1024, above=0)
    """The audit log is rotated past this size..."""
    audit_keep: int = setting(5, at_least=0)
    """...keeping this many old files (``audit.jsonl.1`` ...)."""
    login_timeout: float = setting(10.0, above=0)
    """Seconds a browser has to send its login frame."""
    lockout_after: int = setting(10, at_least=1)
    """Failed logins from one address before a lockout..."""
    lockout: float = setting(900.0, at_least=0)
    """...of this many seconds (delays of 1, 2, 4 ... s before it)."""


@implementer(IRequestHandler)
class ConsoleService(WebPluginService):
    """The console plugin's service."""

    plugin = "console"
    frames: ClassVar[FrameSchema] = {"login": {"token": str}, "select": {"server": str},
              "command": {"command": str, "server": (str, type(None)),
                          "id": (str, int, float, type(None))}}
    link_detail = True

    def __init__(self, context: IPluginContext) -> None:
        super().__init__(context)
        settings: ConsoleSettings = context.settings
        self.tokens = TokenStore.load(settings.tokens_file, key="plugin.console.tokens_file")
        self.audit = AuditLog(settings.audit_log, max_bytes=settings.audit_max_bytes,
                              keep=settings.audit_keep)
        self.moderator_commands = settings.moderator_commands
        self.rate = settings.rate
        self.burst = settings.burst
        self.login_timeout = settings.login_timeout
        self.throttle = LoginThrottle(self.clock, ThrottleConfig(settings.lockout_after,
                                                                 settings.lockout))
        self._deadlines: dict[int, IDelayedCall] = {}
        self._limited: dict[str, int] = {}
        self.users: dict[int, User] = {}
        self._buckets: dict[str, TokenBucket] = {}

    # -- login -----------------------------------------------------------------

    def opened(self, child: IConnection) -> None:
        """Wait for the login frame (``login_timeout`` seconds); nothing is sent before it."""
        self._deadlines[child.id] = self.clock.callLater(self.login_timeout, self._deny, child,
                                                         "no login in time")

    def may_select(self, child: IConnection) -> bool:
        return child.id in self.users

    def follow(self, child: IConnection, server: str | None) -> None:
        """Follow ``server`` only if the user's token reaches it (a token scoped to some
        servers sees nothing of the others)."""
        user = self.users.get(child.id)
        if server is not None and (user is None or user.role_on(server) is None):
            self.send(child, {"type": "error", "reason": "your token does not reach " + server})
            return
        super().follow(child, server)

    def gone(self, child: IConnection) -> None:
        self.users.pop(child.id, None)
        deadline = self._deadlines.pop(child.id, None)
        if deadline is not None and deadline.active():
            deadline.cancel()

    def stopService(self) -> Deferred[None]:
        for deadline in self._deadlines.values():
            if deadline.active():
                deadline.cancel()
        self._deadlines.clear()
        return super().stopService()

    def _deny(self, child: IConnection, why: str) -> None:
        self._deadlines.pop(child.id, None)
        self.quiet.emit(LogLevel.warn, "console: login refused from {address}: {why}",
                        kind=(child.request.peer_host, why), address=child.request.peer_host,
                        why=why)
        self.send(child, {"type": "denied"})
        child.close(1008, "login refused")

    def bad_frame(self, child: IConnection, reason: str) -> None:
        """Before the login, any frame that is not one is refused (``denied``, 1008)."""
        if child.id not in self.users:
            self._deny(child, "the first frame was not a login")
        else:
            super().bad_frame(child, reason)

    def allowed(self, user: User) -> list[str]:
        """The commands ``user`` may run (``["*"]``: any)."""
        if user.role == "admin":
            return ["*"]
        return list(self.moderator_commands) if user.role == "moderator" else []

    def frame(self, child: IConnection, frame: dict[str, Any]) -> None:
        user = self.users.get(child.id)
        if user is None:
            if frame["type"] != "login":
                self._deny(child, "the first frame was not a login")
                return
            address = child.request.peer_host
            if self.throttle.wait(address) > 0:
                self._deny(child, f"too many failed logins, {self.throttle.wait(address):.0f} "
                                  "s to wait")
                return
            found = self.tokens.check(frame["token"], now=self.clock.seconds())
            if found is None:
                self.throttle.failed(address)
                self._deny(child, "wrong token")
                return
            self.throttle.succeeded(address)
            deadline = self._deadlines.pop(child.id, None)
            if deadline is not None and deadline.active():
                deadline.cancel()
            self.users[child.id] = found
            self.log.info("console: {user} ({role}) logged in from {peer}", user=found.name,
                          role=found.role, peer=child.request.peer)
            servers = found.servers(list(self.context.servers))
            self.send(child, {"type": "welcome", "user": found.name, "role": found.role,
                              "servers": servers, "allowed": self.allowed(found)})
            self.follow(child, servers[0] if servers else None)
        elif frame["type"] == "command":
            self.command(child, user, frame)
        else:
            super().frame(child, frame)

    # -- commands --------------------------------------------------------------

    def refusal(self, user: User, command: str) -> str | None:
        """Why ``user`` may not run ``command`` now, or None; every request, refused or
        not, takes from the user's rate limit."""
        now = self.clock.seconds()
        bucket = self._buckets.setdefault(user.name, TokenBucket(self.burst, 1 / self.rate, now))
        if bucket.take(now) > 0:
            return "rate limited"
        if not command.strip():
            return "empty command"
        if len(command) > MAX_COMMAND:
            return f"commands are at most {MAX_COMMAND} characters"
        if user.role == "viewer":
            return "viewers cannot run commands"
        if user.role == "moderator":
            if any(c in command for c in ";\r\n\0"):
                return "one command at a time"
            if command.split()[0].lower() not in self.moderator_commands:
                return f"not allowed for moderators: {truncate(command.split()[0], 32)}"
        return None

    def command(self, child: IConnection, user: User, frame: dict[str, Any]) -> None:
        command, server, ident = frame.get("command"), frame.get("server"), frame.get("id")
        if server is None:
            server = self.following.get(child.id)
        if not isinstance(command, str) or server not in self.context.servers:
            self.send(child, {"type": "result", "id": ident, "server": server,
                              "status": "refused", "output": "command needs a known server"})
            return
        assert isinstance(server, str)
        acting = user.on(server)  # the role on this server (a token may be scoped)
        if acting is None:
            self.audit.write(time=time.time(), user=user.name, role=None,
                             ip=child.request.peer_host, server=server, command=command,
                             status="refused")
            self.send(child, {"type": "result", "id": ident, "server": server,
                              "status": "refused",
                              "output": f"your token does not reach {server}"})
            return
        request = Request({"command": command}, child.request.peer_host,
                          self.connection_key(child), acting)
        self.submit(server, request).addCallback(
            lambda reply: self.send(child, {"type": "result", "id": ident, "server": server,
                                            "status": str(reply.get("status", "error")),
                                            "output": str(reply.get("output", ""))}))

    def apply(self, server: str, request: Request) -> Deferred[dict[str, Any]]:
        """Check the user's role and rate limit, run the command, audit it (naming the edge
        that forwarded it, if one did). A forwarded request's user is the one its token
        proof names in this instance's tokens file (whatever the edge's file says)."""
        command = request.body.get("command")
        user = request.user
        if request.via is not None:  # decided here: role, scope and expiry of this file
            verified = self.tokens.verify(request.proof, now=self.clock.seconds())
            user = None if verified is None else verified.on(server)
        if not isinstance(command, str) or server not in self.context.servers:
            return succeed({"status": "refused", "output": "command needs a known server"})
        record = {"time": time.time(), "user": None if user is None else user.name,
                  "role": None if user is None else user.role,
                  "ip": request.peer_host, "server": server,
                  "command": truncate(redact_command(command), MAX_COMMAND)}
        if request.via is not None:
            record["via"] = request.via

        def result(status: str, output: str) -> dict[str, Any]:
            self.audit.write(**record, status=status)
            return {"status": status, "output": redact_command(output)}

        if user is None:
            return succeed(result("refused", "unknown token, expired, or not for this server "
                                             "(the origin's tokens file)"))
        why = self.refusal(user, command)
        if why == "rate limited":
            # one record per burst of rate-limited requests: the next record counts them
            self._limited[user.name] = self._limited.get(user.name, 0) + 1
            if self._limited[user.name] > 1:
                return succeed({"status": "refused", "output": why})
        elif self._limited.get(user.name):
            record["rate_limited_before"] = self._limited.pop(user.name) - 1
        if why is not None:
            return succeed(result("refused", why))
        d: Deferred[str] = self.context.servers[server].rcon(command)
        return d.addCallbacks(lambda output: result("ok", output),
                              lambda f: result("error", f.getErrorMessage()))

    def unanswered(self, reason: str) -> dict[str, Any]:
        return {"status": "error", "output": reason}

    # -- the game's output -------------------------------------------------------

    def event(self, envelope: Envelope) -> None:
        self.broadcast(envelope.server, {"type": "console", "server": envelope.server,
                                         "time": envelope.received, "seq": envelope.seq,
                                         "line": console_text(envelope)})


@implementer(IGamewsPlugin)
class ConsolePlugin:
    """The admin console (``/console``)."""

    name = "console"
    description = "Admin console: log in with a token, watch the game, run RCON commands."
    settings_type = ConsoleSettings

    def make_service(self, context: IPluginContext) -> IService:
        return ConsoleService(context)
