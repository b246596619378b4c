"""The chat, live and console plugins' logic, on a Clock with in-memory children."""

from __future__ import annotations

import ast
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gamews.api import (
    ChannelKind,
    Chat,
    Connected,
    Damage,
    Disconnected,
    Envelope,
    Event,
    Kill,
    MapChange,
    MatchEnd,
    MatchState,
    Player,
    PlayerState,
    RconSeen,
    RoundEnd,
    TeamScore,
)
from gamews.auth import TokenStore, User, hash_token
from gamews.auth import main as auth_main
from gamews.errors import ConfigError
from gamews.plugins.chat import ChatPlugin, ChatService
from gamews.plugins.console import ConsolePlugin, ConsoleService
from gamews.plugins.lines import console_text, line_of
from gamews.plugins.live import LivePlugin, LiveService, OverlayPlugin, diff_views, view_of
from gamews.rcon.link import LinkState
from gamews.testing import FakeBrowser, PluginTestContext, ScriptedGameServer

STAMP = "L 11/28/2026 - 12:00:00: "
JOIN = [f'{STAMP}"Sarge<2><BOT><>" entered the game',
        f'{STAMP}"Sarge<2><BOT>" switched from team <Unassigned> to <CT>',
        f'{STAMP}"Grism<3><STEAM_1:0:1234><>" entered the game',
        f'{STAMP}"Grism<3><STEAM_1:0:1234>" switched from team <Unassigned> to <TERRORIST>']
KILL = f'{STAMP}"Sarge<2><BOT><CT>" [1 2 3] killed "Grism<3><STEAM_1:0:1234><TERRORIST>" [4 5 6] with "ak47" (headshot)'  # noqa: E501
CHAT = f'{STAMP}"Grism<3><STEAM_1:0:1234><TERRORIST>" say "<b>gg</b>"'
WEB = f'{STAMP}"Console<0><Console><Console>" say "(web) Bob: hi there"'

NOON = 1796558400.0
"""2026-12-06 12:00:00 UTC, as seconds since the epoch."""
NOW = NOON - 3600
"""An hour before: the clock of the token tests."""


class TokenTests(SynchronousTestCase):
    """Console tokens: hashed in the file, checked in constant time."""

    def write(self, text: str) -> Path:
        path = Path(self.mktemp())
        path.write_text(text)
        return path

    def test_check(self) -> None:
        """The right token finds its user and role; others find nobody."""
        store = TokenStore.load(self.write(
            f"# comment\nalice:admin:{hash_token('tok-a')}\nbob:viewer:{hash_token('tok-b')}\n"))
        user = store.check("tok-a", now=NOW)
        assert user is not None
        self.assertEqual((user.name, user.role), ("alice", "admin"))
        self.assertIsNone(store.check("tok-c", now=NOW))
        self.assertIsNone(store.check("", now=NOW))
        self.assertNotIn("tok", repr(store))

    def test_bad_lines(self) -> None:
        """A line with a bad role, hash, scope or field is a ConfigError naming the line."""
        for text in ("alice:root:" + hash_token("x"), "alice:admin:md5:abc", "nocolons",
                     "alice:alpha=root:" + hash_token("x"),
                     "alice:alpha=admin,alpha=viewer:" + hash_token("x"),
                     "alice:admin:" + hash_token("x") + ":expires=tomorrow",
                     "alice:admin:" + hash_token("x") + ":colour=red"):
            with self.assertRaises(ConfigError) as raised:
                TokenStore.load(self.write(text + "\n"))
            self.assertIn("line 1", str(raised.exception))

    def test_expiry(self) -> None:
        """A token works until its expires= time, not from then on."""
        store = TokenStore.load(self.write(
            f"eve:moderator:{hash_token('tok-e')}:expires=20261206T120000Z\n"))
        user = store.check("tok-e", now=NOON - 1)
        assert user is not None
        self.assertEqual(user.expires, NOON)
        self.assertIsNone(store.check("tok-e", now=NOON))

    def test_scope(self) -> None:
        """A token scoped per server has that role there and none elsewhere."""
        store = TokenStore.load(self.write(
            f"sam:alpha=moderator,beta=viewer:{hash_token('tok-s')}\n"))
        user = store.check("tok-s", now=NOW)
        assert user is not None
        self.assertEqual((user.role, user.role_on("alpha"), user.role_on("beta"),
                          user.role_on("gamma")), ("moderator", "moderator", "viewer", None))
        self.assertEqual(user.on("beta"), User("sam", "viewer"))
        self.assertIsNone(user.on("gamma"))
        self.assertEqual(user.servers(["gamma", "beta", "alpha"]), ["beta", "alpha"])

    def test_file_changes_seen_on_next_check(self) -> None:
        """A token added to or removed from the file counts at the next check; a file made
        invalid keeps the tokens read before."""
        path = self.write(f"ann:admin:{hash_token('tok-a')}\n")
        store = TokenStore.load(path)
        path.write_text(f"ann:admin:{hash_token('tok-a')}\nbo:viewer:{hash_token('tok-b')}\n")
        self.assertIsNotNone(store.check("tok-b", now=NOW))
        path.write_text(f"bo:viewer:{hash_token('tok-b')}\n")
        self.assertIsNone(store.check("tok-a", now=NOW))
        path.write_text("garbage\n")
        self.assertIsNotNone(store.check("tok-b", now=NOW))


class AuthToolTests(SynchronousTestCase):
    """``python -m gamews.auth``: new-token, list, revoke, expiring; reasons for bad input."""

    def run_tool(self, *argv: str, now: float = NOW) -> tuple[int, str, str]:
        """Run the tool; return (status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            status = auth_main(list(argv), now=now)
        return status, out.getvalue(), err.getvalue()

    def test_new_token_stdout_alone(self) -> None:
        """The token alone goes to stdout; the file line, matching it, to stderr."""
        status, out, err = self.run_tool("new-token", "carol", "moderator")
        self.assertEqual(status, 0)
        token = out.strip()
        self.assertEqual(out, token + "\n")
        line = err.strip().split(": ", 1)[1]
        self.assertEqual(line, f"carol:moderator:{hash_token(token)}")
        self.assertNotIn(token, err)

    def test_new_token_into_file_with_expiry_and_scope(self) -> None:
        """--file appends the line (file mode 0600); --expires 30d and a per-server role
        are written and honoured."""
        path = Path(self.mktemp())
        status, out, _ = self.run_tool("new-token", "dan", "alpha=moderator", "--expires",
                                       "30d", "--file", str(path))
        self.assertEqual(status, 0)
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        store = TokenStore.load(path)
        user = store.check(out.strip(), now=NOW)
        assert user is not None
        self.assertEqual((user.role_on("alpha"), user.role_on("beta")), ("moderator", None))
        self.assertEqual(user.expires, NOW + 30 * 86400)
        self.assertIsNone(store.check(out.strip(), now=NOW + 30 * 86400))

    def test_list_revoke_expiring(self) -> None:
        """list shows users, roles and expiry; expiring picks the ones ending soon; revoke
        removes a user's tokens and keeps the rest and the comments."""
        path = Path(self.mktemp())
        path.write_text(f"# ops team\nann:admin:{hash_token('a')}\n"
                        f"bo:viewer:{hash_token('b')}:expires=20261208T120000Z\n"
                        f"cy:alpha=moderator:{hash_token('c')}:expires=20270601T000000Z\n")
        status, out, _ = self.run_tool("list", str(path))
        self.assertEqual(status, 0)
        self.assertEqual(out.splitlines(), [
            "ann\tadmin\tnever expires", "bo\tviewer\texpires 20261208T120000Z",
            "cy\talpha=moderator\texpires 20270601T000000Z"])
        status, out, _ = self.run_tool("expiring", str(path), "--within", "7d")
        self.assertEqual(out.splitlines(), ["bo\tviewer\texpires 20261208T120000Z"])
        status, _, err = self.run_tool("revoke", "bo", str(path))
        self.assertEqual(status, 0)
        self.assertIn("revoked 1 token(s) of bo", err)
        self.assertEqual(path.read_text().splitlines()[0], "# ops team")
        self.assertEqual([u.name for u in TokenStore.load(path).users()], ["ann", "cy"])
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)

    def test_bad_input_gives_a_reason(self) -> None:
        """Bad roles, names, durations, unknown users and broken files: exit 2 and a reason."""
        path = Path(self.mktemp())
        path.write_text(f"ann:admin:{hash_token('a')}\n")
        broken = Path(self.mktemp())
        broken.write_text("ann:god:x\n")
        cases = [
            (("new-token", "carol", "god"), "expected a role"),
            (("new-token", "ca:rol", "admin"), "bad user name"),
            (("new-token", "carol", "admin", "--expires", "soon"), "expected a duration"),
            (("revoke", "zed", str(path)), "no token of 'zed'"),
            (("list", str(broken)), "line 1"),
            (("new-token", "carol", "admin", "--file", str(broken)), "line 1"),
        ]
        for argv, reason in cases:
            status, out, err = self.run_tool(*argv)
            self.assertEqual(status, 2, argv)
            self.assertIn(reason, err, argv)
            self.assertEqual(out, "", argv)
        self.assertEqual(broken.read_text(), "ann:god:x\n")


class ChatTests(SynchronousTestCase):
    """The web chat's lines, backlog, rate limits and browser lines."""

    def setUp(self) -> None:
        self.game = ScriptedGameServer("alpha")
        self.context = PluginTestContext.for_plugin(
            ChatPlugin(), {"backlog": 3, "rate": 1.0, "burst": 2}, servers={"alpha": self.game})
        self.context.events.add_server("alpha")
        self.service = ChatService(self.context)
        self.service.startService()
        self.listener = self.context.listeners[0]

    def test_line_of(self) -> None:
        """Kills become sentences, chat keeps its text as is, console web lines are web."""
        self.game.feed_log(*JOIN, KILL, CHAT, WEB)
        lines = list(self.service.backlogs["alpha"])
        self.assertEqual(lines[0]["text"], "Sarge killed Grism with ak47 (headshot)")
        self.assertEqual((lines[1]["kind"], lines[1]["name"], lines[1]["text"]),
                         ("chat", "Grism", "<b>gg</b>"))
        self.assertEqual((lines[2]["kind"], lines[2]["name"], lines[2]["text"]),
                         ("web", "Bob", "hi there"))
        x, y = Player("x", "1"), Player("y", "2")
        self.assertIsNone(line_of(Envelope(1, "alpha", 0.0, Damage(x, y, "awp", 10))))

    def test_backlog_replayed_to_late_joiner(self) -> None:
        """A browser joining late gets hello, link, then the last N lines (oldest first)."""
        self.game.feed_log(*JOIN, KILL, CHAT, WEB, CHAT)
        child = self.listener.connect()
        self.assertEqual([f["type"] for f in child.sent], ["hello", "link", "backlog"])
        self.assertEqual(child.sent[1]["state"], "connected")
        backlog = child.sent[2]["lines"]
        self.assertEqual(len(backlog), 3)
        self.assertEqual([line["kind"] for line in backlog], ["chat", "web", "chat"])
        self.game.feed_log(KILL)
        self.assertEqual(child.of_type("line")[-1]["line"]["event"], "kill")

    def test_say_goes_to_rcon_cleaned(self) -> None:
        """A browser line becomes one injection-free RCON say; it shows once, from the log."""
        child = self.listener.connect()
        child.receive({"type": "say", "name": 'Bo"b;', "text": 'hi"; rcon_password x\n'})
        self.assertEqual(self.game.commands, ['say "(web) Bo b: hi rcon_password x"'])
        self.game.replies[0].callback("Console: ...")
        self.assertEqual(child.of_type("line"), [])  # Source: the log will carry it
        self.game.feed_log(f'{STAMP}"Console<0><Console><Console>" say '
                                       '"(web) Bo b: hi rcon_password x"')
        self.assertEqual([(f["line"]["kind"], f["line"]["name"]) for f in child.of_type("line")],
                         [("web", "Bo b")])

    def test_quake3_shows_line_from_reply(self) -> None:
        """On Quake 3 (no log line for rcon say) the line is shown when RCON confirms it."""
        self.game.kind = "quake3"
        child = self.listener.connect()
        child.receive({"type": "say", "name": "Bob", "text": "hello"})
        self.assertEqual(child.of_type("line"), [])
        self.game.replies[0].callback("console: (web) Bob: hello\n")
        lines = child.of_type("line")
        self.assertEqual([(f["line"]["kind"], f["line"]["text"]) for f in lines],
                         [("web", "hello")])

    def test_rate_limit_per_connection_and_address(self) -> None:
        """A burst of 2, then one a second; a second connection from one address shares it."""
        a = self.listener.connect()
        for _ in range(3):
            a.receive({"type": "say", "name": "A", "text": "spam"})
        self.assertEqual(len(self.game.commands), 2)
        self.assertEqual(a.of_type("error")[-1]["reason"], "rate limited")
        b = self.listener.connect()
        b.receive({"type": "say", "name": "B", "text": "same address"})
        self.assertEqual(len(self.game.commands), 2)
        self.context.reactor.advance(1.0)
        b.receive({"type": "say", "name": "B", "text": "later"})
        self.assertEqual(len(self.game.commands), 3)

    def test_bad_frames_answered_not_fatal(self) -> None:
        """Garbage, binary-ish and incomplete frames get an error; the child stays."""
        child = self.listener.connect()
        for frame in ("not json", "[1,2]", '{"no":"type"}', '{"type":"say","name":"x"}',
                      '{"type":"bogus"}', '{"type":"select","server":"nope"}'):
            child.receive(frame)
        self.assertEqual(len(child.of_type("error")), 6)
        self.assertIsNone(child.closed)

    def test_browser_sending_too_fast_closed(self) -> None:
        """Past 20 frames a second (after a burst of 40) a browser is closed with 1008 and
        its further frames cost nothing (not even an answer); another browser is not.
        (Good frames: bad ones are closed sooner, see tests/test_security.py.)"""
        flooder, other = self.listener.connect(), self.listener.connect(FakeBrowser("10.0.0.2"))
        for _ in range(40):
            flooder.receive({"type": "select", "server": "alpha"})
        self.assertIsNone(flooder.closed)
        flooder.receive({"type": "select", "server": "alpha"})
        self.assertEqual(flooder.closed, (1008, "sending too fast"))
        answered = len(flooder.sent)
        for _ in range(100):
            flooder.receive({"type": "say", "name": "A", "text": "spam"})
        self.assertEqual(len(flooder.sent), answered)
        self.assertEqual(self.game.commands, [])
        other.receive({"type": "say", "name": "B", "text": "fine"})
        self.assertEqual(len(self.game.commands), 1)

    def test_link_state_broadcast(self) -> None:
        """A change of the RCON link reaches the page as a link frame."""
        child = self.listener.connect()
        self.game.set_state(LinkState.DOWN)
        self.game.set_state(LinkState.AUTH_FAILED)
        self.assertEqual([f["state"] for f in child.of_type("link")],
                         ["connected", "reconnecting", "password_rejected"])

    def test_link_detail_not_on_public_pages(self) -> None:
        """The chat (a public page) never gets why a link is down: it can name hosts."""
        child = self.listener.connect()
        self.game.set_state(LinkState.DOWN, "cannot resolve game.internal")
        self.assertEqual([f["detail"] for f in child.of_type("link")], [None, None])

    def test_failed_rcon_reported(self) -> None:
        """When the game link fails, the browser is told."""
        child = self.listener.connect()
        child.receive({"type": "say", "name": "Bob", "text": "hello"})
        self.game.replies[0].errback(Failure(RuntimeError("link down")))
        self.assertIn("link down", child.of_type("error")[0]["reason"])


class LiveTests(SynchronousTestCase):
    """The live view: snapshot then deltas in seq order, resync, spectator delay."""

    def make(self, delay: float = 0, tokens: Path | None = None) -> LiveService:
        self.game = ScriptedGameServer("alpha")
        config: dict[str, Any] = {"delay": delay}
        if tokens is not None:
            config["tokens_file"] = str(tokens)
        self.context = PluginTestContext.for_plugin(LivePlugin(), config,
                                                    servers={"alpha": self.game})
        service = LiveService(self.context)
        service.startService()
        return service

    def apply(self, snapshot: dict[str, Any], deltas: list[dict[str, Any]]) -> dict[str, Any]:
        """What a page would show: the snapshot with every delta applied in order."""
        state: dict[str, Any] = json.loads(json.dumps(snapshot["state"]))
        seq = snapshot["seq"]
        for delta in deltas:
            self.assertEqual(delta["seq"], seq + 1)
            seq = delta["seq"]
            changes = delta["changes"]
            for key in ("map", "round", "teams"):
                if key in changes:
                    state[key] = changes[key]
            for pid, player in changes.get("players", {}).items():
                if player is None:
                    state["players"].pop(pid, None)
                else:
                    state["players"][pid] = player
            state["kill_feed"] = (state["kill_feed"] + changes.get("kill_feed", []))[-10:]
        return state

    def test_snapshot_plus_deltas_equals_state(self) -> None:
        """A page applying snapshot + deltas ends where a fresh snapshot is."""
        service = self.make()
        self.game.feed_log(*JOIN[:2])
        child = self.context.listeners[0].connect()
        self.game.feed_log(*JOIN[2:], KILL, KILL, CHAT,
                f'{STAMP}Team "CT" scored "1" with "1" players')
        snapshot = child.of_type("snapshot")[0]
        state = self.apply(snapshot, child.of_type("delta"))
        late = self.context.listeners[0].connect()
        self.assertEqual(state, late.of_type("snapshot")[0]["state"])
        self.assertEqual(state["players"]["bot:2"]["kills"], 2)
        self.assertEqual(state["teams"], {"CT": 1})
        self.assertEqual(len(state["kill_feed"]), 2)
        self.assertIsNotNone(service)

    def test_broadcast_built_once(self) -> None:
        """One event for many spectators is one broadcast call, not one per spectator."""
        self.make()
        children = [self.context.listeners[0].connect() for _ in range(50)]
        before = self.context.listeners[0].broadcasts
        self.game.feed_log(KILL)
        self.assertEqual(self.context.listeners[0].broadcasts - before, 1)
        self.assertTrue(all(c.of_type("delta") for c in children))

    def test_spectators_in_a_state_channel_caught_up_with_a_snapshot(self) -> None:
        """Spectators of a server share one STATE channel; one that fell behind is
        caught up with the link state and a fresh snapshot at the current seq."""
        service = self.make()
        child = self.context.listeners[0].connect()
        channel = self.context.listeners[0].channels["alpha"]
        self.assertIs(channel.kind, ChannelKind.STATE)
        self.assertEqual(channel.subscribers(), [child])
        self.game.feed_log(*JOIN[:2])
        child.sent.clear()
        service.catch_up(child)
        self.assertEqual([f["type"] for f in child.sent], ["link", "snapshot"])
        state = self.context.events.state("alpha")
        assert state is not None
        self.assertEqual(child.sent[1]["seq"], state.seq)

    def test_resync(self) -> None:
        """A resync frame gets a fresh snapshot at the current seq."""
        self.make()
        child = self.context.listeners[0].connect()
        self.game.feed_log(*JOIN)
        child.receive({"type": "resync"})
        self.assertEqual(child.of_type("snapshot")[-1]["seq"], 4)

    def test_spectator_delay(self) -> None:
        """The public view lags by the delay; a logged-in admin sees it live."""
        tokens = Path(self.mktemp())
        tokens.write_text(f"alice:admin:{hash_token('tok')}\n")
        self.make(delay=30, tokens=tokens)
        public = self.context.listeners[0].connect()
        admin = self.context.listeners[0].connect()
        admin.receive({"type": "login", "token": "tok"})
        self.assertEqual(admin.of_type("snapshot")[-1]["delay"], 0)
        self.assertEqual(public.of_type("snapshot")[0]["delay"], 30)
        self.game.feed_log(*JOIN, KILL)
        self.assertEqual(len(admin.of_type("delta")), 5)
        self.assertEqual(public.of_type("delta"), [])
        late = self.context.listeners[0].connect()
        self.assertEqual(late.of_type("snapshot")[0]["state"]["players"], {})
        self.context.reactor.advance(29)
        self.assertEqual(public.of_type("delta"), [])
        self.context.reactor.advance(1)
        state = self.apply(public.of_type("snapshot")[0], public.of_type("delta"))
        self.assertEqual(state["players"]["bot:2"]["kills"], 1)
        admin.receive({"type": "login", "token": "wrong"})
        self.assertEqual(admin.of_type("error")[-1]["reason"], "login refused")

    def test_new_run_reaches_the_delayed_view_as_a_snapshot(self) -> None:
        """When the numbering starts again (the origin restarted), live spectators get a
        snapshot of the new run at once and delayed ones after the delay, then deltas of
        that run in order: nobody is left discarding them."""
        tokens = Path(self.mktemp())
        tokens.write_text(f"alice:admin:{hash_token('tok')}\n")
        self.make(delay=30, tokens=tokens)
        public = self.context.listeners[0].connect()
        admin = self.context.listeners[0].connect()
        admin.receive({"type": "login", "token": "tok"})
        self.game.feed_log(*JOIN)
        self.context.reactor.advance(30)
        old = public.of_type("snapshot")[-1]["run"]
        self.context.events.restore("alpha", {**MatchState("alpha").snapshot(), "run": old + 1})
        self.game.feed_log(*JOIN[:2])
        self.assertEqual([(f["run"], f["seq"]) for f in admin.of_type("snapshot")][-1],
                         (old + 1, 1))
        self.assertEqual(admin.of_type("delta")[-1]["seq"], 2)
        self.context.reactor.advance(30)
        frames = [f for f in public.sent if f["type"] in ("snapshot", "delta")]
        reset = next(i for i, f in enumerate(frames) if f.get("run") == old + 1)
        self.assertEqual((frames[reset]["type"], frames[reset]["seq"]), ("snapshot", 1))
        self.assertEqual([(f["type"], f["run"], f["seq"]) for f in frames[reset + 1:]],
                         [("delta", old + 1, 2)])
        live = self.apply(admin.of_type("snapshot")[-1], admin.of_type("delta")[-1:])
        self.assertEqual(self.apply(frames[reset], frames[reset + 1:]), live)

    def test_view_and_diff(self) -> None:
        """diff_views reports changed keys, new and gone players, and new feed entries."""
        state = MatchState("a")
        state.map, state.round = "a", 1
        state.players = {"1": PlayerState("1", "x", None, None, False, 0.0),
                         "2": PlayerState("2", "y", None, None, False, 0.0)}
        old = view_of(state, 10)
        state.round = 2
        state.players = {"1": PlayerState("1", "x", None, None, False, 0.0, kills=1)}
        state.kill_feed.append(Envelope(5, "a", 0.0, Kill(Player("x", "1"), Player("y", "2"),
                                                          "awp")))
        new = view_of(state, 10)
        changes = diff_views(old, new)
        self.assertEqual(set(changes), {"round", "players", "kill_feed"})
        self.assertIsNone(changes["players"]["2"])
        self.assertEqual(changes["kill_feed"][0]["weapon"], "awp")


class ConsoleTests(SynchronousTestCase):
    """The admin console: login, roles, rate limit, audit log."""

    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "tokens.txt").write_text(
            f"ann:admin:{hash_token('admin-tok')}\n"
            f"mo:moderator:{hash_token('mod-tok')}\n"
            f"vi:viewer:{hash_token('view-tok')}\n")
        self.audit = directory / "audit.jsonl"
        self.game = ScriptedGameServer("alpha")
        self.context = PluginTestContext.for_plugin(
            ConsolePlugin(), {"tokens_file": "tokens.txt", "audit_log": "audit.jsonl",
                              "burst": 3, "rate": 1.0},
            servers={"alpha": self.game}, base_dir=directory)
        self.service = ConsoleService(self.context)
        self.service.startService()

    def login(self, token: str) -> FakeBrowser:
        child = self.context.listeners[-1].connect()
        self.assertEqual(child.sent, [])  # nothing before the login
        child.receive({"type": "login", "token": token})
        return child

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    def test_token_scoped_to_a_server(self) -> None:
        """A token with a role on alpha only: welcome lists alpha, commands on alpha run
        with that role, beta can be neither followed nor commanded (refusal audited)."""
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "tokens.txt").write_text(f"sam:alpha=moderator:{hash_token('s-tok')}\n")
        beta = ScriptedGameServer("beta")
        context = PluginTestContext.for_plugin(
            ConsolePlugin(), {"tokens_file": "tokens.txt", "audit_log": "audit.jsonl"},
            servers={"beta": beta, "alpha": self.game}, base_dir=directory)
        service = ConsoleService(context)
        service.startService()
        child = context.listeners[-1].connect()
        child.receive({"type": "login", "token": "s-tok"})
        welcome = child.of_type("welcome")[0]
        self.assertEqual((welcome["role"], welcome["servers"]), ("moderator", ["alpha"]))
        self.assertEqual(child.of_type("hello")[-1]["server"], "alpha")
        child.receive({"type": "select", "server": "beta"})
        self.assertIn("does not reach beta", child.of_type("error")[-1]["reason"])
        child.receive({"type": "command", "id": 1, "server": "beta", "command": "status"})
        self.assertEqual(child.of_type("result")[-1]["status"], "refused")
        self.assertEqual(beta.commands, [])
        child.receive({"type": "command", "id": 2, "server": "alpha", "command": "status"})
        self.assertEqual(self.game.commands, ["status"])
        records = [json.loads(line)
                   for line in (directory / "audit.jsonl").read_text().splitlines()]
        self.assertEqual([(r["server"], r["status"]) for r in records], [("beta", "refused")])

    def test_forwarded_scope_and_expiry_decided_by_the_origin(self) -> None:
        """A request an edge forwards with a token proof runs only if the origin's file
        gives that token a role on the server and it has not expired."""
        from gamews.api import Request
        from gamews.auth import TokenProof, prove

        assert self.context.base_dir is not None
        (self.context.base_dir / "tokens.txt").write_text(
            f"sam:beta=admin:{hash_token('s-tok')}\n"
            f"old:admin:{hash_token('o-tok')}:expires=20000101T000000Z\n")

        def forwarded(token: str) -> Request:
            message = json.dumps({"command": "status"}).encode()
            proof = TokenProof(message, prove(hash_token(token), message))
            return Request({"command": "status"}, "10.0.0.1", "edge/1", None, via="edge",
                           proof=proof)

        self.service.clock.advance(NOW)  # a Clock, at 0
        for token in ("s-tok", "o-tok"):
            reply = self.successResultOf(self.service.apply("alpha", forwarded(token)))
            self.assertEqual(reply["status"], "refused", token)
        self.assertEqual(self.game.commands, [])

    def test_token_added_and_revoked_take_effect_at_next_login(self) -> None:
        """Editing the tokens file (as python -m gamews.auth does) needs no restart: a new
        token logs in, a removed one does not, and an open session stays open."""
        first = self.login("admin-tok")
        assert self.context.base_dir is not None
        tokens = self.context.base_dir / "tokens.txt"
        tokens.write_text(f"mo:moderator:{hash_token('mod-tok')}\n"
                          f"new:viewer:{hash_token('new-tok')}\n")
        self.assertEqual(self.login("new-tok").of_type("welcome")[0]["user"], "new")
        self.assertEqual(self.login("admin-tok").sent, [{"type": "denied"}])
        self.assertIsNone(first.closed)

    def test_link_detail_to_console(self) -> None:
        """The console gets why the link is down in ``link.detail``; null once it is up."""
        child = self.login("view-tok")
        self.game.set_state(LinkState.DOWN, "connection refused")
        self.game.set_state(LinkState.UP, None)
        self.assertEqual([(f["state"], f["detail"]) for f in child.of_type("link")][-2:],
                         [("reconnecting", "connection refused"), ("connected", None)])

    def test_wrong_token_denied_and_closed(self) -> None:
        """A wrong token (or a first frame that is not a login) gets denied and 1008."""
        child = self.login("nope")
        self.assertEqual(child.sent, [{"type": "denied"}])
        self.assertEqual(child.closed, (1008, "login refused"))
        other = self.context.listeners[0].connect()
        other.receive({"type": "command", "command": "status"})
        self.assertEqual(other.closed, (1008, "login refused"))
        self.assertEqual(self.game.commands, [])

    def test_admin_runs_anything_and_audit(self) -> None:
        """An admin's command runs; its reply and an audit record follow."""
        child = self.login("admin-tok")
        welcome = child.of_type("welcome")[0]
        self.assertEqual((welcome["user"], welcome["role"], welcome["allowed"]),
                         ("ann", "admin", ["*"]))
        child.receive({"type": "command", "id": 1, "command": "sv_cheats 0; status"})
        self.game.replies[0].callback("hostname: x")
        self.assertEqual(child.of_type("result"), [
            {"type": "result", "id": 1, "server": "alpha", "status": "ok",
             "output": "hostname: x"}])
        (record,) = self.records()
        self.assertEqual({k: record[k] for k in ("user", "role", "ip", "server", "command",
                                                   "status")},
                         {"user": "ann", "role": "admin", "ip": "127.0.0.1", "server": "alpha",
                          "command": "sv_cheats 0; status", "status": "ok"})
        self.assertIsInstance(record["time"], float)

    def test_moderator_allowlist(self) -> None:
        """A moderator runs allowlisted commands only, one at a time."""
        child = self.login("mod-tok")
        child.receive({"type": "command", "id": 1, "command": "rcon_password x"})
        child.receive({"type": "command", "id": 2, "command": "say hi; rcon_password x"})
        child.receive({"type": "command", "id": 3, "command": "kick Sarge"})
        self.assertEqual(self.game.commands, ["kick Sarge"])
        results = child.of_type("result")
        self.assertEqual([(r["id"], r["status"]) for r in results],
                         [(1, "refused"), (2, "refused")])
        self.assertEqual([r["status"] for r in self.records()], ["refused", "refused"])

    def test_viewer_cannot_run(self) -> None:
        """A viewer sees the stream but runs nothing."""
        child = self.login("view-tok")
        child.receive({"type": "command", "id": 1, "command": "status"})
        self.assertEqual(child.of_type("result")[0]["status"], "refused")
        self.game.feed_log(KILL)
        self.assertEqual(child.of_type("console")[-1]["line"],
                         "Sarge killed Grism with ak47 (headshot)")

    def test_rate_limit_per_user(self) -> None:
        """After a burst, a user's commands are refused until the bucket refills."""
        child = self.login("admin-tok")
        for i in range(4):
            child.receive({"type": "command", "id": i, "command": "status"})
        self.assertEqual(len(self.game.commands), 3)
        self.assertEqual(child.of_type("result")[-1]["output"], "rate limited")
        self.context.reactor.advance(1)
        child.receive({"type": "command", "id": 9, "command": "status"})
        self.assertEqual(len(self.game.commands), 4)

    def test_audit_log_survives_restart(self) -> None:
        """A new service appends to the same audit log."""
        child = self.login("admin-tok")
        child.receive({"type": "command", "id": 1, "command": "status"})
        self.game.replies[0].errback(Failure(RuntimeError("timed out")))
        self.service.stopService()
        self.service = ConsoleService(self.context)
        self.service.startService()
        child = self.login("admin-tok")
        child.receive({"type": "command", "id": 2, "command": "status"})
        self.game.replies[1].callback("ok")
        self.assertEqual([r["status"] for r in self.records()], ["error", "ok"])

    def test_missing_config_named(self) -> None:
        """Without tokens_file the plugin's settings are refused, naming the key."""
        with self.assertRaises(ConfigError) as raised:
            PluginTestContext.for_plugin(ConsolePlugin(), {})
        self.assertEqual(raised.exception.key, "plugin.console.tokens_file")

    def test_console_lines_readable(self) -> None:
        """Events without a chat sentence are still one readable line each."""
        child = self.login("view-tok")
        self.game.feed_log(JOIN[0],
                f'{STAMP}rcon from "127.0.0.1:5": command "status"',
                f"{STAMP}something nobody parses")
        self.assertEqual([f["line"] for f in child.of_type("console")],
                         ["[player_entered] player=Sarge", "rcon: status",
                          f"{STAMP}something nobody parses"])

    def test_token_never_echoed(self) -> None:
        """Nothing the console sends contains the token."""
        child = self.login("admin-tok")
        child.receive({"type": "command", "id": 1, "command": "status"})
        self.game.replies[0].callback("fine")
        self.assertNotIn("admin-tok", json.dumps(child.sent))
        self.assertNotIn("admin-tok", self.audit.read_text())


class OverlayTests(SynchronousTestCase):
    """The overlay: the live view's protocol on its own page and socket."""

    def test_page_socket_and_snapshot(self) -> None:
        """/overlay and /overlay/ws serve the live view; its settings errors name overlay."""
        context = PluginTestContext.for_plugin(OverlayPlugin())
        game = context.add_server("alpha")
        OverlayPlugin().make_service(context).startService()
        self.assertEqual([m.path for m in context.mounts], ["/overlay"])
        browser = context.connect("/overlay/ws")
        game.feed_log(*JOIN, KILL)
        self.assertEqual([f["type"] for f in browser.sent[:3]], ["hello", "link", "snapshot"])
        self.assertEqual(browser.sent[0]["plugin"], "overlay")
        self.assertEqual(browser.of_type("delta")[-1]["changes"]["kill_feed"][0]["victim"],
                         "Grism")
        with self.assertRaises(ConfigError) as raised:
            OverlayPlugin().make_service(PluginTestContext.for_plugin(
                OverlayPlugin(), {"tokens_file": "/nonexistent/tokens"}))
        self.assertEqual(raised.exception.key, "plugin.overlay.tokens_file")


class PluginImportsTests(SynchronousTestCase):
    """The built-in plugins are built as a third-party plugin would be."""

    def test_plugins_import_only_the_api(self) -> None:
        """Plugin modules import from gamews only gamews.api and the plugins' own shared
        modules (web, lines); no plugin imports another plugin."""
        directory = Path(__file__).resolve().parents[1] / "gamews" / "plugins"
        shared = {"gamews.api", "gamews.plugins.web", "gamews.plugins.lines"}
        found: dict[str, set[str]] = {}
        for path in sorted(directory.glob("*.py")):
            tree = ast.parse(path.read_text())
            found[path.stem] = {node.module for node in ast.walk(tree)
                                if isinstance(node, ast.ImportFrom) and node.module
                                and node.module.startswith("gamews")}
        self.assertIn("console", found)
        for module, imported in found.items():
            self.assertLessEqual(imported, shared, module)
        self.assertIn("gamews.plugins.lines", found["console"] & found["chat"])


class LinesTests(SynchronousTestCase):
    """The chat's lines and the console's text, from typed events."""

    def test_sentences(self) -> None:
        """Each event the chat shows becomes its sentence; the console shows the same text,
        and the fields of any other event (a map still loading) without private ones."""
        sarge = Player("Sarge", "bot:2", 2, "CT", bot=True)
        events: list[tuple[Event, str | None, str]] = [
            (Connected(sarge), "Sarge joined the game",
             "Sarge joined the game"),
            (Disconnected(sarge, "Kicked"), "Sarge left the game (Kicked)",
             "Sarge left the game (Kicked)"),
            (RoundEnd("CT"), "Round over: CT win", "Round over: CT win"),
            (MapChange("de_dust2", "loading"), None, "[map_change] map=de_dust2 phase=loading"),
            (TeamScore("CT", 7), "Team CT scored 7", "Team CT scored 7"),
            (MatchEnd(score="16:9"), "Match over (16:9)", "Match over (16:9)"),
            (Chat(sarge, "gg", team=True), "gg", "Sarge: gg"),
            (RconSeen("status"), None, "rcon: status"),
        ]
        for i, (event, text, console) in enumerate(events, 1):
            envelope = Envelope(i, "alpha", 100.0 + i, event)
            line = line_of(envelope)
            self.assertEqual(None if line is None else line["text"], text, event)
            self.assertEqual(console_text(envelope), console)
            self.assertNotIn("10.0.0.1", console_text(envelope))
        chat = line_of(Envelope(7, "alpha", 107.0, events[6][0]))
        self.assertEqual(chat, {"seq": 7, "time": 107.0, "kind": "chat", "name": "Sarge",
                                "team": "CT", "text": "gg", "team_only": True, "dead": False})
