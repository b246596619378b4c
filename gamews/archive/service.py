"""The archive's service: the database, the recorder, retention, the pages and the
replay socket, started and stopped together.

It reaches the rest of gamews as a plugin would, through an
:class:`~gamews.api.IPluginContext` (the web ports, the game servers, the event bus).
"""

from __future__ import annotations

import time
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gamews.api import IMount, IPluginContext
from gamews.archive.config import ArchiveConfig
from gamews.archive.db import Database
from gamews.archive.recorder import Recorder
from gamews.archive.replay import ReplaySocket
from gamews.archive.store import prune
from gamews.archive.web import ApiResource, MatchesPage, PlayersPage

__all__ = ["ArchiveService"]

log = Logger(namespace="gamews.archive")


class ArchiveService(Service):
    """The match archive of one gamews instance (``record``: this instance records its
    game servers; a fan-out edge only serves what its origin records)."""

    name = "archive"

    def __init__(self, config: ArchiveConfig, context: IPluginContext, *,
                 record: bool = True) -> None:
        self.config = config
        self.context = context
        self.clock = context.reactor
        self.db = Database(config, reactor=context.reactor)
        self.recorder: Recorder | None = None
        if record and config.record:
            self.recorder = Recorder(self.db, context.events, list(context.servers),
                                     clock=context.reactor, flush_every=config.flush_every)
        self.replays = ReplaySocket(context, self.db)
        self._mounts: list[IMount] = []
        self._pruner: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.db.start()
        path = self.config.sqlite_path
        log.info("match archive: {where}{recording}",
                 where=str(path) if path is not None else _redacted(self.config.database),
                 recording="" if self.recorder is not None else " (not recording)")
        if self.recorder is not None:
            self.recorder.startService()
        api, matches, players = ApiResource(self.db), MatchesPage(self.db), PlayersPage(self.db)
        for endpoint in self.context.endpoints:
            for path_, resource in (("/matches", matches), ("/matches/", matches),
                                    ("/players", players), ("/players/", players),
                                    ("/api/v1/", api)):
                self._mounts.append(self.context.mount(path_, resource, endpoint=endpoint))
        self.replays.start()
        if self.recorder is not None and (self.config.keep_days or self.config.keep_matches):
            pruner = self._pruner = LoopingCall(self.prune)
            pruner.clock = self.clock
            pruner.start(self.config.prune_every, now=True)

    def prune(self) -> Deferred[None]:
        """One retention pass (logged, never fatal)."""
        d = self.db.write(prune, keep_days=self.config.keep_days,
                          keep_matches=self.config.keep_matches, now=time.time())

        def done(count: int) -> None:
            if count:
                log.info("match archive: {n} old matches pruned", n=count)

        def failed(failure: Failure) -> None:
            log.failure("match archive: pruning failed", failure)

        return d.addCallbacks(done, failed)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._pruner is not None and self._pruner.running:
            self._pruner.stop()
        closing: list[Deferred[Any]] = self.replays.stop()
        closing += [m.close() for m in self._mounts]
        self._mounts = []
        if self.recorder is not None:
            closing.append(self.recorder.stopService())

        def close_db(_: object) -> None:
            self.db.stop()

        return DeferredList(closing).addCallback(close_db)


def _redacted(url: str) -> str:
    """A database URL without its user (the password is never in it)."""
    head, _, tail = url.partition("://")
    return f"{head}://{tail.rpartition('@')[2]}"
