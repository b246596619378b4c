"""Read the recorded OpenArena replies from ``../shared/fixtures/openarena`` (never copied here).

Tests that use them raise ``SkipTest`` when the folder is absent (a fresh clone of gamews).
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from unittest import SkipTest

__all__ = ["OPENARENA_FIXTURES", "openarena_replies"]

#: Where the recorded peers' fixtures live (override with GAMEWS_FIXTURES).
OPENARENA_FIXTURES = Path(
    os.environ.get("GAMEWS_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "fixtures")
) / "openarena"

_DATAGRAM = re.compile(r"^\[\d+\].* len=\d+ (b'.*')$")


def openarena_replies() -> dict[str, list[bytes]]:
    """Map each ``=== title`` (or ``--- title:``) section of replies.txt to its datagrams."""
    path = OPENARENA_FIXTURES / "replies.txt"
    if not path.exists():
        raise SkipTest(f"{path} not present")
    sections: dict[str, list[bytes]] = {}
    title = ""
    for line in path.read_text("utf-8").splitlines():
        new_title = None
        if line.startswith("=== "):
            new_title = line[4:].strip()
        elif line.startswith("--- ") and ": " in line and "datagram" in line:
            new_title = line[4:].split(":", 1)[0].strip()
        if new_title is not None:
            title, n = new_title, 1
            while title in sections:  # a command recorded again: "status #2"
                n += 1
                title = f"{new_title} #{n}"
            sections[title] = []
        match = _DATAGRAM.match(line)
        if match and title:
            value = ast.literal_eval(match.group(1))
            assert isinstance(value, bytes)
            sections[title].append(value)
    return sections
