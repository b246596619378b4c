"""Helpers for the log tests: the shared recorded fixtures, hypothesis settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final
from unittest import SkipTest

from hypothesis import HealthCheck, settings

from gamews.events import EVENT_TYPES, Envelope, Event

FIXTURES: Final = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
"""``../shared/fixtures`` next to the project (recorded lines; never copied in)."""

FUZZ: Final = settings(
    max_examples=10_000,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""10,000 generated inputs, the same on every run."""


def fixture(*parts: str) -> Path:
    """A fixture file or directory; ``SkipTest`` when it is absent."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        raise SkipTest(f"fixture {path} not present")
    return path


def openarena_lines() -> list[str]:
    """The lines of the recorded OpenArena ``games.log``."""
    return fixture("openarena", "games.log").read_text("utf-8").splitlines()


def check_bounded(event: Event, line: str) -> None:
    """Assert ``event`` is a known type whose JSON is bounded by the line's length."""
    assert type(event) in EVENT_TYPES.values(), type(event)
    text = json.dumps(Envelope(1, "s", 0.0, event).to_json(), ensure_ascii=False)
    assert len(text) <= 6 * len(line) + 2000, (len(text), len(line))
