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
    burst = 5                           # ...after a burst of this many
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from twisted.application.service import IService
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from gamews.api import (
    Envelope,
    IConnection,
    IGamewsPlugin,
    IPluginContext,
    IRequestHandler,
    Request,
    TokenBucket,
    TokenStore,
    User,
    setting,
)
from gamews.plugins.lines import console_text
from gamews.plugins.web import WebPluginService

__all__ = ["AuditLog", "ConsolePlugin", "ConsoleService", "ConsoleSettings"]

MODERATOR_COMMANDS: Final = ("status", "say", "kick", "kickid", "clientkick", "changelevel",
                             "map")
MAX_COMMAND: Final = 512


class AuditLog:
    """An append-only JSON lines file: one object per command."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **record: Any) -> None:
        """Append one record (flushed at once, so it survives a crash or restart)."""
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


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
    """...after a burst of this many."""


@implementer(IRequestHandler)
class ConsoleService(WebPluginService):
    """The console plugin's service."""

    plugin = "console"
    link_detail = True

    def __init__(self, context: IPluginContext) -> None:
        super().__init__(context)
        settings: ConsoleSettings = context.settings
        self.tokens = TokenStore.load(settings.tokens_file, key="plugin.console.tokens_file")
        self.audit = AuditLog(settings.audit_log)
        self.moderator_commands = settings.moderator_commands
        self.rate = settings.rate
        self.burst = settings.burst
        self.users: dict[int, User] = {}
        self._buckets: dict[str, TokenBucket] = {}

    # -- login -----------------------------------------------------------------

    def opened(self, child: IConnection) -> None:
        """Wait for the login frame; nothing is sent before it."""

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

    def allowed(self, user: User) -> list[str]:
        """The commands ``user`` may run (``["*"]``: any)."""
        if user.role == "admin":
            return ["*"]
        return list(self.moderator_commands) if user.role == "moderator" else []

    def frame(self, child: IConnection, frame: dict[str, Any]) -> None:
        user = self.users.get(child.id)
        if user is None:
            token = frame.get("token")
            found = (self.tokens.check(token, now=self.clock.seconds())
                     if frame["type"] == "login" and isinstance(token, str) else None)
            if found is None:
                self.log.info("console: login refused from {peer}", peer=child.request.peer)
                self.send(child, {"type": "denied"})
                child.close(1008, "login refused")
                return
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
        """Why ``user`` may not run ``command`` now, or None."""
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
                return f"not allowed for moderators: {command.split()[0]}"
        now = self.clock.seconds()
        bucket = self._buckets.setdefault(user.name, TokenBucket(self.burst, 1 / self.rate, now))
        if bucket.take(now) > 0:
            return "rate limited"
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
                  "ip": request.peer_host, "server": server, "command": command}
        if request.via is not None:
            record["via"] = request.via

        def result(status: str, output: str) -> dict[str, Any]:
            self.audit.write(**record, status=status)
            return {"status": status, "output": output}

        if user is None:
            return succeed(result("refused", "unknown token, expired, or not for this server "
                                             "(the origin's tokens file)"))
        why = self.refusal(user, command)
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
