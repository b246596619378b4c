"""The archive over HTTP: the pages ``/matches``, ``/matches/ID``, ``/players``,
``/players/ID``, the replay page ``/matches/ID/replay`` (the live page, in replay mode)
and the JSON API under ``/api/v1/`` (``docs/archive.md``).

Pages are rendered here as plain HTML with every game string escaped (player names and
chat are hostile); they need no script except the replay. Every query runs in the
database's reader threads; the events of a match stream a page at a time, as fast as
the client reads them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from html import escape
from typing import Any, Final
from urllib.parse import quote, unquote, urlencode

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from gamews.archive.db import Database
from gamews.archive.store import (
    events_after,
    export_header,
    get_match,
    list_matches,
    list_players,
    player_record,
    summary,
)
from gamews.pages import STATIC_DIR, secure

__all__ = ["ApiResource", "MatchesPage", "PlayersPage"]

log = Logger(namespace="gamews.archive")
_MAX_PER_PAGE: Final = 200


def _arg(request: Request, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    value = values[0].decode("utf-8", "replace").strip()
    return value[:200] or None


def _int_arg(request: Request, name: str, default: int, high: int) -> int:
    raw = _arg(request, name)
    if raw is None or not raw.isdigit():
        return default
    return max(1, min(int(raw), high))


def _respond(request: Request, d: Deferred[Any], render: Callable[[Any], bytes | None],
             content_type: bytes) -> int:
    """Answer ``request`` with ``render(result)`` once ``d`` fires (``None``: 404)."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def done(result: Any) -> None:
        if gone:
            return
        body = render(result)
        secure(request)
        if body is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            body = b"No such match or player.\n"
        else:
            request.setHeader(b"content-type", content_type)
        request.write(body)
        request.finish()

    def failed(failure: Failure) -> None:
        log.failure("archive: a query failed", failure)
        if gone:
            return
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(b"The archive is not available right now.\n")
        request.finish()

    d.addCallbacks(done, failed)
    return NOT_DONE_YET


def _json_body(value: Any) -> bytes | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@implementer(IPushProducer)
class _EventStream:
    """Writes a match's events as NDJSON, one page per query, paused while the
    client's socket is full (so a match is never all in memory)."""

    def __init__(self, db: Database, request: Request, match_id: int, page: int = 1000) -> None:
        self.db = db
        self.request = request
        self.match_id = match_id
        self.page = page
        self.after = -1
        self.paused = False
        self.busy = False
        self.done = False
        request.notifyFinish().addBoth(self._finished)

    def start(self, first: bytes = b"") -> None:
        self.request.registerProducer(self, True)
        if first:
            self.request.write(first)
        self._next()

    def _finished(self, _: object) -> None:
        self.done = True

    def _next(self) -> None:
        if self.done or self.paused or self.busy:
            return
        self.busy = True
        self.db.read(events_after, self.match_id, self.after, self.page).addCallbacks(
            self._rows, self._failed)

    def _rows(self, rows: list[tuple[int, float, str]]) -> None:
        self.busy = False
        if self.done:
            return
        if rows:
            self.after = rows[-1][0]
            self.request.write("".join(f"{data}\n" for _, _, data in rows).encode())
        if len(rows) < self.page:
            self.done = True
            self.request.unregisterProducer()
            self.request.finish()
            return
        self._next()

    def _failed(self, failure: Failure) -> None:
        self.busy = False
        log.failure("archive: streaming match {id} failed", failure, id=self.match_id)
        if not self.done:
            self.done = True
            self.request.unregisterProducer()
            self.request.loseConnection()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._next()

    def stopProducing(self) -> None:
        self.done = True


class _ArchiveResource(Resource):
    """A leaf resource answering from the archive's database."""

    isLeaf = True

    def __init__(self, db: Database) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.db = db


class ApiResource(_ArchiveResource):
    """``/api/v1/``: matches, a match, its events (NDJSON), its export, players."""


    def render_GET(self, request: Request) -> bytes | int:
        parts = [p.decode("utf-8", "replace") for p in request.postpath or [] if p]
        as_json = b"application/json; charset=utf-8"
        if parts == ["matches"]:
            return _respond(request, self.db.read(
                list_matches, server=_arg(request, "server"), map=_arg(request, "map"),
                player=_arg(request, "player"), page=_int_arg(request, "page", 1, 10**6),
                per_page=_int_arg(request, "per_page", 50, _MAX_PER_PAGE)), _json_body, as_json)
        if len(parts) >= 2 and parts[0] == "matches" and parts[1].isdigit():
            match_id = int(parts[1])
            if len(parts) == 2:
                return _respond(request, self.db.read(summary, match_id), _json_body, as_json)
            if len(parts) == 3 and parts[2] in ("events", "export"):
                return self._stream(request, match_id, export=parts[2] == "export")
        if parts == ["players"]:
            return _respond(request, self.db.read(
                list_players, page=_int_arg(request, "page", 1, 10**6),
                per_page=_int_arg(request, "per_page", 50, _MAX_PER_PAGE),
                order=_arg(request, "order") or "kills"), _json_body, as_json)
        if len(parts) == 2 and parts[0] == "players":
            return _respond(request, self.db.read(player_record, unquote(parts[1])), _json_body,
                            as_json)
        secure(request)
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Unknown API path (docs/archive.md).\n"

    def _stream(self, request: Request, match_id: int, *, export: bool) -> int:
        def look(conn: Any, mid: int) -> dict[str, Any] | None:
            return export_header(conn, mid) if export else get_match(conn, mid)

        def found(header: dict[str, Any] | None) -> None:
            secure(request)
            if header is None:
                request.setResponseCode(404)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                request.write(b"No such match.\n")
                request.finish()
                return
            request.setHeader(b"content-type", b"application/x-ndjson; charset=utf-8")
            if export:
                request.setHeader(b"content-disposition",
                                  f'attachment; filename="match-{match_id}.ndjson"'.encode())
            first = _json_body(header) if export else b""
            _EventStream(self.db, request, match_id).start(first or b"")

        def failed(failure: Failure) -> None:
            log.failure("archive: a query failed", failure)
            request.setResponseCode(503)
            request.finish()

        self.db.read(look, match_id).addCallbacks(found, failed)
        return NOT_DONE_YET


# -- pages ---------------------------------------------------------------------------------

def _when(stamp: float | None) -> str:
    if stamp is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp)) + " UTC"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def _score(match: dict[str, Any]) -> str:
    teams = match.get("teams") or {}
    if teams:
        return " : ".join(f"{escape(str(k))} {int(v)}" for k, v in sorted(teams.items()))
    players = match.get("players") or []
    if not players or not players[0]["score"]:
        return "—"
    return escape(f"{players[0]['name']} {players[0]['score']}")


def _html(title: str, current: str, body: str) -> bytes:
    tabs = "".join(
        f'<a href="{href}"{" aria-current=page" if name == current else ""}>{name}</a>'
        for name, href in (("Chat", "/chat"), ("Live", "/live"), ("Matches", "/matches"),
                           ("Players", "/players"), ("Console", "/console")))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"color-scheme\" content=\"dark light\">"
            f"<title>{escape(title)} · gamews</title><link rel=\"icon\" href=\"data:,\">"
            "<link rel=\"stylesheet\" href=\"/static/gamews.css\"></head>"
            "<body data-page=\"archive\"><header class=\"top\"><a class=\"brand\" href=\"/\">"
            "<span class=\"logo\" aria-hidden=\"true\"></span>gamews</a>"
            f"<nav class=\"tabs\">{tabs}</nav></header>"
            f"<main class=\"archive\">{body}</main></body></html>\n").encode()


def _link(path: str, **query: Any) -> str:
    args = {k: v for k, v in query.items() if v not in (None, "")}
    return escape(path + ("?" + urlencode(args) if args else ""), quote=True)


def _player_href(key: str | None) -> str:
    return escape(f"/players/{quote(key, safe='')}", quote=True) if key else ""


def _matches_html(result: dict[str, Any], filters: dict[str, str | None]) -> bytes:
    rows = []
    for m in result["matches"]:
        names = ", ".join(f'<a href="{_link("/matches", player=str(p["name"]))}">'
                          f'{escape(str(p["name"]))}</a>' for p in (m["players"] or [])[:10])
        rows.append(
            f'<tr data-id="{m["id"]}" data-status="{escape(m["status"])}">'
            f'<td><a href="/matches/{m["id"]}">#{m["id"]}</a></td>'
            f'<td><a href="{_link("/matches", server=m["server"])}">'
            f'{escape(m["server"])}</a></td>'
            f'<td><a href="{_link("/matches", map=m["map"])}">{escape(m["map"] or "?")}</a></td>'
            f'<td>{_when(m["started"])}</td><td class="num">{_clock(m["duration"])}</td>'
            f'<td class="score">{_score(m)}</td>'
            f'<td><span class="badge status" data-status="{escape(m["status"])}">'
            f'{escape(m["status"])}{" (joined)" if m["joined_mid_match"] else ""}</span></td>'
            f'<td class="names">{names}</td>'
            f'<td><a href="/matches/{m["id"]}/replay">replay</a></td></tr>')
    active = " · ".join(f'{k}: {escape(v)} <a href="{_link("/matches", **{**filters, k: None})}"'
                        f' title="remove">[x]</a>' for k, v in filters.items() if v)
    page, per, total = result["page"], result["per_page"], result["total"]
    nav = []
    if page > 1:
        nav.append(f'<a rel="prev" href="{_link("/matches", **filters, page=page - 1)}">'
                   "← newer</a>")
    if page * per < total:
        nav.append(f'<a rel="next" href="{_link("/matches", **filters, page=page + 1)}">'
                   "older →</a>")
    body = (f'<h1>Matches <span class="muted">{total}</span></h1>'
            f'<p class="filters">{active or "Click a server, a map or a player to filter."}</p>'
            '<div class="table-wrap"><table id="matches"><thead><tr><th>#</th><th>Server</th>'
            "<th>Map</th><th>Started</th><th class=num>Length</th><th>Score</th>"
            "<th>Status</th><th>Players</th><th></th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>"
            + ("" if rows else '<p class="empty">No recorded matches yet.</p>')
            + f'<nav class="pages">{" ".join(nav)}</nav>')
    return _html("Matches", "Matches", body)


def _match_html(s: dict[str, Any] | None) -> bytes | None:
    if s is None:
        return None
    m = s["match"]
    mid = m["id"]
    teams = "".join(f'<div class="team-score"><span class="team-name">{escape(str(k))}</span>'
                    f'<span class="team-points">{int(v)}</span></div>'
                    for k, v in sorted(s["teams"].items()))
    board = "".join(
        '<tr><td class="pname">'
        + (f'<a href="{_player_href(p["player"])}">{escape(p["name"])}</a>' if p["player"]
           else escape(p["name"]))
        + (' <span class="tag tag-bot">bot</span>' if p["bot"] else "")
        + f'</td><td>{escape(str(p["team"] or "—"))}</td><td class="num">{p["kills"]}</td>'
        f'<td class="num">{p["deaths"]}</td><td class="num">{p["score"]}</td></tr>'
        for p in s["scoreboard"])
    rounds = "".join(
        f'<tr><td class="num">{r["round"]}</td><td><a href="/matches/{mid}/replay?t='
        f'{int(r["t"])}">{_clock(r["t"])}</a></td><td>{escape(str(r["winner"] or "—"))}</td>'
        f'<td>{" : ".join(f"{escape(str(k))} {v}" for k, v in sorted((r["teams"] or {}).items()))}'
        "</td></tr>" for r in s["rounds"])
    kills = "".join(
        f'<li><a href="/matches/{mid}/replay?t={int(k["t"])}">{_clock(k["t"])}</a> '
        + (f'<span class="kname">{escape(str(k["killer"]))}</span> ' if k["killer"] else "")
        + f'<span class="weapon">{escape(str(k["weapon"] or "died"))}</span> '
        + ('<span class="tag tag-hs">HS</span> ' if k["headshot"] else "")
        + f'<span class="kname">{escape(str(k["victim"]))}</span></li>' for k in s["kills"])
    chat = "".join(
        f'<li><a href="/matches/{mid}/replay?t={int(c["t"])}">{_clock(c["t"])}</a> '
        f'<span class="name">{escape(str(c["name"]))}</span>'
        + (' <span class="tag tag-team">team</span>' if c["team_only"] else "")
        + f' <span class="text">{escape(str(c["text"]))}</span></li>' for c in s["chat"])
    body = (f'<h1>Match #{mid}: {escape(m["map"] or "?")} on {escape(m["server"])}</h1>'
            f'<p class="facts"><span class="badge status" data-status="{escape(m["status"])}">'
            f'{escape(m["status"])}</span> started {_when(m["started"])} · '
            f'{_clock(m["duration"])} · {m["events"]} events'
            f'{" · joined mid-match" if m["joined_mid_match"] else ""} · '
            f'<a class="button" id="replay" href="/matches/{mid}/replay">Replay</a> · '
            f'<a href="/api/v1/matches/{mid}/export">export (NDJSON)</a></p>'
            f'<div id="final" class="teams">{teams}</div>'
            '<section class="panel"><h2>Final scoreboard</h2><div class="table-wrap">'
            '<table id="scoreboard"><thead><tr><th>Name</th><th>Team</th><th class=num>K</th>'
            f'<th class=num>D</th><th class=num>Score</th></tr></thead><tbody>{board}'
            '</tbody></table></div></section>'
            '<section class="panel"><h2>Rounds</h2><table id="rounds"><thead><tr>'
            '<th class=num>#</th><th>End</th><th>Winner</th><th>Score</th></tr></thead>'
            f'<tbody>{rounds}</tbody></table></section>'
            f'<section class="panel"><h2>Kills</h2><ol id="kills" class="timeline">{kills}</ol>'
            '</section>'
            f'<section class="panel"><h2>Chat</h2><ol id="chat" class="timeline">{chat}</ol>'
            '</section>')
    return _html(f"Match #{mid}", "Matches", body)


def _players_html(result: dict[str, Any]) -> bytes:
    rows = "".join(
        f'<tr><td><a href="{_player_href(p["id"])}">{escape(str(p["name"]))}</a></td>'
        f'<td class="num">{p["kills"]}</td><td class="num">{p["deaths"]}</td>'
        f'<td class="num">{p["kd"]}</td><td class="num">{p["headshot_pct"]}%</td>'
        f'<td class="num">{p["matches"]}</td><td>{_when(p["last_seen"])}</td></tr>'
        for p in result["players"])
    page, per, total = result["page"], result["per_page"], result["total"]
    nav = []
    if page > 1:
        nav.append(f'<a rel="prev" href="{_link("/players", page=page - 1)}">← before</a>')
    if page * per < total:
        nav.append(f'<a rel="next" href="{_link("/players", page=page + 1)}">more →</a>')
    body = ('<h1>Players</h1><p class="muted">Across recorded matches; bots left out. '
            "Source players by Steam ID, Quake 3 players by name.</p>"
            '<div class="table-wrap"><table id="leaderboard"><thead><tr><th>Name</th>'
            "<th class=num>Kills</th><th class=num>Deaths</th><th class=num>K/D</th>"
            "<th class=num>HS</th><th class=num>Matches</th><th>Last seen</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
            + ("" if rows else '<p class="empty">No players recorded yet.</p>')
            + f'<nav class="pages">{" ".join(nav)}</nav>')
    return _html("Players", "Players", body)


def _player_html(p: dict[str, Any] | None) -> bytes | None:
    if p is None:
        return None
    names = ", ".join(f"{escape(str(n['name']))} ({n['matches']})" for n in p["names"])
    recent = "".join(
        f'<tr><td><a href="/matches/{m["id"]}">#{m["id"]}</a></td>'
        f'<td>{escape(m["map"] or "?")}</td><td>{_when(m["started"])}</td>'
        f'<td>{escape(str(m["as"]["name"]))}</td><td class="num">{m["as"]["kills"]}</td>'
        f'<td class="num">{m["as"]["deaths"]}</td><td>{escape(m["status"])}</td></tr>'
        for m in p["recent"])
    body = (f'<h1>{escape(str(p["name"]))}</h1><p class="facts">{p["kills"]} kills · '
            f'{p["deaths"]} deaths · K/D {p["kd"]} · headshots {p["headshot_pct"]}% · '
            f'{p["matches"]} matches · last seen {_when(p["last_seen"])}</p>'
            f'<p>Names used: {names}</p><h2>Recent matches</h2><div class="table-wrap">'
            '<table id="recent"><thead><tr><th>#</th><th>Map</th><th>Started</th><th>As</th>'
            "<th class=num>K</th><th class=num>D</th><th>Status</th></tr></thead>"
            f"<tbody>{recent}</tbody></table></div>")
    return _html(str(p["name"]), "Players", body)


class MatchesPage(_ArchiveResource):
    """``/matches``, ``/matches/ID`` and ``/matches/ID/replay``."""


    def render_GET(self, request: Request) -> bytes | int:
        parts = [p.decode("utf-8", "replace") for p in request.postpath or [] if p]
        html = b"text/html; charset=utf-8"
        if not parts:
            filters = {k: _arg(request, k) for k in ("server", "map", "player")}
            return _respond(request, self.db.read(
                list_matches, **filters, page=_int_arg(request, "page", 1, 10**6)),
                lambda r: _matches_html(r, filters), html)
        if parts[0].isdigit() and len(parts) == 1:
            return _respond(request, self.db.read(summary, int(parts[0])), _match_html, html)
        if parts[0].isdigit() and parts[1:] == ["replay"]:
            secure(request)
            request.setHeader(b"content-type", html)
            return (STATIC_DIR / "live.html").read_bytes()
        secure(request)
        request.setResponseCode(404)
        return b"No such page.\n"


class PlayersPage(_ArchiveResource):
    """``/players`` and ``/players/ID``."""


    def render_GET(self, request: Request) -> bytes | int:
        parts = [p.decode("utf-8", "replace") for p in request.postpath or [] if p]
        html = b"text/html; charset=utf-8"
        if not parts:
            return _respond(request, self.db.read(
                list_players, page=_int_arg(request, "page", 1, 10**6)), _players_html, html)
        if len(parts) == 1:
            return _respond(request, self.db.read(player_record, unquote(parts[0])),
                            _player_html, html)
        secure(request)
        request.setResponseCode(404)
        return b"No such page.\n"

