"""Issue #12 ("safe to expose"), plugin side: redaction, frame validation, the disk and the
log, guessing, the spectator delay, the small ones. Each test fails on the code before it."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from gamews.auth import hash_token
from gamews.events import Chat, EventBus, Player, RconSeen, ServerCvar, Unknown
from gamews.isolation import call_plugin
from gamews.logs.source import parse_line
from gamews.plugins.chat import ChatService
from gamews.plugins.console import AuditLog, ConsoleService
from gamews.plugins.live import LiveService
from gamews.quietlog import RepeatLimiter
from gamews.redact import mask_addresses, redact_command, redact_event, split_commands
from gamews.settings import available_plugins
from gamews.spectator import SpectatorConfig
from gamews.testing import FakeBrowser, PluginTestContext, ScriptedGameServer

STAMP = "L 11/28/2026 - 12:00:00: "


def context_for(name: str, config: dict[str, Any], servers: dict[str, ScriptedGameServer],
                base_dir: Path | None = None, *, delay: float | None = None,
                team_chat: str = "hidden") -> PluginTestContext:
    """A test context for the built-in plugin ``name`` with ``[spectator]`` settings (the
    live plugin's ``delay`` read as the older spelling, as gamews does)."""
    spectator = SpectatorConfig.from_tables(
        {"team_chat": team_chat, **({} if delay is None else {"delay": delay})},
        config if name == "live" else None)
    return PluginTestContext.for_plugin(available_plugins()[name], config, servers=servers,
                                        base_dir=base_dir, spectator=spectator)
JOIN = [f'{STAMP}"Sarge<2><BOT><>" entered the game',
        f'{STAMP}"Sarge<2><BOT>" switched from team <Unassigned> to <CT>',
        f'{STAMP}"Grism<3><STEAM_1:0:1234><>" entered the game',
        f'{STAMP}"Grism<3><STEAM_1:0:1234>" switched from team <Unassigned> to <TERRORIST>']
KILL = f'{STAMP}"Sarge<2><BOT><CT>" [1 2 3] killed "Grism<3><STEAM_1:0:1234><TERRORIST>" [4 5 6] with "ak47"'  # noqa: E501
TEAM_SAY = f'{STAMP}"Grism<3><STEAM_1:0:1234><TERRORIST>" say_team "rush B now"'
SAY = f'{STAMP}"Grism<3><STEAM_1:0:1234><TERRORIST>" say "gg"'
SECRET = "Hunter2pw"


def publish(context: PluginTestContext, *lines: str, server: str = "alpha") -> None:
    for line in lines:
        context.events.publish(server, parse_line(line))


@contextmanager
def captured_log() -> Iterator[list[LogEvent]]:
    """Every log event emitted inside the block."""
    events: list[LogEvent] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observe)


def counted(store: Any) -> list[str]:
    """The tokens ``store.check`` is asked about from now on."""
    asked: list[str] = []
    original = store.check

    def check(token: str, *, now: float) -> Any:
        asked.append(token)
        return original(token, now=now)

    store.check = check
    return asked


def tokens_file(directory: Path) -> Path:
    path = directory / "tokens.txt"
    path.write_text(f"ann:admin:{hash_token('admin-tok')}\n"
                    f"mo:moderator:{hash_token('mod-tok')}\n"
                    f"vi:viewer:{hash_token('view-tok')}\n")
    return path


class ConsoleCase(SynchronousTestCase):
    def make_console(self, **config: Any) -> ConsoleService:
        directory = Path(self.mktemp())
        directory.mkdir()
        tokens_file(directory)
        self.directory = directory
        self.audit = directory / "audit.jsonl"
        self.game = ScriptedGameServer("alpha")
        self.context = context_for("console", {"tokens_file": "tokens.txt",
                                               "audit_log": "audit.jsonl", **config},
                                   {"alpha": self.game}, base_dir=directory)
        self.context.events.add_server("alpha")
        service = ConsoleService(self.context)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def login(self, token: str, host: str = "127.0.0.1") -> FakeBrowser:
        child = self.context.listeners[-1].connect(FakeBrowser(host))
        child.receive({"type": "login", "token": token})
        return child


# -- point 2: secrets and addresses -----------------------------------------------------


_SENSITIVE = st.sampled_from(["rcon_password", "sv_password", "sv_setsteamaccount",
                              "logaddress_add_http", "RCON_PASSWORD", "tv_password",
                              "sv_logsecret", "sm_api_key", "my_token", "set rconpassword",
                              "seta g_password", 'alias x "rcon_password'])
_HARMLESS = st.sampled_from(["mp_restartgame 1", "echo hi", "exec x", 'say "a;b"', "status",
                             "changelevel de_dust2", ""])
_SEPARATOR = st.sampled_from([";", "; ", "\n", "\r\n", " ;"])


class RedactionTests(SynchronousTestCase):
    """Commands split like the engines split them; every sensitive sub-command loses its
    value, wherever a command or a log line is shown or stored."""

    def test_split_like_the_engines(self) -> None:
        """``;`` splits outside quotes only; line breaks always (and end a quote)."""
        text = 'say "a;b"; echo x\nsv_password "y;z'
        self.assertEqual([text[a:b] for a, b in split_commands(text)],
                         ['say "a;b"', " echo x", 'sv_password "y;z'])

    @settings(max_examples=500, deadline=None)
    @given(before=st.lists(_HARMLESS, max_size=3), name=_SENSITIVE, sep=_SEPARATOR,
           quoted=st.booleans(), after=st.lists(_HARMLESS, max_size=2))
    def test_no_form_shows_the_secret(self, before: list[str], name: str, sep: str,
                                      quoted: bool, after: list[str]) -> None:
        """However a sensitive command is written among others, its value is gone."""
        value = f'"{SECRET}"' if quoted else SECRET
        text = sep.join([*before, f"{name} {value}", *after])
        redacted = redact_command(text)
        self.assertNotIn(SECRET, redacted)
        self.assertIn("<redacted>", redacted)
        for harmless in before:
            self.assertIn(harmless, redacted)

    def test_reported_forms(self) -> None:
        """The forms seen in the report, and the engine's cvar echo, lose the password."""
        for text in ("mp_restartgame 1; rcon_password NewPw", "echo hi; rcon_password NewPw",
                     "exec x;sv_password NewPw", 'rcon_password"NewPw"',
                     '"rcon_password" = "NewPw" ( def. "" )',
                     'logaddress_add_http "http://h/l?token=NewPw"'):
            self.assertNotIn("NewPw", redact_command(text), text)
        goldsrc = redact_command(f'{STAMP}Rcon: "rcon 2034829 "NewPw" status" from "1.2.3.4:5"')
        self.assertNotIn("NewPw", goldsrc)
        self.assertNotIn("2034829", goldsrc)
        self.assertEqual(redact_command("say I love monkeys; status"),
                         "say I love monkeys; status")

    def test_addresses_masked(self) -> None:
        """IPv4 and IPv6 addresses (with ports) are masked; times are not."""
        self.assertEqual(mask_addresses('12:00:00: from "10.1.2.3:27005" and [2001:db8::1]:5'),
                         '12:00:00: from "<ip>" and <ip>')

    def test_events_redacted_at_the_bus(self) -> None:
        """Logged rcon commands, unknown lines and console chat are redacted when published,
        IP addresses masked; player chat is the player's own."""
        bus = EventBus(Clock())
        seen: list[Any] = []
        bus.subscribe(seen.append)
        bus.publish("a", RconSeen("mp_restartgame 1; rcon_password NewPw"))
        bus.publish("a", Unknown(f'{STAMP}echo hi; rcon_password NewPw from "10.0.0.9:27005"'))
        bus.publish("a", Unknown("exec x;sv_password NewPw"))
        bus.publish("a", ServerCvar("sv_password", "NewPw"))
        bus.publish("a", Chat(Player("Console", "console"), "hi; sv_password NewPw"))
        bus.publish("a", Chat(Player("Bob", "[U:1:1]"), "join 10.0.0.7:27015"))
        text = json.dumps([e.to_json() for e in seen])
        self.assertNotIn("NewPw", text)
        self.assertNotIn("10.0.0.9", text)
        self.assertIn("10.0.0.7", text)  # what a player writes is theirs
        self.assertIs(redact_event(seen[5].event), seen[5].event)


class ConsoleRedactionTests(ConsoleCase):
    """The console's frames and audit log never hold a secret; the audit log is 0600."""

    def test_viewer_console_and_audit(self) -> None:
        """An admin's chained password change reaches neither viewers nor the audit log."""
        self.make_console()
        viewer = self.login("view-tok")
        admin = self.login("admin-tok")
        admin.receive({"type": "command", "id": 1,
                       "command": "mp_restartgame 1; rcon_password NewPw"})
        self.game.replies[0].callback('"rcon_password" = "NewPw"')
        publish(self.context,
                f'{STAMP}rcon from "10.9.8.7:5": command "mp_restartgame 1; rcon_password '
                'NewPw"', f"{STAMP}echo hi; rcon_password NewPw")
        self.assertEqual(self.game.commands, ["mp_restartgame 1; rcon_password NewPw"])
        for child in (viewer, admin):
            self.assertNotIn("NewPw", json.dumps(child.sent))
            self.assertNotIn("10.9.8.7", json.dumps(child.sent))
        self.assertNotIn("NewPw", self.audit.read_text())
        self.assertEqual(stat.S_IMODE(os.stat(self.audit).st_mode), 0o600)


# -- point 4: frames are checked before plugin logic ---------------------------------------


DEEP = "[" * 2000 + "]" * 2000
BAD_FRAMES: list[Any] = [{"type": "select", "server": {}}, [1], DEEP, '{"type": "say", '
                         '"name": [], "text": 1}', '{"type": "resync", "x": ' + DEEP + "}",
                         {"type": "command", "command": {"a": 1}}, {"type": 1}, "null",
                         '{"type": "select", "server": NaN}', {"type": "login", "token": None}]


class FrameValidationTests(ConsoleCase):
    """Bad frames get ``error`` (``denied`` before a console login), never a traceback;
    a connection that keeps sending them is closed with 1008."""

    def check(self, service: Any, child: FakeBrowser, allowed: str = "error") -> None:
        with captured_log() as logged:
            for frame in BAD_FRAMES:
                text = frame if isinstance(frame, str) else json.dumps(frame)
                before = len(child.sent)
                child.receive(text)
                if child.closed:
                    break
                self.assertEqual([f["type"] for f in child.sent[before:]], [allowed], text)
        self.assertEqual([e for e in logged if e.get("log_level") in
                          (LogLevel.critical, LogLevel.error)], [])

    def test_chat_and_live(self) -> None:
        """Chat and live answer each bad frame with error, and close a flood with 1008."""
        for cls in (ChatService, LiveService):
            context = context_for(cls.plugin, {}, {"alpha": ScriptedGameServer()})
            service = cls(context)
            service.startService()
            child = context.listeners[0].connect()
            self.check(service, child)
            self.assertIsNone(child.closed)
            for _ in range(20):
                child.receive("[1]")
            self.assertEqual(child.closed, (1008, "too many bad frames"))

    def test_console_before_and_after_login(self) -> None:
        """Before the login any bad frame is denied with 1008; after it, error."""
        self.make_console()
        for frame in BAD_FRAMES:
            child = self.context.listeners[-1].connect()
            with captured_log() as logged:
                child.receive(frame if isinstance(frame, str) else json.dumps(frame))
            self.assertEqual(child.sent, [{"type": "denied"}])
            self.assertEqual(child.closed, (1008, "login refused"))
            self.assertFalse([e for e in logged if e.get("log_level") == LogLevel.critical])
        admin = self.login("admin-tok")
        admin.sent.clear()
        self.check(None, admin)


# -- point 5: the disk and the log ---------------------------------------------------------


class DiskTests(ConsoleCase):
    """Refusals count against the rate limit, audit entries are bounded, the log rotates,
    repeated errors are logged once with a count."""

    def test_refused_flood_writes_little(self) -> None:
        """500 refused 4,000-emoji commands from a viewer write six bounded records (the
        rate-limited ones after the first counted in the next record), not 8 MB."""
        from gamews.api import Request, User

        service = self.make_console(burst=5, rate=1.0)
        viewer = User("vi", "viewer")
        replies = [self.successResultOf(service.apply(
            "alpha", Request({"command": "\U0001F600" * 4000}, "203.0.113.9", f"c{i % 7}",
                             viewer))) for i in range(500)]
        self.assertEqual(sum(r["output"] == "rate limited" for r in replies), 495)
        lines = self.audit.read_text().splitlines()
        self.assertEqual(len(lines), 6)
        self.assertLess(max(len(line.encode()) for line in lines), 2600)
        record = json.loads(lines[0])
        self.assertIn("more characters cut", record["command"])

    def test_chat_refusals_count(self) -> None:
        """Empty chat lines are refused and count against the same rate limit."""
        game = ScriptedGameServer("alpha")
        context = context_for("chat", {"rate": 1.0, "burst": 2}, {"alpha": game})
        ChatService(context).startService()
        child = context.listeners[0].connect()
        for _ in range(5):
            child.receive({"type": "say", "name": "x", "text": "   "})
        child.receive({"type": "say", "name": "x", "text": "hello"})
        self.assertEqual([f["reason"] for f in child.of_type("error")],
                         ["say needs a name and a text"] * 2 + ["rate limited"] * 4)
        self.assertEqual(game.commands, [])

    def test_rotation(self) -> None:
        """Past audit_max_bytes the audit log is rotated, keeping audit_keep files."""
        path = Path(self.mktemp())
        audit = AuditLog(path, max_bytes=1000, keep=2)
        for i in range(100):
            audit.write(n=i, command="x" * 50)
        self.assertLessEqual(path.stat().st_size, 1000)
        self.assertTrue(path.with_name(path.name + ".1").exists())
        self.assertTrue(path.with_name(path.name + ".2").exists())
        self.assertFalse(path.with_name(path.name + ".3").exists())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)

    def test_repeated_errors_logged_once_with_count(self) -> None:
        """The same plugin error 1,000 times in a row is one traceback, then a count."""
        def broken(_: object) -> None:
            raise TypeError("unhashable type: 'dict'")

        with captured_log() as logged:
            for _ in range(1000):
                call_plugin("chat", "on_message", broken, None)
        critical = [e for e in logged if e.get("log_level") == LogLevel.critical]
        self.assertEqual(len(critical), 1)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        now = [0.0]
        limiter = RepeatLimiter(Logger(), window=60, clock=lambda: now[0])
        with captured_log() as logged:
            for _ in range(10):
                limiter.emit(LogLevel.error, "boom", kind="k")
            now[0] = 61.0
            limiter.emit(LogLevel.error, "boom", kind="k")
        self.assertEqual([e.get("repeated") for e in logged], [0, 9])


# -- point 6: guessing --------------------------------------------------------------------


class GuessingTests(ConsoleCase):
    """Failed logins per address: free tries, then growing delays, then a lockout; no
    token check runs for a throttled address; failures are warnings with the address."""

    def test_console_logins_throttled(self) -> None:
        """300 wrong logins in a burst: only the first few are checked at all."""
        service = self.make_console(lockout_after=10, lockout=900)
        checked = counted(service.tokens)
        with captured_log() as logged:
            for _ in range(300):
                child = self.login("wrong", host="198.51.100.7")
                self.assertEqual(child.sent, [{"type": "denied"}])
        self.assertEqual(len(checked), 4)  # 3 free failures, the 4th starts the delay
        warnings = [e for e in logged if e.get("log_level") == LogLevel.warn]
        self.assertTrue(warnings)
        self.assertEqual(warnings[0]["address"], "198.51.100.7")
        # the right token is refused too while locked; another address is not affected
        self.assertEqual(self.login("admin-tok", host="198.51.100.7").sent, [{"type": "denied"}])
        self.assertEqual(self.login("admin-tok", host="198.51.100.8").sent[0]["type"], "welcome")
        self.context.reactor.advance(2)
        self.assertEqual(self.login("admin-tok", host="198.51.100.7").sent[0]["type"], "welcome")

    def test_lockout(self) -> None:
        """After lockout_after failures (waiting out each delay) an address is locked out."""
        self.make_console(lockout_after=6, lockout=900)
        for _ in range(6):
            self.login("wrong", host="198.51.100.9")
            self.context.reactor.advance(61)
        self.assertEqual(self.login("admin-tok", host="198.51.100.9").sent, [{"type": "denied"}])
        self.context.reactor.advance(900)
        self.assertEqual(self.login("admin-tok", host="198.51.100.9").sent[0]["type"], "welcome")

    def test_login_deadline_and_first_frame(self) -> None:
        """No login within login_timeout: denied and 1008; invalid JSON first: the same."""
        self.make_console(login_timeout=10)
        idle = self.context.listeners[-1].connect()
        self.context.reactor.advance(9.9)
        self.assertIsNone(idle.closed)
        self.context.reactor.advance(0.2)
        self.assertEqual((idle.sent, idle.closed), ([{"type": "denied"}], (1008, "login refused")))
        garbage = self.context.listeners[-1].connect()
        garbage.receive("not json")
        self.assertEqual((garbage.sent, garbage.closed),
                         ([{"type": "denied"}], (1008, "login refused")))
        good = self.login("admin-tok")
        self.context.reactor.advance(30)
        self.assertIsNone(good.closed)

    def test_live_tokens_on_one_socket(self) -> None:
        """3,000 wrong live-view tokens on one socket: a few checked, then closed 1008."""
        directory = Path(self.mktemp())
        directory.mkdir()
        context = context_for("live", {"tokens_file": str(tokens_file(directory)),
                                       "lockout_after": 10}, {"alpha": ScriptedGameServer()})
        service = LiveService(context)
        service.startService()
        assert service.tokens is not None
        checked = counted(service.tokens)
        child = context.listeners[0].connect(FakeBrowser("203.0.113.4"))
        for _ in range(3000):
            if child.closed:
                break
            child.receive({"type": "login", "token": "wrong"})
        self.assertEqual(child.closed, (1008, "too many bad frames"))
        self.assertLessEqual(len(checked), 4)


# -- point 9: the spectator delay everywhere, team chat with the team ------------------


class SpectatorDelayTests(SynchronousTestCase):
    """With a delay, no public view gets an event before it; team chat is not public;
    token holders see everything live."""

    def setUp(self) -> None:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        tokens = tokens_file(directory)
        self.game = ScriptedGameServer("alpha")
        self.context = context_for("live", {"delay": 30, "tokens_file": str(tokens)},
                                   {"alpha": self.game}, base_dir=directory)
        self.context.events.add_server("alpha")
        on_chat = self.sibling("chat", {})
        on_console = self.sibling("console", {"tokens_file": "tokens.txt",
                                              "audit_log": "audit.jsonl"}, directory)
        from gamews.plugins.bridge import BridgeService
        from gamews.plugins.live import OverlayService

        self.services = [ChatService(on_chat), LiveService(self.context),
                         ConsoleService(on_console), OverlayService(self.sibling("overlay", {})),
                         BridgeService(self.sibling("bridge", {}))]
        for service in self.services:
            service.startService()
        chat, live, console, overlay, bridge = self.context.listeners
        self.chat, self.live = chat.connect(), live.connect()
        self.overlay = overlay.connect()
        self.bridge = bridge.connect(FakeBrowser(path="/bridge/ws", query={"channel": ["bomb"]}))
        self.console = console.connect()
        self.console.receive({"type": "login", "token": "view-tok"})
        self.privileged = live.connect()
        self.privileged.receive({"type": "login", "token": "view-tok"})

    def sibling(self, name: str, config: dict[str, Any], base_dir: Path | None = None
                ) -> PluginTestContext:
        """Another plugin's context on the same clock, buses and listener list."""
        context = context_for(name, config, {"alpha": self.game}, base_dir)
        context.reactor, context.events = self.context.reactor, self.context.events
        context.public_events = self.context.public_events
        context.spectator_delay = self.context.spectator_delay
        context.listeners = self.context.listeners
        return context

    def kills(self, child: FakeBrowser) -> int:
        text = json.dumps(child.frames)
        return text.count("ak47")

    def test_no_public_view_early(self) -> None:
        """A kill (and a game plugin's bridge event) reaches the chat page, the public live
        view, the overlay and the bridge 30 s later, not before; the console and a
        logged-in live view see it at once; a late chat joiner's backlog is as late."""
        from gamews.events import Custom

        publish(self.context, *JOIN, KILL, SAY, TEAM_SAY)
        self.context.events.publish("alpha", Custom("bomb", {"planted": "ak47"}))
        clock = self.context.reactor
        self.assertEqual(self.kills(self.console), 2)  # the kill and the bridge event
        self.assertEqual(self.kills(self.privileged), 1)
        public = (self.chat, self.live, self.overlay, self.bridge)
        for step in range(29):
            clock.advance(1)
            for child in public:
                self.assertEqual(self.kills(child), 0, (step, child))
            late = self.context.listeners[0].connect()
            self.assertEqual(self.kills(late), 0)
        clock.advance(1.5)
        for child in public:
            self.assertEqual(self.kills(child), 1, child)
        self.assertEqual(self.kills(self.context.listeners[0].connect()), 1)
        self.assertIn("gg", json.dumps(self.chat.sent))
        self.assertIn("rush B", json.dumps(self.console.sent))
        clock.advance(100)
        for child in (self.chat, self.live, self.context.listeners[0].connect()):
            self.assertNotIn("rush B", json.dumps(child.sent))

    def test_team_chat_delayed_when_allowed(self) -> None:
        """``team_chat = "delayed"`` shows team chat publicly, as late as the rest."""
        context = context_for("chat", {}, {"alpha": self.game}, delay=30, team_chat="delayed")
        context.events.add_server("alpha")
        ChatService(context).startService()
        child = context.listeners[0].connect()
        publish(context, TEAM_SAY)
        context.reactor.advance(29)
        self.assertNotIn("rush B", json.dumps(child.sent))
        context.reactor.advance(1)
        self.assertIn("rush B", json.dumps(child.sent))

    def test_config(self) -> None:
        """[plugin.live] delay is the older spelling; a conflicting pair is refused."""
        self.assertEqual(SpectatorConfig.from_tables(None, {"delay": 5}).delay, 5)
        self.assertEqual(SpectatorConfig.from_tables({"delay": 7}, None).delay, 7)
        from gamews.errors import ConfigError
        with self.assertRaises(ConfigError):
            SpectatorConfig.from_tables({"delay": 7}, {"delay": 5})
        with self.assertRaises(ConfigError):
            SpectatorConfig.from_tables({"team_chat": "yes"}, None)


# -- point 10: resync ---------------------------------------------------------------------


class ResyncTests(SynchronousTestCase):
    """Each resync costs a whole snapshot: a burst, then one per interval."""

    def test_resync_rate_limited(self) -> None:
        """Ten resyncs at once give three snapshots and errors for the rest."""
        context = context_for("live", {}, {"alpha": ScriptedGameServer()})
        LiveService(context).startService()
        child = context.listeners[0].connect()
        child.sent.clear()
        for _ in range(10):
            child.receive({"type": "resync"})
        self.assertEqual(len(child.of_type("snapshot")), 3)
        self.assertEqual(len(child.of_type("error")), 7)
        context.reactor.advance(5)
        child.receive({"type": "resync"})
        self.assertEqual(len(child.of_type("snapshot")), 4)


class ManholeGuessingTests(SynchronousTestCase):
    """Manhole passwords: throttled per address before any scrypt runs; at most
    MAX_VERIFYING verifications at once."""

    def make_auth(self, host: str, factory: Any, portal: Any) -> Any:
        from twisted.internet.address import IPv4Address

        from gamews.manhole.service import ThrottledUserAuth

        auth = ThrottledUserAuth()
        auth.clock = Clock()
        auth.portal = portal
        auth.user = b"admin"
        peer = IPv4Address("TCP", host, 2222)
        socket = type("Socket", (), {"getPeer": lambda self: peer})()
        auth.transport = type("Transport", (), {"factory": factory, "transport": socket})()
        return auth

    def test_password_tries_throttled_per_address(self) -> None:
        """150 wrong passwords from one address: 4 reach the checker, the rest are
        refused at once (warnings name the address); another address still gets checked."""
        from twisted.cred.error import UnauthorizedLogin
        from twisted.internet.defer import fail

        from gamews.manhole.credentials import hash_password
        from gamews.manhole.service import ManholeConfig, make_manhole_service

        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "pw").write_text(f"admin:{hash_password('right')}\n")
        clock = Clock()
        service: Any = make_manhole_service(
            ManholeConfig.from_table({"password_file": "pw", "data_dir": "data"},
                                     base_dir=directory), dict, reactor=clock)
        factory = service.factory
        tried: list[Any] = []

        class Portal:
            def login(self, credentials: Any, mind: Any, *interfaces: Any) -> Any:
                tried.append(credentials)
                return fail(UnauthorizedLogin("wrong"))

        packet = b"\x00\x00\x00\x00\x05wrong"
        with captured_log() as logged:
            for _ in range(150):
                auth = self.make_auth("198.51.100.20", factory, Portal())
                d = auth.auth_password(packet)
                auth.clock.advance(1)  # conch's own delay per failure
                self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(len(tried), 4)
        warned = [e for e in logged if e.get("log_level") == LogLevel.warn]
        self.assertTrue(warned)
        self.assertEqual({e["address"] for e in warned}, {"198.51.100.20"})
        other = self.make_auth("198.51.100.21", factory, Portal())
        other.auth_password(packet)
        self.assertEqual(len(tried), 5)

    def test_verifications_capped(self) -> None:
        """Ten verifications asked at once: MAX_VERIFYING run, the others wait."""
        from twisted.internet.defer import Deferred

        from gamews.manhole.credentials import MAX_VERIFYING
        from gamews.throttle import VerificationGate

        gate = VerificationGate(MAX_VERIFYING)
        running: list[Deferred[None]] = []

        def verify() -> Deferred[None]:
            d: Deferred[None] = Deferred()
            running.append(d)
            return d

        results = [gate.run(verify) for _ in range(10)]
        self.assertEqual(len(running), MAX_VERIFYING)
        running[0].callback(None)
        self.assertEqual(len(running), MAX_VERIFYING + 1)
        self.successResultOf(results[0])


class SpectatorSettingsTests(SynchronousTestCase):
    """A bad ``[spectator]`` table is a one-line error at parse time."""

    def test_parsed_with_the_rest(self) -> None:
        """[spectator] is checked with the other settings; [plugin.live] delay folds in."""
        from gamews.errors import ConfigError
        from gamews.settings import parse_settings

        plugins = available_plugins()
        settings = parse_settings({"spectator": {"delay": 12, "team_chat": "delayed"}},
                                  plugins=plugins)
        self.assertEqual(settings.spectator, SpectatorConfig(12.0, "delayed"))
        old = parse_settings({"plugin": {"live": {"delay": 5}}}, plugins=plugins)
        self.assertEqual(old.spectator.delay, 5.0)
        with self.assertRaises(ConfigError) as caught:
            parse_settings({"spectator": {"delay": "soon"}}, plugins=plugins)
        self.assertEqual(caught.exception.key, "spectator.delay")
