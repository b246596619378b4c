"""Benchmark: gamews's Source RCON client vs the ``rconx`` client on the same local peer.

Usage::

    python bench/rcon.py [--commands 3000] [--rate 1000] [--seconds 3]

The peer is an ``rconx`` ``AsyncRconServer`` in a separate process on 127.0.0.1 (so the
clients do not share its interpreter lock), answering every command with a short echo.
Two runs per client, one after the other, in one process:

* **sequential**: one command at a time, as fast as replies come -> commands per second;
* **paced**: ``--rate`` commands per second for ``--seconds`` -> p50/p99/max latency.

Prints one table with gamews/rconx ratios (throughput: higher is better; latency: rconx /
gamews, so ratios >= 1.0 mean gamews is at least as good) and checks the targets
(throughput ratio >= 1.0, gamews p99 < 5 ms at the paced rate).  Exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PASSWORD = "bench-rcon-pw"  # noqa: S105 - a throwaway password for a loopback peer

_PEER = """
import asyncio, sys
from rconx import AsyncRconServer
async def auth(content, info): return content.content == sys.argv[2].encode()
async def command(content, info): return "echo: " + content.text
async def main():
    server = AsyncRconServer("127.0.0.1", int(sys.argv[1]), authentication=auth,
                             command_handler=command)
    await server.serve(on_started=lambda: print("ready", flush=True))
asyncio.run(main())
"""


@dataclass
class Result:
    """Latencies (seconds) of one run and its wall time."""

    latencies: list[float]
    wall: float

    @property
    def rate(self) -> float:
        """Commands per second."""
        return len(self.latencies) / self.wall

    def percentile(self, p: float) -> float:
        """The p-th percentile latency in ms."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_peer(port: int) -> subprocess.Popen[str]:
    """Start the rconx peer process and wait (bounded) until it listens."""
    peer = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _PEER, str(port), PASSWORD],
        stdout=subprocess.PIPE, text=True,
    )
    assert peer.stdout is not None
    line = peer.stdout.readline()  # blocks until "ready" or the process dies
    if line.strip() != "ready":
        peer.kill()
        raise RuntimeError("rconx peer did not start")
    return peer


def run_rconx(port: int, commands: int, rate: float, seconds: float) -> tuple[Result, Result]:
    """Sequential and paced runs with rconx's blocking client."""
    rconx: Any = importlib.import_module("rconx")
    with rconx.RconClient.create("127.0.0.1", port, preset="srcds") as client:
        client.connect_and_authenticate(PASSWORD, timeout=5)
        for _ in range(50):
            client.execute("warm", timeout=5)
        latencies = []
        start = time.perf_counter()
        for _ in range(commands):
            t = time.perf_counter()
            client.execute("x", timeout=5)
            latencies.append(time.perf_counter() - t)
        sequential = Result(latencies, time.perf_counter() - start)
        latencies = []
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the load generator, not synchronisation
            t = time.perf_counter()
            client.execute("x", timeout=5)
            latencies.append(time.perf_counter() - t)
        paced = Result(latencies, time.perf_counter() - start)
    return sequential, paced


def run_gamews(port: int, commands: int, rate: float, seconds: float) -> tuple[Result, Result]:
    """Sequential and paced runs with gamews's SourceRconClient on the global reactor."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from gamews.rcon.source import SourceRconClient
    from gamews.secret import Secret

    r: Any = reactor
    out: list[Result] = []

    async def main() -> None:
        client = SourceRconClient("bench", TCP4ClientEndpoint(r, "127.0.0.1", port),
                                  Secret(PASSWORD), clock=r, max_pending=10_000)
        client.start()
        for _ in range(50):
            await client.rcon("warm")
        latencies = []
        start = time.perf_counter()
        for _ in range(commands):
            t = time.perf_counter()
            await client.rcon("x")
            latencies.append(time.perf_counter() - t)
        out.append(Result(latencies, time.perf_counter() - start))

        paced: list[float] = []
        waits: list[Deferred[None]] = []
        total = int(rate * seconds)
        begin = time.perf_counter()

        def send() -> Deferred[None]:
            t = time.perf_counter()
            return client.rcon("x").addCallback(lambda _: paced.append(time.perf_counter() - t))

        done: Deferred[None] = Deferred()

        def tick(i: int) -> None:
            # Send every command that is due, then sleep until the next one is.
            now = time.perf_counter()
            while i < total and begin + i / rate <= now:
                waits.append(send())
                i += 1
            if i < total:
                r.callLater(max(0.0, begin + i / rate - time.perf_counter()), tick, i)
            else:
                done.callback(None)

        tick(0)
        await done
        await gatherResults(waits)
        out.append(Result(paced, time.perf_counter() - begin))
        await client.stop()

    def run() -> None:
        d = Deferred.fromCoroutine(main())
        d.addErrback(lambda f: f.printTraceback())
        d.addBoth(lambda _: r.stop())

    r.callWhenRunning(run)
    r.run()
    if len(out) != 2:
        raise RuntimeError("gamews run failed")
    return out[0], out[1]


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    port = free_port()
    peer = start_peer(port)
    try:
        rx_seq, rx_paced = run_rconx(port, args.commands, args.rate, args.seconds)
        gw_seq, gw_paced = run_gamews(port, args.commands, args.rate, args.seconds)
    finally:
        peer.terminate()
        peer.wait(10)

    rows = [
        ("sequential commands/s", gw_seq.rate, rx_seq.rate, gw_seq.rate / rx_seq.rate),
        ("sequential p50 ms", gw_seq.percentile(50), rx_seq.percentile(50),
         rx_seq.percentile(50) / gw_seq.percentile(50)),
        ("sequential p99 ms", gw_seq.percentile(99), rx_seq.percentile(99),
         rx_seq.percentile(99) / gw_seq.percentile(99)),
        (f"paced {args.rate:.0f}/s p50 ms", gw_paced.percentile(50), rx_paced.percentile(50),
         rx_paced.percentile(50) / gw_paced.percentile(50)),
        (f"paced {args.rate:.0f}/s p99 ms", gw_paced.percentile(99), rx_paced.percentile(99),
         rx_paced.percentile(99) / gw_paced.percentile(99)),
        (f"paced {args.rate:.0f}/s max ms", 1000 * max(gw_paced.latencies),
         1000 * max(rx_paced.latencies), max(rx_paced.latencies) / max(gw_paced.latencies)),
    ]
    print(f"Source RCON, rconx AsyncRconServer peer on 127.0.0.1 (separate process), "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'metric':<26}{'gamews':>12}{'rconx':>12}{'ratio':>9}   (ratio >= 1.0: gamews "
          f"as good or better)")
    for name, gw, rx, ratio in rows:
        print(f"{name:<26}{gw:>12.3f}{rx:>12.3f}{ratio:>8.2f}x")
    throughput_ok = gw_seq.rate / rx_seq.rate >= 1.0
    p99 = gw_paced.percentile(99)
    paced_ok = p99 < 5.0 and gw_paced.rate >= 0.95 * args.rate
    print(f"target throughput ratio >= 1.0: {'met' if throughput_ok else 'MISSED'}; "
          f"gamews p99 < 5 ms at {args.rate:.0f}/s: {'met' if paced_ok else 'MISSED'} "
          f"({p99:.3f} ms)")
    print(f"mean ms: gamews seq {1000 * statistics.mean(gw_seq.latencies):.3f}, "
          f"rconx seq {1000 * statistics.mean(rx_seq.latencies):.3f}; paced runs sent "
          f"{len(gw_paced.latencies)} / {len(rx_paced.latencies)} commands at "
          f"{gw_paced.rate:.0f} / {rx_paced.rate:.0f} per s (load generator, not a ratio)")
    return 0 if throughput_ok and paced_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
