"""``python -m gamews COMMAND``: tools beside ``twistd gamews``.

``new-plugin NAME [--directory DIR]`` writes a ready plugin package (:mod:`gamews.newplugin`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gamews.newplugin import write_plugin


def main(argv: list[str]) -> int:
    """Run one command; the exit status (2 for a usage error)."""
    parser = argparse.ArgumentParser(prog="python -m gamews")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new-plugin", help="write a ready plugin package")
    new.add_argument("name", help="the plugin's name (also its Python package): a-z, 0-9, _")
    new.add_argument("--directory", type=Path, default=None,
                     help="where to write it (default: ./NAME)")
    args = parser.parse_args(argv)
    directory = args.directory if args.directory is not None else Path(args.name)
    try:
        written = write_plugin(args.name, directory)
    except ValueError as e:
        print(f"python -m gamews new-plugin: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print(f"next: pip install -e {directory} && trial {args.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
