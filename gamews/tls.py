"""TLS on ``ssl:`` ports with certificate files that can be read again while running
(:func:`gamews.endpoints.tls_server_endpoint` builds such ports).

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
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    DiffieHellmanParameters,
    PrivateCertificate,
)
from twisted.python.filepath import FilePath
from zope.interface import implementer

__all__ = ["ReloadableTLS"]



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
