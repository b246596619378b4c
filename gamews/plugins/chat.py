"""The web chat: browsers see the game's chat and key events live and write to the game.

Page ``/chat``, socket ``/chat/ws`` (``docs/protocol.md``). A browser line goes to the
game as RCON ``say "(web) NAME: TEXT"``, cleaned by :mod:`gamews.rcon.commands`. On
Source servers the game logs it back as a console chat line, which is shown (once) as a
``web`` line; Quake 3 servers never log an rcon ``say``, so there the line is shown
when the RCON reply confirms it.

Config::

    [plugin.chat]
    backlog = 50          # lines replayed to a browser that joins late
    rate = 1.0            # lines per second per connection and per address...
    burst = 3             # ...after a burst of this many
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from twisted.application.service import IService
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from gamews.api import (
    Envelope,
    IConnection,
    IGamewsPlugin,
    IPluginContext,
    IRequestHandler,
    ISettingsReloadable,
    Request,
    TokenBucket,
    clean_text,
    say,
    setting,
)
from gamews.plugins.lines import WEB_PREFIX, line_of
from gamews.plugins.web import FrameSchema, WebPluginService

__all__ = ["ChatPlugin", "ChatService", "ChatSettings"]

MAX_NAME: Final = 24
MAX_TEXT: Final = 120


@dataclass(frozen=True)
class ChatSettings:
    """The ``[plugin.chat]`` table."""

    backlog: int = setting(50, at_least=0)
    """Lines replayed to a browser that joins late."""
    rate: float = setting(1.0, above=0)
    """Lines per second per connection and per address..."""
    burst: float = setting(3.0, at_least=1)
    """...after a burst of this many."""


@implementer(IRequestHandler, ISettingsReloadable)
class ChatService(WebPluginService):
    """The chat plugin's service."""

    plugin = "chat"
    public = True
    frames: ClassVar[FrameSchema] = {"select": {"server": str},
                                     "say": {"name": str, "text": str}}

    def __init__(self, context: IPluginContext) -> None:
        super().__init__(context)
        settings: ChatSettings = context.settings
        self.backlog_size = settings.backlog
        self.rate = settings.rate
        self.burst = settings.burst
        self.backlogs: dict[str, deque[dict[str, Any]]] = {}
        self.last_seq: dict[str, int] = {}
        self._per_child: dict[str, TokenBucket] = {}
        self._per_host: dict[str, TokenBucket] = {}
        self._seeded: dict[str, int] = {}
        self.runs: dict[str, int] = {}
        """The run (numbering) of each server's seqs, as last announced."""

    def reload_settings(self, settings: ChatSettings) -> None:
        """New rate limits, at once (every connection's and address's allowance starts
        afresh), and backlog size (the newest lines are kept)."""
        self.rate, self.burst = settings.rate, settings.burst
        self._per_child.clear()
        self._per_host.clear()
        if settings.backlog != self.backlog_size:
            self.backlog_size = settings.backlog
            self.backlogs = {server: deque(lines, maxlen=self.backlog_size)
                             for server, lines in self.backlogs.items()}

    def joined(self, child: IConnection, server: str) -> None:
        if server not in self.backlogs:
            self._seed(server)
        self.send(child, self._backlog_frame(server))

    def _backlog_frame(self, server: str) -> dict[str, Any]:
        state = self.context.events.state(server)
        run = self.runs.setdefault(server, state.run if state is not None else 0)
        return {"type": "backlog", "server": server, "run": run,
                "lines": list(self.backlogs.get(server, ()))}

    def _new_run(self, server: str) -> None:
        """If ``server``'s numbering started again (the origin restarted), say so to its
        followers: a fresh ``backlog`` frame with the new ``run``."""
        state = self.context.events.state(server)
        if state is not None and self.runs.setdefault(server, state.run) != state.run:
            self.runs[server] = state.run
            self.broadcast(server, self._backlog_frame(server))

    def _seed(self, server: str, before: int | None = None) -> None:
        """A first backlog from the match state's chat and kill feed: the lines of events
        this plugin never saw (a fan-out edge that started from the origin's snapshot),
        those before the event ``before`` (default: all of them)."""
        backlog = self.backlogs[server] = deque(maxlen=self.backlog_size)
        state = self.events.state(server)
        if state is None or state.seq == 0:
            return
        mark = state.seq if before is None else before - 1
        for envelope in sorted((*state.chat, *state.kill_feed), key=lambda e: e.seq):
            line = line_of(envelope)
            if line is not None and envelope.seq <= mark:
                backlog.append(line)
        self._seeded[server] = mark

    def _already_seeded(self, server: str, seq: int) -> bool:
        """Whether the event ``seq`` came before the seeded backlog (so it is in it, or older
        than it); false from the first later event on, or after the state was replaced."""
        mark = self._seeded.get(server)
        if mark is None:
            return False
        state = self.events.state(server)
        if seq <= mark and state is not None and state.seq >= mark:
            return True
        del self._seeded[server]
        return False

    def gone(self, child: IConnection) -> None:
        self._per_child.pop(self.connection_key(child), None)

    def event(self, envelope: Envelope) -> None:
        if envelope.server not in self.backlogs:  # seeded first, whatever comes first
            self._seed(envelope.server, before=envelope.seq)
        self._new_run(envelope.server)
        if self._already_seeded(envelope.server, envelope.seq):
            return
        self.last_seq[envelope.server] = envelope.seq
        line = line_of(envelope)
        if line is not None:
            self.post(envelope.server, line)

    def post(self, server: str, line: dict[str, Any]) -> None:
        """Add a line to ``server``'s backlog and send it to its followers."""
        if server not in self.backlogs:
            self._seed(server)
        self.backlogs[server].append(line)
        self.broadcast(server, {"type": "line", "server": server, "line": line})

    def _limited(self, request: Request) -> bool:
        now = self.clock.seconds()
        if len(self._per_host) > 10_000:  # forget addresses whose bucket refilled
            self._per_host = {h: b for h, b in self._per_host.items() if not b.full(now)}
        if len(self._per_child) > 10_000:  # forwarded connections are never seen to close
            self._per_child = {c: b for c, b in self._per_child.items() if not b.full(now)}
        buckets = (
            self._per_child.setdefault(request.connection,
                                       TokenBucket(self.burst, 1 / self.rate, now)),
            self._per_host.setdefault(request.peer_host,
                                      TokenBucket(self.burst, 1 / self.rate, now)),
        )
        return any(bucket.take(now) > 0 for bucket in buckets)

    def frame(self, child: IConnection, frame: dict[str, Any]) -> None:
        if frame["type"] != "say":
            super().frame(child, frame)
            return
        server = self.following.get(child.id)
        raw_name, raw_text = frame.get("name"), frame.get("text")
        if server is None or not isinstance(raw_name, str) or not isinstance(raw_text, str):
            self.send(child, {"type": "error", "reason": "say needs a name and a text"})
            return
        request = Request({"name": raw_name, "text": raw_text}, child.request.peer_host,
                          self.connection_key(child))
        if self._limited(request):  # here, before any forwarding (an edge protects itself)
            self.send(child, {"type": "error", "reason": "rate limited"})
            return

        def replied(reply: dict[str, Any]) -> None:
            if "error" in reply:
                self.send(child, {"type": "error", "reason": str(reply["error"])})
            elif reply.get("kind") == "quake3":
                # Quake 3 servers do not log an rcon say: show it from the reply, as late
                # as the public view shows the game
                line = {"seq": self.last_seq.get(server, 0), "time": self.clock.seconds(),
                        "kind": "web", "source": "web", "name": reply.get("name"),
                        "text": reply.get("text"), "team": None, "team_only": False,
                        "dead": False}
                if self.context.spectator_delay > 0:
                    self.clock.callLater(self.context.spectator_delay, self.post, server, line)
                else:
                    self.post(server, line)

        self.submit(server, request).addCallback(replied)

    def apply(self, server: str, request: Request) -> Deferred[dict[str, Any]]:
        """Clean the line, rate-limit it if forwarded (per connection and per address; a
        local line was limited in :meth:`frame`), say it."""
        raw_name, raw_text = request.body.get("name"), request.body.get("text")
        name = clean_text(str(raw_name or ""), max_length=MAX_NAME).replace(":", "").strip()
        text = clean_text(str(raw_text or ""), max_length=MAX_TEXT).strip()
        game = self.context.servers.get(server)
        if request.via is not None and self._limited(request):  # refused lines count too
            return succeed({"error": "rate limited"})
        if not name or not text or game is None:
            return succeed({"error": "say needs a name and a text"})
        d: Deferred[str] = game.rcon(say(f"{WEB_PREFIX}{name}: {text}"))
        return d.addCallbacks(
            lambda _: {"ok": True, "kind": game.kind, "name": name, "text": text},
            lambda f: {"error": f"the game did not take it: {f.getErrorMessage()}"})

    def unanswered(self, reason: str) -> dict[str, Any]:
        return {"error": f"the game did not take it: {reason}"}


@implementer(IGamewsPlugin)
class ChatPlugin:
    """The web chat (``/chat``)."""

    name = "chat"
    description = "Web chat: the game's chat and events live; browsers write to the game."
    settings_type = ChatSettings

    def make_service(self, context: IPluginContext) -> IService:
        return ChatService(context)
