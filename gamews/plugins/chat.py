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

import re
from collections import deque
from typing import Any, ClassVar, Final

from twisted.application.service import IService
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from gamews.api import (
    IConnection,
    IGamewsPlugin,
    IPluginContext,
    IRequestHandler,
    Request,
    TokenBucket,
    clean_text,
    say,
)
from gamews.plugins.web import FrameSchema, WebPluginService

__all__ = ["ChatPlugin", "ChatService", "line_of"]

WEB_PREFIX: Final = "(web) "
MAX_NAME: Final = 24
MAX_TEXT: Final = 120
_WEB_LINE = re.compile(r"\(web\) (?P<name>[^:]{1,24}): (?P<text>.*)", re.DOTALL)


def _name(player: Any) -> str:
    return str(player.get("name") or "?") if isinstance(player, dict) else "?"


def _team(player: Any) -> str | None:
    team = player.get("team") if isinstance(player, dict) else None
    return team if isinstance(team, str) else None


def line_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The chat page's line for one event (JSON schema of :mod:`gamews.events`), or None."""
    kind = event.get("type")
    base = {"seq": event.get("seq"), "time": event.get("received")}
    if kind == "chat":
        player = event.get("player") or {}
        text = str(event.get("text", ""))
        if isinstance(player, dict) and player.get("id") == "console":
            match = _WEB_LINE.fullmatch(text)
            if match:
                return {**base, "kind": "web", "source": "web", "name": match["name"],
                        "text": match["text"], "team": None, "team_only": False, "dead": False}
            return {**base, "kind": "chat", "name": "Console", "team": None, "text": text,
                    "team_only": False, "dead": False}
        return {**base, "kind": "chat", "name": _name(player), "team": _team(player),
                "text": text, "team_only": bool(event.get("team")),
                "dead": bool(event.get("dead"))}
    sentence: str | None = None
    if kind == "player_connected":
        sentence = f"{_name(event.get('player'))} joined the game"
        kind = "connected"
    elif kind == "player_disconnected":
        reason = event.get("reason")
        sentence = f"{_name(event.get('player'))} left the game"
        if reason:
            sentence += f" ({reason})"
        kind = "disconnected"
    elif kind == "kill":
        sentence = (f"{_name(event.get('killer'))} killed {_name(event.get('victim'))} with "
                f"{event.get('weapon')}" + (" (headshot)" if event.get("headshot") else ""))
    elif kind == "round_start":
        sentence = "Round started"
    elif kind == "round_end":
        winner = event.get("winner")
        sentence = "Round over" + (f": {winner} win" if winner else "")
    elif kind == "map_change" and event.get("phase") != "loading":
        sentence = f"Map changed to {event.get('map')}"
    elif kind == "team_score":
        sentence = f"Team {event.get('team')} scored {event.get('score')}"
    elif kind == "match_end":
        sentence = "Match over" + (f" ({event.get('score')})" if event.get("score") else "")
    if sentence is None:
        return None
    return {**base, "kind": "event", "event": kind, "text": sentence, "name": None,
            "team": None}


@implementer(IRequestHandler)
class ChatService(WebPluginService):
    """The chat plugin's service."""

    plugin = "chat"
    public = True
    frames: ClassVar[FrameSchema] = {"select": {"server": str},
                                     "say": {"name": str, "text": str}}

    def __init__(self, context: IPluginContext) -> None:
        super().__init__(context)
        config = context.config
        self.backlog_size = int(config.get("backlog", 50))
        self.rate = float(config.get("rate", 1.0))
        self.burst = float(config.get("burst", 3))
        self.backlogs: dict[str, deque[dict[str, Any]]] = {}
        self.last_seq: dict[str, int] = {}
        self._per_child: dict[str, TokenBucket] = {}
        self._per_host: dict[str, TokenBucket] = {}
        self._seeded: dict[str, int] = {}

    def joined(self, child: IConnection, server: str) -> None:
        if server not in self.backlogs:
            self._seed(server)
        self.send(child, {"type": "backlog", "server": server,
                          "lines": list(self.backlogs.get(server, ()))})

    def _seed(self, server: str) -> None:
        """A first backlog from the match state's chat and kill feed: the lines of events
        this plugin never saw (a fan-out edge that started from the origin's snapshot)."""
        backlog = self.backlogs[server] = deque(maxlen=self.backlog_size)
        state = self.events.state(server)
        if state is None or state.seq == 0:
            return
        for envelope in sorted((*state.chat, *state.kill_feed), key=lambda e: e.seq):
            line = line_of(envelope.to_json())
            if line is not None:
                backlog.append(line)
        self._seeded[server] = state.seq

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

    def event(self, envelope: Any) -> None:
        if self._already_seeded(envelope.server, envelope.seq):
            return
        event = envelope.to_json()
        server = str(event.get("server"))
        self.last_seq[server] = int(event.get("seq") or 0)
        line = line_of(event)
        if line is not None:
            self.post(server, line)

    def post(self, server: str, line: dict[str, Any]) -> None:
        """Add a line to ``server``'s backlog and send it to its followers."""
        backlog = self.backlogs.setdefault(server, deque(maxlen=self.backlog_size))
        backlog.append(line)
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
        """Clean the line, rate-limit it (per connection and per address), say it."""
        raw_name, raw_text = request.body.get("name"), request.body.get("text")
        name = clean_text(str(raw_name or ""), max_length=MAX_NAME).replace(":", "").strip()
        text = clean_text(str(raw_text or ""), max_length=MAX_TEXT).strip()
        game = self.context.servers.get(server)
        if self._limited(request):  # refused lines count too
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

    def make_service(self, context: IPluginContext) -> IService:
        return ChatService(context)
