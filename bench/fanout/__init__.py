"""Fan-out through Redis: one instance against three (``python -m bench.fanout``)."""
