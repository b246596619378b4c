"""The match archive: every game server's events recorded per match, browsable and
replayable in the browser.

- :mod:`gamews.archive.config`: the ``[archive]`` table and the data directory;
- :mod:`gamews.archive.db`: SQLite or PostgreSQL behind thread pools, with migrations;
- :mod:`gamews.archive.recorder` and :mod:`gamews.archive.recording`: events placed in
  their match on the reactor, written in batches in the writer thread;
- :mod:`gamews.archive.store`: the queries (lists, summaries, seeking, retention);
- :mod:`gamews.archive.web`: ``/matches``, ``/players`` and the ``/api/v1/`` JSON API;
- :mod:`gamews.archive.replay`: the replay socket, in the live view's snapshot and
  delta frames;
- :mod:`gamews.archive.service`: all of it started and stopped together.

``python -m gamews.archive`` exports and imports matches as NDJSON (docs/archive.md).
"""
