"""WebSockets over TLS (``ssl:`` endpoints) with a certificate made by the test."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import websockets.sync.client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from gamews.api import IConnection
from gamews.config import WebSocketLimits
from gamews.registry import Registry
from tests.support import echo, free_port, port_of, real_reactor


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1; returns (key, cert) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class TLSTests(TestCase):
    """An ``ssl:`` endpoint serves wss:// to a client that verifies the certificate."""

    timeout = 20

    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        self.key, self.cert = make_certificate(directory)
        self.registry = Registry(WebSocketLimits(ping_interval=0), reactor=real_reactor())
        self.addCleanup(self.registry.shutdown)

        def incoming(child: IConnection) -> None:
            child.hook(on_message=echo)

        self.endpoint = (f"ssl:0:privateKey={self.key}:certKey={self.cert}"
                         ":interface=127.0.0.1")
        listener = self.registry.open(self.endpoint, "/secure", owner="t", incoming=incoming)

        async def port() -> None:
            self.port = port_of(await listener.when_listening())

        return ensureDeferred(port())

    def test_verified_wss_round_trip(self) -> Deferred[None]:
        """A client trusting the certificate completes wss:// and gets its echo."""
        context = ssl.create_default_context(cafile=str(self.cert))

        def talk() -> bytes:
            with websockets.sync.client.connect(
                f"wss://localhost:{self.port}/secure", ssl=context, open_timeout=5,
                server_hostname="localhost",
                sock=None,
            ) as ws:
                ws.send(bytes(range(256)))
                answer = ws.recv(timeout=5)
                assert isinstance(answer, bytes)
                return answer

        return deferToThread(talk).addCallback(self.assertEqual, bytes(range(256)))

    def test_unverified_certificate_refused_by_client(self) -> Deferred[None]:
        """A client that does not trust the certificate refuses the handshake."""
        def talk() -> str:
            try:
                websockets.sync.client.connect(
                    f"wss://localhost:{self.port}/secure", open_timeout=5,
                    ssl=ssl.create_default_context()).close()
            except ssl.SSLCertVerificationError:
                return "refused"
            return "connected"

        return deferToThread(talk).addCallback(self.assertEqual, "refused")

    def test_second_tls_context_conflicts(self) -> Deferred[None]:
        """Opening the same port with another key is a clear error at open time."""
        from gamews.api import EndpointConflictError

        other_dir = Path(self.mktemp()).resolve()
        other_dir.mkdir()
        key, cert = make_certificate(other_dir)
        port = free_port()
        first = self.registry.open(f"ssl:{port}:privateKey={self.key}:certKey={self.cert}"
                                   ":interface=127.0.0.1", "/a", owner="x")
        with self.assertRaises(EndpointConflictError):
            self.registry.open(f"ssl:{port}:privateKey={key}:certKey={cert}"
                               ":interface=127.0.0.1", "/b", owner="y")
        with self.assertRaises(EndpointConflictError):
            self.registry.open(f"tcp:{port}:interface=127.0.0.1", "/c", owner="z")
        return first.close()
