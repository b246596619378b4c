"""JSON-lines logs for log shippers: one JSON object per line, from Twisted's JSON observer.

Two ways to switch them on:

* ``twistd -n gamews --log-format json`` (``--logfile`` and daemon mode work as for
  twistd's text log: stdout with ``-n``, else ``twistd.log`` or the file given);
* ``twistd --logger gamews.logjson.observer -n gamews`` (stdout, or the file named by the
  ``GAMEWS_LOG_FILE`` environment variable), which also works for a ``.tac`` file.

Each line is Twisted's ``twisted.logger.eventAsJSON`` form (``log_namespace``,
``log_level`` as ``{"name": "info", ...}``, ``log_time``, ``log_format`` and the event's
own fields; ``log_logger`` left out) plus ``log_text``, the message as the text log
would show it (with the traceback of a failure). Lines are separated by ``\\n`` only (no
RFC 7464 record separator), as Filebeat, Vector, Fluent Bit or ``jq`` expect. gamews
never puts secrets in log events (:class:`gamews.secret.Secret` shows as ``<redacted>``).
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Final

from twisted.logger import FileLogObserver, LogEvent, eventAsJSON, eventAsText
from twisted.python.logfile import LogFile

__all__ = ["LOG_FILE_VARIABLE", "JsonLinesObserver", "json_lines_observer", "observer",
           "use_file"]

LOG_FILE_VARIABLE: Final = "GAMEWS_LOG_FILE"
"""The environment variable :func:`observer` reads the log file name from."""

_destination: str | None = None


def json_line(event: LogEvent) -> str:
    """One event as a JSON line, with ``log_text`` added."""
    text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    fields = {k: v for k, v in event.items() if k != "log_logger"}  # never serialisable
    return eventAsJSON({**fields, "log_text": text}) + "\n"


class JsonLinesObserver(FileLogObserver):
    """Writes each event to a file as one JSON line (see the module docstring)."""

    def __init__(self, out: IO[Any]) -> None:
        """Write to ``out``, flushing after each line."""
        super().__init__(out, json_line)
        self.file = out
        """Where the lines go (close it when the observer is no longer used)."""


def json_lines_observer(out: IO[Any]) -> JsonLinesObserver:
    """A JSON-lines observer writing to ``out``."""
    return JsonLinesObserver(out)


def use_file(path: str | None) -> None:
    """Make :func:`observer` write to ``path`` (``None`` or ``-``: stdout); used by
    ``twistd gamews --log-format json``."""
    global _destination
    _destination = path


def observer() -> JsonLinesObserver:
    """The observer factory for ``twistd --logger gamews.logjson.observer``: JSON lines to
    the file set by ``--log-format json``'s ``--logfile``, else ``$GAMEWS_LOG_FILE``, else
    stdout. Files are rotated like twistd's own log file (at 1 MB)."""
    path = _destination if _destination is not None else os.environ.get(LOG_FILE_VARIABLE)
    if not path or path == "-":
        return JsonLinesObserver(sys.stdout)
    return JsonLinesObserver(LogFile.fromFullPath(path))  # type: ignore[no-untyped-call]
