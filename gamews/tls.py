"""TLS on ``ssl:`` ports with certificate files that can be read again while running.

``ssl:PORT:privateKey=KEY.pem:certKey=CERT.pem[:extraCertChain=CHAIN.pem]
[:dhParameters=DH.pem]`` descriptions are served through a :class:`ReloadableTLS`, so that a
reload (``SIGHUP``) gives *new* connections the renewed certificate while connections already
open keep theirs.  The files are read as Twisted's own ``ssl:`` parser reads them; forms it
cannot reload (``sslmethod``, positional arguments past the key and certificate) are left to
Twisted's ``serverFromString``.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLContextFactory, IStreamServerEndpoint
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    DiffieHellmanParameters,
    PrivateCertificate,
)
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

from gamews.endpoints import normalize_endpoint, split_description

__all__ = ["ReloadableTLS", "tls_server_endpoint"]

log = Logger(namespace="gamews.tls")


@implementer(IOpenSSLContextFactory)
class ReloadableTLS:
    """The TLS context of one ``ssl:`` port, built from its files, rebuilt by :meth:`reload`.

    An old-style context factory: Twisted asks :meth:`getContext` for each new connection.
    """

    def __init__(self, private_key: str, certificate: str, *, chain: str | None = None,
                 dh_parameters: str | None = None) -> None:
        """Read the files now (raising if they are missing or do not match)."""
        self.private_key = private_key
        self.certificate = certificate
        self.chain = chain
        self.dh_parameters = dh_parameters
        self._options = self._load()

    def _load(self) -> CertificateOptions:
        pem = FilePath(self.certificate).getContent() + b"\n" + FilePath(
            self.private_key).getContent()
        private = PrivateCertificate.loadPEM(pem)  # type: ignore[no-untyped-call]
        extra: list[Any] = []
        if self.chain is not None:
            text = FilePath(self.chain).getContent()
            extra = [Certificate.loadPEM(block + b"-----END CERTIFICATE-----").original
                     for block in text.split(b"-----END CERTIFICATE-----")[:-1]]
        dh = (DiffieHellmanParameters.fromFile(  # type: ignore[no-untyped-call]
                FilePath(self.dh_parameters))
              if self.dh_parameters is not None else None)
        return CertificateOptions(privateKey=private.privateKey.original,
                                  certificate=private.original, extraCertChain=extra or None,
                                  dhParameters=dh)

    def getContext(self) -> SSL.Context:
        """The context for a new connection (the last certificate loaded)."""
        context: SSL.Context = self._options.getContext()
        return context

    def reload(self) -> str | None:
        """Read the files again; return ``None``, or why they were not taken (the running
        certificate then stays)."""
        try:
            self._options = self._load()
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return None


def tls_server_endpoint(reactor: Any, description: str) -> tuple[
        IStreamServerEndpoint, ReloadableTLS] | None:
    """An endpoint for an ``ssl:`` ``description`` whose certificate can be reloaded, with its
    :class:`ReloadableTLS`; ``None`` for other descriptions (use ``serverFromString``)."""
    parts = split_description(description)
    if parts[0].lower() != "ssl" or any("=" not in p for p in parts[4:]):
        return None
    key = normalize_endpoint(description)
    options = dict(key.options)
    if "sslmethod" in options:
        return None
    backlog = 50
    for part in parts[1:]:
        name, _, value = part.partition("=")
        if name == "backlog" and value.isdigit():
            backlog = int(value)
    tls = ReloadableTLS(options["privateKey"], options["certKey"],
                        chain=options.get("extraCertChain"),
                        dh_parameters=options.get("dhParameters"))
    _, interface, port = key.bind
    return SSL4ServerEndpoint(reactor, int(port), tls, backlog=backlog,
                              interface=interface), tls
