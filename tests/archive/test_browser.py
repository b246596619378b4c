"""The archive in real Chromium against ``twistd -n gamews --demo`` recording the demo
game (its matches made short: two rounds): the list shows a finished match, its page
opens, the replay seeks to a moment and shows that moment's score, plays at x8 to the
final score, and a ``?t=`` link opens at its moment.

Driven like ``tests/test_pages_browser.py`` (whose browser helpers it borrows): Debian's
Chromium through Playwright in a worker thread, bounded waits only. Screenshots of
``/matches`` and a replay go to ``docs/screenshots/`` with ``GAMEWS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, TestCase

import tests.test_pages_browser as pages
from tests.support import TwistdProcess, can_connect, free_port, poll_until, spawn_twistd

if pages.HAVE_PLAYWRIGHT:
    from playwright.sync_api import (  # type: ignore[import-not-found, unused-ignore]
        BrowserContext,
        Page,
        expect,
    )

SHORT_DEMO = ("import gamews.demo.match as m\n"
              "m.ROUNDS_PER_MAP = 2\n"
              "m.ROUND_SECONDS = 12.0\n")
"""Run in the gamews process before twistd: demo matches of two rounds."""


def _teams(page: Page) -> dict[str, int]:
    """The team scores the live view shows, by label."""
    pairs: list[list[Any]] = page.evaluate(
        "() => [...document.querySelectorAll('#teams .team-score')]"
        ".map(n => [n.querySelector('.team-name').textContent,"
        " Number(n.querySelector('.team-points').textContent)])")
    return {str(k): int(v) for k, v in pairs}


def _labels(teams: dict[str, int]) -> dict[str, int]:
    """Scores by the labels the page shows (TERRORIST is T)."""
    return {("T" if k == "TERRORIST" else k): v for k, v in teams.items()}


class ArchiveInChromiumTests(TestCase):
    """Matches recorded from the demo game, browsed and replayed in Chromium."""

    timeout = 240

    # the browser helpers of the page tests
    in_browser = cast(Any, pages.PagesInChromiumTests.in_browser)
    _browse = cast(Any, pages.PagesInChromiumTests._browse)
    screenshot_on_success = cast(Any, pages.PagesInChromiumTests.screenshot_on_success)
    kill_gamews = cast(Any, pages.PagesInChromiumTests.kill_gamews)

    def setUp(self) -> None:
        if not pages.HAVE_PLAYWRIGHT:
            raise SkipTest("playwright for Python is not installed")
        if not pages.CHROMIUM.exists():
            raise SkipTest(f"{pages.CHROMIUM} is missing (Debian's chromium package)")
        expect.set_options(timeout=pages.WAIT)
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: TwistdProcess | None = None

    async def start_gamews(self) -> None:
        process = self.process = spawn_twistd(
            ["-n", "gamews", "--demo", "--listen", f"tcp:{self.port}:interface=127.0.0.1"],
            prelude=SHORT_DEMO, env={"GAMEWS_DATA": str(self.dir / "data")})
        await poll_until(lambda: can_connect(self.port) or process.ended.called, timeout=30)
        self.assertFalse(process.ended.called, process.output.decode(errors="replace"))

    def wait_for_finished_match(self, page: Page) -> int:
        """Reload /matches until it lists a finished match (bounded); its id."""
        for _ in range(120):
            page.goto(f"{self.base}/matches")
            row = page.locator('#matches tr[data-status="finished"]')
            if row.count():
                return int(row.first.get_attribute("data-id") or "0")
            page.wait_for_timeout(1000)
        self.fail("no finished match listed within two minutes")

    def test_list_seek_play_and_link(self) -> Deferred[None]:
        """A finished demo match is listed; seeking its replay shows that moment's score;
        playing at x8 reaches the final score; a ?t= link opens at that moment."""
        def script(context: BrowserContext) -> None:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            def dialog(d: Any) -> None:
                errors.append(d.message)
                d.dismiss()

            page.on("dialog", dialog)
            match_id = self.wait_for_finished_match(page)
            with self.screenshot_on_success(page, "matches"):
                expect(page.locator("#matches tbody tr").first).to_be_visible()
            summary = json.loads(page.request.get(
                f"{self.base}/api/v1/matches/{match_id}").text())
            final = _labels(summary["teams"])
            first_round = summary["rounds"][0]
            self.assertTrue(final and first_round["teams"])

            # the match page, then its replay
            page.click(f'#matches tr[data-id="{match_id}"] a[href="/matches/{match_id}"]')
            expect(page.locator("#final .team-score")).to_have_count(len(final))
            page.click("#replay")
            expect(page.locator("#conn")).to_have_text("live")
            expect(page.locator("#replay-time")).to_have_attribute("data-state", "playing")
            page.click("#replay-play")
            expect(page.locator("#replay-time")).to_have_attribute("data-state", "paused")

            # seek to just after the first round ended: that moment's score
            moment = round(first_round["t"] + 0.6, 1)
            page.locator("#replay-seek").fill(str(moment))
            expected = _labels(first_round["teams"])
            page.wait_for_function(
                "want => { const got = {}; document.querySelectorAll('#teams .team-score')"
                ".forEach(n => { got[n.querySelector('.team-name').textContent] ="
                " Number(n.querySelector('.team-points').textContent); });"
                " return JSON.stringify(got) === JSON.stringify(want); }",
                arg=dict(sorted(expected.items(), key=lambda kv: kv[0] != "CT")))
            self.assertEqual(_teams(page), expected)
            expect(page.locator("#replay-time")).to_have_attribute(
                "data-t", str(int(moment)))

            # play at x8 to the end: the final score
            page.locator("#replay-speed").select_option("8")
            page.click("#replay-play")
            with self.screenshot_on_success(page, "replay"):
                expect(page.locator("#replay-time")).to_have_attribute(
                    "data-state", "ended", timeout=int(summary["match"]["length"] / 8
                                                       * 1000) + pages.WAIT)
                expect(page.locator("#killfeed li").first).to_be_visible()
            self.assertEqual(_teams(page), final)

            # a link to the first round's end opens there, paused
            page.goto(f"{self.base}/matches/{match_id}/replay?t={moment}")
            expect(page.locator("#replay-time")).to_have_attribute("data-state", "paused")
            expect(page.locator("#replay-time")).to_have_attribute("data-t", str(int(moment)))
            expect(page.locator("#teams .team-score")).to_have_count(len(expected))
            self.assertEqual(_teams(page), expected)
            self.assertEqual(errors, [])

        async def run() -> None:
            await self.start_gamews()
            try:
                await self.in_browser(script)
            finally:
                await self.kill_gamews()

        return Deferred.fromCoroutine(run())
