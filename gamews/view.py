"""The live match view: the page's state from a match state, and the deltas between two
such states (``docs/protocol.md``, frames ``snapshot`` and ``delta``).

Shared by the live plugin (a game as it happens) and the archive (a recorded match
replayed): the page code is one.
"""

from __future__ import annotations

from typing import Any

from gamews.events import Envelope, Kill, MatchState, Player, Suicide, WorldKill

__all__ = ["diff_views", "view_of"]


def view_of(state: MatchState, kill_feed: int) -> dict[str, Any]:
    """The live page's state from a game server's match state."""
    players = {}
    for p in state.players.values():
        players[p.key] = {
            "id": p.key, "name": p.name, "team": p.team, "kills": p.kills,
            "deaths": p.deaths, "score": p.score if p.score is not None else p.kills,
            "ping": p.ping, "connected": p.connected_at, "bot": p.bot,
        }
    feed = [entry for entry in (_feed_entry(e) for e in state.kill_feed) if entry is not None]
    return {"map": state.map, "round": state.round, "teams": dict(state.teams),
            "players": players, "kill_feed": feed[-kill_feed:] if kill_feed else []}


def _feed_entry(envelope: Envelope) -> dict[str, Any] | None:
    """A kill feed entry, for a kill, a suicide or a death by the world."""
    event = envelope.event
    killer: Player | None = None
    if isinstance(event, Kill):
        killer, victim, weapon = event.killer, event.victim, event.weapon_name or event.weapon
        kind = "kill"
    elif isinstance(event, Suicide):
        victim, weapon, kind = event.player, event.weapon_name or event.weapon, "suicide"
    elif isinstance(event, WorldKill):
        victim, weapon, kind = event.victim, event.cause_name or event.cause, "world"
    else:
        return None
    return {"seq": envelope.seq, "time": envelope.received,
            "killer": killer.name if killer is not None else None,
            "killer_team": killer.team if killer is not None else None,
            "victim": victim.name, "victim_team": victim.team, "weapon": weapon or None,
            "kind": kind, "headshot": isinstance(event, Kill) and event.headshot}


def diff_views(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The ``changes`` of a delta frame turning view ``old`` into ``new``."""
    changes: dict[str, Any] = {}
    for key in ("map", "round", "teams"):
        if old.get(key) != new.get(key):
            changes[key] = new.get(key)
    players: dict[str, Any] = {}
    for pid, player in new["players"].items():
        if old["players"].get(pid) != player:
            players[pid] = player
    for pid in old["players"]:
        if pid not in new["players"]:
            players[pid] = None
    if players:
        changes["players"] = players
    seen = {e["seq"] for e in old["kill_feed"]}
    added = [e for e in new["kill_feed"] if e["seq"] not in seen]
    if added:
        changes["kill_feed"] = added
    return changes
