"""The archive's queries: plain functions of a :class:`~gamews.archive.db.Conn`, run in
the database's threads (:meth:`Database.write`, :meth:`Database.read`) or directly by
the command line and the benchmarks.

Players across matches are keyed by :func:`gamews.archive.recording.archive_key`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Final

from gamews.archive.db import Conn
from gamews.archive.recording import Batch, MatchId, Recording, archive_key
from gamews.events import MatchState, Player, envelope_from_json

__all__ = [
    "close_live",
    "events_after",
    "get_match",
    "import_match",
    "list_matches",
    "list_players",
    "player_record",
    "prune",
    "seek",
    "summary",
    "timeline",
    "write_batch",
]

STATUSES: Final = ("live", "finished", "interrupted")
PAGE: Final = 50
_MATCH_COLUMNS: Final = ("id, server, map, started, ended, last_event, status, joined, "
                         "first_seq, last_seq, events, teams, players, reason")
_FEED: Final = ("kill", "suicide", "world_kill")


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def write_batch(conn: Conn, batch: Batch) -> None:
    """Write a flush: new and changed matches, then their events, checkpoints, players."""
    inserted: list[MatchId] = []
    try:
        for row in batch.matches:
            values = (row.map, row.ended, row.last_event, row.status, row.last_seq, row.events,
                      row.teams, row.players, row.reason)
            if row.key.id is None:
                conn.execute(
                    "INSERT INTO matches (server, started, joined, first_seq, map, ended, "
                    "last_event, status, last_seq, events, teams, players, reason) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (row.server, row.started, int(row.joined), row.first_seq, *values))
                found = conn.fetchone()
                assert found is not None
                row.key.id = int(found[0])
                inserted.append(row.key)
            else:
                conn.execute("UPDATE matches SET map = ?, ended = ?, last_event = ?, "
                             "status = ?, last_seq = ?, events = ?, teams = ?, players = ?, "
                             "reason = ? WHERE id = ?", (*values, row.key.id))
        if batch.events:
            conn.executemany(
                "INSERT INTO events (match_id, seq, t, type, data) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                ((key.id, env.seq, env.received, env.event.type, env.to_json_text())
                 for key, env in batch.events))
        if batch.checkpoints:
            conn.executemany(
                "INSERT INTO checkpoints (match_id, seq, t, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                ((key.id, seq, t, _json(state)) for key, seq, t, state in batch.checkpoints))
        if batch.players:
            conn.executemany(
                "INSERT INTO match_players (match_id, player, name, team, kills, deaths, "
                "headshots, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (match_id, player) DO UPDATE SET name = excluded.name, "
                "team = excluded.team, kills = excluded.kills, deaths = excluded.deaths, "
                "headshots = excluded.headshots, last_seen = excluded.last_seen",
                ((p.key.id, p.player, p.name, p.team, p.kills, p.deaths, p.headshots,
                  p.last_seen) for p in batch.players))
    except BaseException:
        for key in inserted:  # rolled back: the rows are not there
            key.id = None
        raise


def close_live(conn: Conn, servers: Iterable[str]) -> int:
    """Mark the matches of ``servers`` still ``live`` (a gamews that stopped or crashed
    while recording them) as ``interrupted``; returns how many."""
    count = 0
    for server in servers:
        conn.execute("SELECT COUNT(*) FROM matches WHERE status = 'live' AND server = ?",
                     (server,))
        row = conn.fetchone()
        count += int(row[0]) if row else 0
        conn.execute("UPDATE matches SET status = 'interrupted', ended = last_event "
                     "WHERE status = 'live' AND server = ?", (server,))
    return count


def _match(row: tuple[Any, ...]) -> dict[str, Any]:
    (id_, server, map_, started, ended, last_event, status, joined, first_seq, last_seq,
     events, teams, players, reason) = row
    return {"id": int(id_), "server": server, "map": map_, "started": started,
            "ended": ended, "last_event": last_event,
            "duration": round((ended if ended is not None else last_event) - started, 3),
            "length": round(last_event - started, 3),
            "status": status, "joined_mid_match": bool(joined), "first_seq": int(first_seq),
            "last_seq": int(last_seq), "events": int(events), "teams": json.loads(teams),
            "players": json.loads(players), "reason": reason}


def list_matches(conn: Conn, *, server: str | None = None, map: str | None = None,
                 player: str | None = None, page: int = 1, per_page: int = PAGE,
                 ) -> dict[str, Any]:
    """A page of matches, newest first, with the filters' total."""
    where, params = _filters(server, map, player)
    conn.execute(f"SELECT COUNT(*) FROM matches{where}", params)  # noqa: S608 - fixed text
    row = conn.fetchone()
    total = int(row[0]) if row else 0
    conn.execute(f"SELECT {_MATCH_COLUMNS} FROM matches{where} "  # noqa: S608
                 "ORDER BY started DESC, id DESC LIMIT ? OFFSET ?",
                 (*params, per_page, (page - 1) * per_page))
    return {"matches": [_match(r) for r in conn.fetchall()], "page": page,
            "per_page": per_page, "total": total}


def _filters(server: str | None, map_: str | None, player: str | None,
             ) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if server:
        clauses.append("server = ?")
        params.append(server)
    if map_:
        clauses.append("map = ?")
        params.append(map_)
    if player:
        clauses.append("id IN (SELECT match_id FROM match_players WHERE player = ? OR "
                       "LOWER(name) = LOWER(?))")
        params += [player, player]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def get_match(conn: Conn, match_id: int) -> dict[str, Any] | None:
    """One match's row, or ``None``."""
    conn.execute(f"SELECT {_MATCH_COLUMNS} FROM matches WHERE id = ?",  # noqa: S608
                 (match_id,))
    row = conn.fetchone()
    return _match(row) if row else None


def events_after(conn: Conn, match_id: int, after: int, limit: int = 1000,
                 ) -> list[tuple[int, float, str]]:
    """Up to ``limit`` events of the match after ``seq`` ``after``: ``(seq, t, json)``."""
    conn.execute("SELECT seq, t, data FROM events WHERE match_id = ? AND seq > ? "
                 "ORDER BY seq LIMIT ?", (match_id, after, limit))
    return [(int(s), float(t), str(d)) for s, t, d in conn.fetchall()]


def iter_events(conn: Conn, match_id: int, page: int = 1000) -> Iterator[str]:
    """Every event of a match as JSON text, in ``seq`` order, a page at a time."""
    after = -1
    while True:
        rows = events_after(conn, match_id, after, page)
        for seq, _, data in rows:
            after = seq
            yield data
        if len(rows) < page:
            return


def seek(conn: Conn, match_id: int, t: float, server: str,
         ) -> tuple[MatchState, list[tuple[int, float, str]]]:
    """The match's state at ``t`` seconds of the match (with the events up to then
    applied), and the next events after it (a page)."""
    match = get_match(conn, match_id)
    if match is None:
        raise KeyError(match_id)
    at = match["started"] + max(0.0, t)
    conn.execute("SELECT seq, state FROM checkpoints WHERE match_id = ? AND t <= ? "
                 "ORDER BY seq DESC LIMIT 1", (match_id, at))
    row = conn.fetchone()
    if row is None:
        conn.execute("SELECT seq, state FROM checkpoints WHERE match_id = ? "
                     "ORDER BY seq LIMIT 1", (match_id,))
        row = conn.fetchone()
    state = MatchState(server)
    after = -1
    if row is not None:
        after = int(row[0])
        state.restore(json.loads(row[1]))
    while True:
        rows = events_after(conn, match_id, after, 500)
        ahead = [r for r in rows if r[1] > at]
        for seq, _, data in rows[:len(rows) - len(ahead)]:
            state.apply(envelope_from_json(json.loads(data)))
            after = seq
        if ahead or len(rows) < 500:
            return state, ahead


def timeline(conn: Conn, match_id: int) -> dict[str, Any]:
    """The replay's timeline: the match's length and its rounds' and kills' times."""
    match = get_match(conn, match_id)
    if match is None:
        raise KeyError(match_id)
    conn.execute("SELECT t, type FROM events WHERE match_id = ? AND type IN "
                 "('round_start', 'kill', 'suicide', 'world_kill') ORDER BY seq", (match_id,))
    start = match["started"]
    rounds: list[float] = []
    kills: list[float] = []
    for t, kind in conn.fetchall():
        (rounds if kind == "round_start" else kills).append(round(float(t) - start, 2))
    return {"duration": match["length"], "rounds": rounds, "kills": kills}


def summary(conn: Conn, match_id: int, *, max_kills: int = 2000, max_chat: int = 1000,
            ) -> dict[str, Any] | None:
    """The match page: its row, final scoreboard, team scores per round, kills and chat."""
    match = get_match(conn, match_id)
    if match is None:
        return None
    state, _ = seek(conn, match_id, match["length"] + 1, match["server"])
    start = match["started"]
    conn.execute("SELECT player, name, team, kills, deaths, headshots FROM match_players "
                 "WHERE match_id = ? ORDER BY kills DESC, deaths, name", (match_id,))
    lines = {r[0]: r for r in conn.fetchall()}
    scoreboard = []
    for p in sorted(state.players.values(), key=lambda p: (-(p.score or p.kills), p.deaths)):
        line = lines.get(archive_key(Player(p.name, p.key, p.slot, p.team, p.bot)) or "")
        scoreboard.append({"id": p.key, "player": line[0] if line else None, "name": p.name,
                           "team": p.team, "bot": p.bot, "kills": p.kills, "deaths": p.deaths,
                           "score": p.score if p.score is not None else p.kills,
                           "headshots": line[5] if line else None})
    conn.execute("SELECT t, type, data FROM events WHERE match_id = ? AND type IN "
                 "('kill', 'suicide', 'world_kill', 'chat', 'round_end', 'round_start') "
                 "ORDER BY seq", (match_id,))
    rounds: list[dict[str, Any]] = []
    kills: list[dict[str, Any]] = []
    chat: list[dict[str, Any]] = []
    for t, kind, data in conn.fetchall():
        event = json.loads(data)
        at = round(float(t) - start, 2)
        if kind in _FEED and len(kills) < max_kills:
            killer = event.get("killer") if kind == "kill" else None
            victim = event.get("victim") or event.get("player") or {}
            kills.append({"t": at, "seq": event["seq"], "type": kind,
                          "killer": killer.get("name") if killer else None,
                          "killer_team": killer.get("team") if killer else None,
                          "victim": victim.get("name"), "victim_team": victim.get("team"),
                          "weapon": event.get("weapon") or event.get("cause"),
                          "headshot": bool(event.get("headshot"))})
        elif kind == "chat" and len(chat) < max_chat:
            player = event.get("player") or {}
            chat.append({"t": at, "seq": event["seq"], "name": player.get("name"),
                         "team": player.get("team"), "text": event.get("text"),
                         "team_only": bool(event.get("team"))})
        elif kind == "round_end":
            rounds.append({"round": len(rounds) + 1, "t": at, "winner": event.get("winner")})
    # team scores per round: the state just after each round's end
    for entry in rounds:
        at_end, _ = seek(conn, match_id, entry["t"] + 0.5, match["server"]) \
            if len(rounds) <= 60 else (None, None)
        entry["teams"] = dict(at_end.teams) if at_end is not None else None
    return {"match": match, "map": state.map, "teams": dict(state.teams),
            "scoreboard": scoreboard, "rounds": rounds, "kills": kills, "chat": chat}


def list_players(conn: Conn, *, page: int = 1, per_page: int = PAGE, order: str = "kills",
                 ) -> dict[str, Any]:
    """The leaderboard across recorded matches."""
    orders = {"kills": "kills DESC", "kd": "kd DESC", "matches": "matches DESC",
              "last_seen": "last_seen DESC"}
    by = orders.get(order, orders["kills"])
    conn.execute("SELECT COUNT(DISTINCT player) FROM match_players")
    row = conn.fetchone()
    total = int(row[0]) if row else 0
    conn.execute(
        "SELECT player, SUM(kills) AS kills, SUM(deaths) AS deaths, SUM(headshots), "  # noqa: S608
        "COUNT(*) AS matches, MAX(last_seen) AS last_seen, "
        "CAST(SUM(kills) AS REAL) / CASE WHEN SUM(deaths) = 0 THEN 1 ELSE SUM(deaths) END "
        f"AS kd FROM match_players GROUP BY player ORDER BY {by}, player "
        "LIMIT ? OFFSET ?", (per_page, (page - 1) * per_page))
    rows = conn.fetchall()
    names = _latest_names(conn, [r[0] for r in rows])
    players = [_player(r, names.get(r[0])) for r in rows]
    return {"players": players, "page": page, "per_page": per_page, "total": total}


def _player(row: tuple[Any, ...], name: str | None) -> dict[str, Any]:
    player, kills, deaths, headshots, matches, last_seen = row[:6]
    kills, deaths, headshots = int(kills or 0), int(deaths or 0), int(headshots or 0)
    return {"id": player, "name": name, "kills": kills, "deaths": deaths,
            "kd": round(kills / max(deaths, 1), 2),
            "headshot_pct": round(100 * headshots / kills, 1) if kills else 0.0,
            "matches": int(matches), "last_seen": last_seen}


def _latest_names(conn: Conn, players: list[str]) -> dict[str, str]:
    if not players:
        return {}
    marks = ", ".join("?" for _ in players)
    conn.execute(f"SELECT player, name, last_seen FROM match_players "  # noqa: S608
                 f"WHERE player IN ({marks})", players)
    best: dict[str, tuple[float, str]] = {}
    for player, name, seen in conn.fetchall():
        if player not in best or seen > best[player][0]:
            best[player] = (seen, name)
    return {p: n for p, (_, n) in best.items()}


def player_record(conn: Conn, player: str, *, recent: int = 20) -> dict[str, Any] | None:
    """One player's totals, recent matches and the names they used."""
    conn.execute("SELECT player, SUM(kills), SUM(deaths), SUM(headshots), COUNT(*), "
                 "MAX(last_seen) FROM match_players WHERE player = ? GROUP BY player",
                 (player,))
    row = conn.fetchone()
    if row is None:
        return None
    names = _latest_names(conn, [player])
    record = _player(row, names.get(player))
    conn.execute("SELECT name, COUNT(*), MAX(last_seen) FROM match_players WHERE player = ? "
                 "GROUP BY name ORDER BY MAX(last_seen) DESC", (player,))
    record["names"] = [{"name": n, "matches": int(c), "last_seen": s}
                       for n, c, s in conn.fetchall()]
    columns = ", ".join("m." + c.strip() for c in _MATCH_COLUMNS.split(","))
    conn.execute(f"SELECT {columns}, "  # noqa: S608
                 "p.name, p.team, p.kills, p.deaths, p.headshots FROM match_players p "
                 "JOIN matches m ON m.id = p.match_id WHERE p.player = ? "
                 "ORDER BY m.started DESC LIMIT ?", (player, recent))
    record["recent"] = [{**_match(r[:14]), "as": {"name": r[14], "team": r[15],
                                                  "kills": r[16], "deaths": r[17],
                                                  "headshots": r[18]}}
                        for r in conn.fetchall()]
    return record


def prune(conn: Conn, *, keep_days: float, keep_matches: int, now: float) -> int:
    """Delete finished matches older than ``keep_days`` and beyond the newest
    ``keep_matches`` (0: no limit); returns how many went."""
    doomed: set[int] = set()
    if keep_days > 0:
        conn.execute("SELECT id FROM matches WHERE status <> 'live' AND last_event < ?",
                     (now - keep_days * 86400,))
        doomed.update(int(r[0]) for r in conn.fetchall())
    if keep_matches > 0:
        conn.execute("SELECT id FROM matches WHERE status <> 'live' "
                     "ORDER BY started DESC, id DESC LIMIT ? OFFSET ?",
                     (1 << 62, keep_matches))
        doomed.update(int(r[0]) for r in conn.fetchall())
    ids = sorted(doomed)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ", ".join("?" for _ in chunk)
        for table, column in (("events", "match_id"), ("checkpoints", "match_id"),
                              ("match_players", "match_id"), ("matches", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})",  # noqa: S608
                         chunk)
    return len(ids)


def import_match(conn: Conn, lines: Iterable[str], *, checkpoint_every: int = 500) -> int:
    """Load a match exported as NDJSON (a ``match`` header line, then its events);
    returns the new match's id. Raises ``ValueError`` for a malformed file."""
    header: dict[str, Any] | None = None
    recording: Recording | None = None
    batch = Batch()
    key = MatchId()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise ValueError(f"line {number}: not JSON") from None
        if not isinstance(obj, dict):
            raise ValueError(f"line {number}: not a JSON object")
        if number == 1 and obj.get("type") == "match":
            header = obj
            continue
        try:
            envelope = envelope_from_json(obj)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"line {number}: {e}") from None
        if recording is None:
            info = (header or {}).get("match") or {}
            state = MatchState(envelope.server)
            snapshot = (header or {}).get("state")
            if isinstance(snapshot, dict):
                state.restore(snapshot)
            recording = Recording(key, envelope, state, joined=bool(
                info.get("joined_mid_match", False)), checkpoint_every=checkpoint_every)
        recording.add(envelope)
        batch.events.append((key, envelope))
    if recording is None:
        raise ValueError("no events in the file")
    info = (header or {}).get("match") or {}
    status = str(info["status"]) if info.get("status") in ("finished", "interrupted") \
        else "interrupted"
    recording.close(status)
    batch.matches.append(recording.row())
    batch.checkpoints.extend(recording.take_checkpoints())
    batch.players.extend(recording.take_players())
    write_batch(conn, batch)
    assert key.id is not None
    return key.id


def export_header(conn: Conn, match_id: int) -> dict[str, Any] | None:
    """The first line of a match's NDJSON export: the match and its state at the start."""
    match = get_match(conn, match_id)
    if match is None:
        return None
    conn.execute("SELECT state FROM checkpoints WHERE match_id = ? ORDER BY seq LIMIT 1",
                 (match_id,))
    row = conn.fetchone()
    # the first checkpoint is the state just before the match's first event
    return {"type": "match", "format": "gamews.match.v1", "match": match,
            "state": json.loads(row[0]) if row else None}
