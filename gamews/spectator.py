"""The public view of the game: every event ``delay`` seconds late, team chat kept apart.

A player who watches the game in a browser must not learn from it what their screen
does not show (ghosting), and one team's ``say_team`` talk must not reach the other. So
every view anyone can open without a token (the chat page's lines and backlog, and any
plugin that shows events to the public) reads :class:`PublicEvents`, a second
:class:`gamews.events.EventBus` that replays the live bus's events ``delay`` seconds
after they happened (in order, with their ``seq`` and time), with a match state that is
that far behind too. Team chat is left out of it unless ``team_chat = "delayed"``. Token
holders (the console, a live view after a login) read the live bus.

Config::

    [spectator]
    delay = 30              # seconds every public view lags the game (0: live)
    team_chat = "hidden"    # or "delayed": team chat shown publicly, delayed like the rest

(``[plugin.live] delay`` or ``[plugin.overlay] delay`` is read as ``[spectator] delay``
when the latter is not given; they may not differ.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from gamews.errors import ConfigError
from gamews.events import Chat, Envelope, EventBus, Subscription

__all__ = ["PublicEvents", "SpectatorConfig"]

TEAM_CHAT: Final = ("hidden", "delayed")


@dataclass(frozen=True)
class SpectatorConfig:
    """A validated ``[spectator]`` table."""

    delay: float = 0.0
    """Seconds every public view of the game lags it."""
    team_chat: str = "hidden"
    """``hidden``: team chat is never shown publicly; ``delayed``: shown, delayed."""

    @classmethod
    def from_tables(cls, table: Mapping[str, Any] | None, live: Mapping[str, Any] | None,
                    overlay: Mapping[str, Any] | None = None) -> SpectatorConfig:
        """From the ``[spectator]`` table and the older ``delay`` of the ``[plugin.live]``
        and ``[plugin.overlay]`` tables."""
        table = dict(table or {})
        for key in table:
            if key not in ("delay", "team_chat"):
                raise ConfigError(f"spectator.{key}", "unknown key (known: delay, team_chat)")
        delay: Any = table.get("delay")
        key = "spectator.delay"
        for name, older in (("live", live), ("overlay", overlay)):
            old = (older or {}).get("delay")
            if delay is None and old is not None:
                delay, key = old, f"plugin.{name}.delay"
            elif old is not None and old != delay:
                raise ConfigError(f"plugin.{name}.delay",
                                  f"differs from {key} (one delay holds for every public view)")
        delay = 0 if delay is None else delay
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600:
            raise ConfigError(key, "expected seconds between 0 and 3600")
        team_chat = table.get("team_chat", "hidden")
        if team_chat not in TEAM_CHAT:
            raise ConfigError("spectator.team_chat", "expected \"hidden\" or \"delayed\"")
        return cls(float(delay), team_chat)


def _team_chat(envelope: Envelope) -> bool:
    return isinstance(envelope.event, Chat) and envelope.event.team


def _without_team_chat(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    return {**snapshot, "chat": [e for e in snapshot.get("chat", [])
                                 if not (e.get("type") == "chat" and e.get("team"))]}


class PublicEvents(EventBus):
    """The live bus's events, ``delay`` seconds late, without team chat unless allowed.

    Subscribe to it, and read its ``state``, as from the live bus. A snapshot
    restored on the live bus (a fan-out edge catching up) is restored here after the
    same delay.
    """

    def __init__(self, live: EventBus, config: SpectatorConfig | None = None) -> None:
        super().__init__(live.clock, queue_size=live.queue_size, max_failures=live.max_failures,
                         batch=live.batch, kill_feed_size=live.kill_feed_size,
                         chat_size=live.chat_size)
        self.live = live
        self.config = config or SpectatorConfig()
        self.delay = self.config.delay
        self._held: deque[tuple[float, Envelope | tuple[str, Mapping[str, Any]]]] = deque()
        self._timer: IDelayedCall | None = None
        for server in live.servers():
            self.add_server(server)
        self._subscription: Subscription | None = live.subscribe(self._hold, name="public view")
        live.restore_listeners.append(self._hold_restore)

    def close(self) -> None:
        """Stop following the live bus and drop what is held."""
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        if self._hold_restore in self.live.restore_listeners:
            self.live.restore_listeners.remove(self._hold_restore)
        self.drop_held()

    def drop_held(self) -> None:
        """Drop the events not yet due (at shutdown: no timer is left behind)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._held.clear()

    def _hold(self, envelope: Envelope) -> None:
        if _team_chat(envelope) and self.config.team_chat == "hidden":
            return
        self._queue(envelope)

    def _hold_restore(self, server: str, snapshot: Mapping[str, Any]) -> None:
        if self.config.team_chat == "hidden":
            snapshot = _without_team_chat(snapshot)
        self._queue((server, snapshot))

    def _queue(self, item: Envelope | tuple[str, Mapping[str, Any]]) -> None:
        if self.delay <= 0:
            self._release(item)
            return
        clock: IReactorTime = self.clock
        self._held.append((clock.seconds() + self.delay, item))
        if self._timer is None or not self._timer.active():
            self._timer = clock.callLater(self.delay, self._due)

    def _due(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        while self._held and self._held[0][0] <= now:
            self._release(self._held.popleft()[1])
        if self._held:
            self._timer = self.clock.callLater(self._held[0][0] - now, self._due)

    def _release(self, item: Envelope | tuple[str, Mapping[str, Any]]) -> None:
        if isinstance(item, Envelope):
            self.replay(item)
        else:
            self.restore(*item)
