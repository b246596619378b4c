"""The documentation stays true: the generated event reference is current, and
``gamews.api`` exports every event class, documented."""

from __future__ import annotations

import inspect

from twisted.trial.unittest import SynchronousTestCase

import gamews.api
from gamews.eventdocs import render
from gamews.events import EVENT_TYPES
from tests.support import REPO


class DocsTests(SynchronousTestCase):
    """docs/events.md and the public API's docstrings."""

    def test_event_reference_is_current(self) -> None:
        """docs/events.md is what ``python -m gamews.eventdocs`` writes from the dataclasses."""
        self.assertEqual((REPO / "docs" / "events.md").read_text(), render(),
                         "run: python -m gamews.eventdocs > docs/events.md")

    def test_every_event_type_in_the_reference(self) -> None:
        """Each event type has its section."""
        reference = render()
        for kind, cls in EVENT_TYPES.items():
            self.assertIn(f"### `{kind}`: `{cls.__name__}`", reference)

    def test_api_exports_events_documented(self) -> None:
        """Every event class is exported by gamews.api; every exported class has a docstring."""
        exported = [getattr(gamews.api, name) for name in gamews.api.__all__]
        for cls in EVENT_TYPES.values():
            self.assertIn(cls, exported)
        for name in gamews.api.__all__:
            value = getattr(gamews.api, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                self.assertTrue(inspect.getdoc(value), name)
