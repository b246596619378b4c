"""Debian's nginx, with the shipped ``contrib/nginx/gamews.conf``, in front of ``twistd -n
gamews`` on loopback: TLS ends at nginx (a certificate made by the test), the pages and
``/healthz`` come through, a WebSocket makes the round trip, and gamews sees the client's
own address (from ``X-Forwarded-For``, ``trusted_proxies = 1``) in the console's audit log.

The client connects from 127.0.0.2 while nginx talks to gamews from 127.0.0.1, so the
address in the audit log can only come from the header nginx adds.  The shipped file is
used as it is, but for its ``listen`` lines, upstream port and certificate paths (a test
cannot bind 443 or read /etc/letsencrypt).  Skipped without ``/usr/sbin/nginx``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody

from gamews.auth import hash_token
from tests.support import (
    REPO,
    can_connect,
    connect,
    free_port,
    poll_until,
    real_reactor,
    spawn_twistd,
)
from tests.test_tls import make_certificate

NGINX = Path("/usr/sbin/nginx")
SHIPPED = REPO / "contrib" / "nginx" / "gamews.conf"
ORIGIN = "https://games.example.org"
ADMIN_TOKEN = "nginx-test-admin-token"


def site_config(shipped: str, *, listen: int, upstream: int, key: Path, cert: Path) -> str:
    """The shipped server config with the test's port, upstream and certificate."""
    text, listens = re.subn(r"(?m)^\s*listen [^;]*;\n", "", shipped)
    assert listens == 2, "the shipped config's listen lines changed"
    text = text.replace("    server_name ",
                        f"    listen 127.0.0.1:{listen} ssl;\n    server_name ", 1)
    text, n = re.subn(r"server 127\.0\.0\.1:8080;", f"server 127.0.0.1:{upstream};", text)
    assert n == 1, "the shipped config's upstream changed"
    text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", text)
    return re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", text)


def main_config(prefix: Path, site: Path) -> str:
    """A whole nginx.conf for an unprivileged nginx in ``prefix`` including ``site``."""
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} info;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n"
            f"    include {site};\n}}\n")


class NginxTests(TestCase):
    """Through nginx: pages, /healthz, WebSocket, client address, TLS."""

    timeout = 60

    async def test_behind_nginx(self) -> None:
        """Pages, /healthz and a wss:// echo through nginx; a console command from 127.0.0.2
        is audited with ip 127.0.0.2; the TLS certificate is nginx's."""
        if not os.access(NGINX, os.X_OK):
            self.skipTest(f"{NGINX} not installed (apt-get install nginx)")
        reactor = real_reactor()
        base = Path(self.mktemp()).resolve()
        base.mkdir()
        key, cert = make_certificate(base)
        web, proxy = free_port(), free_port()
        (base / "tokens.txt").write_text(f"ann:admin:{hash_token(ADMIN_TOKEN)}\n")
        (base / "gamews.toml").write_text(
            f'listen = ["tcp:{web}:interface=127.0.0.1"]\ndemo = true\n'
            f'[websocket]\ntrusted_proxies = 1\nallowed_origins = ["{ORIGIN}"]\n'
            f'[plugin.console]\ntokens_file = "tokens.txt"\naudit_log = "audit.jsonl"\n')
        gamews = spawn_twistd(["-n", "gamews", "--config", str(base / "gamews.toml")])

        async def stop_gamews() -> None:
            gamews.signal("KILL")
            await gamews.ended

        self.addCleanup(stop_gamews)
        site = base / "gamews-site.conf"
        site.write_text(site_config(SHIPPED.read_text(), listen=proxy, upstream=web,
                                    key=key, cert=cert))
        (base / "nginx.conf").write_text(main_config(base, site))
        checked = subprocess.run([str(NGINX), "-t", "-p", str(base), "-e", "stderr",
                                  "-c", str(base / "nginx.conf")], capture_output=True,
                                 text=True, timeout=20)
        self.assertEqual(checked.returncode, 0, checked.stderr)
        nginx = subprocess.Popen([str(NGINX), "-p", str(base), "-e", "stderr",
                                  "-c", str(base / "nginx.conf")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def stop_nginx() -> None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait(10)

        self.addCleanup(stop_nginx)
        await poll_until(lambda: (can_connect(web) and can_connect(proxy))
                         or gamews.ended.called or nginx.poll() is not None, timeout=20)
        self.assertIsNone(nginx.poll(), "nginx exited")
        self.assertFalse(gamews.ended.called, gamews.output.decode(errors="replace"))

        trust = Certificate.loadPEM(cert.read_bytes())
        agent = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=trust))
        for path, expected in (("/", b'href="/console"'), ("/healthz", b'"status":"ok"')):
            response = await agent.request(b"GET", f"https://localhost:{proxy}{path}".encode())
            self.assertEqual(response.code, 200, path)
            self.assertIn(expected, await readBody(response))

        tls = optionsForClientTLS("localhost", trustRoot=trust)
        echo = await connect(proxy, "/echo", tls=tls, origin=ORIGIN, source="127.0.0.2")
        echo.send_text("through nginx")
        self.assertEqual(await echo.wait_messages(1), ["through nginx"])
        peer_certificate: Any = echo.transport.getPeerCertificate()  # type: ignore[union-attr]
        self.assertEqual(peer_certificate.digest("sha256"),
                         trust.original.digest("sha256"))
        echo.sendClose()

        console = await connect(proxy, "/console/ws", tls=tls, origin=ORIGIN, source="127.0.0.2")
        console.send_text(json.dumps({"type": "login", "token": ADMIN_TOKEN}))
        console.send_text(json.dumps({"type": "command", "id": 1, "server": "demo",
                                      "command": "status"}))

        def answered() -> bool:
            return any('"type":"result"' in str(m) for m in console.messages)

        await poll_until(answered, timeout=10)
        console.sendClose()
        records = [json.loads(line)
                   for line in (base / "audit.jsonl").read_text().splitlines()]
        self.assertEqual([(r["user"], r["command"], r["ip"]) for r in records],
                         [("ann", "status", "127.0.0.2")])
        access = (base / "access.log").read_text()
        self.assertIn("127.0.0.2", access)
