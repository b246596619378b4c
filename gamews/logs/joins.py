"""Hold a Quake 3 join until the player's name is known, so that it is shown with the name.

ioquake3 logs a human's ``ClientConnect: N`` before the ``ClientUserinfoChanged: N n\\NAME...``
that names them (bots come the other way round). :class:`JoinHold` sits between the parser
and the event bus: a :class:`gamews.events.Connected` of a client whose name the match state
does not know yet waits until that client's next line (its user info, normally a few
milliseconds later) or until ``hold`` seconds have passed, then goes to the bus before that
line; every other event passes at once. Time comes from the injected ``clock``.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from gamews.events import Connected, Event, EventBus, PlayerInfo, player_fields

__all__ = ["JoinHold"]


class JoinHold:
    """Publishes events of ``server`` on ``bus``, holding nameless joins (module docstring)."""

    def __init__(self, bus: EventBus, server: str, clock: IReactorTime, *,
                 hold: float = 1.0) -> None:
        """Hold a nameless join at most ``hold`` seconds."""
        self.bus = bus
        self.server = server
        self.clock = clock
        self.hold = hold
        self._held: dict[str, tuple[Connected, IDelayedCall]] = {}

    def __call__(self, event: Event) -> None:
        """Publish ``event`` (or hold it, if it is a nameless join)."""
        if isinstance(event, Connected) and self._nameless(event):
            key = event.player.key
            self._release(key)
            self._held[key] = (event, self.clock.callLater(self.hold, self._release, key))
            return
        if isinstance(event, PlayerInfo):
            # the name first, so that the join it releases is published with it
            self.bus.publish(self.server, event)
            self._release(event.player.key)
            return
        for name in player_fields(type(event)):
            value = getattr(event, name)
            if value is not None:
                self._release(value.key)
        self.bus.publish(self.server, event)

    def _nameless(self, event: Connected) -> bool:
        if event.player.name or not event.player.key.startswith("client:"):
            return False
        state = self.bus.state(self.server)
        known = state.players.get(event.player.key) if state is not None else None
        return known is None or not known.name

    def _release(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held is None:
            return
        event, timer = held
        if timer.active():
            timer.cancel()
        self.bus.publish(self.server, event)
