"""Fan-out through Redis (issue 8): spectators held by one gamews instance versus three
(an origin and two edges) on this machine, and the latency an edge adds.

Usage (from the repository root; about 2-3 minutes)::

    python -m bench.fanout [--steps 250,500,750,...] [--seconds 2]
    python -m bench.fanout --latency-only --latency-runs 5 --latency-seconds 10

Needs ``redis-server`` (started here on a free loopback port, no persistence) and a C
compiler for ``bench/ws/loadgen.c``. Every instance is ``bench/fanout/server.py``: the real
``GamewsService`` with a plugin that publishes one event per tick at 64 Hz on the origin
and broadcasts every event of the bus (``"SEQ SENDTIME …"``, 200 bytes) to ``/broadcast``
on every instance, so an edge's figures include the trip origin → Redis → edge.

* **latency**: 100 spectators on the origin and 100 on an edge at once, for
  ``--latency-seconds`` (3); the p50/p99 from event publication to arrival at a client on
  each, and their difference (what the edge adds). ``--latency-runs N`` repeats it with
  fresh instances and prints each run and the median and range of the differences.
* **spectators**: the most spectators held with p99 < 50 ms, no loss and 95 % of 64 Hz
  (the rules of ``bench/ws``): one instance (no Redis), then three instances with the
  spectators spread evenly, each instance's share measured by its own load generator at the
  same time (a step passes when all three do).

Nothing is pinned to a core: with two cores, three instances, Redis and the load
generators share them, which is the point of the comparison ("on this machine").
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.ws.run import (
    LOADGEN,
    MIN_HZ,
    P99_LIMIT_MS,
    RESULTS,
    _spawn,
    _stop,
    _stop_all,
    build_loadgen,
    free_port,
    read_line,
)

STEPS = (300, 600, 900, 1200, 1500, 1800, 2100, 2400, 2700, 3000, 3300, 3600, 4200, 4800, 6000)


class Instance:
    """One ``bench.fanout.server`` process."""

    def __init__(self, role: str, redis: str | None = None, name: str = "bench") -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "bench.fanout.server", "--port", str(self.port),
                "--role", role, "--name", name]
        if redis is not None:
            argv += ["--redis", redis]
        self.proc = _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = read_line(self.proc.stdout, 20.0)
        if not line or not line.startswith("READY"):
            _stop(self.proc)
            raise RuntimeError(f"{role} instance did not start")
        self.pid = self.proc.pid

    def loadgen(self, mode: str, *args: object, stdin: int | None = None
                ) -> subprocess.Popen[str]:
        argv = [str(LOADGEN), mode, str(self.port), "/broadcast", str(self.pid),
                *(str(a) for a in args)]
        return _spawn(argv, stdout=subprocess.PIPE, stdin=stdin, text=True)

    def bcast(self, n: int, seconds: float) -> subprocess.Popen[str]:
        return self.loadgen("bcast", n, seconds, 0.5, P99_LIMIT_MS, MIN_HZ)

    def stop(self) -> None:
        _stop(self.proc)


def final_point(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The loadgen's final measurement of its one step."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    point: dict[str, Any] = {"ok": False, "why": "no answer"}
    while time.monotonic() < deadline:
        line = read_line(proc.stdout, max(0.1, deadline - time.monotonic()))
        if not line:
            break
        point = json.loads(line)
        if not point.get("ok") or point.get("final", True):
            break
    _stop(proc)
    return point


def show(label: str, p: dict[str, Any]) -> None:
    if not p.get("ok"):
        print(f"    {label}: {p.get('why')}", flush=True)
        return
    print(f"    {label}: p50 {p['p50_ms']:.1f} ms p99 {p['p99_ms']:.1f} ms lost {p['lost']} "
          f"{p['hz']:.1f} Hz{'' if p['pass'] else ' FAIL'}{' VOID' if p['void'] else ''}",
          flush=True)


def redis_server() -> tuple[subprocess.Popen[Any], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    directory = tempfile.mkdtemp(prefix="gamews-bench-redis-")
    proc = _spawn([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", directory], stdout=subprocess.DEVNULL)
    atexit.register(shutil.rmtree, directory, True)
    time.sleep(0.5)
    return proc, f"tcp:127.0.0.1:{port}"


def latency(redis: str, seconds: float) -> dict[str, Any]:
    origin = Instance("origin", redis, "origin")
    edge = Instance("edge", redis, "edge-1")
    try:
        time.sleep(1.0)
        procs = [origin.bcast(100, seconds), edge.bcast(100, seconds)]
        at_origin, at_edge = (final_point(p, 60) for p in procs)
    finally:
        edge.stop()
        origin.stop()
    show("origin, 100 spectators", at_origin)
    show("edge, 100 spectators", at_edge)
    return {"origin": at_origin, "edge": at_edge}


def ramp(instances: list[Instance], steps: list[int], seconds: float) -> list[dict[str, Any]]:
    """Step the total number of spectators up, spread evenly over ``instances``, each share
    measured by its own load generator at the same time; a step passes if every share does
    (its p50/p99 are the worst of the shares')."""
    points = []
    try:
        for n in steps:
            share = n // len(instances)
            procs = [i.bcast(share, seconds) for i in instances]
            shares = [final_point(proc, 60 + seconds * 3) for proc in procs]
            ok = all(p.get("ok") for p in shares)
            point: dict[str, Any] = {
                "n": n, "ok": ok, "shares": shares, "why": "could not open the connections",
                "pass": ok and all(p.get("pass") for p in shares),
                "void": any(p.get("void") for p in shares)}
            if ok:
                point.update({key: max(p[key] for p in shares)
                              for key in ("p50_ms", "p99_ms", "lost", "max_ms")})
                point["hz"] = min(p["hz"] for p in shares)
            points.append(point)
            show(f"N={n:>5}" + (f" ({share} on each, worst shown)" if share != n else ""),
                 point)
            if not point["pass"]:
                break
    finally:
        for instance in reversed(instances):
            instance.stop()
    return points


def best(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    passed = [p for p in points if p.get("pass")]
    return passed[-1] if passed else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    parser.add_argument("--latency-runs", type=int, default=1)
    parser.add_argument("--latency-only", action="store_true")
    args = parser.parse_args(argv)
    # the instances' shared fan-out key (bench.fanout.server reads it)
    os.environ.setdefault("GAMEWS_BENCH_FANOUT_KEY", secrets.token_urlsafe(32))
    steps = [int(n) for n in args.steps.split(",")]
    atexit.register(_stop_all)
    build_loadgen()
    started = time.monotonic()
    redis_proc, redis = redis_server()
    try:
        print("latency: origin -> client vs origin -> Redis -> edge -> client", flush=True)
        runs = [latency(redis, args.latency_seconds) for _ in range(args.latency_runs)]
        lat = runs[0]
        added = [(r["edge"]["p50_ms"] - r["origin"]["p50_ms"],
                  r["edge"]["p99_ms"] - r["origin"]["p99_ms"])
                 for r in runs if r["origin"].get("ok") and r["edge"].get("ok")]
        for i, (p50, p99) in enumerate(added, 1):
            print(f"    run {i}: edge adds p50 {p50:+.2f} ms, p99 {p99:+.2f} ms", flush=True)
        if added:
            p50s, p99s = sorted(a for a, _ in added), sorted(b for _, b in added)
            print(f"    median of {len(added)} runs: p50 {p50s[len(p50s) // 2]:+.2f} ms "
                  f"({p50s[0]:+.2f} .. {p50s[-1]:+.2f}), p99 {p99s[len(p99s) // 2]:+.2f} ms "
                  f"({p99s[0]:+.2f} .. {p99s[-1]:+.2f})", flush=True)
        if args.latency_only:
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "fanout-latency.json").write_text(json.dumps(runs, indent=1))
            return 0
        print("spectators, one instance (no Redis)", flush=True)
        one = ramp([Instance("single")], steps, args.seconds)
        print("spectators, three instances (origin + 2 edges, spread evenly)", flush=True)
        many = ramp([Instance("origin", redis, "origin"),
                     *(Instance("edge", redis, f"edge-{i}") for i in (1, 2))],
                    steps, args.seconds)
    finally:
        _stop(redis_proc)
    o, e = lat["origin"], lat["edge"]
    b1, b3 = best(one), best(many)
    rows = [
        ("spectators held, 1 instance", f"{b1['n']:,}" if b1 else "0",
         f"p50 {b1['p50_ms']:.1f} / p99 {b1['p99_ms']:.1f} ms" if b1 else ""),
        ("spectators held, 3 instances", f"{b3['n']:,}" if b3 else "0",
         f"p50 {b3['p50_ms']:.1f} / p99 {b3['p99_ms']:.1f} ms (worst instance)" if b3 else ""),
    ]
    if o.get("ok") and e.get("ok"):
        rows += [
            ("delivery at the origin (100)", f"p50 {o['p50_ms']:.2f} ms",
             f"p99 {o['p99_ms']:.2f} ms"),
            ("delivery at an edge (100)", f"p50 {e['p50_ms']:.2f} ms", f"p99 {e['p99_ms']:.2f} ms"),
            ("added by origin -> edge", f"p50 {e['p50_ms'] - o['p50_ms']:+.2f} ms",
             f"p99 {e['p99_ms'] - o['p99_ms']:+.2f} ms"),
        ]
    print(f"\n{'measure':<32} {'value':<16} detail")
    for name, value, detail in rows:
        print(f"{name:<32} {value:<16} {detail}")
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fanout.json").write_text(json.dumps(
        {"latency": lat, "single": one, "three": many}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
