"""``python -m gamews``: the service, and the tools beside it.

* ``python -m gamews [OPTIONS]``: the same service as ``twistd -n gamews [OPTIONS]``, in the
  foreground, for people who do not know twistd (``python -m gamews --help`` lists the
  options).
* ``python -m gamews check-config FILE``: check a config file as a start would, without
  starting: one line, exit status 0 (valid) or 2 (the first bad setting, named).
* ``python -m gamews new-plugin NAME [--directory DIR]``: write a ready plugin package
  (:mod:`gamews.newplugin`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run a tool, or the service; the exit status (2 for a usage error)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["new-plugin"]:
        return _new_plugin(args[1:])
    if args[:1] == ["check-config"]:
        if len(args) != 2:
            print("usage: python -m gamews check-config FILE", file=sys.stderr)
            return 2
        from gamews.reload import check_config

        return check_config(args[1])
    from twisted.scripts.twistd import run

    sys.argv = ["python -m gamews", "--nodaemon", "--pidfile=", "gamews", *args]
    run()  # type: ignore[no-untyped-call]
    return 0


def _new_plugin(argv: list[str]) -> int:
    from gamews.newplugin import write_plugin

    parser = argparse.ArgumentParser(prog="python -m gamews new-plugin",
                                     description="Write a ready plugin package.")
    parser.add_argument("name", help="the plugin's name (also its Python package): a-z, 0-9, _")
    parser.add_argument("--directory", type=Path, default=None,
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
    raise SystemExit(main())
