"""gamews's WebSocket core: the child model, the Autobahn protocol under it, and
the Autobahn tuning.

- :mod:`gamews.websocket._child`: :class:`Child`, :class:`ConnectionHandle`,
  :class:`Channel` and :func:`send_to_many`, talking to the connection only
  through the :class:`Wire` protocol (no Autobahn here);
- :mod:`gamews.websocket._protocol`: :class:`GamewsServerProtocol` (a
  :class:`Wire`), its send buffer, factory and timers: the one module that
  touches Autobahn's and Twisted's private attributes;
- :mod:`gamews.websocket._tuning`: :func:`tune_autobahn` and :class:`XorMasker`.

Import from here; the underscored modules are this package's own.
"""

from gamews.websocket._child import (
    Channel,
    Child,
    ConnectionHandle,
    ListenerLike,
    OutgoingMessage,
    Refused,
    Route,
    UnfinishedBudget,
    Wire,
    encode_message,
    send_to_many,
)
from gamews.websocket._protocol import (
    GamewsServerFactory,
    GamewsServerProtocol,
    SendBuffer,
    hand_over,
    peer_host,
)
from gamews.websocket._tuning import XorMasker, tune_autobahn

__all__ = [
    "Channel",
    "Child",
    "ConnectionHandle",
    "GamewsServerFactory",
    "GamewsServerProtocol",
    "ListenerLike",
    "OutgoingMessage",
    "Refused",
    "Route",
    "SendBuffer",
    "UnfinishedBudget",
    "Wire",
    "XorMasker",
    "encode_message",
    "hand_over",
    "peer_host",
    "send_to_many",
    "tune_autobahn",
]
