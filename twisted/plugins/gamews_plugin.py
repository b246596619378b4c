"""Twisted plugin drop-in: ``twistd gamews`` and gamews's built-in plugins.

Kept tiny and lazy: no reactor, nothing heavy is imported here.
"""

from twisted.application.service import ServiceMaker

from gamews.plugins.echo import EchoPlugin

gamews = ServiceMaker(
    "gamews",
    "gamews.tap",
    "WebSockets between game servers and browsers, with plugins.",
    "gamews",
)

echo = EchoPlugin()
