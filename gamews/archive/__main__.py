"""``python -m gamews.archive``: load a match exported as NDJSON, or export one.

::

    python -m gamews.archive import match-12.ndjson [--config gamews.toml]
    python -m gamews.archive export 12 [--config gamews.toml] > match-12.ndjson

The database is the config's ``[archive]`` one (default: the SQLite file under the data
directory, as ``twistd gamews`` uses). A bad file or setting is one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gamews.archive.config import ArchiveConfig
from gamews.archive.db import connect, migrate
from gamews.archive.store import export_header, import_match, iter_events
from gamews.config import load_config
from gamews.errors import ConfigError

__all__ = ["main"]


def _config(path: str | None) -> ArchiveConfig:
    if path is None:
        return ArchiveConfig.from_table({})
    config = load_config(path)
    if config.archive is False:
        raise ConfigError("archive", "the archive is off in this config (archive = false)")
    table = config.archive if isinstance(config.archive, dict) else {}
    return ArchiveConfig.from_table(table, base_dir=config.base_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m gamews.archive",
                                     description="Import or export a recorded match (NDJSON).")
    parser.add_argument("--config", "-c", help="gamews's TOML config (its [archive] table)")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("import", help="load a match exported as NDJSON")
    load.add_argument("file", help="the NDJSON file ('-': standard input)")
    save = commands.add_parser("export", help="write a match as NDJSON to standard output")
    save.add_argument("match", type=int, help="the match id")
    args = parser.parse_args(argv)
    try:
        conn = connect(_config(args.config))
        migrate(conn)
    except ConfigError as e:
        sys.stderr.write(f"gamews.archive: error: config: {e}\n")
        return 2
    except Exception as e:
        sys.stderr.write(f"gamews.archive: error: cannot open the archive: {e}\n")
        return 2
    try:
        conn.begin()
        if args.command == "import":
            stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
            with stream:
                match_id = import_match(conn, stream)
            conn.commit()
            print(f"imported as match {match_id}")
            return 0
        header = export_header(conn, args.match)
        if header is None:
            sys.stderr.write(f"gamews.archive: error: no match {args.match}\n")
            return 2
        import json

        out = sys.stdout
        out.write(json.dumps(header, ensure_ascii=False, separators=(",", ":")) + "\n")
        for line in iter_events(conn, args.match):
            out.write(line + "\n")
        conn.commit()
        return 0
    except (OSError, ValueError) as e:
        conn.rollback()
        sys.stderr.write(f"gamews.archive: error: {args.file if args.command == 'import' else ''}"
                         f": {e}\n")
        return 2
    finally:
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
