"""The index page gamews serves at ``/`` of each web port."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from twisted.web.resource import Resource
from twisted.web.server import Request

from gamews.api import IGamewsPlugin
from gamews.pages import secure

if TYPE_CHECKING:
    from gamews.registry import Registry

__all__ = ["IndexPage"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gamews</title>
<style nonce="{nonce}">
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
        padding: 0 1rem; color: #1d2330; background: #f6f7fb; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #5a6275; margin-top: 0; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; }}
td, th {{ text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e3e6ee; }}
code {{ background: #eef0f6; padding: 0 .25rem; border-radius: 3px; }}
#echo {{ background: #fff; padding: 1rem; margin-top: 1.5rem; border: 1px solid #e3e6ee; }}
.pages li {{ font-size: 1.2rem; margin: .3rem 0; }}
#log {{ white-space: pre-wrap; font-family: ui-monospace, monospace; min-height: 3rem; }}
</style></head><body>
<h1>gamews</h1>
<p class="sub">WebSockets between game servers and browsers.</p>
{pages}
<h2>Plugins</h2>
<table><tr><th>plugin</th><th>what it does</th></tr>{plugins}</table>
<h2>WebSocket paths on this port</h2>
<table><tr><th>path</th><th>held by</th></tr>{paths}</table>
{echo}
</body></html>
"""

_ECHO = """<div id="echo"><strong>Echo test</strong>
<form id="f"><input id="msg" value="hello gamews" size="30"> <button>send</button></form>
<div id="log"></div></div>
<script nonce="{nonce}">
const log = (t) => document.getElementById('log').textContent += t + '\\n';
const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '{path}';
const ws = new WebSocket(url);
ws.onopen = () => log('open ' + url);
ws.onmessage = (e) => log('< ' + e.data);
ws.onclose = (e) => log('closed ' + e.code);
document.getElementById('f').onsubmit = (e) => {{
  e.preventDefault(); const m = document.getElementById('msg').value; ws.send(m); log('> ' + m);
}};
</script>"""


class IndexPage(Resource):
    """Lists the running plugins and the WebSocket paths of the port it is served on."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        """Any method: the strict headers first (a HEAD answer has them too)."""
        secure(request)
        result: bytes = super().render(request)  # type: ignore[no-untyped-call]
        return result

    def __init__(self, registry: Registry, plugins: Sequence[IGamewsPlugin]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._registry = registry
        self._plugins = plugins

    def render_GET(self, request: Request) -> bytes:
        here = request.getHost()
        rows = "".join(
            f"<tr><td><code>{escape(p.name)}</code></td><td>{escape(p.description)}</td></tr>"
            for p in self._plugins
        )
        routes: dict[str, list[str]] = {}
        mounts: dict[str, str] = {}
        for port in self._registry.snapshot():
            if port.address != here:
                continue
            for route in port.paths:
                routes[route.path] = sorted(set(route.plugins))
            mounts.update({path: owner for path, owner in port.pages.items()
                           if path not in ("/", "/static/")})
        pages = "".join(
            f'<li><a href="{escape(path)}">{escape(path.strip("/"))}</a> '
            f"<span class=sub>({escape(owner)})</span></li>"
            for path, owner in sorted(mounts.items()))
        pages_html = f"<h2>Pages</h2><ul class=pages>{pages}</ul>" if pages else ""
        paths = "".join(
            f"<tr><td><code>{escape(path)}</code></td><td>{escape(', '.join(owners))}</td></tr>"
            for path, owners in sorted(routes.items())
        ) or "<tr><td colspan=2>none</td></tr>"
        nonce = secrets.token_urlsafe(16)
        echo = _ECHO.format(path="/echo", nonce=nonce) if "/echo" in routes else ""
        secure(request, nonce=nonce)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return _PAGE.format(pages=pages_html, plugins=rows, paths=paths, echo=echo,
                            nonce=nonce).encode("utf-8")
