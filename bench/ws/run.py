"""Run gamews and its peers one after another and print a side-by-side table (issue 7).

Usage (from the repository root)::

    python -m bench.ws [--quick] [--servers gamews,websockets] [--tests echo,memory]

Each server (``bench/ws/*_server.py``; gamews as ``twistd -n gamews`` with its default
plugins, the benchmark plugin as a third-party drop-in and the demo off) runs in its own
process group pinned to core 0
(``taskset -c 0``) and is started afresh for every test; the load generator
(``bench/ws/loadgen.c``, C with epoll, built here with ``cc``) is pinned to core 1 and
reports its own CPU use. A figure taken while the load generator used >= 90 % of its
core is void and is shown as such. Tests:

Echo, memory and handshakes run 3 times (1 with ``--quick``), each on a fresh server,
and the median is shown; the spread is in the JSON (``runs``).

* **echo**: 100 connections, 64-byte binary messages, 16 in flight per connection.
* **memory**: RSS delta / N with N = 5,000 idle connections open (after a warm-up), the
  RSS of the server's whole process group.
* **handshakes**: 50 workers, each connect -> upgrade -> close handshake -> next.
* **broadcast**: a 200-byte text message at 64 Hz to N spectators; N = 500, then 1,000
  to 10,000 in steps of 500 until p99 >= 50 ms, a loss, or the
  server falls below 95 % of 64 Hz (it skips ticks it is too late for) in two windows in
  a row. Figure: the largest N that passed. Latency is sampled on about 1,000 sockets
  (every K-th); losses are counted on all.

The table (absolute figures, and ratios to python-websockets from the same run) is
printed and written to ``bench/results/ws.json`` (and a timestamped copy).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "bench" / "ws"
RESULTS = REPO / "bench" / "results"
LOADGEN_SRC = HERE / "loadgen.c"
LOADGEN = RESULTS / "ws-loadgen"
SERVER_CORE = "0"
LOADGEN_CORE = "1"
VOID_CPU = 0.9
P99_LIMIT_MS = 50.0
MIN_HZ = 64 * 0.95


@dataclass(frozen=True)
class Peer:
    name: str
    module: str
    package: str


PEERS = (
    Peer("websockets", "bench.ws.websockets_server", "websockets"),
    Peer("gamews", "bench.ws.gamews_server", "gamews"),
    Peer("autobahn", "bench.ws.autobahn_server", "autobahn"),
    Peer("aiohttp", "bench.ws.aiohttp_server", "aiohttp"),
    Peer("picows", "bench.ws.picows_server", "picows"),
)
TESTS = ("echo", "memory", "handshakes", "broadcast")


@dataclass(frozen=True)
class Settings:
    echo_seconds: float
    handshake_seconds: float
    memory_conns: int
    broadcast_steps: tuple[int, ...]
    broadcast_seconds: float
    warmup: float
    repeat: int


FULL = Settings(3.0, 3.0, 5000, (500, *range(1000, 10001, 500)), 3.0, 1.0, 3)
QUICK = Settings(1.5, 1.5, 5000, (500, *range(1000, 10001, 500)), 1.5, 0.5, 1)

# -- process hygiene: every process we start is in its own group, killed on exit --

_groups: list[subprocess.Popen[Any]] = []


def _spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    proc: subprocess.Popen[Any] = subprocess.Popen(  # noqa: S603  # our own argv
        argv, cwd=REPO, start_new_session=True, **kwargs)
    _groups.append(proc)
    return proc


def _stop(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc in _groups:
        _groups.remove(proc)


def _stop_all() -> None:
    for proc in list(_groups):
        _stop(proc, 1.0)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    raise SystemExit(128 + signum)


# -- helpers ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def group_rss_kib(pgid: int) -> int:
    """The resident memory of every process in process group ``pgid`` (the server and
    anything it started), in KiB."""
    total, found = 0, False
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
            if int(stat[stat.rindex(")") + 2:].split()[2]) != pgid:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    found = True
        except (OSError, ValueError):
            continue  # gone meanwhile
    if not found:
        raise RuntimeError(f"no process in group {pgid}")
    return total


def build_loadgen() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(LOADGEN), str(LOADGEN_SRC)],  # noqa: S603,S607
                   check=True)


def read_line(stream: IO[str], timeout: float) -> str | None:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    return stream.readline()


class Server:
    """One peer's server process on core 0."""

    def __init__(self, peer: Peer, log_name: str) -> None:
        self.port = free_port()
        logs = RESULTS / "ws-logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._log = (logs / f"{peer.name}-{log_name}.log").open("w")
        self.proc = _spawn(
            ["taskset", "-c", SERVER_CORE, sys.executable, "-m", peer.module,
             "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=self._log, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.proc.stdout is not None
        line = read_line(self.proc.stdout, 20.0)
        if not line or not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"{peer.name} did not start (see {self._log.name})")
        self.pid = self.proc.pid

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()


def loadgen(mode: str, server: Server, path: str, *args: object,
            stdin: int | None = None) -> subprocess.Popen[str]:
    argv = ["taskset", "-c", LOADGEN_CORE, str(LOADGEN), mode, str(server.port), path,
            str(server.pid), *(str(a) for a in args)]
    return _spawn(argv, stdout=subprocess.PIPE, stdin=stdin, text=True)


def loadgen_lines(proc: subprocess.Popen[str], timeout: float) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = read_line(proc.stdout, max(0.1, deadline - time.monotonic()))
        if line is None:
            continue
        if not line:
            break
        out.append(json.loads(line))
    _stop(proc)
    return out


# -- the tests -------------------------------------------------------------------


def test_echo(peer: Peer, s: Settings) -> dict[str, Any]:
    server = Server(peer, "echo")
    try:
        proc = loadgen("echo", server, "/echo", 100, 16, 64, s.warmup, s.echo_seconds)
        lines = loadgen_lines(proc, s.echo_seconds + s.warmup + 40)
    finally:
        server.stop()
    r: dict[str, Any] = lines[-1] if lines else {"ok": False}
    r["void"] = r.get("lg_cpu", 0) >= VOID_CPU
    r["value"] = r.get("rate") if r.get("ok") and not r["void"] else None
    return r


def test_handshakes(peer: Peer, s: Settings) -> dict[str, Any]:
    server = Server(peer, "handshakes")
    try:
        proc = loadgen("handshake", server, "/echo", 50, s.warmup / 2, s.handshake_seconds)
        lines = loadgen_lines(proc, s.handshake_seconds + s.warmup + 20)
    finally:
        server.stop()
    r: dict[str, Any] = lines[-1] if lines else {"rate": None}
    r["void"] = r.get("lg_cpu", 0) >= VOID_CPU
    r["value"] = r.get("rate") if not r["void"] else None
    return r


def test_memory(peer: Peer, s: Settings) -> dict[str, Any]:
    server = Server(peer, "memory")
    try:
        # warm-up: 200 connections opened and closed, so lazily built code paths exist
        warm = loadgen("hold", server, "/echo", 200, stdin=subprocess.PIPE)
        loadgen_lines_until_first(warm, 30)
        time.sleep(0.5)
        before = group_rss_kib(server.pid)
        n = s.memory_conns
        hold = loadgen("hold", server, "/echo", n, stdin=subprocess.PIPE)
        first = loadgen_lines_until_first(hold, 90, keep=True)
        time.sleep(1.0)
        after = group_rss_kib(server.pid)
        _stop(hold)
    finally:
        server.stop()
    opened = int(first.get("open", 0)) if first else 0
    per = (after - before) / opened if opened else None
    return {"n": n, "open": opened, "failed": first.get("failed") if first else None,
            "rss_before_kib": before, "rss_after_kib": after,
            "value": per if opened == n else None,
            "note": None if opened == n else f"only {opened} of {n} opened"}


def loadgen_lines_until_first(proc: subprocess.Popen[str], timeout: float,
                              keep: bool = False) -> dict[str, Any] | None:
    assert proc.stdout is not None
    line = read_line(proc.stdout, timeout)
    result = json.loads(line) if line else None
    if not keep:
        _stop(proc)
    return result


def test_broadcast(peer: Peer, s: Settings) -> dict[str, Any]:
    server = Server(peer, "broadcast")
    steps = ",".join(str(n) for n in s.broadcast_steps)
    points: list[dict[str, Any]] = []
    try:
        proc = loadgen("bcast", server, "/broadcast", steps, s.broadcast_seconds, 0.5,
                       P99_LIMIT_MS, MIN_HZ)
        assert proc.stdout is not None
        deadline = time.monotonic() + 60 + len(s.broadcast_steps) * (s.broadcast_seconds + 20)
        while time.monotonic() < deadline:
            line = read_line(proc.stdout, 5.0)
            if line is None:
                continue
            if not line:
                break
            p = json.loads(line)
            points.append(p)
            print(f"    N={p['n']:>5}: " + (
                f"p50 {p['p50_ms']:.1f} ms p99 {p['p99_ms']:.1f} ms lost {p['lost']} "
                f"{p['hz']:.1f} Hz srv {p['srv_cpu']:.0%} lg {p['lg_cpu']:.0%}"
                f"{' VOID' if p['void'] else ''}{'' if p['pass'] else ' FAIL'}"
                f"{'' if p.get('final', True) else ' (measuring again)'}"
                if p.get("ok") else p.get("why", "error")), flush=True)
        _stop(proc)
    finally:
        server.stop()
    finals = [p for p in points if p.get("final", True)]
    passed = [p for p in finals if p.get("pass")]
    last = finals[-1] if finals else None
    best = passed[-1]["n"] if passed else 0
    void = bool(last and last.get("void"))
    top = bool(last and last.get("pass") and last["n"] == s.broadcast_steps[-1])
    at = passed[-1] if passed else None
    return {
        "points": points,
        "value": None if void else best,
        "lower_bound": best,
        "void": void,
        "capped": top,
        "p50_ms": at["p50_ms"] if at else None,
        "p99_ms": at["p99_ms"] if at else None,
        "failed_at": None if (last is None or last.get("pass")) else last.get("n"),
    }


RUNNERS = {"echo": test_echo, "memory": test_memory, "handshakes": test_handshakes,
           "broadcast": test_broadcast}


# -- report ----------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("websockets", "autobahn", "Twisted", "aiohttp", "picows", "gamews"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "loadavg_start": list(os.getloadavg())}


def fmt_ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f})"


def table(results: dict[str, dict[str, Any]]) -> str:
    base = results.get("websockets", {})

    def val(name: str, test: str) -> float | None:
        v = results.get(name, {}).get(test, {}).get("value")
        return float(v) if v is not None else None

    rows: list[tuple[str, ...]] = [("server", "echo msg/s", "idle KiB/conn", "handshakes/s",
             "broadcast N (p50/p99 ms)", "echo, handshakes per server CPU-s", "max LG CPU")]
    for name, tests in results.items():
        cells = ["gamews (twistd -n gamews)" if name == "gamews" else name]
        for test, unit in (("echo", "k"), ("memory", "kib"), ("handshakes", "k")):
            r = tests.get(test)
            v = val(name, test)
            b = val("websockets", test) if base else None
            if r is None:
                cells.append("-")
            elif v is None:
                cells.append("VOID (LG saturated)" if r.get("void") else
                             f"error: {r.get('note') or 'no result'}")
            elif unit == "k":
                cells.append(f"{v / 1000:.1f}k{fmt_ratio(v, b)}")
            else:
                cells.append(f"{v:.1f}{fmt_ratio(v, b)}")
        r = tests.get("broadcast")
        if r is None:
            cells.append("-")
        else:
            b = val("websockets", "broadcast")
            shown = f"{r['lower_bound']:,}"
            if r["capped"]:
                shown = f">={shown}"
            if r["void"]:
                shown = f"VOID above {shown} (LG saturated at N={r['points'][-1]['n']})"
            else:
                shown += fmt_ratio(float(r["lower_bound"]), b)
            if r.get("p99_ms") is not None:
                shown += f" ({r['p50_ms']:.1f}/{r['p99_ms']:.1f})"
            cells.append(shown)
        per_cpu = []
        for test in ("echo", "handshakes"):
            v = tests.get(test, {}).get("per_cpu")
            b = base.get(test, {}).get("per_cpu")
            per_cpu.append("-" if v is None else f"{v / 1000:.1f}k{fmt_ratio(v, b)}")
        cells.append(", ".join(per_cpu))
        lg = [t.get("lg_cpu") for t in tests.values() if isinstance(t, dict)]
        lg += [p.get("lg_cpu") for p in tests.get("broadcast", {}).get("points", [])]
        lgv = [x for x in lg if isinstance(x, (int, float))]
        cells.append(f"{max(lgv):.0%}" if lgv else "-")
        rows.append(tuple(cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join([*lines, "", HOW])


TARGETS: dict[str, tuple[str, Callable[[float, float], bool]]] = {  # issues 7 and 19
    "echo": ("echo >= 1.3x websockets", lambda g, w: g / w >= 1.3),
    "memory": ("idle memory <= 7 KiB per connection", lambda g, w: g <= 7.0),
    "handshakes": ("handshakes >= 1.7x websockets", lambda g, w: g / w >= 1.7),
    "broadcast": ("broadcast N >= 2,000", lambda g, w: g >= 2000),
}

HOW = ("gamews: `twistd -n gamews` (default plugins echo, chat, live; the benchmark plugin "
       "from a drop-in; demo off; per-address limits raised; pings off);\n"
       "idle KiB/conn: RSS of the server's whole process group, every server;\n"
       "per server CPU-s: the rate divided by the share of core 0 the server had (the "
       "loadgen's reading), median of the runs")


def targets(results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    g, w = results.get("gamews", {}), results.get("websockets", {})
    for test, (label, check) in TARGETS.items():
        gv = g.get(test, {}).get("value")
        wv = w.get(test, {}).get("value")
        if gv is None or (test != "broadcast" and (wv is None or (test != "memory" and not wv))):
            out.append(f"{label}: not measured (void or missing)")
            continue
        ok = check(float(gv), float(wv or 0))  # broadcast: an absolute target
        ratio = float(gv) / float(wv) if wv else float("nan")
        out.append(f"{label}: {'MET' if ok else 'MISSED'} (gamews {gv:.1f}, ratio {ratio:.2f})")
    return out


def measure(test: str, peer: Peer, settings: Settings) -> dict[str, Any]:
    """Run ``test`` (echo, memory, handshakes: ``settings.repeat`` times, each on a fresh
    server, keeping the median; broadcast once, as it retries failed points itself)."""
    times = 1 if test == "broadcast" else settings.repeat
    runs: list[dict[str, Any]] = []
    for _ in range(times):
        try:
            runs.append(RUNNERS[test](peer, settings))
        except (RuntimeError, OSError, ValueError) as e:
            runs.append({"value": None, "note": str(e)})
    for r in runs:  # the rate per second of core 0 the server had: on a shared machine
        cpu = r.get("srv_cpu")  # the figure that moves least with the others' load
        r["per_cpu"] = r["value"] / cpu if r.get("value") is not None and cpu else None
    if len(runs) == 1:
        return runs[0]
    valued = sorted((r for r in runs if r.get("value") is not None), key=lambda r: r["value"])
    if len(valued) < len(runs):  # a void or failed run voids the median
        chosen = next(r for r in runs if r.get("value") is None)
    else:
        chosen = valued[len(valued) // 2]
    per_cpu = sorted(r["per_cpu"] for r in runs if r["per_cpu"] is not None)
    return {**chosen, "runs": [r.get("value") for r in runs],
            "per_cpu": per_cpu[len(per_cpu) // 2] if len(per_cpu) == len(runs) else None,
            "per_cpu_runs": [r["per_cpu"] for r in runs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1.5 s windows, one run per test instead of the median of 3")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs of echo, memory and handshakes, median kept "
                             "(default: 3; 1 with --quick)")
    parser.add_argument("--servers", default=",".join(p.name for p in PEERS),
                        help="comma-separated")
    parser.add_argument("--tests", default=",".join(TESTS))
    parser.add_argument("--out", type=Path, default=RESULTS / "ws.json")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.repeat is not None:
        if args.repeat < 1:
            parser.error("--repeat: at least 1")
        settings = replace(settings, repeat=args.repeat)
    peers = [p for p in PEERS if p.name in args.servers.split(",")]
    tests = [t for t in TESTS if t in args.tests.split(",")]
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2:
        print("needs 2 cores (server on core 0, load generator on core 1)", file=sys.stderr)
        return 2

    atexit.register(_stop_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    build_loadgen()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "quick": args.quick, "machine": machine(), "versions": versions(),
            "fd_limit": {"soft": soft, "hard": hard}, "settings": settings.__dict__}
    if hard < settings.broadcast_steps[-1] + 100:
        print(f"note: the hard fd limit ({hard}) stops broadcast above about {hard - 100}")
    print(f"{info['date']}  load {info['machine']['loadavg_start']}  "
          f"{info['machine']['cpu']}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for peer in peers:
        results[peer.name] = {}
        for test in tests:
            print(f"{peer.name}: {test} ...", flush=True)
            t0 = time.monotonic()
            r = measure(test, peer, settings)
            results[peer.name][test] = r
            shown = {k: v for k, v in r.items() if k != "points"}
            if "runs" in r:
                shown = {"value": r["value"], "runs": r["runs"],
                         "lg_cpu": r.get("lg_cpu"), "srv_cpu": r.get("srv_cpu")}
            print(f"  {time.monotonic() - t0:.1f}s {json.dumps(shown)}", flush=True)
    info["machine"]["loadavg_end"] = list(os.getloadavg())
    text = table(results)
    goals = targets(results)
    print()
    print(text)
    print()
    print("ratios: to python-websockets in this run (memory: lower is better)")
    for line in goals:
        print("  " + line)
    print(f"load average start {info['machine']['loadavg_start']} "
          f"end {info['machine']['loadavg_end']}")
    doc = {**info, "results": results, "table": text, "targets": goals}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    (args.out.parent / f"ws-{stamp}.json").write_text(json.dumps(doc, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
