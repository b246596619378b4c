"""Twisted plugin drop-in: ``twistd gamews`` and gamews's built-in plugins.

Kept tiny and lazy: no reactor, nothing heavy is imported here; each built-in
plugin's module is imported only when a service is built.
"""

from twisted.application.service import ServiceMaker

from gamews.plugins import BuiltinPlugin

gamews = ServiceMaker(
    "gamews",
    "gamews.tap",
    "WebSockets between game servers and browsers, with plugins.",
    "gamews",
)

echo = BuiltinPlugin("echo", "gamews.plugins.echo.EchoPlugin")
chat = BuiltinPlugin("chat", "gamews.plugins.chat.ChatPlugin")
live = BuiltinPlugin("live", "gamews.plugins.live.LivePlugin")
console = BuiltinPlugin("console", "gamews.plugins.console.ConsolePlugin")
bridge = BuiltinPlugin("bridge", "gamews.plugins.bridge.BridgePlugin")
overlay = BuiltinPlugin("overlay", "gamews.plugins.live.OverlayPlugin")
