"""Replaying a recorded match in the live view: a snapshot at the seek point, then the
deltas of the events that follow, each sent when its moment comes on the replay's clock.

The frames are the live view's own (``snapshot`` and ``delta``, ``docs/protocol.md``),
each with ``t``, the replay's position in seconds since the match started; the page
code is the live page's. A browser opens ``/matches/ws`` and sends::

    {"type": "open", "match": 12, "t": 95.5, "speed": 1, "playing": true}
    {"type": "play"} / {"type": "pause"} / {"type": "speed", "speed": 8}
    {"type": "seek", "t": 30} / {"type": "resync"}

and gets ``hello``, ``timeline`` (the match's length, its rounds' and kills' times),
then ``snapshot``, ``delta``... and ``replay`` frames (position, playing, speed, ended)
whenever those change.

The events are read a page at a time from the database's reader threads; a seek reads
the checkpoint before the moment and the few hundred events after it.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.api import (
    IConnection,
    IListener,
    IPluginContext,
    TokenBucket,
    diff_views,
    view_of,
)
from gamews.archive.db import Database
from gamews.archive.store import events_after, get_match, seek, timeline
from gamews.events import MatchState, envelope_from_json

__all__ = ["Replay", "ReplaySocket"]

log = Logger(namespace="gamews.archive")
SPEEDS: Final = (0.5, 1.0, 2.0, 4.0, 8.0)
KILL_FEED: Final = 10
MAX_FRAME: Final = 4096
RATE: Final = 10.0
"""Frames a second a browser may send (seeks cost a query each)..."""
RATE_BURST: Final = 20.0
"""...after a burst of this many."""
_PAGE: Final = 500


class Replay:
    """One browser's replay of one match; ``send`` takes each frame (a dict)."""

    def __init__(self, db: Database, match: dict[str, Any], send: Any, clock: Any) -> None:
        self.db = db
        self.match = match
        self.send = send
        self.clock = clock
        self.started = float(match["started"])
        self.duration = float(match["last_event"]) - self.started
        """The replay's length: to the last event recorded (the lines after the match
        end, such as the final scores, are in it)."""
        self.playing = False
        self.speed = 1.0
        self.position = 0.0
        self._wall = 0.0
        self.state: MatchState | None = None
        self.view: dict[str, Any] | None = None
        self.ahead: deque[tuple[int, float, str]] = deque()
        self.more = False
        self._timer: IDelayedCall | None = None
        self._generation = 0
        self._loading = False
        self.closed = False

    # -- the replay's clock ---------------------------------------------------------

    def now(self) -> float:
        """The replay's position (seconds since the match started)."""
        if not self.playing:
            return self.position
        elapsed = float(self.clock.seconds()) - self._wall
        return min(self.duration, self.position + elapsed * self.speed)

    def _anchor(self) -> None:
        self.position = self.now()
        self._wall = self.clock.seconds()

    def status(self) -> None:
        self.send({"type": "replay", "match": self.match["id"], "t": round(self.now(), 3),
                   "playing": self.playing, "speed": self.speed, "duration": self.duration,
                   "ended": not self.playing and self.position >= self.duration})

    # -- commands -------------------------------------------------------------------

    def play(self) -> None:
        if self.position >= self.duration:
            self.seek(0.0, playing=True)
            return
        self._anchor()
        self.playing = True
        self.status()
        self._schedule()

    def pause(self) -> None:
        self._anchor()
        self.playing = False
        self._cancel()
        self.status()

    def set_speed(self, speed: float) -> None:
        self._anchor()
        self.speed = speed
        self.status()
        self._schedule()

    def seek(self, t: float, *, playing: bool | None = None) -> Deferred[None]:
        """Go to ``t``: send the snapshot of that moment, then go on if playing."""
        self._cancel()
        self._generation += 1
        generation = self._generation
        self.position = min(max(0.0, t), self.duration)
        self._wall = self.clock.seconds()
        if playing is not None:
            self.playing = playing
        d = self.db.read(seek, self.match["id"], self.position, self.match["server"])

        def loaded(result: tuple[MatchState, list[tuple[int, float, str]]]) -> None:
            if generation != self._generation or self.closed:
                return
            state, ahead = result
            self.state = state
            self.ahead = deque(ahead)
            self.more = len(ahead) > 0
            self.view = view_of(state, KILL_FEED)
            self._wall = self.clock.seconds()
            self.send({"type": "snapshot", "server": self.match["server"], "seq": state.seq,
                       "delay": 0, "state": self.view, "t": round(self.position, 3)})
            self.status()
            self._schedule()

        return d.addCallbacks(loaded, self._failed)

    def resync(self) -> None:
        """The page missed a delta: send the state as it is now."""
        self.seek(self.now())

    def close(self) -> None:
        self.closed = True
        self._cancel()

    # -- playing --------------------------------------------------------------------

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self) -> None:
        self._cancel()
        if not self.playing or self.state is None or self.closed:
            return
        if not self.ahead:
            if self.more:
                self._load()
                return
            # the last event is shown: run the clock on to the end of the match
            left = (self.duration - self.now()) / self.speed
            self._timer = self.clock.callLater(max(0.0, left), self._end)
            return
        due = (self.ahead[0][1] - self.started - self.now()) / self.speed
        self._timer = self.clock.callLater(max(0.0, due), self._step)

    def _step(self) -> None:
        self._timer = None
        state = self.state
        if state is None or self.view is None:
            return
        now = self.now()
        end = now >= self.duration  # the clock stops there: whatever is left is due
        while self.ahead and (end or self.ahead[0][1] - self.started <= now + 1e-6):
            seq, _, data = self.ahead.popleft()
            state.apply(envelope_from_json(json.loads(data)))
            view = view_of(state, KILL_FEED)
            self.send({"type": "delta", "server": self.match["server"], "seq": seq,
                       "changes": diff_views(self.view, view), "t": round(now, 3)})
            self.view = view
        self._schedule()

    def _load(self) -> None:
        if self._loading or self.state is None:
            return
        self._loading = True
        generation = self._generation
        d = self.db.read(events_after, self.match["id"], self.state.seq, _PAGE)

        def loaded(rows: list[tuple[int, float, str]]) -> None:
            self._loading = False
            if generation != self._generation or self.closed:
                return
            self.ahead.extend(rows)
            self.more = len(rows) == _PAGE
            self._schedule()

        def failed(failure: Failure) -> None:
            self._loading = False
            self._failed(failure)

        d.addCallbacks(loaded, failed)

    def _end(self) -> None:
        self._timer = None
        self.position = self.duration
        self.playing = False
        self.status()

    def _failed(self, failure: Failure) -> None:
        log.failure("archive replay of match {id} failed", failure, id=self.match["id"])
        if not self.closed:
            self.send({"type": "error", "reason": "the archive could not be read"})


class ReplaySocket:
    """``/matches/ws`` on every web port: one :class:`Replay` per browser."""

    def __init__(self, context: IPluginContext, db: Database) -> None:
        self.context = context
        self.db = db
        self.clock = context.reactor
        self.listeners: list[IListener] = []
        self.replays: dict[int, Replay] = {}
        self.buckets: dict[int, TokenBucket] = {}

    def start(self) -> None:
        for endpoint in self.context.endpoints:
            self.listeners.append(self.context.open("/matches/ws", endpoint=endpoint,
                                                    incoming=self._incoming))

    def stop(self) -> list[Deferred[None]]:
        for replay in self.replays.values():
            replay.close()
        self.replays.clear()
        listeners, self.listeners = self.listeners, []
        return [listener.close() for listener in listeners]

    def _incoming(self, child: IConnection) -> None:
        if "gamews.v1" in child.request.protocols:
            child.select_subprotocol("gamews.v1")
        child.hook(on_message=self._message, on_disconnect=self._gone)

    def _gone(self, child: IConnection, code: int | None, reason: str) -> None:
        self.buckets.pop(child.id, None)
        replay = self.replays.pop(child.id, None)
        if replay is not None:
            replay.close()

    @staticmethod
    def _send(child: IConnection, frame: dict[str, Any]) -> None:
        child.send_text(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))

    def _message(self, child: IConnection, data: str | bytes) -> None:
        frame: Any = None
        if isinstance(data, str) and len(data) <= MAX_FRAME:
            try:
                frame = json.loads(data)
            except ValueError:
                frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._send(child, {"type": "error", "reason": "expected a JSON object with a type"})
            return
        kind = frame["type"]
        bucket = self.buckets.setdefault(child.id, TokenBucket(RATE_BURST, 1 / RATE,
                                                               self.clock.seconds()))
        if bucket.take(self.clock.seconds()):
            # each frame may cost a query: a page that floods waits its turn
            self._send(child, {"type": "error", "reason": "rate limited"})
            return
        replay = self.replays.get(child.id)
        if kind == "open":
            self._open(child, frame)
        elif replay is None:
            self._send(child, {"type": "error", "reason": "open a match first"})
        elif kind == "play":
            replay.play()
        elif kind == "pause":
            replay.pause()
        elif kind == "speed" and _number(frame.get("speed")) in SPEEDS:
            replay.set_speed(float(frame["speed"]))
        elif kind == "seek" and _number(frame.get("t")) is not None:
            replay.seek(float(frame["t"]))
        elif kind == "resync":
            replay.resync()
        else:
            self._send(child, {"type": "error", "reason": f"bad {kind!r} frame"})

    def _open(self, child: IConnection, frame: dict[str, Any]) -> None:
        match_id = frame.get("match")
        if isinstance(match_id, bool) or not isinstance(match_id, int):
            self._send(child, {"type": "error", "reason": "match must be a match id"})
            return

        def found(result: tuple[dict[str, Any] | None, dict[str, Any] | None]) -> None:
            match, marks = result
            if child.ready_state != 1:
                return
            if match is None or marks is None:
                self._send(child, {"type": "error", "reason": "no such match"})
                return
            old = self.replays.pop(child.id, None)
            if old is not None:  # another match in the same page: it replaces the first
                old.close()
            replay = Replay(self.db, match, lambda f: self._send(child, f), self.clock)
            self.replays[child.id] = replay
            server = match["server"]
            self._send(child, {"type": "hello", "plugin": "archive", "version": 1,
                               "servers": [server], "server": server})
            self._send(child, {"type": "link", "server": server, "state": "replay",
                               "detail": None, "stale": False})
            self._send(child, {"type": "timeline", "match": match, **marks})
            speed = _number(frame.get("speed"))
            replay.speed = speed if speed in SPEEDS else 1.0
            t = _number(frame.get("t"))
            replay.seek(t if t is not None else 0.0, playing=frame.get("playing") is not False)

        def lookup(conn: Any, mid: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            match = get_match(conn, mid)
            return match, (timeline(conn, mid) if match is not None else None)

        self.db.read(lookup, match_id).addCallbacks(found, self._failed, errbackArgs=(child,))

    def _failed(self, failure: Failure, child: IConnection) -> None:
        log.failure("archive: opening a replay failed", failure)
        self._send(child, {"type": "error", "reason": "the archive could not be read"})


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if number == number and abs(number) < 1e9 else None
