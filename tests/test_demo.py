"""The demo game: its simulation, and its RCON server and log stream on loopback."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamews.demo.match import MAPS, DemoMatch
from gamews.demo.server import DemoGameService, log_packet
from gamews.rcon.source_codec import (
    SERVERDATA_AUTH,
    SERVERDATA_AUTH_RESPONSE,
    SERVERDATA_EXECCOMMAND,
    SERVERDATA_RESPONSE_VALUE,
    Packet,
    PacketDecoder,
    encode_packet,
)
from gamews.secret import Secret
from tests.support import free_port, poll_until, real_reactor


class DemoMatchTests(SynchronousTestCase):
    """The simulation writes real-format lines and answers commands."""

    def test_reproducible(self) -> None:
        """The same seed gives the same lines."""
        a, b = DemoMatch(seed=7), DemoMatch(seed=7)
        self.assertEqual(a.advance(100.0) + a.advance(200.0), b.advance(100.0) + b.advance(200.0))

    def test_a_match_happens(self) -> None:
        """Ten minutes of play hold kills, chat, rounds and a map change."""
        match = DemoMatch(seed=1)
        lines = [line for t in range(0, 600, 5) for line in match.advance(1000.0 + t)]
        self.assertTrue(all(line.startswith("L ") and line[12:15] == " - " for line in lines))
        text = "\n".join(lines)
        for needle in (" killed ", " say ", 'World triggered "Round_Start"',
                       'World triggered "Round_End"', " scored ", "Loading map",
                       " entered the game", "<img src=x onerror=alert(1)>"):
            self.assertIn(needle, text)
        self.assertGreater(text.count(" killed "), 100)

    def test_commands(self) -> None:
        """say, status, kick and changelevel answer and log as a server would."""
        match = DemoMatch(seed=2)
        match.advance(0.0)
        self.assertEqual(match.command('say "hello <b>"'), "Console: hello <b>\n")
        self.assertIn('"Console<0><Console><Console>" say "hello <b>"', match.advance(0.0)[-1])
        status = match.command("status")
        self.assertIn("map     : de_dust2", status)
        self.assertTrue(status.endswith("#end\n"))
        self.assertEqual(match.command("kick Sarge"), "Kicked Sarge\n")
        self.assertNotIn("Sarge", [p.name for p in match.players.values()])
        self.assertEqual(match.command(f"changelevel {MAPS[2]}"), f"Changing level to {MAPS[2]}\n")
        self.assertEqual(match.map, MAPS[2])
        self.assertIn("Unknown command", match.command("sv_cheats 1"))
        logged = "\n".join(match.advance(1.0))
        self.assertIn('rcon from "127.0.0.1:0": command "status"', logged)
        self.assertIn('disconnected (reason "Kicked by Console")', logged)
        self.assertIn(f'Loading map "{MAPS[2]}"', logged)

    def test_log_packet(self) -> None:
        """Log datagrams carry R, or S and the secret, then the line, newline, NUL."""
        self.assertEqual(log_packet("L x", None), b"\xff\xff\xff\xffRL x\n\x00")
        self.assertEqual(log_packet("L x", Secret("k")), b"\xff\xff\xff\xffSkL x\n\x00")


class _Collector(DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.packets.append(datagram)


def _rcon_session(port: int, password: str, commands: list[str]) -> list[Packet]:
    """Talk Source RCON with blocking sockets (a client independent of gamews's)."""
    decoder = PacketDecoder(types=frozenset({SERVERDATA_RESPONSE_VALUE,
                                             SERVERDATA_AUTH_RESPONSE}), max_size=4096 + 10)
    got: list[Packet] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(encode_packet(Packet(1, SERVERDATA_AUTH, password.encode())))
        while not any(p.type == SERVERDATA_AUTH_RESPONSE for p in got):
            got += decoder.feed(s.recv(65536))
        for i, command in enumerate(commands, 10):
            s.sendall(encode_packet(Packet(i, SERVERDATA_EXECCOMMAND, command.encode()))
                      + encode_packet(Packet(i, SERVERDATA_RESPONSE_VALUE, b"")))
            while not any(p.id == i and p.body.startswith(b"\x00\x00\x00\x01") for p in got):
                data = s.recv(65536)
                if not data:
                    return got
                got += decoder.feed(data)
    return got


class DemoServerTests(TestCase):
    """The demo's RCON server and log stream over real loopback sockets."""

    timeout = 20

    def setUp(self) -> None:
        self.collector = _Collector()
        self.udp = real_reactor().listenUDP(0, self.collector, interface="127.0.0.1")
        self.addCleanup(self.udp.stopListening)
        self.rcon_port = free_port()
        self.service = DemoGameService(
            rcon_endpoint=f"tcp:{self.rcon_port}:interface=127.0.0.1",
            password=Secret("demo-pass"), log_port=self.udp.getHost().port,
            log_secret=Secret("logkey"), reactor=real_reactor(), tick=0.05)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def test_logs_stream_with_secret(self) -> Deferred[None]:
        """Log lines arrive as S+secret datagrams."""
        async def run() -> None:
            await poll_until(lambda: len(self.collector.packets) > 10)
            self.assertTrue(all(p.startswith(b"\xff\xff\xff\xffSlogkeyL ")
                                for p in self.collector.packets))

        return ensureDeferred(run())

    def test_rcon_auth_and_long_reply(self) -> Deferred[None]:
        """Auth answers empty RESPONSE_VALUE then AUTH_RESPONSE; a long reply spans packets."""
        def check(packets: list[Packet]) -> None:
            self.assertEqual([(p.type, p.id) for p in packets[:2]],
                             [(SERVERDATA_RESPONSE_VALUE, 1), (SERVERDATA_AUTH_RESPONSE, 1)])
            reply = [p for p in packets if p.id == 10 and p.body
                     and not p.body.startswith(b"\x00\x00\x00\x01")]
            self.assertGreater(len(reply), 10)
            self.assertTrue(all(len(p.body) <= 4086 for p in reply))
            text = b"".join(p.body for p in reply).decode()
            self.assertEqual(text.count("\n"), 2000)
            status = b"".join(p.body for p in packets if p.id == 11).decode()
            self.assertIn("hostname: gamews demo", status)
            self.assertEqual(self.service.commands, ["cvarlist", "status"])

        return deferToThread(_rcon_session, self.rcon_port, "demo-pass",
                             ["cvarlist", "status"]).addCallback(check)

    def test_rcon_wrong_password(self) -> Deferred[None]:
        """A wrong password gets AUTH_RESPONSE with id -1."""
        def check(packets: list[Packet]) -> None:
            auth = [p for p in packets if p.type == SERVERDATA_AUTH_RESPONSE]
            self.assertEqual(auth[0].id, -1)

        return deferToThread(_rcon_session, self.rcon_port, "nope", []).addCallback(check)


class DemoLinkTests(TestCase):
    """gamews's own RCON client against the demo, through a simulated outage."""

    timeout = 30

    def test_outage_and_recovery(self) -> Deferred[None]:
        """demo_outage drops the link (DOWN) and it comes back (UP) by itself."""
        from gamews.rcon.link import LinkState
        from gamews.rcon.server import GameServer, GameServerConfig

        port = free_port()
        demo = DemoGameService(rcon_endpoint=f"tcp:{port}:interface=127.0.0.1",
                               password=Secret("pw"), log_port=9, log_secret=None,
                               reactor=real_reactor())
        game = GameServer(GameServerConfig("demo", "source", "127.0.0.1", port, Secret("pw")),
                          reactor=real_reactor())
        states: list[LinkState] = []
        game.subscribe(states.append)
        demo.startService()
        game.startService()
        self.addCleanup(demo.stopService)
        self.addCleanup(game.stopService)

        async def run() -> None:
            self.assertIn("hostname: gamews demo", await game.rcon("status"))
            self.assertIn("goes down", await game.rcon("demo_outage 1"))
            await poll_until(lambda: LinkState.DOWN in states, timeout=5)
            await poll_until(lambda: game.state is LinkState.UP, timeout=20)
            self.assertIn("Console: back", await game.rcon('say "back"'))

        return ensureDeferred(run())
