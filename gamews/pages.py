"""Serving the built-in pages: files from ``gamews/plugins/static`` with strict headers."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request
from twisted.web.static import File

__all__ = ["STATIC_DIR", "Page", "secure", "static_files"]

STATIC_DIR: Final = Path(__file__).parent / "plugins" / "static"

# pages load only their own scripts and styles and talk only to their own host
_CSP: Final = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               b"connect-src 'self'; base-uri 'none'; form-action 'none'; "
               b"frame-ancestors 'none'")


def secure(request: Request, *, nonce: str | None = None) -> None:
    """Set the strict headers every page and asset is served with (whatever the method):
    the Content-Security-Policy (with ``frame-ancestors 'none'``); with ``nonce``, the
    page's own inline ``<script nonce=...>`` and ``<style nonce=...>`` may run too."""
    csp = _CSP
    if nonce is not None:
        own = f"'self' 'nonce-{nonce}'".encode()
        csp = csp.replace(b"script-src 'self'", b"script-src " + own).replace(
            b"style-src 'self'", b"style-src " + own)
    request.setHeader(b"content-security-policy", csp)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"cache-control", b"no-cache")


class Page(Resource):
    """One HTML page (read from disk on each request, so edits show at once)."""

    isLeaf = True

    def __init__(self, path: Path) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path = path

    def render(self, request: Request) -> bytes:
        secure(request)
        result: bytes = super().render(request)  # type: ignore[no-untyped-call]
        return result

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return self.path.read_bytes()


class _SecureFile(File):
    """Files only: a directory (``/static/`` itself) is not found, never listed or
    redirected."""

    def render(self, request: Request) -> bytes | int:
        secure(request)
        if self.isdir():
            missing: bytes = NoResource().render(request)
            return missing
        result: bytes | int = super().render(request)  # type: ignore[no-untyped-call]
        return result


def static_files() -> Resource:
    """The shared assets (``gamews.css``, ``gamews.js``), mounted at ``/static/``."""
    return _SecureFile(str(STATIC_DIR), defaultType="application/octet-stream")
