"""Soak: ``twistd gamews`` broadcasting at 64 Hz under connection churn.

    python -m bench.soak                  # 10 minutes
    python -m bench.soak --duration 60    # the CI version (.ci/run)

Runs a real ``twistd -n gamews`` (default limits) with the benchmark plugin of
``bench/ws`` (a 64 Hz broadcast of sequence-numbered 200-byte messages on
/broadcast). Against it, for ``--duration`` seconds:

* **stayers** (``--stayers``, from 127.0.2.x) connect first and stay to the end;
  each checks that every message arrives once and in order (a gap, a duplicate
  or an out-of-order message fails the run). At the end the server gets
  SIGTERM: every stayer must be closed with 1001 after the same last message.
* **churners** (``--churners`` loops, from two addresses only, 127.0.3.1 and
  127.0.3.2, so that a per-address count that leaked would soon refuse them) do,
  over and over: a WebSocket that reads a few messages (checked in order too)
  and closes cleanly; one dropped without a closing handshake; one closed right
  after the handshake; a page load (``GET /``); half a request line, abandoned.
  Any refusal or error fails the run.
* the server's RSS (``VmRSS``) is sampled throughout: the mean of the last tenth
  of the run must be within 5 % of the mean of the second tenth (for 10 minutes:
  the last minute against the second; shorter runs scale both windows).

Prints a summary; exits 1 on any failure. Linux only (``/proc``; 127.0.0.0/8).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[1]
DROPIN = "from bench.ws.plugin import BenchPlugin\n\nsoak = BenchPlugin()\n"
RSS_TOLERANCE = 0.05
STAYER_ADDRESS = "127.0.2.{}"
CHURN_ADDRESSES = ("127.0.3.1", "127.0.3.2")


def seq_of(message: str | bytes) -> int:
    """The sequence number a broadcast message starts with."""
    text = message.decode() if isinstance(message, bytes) else message
    return int(text.split(" ", 1)[0])


@dataclass
class Order:
    """Checks that sequence numbers come once each and in order."""

    first: int | None = None
    last: int | None = None
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0

    def take(self, seq: int) -> None:
        self.received += 1
        if self.last is None:
            self.first = self.last = seq
        elif seq == self.last + 1:
            self.last = seq
        elif seq > self.last + 1:
            self.lost += seq - self.last - 1
            self.last = seq
        elif seq == self.last:
            self.duplicated += 1
        else:
            self.out_of_order += 1

    @property
    def faults(self) -> int:
        return self.lost + self.duplicated + self.out_of_order


@dataclass
class Run:
    """Everything the clients saw."""

    url: str
    port: int
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    stayers: list[Order] = field(default_factory=list)
    stayer_ends: list[str] = field(default_factory=list)
    churn: Counter[str] = field(default_factory=Counter)
    churn_order: Order = field(default_factory=Order)
    failures: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        if len(self.failures) < 20:
            print(f"soak: FAILURE {what}", flush=True)
        self.failures.append(what)


async def stayer(run: Run, index: int, opened: asyncio.Event) -> None:
    order = Order()
    run.stayers.append(order)
    address = STAYER_ADDRESS.format(1 + index)
    try:
        async with connect(run.url, local_addr=(address, 0), open_timeout=10,
                           max_size=2**20, close_timeout=5) as ws:
            opened.set()
            async for message in ws:
                order.take(seq_of(message))
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        run.stayer_ends.append(f"{code}")
        if not run.stopping.is_set() or code != 1001:
            run.fail(f"stayer {index} closed with {code} before the end")
        return
    except Exception as e:  # every error is a finding
        run.fail(f"stayer {index}: {type(e).__name__}: {e}")
        opened.set()
        return
    run.stayer_ends.append("1001" if ws.close_code == 1001 else f"{ws.close_code}")
    if ws.close_code != 1001 or not run.stopping.is_set():
        run.fail(f"stayer {index} closed with {ws.close_code}")


async def churn_websocket(run: Run, address: str, rng: random.Random, mode: str) -> None:
    async with connect(run.url, local_addr=(address, 0), open_timeout=10,
                       close_timeout=5) as ws:
        if mode == "ws closed at once":
            return
        order = Order()
        for _ in range(rng.randint(1, 24)):
            order.take(seq_of(await asyncio.wait_for(ws.recv(), 5)))
        run.churn_order.lost += order.lost
        run.churn_order.duplicated += order.duplicated
        run.churn_order.out_of_order += order.out_of_order
        run.churn_order.received += order.received
        if mode == "ws dropped":
            drop(ws)


def drop(ws: ClientConnection) -> None:
    """Close the TCP connection without a closing handshake."""
    ws.transport.abort()


async def churn_http(run: Run, address: str, mode: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", run.port,
                                                   local_addr=(address, 0))
    try:
        if mode == "page load":
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = await asyncio.wait_for(reader.readline(), 10)
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"page load answered {head!r}")
            await asyncio.wait_for(reader.read(), 10)
        else:  # half a request line, abandoned
            writer.write(b"GET /broadcast HT")
            await asyncio.sleep(0.1)
    finally:
        writer.close()


MODES = ("ws read and closed", "ws dropped", "ws closed at once", "page load",
         "half request abandoned")


async def churner(run: Run, index: int) -> None:
    rng = random.Random(index)
    address = CHURN_ADDRESSES[index % len(CHURN_ADDRESSES)]
    while not run.stopping.is_set():
        mode = rng.choice(MODES)
        try:
            if mode.startswith("ws"):
                await churn_websocket(run, address, rng, mode)
            else:
                await churn_http(run, address, mode)
        except Exception as e:  # every error is a finding
            run.fail(f"churn ({mode}) from {address}: {type(e).__name__}: {e}")
            await asyncio.sleep(0.5)
        else:
            run.churn[mode] += 1


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def sample_rss(pid: int, duration: float, interval: float,
                     samples: list[tuple[float, int]]) -> None:
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < duration:
        rss = rss_kib(pid)
        if rss is not None:
            samples.append((elapsed, rss))
        await asyncio.sleep(interval)


def mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_listening(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.returncode is not None:
            break
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    sys.exit(f"soak: twistd gamews did not start; its log:\n{log.read_text(errors='replace')}")


async def soak(args: argparse.Namespace) -> int:
    duration: float = args.duration
    window = duration / 10
    workdir = Path(tempfile.mkdtemp(prefix="gamews-soak-"))
    plugins = workdir / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "gamews_soak.py").write_text(DROPIN)
    port = free_port()
    config = workdir / "soak.toml"
    config.write_text(f'listen = ["tcp:{port}:interface=127.0.0.1"]\nplugins = ["bench"]\n'
                      "demo = false\n")
    log = workdir / "twistd.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(workdir), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", f"--logfile={log}", "gamews", "--config", str(config),
        env=env, cwd=str(workdir), stdout=asyncio.subprocess.DEVNULL,
        start_new_session=True)
    try:
        return await measure(args, process, port, log, duration, window)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def measure(args: argparse.Namespace, process: asyncio.subprocess.Process, port: int,
                  log: Path, duration: float, window: float) -> int:
    await wait_listening(port, process, log)
    print(f"soak: {duration:.0f} s against twistd gamews (pid {process.pid}) on "
          f"127.0.0.1:{port}: {args.stayers} stayers, {args.churners} churners; "
          f"log {log}", flush=True)
    run = Run(url=f"ws://127.0.0.1:{port}/broadcast", port=port)
    opened = [asyncio.Event() for _ in range(args.stayers)]
    stayers = [asyncio.create_task(stayer(run, i, opened[i])) for i in range(args.stayers)]
    await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 30)
    samples: list[tuple[float, int]] = []
    sampler = asyncio.create_task(sample_rss(process.pid, duration, min(1.0, window / 10),
                                             samples))
    churners = [asyncio.create_task(churner(run, i)) for i in range(args.churners)]
    started = time.monotonic()
    await sampler
    run.stopping.set()
    await asyncio.gather(*churners)
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*stayers), 20)
    except TimeoutError:
        run.fail("stayers still open 20 s after SIGTERM")
    await asyncio.wait_for(process.wait(), 20)
    return report(run, samples, duration, window, time.monotonic() - started)


def report(run: Run, samples: list[tuple[float, int]], duration: float, window: float,
           elapsed: float) -> int:
    faults = sum(o.faults for o in run.stayers)
    lasts = {o.last for o in run.stayers}
    received = [o.received for o in run.stayers]
    print(f"stayers: {len(run.stayers)}, {min(received)}-{max(received)} messages each, "
          f"{sum(o.lost for o in run.stayers)} lost, "
          f"{sum(o.duplicated for o in run.stayers)} duplicated, "
          f"{sum(o.out_of_order for o in run.stayers)} out of order; "
          f"closed {dict(Counter(run.stayer_ends))} after last message "
          f"{sorted(x for x in lasts if x is not None)}")
    if faults:
        run.fail(f"stayers saw {faults} lost, duplicated or out-of-order messages")
    if len(lasts) != 1:
        run.fail(f"stayers ended on different messages: {sorted(map(str, lasts))}")
    churned = sum(run.churn.values())
    print(f"churn: {churned} connections in {elapsed:.0f} s ({churned / elapsed:.0f}/s): "
          + ", ".join(f"{n} {mode}" for mode, n in run.churn.most_common())
          + f"; churn readers got {run.churn_order.received} messages, "
          f"{run.churn_order.faults} lost, duplicated or out of order")
    if run.churn_order.faults:
        run.fail("churn readers saw lost, duplicated or out-of-order messages")
    second = [kib for t, kib in samples if window <= t < 2 * window]
    last = [kib for t, kib in samples if t >= duration - window]
    change = (mean(last) - mean(second)) / mean(second) if second and last else float("nan")
    print(f"rss: {len(samples)} samples, {min(kib for _, kib in samples) / 1024:.1f}-"
          f"{max(kib for _, kib in samples) / 1024:.1f} MiB; second window "
          f"({window:.0f}-{2 * window:.0f} s) mean {mean(second) / 1024:.1f} MiB, last window "
          f"({duration - window:.0f}-{duration:.0f} s) mean {mean(last) / 1024:.1f} MiB: "
          f"{change:+.1%} (limit ±{RSS_TOLERANCE:.0%})")
    if not abs(change) <= RSS_TOLERANCE:
        run.fail(f"server RSS moved {change:+.1%} between the second and the last window")
    verdict = "PASS" if not run.failures else f"FAIL ({len(run.failures)} failures)"
    print(f"soak: {verdict}", flush=True)
    return 0 if not run.failures else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--duration", type=float, default=600,
                        help="seconds of churn (default 600; the RSS windows are tenths)")
    parser.add_argument("--stayers", type=int, default=40, help="clients that stay (40)")
    parser.add_argument("--churners", type=int, default=16,
                        help="loops that connect and disconnect (16)")
    args = parser.parse_args()
    if args.duration < 10:
        parser.error("--duration: at least 10 seconds")
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(soak(args)))
    sys.exit(130)


if __name__ == "__main__":
    main()
