"""Tests for building log sources from ``[[server]]`` tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gamews.errors import ConfigError
from gamews.events import EventBus, Kill, RoundStart, Unknown
from gamews.logs import quake3
from gamews.logs.http import SourceHttpLogResource
from gamews.logs.service import (
    HttpLogService,
    LinePipeline,
    log_source_from_table,
    parse_any,
    parse_log_spec,
)
from gamews.logs.tail import FileTailService
from gamews.logs.udp import UdpLogService


def build(table: dict[str, Any], **kw: Any) -> Any:
    """Build with a fresh bus and a Clock as the reactor."""
    bus = kw.pop("bus", None) or EventBus(Clock())
    return log_source_from_table(table, bus=bus, reactor=Clock(), where="server[0]", **kw)


class SpecTests(SynchronousTestCase):
    """The ``log`` value."""

    def test_kinds(self) -> None:
        """udp, udp with interface, http and file specs split into their parts."""
        self.assertEqual(parse_log_spec("udp:27500", "k"), ("udp", "", 27500, ""))
        self.assertEqual(parse_log_spec("udp:27500:interface=127.0.0.1", "k"),
                         ("udp", "", 27500, "127.0.0.1"))
        self.assertEqual(parse_log_spec("http:/logs/a", "k"), ("http", "/logs/a", 0, ""))
        self.assertEqual(parse_log_spec("file:/x/games.log", "k"),
                         ("file", "/x/games.log", 0, ""))

    def test_bad_specs(self) -> None:
        """Malformed specs raise ConfigError naming the key."""
        for spec in ("udp:", "udp:99999", "udp:x", "http:logs", "http:/a b", "file:", "tcp:1"):
            with self.assertRaises(ConfigError) as cm:
                parse_log_spec(spec, "server[0].log")
            self.assertEqual(cm.exception.key, "server[0].log")


class BuildTests(SynchronousTestCase):
    """log_source_from_table."""

    def test_no_log(self) -> None:
        """A server without ``log`` has no log source."""
        self.assertIsNone(build({"name": "a", "rcon": "1.2.3.4:27015"}))

    def test_udp(self) -> None:
        """udp: builds a UDP service allowing the rcon host, with the secret from env."""
        svc = build({"name": "cs", "rcon": "203.0.113.5:27015", "log": "udp:27500",
                     "log_secret_env": "S", "rcon_password_env": "IGNORED"},
                    environ={"S": "1234"})
        self.assertIsInstance(svc, UdpLogService)
        self.assertEqual((svc.port_number, svc.interface, svc.name), (27500, "", "log:cs"))
        self.assertTrue(svc.receiver.allowed.allows("203.0.113.5"))
        self.assertFalse(svc.receiver.allowed.allows("203.0.113.6"))
        self.assertTrue(svc.receiver.secret.matches("1234"))

    def test_http_secret_file(self) -> None:
        """http: builds the mountable resource with the secret from a file."""
        secret = Path(self.mktemp())
        secret.write_text("tok\n", "utf-8")
        svc = build({"name": "cs2", "rcon": "[2001:db8::5]:27015", "log": "http:/logs/cs2",
                     "log_secret_file": str(secret)})
        self.assertIsInstance(svc, HttpLogService)
        self.assertIsInstance(svc.resource, SourceHttpLogResource)
        self.assertEqual(svc.paths, ("/logs/cs2", "/logs/cs2/"))
        self.assertTrue(svc.resource.secret.matches("tok"))
        self.assertTrue(svc.resource.allowed.allows("2001:db8::5"))

    def test_file(self) -> None:
        """file: builds a tail service, relative to base_dir, with replay and interval."""
        svc = build({"name": "oa", "log": "file:games.log", "log_replay": True,
                     "log_poll_interval": 0.5}, base_dir=Path("/srv/oa"))
        self.assertIsInstance(svc, FileTailService)
        self.assertEqual(svc.tailer.path, Path("/srv/oa/games.log"))
        self.assertEqual((svc.tailer.replay, svc.interval), (True, 0.5))
        svc = build({"name": "oa", "log": "file:/g.log", "log_replay": "map"})
        self.assertEqual(svc.tailer.replay, "map")

    def test_state_sizes(self) -> None:
        """The server's match state is registered with its backlog sizes."""
        bus = EventBus(Clock())
        build({"name": "oa", "log": "file:/x", "kill_feed_size": 3, "chat_size": 4}, bus=bus)
        state = bus.state("oa")
        assert state is not None
        self.assertEqual((state.kill_feed.maxlen, state.chat.maxlen), (3, 4))

    def test_errors(self) -> None:
        """Each bad key is named in the ConfigError."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"log": "udp:1"}, "server[0].name"),
            ({"name": "a", "log": "udp:1"}, "server[0].rcon"),
            ({"name": "a", "log": 5}, "server[0].log"),
            ({"name": "a", "log": "file:/x", "log_format": "doom"}, "server[0].log_format"),
            ({"name": "a", "log": "file:/x", "log_replay": "yes"}, "server[0].log_replay"),
            ({"name": "a", "log": "file:/x", "log_replay": 1}, "server[0].log_replay"),
            ({"name": "a", "log": "file:/x", "log_poll_interval": 0},
             "server[0].log_poll_interval"),
            ({"name": "a", "log": "file:/x", "chat_size": -1}, "server[0].chat_size"),
            ({"name": "a", "rcon": "h:1", "log": "udp:1", "log_secret": "inline"},
             "server[0].log_secret"),
            ({"name": "a", "rcon": "h:1", "log": "udp:1", "log_secret_env": "NOPE"},
             "server[0].log_secret_env"),
        ]
        for table, key in cases:
            with self.assertRaises(ConfigError) as cm:
                build(table, environ={})
            self.assertEqual(cm.exception.key, key, table)

    def test_secret_not_in_errors(self) -> None:
        """An inline secret's value does not appear in the error."""
        with self.assertRaises(ConfigError) as cm:
            build({"name": "a", "rcon": "h:1", "log": "udp:1", "log_secret": "hunter2"})
        self.assertNotIn("hunter2", str(cm.exception))


class ParserPickTests(SynchronousTestCase):
    """Which parser a log source uses."""

    def test_kind_picks_parser(self) -> None:
        """The RCON ``kind`` key picks the parser; ``log_format`` overrides it."""
        bus = EventBus(Clock())
        parsers = {}
        for table in ({"name": "q", "kind": "quake3", "log": "file:/a"},
                      {"name": "s", "kind": "source", "log": "file:/b", "log_format": "auto"},
                      {"name": "n", "log": "file:/c"}):
            svc = log_source_from_table(table, bus=bus, reactor=Clock())
            assert isinstance(svc, FileTailService)
            sink = svc.tailer.sink
            assert isinstance(sink, LinePipeline)
            parsers[svc.name] = sink.parser
        self.assertIs(parsers["log:q"], quake3.parse_line)
        self.assertIs(parsers["log:s"], parse_any)
        self.assertIs(parsers["log:n"], parse_any)


class ParserChoiceTests(SynchronousTestCase):
    """parse_any and the pipeline."""

    def test_parse_any(self) -> None:
        """Source lines are recognised by their stamp; others are read as Quake 3."""
        self.assertIsInstance(parse_any('L 11/28/2026 - 09:30:01: World triggered "Round_Start"'),
                              RoundStart)
        self.assertIsInstance(parse_any("  0:09 Kill: 0 3 8: Sarge killed Major by MOD_PLASMA"),
                              Kill)
        self.assertIsInstance(parse_any("garbage"), Unknown)

    def test_pipeline_publishes(self) -> None:
        """A pipeline publishes each parsed line under its server name."""
        bus = EventBus(Clock())
        LinePipeline(bus, "oa")("  0:09 Kill: 0 3 8: Sarge killed Major by MOD_PLASMA")
        state = bus.state("oa")
        assert state is not None
        self.assertEqual((state.seq, len(state.kill_feed)), (1, 1))
