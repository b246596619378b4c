"""The live match view: the page's state from a match state snapshot, and the deltas
between two such states (``docs/protocol.md``, frames ``snapshot`` and ``delta``).

Shared by the live plugin (a game as it happens) and the archive (a recorded match
replayed): the page code is one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["diff_views", "view_of"]

_FEED_TYPES = ("kill", "suicide", "world_kill")


def view_of(snapshot: dict[str, Any], kill_feed: int) -> dict[str, Any]:
    """The live page's state from a match state snapshot (``MatchState.snapshot()``)."""
    players = {}
    for p in snapshot.get("players", []):
        players[str(p["id"])] = {
            "id": str(p["id"]), "name": p.get("name"), "team": p.get("team"),
            "kills": p.get("kills", 0), "deaths": p.get("deaths", 0),
            "score": p.get("score") if p.get("score") is not None else p.get("kills", 0),
            "ping": p.get("ping"), "connected": p.get("connected_at"), "bot": p.get("bot"),
        }
    feed = [entry for entry in (_feed_entry(e) for e in snapshot.get("kill_feed", []))
            if entry is not None]
    return {"map": snapshot.get("map"), "round": snapshot.get("round", 0),
            "teams": dict(snapshot.get("teams", {})), "players": players,
            "kill_feed": feed[-kill_feed:] if kill_feed else []}


def _feed_entry(event: dict[str, Any]) -> dict[str, Any] | None:
    kind = event.get("type")
    if kind not in _FEED_TYPES:
        return None
    killer = event.get("killer") or event.get("player") or {}
    victim = event.get("victim") or event.get("player") or {}
    return {"seq": event.get("seq"), "time": event.get("received"),
            "killer": killer.get("name") if kind == "kill" else None,
            "killer_team": killer.get("team") if kind == "kill" else None,
            "victim": victim.get("name"), "victim_team": victim.get("team"),
            "weapon": event.get("weapon") or event.get("cause"),
            "headshot": bool(event.get("headshot"))}


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
