"""gamews as its users run it: ``twistd -n gamews`` with a config file, the default
plugins (echo, chat, live), the demo off, and the benchmark plugin of
``bench/ws/plugin.py`` loaded as a third-party plugin from a drop-in
(``bench/results/ws-twistd/twisted/plugins/``, on ``PYTHONPATH``).

The per-address limits are raised for the load generator (its 5,000 idle connections
come from 250 addresses) and pings are off, as in every peer. This script writes the
drop-in and the config, then replaces itself with ``twistd`` (``os.execve``): the
runner's pid, process group and core pinning are twistd's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .common import parse_port, raise_nofile

REPO = Path(__file__).resolve().parents[2]
DROPIN = "from bench.ws.plugin import BenchPlugin\n\nbench = BenchPlugin()\n"
CONFIG = """\
listen = ["tcp:{port}:interface=127.0.0.1"]
plugins = ["echo", "chat", "live", "bench"]   # the defaults, and the benchmark plugin
demo = false

[websocket]
max_connections = 20000
max_connections_per_ip = 20000
max_pending_per_ip = 20000
ping_interval = 0
"""


def twistd_argv(port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """Write the drop-in and config under ``workdir``; ``twistd``'s argv and environment."""
    plugins = workdir / "twisted" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "gamews_bench.py").write_text(DROPIN)
    config = workdir / "bench.toml"
    config.write_text(CONFIG.format(port=port))
    path = [str(workdir), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", f"--logfile={workdir / 'twistd.log'}",
            "gamews", "--config", str(config)]
    return argv, env


def main(port: int) -> None:
    workdir = REPO / "bench" / "results" / "ws-twistd"  # its log stays there for a look
    argv, env = twistd_argv(port, workdir)
    os.chdir(workdir)
    os.execve(argv[0], argv, env)  # noqa: S606  # our own argv


if __name__ == "__main__":
    raise_nofile()
    main(parse_port(__doc__ or ""))
