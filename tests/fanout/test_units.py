"""The fan-out's parts without Redis: the stream cursor, the request codec, events and
states rebuilt from JSON, the config, the edge feed and the forwarded requests, on a Clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gamews.api import IRequestForwarder, IRequestHandler, Request
from gamews.auth import TokenProof, User, hash_token, prove
from gamews.demo.match import DemoMatch
from gamews.errors import ConfigError
from gamews.events import (
    Connected,
    EventBus,
    Player,
    PointCaptured,
    RconSeen,
    ServerStatus,
    StatusPlayer,
    TeamScores,
    envelope_from_json,
)
from gamews.fanout.codec import Cursor, Keys, Sealer, Step, dumps
from gamews.fanout.config import FanoutConfig
from gamews.fanout.edge import MAX_IN_FLIGHT, EdgeFeed
from gamews.fanout.link import RedisLink, stream_entries
from gamews.fanout.origin import OriginPublisher, decode_request, event_place
from gamews.logs.source import parse_line
from gamews.plugins.chat import ChatPlugin, ChatService
from gamews.plugins.console import ConsolePlugin, ConsoleService
from gamews.rcon.link import LinkState, RconError
from gamews.rcon.server import IGameServer
from gamews.secret import Secret
from gamews.testing import PluginTestContext, ScriptedGameServer
from tests.fanout.redis import FANOUT_KEY, FANOUT_KEYS

KEY = FANOUT_KEY
DUPLICATE = "ERR The ID specified in XADD is equal or smaller than the target stream top item"
KEYS = FANOUT_KEYS
SEALER = Sealer(KEYS)
ENV = {"K": KEY}


class SealerTests(SynchronousTestCase):
    """Entries sealed by one key open with it, at their place only; rotation."""

    def test_seal_and_open(self) -> None:
        """A sealed payload opens at its place; elsewhere, altered or unsealed it does not."""
        sealed = SEALER.seal("gamews:requests", '{"a":1}')
        self.assertEqual(SEALER.open("gamews:requests", sealed), '{"a":1}')
        self.assertIsNone(SEALER.open("gamews:replies:e", sealed))
        self.assertIsNone(SEALER.open("gamews:requests", sealed.replace("1", "2")))
        self.assertIsNone(SEALER.open("gamews:requests", '{"a":1}'))
        self.assertIsNone(SEALER.open("gamews:requests", "\u00e9" * 64 + " x"))
        self.assertIsNone(Sealer((Secret("j" * 43),)).open("gamews:requests", sealed))

    def test_rotation(self) -> None:
        """With keys [new, old], old entries still open and new ones are sealed by new."""
        new = Secret("n" * 43)
        both = Sealer((new, *KEYS))
        self.assertEqual(both.open("p", SEALER.seal("p", "x")), "x")
        self.assertEqual(Sealer((new,)).open("p", both.seal("p", "x")), "x")
        self.assertIsNone(SEALER.open("p", both.seal("p", "x")))
        self.assertNotIn(KEY, repr(both))


class CursorTests(SynchronousTestCase):
    """An edge's position in a stream decides what to do with each entry."""

    def test_steps(self) -> None:
        """Next, already seen, a gap, and a new origin run are told apart."""
        cursor = Cursor(1000, 7)
        self.assertEqual(cursor.stream_id, "1000-7")
        self.assertIs(cursor.step("1000-8"), Step.NEXT)
        self.assertIs(cursor.step("1000-7"), Step.OLD)
        self.assertIs(cursor.step("999-50"), Step.OLD)
        self.assertIs(cursor.step("1000-9"), Step.GAP)
        self.assertIs(cursor.step("2000-1"), Step.RESTART)
        self.assertIs(cursor.step("2000-2"), Step.GAP)
        cursor.advance("1000-8")
        self.assertEqual((cursor.epoch, cursor.seq), (1000, 8))

    def test_without_snapshot(self) -> None:
        """With no snapshot, reading starts at the stream's start and needs seq 1."""
        cursor = Cursor()
        self.assertEqual(cursor.stream_id, "0-0")
        self.assertIs(cursor.step("5-1"), Step.RESTART)
        self.assertIs(cursor.step("5-3"), Step.GAP)

    def test_xread_reply(self) -> None:
        """An XREAD reply becomes (key, id, fields) in order; a timeout is no entries."""
        reply = [["k", [["1-1", ["e", "{}"]], ["1-2", ["e", "x", "f", "y"]]]]]
        self.assertEqual(stream_entries(reply), [("k", "1-1", {"e": "{}"}),
                                                 ("k", "1-2", {"e": "x", "f": "y"})])
        self.assertEqual(stream_entries(None), [])


def demo_bus(seconds: float = 400.0) -> tuple[EventBus, list[dict[str, Any]]]:
    """A bus fed a demo match's log, and the JSON of every event."""
    bus = EventBus(Clock(), queue_size=10_000)
    match = DemoMatch(seed=3)
    lines = match.advance(0.0) + match.advance(seconds)
    return bus, [bus.publish("demo", parse_line(line)).to_json() for line in lines]


class RebuiltStateTests(SynchronousTestCase):
    """Events and match states travel as JSON and come back the same."""

    def test_envelopes_round_trip(self) -> None:
        """Every event's JSON decodes to an envelope with the same JSON."""
        _, events = demo_bus()
        bus = EventBus(Clock())
        extra = [bus.publish("x", e).to_json() for e in (
            Connected(Player("a", "k", 1)), RconSeen("status"),
            TeamScores((("red", 1), ("blue", 2))),
            PointCaptured("Red", "#cap_A", (Player("a", "k", 1),), (("cp", "0"),)),
            ServerStatus("de_dust2", "host", (StatusPlayer(Player("a", "k", 1), 30, None, 60,
                                                            "active"),), 3))]
        for obj in events + extra:
            self.assertEqual(envelope_from_json(obj).to_json(), obj)
        with self.assertRaises(ValueError):
            envelope_from_json({"type": "nonsense", "seq": 1, "server": "x", "received": 0})

    def test_replay_and_restore_give_the_same_state(self) -> None:
        """A bus restored from a snapshot mid-way and fed the rest equals the origin's."""
        origin, events = demo_bus()
        half = len(events) // 2
        middle, _ = demo_bus(0)
        for obj in events[:half]:
            middle.replay(envelope_from_json(obj))
        edge = EventBus(Clock())
        edge.restore("demo", cast(Any, middle.state("demo")).snapshot())
        seen: list[int] = []
        edge.subscribe(lambda e: seen.append(e.seq))
        for obj in events[half:]:
            edge.replay(envelope_from_json(obj))
        self.assertEqual(cast(Any, edge.state("demo")).snapshot(),
                         cast(Any, origin.state("demo")).snapshot())
        self.assertEqual(seen, [e["seq"] for e in events[half:]])


class ConfigTests(SynchronousTestCase):
    """The [fanout] table."""

    def test_roles(self) -> None:
        """An origin and an edge parse; the password comes from the environment, hidden."""
        origin = FanoutConfig.from_table({"role": "origin", "redis": "tcp:127.0.0.1:6379",
                                          "password_env": "PW", "name": "o", "key_env": "K"},
                                         environ={"PW": "hunter2", **ENV})
        self.assertEqual((origin.role, origin.name, origin.maxlen), ("origin", "o", 10_000))
        self.assertNotIn("hunter2", repr(origin))
        self.assertNotIn(KEY, repr(origin))
        self.assertEqual(origin.batch, 200)
        edge = FanoutConfig.from_table({"role": "edge", "redis": "unix:/run/redis.sock",
                                        "servers": ["alpha"], "key_env": "K"}, environ=ENV)
        self.assertEqual((edge.servers, edge.password), (("alpha",), None))

    def test_address_from_environment(self) -> None:
        """The Redis address may come from an environment variable instead."""
        config = FanoutConfig.from_table({"role": "origin", "redis_env": "ADDR", "key_env": "K"},
                                         environ={"ADDR": "tcp:10.0.0.5:6379", **ENV})
        self.assertEqual(config.redis, "tcp:10.0.0.5:6379")
        with self.assertRaises(ConfigError):
            FanoutConfig.from_table({"role": "origin", "redis_env": "ADDR", "key_env": "K"},
                                    environ=ENV)

    def test_keys_and_batch(self) -> None:
        """A key file may hold several keys (the first seals); a small maxlen makes small
        batches, so one burst never trims what an edge has not read."""
        path = Path(self.mktemp())
        path.write_text(f"{'a' * 40}\n{'b' * 40}\n")
        config = FanoutConfig.from_table({"role": "origin", "redis": "tcp:h:1",
                                          "key_file": str(path), "maxlen": 100})
        self.assertEqual([k.reveal() for k in config.keys], ["a" * 40, "b" * 40])
        self.assertEqual(config.batch, 25)

    def test_errors_name_the_key(self) -> None:
        """Bad tables are refused with the key at fault; inline passwords are refused."""
        for table, key in (
            ({"role": "both", "redis": "tcp:h:1"}, "fanout.role"),
            ({"role": "edge", "redis": "tcp:h:1"}, "fanout.servers"),
            ({"role": "origin", "redis": "tcp:h:1", "servers": ["a"]}, "fanout.servers"),
            ({"role": "origin", "redis": "redis://:pw@h:1"}, "fanout.redis"),
            ({"role": "origin", "redis": "tcp:h:1", "password": "pw"}, "fanout.password"),
            ({"role": "origin", "redis": "tcp:h:1", "maxlen": 5}, "fanout.maxlen"),
            ({"role": "origin", "redis": "tcp:h:1", "colour": 1}, "fanout.colour"),
            ({"role": "origin", "redis": "tcp:h:1", "key_env": None}, "fanout.key_env"),
            ({"role": "origin", "redis": "tcp:h:1", "key_env": "SHORT"}, "fanout.key_env"),
            ({"role": "origin", "redis": "tcp:h:1", "key": KEY}, "fanout.key"),
        ):
            with self.assertRaises(ConfigError) as caught:
                FanoutConfig.from_table({"key_env": "K", **table},
                                        environ={**ENV, "SHORT": "abc"})
            self.assertEqual(caught.exception.key, key)


class RequestCodecTests(SynchronousTestCase):
    """What the origin accepts from the requests stream."""

    def inner(self, **changes: Any) -> str:
        message = {"id": "r1", "edge": "edge-2", "plugin": "console", "server": "alpha",
                   "body": {"command": "status"}, "peer": "10.0.0.9", "conn": "17",
                   "sent": 100.0}
        return dumps({**message, **changes})

    def message(self, proof: Any = "ab", **changes: Any) -> str:
        return dumps({"r": self.inner(**changes), "proof": proof})

    def test_decoded(self) -> None:
        """A request names the edge and the connection on it, and carries the token proof
        over its own text; no user or role."""
        ident, edge, plugin, server, request = cast(Any, decode_request(self.message(), 101.0))
        self.assertEqual((ident, edge, plugin, server), ("r1", "edge-2", "console", "alpha"))
        self.assertEqual(request, Request({"command": "status"}, "10.0.0.9", "edge-2/17",
                                          via="edge-2",
                                          proof=TokenProof(self.inner().encode(), "ab")))
        claimed = dumps({"r": self.inner(user={"name": "x", "role": "admin"}), "proof": None})
        self.assertIsNone(cast(Any, decode_request(claimed, 100.0))[4].user)

    def test_refused(self) -> None:
        """Malformed or expired requests are refused with a reason."""
        self.assertEqual(decode_request("{", 100.0), "not JSON")
        self.assertEqual(decode_request(dumps({"r": 5}), 100.0), "not an object")
        self.assertEqual(decode_request(self.message(), 200.0), "expired")
        self.assertIn("proof", str(decode_request(self.message(proof=5), 100.0)))
        self.assertIn("strings", str(decode_request(self.message(edge=""), 100.0)))


class FakeLink:
    """A Redis link answering GET from a dict, other commands from ``replies`` (by command
    name: a value, or an exception to fail with once), recording them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.replies: dict[str, Any] = {"XRANGE": []}
        self.commands: list[tuple[Any, ...]] = []
        self.streams: dict[tuple[str, str], list[str]] = {}
        """Entries XADDed (or put there by a test), by key and ID, for XRANGE ID ID."""
        self.up = True

    @property
    def connected(self) -> bool:
        return self.up

    def execute(self, *args: Any) -> Deferred[Any]:
        if args[0] == "GET":
            return succeed(self.values.get(args[1]))
        self.commands.append(args)
        reply = self.replies.get(args[0], "ok")
        if isinstance(reply, Exception):
            del self.replies[args[0]]
            return fail(reply)
        if args[0] == "XADD":
            self.streams.setdefault((args[1], args[5]), list(args[6:]))
        if args[0] == "XRANGE" and (args[1], args[2]) in self.streams:
            return succeed([[args[2], self.streams[args[1], args[2]]]])
        return succeed(reply)

    def failed(self, what: str, failure: Failure) -> None:
        pass

    def execute_now(self, *args: Any) -> Deferred[Any]:
        if not self.up:
            return fail(ConnectionError("down"))
        if args[0] == "MGET":
            return succeed([self.values.get(k) for k in args[1:]])
        return self.execute(*args)


class EdgeFeedTests(SynchronousTestCase):
    """The edge's handling of stream entries, heartbeats and forwarded requests."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.link = FakeLink()
        self.bus = EventBus(self.clock)
        config = FanoutConfig("edge", "tcp:h:1", KEYS, name="edge-1", servers=("demo",))
        self.feed = EdgeFeed(config, self.bus, cast(RedisLink, self.link),
                             cast(RedisLink, self.link), clock=self.clock)
        self.keys = Keys("gamews")
        self.origin, self.events = demo_bus(60)
        self.seen: list[int] = []
        self.bus.subscribe(lambda e: self.seen.append(e.seq))

    def entry(self, epoch: int, obj: dict[str, Any], sealer: Sealer = SEALER) -> None:
        key, entry_id = self.keys.events("demo"), f"{epoch}-{obj['seq']}"
        d = Deferred.fromCoroutine(self.feed._entry(
            key, entry_id, {"s": sealer.seal(event_place(key, entry_id), dumps(obj))}))
        self.clock.advance(1)
        self.successResultOf(d)

    def put(self, key: str, obj: dict[str, Any]) -> None:
        self.link.values[key] = SEALER.seal(key, dumps(obj))

    def test_unsealed_entries_dropped_and_counted(self) -> None:
        """Entries not sealed by a fan-out key (a forged next one, one far ahead) are
        dropped and counted once each; the real numbering goes on."""
        for obj in self.events[:3]:
            self.entry(7, obj)
        forged = Sealer((Secret("f" * 43),))
        self.entry(7, self.events[3], forged)
        self.entry(7, self.events[3], forged)  # read again: counted once
        self.entry(7, {**self.events[3], "seq": 1_000_000}, forged)
        self.entry(7, self.events[3])
        self.assertEqual(self.seen, [1, 2, 3, 4])
        self.assertEqual(self.feed.stats.rejected["event"], 2)
        self.assertEqual(self.feed.cursors["demo"].stream_id, "7-4")

    def test_gap_takes_a_fresh_snapshot(self) -> None:
        """Missing entries are logged and replaced by the snapshot; reading goes on from it."""
        logged: list[dict[str, Any]] = []
        observer = cast(ILogObserver, logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        for obj in self.events[:3]:
            self.entry(7, obj)
        state = cast(Any, self.origin.state("demo")).snapshot()
        replayed = EventBus(self.clock)
        for obj in self.events[:10]:
            replayed.replay(envelope_from_json(obj))
        self.put(self.keys.snapshot("demo"),
                 {"epoch": 7, "seq": 10, "state": cast(Any, replayed.state("demo")).snapshot()})
        self.entry(7, self.events[8])  # seq 9 after 3: a gap
        self.assertEqual(self.feed.cursors["demo"].stream_id, "7-10")
        for obj in self.events[9:]:
            self.entry(7, obj)
        self.assertEqual(self.seen, [1, 2, 3, *range(11, len(self.events) + 1)])
        self.assertEqual({**cast(Any, self.bus.state("demo")).snapshot(), "run": 0}, state)
        self.assertTrue(any(e.get("log_level") == LogLevel.warn and "gap" in
                            e.get("log_format", "") for e in logged))

    def test_snapshot_behind_is_not_restored(self) -> None:
        """A snapshot older than what the edge has delivered is not taken (no duplicates)."""
        for obj in self.events[:5]:
            self.entry(7, obj)
        self.put(self.keys.snapshot("demo"), {"epoch": 7, "seq": 3, "state": {"seq": 3}})
        self.entry(7, self.events[7])  # a gap; the snapshot is behind
        self.assertEqual(self.feed.cursors["demo"].stream_id, "7-5")
        self.entry(7, self.events[5])
        self.assertEqual(self.seen, [1, 2, 3, 4, 5, 6])

    def test_new_origin_run_starts_afresh(self) -> None:
        """Entries of a new origin run (seq 1 again) reset the state instead of being skipped."""
        for obj in self.events[:5]:
            self.entry(7, obj)
        self.entry(7, self.events[2])  # already seen: skipped
        self.entry(9, self.events[0])
        self.assertEqual(self.seen, [1, 2, 3, 4, 5, 1])
        self.assertEqual(cast(Any, self.bus.state("demo")).seq, 1)
        self.assertEqual(cast(Any, self.bus.state("demo")).run, 9)  # the pages see a new run

    def test_first_load_replays_a_whole_run(self) -> None:
        """At start, a stream that still holds the run's first event is replayed from it
        (plugins see every event); otherwise the edge starts from the snapshot."""
        self.put(self.keys.snapshot("demo"), {"epoch": 7, "seq": 5, "state": {"seq": 5}})
        self.link.streams[self.keys.events("demo"), "7-1"] = ["s", "x"]
        self.successResultOf(Deferred.fromCoroutine(self.feed._load("demo")))
        self.assertEqual(self.feed.cursors["demo"].stream_id, "7-0")
        self.assertEqual(cast(Any, self.bus.state("demo")).run, 7)
        other = EdgeFeed(self.feed.config, EventBus(self.clock), cast(RedisLink, self.link),
                         cast(RedisLink, self.link), clock=self.clock)
        del self.link.streams[self.keys.events("demo"), "7-1"]
        self.successResultOf(Deferred.fromCoroutine(other._load("demo")))
        self.assertEqual(other.cursors["demo"].stream_id, "7-5")

    def test_old_heartbeat_is_no_sign_of_life(self) -> None:
        """A sealed heartbeat written back long after (a replay) leaves the server stale."""
        self.put(self.keys.heartbeat("demo"), {"link": "up", "epoch": 7, "time": 900.0})
        self.feed._poll()
        self.assertTrue(self.feed.servers["demo"].stale)
        self.assertEqual(self.feed.stats.rejected["heartbeat"], 1)

    def test_unsealed_snapshot_and_heartbeat_ignored(self) -> None:
        """A snapshot or heartbeat someone else wrote is not taken (counted): the server
        stays stale, the cursor where it was."""
        self.link.values[self.keys.snapshot("demo")] = dumps({"epoch": 7, "seq": 5})
        self.link.values[self.keys.heartbeat("demo")] = dumps({"link": "up", "epoch": 7})
        self.successResultOf(Deferred.fromCoroutine(self.feed._load("demo")))
        self.feed._poll()
        self.assertEqual(self.feed.cursors["demo"].stream_id, "0-0")
        self.assertTrue(self.feed.servers["demo"].stale)
        self.assertEqual((self.feed.stats.rejected["snapshot"],
                          self.feed.stats.rejected["heartbeat"]), (1, 1))

    def test_hung_redis_is_stale_after_stale_after(self) -> None:
        """A heartbeat poll Redis does not answer makes the server stale after stale_after."""
        game = self.feed.servers["demo"]
        self.put(self.keys.heartbeat("demo"), {"link": "up", "epoch": 7, "time": 1000.0})
        self.feed._poll()
        self.assertFalse(game.stale)
        self.link.execute_now = lambda *args: Deferred()  # type: ignore[method-assign]
        self.feed._poll()
        self.clock.advance(2.9)
        self.assertFalse(game.stale)
        self.clock.advance(0.2)
        self.assertTrue(game.stale)

    def test_heartbeat_and_stale(self) -> None:
        """A remote server is stale without the origin's heartbeat; state changes notify."""
        game = self.feed.servers["demo"]
        verifyObject(IGameServer, game)
        verifyObject(IRequestForwarder, game)
        changes: list[LinkState] = []
        game.subscribe(changes.append)
        self.assertTrue(game.stale)
        self.put(self.keys.heartbeat("demo"), {"kind": "quake3", "link": "up", "epoch": 7,
                                               "time": 1000.0})
        self.feed._poll()
        self.assertEqual((game.stale, game.state, game.kind), (False, LinkState.UP, "quake3"))
        del self.link.values[self.keys.heartbeat("demo")]
        self.feed._poll()
        self.assertTrue(game.stale)
        self.link.up = False
        self.feed._poll()
        self.assertEqual(changes, [LinkState.UP, LinkState.UP])
        self.failureResultOf(game.rcon("status"), RconError)

    def test_forward_and_reply(self) -> None:
        """A request goes out sealed on the requests stream, with a proof of the user's
        token and no role; the sealed reply with its id answers it, an unsealed one does
        not; no reply in time fails it."""
        user = User("ann", "admin", hash_token("ann-token"))
        request = Request({"command": "status"}, "10.0.0.1", "3", user)
        d = self.feed.forward("console", "demo", request)
        (command,) = self.link.commands
        self.assertEqual(command[:7], ("XADD", "gamews:requests", "MAXLEN", "~", 10_000, "*",
                                       "s"))
        outer = json.loads(cast(str, SEALER.open("gamews:requests", command[-1])))
        sent = json.loads(outer["r"])
        self.assertEqual((sent["edge"], sent["conn"], sent["peer"]), ("edge-1", "3", "10.0.0.1"))
        self.assertNotIn("user", sent)
        self.assertNotIn("admin", command[-1])
        self.assertEqual(outer["proof"], prove(hash_token("ann-token"), outer["r"].encode()))
        replies = self.keys.replies("edge-1")
        forged = dumps({"id": sent["id"], "reply": {"status": "forged"}})
        self.feed._reply(replies, "1-1", {"s": Sealer((Secret("f" * 43),)).seal(replies, forged)})
        self.assertNoResult(d)
        self.assertEqual(self.feed.stats.rejected["reply"], 1)
        reply = dumps({"id": sent["id"], "reply": {"status": "ok"}})
        self.feed._reply(replies, "1-2", {"s": SEALER.seal(replies, reply)})
        self.assertEqual(self.successResultOf(d), {"status": "ok"})
        late = self.feed.forward("console", "demo", request)
        self.clock.advance(11)
        self.assertIn("did not answer", self.failureResultOf(late).getErrorMessage())
        self.assertEqual(self.feed.pending, {})

    def test_requests_in_flight_bounded(self) -> None:
        """Past MAX_IN_FLIGHT requests waiting for the origin, more fail at once."""
        request = Request({"name": "a", "text": "b"}, "10.0.0.1", "3")
        waiting = [self.feed.forward("chat", "demo", request) for _ in range(MAX_IN_FLIGHT)]
        self.assertIn("busy", self.failureResultOf(
            self.feed.forward("chat", "demo", request)).getErrorMessage())
        self.assertEqual(len(self.link.commands), MAX_IN_FLIGHT)
        self.clock.advance(11)
        for d in waiting:
            self.failureResultOf(d)


@implementer(IGameServer, IRequestForwarder)
class ForwardingGame(ScriptedGameServer):
    """An edge's game server stand-in whose forwarded requests the test answers."""

    stale = False

    def __init__(self) -> None:
        super().__init__("alpha")
        self.forwarded: list[tuple[str, str, Request, Deferred[dict[str, Any]]]] = []

    def forward(self, plugin: str, server: str, request: Request) -> Deferred[dict[str, Any]]:
        d: Deferred[dict[str, Any]] = Deferred()
        self.forwarded.append((plugin, server, request, d))
        return d

    def status(self) -> Any:
        raise NotImplementedError


class LateEdgeChatTests(SynchronousTestCase):
    """A chat page on an edge that started from a snapshot."""

    def test_backlog_seeded_from_the_snapshot(self) -> None:
        """The first browser gets the chat lines and kills the snapshot keeps (team chat
        left out of the public view); events the snapshot already holds are not shown
        twice; later ones are."""
        origin, events = demo_bus(60)
        context = PluginTestContext.for_plugin(ChatPlugin(),
                                               servers={"demo": ScriptedGameServer("demo")})
        chat = ChatService(context)
        chat.startService()
        snapshot = cast(Any, origin.state("demo")).snapshot()
        context.events.restore("demo", snapshot)
        child = context.listeners[0].connect()
        (backlog,) = child.of_type("backlog")
        kept = sorted((e for e in snapshot["chat"] + snapshot["kill_feed"]
                       if not (e["type"] == "chat" and e["team"])), key=lambda e: e["seq"])
        self.assertEqual([line["seq"] for line in backlog["lines"]],
                         [e["seq"] for e in kept][-50:])
        chat.event(envelope_from_json(kept[-1]))  # late delivery of a snapshot event
        self.assertEqual(child.of_type("line"), [])
        _, more = demo_bus(90)  # the same match, played on for longer
        self.assertEqual(more[:len(events)], events)
        later = next(e for e in more[len(events):]
                     if e["type"] == "kill" or (e["type"] == "chat" and not e["team"]))
        for obj in more[len(events):more.index(later) + 1]:
            context.events.replay(envelope_from_json(obj))
        self.assertEqual(child.of_type("line")[-1]["line"]["seq"], later["seq"])

    def test_event_before_the_first_browser(self) -> None:
        """An event arriving before any browser does not replace the seeding: the backlog
        has the snapshot's lines and then that event's."""
        origin, events = demo_bus(60)
        context = PluginTestContext.for_plugin(ChatPlugin(),
                                               servers={"demo": ScriptedGameServer("demo")})
        chat = ChatService(context)
        chat.startService()
        snapshot = cast(Any, origin.state("demo")).snapshot()
        context.events.restore("demo", snapshot)
        _, more = demo_bus(90)
        later = next(e for e in more[len(events):] if e["type"] in ("kill", "chat"))
        for obj in more[len(events):more.index(later) + 1]:
            context.events.replay(envelope_from_json(obj))
        (backlog,) = context.listeners[0].connect().of_type("backlog")
        kept = sorted(snapshot["chat"] + snapshot["kill_feed"], key=lambda e: e["seq"])
        self.assertEqual([line["seq"] for line in backlog["lines"]][-3:],
                         [*[e["seq"] for e in kept][-2:], later["seq"]])
        self.assertGreater(len(backlog["lines"]), 10)


class ForwardedRequestTests(SynchronousTestCase):
    """Chat and console on an edge forward; on the origin they apply the same checks."""

    def console(self, game: Any) -> tuple[ConsoleService, Path]:
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "tokens.txt").write_text(f"mo:moderator:{hash_token('mod')}\n")
        context = PluginTestContext.for_plugin(
            ConsolePlugin(), {"tokens_file": "tokens.txt", "burst": 2,
                              "audit_log": "audit.jsonl", "rate": 1.0},
            servers={"alpha": game}, base_dir=directory)
        service = ConsoleService(context)
        service.startService()
        return service, directory / "audit.jsonl"

    def test_console_on_edge_forwards_user_and_role(self) -> None:
        """An edge's console sends the user, role and command; the reply is the result."""
        game = ForwardingGame()
        service, audit = self.console(game)
        child = cast(PluginTestContext, service.context).listeners[0].connect()
        child.receive({"type": "login", "token": "mod"})
        child.receive({"type": "command", "id": 4, "command": "status"})
        ((plugin, server, request, d),) = game.forwarded
        self.assertEqual((plugin, server, request.body, request.user),
                         ("console", "alpha", {"command": "status"}, User("mo", "moderator")))
        assert request.user is not None
        self.assertEqual(request.user.credential, hash_token("mod"))  # to prove the token
        d.callback({"status": "ok", "output": "hostname: x"})
        self.assertEqual(child.of_type("result")[-1]["output"], "hostname: x")
        child.receive({"type": "command", "id": 5, "command": "status"})
        game.forwarded[-1][3].errback(Failure(ConnectionError("the origin did not answer")))
        self.assertEqual(child.of_type("result")[-1]["status"], "error")
        self.assertEqual(game.commands, [])  # nothing ran here
        self.assertFalse(audit.exists())  # the origin audits

    @staticmethod
    def forwarded(command: str, token: str | None, user: User | None = None) -> Request:
        message = dumps({"command": command, "id": command}).encode()
        proof = None if token is None else TokenProof(message, prove(hash_token(token), message))
        return Request({"command": command}, "10.0.0.1", "edge-2/1", user, via="edge-2",
                       proof=proof)

    def test_console_on_origin_checks_and_audits_the_edge(self) -> None:
        """A forwarded command runs as the user its token proof names in the origin's own
        tokens file (role check, rate limit), audited with the edge; an unknown token, a
        forged proof or a claimed admin without proof is refused and audited."""
        game = ScriptedGameServer("alpha")
        service, audit = self.console(game)
        verifyObject(IRequestHandler, service)
        refused = service.apply("alpha", self.forwarded("rcon_password x", "mod"))
        self.assertEqual(self.successResultOf(refused)["status"], "refused")
        ran = service.apply("alpha", self.forwarded("status", "mod"))
        game.replies[0].callback("hostname: x")
        self.assertEqual(self.successResultOf(ran), {"status": "ok", "output": "hostname: x"})
        limited = service.apply("alpha", self.forwarded("status", "mod"))
        self.assertEqual(self.successResultOf(limited),
                         {"status": "refused", "output": "rate limited"})
        for request in (self.forwarded("status", "not-a-token"),
                        self.forwarded("say x", None, User("mallory", "admin")),
                        Request({"command": "quit"}, "10.0.0.1", "edge-2/1", via="edge-2",
                                proof=TokenProof(b"other", prove(hash_token("mod"), b"x")))):
            reply = self.successResultOf(service.apply("alpha", request))
            self.assertEqual(reply["status"], "refused")
            self.assertIn("unknown token", reply["output"])
        self.assertEqual(len(game.commands), 1)
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        self.assertEqual([(r["via"], r["user"], r["role"], r["status"]) for r in records],
                         [("edge-2", "mo", "moderator", "refused"),
                          ("edge-2", "mo", "moderator", "ok"),
                          ("edge-2", "mo", "moderator", "refused"),
                          ("edge-2", None, None, "refused"), ("edge-2", None, None, "refused"),
                          ("edge-2", None, None, "refused")])

    def test_chat_forwarded_and_limited_on_origin(self) -> None:
        """A chat line from an edge is forwarded raw; the origin cleans and rate-limits it."""
        game = ForwardingGame()
        context = PluginTestContext.for_plugin(ChatPlugin(), servers={"alpha": game})
        edge = ChatService(context)
        edge.startService()
        child = context.listeners[0].connect()
        child.receive({"type": "say", "name": "Bob", "text": "hi"})
        ((_, _, request, d),) = game.forwarded
        self.assertEqual(request.body, {"name": "Bob", "text": "hi"})
        d.callback({"error": "rate limited"})
        self.assertEqual(child.of_type("error")[-1]["reason"], "rate limited")

        local = ScriptedGameServer("alpha")
        origin = ChatService(PluginTestContext.for_plugin(ChatPlugin(), {"burst": 1},
                                                          servers={"alpha": local}))
        forwarded = Request({"name": "B:ob", "text": "hi\n"}, "10.0.0.1", "edge-2/5",
                            via="edge-2")
        first = origin.apply("alpha", forwarded)
        self.assertEqual(local.commands, ['say "(web) Bob: hi"'])
        local.replies[0].callback("")
        self.assertEqual(self.successResultOf(first)["ok"], True)
        second = origin.apply("alpha", forwarded)
        self.assertEqual(self.successResultOf(second), {"error": "rate limited"})


class OriginPublisherTests(SynchronousTestCase):
    """Events out: stream IDs, snapshots and heartbeats, resending."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.link = FakeLink()
        self.bus = EventBus(self.clock)
        self.bus.add_server("demo")
        config = FanoutConfig("origin", "tcp:h:1", KEYS, name="o", maxlen=500)
        game = cast(IGameServer, ScriptedGameServer("demo"))
        self.publisher = OriginPublisher(config, self.bus, {"demo": game},
                                         cast(RedisLink, self.link), clock=self.clock)
        _, self.events = demo_bus(30)

    def publish(self, n: int) -> None:
        for obj in self.events[:n]:
            self.bus.replay(envelope_from_json(obj))

    def sealed(self, entry_id: str) -> list[Any]:
        """A stream entry as an origin writes it."""
        key = "gamews:demo:events"
        return [entry_id, ["s", SEALER.seal(event_place(key, entry_id), "{}")]]

    def xadds(self) -> list[str]:
        return [c[5] for c in self.link.commands if c[0] == "XADD"]

    def opened(self, command: tuple[Any, ...], index: int, place: str | None = None) -> Any:
        return json.loads(cast(str, SEALER.open(place or command[1], command[index])))

    def test_events_snapshots_heartbeats(self) -> None:
        """Each event goes out with ID EPOCH-SEQ in order; a tick writes the heartbeat
        (expiring) and the snapshot with the seq it reflects."""
        self.link.replies["XREVRANGE"] = [self.sealed("999999-40")]  # an earlier run
        self.publisher.startService()
        self.addCleanup(self.publisher.stopService)
        self.assertEqual(self.publisher.epoch_of("demo"), 1_000_000)
        self.publish(3)
        self.assertEqual(self.xadds(), ["1000000-1", "1000000-2", "1000000-3"])
        xadd = next(c for c in self.link.commands if c[0] == "XADD")
        self.assertEqual(xadd[:5], ("XADD", "gamews:demo:events", "MAXLEN", "~", 500))
        self.assertEqual(self.opened(xadd, 7, "gamews:demo:events/1000000-1"), self.events[0])
        self.clock.advance(0.5)
        sets = {c[1]: c for c in self.link.commands if c[0] == "SET"}
        beat = sets["gamews:demo:origin"]
        self.assertEqual((beat[3], beat[4]), ("PX", 3000))
        self.assertEqual(self.opened(beat, 2)["link"], "up")
        snapshot = self.opened(sets["gamews:demo:snapshot"], 2)
        self.assertEqual((snapshot["epoch"], snapshot["seq"]), (1_000_000, 3))
        self.assertEqual(snapshot["state"], cast(Any, self.bus.state("demo")).snapshot())

    def test_new_run_after_a_later_clock(self) -> None:
        """A run started with the clock behind an earlier run's IDs numbers after them."""
        self.link.replies["XREVRANGE"] = [self.sealed("2000000-7")]
        self.publisher.startService()
        self.addCleanup(self.publisher.stopService)
        self.assertEqual(self.publisher.epoch_of("demo"), 2_000_001)

    def test_forged_last_entry_deleted_at_start(self) -> None:
        """A stream ending in an entry no origin wrote (a far-ahead ID) is deleted at start
        instead of setting the run's numbering."""
        self.link.replies["XREVRANGE"] = [["18446744073709551615-0", ["s", "forged"]]]
        self.publisher.startService()
        self.addCleanup(self.publisher.stopService)
        self.assertIn(("DEL", "gamews:demo:events"), self.link.commands)
        self.assertEqual(self.publisher.epoch_of("demo"), 1_000_000)

    def test_failed_xadd_sent_again_duplicate_counts_as_sent(self) -> None:
        """A failed XADD is sent again with the ones after it; one Redis already holds
        (refused as equal or smaller) counts as sent."""
        self.link.replies["XREVRANGE"] = []
        self.publisher.startService()
        self.addCleanup(self.publisher.stopService)
        self.link.replies["XADD"] = ConnectionError("lost")
        self.publish(2)  # the second waits while the first is retried
        self.assertEqual(self.xadds(), ["1000000-1"])
        self.assertEqual(len(self.publisher.queue), 2)
        _, key, entry_id, sealed = self.publisher._entry(self.publisher.queue[0])
        self.link.streams[key, entry_id] = ["s", sealed]  # stored; the reply was lost
        self.link.replies["XADD"] = Exception(DUPLICATE)
        self.clock.advance(0.2)
        self.assertEqual(self.xadds()[1:], ["1000000-1", "1000000-2"])
        self.assertEqual((len(self.publisher.queue), self.publisher.sent), (0, 2))
        self.assertEqual(self.publisher.recoveries, 0)

    def test_entry_it_did_not_write_starts_a_new_epoch(self) -> None:
        """An XADD refused because of an entry someone else wrote (at that ID, or higher)
        deletes the stream, logs why and goes on in a new epoch with the same seqs."""
        logged: list[dict[str, Any]] = []
        observer = cast(ILogObserver, logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.link.replies["XREVRANGE"] = []
        self.publisher.startService()
        self.addCleanup(self.publisher.stopService)
        self.publish(1)
        self.link.streams["gamews:demo:events", "1000000-2"] = ["s", "forged"]
        self.link.replies["XADD"] = Exception(DUPLICATE)
        self.clock.advance(5)
        self.bus.replay(envelope_from_json(self.events[1]))
        self.clock.advance(0.2)
        self.assertIn(("DEL", "gamews:demo:events"), self.link.commands)
        self.assertEqual(self.xadds(), ["1000000-1", "1000000-2", "1005000-2"])
        self.assertEqual((self.publisher.recoveries, self.publisher.epoch_of("demo")),
                         (1, 1_005_000))
        self.assertTrue(any("did not write" in e.get("log_format", "") for e in logged))
        self.clock.advance(0.5)
        snapshot = next(c for c in reversed(self.link.commands) if c[0] == "SET"
                        and c[1] == "gamews:demo:snapshot")
        self.assertEqual(self.opened(snapshot, 2)["epoch"], 1_005_000)
