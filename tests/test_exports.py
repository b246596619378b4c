"""Each name ``gamews.websocket`` exports is the object of its private module
(klein's ``test_exports.py`` is the model)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

import gamews.websocket
from gamews.websocket import _child, _protocol, _tuning

_HOMES = {
    "Channel": _child,
    "Child": _child,
    "ConnectionHandle": _child,
    "ListenerLike": _child,
    "OutgoingMessage": _child,
    "Refused": _child,
    "Route": _child,
    "Wire": _child,
    "encode_message": _child,
    "send_to_many": _child,
    "UnfinishedBudget": _child,
    "GamewsServerFactory": _protocol,
    "GamewsServerProtocol": _protocol,
    "SendBuffer": _protocol,
    "hand_over": _protocol,
    "peer_host": _protocol,
    "XorMasker": _tuning,
    "tune_autobahn": _tuning,
}


class WebSocketExportTests(SynchronousTestCase):
    """gamews.websocket re-exports its private modules' names, and only those."""

    def test_all_is_the_list_of_exports(self) -> None:
        """``__all__`` names exactly the names checked here."""
        self.assertEqual(sorted(gamews.websocket.__all__), sorted(_HOMES))

    def test_each_export_is_the_private_object(self) -> None:
        """Each exported name is the very object defined in its private module."""
        for name, module in _HOMES.items():
            self.assertIs(getattr(gamews.websocket, name), getattr(module, name), name)
            self.assertEqual(getattr(module, name).__module__, module.__name__, name)
