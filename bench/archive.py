"""Benchmark: the match archive (issue 17).

Usage::

    python -m bench.archive [--seconds 10] [--rate 1000] [--postgresql]

* **record**: demo-game log lines parsed and published on an :class:`EventBus` at
  ``--rate`` events per second (100 ticks a second), with a subscriber doing what the live
  plugin does per event (the view and its delta): the reactor thread's CPU time
  (``time.thread_time``) over ``--seconds``, without the archive and with it recording
  (SQLite, and PostgreSQL with ``--postgresql``). Phases alternate (without, with,
  without, with) so a busy machine weighs on both alike; the figure is the CPU added.
* **seek**: one match of 100,000 events; the time to answer a seek (the checkpoint
  before the moment, the events after it applied, the view made), 30 random moments.
* **list**: 10,000 recorded matches; ``GET /matches`` and ``GET /api/v1/matches`` over
  loopback HTTP from another thread, 30 times each.

``--postgresql`` starts a throwaway PostgreSQL (Debian's binaries, as in the tests).
Results are printed and written to ``bench/results/archive.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, LoopingCall
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from gamews.archive.config import ArchiveConfig
from gamews.archive.db import Conn, Database, connect, migrate
from gamews.archive.recorder import Recorder
from gamews.archive.recording import Batch, MatchId, MatchRow, PlayerLine, Recording
from gamews.archive.store import seek, write_batch
from gamews.archive.web import ApiResource, MatchesPage
from gamews.demo.match import DemoMatch
from gamews.events import Envelope, EventBus
from gamews.logs.source import parse_line
from gamews.view import diff_views, view_of

RESULTS = Path(__file__).resolve().parent / "results"


def demo_lines(count: int, seed: int = 5) -> list[str]:
    """``count`` demo-game log lines."""
    demo = DemoMatch(seed=seed)
    lines: list[str] = []
    now = 1_800_000_000.0
    while len(lines) < count:
        lines += demo.advance(now)
        now += 1.0
    return lines[:count]


# -- record ---------------------------------------------------------------------------------

async def record_phase(reactor: Any, lines: list[str], rate: int, seconds: float,
                       config: ArchiveConfig | None) -> dict[str, float]:
    """One phase: publish at ``rate`` for ``seconds``; the reactor thread's CPU."""
    bus = EventBus(reactor)
    bus.add_server("demo")
    views: dict[str, Any] = {"view": None}

    def live_like(envelope: Envelope) -> None:
        state = bus.state("demo")
        assert state is not None
        view = view_of(state, 10)
        if views["view"] is not None:
            diff_views(views["view"], view)
        views["view"] = view

    bus.subscribe(live_like, server="demo")
    db = recorder = None
    if config is not None:
        db = Database(config, reactor=reactor)
        db.start()
        recorder = Recorder(db, bus, ["demo"], clock=reactor)
        recorder.startService()
    feed = iter(lines * 100)
    sent = 0

    def tick() -> None:
        # as many as the rate asks for by now (a late tick catches up)
        nonlocal sent
        due = int((time.monotonic() - wall0) * rate)
        while sent < due:
            bus.publish("demo", parse_line(next(feed)))
            sent += 1

    loop = LoopingCall(tick)
    loop.clock = reactor
    cpu0, wall0 = time.thread_time(), time.monotonic()
    done = loop.start(0.01)
    await task.deferLater(reactor, seconds)
    loop.stop()
    await done
    cpu, wall = time.thread_time() - cpu0, time.monotonic() - wall0
    written = 0
    if recorder is not None and db is not None:
        await recorder.stopService()
        written = recorder.written
        await deferToThread(db.stop)
    return {"cpu_s": cpu, "wall_s": wall, "events": bus.add_server("demo").seq,
            "written": written}


async def bench_record(reactor: Any, args: argparse.Namespace,
                       databases: dict[str, ArchiveConfig]) -> dict[str, Any]:
    lines = demo_lines(20_000)
    out: dict[str, Any] = {}
    for name, config in databases.items():
        phases: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
        for _ in range(2):
            phases["without"].append(await record_phase(reactor, lines, args.rate,
                                                        args.seconds, None))
            phases["with"].append(await record_phase(reactor, lines, args.rate, args.seconds,
                                                     config))
        base = sum(p["cpu_s"] for p in phases["without"])
        rec = sum(p["cpu_s"] for p in phases["with"])
        events = sum(p["events"] for p in phases["with"])
        out[name] = {
            "rate": args.rate, "seconds": args.seconds,
            "reactor_cpu_without_s": round(base, 3), "reactor_cpu_with_s": round(rec, 3),
            "added_pct": round(100 * (rec - base) / base, 1),
            "added_us_per_event": round(1e6 * (rec - base) / events, 1),
            "written": sum(p["written"] for p in phases["with"]), "events": events,
        }
        print(f"record [{name}]: {args.rate} events/s: reactor thread "
              f"{base:.2f} s CPU without, {rec:.2f} s with: +{out[name]['added_pct']} % "
              f"({out[name]['added_us_per_event']} us per event); "
              f"{out[name]['written']}/{events} written")
    return out


# -- seek -----------------------------------------------------------------------------------

def build_long_match(conn: Conn, events: int) -> int:
    """One match of ``events`` demo events, written as the recorder would."""
    clock = Clock()
    clock.advance(1_800_000_000)
    bus = EventBus(clock)
    state = bus.add_server("demo")
    key = MatchId()
    recording: Recording | None = None
    batch = Batch()
    demo = DemoMatch(seed=9)
    while state.seq < events:
        for line in demo.advance(clock.seconds()):
            if state.seq >= events:
                break
            envelope = bus.publish("demo", parse_line(line))
            if recording is None:
                shadow = type(state)("demo")
                recording = Recording(key, envelope, shadow, joined=False)
            recording.add(envelope)
            batch.events.append((key, envelope))
        clock.advance(1.0)
        if len(batch.events) >= 5000 or state.seq >= events:
            assert recording is not None
            batch.matches.append(recording.row())
            batch.checkpoints += recording.take_checkpoints()
            batch.players += recording.take_players()
            conn.begin()
            write_batch(conn, batch)
            conn.commit()
            batch = Batch()
    assert key.id is not None
    return key.id


def bench_seek(config: ArchiveConfig, events: int) -> dict[str, Any]:
    conn = connect(config)
    migrate(conn)
    t0 = time.monotonic()
    match_id = build_long_match(conn, events)
    build = time.monotonic() - t0
    conn.begin()
    length = conn.execute("SELECT last_event - started FROM matches WHERE id = ?",
                          (match_id,)).fetchone()
    conn.commit()
    assert length is not None
    rng = random.Random(1)
    times = []
    for _ in range(30):
        at = rng.uniform(0, float(length[0]))
        t = time.perf_counter()
        conn.begin()
        state, _ = seek(conn, match_id, at, "demo")
        conn.commit()
        view_of(state, 10)
        times.append(1000 * (time.perf_counter() - t))
    conn.close()
    result = {"events": events, "match_seconds": round(float(length[0])),
              "build_s": round(build, 1), "seek_ms_median": round(statistics.median(times), 1),
              "seek_ms_max": round(max(times), 1)}
    return result


# -- list -----------------------------------------------------------------------------------

def fill_matches(conn: Conn, count: int) -> None:
    """``count`` matches of a few events and eight players each."""
    rng = random.Random(2)
    maps = ("de_dust2", "de_inferno", "de_mirage", "de_nuke")
    batch = Batch()
    for i in range(count):
        key = MatchId()
        started = 1_700_000_000.0 + i * 600
        players: list[dict[str, Any]] = [
            {"name": f"player{rng.randrange(200)}", "team": "CT", "bot": False,
             "kills": rng.randrange(30), "deaths": rng.randrange(30), "score": 0}
            for _ in range(8)]
        batch.matches.append(MatchRow(key, f"server{i % 5}", maps[i % 4], started,
                                      started + 1500, started + 1500, "finished", False, 1,
                                      10, 10, json.dumps({"CT": rng.randrange(16),
                                                          "TERRORIST": rng.randrange(16)}),
                                      json.dumps(players), "Game Over"))
        batch.players += [PlayerLine(key, f"[U:1:{rng.randrange(200)}]", p["name"], "CT",
                                     p["kills"], p["deaths"], 1, started + 1500)
                          for p in players]
        if len(batch.matches) >= 1000:
            conn.begin()
            write_batch(conn, batch)
            conn.commit()
            batch = Batch()
    if batch:
        conn.begin()
        write_batch(conn, batch)
        conn.commit()


async def bench_list(reactor: Any, config: ArchiveConfig, count: int) -> dict[str, Any]:
    conn = connect(config)
    migrate(conn)
    fill_matches(conn, count)
    conn.close()
    db = Database(config, reactor=reactor)
    db.start()
    root = Resource()
    root.putChild(b"matches", MatchesPage(db))
    api = Resource()
    root.putChild(b"api", api)
    v1 = ApiResource(db)
    api.putChild(b"v1", v1)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"

    def fetch(path: str) -> list[float]:
        times = []
        for _ in range(30):
            t = time.perf_counter()
            with urlopen(base + path, timeout=10) as r:  # noqa: S310 - loopback
                body = r.read()
            times.append(1000 * (time.perf_counter() - t))
        assert body
        return times

    out: dict[str, Any] = {"matches": count}
    for path in ("/matches", "/api/v1/matches"):
        times = await deferToThread(fetch, path)
        out[path] = {"median_ms": round(statistics.median(times), 1),
                     "p95_ms": round(sorted(times)[int(0.95 * len(times)) - 1], 1)}
    await port.stopListening()
    await deferToThread(db.stop)
    return out


# -- main -----------------------------------------------------------------------------------

async def main(reactor: Any, args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="gamews-bench-archive-"))
    databases = {"sqlite": ArchiveConfig(f"sqlite:{work / 'record.sqlite'}")}
    pg = None
    if args.postgresql:
        from tests.archive.support import PostgresServer

        pg = PostgresServer()
        await pg.start()
        pg.create_database()
        (work / "pg.pass").write_text(pg.password)
        databases["postgresql"] = ArchiveConfig.from_table(
            {"database": pg.url, "password_file": str(work / "pg.pass")})
    results: dict[str, Any] = {"record": await bench_record(reactor, args, databases)}
    results["seek"] = {}
    results["list"] = {}
    for name, config in databases.items():
        if name == "sqlite":
            seek_config = ArchiveConfig(f"sqlite:{work / 'seek.sqlite'}")
            list_config = ArchiveConfig(f"sqlite:{work / 'list.sqlite'}")
        else:
            seek_config = list_config = config
            conn = connect(config)
            conn.execute("TRUNCATE matches, events, checkpoints, match_players")
            conn.commit()
            conn.close()
        results["seek"][name] = await deferToThread(bench_seek, seek_config, args.events)
        print(f"seek [{name}]: {args.events} events: median "
              f"{results['seek'][name]['seek_ms_median']} ms, max "
              f"{results['seek'][name]['seek_ms_max']} ms")
        if name != "sqlite":
            conn = connect(config)
            conn.execute("TRUNCATE matches, events, checkpoints, match_players")
            conn.commit()
            conn.close()
        results["list"][name] = await bench_list(reactor, list_config, args.matches)
        for path in ("/matches", "/api/v1/matches"):
            r = results["list"][name][path]
            print(f"list [{name}]: GET {path} over {args.matches} matches: median "
                  f"{r['median_ms']} ms, p95 {r['p95_ms']} ms")
    if pg is not None:
        await pg.stop()
        pg.cleanup()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "archive.json").write_text(json.dumps(results, indent=2) + "\n")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--matches", type=int, default=10_000)
    parser.add_argument("--postgresql", action="store_true")
    args = parser.parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, args)))


if __name__ == "__main__":
    run()
