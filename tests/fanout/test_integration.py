"""One origin on the demo game and two edges, as real ``twistd -n gamews`` processes,
over a real ``redis-server``; real WebSocket clients on each instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from gamews.auth import hash_token
from tests.fanout.redis import FANOUT_KEY, RedisServer
from tests.support import (
    Client,
    TwistdProcess,
    can_connect,
    connect,
    free_port,
    poll_until,
    real_reactor,
    spawn_twistd,
)

ADMIN, MODERATOR = "admin-token", "moderator-token"


class Instance:
    """One gamews process: its config, port and the clients connected to it."""

    def __init__(self, directory: Path, name: str, role: str, redis: RedisServer, *,
                 tokens: Path | None = None, fanout: tuple[str, ...] = (),
                 tables: tuple[str, ...] = ()) -> None:
        self.name = name
        self.port = free_port()
        self.metrics_port = free_port()
        self.redis = redis
        self.config = directory / f"{name}.toml"
        self.audit = directory / f"audit-{name}.jsonl"
        lines = [f'listen = "tcp:{self.port}:interface=127.0.0.1"',
                 "[fanout]", f'role = "{role}"', f'redis = "{redis.endpoint}"',
                 'password_env = "GAMEWS_TEST_REDIS"', 'key_env = "GAMEWS_TEST_KEY"',
                 f'name = "{name}"', "stale_after = 1.5", *fanout]
        if role == "edge":
            lines.insert(0, "")
            lines.append('servers = ["demo"]')
        else:
            lines.insert(0, "demo = true")
        if redis.acl:
            lines.append(f'username = "gamews-{role}"')
        lines += ["[plugin.console]", f'tokens_file = "{tokens or directory / "tokens.txt"}"',
                  f'audit_log = "{self.audit}"', "rate = 100", "burst = 100",
                  "[metrics]", f'listen = "tcp:{self.metrics_port}:interface=127.0.0.1"',
                  *tables]
        self.config.write_text("\n".join(lines) + "\n")
        self.process: TwistdProcess | None = None

    @property
    def output(self) -> bytes:
        """What the process logged so far."""
        return b"" if self.process is None else self.process.output

    @property
    def pid(self) -> int:
        assert self.process is not None and self.process.transport is not None
        return int(cast(Any, self.process.transport).pid)

    def rss(self) -> int:
        """The process's resident memory, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    async def metric(self, name: str) -> float:
        """The value of one sample line of this instance's /metrics (0 if absent)."""
        response = await Agent(real_reactor()).request(
            b"GET", f"http://127.0.0.1:{self.metrics_port}/metrics".encode())
        body = (await readBody(response)).decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    async def start(self) -> None:
        process = self.process = spawn_twistd(
            ["-n", "gamews", "--config", str(self.config)],
            env={"GAMEWS_TEST_REDIS": self.redis.password, "GAMEWS_TEST_KEY": FANOUT_KEY})
        await poll_until(lambda: can_connect(self.port) or process.ended.called, timeout=20)
        if process.ended.called:
            raise RuntimeError(process.output.decode(errors="replace"))

    async def stop(self, signal: str = "TERM") -> None:
        if self.process is not None and not self.process.ended.called:
            self.process.signal(signal)
            await self.process.ended

    async def console(self, token: str = ADMIN) -> Client:
        """A logged-in console client; its ``console`` frames are the events it saw."""
        client = await connect(self.port, "/console/ws", origin=f"http://127.0.0.1:{self.port}")
        client.send_text(json.dumps({"type": "login", "token": token}))
        await poll_until(lambda: any('"welcome"' in str(m) for m in client.messages))
        return client

    async def chat(self) -> Client:
        client = await connect(self.port, "/chat/ws")
        await poll_until(lambda: any('"backlog"' in str(m) for m in client.messages))
        return client


def frames(client: Client, kind: str) -> list[dict[str, Any]]:
    """The JSON frames of type ``kind`` the client received, in order."""
    return [f for f in (json.loads(m) for m in client.messages if isinstance(m, str))
            if f.get("type") == kind]


def events(client: Client) -> list[tuple[int, str]]:
    """``(seq, line)`` of every event the console client saw."""
    return [(f["seq"], f["line"]) for f in frames(client, "console")]


class FanoutTestCase(TestCase):
    """Redis, an origin running the demo, and two edges."""

    timeout = 120

    acl = False
    """Whether the instances log in as the README's least-privilege Redis ACL users."""

    def instances(self, directory: Path) -> tuple[Instance, list[Instance]]:
        """The origin and the edges (override to configure them otherwise)."""
        return (Instance(directory, "origin", "origin", self.redis),
                [Instance(directory, f"edge-{i}", "edge", self.redis) for i in (1, 2)])

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        directory = self.directory = Path(self.mktemp()).resolve()
        self.redis = RedisServer(directory / "redis", acl=self.acl)
        (directory / "tokens.txt").write_text(f"alice:admin:{hash_token(ADMIN)}\n"
                                              f"mo:moderator:{hash_token(MODERATOR)}\n")
        self.origin, self.edges = self.instances(directory)
        self.clients: list[Client] = []

        async def start() -> None:
            self.addCleanup(lambda: ensureDeferred(self.redis.stop()))
            await self.redis.start()
            for instance in (self.origin, *self.edges):
                self.addCleanup(self.kill, instance)
            await self.origin.start()
            for edge in self.edges:
                await edge.start()

        return ensureDeferred(start())

    def kill(self, instance: Instance) -> Deferred[None]:
        return ensureDeferred(instance.stop("KILL"))

    def tearDown(self) -> None:
        for client in self.clients:
            client.drop()

    async def consoles(self) -> list[Client]:
        """A console client on the origin, then one on each edge."""
        clients = [await i.console() for i in (self.origin, *self.edges)]
        self.clients += clients
        return clients

    async def commands(self, client: Client, n: int, command: str = "status") -> None:
        """Run ``n`` commands (each logs an rcon line: one event) and wait for the results."""
        before = len(frames(client, "result"))
        for i in range(n):
            client.send_text(json.dumps({"type": "command", "id": i, "command": command}))
        await poll_until(lambda: len(frames(client, "result")) >= before + n, timeout=15)

    async def caught_up(self, clients: list[Client], origin: Client) -> int:
        """Wait until every client saw the origin client's last event; return its seq."""
        await poll_until(lambda: bool(events(origin)), timeout=15)
        last = events(origin)[-1][0]
        await poll_until(lambda: all(events(c) and events(c)[-1][0] >= last for c in clients),
                         timeout=20)
        return last

    def assert_same_events(self, origin: Client, client: Client) -> None:
        """``client`` saw a gap-free, duplicate-free run of events, equal to the origin's."""
        mine = events(client)
        seqs = [s for s, _ in mine]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "gap or duplicate")
        reference = dict(events(origin))
        common = [(s, line) for s, line in mine if s in reference]
        self.assertGreater(len(common), 5)
        self.assertEqual(common, [(s, reference[s]) for s, _ in common])


class SameEventsTests(FanoutTestCase):
    """Edges deliver exactly what the origin delivers."""

    def test_same_events_same_order(self) -> Deferred[None]:
        """A console client on each edge sees the origin client's events, same seq and order;
        no instance logs the Redis password."""
        async def run() -> None:
            origin, *edges = await self.consoles()
            await self.commands(origin, 20)
            await self.caught_up(edges, origin)
            for edge in edges:
                self.assert_same_events(origin, edge)
            for instance in (self.origin, *self.edges):
                assert instance.process is not None
                self.assertIn(b"redis link", instance.process.output)
                self.assertNotIn(self.redis.password.encode(), instance.process.output)

        return ensureDeferred(run())

    def test_chat_from_edge_reaches_game_and_other_edge(self) -> Deferred[None]:
        """A line said on edge 2 goes to the demo game by RCON; its echo reaches edge 1."""
        async def run() -> None:
            one, two = await self.edges[0].chat(), await self.edges[1].chat()
            self.clients += [one, two]
            two.send_text(json.dumps({"type": "say", "name": "Bob", "text": "hi from edge 2"}))

            def echoed() -> bool:
                return any(f["line"].get("kind") == "web" and f["line"]["text"] == "hi from edge 2"
                           and f["line"]["name"] == "Bob" for f in frames(one, "line"))

            await poll_until(echoed, timeout=15)

        return ensureDeferred(run())

    def test_console_command_from_edge_is_checked_and_audited(self) -> Deferred[None]:
        """Console commands typed on an edge run on the origin under the user's role; the
        origin's audit log names the edge."""
        async def run() -> None:
            moderator = await self.edges[1].console(MODERATOR)
            self.clients.append(moderator)
            for ident, command in ((1, "status"), (2, "rcon_password x")):
                moderator.send_text(json.dumps({"type": "command", "id": ident,
                                                "command": command}))
            await poll_until(lambda: len(frames(moderator, "result")) == 2, timeout=15)
            results = {f["id"]: f for f in frames(moderator, "result")}
            self.assertEqual(results[1]["status"], "ok")
            self.assertIn("hostname: gamews demo", results[1]["output"])
            self.assertEqual(results[2]["status"], "refused")
            audit = [json.loads(line) for line in self.origin.audit.read_text().splitlines()]
            self.assertEqual([(r["user"], r["role"], r["via"], r["status"]) for r in audit],
                             [("mo", "moderator", "edge-2", "ok"),
                              ("mo", "moderator", "edge-2", "refused")])
            self.assertFalse(self.edges[1].audit.exists())

        return ensureDeferred(run())


class FaultTests(FanoutTestCase):
    """Redis restarts, edges restart, the origin restarts."""

    def test_redis_killed_and_restarted(self) -> Deferred[None]:
        """Redis killed and restarted mid-stream: every client has every event once, in order."""
        async def run() -> None:
            origin, *edges = await self.consoles()
            await self.commands(origin, 5)
            await self.caught_up(edges, origin)
            await self.redis.kill()
            await self.commands(origin, 10)  # published while Redis is down
            await self.redis.start()
            await self.commands(origin, 5)
            await self.caught_up(edges, origin)
            for edge in edges:  # gap-free across the outage, and the origin's events
                self.assert_same_events(origin, edge)
                self.assertGreaterEqual(len(events(edge)), 20)

        return ensureDeferred(run())

    def test_edge_restarted_resumes(self) -> Deferred[None]:
        """An edge restarted mid-stream serves its new clients from the snapshot on, no gap."""
        async def run() -> None:
            origin = await self.origin.console()
            self.clients.append(origin)
            await self.commands(origin, 5)
            await self.edges[1].stop()
            await self.commands(origin, 5)
            await self.edges[1].start()
            edge = await self.edges[1].console()
            live = await self.edges[1].chat()
            self.clients += [edge, live]
            await self.commands(origin, 10)
            await self.caught_up([edge], origin)
            self.assert_same_events(origin, edge)

        return ensureDeferred(run())

    def test_origin_gone_marks_edges_stale(self) -> Deferred[None]:
        """Without the origin an edge keeps its state and says stale; a new origin run clears it."""
        async def run() -> None:
            live = await connect(self.edges[0].port, "/live/ws")
            self.clients.append(live)

            def links() -> list[dict[str, Any]]:
                return frames(live, "link")

            await poll_until(lambda: bool(links()) and not links()[-1]["stale"], timeout=10)
            await self.origin.stop("KILL")
            await poll_until(lambda: links()[-1]["stale"] is True, timeout=10)
            snapshots = len(frames(live, "snapshot"))
            await self.origin.start()
            await poll_until(lambda: links()[-1]["stale"] is False, timeout=15)
            # the new run's events flow: the page is sent the new state
            await poll_until(lambda: len(frames(live, "snapshot")) > snapshots, timeout=15)

        return ensureDeferred(run())
