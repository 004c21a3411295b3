"""The applier: a process of the supervisor's that applies the write journal for every worker.

With workers on a SQLite file (or on the workers' database in memory), a worker accepts a score
post into the write journal (storage/writejournal.py) and answers at once. A thread in each
worker that applied the journal took the GIL from that worker's request threads at every
batch, and the workers took turns at the journal's lock: measured on 2 cores, that cost each
post about 25 µs more than the apply itself. Here one process applies every worker's records,
every few milliseconds while they come, and the workers only accept.

Nothing depends on it for correctness: a worker still applies what waits before any read or
unit of work of its own (so a read after a write sees it), a record survives this process
being killed, and a worker's own region, if full, makes its writes directly until applied.
"""

import logging
import os
import time

from scoresvc.application import counting_new_bests
from scoresvc.errors import DatabaseUnavailable
from scoresvc.metrics import Metrics
from scoresvc.serving.worker import (
    WORKER_BOOT_ERROR,
    StopSignals,
    WorkersDatabase,
    once_the_database_answers,
    remove_what_a_killed_supervisor_left,
    settle_in,
    stop_when_parent_dies,
)
from scoresvc.storage.database import Database
from scoresvc.storage.sqlite import GATHER_SECONDS, RETRY_SECONDS

logger = logging.getLogger("scoresvc")

# While writes come, the applier lets them gather this long after each batch, as a worker's
# thread did; with none waiting, it looks again this much later (a look is a comparison of
# the regions' counts in shared memory, a few microseconds, without any lock).
IDLE_SECONDS = 0.05


class Applier:
    """The applier process, after the fork: open the database, apply its journal until SIGTERM."""

    def __init__(self, database: WorkersDatabase, metrics_directory: str | None) -> None:
        self._database = database
        self._metrics_directory = metrics_directory  # the workers' series; None: metrics off
        self._supervisor_pid = os.getpid()  # made before the fork, in the supervisor

    def run(self) -> int:
        """Apply until SIGTERM or the supervisor's death, then what is left; the exit status."""
        stop_signals = settle_in("applier", self._database.settings)
        try:
            stop_when_parent_dies(self._supervisor_pid)
            database = once_the_database_answers(self._database.open, stop_signals)
        except Exception:
            logger.exception("cannot boot")
            return WORKER_BOOT_ERROR
        if database is None:  # stopped while it waited for the database
            return 0
        if self._metrics_directory is not None:
            # The new bests are counted where they are applied: mostly here.
            metrics = Metrics(self._metrics_directory, serving=False)
            database.subscribe(counting_new_bests(metrics))
        logger.info("ready, pid %d", os.getpid())
        try:
            apply_until_stopped(database, stop_signals)
        finally:
            database.close()  # applies what the workers left, or leaves it in the journal
        logger.info("stopped")
        # After its last write: a worker that ended first may have found it still writing.
        remove_what_a_killed_supervisor_left(
            self._supervisor_pid, (self._database.directory, self._metrics_directory)
        )
        return 0


def apply_until_stopped(database: Database, stop_signals: StopSignals) -> None:
    """Apply what waits in database's journal, soon after it is accepted, until a stop signal."""
    failing = False
    while not stop_signals.received:
        waiting = database.writes_waiting()
        if waiting:
            try:
                database.finish_writes()
            except DatabaseUnavailable as error:
                # The journal is marked failing: the workers make new writes directly
                # meanwhile, and answer 503 while the database cannot take them. Said once a
                # streak, as the journal says a driver error once a streak; a failure of
                # another kind (a corrupt journal) is said only here.
                if not failing:
                    logger.error("cannot apply the write journal, trying again: %s", error)
                failing = True
                time.sleep(RETRY_SECONDS)
                continue
            if failing:
                logger.info("the write journal is applied again")
                failing = False
        # A stop signal is only noted: the loop sees it after this sleep, at most a second on.
        time.sleep(GATHER_SECONDS if waiting else IDLE_SECONDS)
