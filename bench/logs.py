"""Benchmark: log lines parsed per second per core, and UDP-packet-to-subscriber latency.

Usage::

    python bench/logs.py [--seconds 3] [--rates 1000,10000] [--parse-lines 200000]

* **parse**: each parser (Quake 3 on the recorded OpenArena ``games.log`` when
  ``../shared/fixtures`` is there, else on built-in lines; Source on built-in CS:GO / CS2 /
  TF2 lines) in one thread -> lines per second per core; also parse + publish to an
  :class:`~gamews.events.EventBus` with one subscriber and a match state.
* **udp**: a sender process (so it does not share the interpreter lock) sends real-format
  ``logaddress_add`` datagrams with a secret (``S`` packets), alternating kill and chat
  lines, at each ``--rates`` lines per second for ``--seconds``, to a
  :class:`~gamews.logs.udp.UdpLogService` on 127.0.0.1. Each chat line carries the sender's
  ``CLOCK_MONOTONIC`` time; the bus subscriber computes packet-to-subscriber latency
  (p50/p99/max) and counts losses.

Results are printed and written to ``bench/results/logs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gamews.events import Chat, Envelope, Event, EventBus
from gamews.logs import quake3, source
from gamews.logs.common import AllowedHosts
from gamews.logs.service import LinePipeline
from gamews.logs.udp import SourceLogReceiver, UdpLogService
from gamews.secret import Secret

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "openarena"
SECRET = "31337"  # noqa: S105 - a throwaway sv_logsecret for a loopback run

Q3_LINES = [
    "  0:09 Kill: 0 3 8: Sarge killed Major by MOD_PLASMA",
    "  0:09 PlayerScore: 0 1: Sarge now has 1 points",
    "  0:09 Item: 1 item_health",
    "  0:30 say: Kyonshi: That isn't the best way to a girl's heart.",
    "  0:00 ClientUserinfoChanged: 0 n\\Sarge\\t\\0\\model\\sarge\\hmodel\\sarge\\skill\\ 3.00",
    "  0:00 ClientConnect: 0",
]
T = "L 11/28/2026 - 09:30:01: "
SOURCE_LINES = [
    T + '"Ann<2><STEAM_1:1:12345678><CT>" [-1117 2465 -56] killed "Bot<3><BOT><TERRORIST>" '
        '[-1000 2300 -60] with "m4a1" (headshot)',
    T + '"Ann<2><STEAM_1:1:12345678><CT>" [-1117 2465 -56] attacked "Bot<3><BOT><TERRORIST>" '
        '[-1000 2300 -60] with "m4a1" (damage "27") (damage_armor "3") (health "73") '
        '(armor "96") (hitgroup "chest")',
    T + '"Ann<2><STEAM_1:1:12345678><CT>" say "gg wp"',
    T + '"Ann<2><STEAM_1:1:12345678><CT>" purchased "m4a1"',
    T + 'Team "CT" triggered "SFUI_Notice_Target_Saved" (CT "1") (T "0")',
    T + 'World triggered "Round_Start"',
    "11/28/2026 - 09:30:01.264 - \"Zed<5><[U:1:654321]><TERRORIST>\" [1 2 3] killed "
    "\"Ann<2><[U:1:24691357]><CT>\" [4 5 6] with \"ak47\" (headshot penetrated)",
    T + '"Jim<12><[U:1:42]><Red>" killed "Bob<13><[U:1:43]><Blue>" with "scattergun" '
        '(attacker_position "-1516 1144 -255") (victim_position "-1463 1185 -255")',
    T + '"Jim<12><[U:1:42]><Red>" triggered "player_builtobject" (object "OBJ_SENTRYGUN")',
    T + 'Molotov projectile spawned at 1 2 3, velocity 4 5 6',
]

_SENDER = r"""
import socket, sys, time
port, rate, seconds, secret = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
head = b"\xff\xff\xff\xffS" + secret.encode()
stamp = b"L 11/28/2026 - 09:30:01: "
kill = (stamp + b'"Ann<2><[U:1:5]><CT>" [1 2 3] killed "Bot<3><BOT><TERRORIST>" [4 5 6] '
        b'with "ak47" (headshot)\n\x00')
n = int(rate * seconds)
start = time.monotonic() + 0.2
for i in range(n):
    target = start + i / rate
    while True:
        delay = target - time.monotonic()
        if delay <= 0:
            break
        if delay > 0.0005:
            time.sleep(delay - 0.0003)
    if i % 2:
        s.sendto(head + kill, ("127.0.0.1", port))
    else:
        line = b'"Ann<2><[U:1:5]><CT>" say "t=%d"' % time.monotonic_ns()
        s.sendto(head + stamp + line + b"\n\x00", ("127.0.0.1", port))
print(n, flush=True)
"""


def lines_per_second(parse: Callable[[str], Event], lines: list[str], total: int) -> float:
    """Parse ``total`` lines (cycling through ``lines``) and return lines per second."""
    reps = max(1, total // len(lines))
    start = time.perf_counter()
    for _ in range(reps):
        for line in lines:
            parse(line)
    return reps * len(lines) / (time.perf_counter() - start)


def pipeline_per_second(parse: Callable[[str], Event], lines: list[str], total: int) -> float:
    """Parse and publish ``total`` lines to a bus with one subscriber; lines per second."""
    from twisted.internet.task import Clock

    bus = EventBus(Clock())
    count = [0]
    bus.subscribe(lambda e: count.__setitem__(0, count[0] + 1))
    sink = LinePipeline(bus, "bench", parse)
    reps = max(1, total // len(lines))
    start = time.perf_counter()
    for _ in range(reps):
        for line in lines:
            sink(line)
    elapsed = time.perf_counter() - start
    assert count[0] == reps * len(lines)
    return reps * len(lines) / elapsed


def bench_parse(total: int) -> dict[str, Any]:
    """Parser throughput figures."""
    q3 = Q3_LINES
    q3_source = "built-in lines"
    games_log = FIXTURE / "games.log"
    if games_log.exists():
        q3 = games_log.read_text("utf-8").splitlines()
        q3_source = "recorded games.log (491 lines)"
    return {
        "quake3_corpus": q3_source,
        "quake3_lines_per_s": lines_per_second(quake3.parse_line, q3, total),
        "source_lines_per_s": lines_per_second(source.parse_line, SOURCE_LINES, total),
        "quake3_pipeline_lines_per_s": pipeline_per_second(quake3.parse_line, q3, total),
        "source_pipeline_lines_per_s": pipeline_per_second(source.parse_line, SOURCE_LINES,
                                                           total),
    }


def bench_udp(rate: float, seconds: float) -> dict[str, Any]:
    """Latency from the sender's sendto to the bus subscriber, at ``rate`` lines/s."""
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    bus = EventBus(reactor, queue_size=100_000)
    latencies: list[float] = []
    received = [0]

    def subscriber(envelope: Envelope) -> None:
        now = time.monotonic_ns()
        received[0] += 1
        event = envelope.event
        if isinstance(event, Chat) and event.text.startswith("t="):
            latencies.append((now - int(event.text[2:])) / 1e9)

    bus.subscribe(subscriber)
    receiver = SourceLogReceiver(LinePipeline(bus, "cs", source.parse_line),
                                 allowed=AllowedHosts(["127.0.0.1"]), secret=Secret(SECRET))
    svc = UdpLogService(reactor, 0, receiver, interface="127.0.0.1")
    svc.startService()
    assert svc.listening is not None
    port = svc.listening.getHost().port  # type: ignore[attr-defined]
    sender = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _SENDER, str(port), str(rate), str(seconds), SECRET],
        stdout=subprocess.PIPE,
    )

    def check() -> None:
        if sender.poll() is None:
            reactor.callLater(0.05, check)
        else:
            reactor.callLater(0.5, reactor.stop)

    reactor.callLater(0.05, check)
    reactor.run(installSignalHandlers=False) if not reactor.running else None
    sent = int((sender.stdout.read() if sender.stdout else b"0").strip() or 0)
    svc.stopService()
    latencies.sort()
    return {
        "rate": rate,
        "sent": sent,
        "received": received[0],
        "lost": sent - received[0],
        "dropped": receiver.stats.dropped,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "max_ms": 1000 * latencies[-1] if latencies else None,
    }


def run_udp_rates(rates: list[float], seconds: float) -> list[dict[str, Any]]:
    """One UDP run per rate, each in a fresh process (the reactor runs once per process)."""
    results = []
    for rate in rates:
        out = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, __file__, "--udp-only", str(rate), "--seconds", str(seconds)],
            capture_output=True, check=True, text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    """Run the benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rates", default="1000,10000")
    parser.add_argument("--parse-lines", type=int, default=200_000)
    parser.add_argument("--udp-only", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.udp_only is not None:
        print(json.dumps(bench_udp(args.udp_only, args.seconds)))
        return
    parse = bench_parse(args.parse_lines)
    udp = run_udp_rates([float(r) for r in args.rates.split(",")], args.seconds)
    print(f"CPU: {os.cpu_count()} cores; Python {sys.version.split()[0]}; one core used")
    print(f"Quake 3 parse ({parse['quake3_corpus']}): "
          f"{parse['quake3_lines_per_s']:,.0f} lines/s; with bus: "
          f"{parse['quake3_pipeline_lines_per_s']:,.0f} lines/s")
    print(f"Source parse (CS:GO/CS2/TF2 mix): {parse['source_lines_per_s']:,.0f} lines/s; "
          f"with bus: {parse['source_pipeline_lines_per_s']:,.0f} lines/s")
    for r in udp:
        print(f"UDP {r['rate']:>7,.0f} lines/s: sent {r['sent']}, received {r['received']}, "
              f"lost {r['lost']}, p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
              f"max {r['max_ms']:.3f} ms")
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "logs.json").write_text(json.dumps({"parse": parse, "udp": udp}, indent=2))


if __name__ == "__main__":
    main()
