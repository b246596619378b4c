"""The chat, live and console pages in real Chromium against ``twistd -n gamews --demo``.

Each test starts gamews with the demo game as a child process on a free loopback port
(with a config naming console tokens the test knows), then drives Debian's Chromium
(``/usr/bin/chromium``; never a downloaded browser) through Playwright's sync API in a
worker thread, so the reactor keeps running the child process meanwhile. Waits are
bounded (Playwright's ``expect`` and ``wait_for_*`` with timeouts), never sleeps.

The tests also take the screenshots shown in the README: ``docs/screenshots/*.png``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from gamews.auth import hash_token, new_token
from tests.support import (
    REPO,
    TwistdProcess,
    can_connect,
    free_port,
    poll_until,
    real_reactor,
    spawn_twistd,
)

try:
    # Playwright is an optional test dependency: without it these tests skip, and mypy
    # (which then cannot see it) must not fail the build either
    from playwright.sync_api import (  # type: ignore[import-not-found, unused-ignore]
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Page,
        WebSocketRoute,
        expect,
        sync_playwright,
    )
except ImportError:  # pragma: no cover - the tests skip
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "docs" / "screenshots"
HOSTILE = "<img src=x onerror=alert(1)>"
WEB_HOSTILE = "<img src=y onerror=f()>"
"""A web user's name of that kind (names are at most 24 characters)."""
WAIT = 20_000
"""Milliseconds for a page to show something the demo does within seconds."""
SLOW = 60_000
"""Milliseconds for what the demo does now and then (a player joining again, a rejoin)."""

T = TypeVar("T")

# Records every state the RCON link badge passes through (a link may recover in a second,
# quicker than a poll would see it).
_WATCH_LINK = """() => {
  window.__linkStates = [document.querySelector('#link').dataset.state];
  new MutationObserver(() => {
    window.__linkStates.push(document.querySelector('#link').dataset.state);
  }).observe(document.querySelector('#link'), {attributes: true, childList: true});
}"""


@dataclass
class Tab:
    """A page and what it did that a test must check: dialogs, script errors."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def check_clean(self, test: TestCase) -> None:
        """No dialog was opened, no script failed, nothing was fetched from elsewhere."""
        test.assertEqual(self.dialogs, [], "a dialog opened: game text ran as HTML")
        test.assertEqual(self.errors, [], "the page logged errors")
        test.assertEqual(self.foreign, [], "the page fetched from another host")


class PagesInChromiumTests(TestCase):
    """The built-in pages in Chromium against the demo game."""

    timeout = 180

    def setUp(self) -> None:
        if not HAVE_PLAYWRIGHT:
            raise SkipTest("playwright for Python is not installed")
        if not CHROMIUM.exists():
            raise SkipTest(f"{CHROMIUM} is missing (Debian's chromium package)")
        expect.set_options(timeout=WAIT)
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.tokens = {role: new_token() for role in ("viewer", "moderator", "admin")}
        users = {"viewer": "vera", "moderator": "mona", "admin": "ada"}
        (self.dir / "tokens.txt").write_text("".join(
            f"{users[role]}:{role}:{hash_token(token)}\n" for role, token in self.tokens.items()))
        self.config = self.dir / "gamews.toml"
        self.config.write_text('[plugin.console]\ntokens_file = "tokens.txt"\n'
                               'audit_log = "audit.jsonl"\n')
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: TwistdProcess | None = None

    # -- the server ------------------------------------------------------------

    async def start_gamews(self) -> None:
        """Start ``twistd -n gamews --demo`` and wait until its port answers."""
        process = spawn_twistd(["-n", "gamews", "--demo", "--config", str(self.config),
                                "--listen", f"tcp:{self.port}:interface=127.0.0.1"])
        self.process = process
        await poll_until(lambda: can_connect(self.port) or process.ended.called, timeout=30)
        self.assertFalse(process.ended.called, process.output.decode(errors="replace"))

    async def kill_gamews(self) -> None:
        """Kill gamews at once (no closing handshakes: the pages see a dropped socket)."""
        if self.process is not None and not self.process.ended.called:
            self.process.signal("KILL")
            await self.process.ended

    def serve(self, test: Callable[[], Any]) -> Deferred[None]:
        """Run the async ``test`` with gamews running, and stop it afterwards."""
        async def run() -> None:
            await self.start_gamews()
            try:
                await test()
            finally:
                await self.kill_gamews()

        return ensureDeferred(run())

    def on_reactor(self, f: Callable[[], Any]) -> Any:
        """From the browser thread: run the coroutine function ``f`` on the reactor, wait."""
        return blockingCallFromThread(real_reactor(), lambda: ensureDeferred(f()))


    # -- the browser -------------------------------------------------------------

    async def in_browser(self, script: Callable[[BrowserContext], T]) -> T:
        """Run ``script`` with a fresh Chromium context in a worker thread."""
        result: T = await deferToThread(self._browse, script)
        return result

    def _browse(self, script: Callable[[BrowserContext], T]) -> T:
        assert threading.current_thread() is not threading.main_thread()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=CHROMIUM_ARGS, headless=True)
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 800},
                                              color_scheme="dark")
                context.set_default_timeout(WAIT)
                return script(context)
            finally:
                browser.close()

    def open(self, context: BrowserContext, path: str, *,
             allowed_errors: tuple[str, ...] = (), wait_live: bool = True) -> Tab:
        """Open ``path`` on gamews, recording dialogs and script errors, and wait for 'live'
        (unless ``wait_live`` is false: the overlay shows no connection badge)."""
        page = context.new_page()
        tab = Tab(page)

        def dialog(d: Dialog) -> None:
            tab.dialogs.append(d.message)
            d.dismiss()

        def console(message: ConsoleMessage) -> None:
            if message.type == "error" and not any(a in message.text for a in allowed_errors):
                tab.errors.append(message.text)

        page.on("dialog", dialog)
        page.on("console", console)
        page.on("pageerror", lambda error: tab.errors.append(str(error)))
        page.on("request", lambda request: None if request.url.startswith(
            (f"{self.base}/", "data:")) else tab.foreign.append(request.url))
        page.goto(f"{self.base}{path}")
        if path != "/console" and wait_live:
            expect(page.locator("#conn")).to_have_text("live")
        return tab

    @contextmanager
    def screenshot_on_success(self, page: Page, name: str, *,
                              transparent: bool = False) -> Iterator[None]:
        """Save a screenshot of ``page`` once the block passed: into ``docs/screenshots/``
        when ``GAMEWS_SCREENSHOTS=1`` is set (to refresh the README's), else into the
        test's temporary directory."""
        yield
        directory = SCREENSHOTS if os.environ.get("GAMEWS_SCREENSHOTS") == "1" else Path(
            self.mktemp())
        directory.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(directory / f"{name}.png"), omit_background=transparent)

    # -- chat ----------------------------------------------------------------------

    def test_chat_game_line_and_web_line_once(self) -> Deferred[None]:
        """The chat page shows game chat; a browser line comes back from the game once."""
        text = f"hello from the browser {token_hex(3)}"

        def script(context: BrowserContext) -> None:
            tab = self.open(context, "/chat")
            page = tab.page
            expect(page.locator("#lines li[data-kind=chat]").first).to_be_visible()
            page.fill("#name", "Tester")
            page.fill("#text", text)
            page.click("#say button[type=submit]")
            mine = page.locator("#lines li[data-kind=web]", has_text=text)
            # only the game's log makes a `web` line on a Source server: the demo got it
            expect(mine).to_have_count(1)
            expect(mine.locator(".name")).to_have_text("Tester")
            expect(page.locator("#text")).to_have_value("")
            # the game goes on after it, and it still appears once
            expect(page.locator("#lines li[data-kind=web]", has_text=text)
                   .locator("xpath=following-sibling::li").first).to_be_attached(timeout=SLOW)
            expect(mine).to_have_count(1)
            # the name is remembered; a late joiner gets it once, from the backlog
            page.reload()
            expect(page.locator("#conn")).to_have_text("live")
            expect(page.locator("#name")).to_have_value("Tester")
            expect(page.locator("#lines li[data-kind=web]", has_text=text)).to_have_count(1)
            with self.screenshot_on_success(page, "chat"):
                expect(page.locator("#lines li[data-kind=chat]").nth(1)).to_be_visible(
                    timeout=SLOW)
            tab.check_clean(self)

        return self.serve(lambda: self.in_browser(script))

    def test_chat_error_frame_shown_briefly(self) -> Deferred[None]:
        """Lines faster than the rate limit: the page shows the error, then hides it."""
        def script(context: BrowserContext) -> None:
            tab = self.open(context, "/chat")
            page = tab.page
            page.fill("#name", "Hasty")
            for i in range(5):
                page.fill("#text", f"spam {i}")
                page.press("#text", "Enter")
            expect(page.locator("#toast")).to_be_visible()
            expect(page.locator("#toast")).to_contain_text("rate limited")
            expect(page.locator("#toast")).to_be_hidden(timeout=10_000)
            tab.check_clean(self)

        return self.serve(lambda: self.in_browser(script))

    def test_stale_state_marked(self) -> Deferred[None]:
        """A link frame with stale (a fan-out edge whose origin is silent) marks the page
        stale (mock socket)."""
        def route(ws: WebSocketRoute) -> None:
            for frame in ({"type": "hello", "plugin": "live", "version": 1,
                           "servers": ["demo"], "server": "demo"},
                          {"type": "link", "server": "demo", "state": "connected",
                           "detail": None, "stale": True}):
                ws.send(json.dumps(frame))

        def script(context: BrowserContext) -> None:
            page = context.new_page()
            page.route_web_socket("**/live/ws", route)
            page.goto(f"{self.base}/live")
            expect(page.locator("#link")).to_have_text("demo: stale")
            expect(page.locator("#link")).to_have_attribute("data-stale", "true")
            expect(page.locator("body")).to_have_attribute("data-stale", "true")

        return self.serve(lambda: self.in_browser(script))

    def test_server_selector_with_several_servers(self) -> Deferred[None]:
        """hello with two servers shows a selector; choosing one sends select (mock socket)."""
        sent: list[dict[str, Any]] = []

        def hello(ws: WebSocketRoute, server: str) -> None:
            for frame in ({"type": "hello", "plugin": "chat", "version": 1,
                           "servers": ["alpha", "beta"], "server": server},
                          {"type": "link", "server": server,
                           "state": "connected" if server == "alpha" else "reconnecting",
                           "detail": None},
                          {"type": "backlog", "server": server, "lines": [
                              {"seq": 1, "time": 1.0, "kind": "chat", "name": f"on {server}",
                               "team": "CT", "text": "hi", "team_only": False,
                               "dead": False}]}):
                ws.send(json.dumps(frame))

        def route(ws: WebSocketRoute) -> None:
            def from_page(message: str | bytes) -> None:
                frame = json.loads(message)
                sent.append(frame)
                if frame["type"] == "select":
                    hello(ws, frame["server"])

            ws.on_message(from_page)
            hello(ws, "alpha")

        def script(context: BrowserContext) -> None:
            page = context.new_page()
            page.route_web_socket("**/chat/ws", route)
            page.goto(f"{self.base}/chat")
            expect(page.locator("#server-box")).to_be_visible()
            expect(page.locator("#server")).to_have_value("alpha")
            expect(page.locator("#lines li .name")).to_have_text(["on alpha"])
            page.select_option("#server", "beta")
            expect(page.locator("#lines li .name")).to_have_text(["on beta"])
            expect(page.locator("#link")).to_have_text("beta: reconnecting")
            self.assertEqual(page.evaluate("() => localStorage.getItem('gamews.server')"),
                             "beta")

        async def test() -> None:
            await self.in_browser(script)
            self.assertIn({"type": "select", "server": "beta"}, sent)

        return self.serve(test)

    # -- live ----------------------------------------------------------------------

    def test_live_scoreboard_changes_as_bots_score(self) -> Deferred[None]:
        """The scoreboard fills, changes as bots score, and stays sorted by team then score."""
        def kills(page: Page) -> int:
            total: int = page.evaluate(
                "() => [...document.querySelectorAll('#players tr')]"
                ".reduce((n, tr) => n + Number(tr.children[2].textContent), 0)")
            return total

        def script(context: BrowserContext) -> None:
            tab = self.open(context, "/live")
            page = tab.page
            expect(page.locator("#map")).not_to_have_text("—")
            expect(page.locator("#players tr").nth(3)).to_be_attached()
            before = kills(page)
            page.wait_for_function(
                "before => [...document.querySelectorAll('#players tr')]"
                ".reduce((n, tr) => n + Number(tr.children[2].textContent), 0) !== before",
                arg=before, timeout=SLOW)
            expect(page.locator("#killfeed li").first).to_be_visible()
            self.assertLessEqual(page.locator("#killfeed li").count(), 10)
            rows = page.evaluate(
                "() => [...document.querySelectorAll('#players tr')]"
                ".map(tr => [tr.children[1].textContent, Number(tr.children[4].textContent)])")
            order = {"CT": 0, "T": 1}
            keys = [(order.get(team, 9), -score) for team, score in rows]
            self.assertEqual(keys, sorted(keys), rows)
            with self.screenshot_on_success(page, "live"):
                expect(page.locator("#teams .team-score")).to_have_count(2)
                expect(page.locator("#killfeed li").nth(5)).to_be_attached(timeout=SLOW)
            tab.check_clean(self)

        return self.serve(lambda: self.in_browser(script))

    # -- overlay -------------------------------------------------------------------

    def test_overlay_transparent_score_and_kill_feed(self) -> Deferred[None]:
        """The OBS overlay: transparent, no controls, sized by its URL (width, scale, feed),
        the two teams' scores and a kill feed that follows the game."""
        def script(context: BrowserContext) -> None:
            tab = self.open(context, "/overlay?width=480&scale=1.5&feed=3", wait_live=False)
            page = tab.page
            expect(page.locator("#score .team-score")).to_have_count(2)
            expect(page.locator("#kills li").first).to_be_visible(timeout=SLOW)
            style = page.evaluate(
                "() => { const box = document.querySelector('.overlay-box');"
                " return [getComputedStyle(document.documentElement).backgroundColor,"
                " getComputedStyle(document.body).backgroundColor,"
                " box.getBoundingClientRect().width, getComputedStyle(document.body).fontSize,"
                " document.querySelectorAll('input, button, select, textarea, a, form').length]"
                " }")
            self.assertEqual(style, ["rgba(0, 0, 0, 0)", "rgba(0, 0, 0, 0)", 480, "24px", 0])
            page.set_viewport_size({"width": 480, "height": 300})
            with self.screenshot_on_success(page, "overlay", transparent=True):
                expect(page.locator("#kills li")).to_have_count(3, timeout=SLOW)
            seq = int(page.locator("body").get_attribute("data-seq") or 0)
            page.wait_for_function(
                "seq => Number(document.body.dataset.seq) > seq", arg=seq, timeout=SLOW)
            self.assertLessEqual(page.locator("#kills li").count(), 3)
            hidden = self.open(context, "/overlay?kills=0&server=demo", wait_live=False)
            expect(hidden.page.locator("#score .team-score")).to_have_count(2)
            expect(hidden.page.locator("#kills")).to_be_hidden()
            tab.check_clean(self)
            hidden.check_clean(self)

        return self.serve(lambda: self.in_browser(script))

    def test_live_spectator_delay_and_admin_sees_live(self) -> Deferred[None]:
        """With a spectator delay the page says so and lags; a console token makes it live."""
        with self.config.open("a") as f:
            f.write('[plugin.live]\ndelay = 30\ntokens_file = "tokens.txt"\n')

        def script(context: BrowserContext) -> None:
            public = self.open(context, "/live")
            admin = self.open(context, "/live")
            for tab in (public, admin):
                expect(tab.page.locator("#delay")).to_have_text("Spectator delay: 30s")
            admin.page.fill("#admin-token", self.tokens["admin"])
            admin.page.press("#admin-token", "Enter")
            expect(admin.page.locator("#delay")).to_be_hidden()
            expect(admin.page.locator("#players tr").first).to_be_attached()
            # 30 s behind a demo that started seconds ago: the public view is still empty
            self.assertEqual(public.page.locator("#players tr").count(), 0)
            self.assertNotIn(self.tokens["admin"], admin.page.url)
            public.check_clean(self)
            admin.check_clean(self)

        return self.serve(lambda: self.in_browser(script))

    def test_live_gap_in_seq_asks_for_resync(self) -> Deferred[None]:
        """A delta lost on the way makes the page send resync and carry on from the snapshot."""
        sent: list[str] = []

        def script(context: BrowserContext) -> None:
            deltas = 0

            def route(ws: WebSocketRoute) -> None:
                server = ws.connect_to_server()

                def from_server(message: str | bytes) -> None:
                    nonlocal deltas
                    if isinstance(message, str) and json.loads(message)["type"] == "delta":
                        deltas += 1
                        if deltas == 2:
                            return  # lost: the page must notice the gap
                    ws.send(message)

                def from_page(message: str | bytes) -> None:
                    sent.append(message if isinstance(message, str) else repr(message))
                    server.send(message)

                server.on_message(from_server)
                ws.on_message(from_page)

            page = context.new_page()
            page.route_web_socket("**/live/ws", route)
            page.goto(f"{self.base}/live")
            expect(page.locator("#seq")).to_contain_text("1 resync", timeout=SLOW)
            seq = int(page.locator("#seq").get_attribute("data-seq") or 0)
            page.wait_for_function(
                "seq => Number(document.querySelector('#seq').dataset.seq) > seq", arg=seq,
                timeout=SLOW)

        async def test() -> None:
            await self.in_browser(script)
            frames = [json.loads(s) for s in sent]
            self.assertEqual([f for f in frames if f["type"] == "resync"], [{"type": "resync"}])

        return self.serve(test)

    # -- console ---------------------------------------------------------------------

    def test_console_login_status_and_refused_command(self) -> Deferred[None]:
        """Wrong token refused; a moderator logs in, runs status, is refused sv_cheats."""
        moderator = self.tokens["moderator"]

        def script(context: BrowserContext) -> None:
            tab = self.open(context, "/console")
            page = tab.page
            self.assertEqual(page.get_attribute("#token", "type"), "password")
            page.fill("#token", "not-a-token")
            page.press("#token", "Enter")
            expect(page.locator("#login-error")).to_contain_text("refused")
            expect(page.locator("#console")).to_be_hidden()

            page.fill("#token", moderator)
            page.click("#login-form button[type=submit]")
            expect(page.locator("#console")).to_be_visible()
            expect(page.locator("#conn")).to_have_text("live")
            expect(page.locator("#user")).to_have_text("mona")
            expect(page.locator("#role")).to_have_text("moderator")
            expect(page.locator("#allowed")).to_contain_text("status")
            expect(page.locator("#link")).to_contain_text("connected")
            # the token is in no URL, no storage, no field any more
            self.assertNotIn(moderator, page.url)
            stored = page.evaluate("() => JSON.stringify([localStorage, sessionStorage])")
            self.assertNotIn(moderator, stored)
            expect(page.locator("#token")).to_have_value("")

            page.fill("#cmd", "status")
            page.press("#cmd", "Enter")
            status = page.locator(".entry.cmd", has_text="status").last
            expect(status).to_have_attribute("data-status", "ok")
            expect(status.locator(".output")).to_contain_text("hostname: gamews demo")

            page.fill("#cmd", "sv_cheats 1")
            page.press("#cmd", "Enter")
            refused = page.locator(".entry.cmd", has_text="sv_cheats 1").last
            expect(refused).to_have_attribute("data-status", "refused")
            expect(refused.locator(".output")).to_contain_text("not allowed")

            page.press("#cmd", "ArrowUp")
            expect(page.locator("#cmd")).to_have_value("sv_cheats 1")
            page.press("#cmd", "ArrowUp")
            expect(page.locator("#cmd")).to_have_value("status")
            page.press("#cmd", "ArrowDown")
            page.press("#cmd", "ArrowDown")
            expect(page.locator("#cmd")).to_have_value("")
            with self.screenshot_on_success(page, "console"):
                expect(page.locator(".entry.cline").first).to_be_attached()
            tab.check_clean(self)

        async def test() -> None:
            await self.in_browser(script)
            audit = [json.loads(line) for line in
                     (self.dir / "audit.jsonl").read_text().splitlines()]
            self.assertEqual([(a["user"], a["command"], a["status"]) for a in audit],
                             [("mona", "status", "ok"), ("mona", "sv_cheats 1", "refused")])

        return self.serve(test)

    # -- hostile names ---------------------------------------------------------------

    def test_hostile_player_name_is_text(self) -> Deferred[None]:
        """Players and web users named like <img src=x onerror=...> show as text on every page."""
        admin = self.tokens["admin"]

        def script(context: BrowserContext) -> None:
            # the demo's player joins at the start: the chat's backlog has it
            chat = self.open(context, "/chat")
            expect(chat.page.locator("#lines li[data-kind=event]",
                                     has_text=f"{HOSTILE} joined the game").first).to_be_visible()
            console = self.open(context, "/console")
            console.page.fill("#token", admin)
            console.page.press("#token", "Enter")
            expect(console.page.locator("#role")).to_have_text("admin")
            # a browser user may pick such a name too: it reaches every page as text
            chat.page.fill("#name", WEB_HOSTILE)
            chat.page.fill("#text", "no markup here")
            chat.page.press("#text", "Enter")
            expect(chat.page.locator("#lines li[data-kind=web]", has_text="no markup here")
                   .locator(".name")).to_have_text(WEB_HOSTILE)
            expect(console.page.locator(".entry.cline",
                                        has_text=f"{WEB_HOSTILE}: no markup here").first
                   ).to_be_visible()
            live = self.open(context, "/live")
            console.page.fill("#cmd", "status")
            console.page.press("#cmd", "Enter")
            status = console.page.locator(".entry.cmd", has_text="status").last
            expect(status).to_have_attribute("data-status", "ok")
            # the demo's players come and go: while the game has them, the scoreboard shows them
            if HOSTILE in status.locator(".output").inner_text():
                expect(live.page.locator("#players .ptext", has_text=HOSTILE).or_(
                    live.page.locator("#killfeed .kname", has_text=HOSTILE)).first
                ).to_be_visible()
            expect(live.page.locator("#players tr").first).to_be_attached()
            for tab in (live, chat, console):
                self.assertEqual(tab.page.locator("img").count(), 0)
                tab.check_clean(self)

        return self.serve(lambda: self.in_browser(script))

    # -- links going down and coming back ------------------------------------------------

    def test_game_link_down_shows_reconnecting_then_live_again(self) -> Deferred[None]:
        """The RCON link to the game drops: the page says reconnecting, then shows play again."""
        def script(context: BrowserContext) -> None:
            tab = self.open(context, "/live")
            page = tab.page
            expect(page.locator("#link")).to_have_attribute("data-state", "connected")
            page.evaluate(_WATCH_LINK)
            # the demo's own command: its RCON server drops every link and refuses new
            # ones for a few seconds, as a game server that crashed and came back would
            console = self.open(context, "/console")
            console.page.fill("#token", self.tokens["admin"])
            console.page.press("#token", "Enter")
            expect(console.page.locator("#role")).to_have_text("admin")
            console.page.fill("#cmd", "demo_outage 3")
            console.page.press("#cmd", "Enter")
            page.wait_for_function("() => window.__linkStates.includes('reconnecting')",
                                   timeout=10_000)
            expect(page.locator("#link")).to_have_attribute("data-state", "connected",
                                                            timeout=SLOW)
            expect(page.locator("#link")).to_contain_text("connected")
            seq = int(page.locator("#seq").get_attribute("data-seq") or 0)
            page.wait_for_function(
                "seq => Number(document.querySelector('#seq').dataset.seq) > seq", arg=seq,
                timeout=SLOW)
            tab.check_clean(self)

        return self.serve(lambda: self.in_browser(script))

    def test_socket_drop_reconnects_with_backoff(self) -> Deferred[None]:
        """gamews dies: the page says reconnecting in Ns; gamews is back: live play again."""
        def script(context: BrowserContext) -> None:
            tab = self.open(context, "/live", allowed_errors=("WebSocket connection",))
            page = tab.page
            expect(page.locator("#players tr").first).to_be_attached()
            expect(page.locator("#seq")).to_have_attribute("data-seq", re.compile(r"\d"))
            before = page.locator("#seq").get_attribute("data-seq")
            self.on_reactor(self.kill_gamews)
            expect(page.locator("#conn")).to_have_text(
                re.compile(r"reconnecting in \d+s"))
            expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
            self.on_reactor(self.start_gamews)
            expect(page.locator("#conn")).to_have_text("live", timeout=SLOW)
            expect(page.locator("#link")).to_have_attribute("data-state", "connected")
            # a snapshot from the new gamews, then its deltas
            expect(page.locator("#seq")).not_to_have_attribute("data-seq", before or "")
            seq = int(page.locator("#seq").get_attribute("data-seq") or 0)
            page.wait_for_function(
                "seq => Number(document.querySelector('#seq').dataset.seq) > seq", arg=seq,
                timeout=SLOW)
            expect(page.locator("#players tr").first).to_be_attached()
            tab.check_clean(self)

        return self.serve(lambda: self.in_browser(script))

    def test_console_logs_in_again_after_reconnecting(self) -> Deferred[None]:
        """The console keeps its token in memory and logs in again when gamews is back."""
        def script(context: BrowserContext) -> None:
            tab = self.open(context, "/console", allowed_errors=("WebSocket connection",))
            page = tab.page
            page.fill("#token", self.tokens["viewer"])
            page.press("#token", "Enter")
            expect(page.locator("#role")).to_have_text("viewer")
            expect(page.locator("#cmd")).to_be_disabled()
            self.on_reactor(self.kill_gamews)
            expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
            self.on_reactor(self.start_gamews)
            expect(page.locator("#conn")).to_have_text("live", timeout=SLOW)
            expect(page.locator(".entry.note", has_text="logged in as vera")).to_have_count(2)
            expect(page.locator("#console")).to_be_visible()
            tab.check_clean(self)

        return self.serve(lambda: self.in_browser(script))
