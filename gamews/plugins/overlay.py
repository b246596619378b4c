"""The stream overlay: score and kill feed on a transparent page, for OBS's browser source.

Page ``/overlay``, socket ``/overlay/ws``: the live view's protocol (``docs/protocol.md``,
a ``snapshot`` then ``delta`` frames), so the overlay follows the match exactly as the live
page does, with its own spectator delay. The page has no controls; it is sized by URL
parameters::

    http://HOST:8080/overlay?width=480&scale=1.5&feed=6&server=alpha

``width`` in pixels (200-3840, default 420), ``scale`` the text size (0.5-4, default 1),
``feed`` kill feed entries (0-20, default 5), ``server`` the game server to follow,
``score=0`` or ``kills=0`` to hide a part. In OBS: add a Browser source with that URL and
the same width; the page's background is transparent.

Config::

    [plugin.overlay]
    delay = 0          # seconds the overlay lags the game (like tv_delay; 0: live)
    kill_feed = 10     # kill feed entries kept for the page
"""

from __future__ import annotations

from twisted.application.service import IService
from zope.interface import implementer

from gamews.api import IGamewsPlugin, IPluginContext
from gamews.plugins.live import LiveService

__all__ = ["OverlayPlugin", "OverlayService"]


class OverlayService(LiveService):
    """The overlay plugin's service: the live view on ``/overlay`` and ``/overlay/ws``."""

    plugin = "overlay"


@implementer(IGamewsPlugin)
class OverlayPlugin:
    """The stream overlay (``/overlay``)."""

    name = "overlay"
    description = "Stream overlay for OBS: score and kill feed on a transparent page."

    def make_service(self, context: IPluginContext) -> IService:
        return OverlayService(context)
