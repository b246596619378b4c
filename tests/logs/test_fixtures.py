"""Every recorded line in ../shared/fixtures is parsed, or of a documented ignored kind.

Per file the test reports the lines parsed, how many are Unknown and of which ignored kind
(``IGNORED`` in :mod:`gamews.logs.source` and :mod:`gamews.logs.quake3`, each with its
reason); an Unknown line outside those tables fails it. Skipped when the fixtures are absent.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from gamews.events import Event
from gamews.logs import quake3, source
from gamews.logs.common import IgnoredKind, decode_line, ignored_kind
from tests.logs.support import fixture


def log_lines(path: Path) -> Iterator[str]:
    """The log lines of a fixture file: its ``#`` header and, in the POST capture, the
    request and header lines left out."""
    for raw in path.read_bytes().splitlines():
        raw = raw.rstrip(b"\r\x00")
        if not raw.strip() or raw.startswith(b"#"):
            continue
        line = decode_line(raw)
        if path.suffix == ".txt" and not (line[:2].isdigit() or line.startswith("L ")):
            continue
        yield line


def survey(path: Path, parse: Callable[[str], Event], table: tuple[IgnoredKind, ...],
           message: Callable[[str], str]) -> tuple[int, Counter[str], list[str]]:
    """Lines parsed, Unknown lines by ignored kind, and the Unknown lines of no kind."""
    count, kinds, stray = 0, Counter[str](), []
    for line in log_lines(path):
        count += 1
        if parse(line).type != "unknown":
            continue
        kind = ignored_kind(table, message(line))
        if kind is None:
            stray.append(line)
        else:
            kinds[kind] += 1
    return count, kinds, stray


class FixtureTests(SynchronousTestCase):
    """The shared recorded lines against the parsers and the ignored-kinds tables."""

    def check(self, paths: list[Path], parse: Callable[[str], Event],
              table: tuple[IgnoredKind, ...], message: Callable[[str], str]) -> None:
        self.assertTrue(paths)
        for path in paths:
            count, kinds, stray = survey(path, parse, table, message)
            unknown = sum(kinds.values()) + len(stray)
            print(f"\n  {path.name}: {count} lines, {unknown} Unknown "
                  f"({100 * unknown / count:.1f} %), ignored kinds {dict(kinds)}, "
                  f"outside the table {len(stray)}", file=sys.stderr)
            self.assertGreater(count, 0)
            self.assertEqual(stray, [], path.name)

    def test_source(self) -> None:
        """CS:GO, CS2 (file and HTTP) and TF2 lines: Unknown only of an ignored kind."""
        folder = fixture("source")
        paths = sorted(folder.glob("*.log")) + sorted(folder.glob("*.txt"))
        self.check(paths, source.parse_line, source.IGNORED,
                   lambda line: source.split_stamp(line)[1])

    def test_openarena(self) -> None:
        """The recorded OpenArena games.log: Unknown only of an ignored kind."""
        self.check([fixture("openarena", "games.log")], quake3.parse_line, quake3.IGNORED,
                   lambda line: line)

    def test_tables_documented(self) -> None:
        """Every ignored kind has a unique name and a reason, and is named in docs/logs.md."""
        doc = (Path(__file__).resolve().parents[2] / "docs" / "logs.md").read_text("utf-8")
        for table in (source.IGNORED, quake3.IGNORED):
            names = [kind.name for kind in table]
            self.assertEqual(len(names), len(set(names)))
            for kind in table:
                self.assertTrue(kind.reason)
                self.assertIn(f"`{kind.name}`", doc)
